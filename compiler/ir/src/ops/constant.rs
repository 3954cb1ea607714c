//! `const`: a constant tensor (a weight, or a folded value). The text form prints small values
//! inline and larger ones as `blob(<hash>)`; a graph parsed from `blob` text has the type but
//! no data (`value == None`) but keeps the printed hash (`blob_hash`), so that it prints back
//! identically; printing and verifying accept such a const, executing rejects it.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::error::ShapeError;
use crate::tensor::{Tensor, TensorType};
use std::sync::Arc;

/// Values with at most this many elements are printed inline in the IR text.
pub const INLINE_LIMIT: usize = 16;

#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub ty: TensorType,
    pub value: Option<Arc<Tensor>>,
    /// The content hash a data-less const was parsed with (`blob(<hash>)`); `None` when `value`
    /// is present (the printer then hashes the value itself).
    pub blob_hash: Option<u64>,
}

impl Const {
    pub fn new(t: Tensor) -> Self {
        Const {
            ty: t.ty(),
            value: Some(Arc::new(t)),
            blob_hash: None,
        }
    }
}

impl OpDef for Const {
    const NAME: &'static str = "const";
    fn arity(&self) -> Arity {
        Arity::Exact(0)
    }
    fn infer(&self, _: &[&TensorType]) -> Result<TensorType, ShapeError> {
        if let Some(v) = &self.value {
            if v.ty() != self.ty {
                crate::bail_shape!("value has type {} but is declared {}", v.ty(), self.ty);
            }
        }
        Ok(self.ty.clone())
    }
    // The value is printed by the printer itself (it needs the type to parse back).
    fn write_attrs(&self, _: &mut AttrWriter) {}
    fn read_attrs(_: &mut AttrReader) -> Result<Self, String> {
        Err("`const` is parsed by the graph parser".into())
    }
}
