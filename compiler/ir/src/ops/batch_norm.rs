//! `batch_norm`: inference-mode batch normalization over dim 1:
//! y = (x - mean) / sqrt(var + epsilon) * scale + bias. Inputs: x [N,C,...], scale, bias, mean,
//! var, each f32[C]. Training mode is rejected at import.

use super::{want_f32, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub epsilon: f32,
}

impl OpDef for BatchNorm {
    const NAME: &'static str = "batch_norm";
    fn arity(&self) -> Arity {
        Arity::Exact(5)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        want_f32(x, "batch_norm input")?;
        if x.rank() < 2 {
            bail_shape!("batch_norm input must have rank >= 2, got {x}");
        }
        let c = x.shape[1];
        for (p, name) in inputs[1..].iter().zip(["scale", "bias", "mean", "var"]) {
            want_f32(p, name)?;
            if p.shape != [c] {
                bail_shape!("{name} must have shape [{c}], got {p}");
            }
        }
        Ok(x.clone())
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.float("epsilon", self.epsilon);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(BatchNorm {
            epsilon: r.float("epsilon")?,
        })
    }
}
