//! `cast`: converts elements to `to`. f32→int truncates toward zero (NaN and out-of-range
//! saturate, as Rust's `as` does); anything→bool is `!= 0`; bool→number is 0 or 1.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::error::ShapeError;
use crate::tensor::TensorType;
use crate::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cast {
    pub to: DType,
}

impl OpDef for Cast {
    const NAME: &'static str = "cast";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        Ok(TensorType::new(self.to, inputs[0].shape.clone()))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ident("to", self.to.name());
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Cast {
            to: r.parsed("to", DType::from_name)?,
        })
    }
}
