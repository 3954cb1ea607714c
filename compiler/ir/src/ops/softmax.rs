//! `softmax`: exp(x - max) / sum along one axis (ONNX opset-13 semantics; older opsets'
//! flatten-to-2D semantics are rewritten at import). f32 only.

use super::{want_f32, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    pub axis: usize,
}

impl OpDef for Softmax {
    const NAME: &'static str = "softmax";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        want_f32(inputs[0], "softmax input")?;
        if self.axis >= inputs[0].rank() {
            bail_shape!("softmax axis {} out of range for {}", self.axis, inputs[0]);
        }
        Ok(inputs[0].clone())
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usize("axis", self.axis);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Softmax {
            axis: r.usize("axis")?,
        })
    }
}
