//! `concat`: each operand is copied into its slab of the result (a strided nest whose result
//! view starts at the operand's offset along `axis`); contiguous runs copy 4 lanes at a time.

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{map, View};
use dync_ir::ops::Concat;
use dync_ir::DType;

pub(crate) fn lower(k: &mut Kernel, op: &Concat) -> LResult {
    let out_shape = k.shape(BufId::Out);
    let vector = k.dtype(BufId::Out) == DType::F32;
    let mut at = 0usize;
    for i in 0..k.n_inputs() {
        let shape = k.shape(BufId::In(i));
        let mut out = View::dense(BufId::Out, &out_shape)?;
        out.offset = as_i64(at)?
            .checked_mul(out.strides[op.axis])
            .ok_or_else(|| crate::error::CodegenError::Overflow("concat offsets".into()))?;
        let src = View::dense(BufId::In(i), &shape)?;
        map(k, &shape, &[src], out, vector, |_, v, _| Ok(v[0]))?;
        at += shape[op.axis];
    }
    Ok(())
}
