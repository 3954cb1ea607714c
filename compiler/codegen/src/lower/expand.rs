//! `expand`: broadcasts the operand to the result shape (stride 0 along broadcast dims).

use super::kernel::{BufId, Kernel, LResult};
use super::nest::{map, View};
use dync_ir::ops::Expand;
use dync_ir::DType;

pub(crate) fn lower(k: &mut Kernel, _: &Expand) -> LResult {
    let shape = k.shape(BufId::Out);
    let src = View::broadcast(BufId::In(0), &k.shape(BufId::In(0)), &shape)?;
    let vector = k.dtype(BufId::Out) == DType::F32;
    map(
        k,
        &shape,
        &[src],
        View::dense(BufId::Out, &shape)?,
        vector,
        |_, v, _| Ok(v[0]),
    )
}
