//! `slice`: a strided copy; output index o of dim i reads start_i + o·step_i (the attributes
//! are already clamped by import, so every read is in bounds). Unit steps copy 4 lanes at a
//! time.

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{map, View};
use crate::error::CodegenError;
use dync_ir::ops::Slice;
use dync_ir::tensor::strides;
use dync_ir::DType;

pub(crate) fn lower(k: &mut Kernel, op: &Slice) -> LResult {
    let shape = k.shape(BufId::Out);
    let in_strides = strides(&k.shape(BufId::In(0)));
    let overflow = || CodegenError::Overflow("slice offsets".into());
    let mut offset = 0i64;
    let mut view_strides = Vec::with_capacity(shape.len());
    for (i, &s) in in_strides.iter().enumerate() {
        let s = as_i64(s)?;
        if shape[i] > 0 {
            offset = op.starts[i]
                .checked_mul(s)
                .and_then(|v| v.checked_add(offset))
                .ok_or_else(overflow)?;
        }
        view_strides.push(op.steps[i].checked_mul(s).ok_or_else(overflow)?);
    }
    let view = View {
        buf: BufId::In(0),
        offset,
        strides: view_strides,
    };
    let vector = k.dtype(BufId::Out) == DType::F32;
    map(
        k,
        &shape,
        &[view],
        View::dense(BufId::Out, &shape)?,
        vector,
        |_, v, _| Ok(v[0]),
    )
}
