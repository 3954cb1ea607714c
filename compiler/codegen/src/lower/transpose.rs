//! `transpose`: a strided copy; output dim i walks input dim perm[i]. Dims that stay
//! contiguous merge, so a permutation that keeps the innermost dim copies 4 lanes at a time.

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{map, View};
use dync_ir::ops::Transpose;
use dync_ir::tensor::strides;
use dync_ir::DType;

pub(crate) fn lower(k: &mut Kernel, op: &Transpose) -> LResult {
    let shape = k.shape(BufId::Out);
    let in_strides = strides(&k.shape(BufId::In(0)));
    let view = View {
        buf: BufId::In(0),
        offset: 0,
        strides: op
            .perm
            .iter()
            .map(|&p| as_i64(in_strides[p]))
            .collect::<LResult<_>>()?,
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
