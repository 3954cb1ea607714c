//! `matmul`: numpy matrix product, ONNX `MatMul` (Operators.md, MatMul-13). Rank-1 operands
//! are promoted (a: [k] → [1,k], b: [k] → [k,1]) and the promoted dim dropped from the result;
//! batch dims broadcast (numpy rules), geometry from `dync_ir::ops::matmul_shape`.
//!
//! Also home of [`matmul_acc`], the one f64-accumulating matrix-product loop that `gemm` and
//! `conv` (after im2col) use too.

use crate::broadcast::{broadcast_strides, Walk};
use crate::data::{alloc, elems, numel, tensor};
use crate::error::EvalError;
use dync_ir::ops::{matmul_shape, MatMul};
use dync_ir::{Tensor, TensorType};

/// `acc[i][j] += Σ_kk a[i][kk] · b[kk][j]` for row-major `a` [m,k], `b` [k,n] and `acc` [m,n]
/// (m = acc.len() / n). Products of two f32 are exact in f64, so only the sum rounds.
/// Loop order i → kk → j keeps the innermost loop on contiguous rows of `b` and `acc`.
pub(crate) fn matmul_acc(a: &[f32], b: &[f32], k: usize, n: usize, acc: &mut [f64]) {
    if n == 0 {
        return;
    }
    for (acc_row, a_row) in acc.chunks_exact_mut(n).zip(a.chunks_exact(k.max(1))) {
        for (&av, b_row) in a_row.iter().zip(b.chunks_exact(n)) {
            let av = f64::from(av);
            for (c, &bv) in acc_row.iter_mut().zip(b_row) {
                *c += av * f64::from(bv);
            }
        }
    }
}

pub(crate) fn matmul(
    _: &MatMul,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let (ta, tb) = (inputs[0], inputs[1]);
    let (a, b) = (elems::<f32>(ta, "matmul")?, elems::<f32>(tb, "matmul")?);
    let s = matmul_shape(ta.shape(), tb.shape())?;
    let (m, k, n) = (s.m, s.k, s.n);
    // Batch dims of each operand (rank-1 operands have none).
    let a_batch = &ta.shape()[..ta.shape().len().saturating_sub(2)];
    let b_batch = &tb.shape()[..tb.shape().len().saturating_sub(2)];
    let scaled = |strides: Vec<isize>, block: usize| -> Vec<isize> {
        strides.into_iter().map(|s| s * block as isize).collect()
    };
    let mut walk = Walk::new(
        &s.batch,
        vec![
            scaled(broadcast_strides(a_batch, &s.batch), m * k),
            scaled(broadcast_strides(b_batch, &s.batch), k * n),
        ],
    );
    let batches = numel(&s.batch)?;
    let mut y = alloc(numel(&out.shape)?, 0f32)?;
    let mut acc = alloc(m * n, 0f64)?;
    for y_block in y.chunks_exact_mut((m * n).max(1)).take(batches) {
        acc.fill(0.0);
        let (oa, ob) = (walk.offset(0), walk.offset(1));
        matmul_acc(&a[oa..oa + m * k], &b[ob..ob + k * n], k, n, &mut acc);
        for (d, &v) in y_block.iter_mut().zip(&acc) {
            *d = v as f32;
        }
        walk.advance();
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::MatMul;
    use dync_ir::Op;

    fn mm(a: &dync_ir::Tensor, b: &dync_ir::Tensor) -> dync_ir::Tensor {
        run_op(Op::MatMul(MatMul), &[a, b])
    }

    #[test]
    fn matrix_times_matrix() {
        let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f32t(&[3, 2], &[7., 8., 9., 10., 11., 12.]);
        let y = mm(&a, &b);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(f32s(&y), vec![58., 64., 139., 154.]);
    }

    #[test]
    fn rank1_operands_are_promoted_and_dropped() {
        let v = f32t(&[3], &[1., 2., 3.]);
        let dot = mm(&v, &f32t(&[3], &[4., 5., 6.]));
        assert_eq!(dot.shape(), &[] as &[usize]);
        assert_eq!(f32s(&dot), vec![32.]);
        let b = f32t(&[3, 2], &[7., 8., 9., 10., 11., 12.]);
        let vm = mm(&v, &b);
        assert_eq!(vm.shape(), &[2]);
        assert_eq!(f32s(&vm), vec![58., 64.]);
        let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let mv = mm(&a, &f32t(&[3], &[1., 0., -1.]));
        assert_eq!(mv.shape(), &[2]);
        assert_eq!(f32s(&mv), vec![-2., -2.]);
    }

    #[test]
    fn batch_dims_broadcast() {
        // a: one 2x2 matrix broadcast against three 2x1 columns.
        let a = f32t(&[1, 2, 2], &[1., 2., 3., 4.]);
        let b = f32t(&[3, 2, 1], &[1., 1., 1., 0., 0., 1.]);
        let y = mm(&a, &b);
        assert_eq!(y.shape(), &[3, 2, 1]);
        assert_eq!(f32s(&y), vec![3., 7., 1., 3., 2., 4.]);
        // Both sides broadcast: [2,1,1,2] x [3,2,1] -> [2,3,1,1].
        let a = f32t(&[2, 1, 1, 2], &[1., 2., 10., 20.]);
        let y = mm(&a, &b);
        assert_eq!(y.shape(), &[2, 3, 1, 1]);
        assert_eq!(f32s(&y), vec![3., 1., 2., 30., 10., 20.]);
    }

    #[test]
    fn empty_inner_dim_gives_zeros() {
        let a = f32t(&[2, 0], &[]);
        let b = f32t(&[0, 3], &[]);
        assert_eq!(f32s(&mm(&a, &b)), vec![0.; 6]);
    }

    #[test]
    fn accumulates_in_f64() {
        // 1e8 + 1 - 1e8 is 0 in f32 but 1 with an f64 accumulator.
        let a = f32t(&[1, 3], &[1e8, 1., -1e8]);
        let b = f32t(&[3, 1], &[1., 1., 1.]);
        assert_eq!(f32s(&mm(&a, &b)), vec![1.]);
    }
}
