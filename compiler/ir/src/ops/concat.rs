//! `concat`: joins one or more tensors of one dtype and rank along `axis`; all other dims equal.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::{numel, TensorType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat {
    pub axis: usize,
}

impl OpDef for Concat {
    const NAME: &'static str = "concat";
    fn arity(&self) -> Arity {
        Arity::AtLeast(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let first = inputs[0];
        if self.axis >= first.rank() {
            bail_shape!("concat axis {} out of range for {first}", self.axis);
        }
        let mut total = 0usize;
        for t in inputs {
            if t.dtype != first.dtype || t.rank() != first.rank() {
                bail_shape!("concat operands {first} and {t} differ in dtype or rank");
            }
            for (i, (&a, &b)) in t.shape.iter().zip(&first.shape).enumerate() {
                if i != self.axis && a != b {
                    bail_shape!(
                        "concat operands {first} and {t} differ outside axis {}",
                        self.axis
                    );
                }
            }
            total = total
                .checked_add(t.shape[self.axis])
                .ok_or_else(|| ShapeError::Overflow("concat".into()))?;
        }
        let mut shape = first.shape.clone();
        shape[self.axis] = total;
        numel(&shape)?;
        Ok(TensorType::new(first.dtype, shape))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Concat {
            axis: r.usize("axis")?,
        })
    }
}
