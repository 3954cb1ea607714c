//! `slice`: a strided copy; output index o of dim i reads start_i + o·step_i (the attributes
//! are already clamped by import, so every read is in bounds). Unit steps copy 4 lanes at a
//! time; large copies are cut into tasks ([`par_map`]). A slice that selects one contiguous
//! run of an arena value gets no kernel: the memory plan makes it a view.

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{map_tasks, par_map, View};
use crate::error::CodegenError;
use dync_ir::ops::Slice;
use dync_ir::tensor::strides;
use dync_ir::{DType, TensorType};

/// The operand's view in the result's index space, and the result's view.
fn views(op: &Slice, x: &[usize], shape: &[usize]) -> LResult<(View, View)> {
    let in_strides = strides(x);
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
    Ok((view, View::dense(BufId::Out, shape)?))
}

pub(crate) fn lower(k: &mut Kernel, op: &Slice) -> LResult {
    let shape = k.shape(BufId::Out);
    let (src, out) = views(op, &k.shape(BufId::In(0)), &shape)?;
    let vector = k.dtype(BufId::Out) == DType::F32;
    par_map(k, &shape, &[src], out, vector, |_, v, _| Ok(v[0]))
}

/// The kernel's tasks (see [`par_map`]).
pub(crate) fn tasks(op: &Slice, x: &TensorType, result: &TensorType) -> usize {
    views(op, &x.shape, &result.shape).map_or(1, |(src, out)| map_tasks(&result.shape, &[src], out))
}
