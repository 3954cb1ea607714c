//! `expand`: broadcasts the input to `shape` (numpy rules, aligned at the trailing dim). ONNX
//! Expand's bidirectional rule is resolved at import, so `shape` is the exact result shape.

use super::{broadcast_shapes, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::{numel, TensorType};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expand {
    pub shape: Vec<usize>,
}

impl OpDef for Expand {
    const NAME: &'static str = "expand";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        if x.rank() > self.shape.len() || broadcast_shapes(&x.shape, &self.shape)? != self.shape {
            bail_shape!("cannot expand {x} to {:?}", self.shape);
        }
        numel(&self.shape)?;
        Ok(TensorType::new(x.dtype, self.shape.clone()))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usizes("shape", &self.shape);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Expand {
            shape: r.usizes("shape")?,
        })
    }
}
