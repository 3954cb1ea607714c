//! `input`: a graph input. Its type is the graph's declared input type; it has no operands.
//! In the text form inputs appear in the graph header, never as instruction lines.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::error::ShapeError;
use crate::tensor::TensorType;

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub ty: TensorType,
}

impl OpDef for Input {
    const NAME: &'static str = "input";
    fn arity(&self) -> Arity {
        Arity::Exact(0)
    }
    fn infer(&self, _: &[&TensorType]) -> Result<TensorType, ShapeError> {
        Ok(self.ty.clone())
    }
    fn write_attrs(&self, _: &mut AttrWriter) {}
    fn read_attrs(_: &mut AttrReader) -> Result<Self, String> {
        Err("`input` is declared in the graph header, not as an instruction".into())
    }
}
