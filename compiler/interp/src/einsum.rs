//! `einsum`: Einstein summation over f32 operands, ONNX `Einsum` (Operators.md, Einsum-12):
//! y[output labels] = Σ over the other labels of Π_operands x_i[its labels]. The equation is
//! resolved by `dync_ir::ops::EinsumSpec` (implicit outputs, `...` as private labels).
//!
//! Each operand is read through a strided view indexed by labels: a label's stride is the sum
//! of the operand's strides of every dim carrying it (so a label repeated within an operand
//! walks its diagonal), and 0 on ellipsis dims of extent 1 that broadcast. Products and sums
//! are computed in f64: each output element is Σ_k Π_operands x over the summation positions k
//! in row-major order of the summation labels (sorted), products taken in operand order.
//!
//! Evaluation order (it does not change any element's result, only memory traffic): the
//! output's trailing dims along which every operand's view is uniformly strided are merged
//! into one row; for each row, every summation position adds its products to a row of f64
//! accumulators, a scaled contiguous row when one operand is constant along the row and the
//! other contiguous (kernel mixing, matrix products).

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
    // offsets[k·n + o]: offset of operand o at summation position k (row-major over `summed`).
    let n = data.len();
    let sum_dims: Vec<usize> = summed.iter().map(size).collect();
    let positions = numel(&sum_dims)?;
    let mut offsets = alloc(
        positions
            .checked_mul(n)
            .ok_or(EvalError::Alloc(usize::MAX))?,
        0,
    )?;
    let mut sum_walk = Walk::new(&sum_dims, strides_of(&summed));
    for k in offsets.chunks_exact_mut(n.max(1)).take(positions) {
        for (o, v) in k.iter_mut().enumerate() {
            *v = sum_walk.offset(o);
        }
        sum_walk.advance();
    }
    // The output as rows: the longest suffix of output dims that every operand walks with one
    // stride (stride[d] = stride[d+1]·dims[d+1]) is one row of `row` elements.
    let out_dims = spec.out_shape();
    let out_strides = strides_of(&spec.output);
    let mut split = out_dims.len();
    let mut row = 1usize;
    let mut row_strides: Vec<isize> = vec![0; n];
    if let Some(last) = out_dims.len().checked_sub(1) {
        row_strides = out_strides.iter().map(|s| s[last]).collect();
        split = last;
        row = out_dims[last];
        while split > 0
            && out_strides
                .iter()
                .zip(&row_strides)
                .all(|(s, &rs)| s[split - 1] == rs * row as isize)
        {
            split -= 1;
            row *= out_dims[split];
        }
    }
    let rows = numel(&out_dims[..split])?;
    let mut row_walk = Walk::new(
        &out_dims[..split],
        out_strides.iter().map(|s| s[..split].to_vec()).collect(),
    );
    let mut y = alloc(numel(&out_dims)?, 0f32)?;
    let mut acc = alloc(row, 0f64)?;
    let mut base = vec![0usize; n];
    for y_row in y.chunks_mut(row.max(1)).take(rows) {
        acc.fill(0.0);
        for k in offsets.chunks_exact(n.max(1)).take(positions) {
            for (o, b) in base.iter_mut().enumerate() {
                *b = row_walk.offset(o) + k[o];
            }
            accumulate(&mut acc, &data, &base, &row_strides);
        }
        for (d, &a) in y_row.iter_mut().zip(&acc) {
            *d = a as f32;
        }
        row_walk.advance();
    }
    tensor(&out.shape, y)
}

/// acc[j] += Π_o x_o[base[o] + j·stride[o]] for every j of the row, in f64.
fn accumulate(acc: &mut [f64], data: &[&[f32]], base: &[usize], stride: &[isize]) {
    let len = acc.len();
    match (data, base, stride) {
        // One operand constant along the row, the other contiguous: a scaled row. The product
        // of two f32 values is exact in f64, so c·v equals v·c.
        ([x0, x1], &[b0, b1], &[s0, s1]) if (s0, s1) == (0, 1) || (s0, s1) == (1, 0) => {
            let (c, v) = if s0 == 0 {
                (f64::from(x0[b0]), &x1[b1..b1 + len])
            } else {
                (f64::from(x1[b1]), &x0[b0..b0 + len])
            };
            for (a, &v) in acc.iter_mut().zip(v) {
                *a += c * f64::from(v);
            }
        }
        _ => {
            for (j, a) in acc.iter_mut().enumerate() {
                let mut prod = 1f64;
                for ((x, &b), &s) in data.iter().zip(base).zip(stride) {
                    prod *= f64::from(x[(b as isize + j as isize * s) as usize]);
                }
                *a += prod;
            }
        }
    }
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
    fn merged_rows_match_explicit_sums() {
        // Rows merge over c,i,j (scaled contiguous rows), and split where the transposed
        // output `bjoci` is not uniformly strided (the generic path).
        let (b, o, g, c, k) = (2, 3, 4, 5, 3);
        let vals = |n: usize, m: f32| (0..n).map(move |i| ((i * 7 % 11) as f32 - 5.0) * m);
        let a = f32t(&[b, o, g], &vals(b * o * g, 0.5).collect::<Vec<_>>());
        let w = f32t(
            &[o, g, c, 1, k],
            &vals(o * g * c * k, 0.25).collect::<Vec<_>>(),
        );
        let (av, wv) = (f32s(&a), f32s(&w));
        let want = |bi: usize, oi: usize, ci: usize, ji: usize| -> f32 {
            (0..g)
                .map(|gi| {
                    f64::from(av[(bi * o + oi) * g + gi])
                        * f64::from(wv[((oi * g + gi) * c + ci) * k + ji])
                })
                .sum::<f64>() as f32
        };
        let y = f32s(&es("bog,ogcij->bocij", &[&a, &w]));
        let t = f32s(&es("bog,ogcij->bjoci", &[&a, &w]));
        for bi in 0..b {
            for oi in 0..o {
                for ci in 0..c {
                    for ji in 0..k {
                        let v = want(bi, oi, ci, ji);
                        assert_eq!(y[((bi * o + oi) * c + ci) * k + ji], v);
                        assert_eq!(t[((bi * k + ji) * o + oi) * c + ci], v);
                    }
                }
            }
        }
    }

    #[test]
    fn empty_summation_gives_zero() {
        let a = f32t(&[2, 0], &[]);
        let b = f32t(&[0, 2], &[]);
        assert_eq!(f32s(&es("ij,jk->ik", &[&a, &b])), [0.; 4]);
    }
}
