//! `reshape`: reinterprets row-major data with a new, fully resolved shape of the same element
//! count. ONNX Reshape (0 and -1), Flatten, Squeeze and Unsqueeze all import as this op.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::{numel, TensorType};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reshape {
    pub shape: Vec<usize>,
}

impl OpDef for Reshape {
    const NAME: &'static str = "reshape";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        if numel(&self.shape)? != x.numel()? {
            bail_shape!(
                "cannot reshape {x} to {:?}: element counts differ",
                self.shape
            );
        }
        Ok(TensorType::new(x.dtype, self.shape.clone()))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usizes("shape", &self.shape);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Reshape {
            shape: r.usizes("shape")?,
        })
    }
}
