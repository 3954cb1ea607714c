//! `slice`: strided sub-range on every dim. `starts`, `ends`, `steps` have one entry per dim and
//! are already clamped at import (ONNX's negative and out-of-range indices resolved): for a
//! positive step 0 <= start <= end-or-start <= dim; for a negative step -1 <= end <= start < dim.
//! Output dim = number of indices start, start+step, … before end.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub steps: Vec<i64>,
}

impl Slice {
    /// Extent of dim `i` after slicing, assuming the invariants checked by `infer`.
    pub fn out_dim(&self, i: usize) -> usize {
        // i128: `-step` and `end - start` cannot overflow for any i64 inputs.
        let (s, e, st) = (
            self.starts[i] as i128,
            self.ends[i] as i128,
            self.steps[i] as i128,
        );
        let (span, step) = if st > 0 { (e - s, st) } else { (s - e, -st) };
        if span <= 0 || step == 0 {
            0
        } else {
            ((span - 1) / step + 1) as usize
        }
    }

    /// Clamps ONNX-style `start`, `end`, `step` for a dim of extent `dim` (negative indices
    /// count from the end), giving values that satisfy this op's invariants.
    pub fn clamp(start: i64, end: i64, step: i64, dim: usize) -> Result<(i64, i64), ShapeError> {
        let d = i64::try_from(dim).map_err(|_| ShapeError::Overflow("slice dim".into()))?;
        if step == 0 {
            bail_shape!("slice step must not be 0");
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (norm(start), norm(end));
        Ok(if step > 0 {
            (s.clamp(0, d), e.clamp(0, d))
        } else {
            (s.clamp(-1, d - 1), e.clamp(-1, d - 1))
        })
    }
}

impl OpDef for Slice {
    const NAME: &'static str = "slice";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        let r = x.rank();
        if self.starts.len() != r || self.ends.len() != r || self.steps.len() != r {
            bail_shape!("slice needs starts, ends and steps for each of the {r} dims of {x}");
        }
        let mut shape = Vec::with_capacity(r);
        for i in 0..r {
            let (s, e, st) = (self.starts[i], self.ends[i], self.steps[i]);
            let d = i64::try_from(x.shape[i])
                .map_err(|_| ShapeError::Overflow(format!("dim {i} of {x}")))?;
            let ok = if st > 0 {
                (0..=d).contains(&s) && (0..=d).contains(&e)
            } else if st < 0 {
                (-1..d).contains(&s) && (-1..d).contains(&e)
            } else {
                false
            };
            if !ok {
                bail_shape!("slice dim {i}: start {s}, end {e}, step {st} invalid for extent {d}");
            }
            shape.push(self.out_dim(i));
        }
        Ok(TensorType::new(x.dtype, shape))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("starts", &self.starts);
        w.ints("ends", &self.ends);
        w.ints("steps", &self.steps);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Slice {
            starts: r.ints("starts")?,
            ends: r.ints("ends")?,
            steps: r.ints("steps")?,
        })
    }
}
