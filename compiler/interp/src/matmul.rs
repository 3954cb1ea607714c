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
use std::ops::Range;

/// Rows of `a` and columns of `b` whose products `matmul_acc` keeps in registers together.
const MR: usize = 4;
const NR: usize = 8;

/// `acc[i][j] += Σ_kk a[i][kk] · b[kk][j]` for row-major `a` [m,k], `b` [k,n] and `acc` [m,n]
/// (m = acc.len() / n). Products of two f32 are exact in f64, so only the sum rounds; every
/// sum runs over kk in order, whatever the blocking.
///
/// Blocks of MR rows × NR columns accumulate in local (register) arrays over the whole kk loop,
/// reading each loaded element of `b` for MR rows; the rows and columns left over take the
/// plain loop, whose innermost loop runs along rows of `b` and `acc`.
pub(crate) fn matmul_acc(a: &[f32], b: &[f32], k: usize, n: usize, acc: &mut [f64]) {
    if n == 0 {
        return;
    }
    let m = acc.len() / n;
    let n_blocked = n - n % NR;
    for i0 in (0..m).step_by(MR) {
        if m - i0 < MR {
            plain(a, b, k, n, acc, i0..m, 0..n);
            continue;
        }
        for j0 in (0..n_blocked).step_by(NR) {
            let mut r = [[0f64; NR]; MR];
            let a_rows: [&[f32]; MR] = std::array::from_fn(|ii| &a[(i0 + ii) * k..][..k]);
            for (kk, b_row) in b.chunks_exact(n).take(k).enumerate() {
                let bk = &b_row[j0..][..NR];
                for (row, a_row) in r.iter_mut().zip(&a_rows) {
                    let av = f64::from(a_row[kk]);
                    for (c, &bv) in row.iter_mut().zip(bk) {
                        *c += av * f64::from(bv);
                    }
                }
            }
            for (ii, row) in r.iter().enumerate() {
                for (d, &v) in acc[(i0 + ii) * n + j0..][..NR].iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
        plain(a, b, k, n, acc, i0..i0 + MR, n_blocked..n);
    }
}

/// `matmul_acc` restricted to the given rows and columns, with the plain loop order.
fn plain(
    a: &[f32],
    b: &[f32],
    k: usize,
    n: usize,
    acc: &mut [f64],
    rows: Range<usize>,
    cols: Range<usize>,
) {
    for i in rows {
        let acc_row = &mut acc[i * n..][..n][cols.clone()];
        for (&av, b_row) in a[i * k..][..k].iter().zip(b.chunks_exact(n)) {
            let av = f64::from(av);
            for (c, &bv) in acc_row.iter_mut().zip(&b_row[cols.clone()]) {
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
    use dync_ir::{Op, Tensor};
    use proptest::prelude::*;

    fn mm(a: &Tensor, b: &Tensor) -> Tensor {
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

    proptest! {
        /// Sizes around the register-block sizes, against the textbook triple loop.
        #[test]
        fn matches_the_definition((m, k, n) in (1usize..11, 0usize..6, 1usize..20), seed in any::<u64>()) {
            let vals = |len: usize, salt: u64| -> Vec<f32> {
                (0..len as u64).map(|i| ((i.wrapping_mul(2654435761) ^ seed ^ salt) % 17) as f32 - 8.0).collect()
            };
            let (av, bv) = (vals(m * k, 1), vals(k * n, 2));
            let y = mm(&Tensor::from_f32([m, k], av.clone()).unwrap(), &Tensor::from_f32([k, n], bv.clone()).unwrap());
            let want: Vec<f32> = (0..m * n)
                .map(|ij| (0..k).map(|kk| f64::from(av[ij / n * k + kk]) * f64::from(bv[kk * n + ij % n])).sum::<f64>() as f32)
                .collect();
            prop_assert_eq!(f32s(&y), want);
        }
    }

    #[test]
    fn accumulates_in_f64() {
        // 1e8 + 1 - 1e8 is 0 in f32 but 1 with an f64 accumulator.
        let a = f32t(&[1, 3], &[1e8, 1., -1e8]);
        let b = f32t(&[3, 1], &[1., 1., 1.]);
        assert_eq!(f32s(&mm(&a, &b)), vec![1.]);
    }
}
