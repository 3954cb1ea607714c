//! `expand`: broadcasts the operand to the result shape (stride 0 along broadcast dims), in
//! tasks of chunks of the result ([`super::nest::par_map`]).

use super::kernel::{BufId, Kernel, LResult};
use super::nest::{map_tasks, par_map, View};
use dync_ir::ops::Expand;
use dync_ir::{DType, TensorType};

pub(crate) fn lower(k: &mut Kernel, _: &Expand) -> LResult {
    let shape = k.shape(BufId::Out);
    let (src, out) = views(&k.shape(BufId::In(0)), &shape)?;
    let vector = k.dtype(BufId::Out) == DType::F32;
    par_map(k, &shape, &src, out, vector, |_, v, _| Ok(v[0]))
}

fn views(src: &[usize], shape: &[usize]) -> LResult<([View; 1], View)> {
    Ok((
        [View::broadcast(BufId::In(0), src, shape)?],
        View::dense(BufId::Out, shape)?,
    ))
}

/// The kernel's tasks (see [`par_map`]).
pub(crate) fn tasks(x: &TensorType, result: &TensorType) -> usize {
    views(&x.shape, &result.shape).map_or(1, |(src, out)| map_tasks(&result.shape, &src, out))
}
