//! `concat`: joins tensors of one dtype and rank along `axis`, ONNX `Concat` (Operators.md,
//! Concat-13). Any dtype. For each index of the dims before `axis`, the operands' contiguous
//! blocks (their extent along `axis` times the trailing dims) follow each other in order.

use crate::data::{elems, for_dtype, numel, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::Concat;
use dync_ir::{Tensor, TensorType};

pub(crate) fn concat(
    op: &Concat,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    for_dtype!(out.dtype, T => typed::<T>(op, inputs, out))
}

fn typed<T: Elem>(op: &Concat, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, EvalError> {
    let outer = numel(&out.shape[..op.axis])?;
    let inner = numel(&out.shape[op.axis + 1..])?;
    let parts = inputs
        .iter()
        .map(|t| Ok((elems::<T>(t, "concat")?, t.shape()[op.axis] * inner)))
        .collect::<Result<Vec<_>, EvalError>>()?;
    let n = numel(&out.shape)?;
    let mut y = Vec::new();
    y.try_reserve_exact(n).map_err(|_| EvalError::Alloc(n))?;
    for o in 0..outer {
        for &(v, block) in &parts {
            y.extend_from_slice(&v[o * block..][..block]);
        }
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::Concat;
    use dync_ir::{Op, Tensor};

    fn cat(axis: usize, ins: &[&Tensor]) -> Tensor {
        run_op(Op::Concat(Concat { axis }), ins)
    }

    #[test]
    fn onnx_example_both_axes() {
        let a = f32t(&[2, 2], &[1., 2., 3., 4.]);
        let b = f32t(&[2, 2], &[5., 6., 7., 8.]);
        assert_eq!(f32s(&cat(0, &[&a, &b])), [1., 2., 3., 4., 5., 6., 7., 8.]);
        let y = cat(1, &[&a, &b]);
        assert_eq!(y.shape(), &[2, 4]);
        assert_eq!(f32s(&y), [1., 2., 5., 6., 3., 4., 7., 8.]);
    }

    #[test]
    fn unequal_extents_empty_parts_and_ints() {
        let a = i64t(&[2, 1], &[1, 2]);
        let e = i64t(&[2, 0], &[]);
        let b = i64t(&[2, 3], &[3, 4, 5, 6, 7, 8]);
        let y = cat(1, &[&a, &e, &b]);
        assert_eq!(y.shape(), &[2, 4]);
        assert_eq!(y.as_i64().unwrap(), [1, 3, 4, 5, 2, 6, 7, 8]);
        assert_eq!(cat(0, &[&a]).as_i64().unwrap(), [1, 2]);
    }
}
