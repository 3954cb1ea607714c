//! `einsum`: Einstein summation over f32 operands, ONNX `Einsum` (Operators.md, Einsum-12):
//! y[output labels] = Σ over the other labels of Π_operands x_i[its labels]. The equation is
//! resolved by `dync_ir::ops::EinsumSpec` (implicit outputs, `...` as private labels).
//!
//! Each operand is read through a strided view indexed by labels: a label's stride is the sum
//! of the operand's strides of every dim carrying it (so a label repeated within an operand
//! walks its diagonal), and 0 on ellipsis dims of extent 1 that broadcast. The loops run over
//! output positions, then over the summation labels, the last of them innermost; products
//! and the sum are computed in f64.

use crate::broadcast::{row_major_strides, Walk};
use crate::data::{alloc, elems, numel, tensor};
use crate::error::EvalError;
use dync_ir::ops::{Einsum, EinsumSpec};
use dync_ir::{Tensor, TensorType};

pub(crate) fn einsum(
    op: &Einsum,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let data = inputs
        .iter()
        .map(|t| elems::<f32>(t, "einsum"))
        .collect::<Result<Vec<_>, _>>()?;
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let spec = EinsumSpec::new(&op.equation, &shapes)?;
    let size = |l: &char| spec.sizes.get(l).copied().unwrap_or(1);
    // strides[o][i]: stride of operand o along labels[i].
    let strides_of = |labels: &[char]| -> Vec<Vec<isize>> {
        inputs
            .iter()
            .zip(&spec.inputs)
            .map(|(t, op_labels)| {
                let own = row_major_strides(t.shape());
                labels
                    .iter()
                    .map(|l| {
                        op_labels
                            .iter()
                            .zip(t.shape())
                            .zip(&own)
                            .filter(|((ol, &d), _)| *ol == l && d == size(l))
                            .map(|(_, &s)| s)
                            .sum()
                    })
                    .collect()
            })
            .collect()
    };
    let summed: Vec<char> = spec
        .sizes
        .keys()
        .copied()
        .filter(|l| !spec.output.contains(l))
        .collect();
    // The last summation label runs in the innermost loop; without one, a single step.
    let (outer_sum, inner) = match summed.split_last() {
        Some((last, rest)) => (rest.to_vec(), vec![*last]),
        None => (Vec::new(), Vec::new()),
    };
    let inner_len = inner.first().map_or(1, size);
    let inner_strides: Vec<usize> = strides_of(&inner)
        .into_iter()
        .map(|s| s.first().map_or(0, |&s| s as usize))
        .collect();
    let out_dims = spec.out_shape();
    let sum_dims: Vec<usize> = outer_sum.iter().map(size).collect();
    let n_sum = numel(&sum_dims)?;
    let mut out_walk = Walk::new(&out_dims, strides_of(&spec.output));
    let mut sum_walk = Walk::new(&sum_dims, strides_of(&outer_sum));
    let mut y = alloc(numel(&out_dims)?, 0f32)?;
    for d in y.iter_mut() {
        let mut acc = 0f64;
        // n_sum steps bring the summation walk back to its start for the next output.
        for _ in 0..n_sum {
            for j in 0..inner_len {
                let mut prod = 1f64;
                for (o, x) in data.iter().enumerate() {
                    prod *= f64::from(
                        x[out_walk.offset(o) + sum_walk.offset(o) + j * inner_strides[o]],
                    );
                }
                acc += prod;
            }
            sum_walk.advance();
        }
        *d = acc as f32;
        out_walk.advance();
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::{Einsum, MatMul};
    use dync_ir::{Op, Tensor};

    fn es(eq: &str, ins: &[&Tensor]) -> Tensor {
        run_op(
            Op::Einsum(Einsum {
                equation: eq.into(),
            }),
            ins,
        )
    }

    #[test]
    fn matrix_product_explicit_and_implicit() {
        let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = f32t(&[3, 2], &[7., 8., 9., 10., 11., 12.]);
        assert_eq!(f32s(&es("ij,jk->ik", &[&a, &b])), [58., 64., 139., 154.]);
        assert_eq!(f32s(&es("ij,jk", &[&a, &b])), [58., 64., 139., 154.]);
        // Implicit output sorts the free labels: `ik` for "ij,jk", `ki` written explicitly.
        assert_eq!(f32s(&es("ij,jk->ki", &[&a, &b])), [58., 139., 64., 154.]);
    }

    #[test]
    fn transpose_sum_outer_and_dot() {
        let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let t = es("ij->ji", &[&a]);
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(f32s(&t), [1., 4., 2., 5., 3., 6.]);
        assert_eq!(f32s(&es("ij->", &[&a])), [21.]);
        assert_eq!(f32s(&es("ij->j", &[&a])), [5., 7., 9.]);
        let u = f32t(&[2], &[1., 2.]);
        let v = f32t(&[3], &[1., 10., 100.]);
        assert_eq!(
            f32s(&es("i,j->ij", &[&u, &v])),
            [1., 10., 100., 2., 20., 200.]
        );
        assert_eq!(f32s(&es("i,i", &[&u, &u])), [5.]);
        assert_eq!(f32s(&es("i,i,i->", &[&u, &u, &u])), [9.]);
    }

    #[test]
    fn repeated_label_walks_the_diagonal() {
        let m = iota(&[3, 3]);
        assert_eq!(f32s(&es("ii->i", &[&m])), [0., 4., 8.]);
        // Implicit output of "ii" has no free label: the trace.
        assert_eq!(f32s(&es("ii", &[&m])), [12.]);
        // A diagonal across operands: Σ_i a[i,i]·b[i].
        let b = f32t(&[3], &[1., 2., 3.]);
        assert_eq!(f32s(&es("ii,i->", &[&m, &b])), [0. + 8. + 24.]);
    }

    #[test]
    fn ellipsis_broadcasts_batch_dims() {
        let a = f32t(&[2, 1, 1, 2], &[1., 2., 10., 20.]);
        let b = f32t(&[3, 2, 1], &[1., 1., 1., 0., 0., 1.]);
        let e = es("...ij,...jk->...ik", &[&a, &b]);
        let m = run_op(Op::MatMul(MatMul), &[&a, &b]);
        assert_eq!(e.shape(), &[2, 3, 1, 1]);
        assert_eq!(f32s(&e), f32s(&m));
        assert_eq!(f32s(&e), [3., 1., 2., 30., 10., 20.]);
        // Implicit output puts the ellipsis dims first.
        let s = es("...i", &[&f32t(&[2, 2], &[1., 2., 3., 4.])]);
        assert_eq!(f32s(&s), [1., 2., 3., 4.]);
    }

    #[test]
    fn dynet_kernel_mixing() {
        // bog,ogcij->bocij: per sample b, mix G candidate kernels w[o,g] with weights a[b,o,g].
        let attn = f32t(&[2, 1, 2], &[1., 0., 0.25, 0.75]);
        let kernels = f32t(&[1, 2, 1, 1, 2], &[1., 2., 10., 20.]);
        let y = es("bog,ogcij->bocij", &[&attn, &kernels]);
        assert_eq!(y.shape(), &[2, 1, 1, 1, 2]);
        assert_eq!(f32s(&y), [1., 2., 0.25 + 7.5, 0.5 + 15.]);
    }

    #[test]
    fn empty_summation_gives_zero() {
        let a = f32t(&[2, 0], &[]);
        let b = f32t(&[0, 2], &[]);
        assert_eq!(f32s(&es("ij,jk->ik", &[&a, &b])), [0.; 4]);
    }
}
