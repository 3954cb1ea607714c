//! `gather`: picks entries of `data` along `axis` by integer `indices` (i64 or i32; negative
//! indices count from the end). Output shape: data[..axis] ++ indices ++ data[axis+1..].
//! Out-of-range indices are an evaluation error.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::{numel, TensorType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    pub axis: usize,
}

impl OpDef for Gather {
    const NAME: &'static str = "gather";
    fn arity(&self) -> Arity {
        Arity::Exact(2)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let (x, idx) = (inputs[0], inputs[1]);
        if self.axis >= x.rank() {
            bail_shape!("gather axis {} out of range for {x}", self.axis);
        }
        if !idx.dtype.is_int() {
            bail_shape!("gather indices must be integers, got {idx}");
        }
        let mut shape = x.shape[..self.axis].to_vec();
        shape.extend_from_slice(&idx.shape);
        shape.extend_from_slice(&x.shape[self.axis + 1..]);
        numel(&shape)?;
        Ok(TensorType::new(x.dtype, shape))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Gather {
            axis: r.usize("axis")?,
        })
    }
}
