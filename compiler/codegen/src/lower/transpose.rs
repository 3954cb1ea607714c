//! `transpose`: a strided copy; output dim i walks input dim perm[i]. Dims that stay
//! contiguous merge, so a permutation that keeps the innermost dim copies 4 lanes at a time.
//! Large copies are cut into tasks ([`par_map`]).

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{map_tasks, par_map, View};
use dync_ir::ops::Transpose;
use dync_ir::tensor::strides;
use dync_ir::{DType, TensorType};

/// The operand's view in the result's index space, and the result's view.
fn views(op: &Transpose, x: &[usize], out: &[usize]) -> LResult<(View, View)> {
    let in_strides = strides(x);
    let view = View {
        buf: BufId::In(0),
        offset: 0,
        strides: op
            .perm
            .iter()
            .map(|&p| as_i64(in_strides[p]))
            .collect::<LResult<_>>()?,
    };
    Ok((view, View::dense(BufId::Out, out)?))
}

pub(crate) fn lower(k: &mut Kernel, op: &Transpose) -> LResult {
    let shape = k.shape(BufId::Out);
    let (src, out) = views(op, &k.shape(BufId::In(0)), &shape)?;
    let vector = k.dtype(BufId::Out) == DType::F32;
    par_map(k, &shape, &[src], out, vector, |_, v, _| Ok(v[0]))
}

/// The kernel's tasks (see [`par_map`]).
pub(crate) fn tasks(op: &Transpose, x: &TensorType, result: &TensorType) -> usize {
    views(op, &x.shape, &result.shape).map_or(1, |(src, out)| map_tasks(&result.shape, &[src], out))
}
