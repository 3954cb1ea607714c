//! `concat`: each operand is copied into its slab of the result (a strided nest whose result
//! view starts at the operand's offset along `axis`); contiguous runs copy 4 lanes at a time.
//! The copies are one kernel ([`par_maps`]): large operands are cut into tasks, small ones
//! share one.

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{maps_tasks, par_maps, MapNest, View};
use crate::error::CodegenError;
use dync_ir::ops::Concat;
use dync_ir::{DType, TensorType};

/// One copy per operand of these shapes into the result of shape `out_shape`.
fn nests(op: &Concat, operands: &[Vec<usize>], out_shape: &[usize]) -> LResult<Vec<MapNest>> {
    let mut at = 0usize;
    let mut nests = Vec::with_capacity(operands.len());
    for (i, shape) in operands.iter().enumerate() {
        let mut out = View::dense(BufId::Out, out_shape)?;
        out.offset = as_i64(at)?
            .checked_mul(out.strides[op.axis])
            .ok_or_else(|| CodegenError::Overflow("concat offsets".into()))?;
        nests.push(MapNest {
            dims: shape.clone(),
            ins: vec![View::dense(BufId::In(i), shape)?],
            out,
        });
        at += shape[op.axis];
    }
    Ok(nests)
}

pub(crate) fn lower(k: &mut Kernel, op: &Concat) -> LResult {
    let shapes: Vec<Vec<usize>> = (0..k.n_inputs()).map(|i| k.shape(BufId::In(i))).collect();
    let nests = nests(op, &shapes, &k.shape(BufId::Out))?;
    let vector = k.dtype(BufId::Out) == DType::F32;
    par_maps(k, &nests, vector, |_, _, v, _| Ok(v[0]))
}

/// The kernel's tasks (see [`par_maps`]).
pub(crate) fn tasks(op: &Concat, operands: &[&TensorType], result: &TensorType) -> usize {
    let shapes: Vec<Vec<usize>> = operands.iter().map(|t| t.shape.clone()).collect();
    nests(op, &shapes, &result.shape).map_or(1, |n| maps_tasks(&n))
}
