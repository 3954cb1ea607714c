//! `gemm`: Y = alpha·op(A)·op(B) + beta·C, ONNX `Gemm` (Operators.md, Gemm-13), op = transpose
//! when `trans_a`/`trans_b`. C broadcasts (unidirectionally) to [M, N]. As in the ONNX
//! reference implementation, C is ignored when beta is 0 (so a NaN or inf in C does not leak).
//! The product accumulates in f64 and alpha/beta apply in f64 before the single rounding.

use crate::broadcast::{broadcast_strides, offsets};
use crate::data::{alloc, elems, tensor};
use crate::error::EvalError;
use crate::matmul::matmul_acc;
use dync_ir::ops::Gemm;
use dync_ir::{Tensor, TensorType};
use std::borrow::Cow;

/// A row-major [rows, cols] matrix, or its transpose materialized as [cols, rows].
fn oriented(v: &[f32], rows: usize, cols: usize, transpose: bool) -> Cow<'_, [f32]> {
    if transpose {
        // Element (i, j) of the transpose is v[j·cols + i].
        Cow::Owned(
            offsets(&[cols, rows], vec![1, cols as isize], 0)
                .map(|o| v[o])
                .collect(),
        )
    } else {
        Cow::Borrowed(v)
    }
}

pub(crate) fn gemm(op: &Gemm, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, EvalError> {
    let (ta, tb) = (inputs[0], inputs[1]);
    let (m, k, n) = op.mkn(ta.shape(), tb.shape());
    let a = oriented(
        elems::<f32>(ta, "gemm")?,
        ta.shape()[0],
        ta.shape()[1],
        op.trans_a,
    );
    let b = oriented(
        elems::<f32>(tb, "gemm")?,
        tb.shape()[0],
        tb.shape()[1],
        op.trans_b,
    );
    let mut acc = alloc(m * n, 0f64)?;
    matmul_acc(&a, &b, k, n, &mut acc);
    let alpha = f64::from(op.alpha);
    let mut y: Vec<f32> = acc.iter().map(|&v| (alpha * v) as f32).collect();
    if let Some(tc) = inputs.get(2).filter(|_| op.beta != 0.0) {
        let c = elems::<f32>(tc, "gemm")?;
        let beta = f64::from(op.beta);
        let c_offsets = offsets(&[m, n], broadcast_strides(tc.shape(), &[m, n]), 0);
        for ((d, &v), o) in y.iter_mut().zip(&acc).zip(c_offsets) {
            *d = (alpha * v + beta * f64::from(c[o])) as f32;
        }
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::{Binary, BinaryKind, Gemm, MatMul};
    use dync_ir::{Op, Tensor};
    use proptest::prelude::*;

    fn gemm(alpha: f32, beta: f32, trans_a: bool, trans_b: bool, ins: &[&Tensor]) -> Vec<f32> {
        f32s(&run_op(
            Op::Gemm(Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            }),
            ins,
        ))
    }

    #[test]
    fn plain_product_plus_row_bias() {
        let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f32t(&[3, 2], &[7., 8., 9., 10., 11., 12.]);
        let c = f32t(&[2], &[1., 2.]);
        assert_eq!(
            gemm(1., 1., false, false, &[&a, &b, &c]),
            vec![59., 66., 140., 156.]
        );
        assert_eq!(
            gemm(1., 1., false, false, &[&a, &b]),
            vec![58., 64., 139., 154.]
        );
    }

    #[test]
    fn transposes_alpha_beta_and_scalar_c() {
        // The same product with both operands stored transposed.
        let at = f32t(&[3, 2], &[1., 4., 2., 5., 3., 6.]);
        let bt = f32t(&[2, 3], &[7., 9., 11., 8., 10., 12.]);
        let c = f32t(&[], &[10.]);
        assert_eq!(
            gemm(2., 0.5, true, true, &[&at, &bt, &c]),
            vec![121., 133., 283., 313.]
        );
    }

    #[test]
    fn column_c_broadcasts_along_rows() {
        let a = f32t(&[2, 2], &[1., 0., 0., 1.]);
        let b = f32t(&[2, 2], &[1., 2., 3., 4.]);
        let c = f32t(&[2, 1], &[10., 20.]);
        assert_eq!(
            gemm(1., 1., false, false, &[&a, &b, &c]),
            vec![11., 12., 23., 24.]
        );
    }

    #[test]
    fn zero_beta_ignores_c() {
        let a = f32t(&[1, 1], &[2.]);
        let b = f32t(&[1, 1], &[3.]);
        let c = f32t(&[1, 1], &[f32::NAN]);
        assert_eq!(gemm(1., 0., false, false, &[&a, &b, &c]), vec![6.]);
    }

    proptest! {
        /// gemm(A, B, C) with alpha = beta = 1 equals matmul(A, B) + C.
        #[test]
        fn gemm_matches_matmul_plus_add(
            (m, k, n) in (1usize..5, 0usize..5, 1usize..5),
            seed in prop::collection::vec(-4i8..4, 75),
        ) {
            let take = |len: usize, off: usize| -> Vec<f32> {
                (0..len).map(|i| f32::from(seed[(i + off) % seed.len()]) * 0.5).collect()
            };
            let a = Tensor::from_f32([m, k], take(m * k, 0)).unwrap();
            let b = Tensor::from_f32([k, n], take(k * n, 7)).unwrap();
            let c = Tensor::from_f32([n], take(n, 13)).unwrap();
            let got = gemm(1., 1., false, false, &[&a, &b, &c]);
            let prod = run_op(Op::MatMul(MatMul), &[&a, &b]);
            let want = run_op(Op::Binary(Binary { kind: BinaryKind::Add }), &[&prod, &c]);
            prop_assert_eq!(got, f32s(&want));
        }
    }
}
