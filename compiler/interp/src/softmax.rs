//! `softmax`: y = exp(x − max) / Σ exp(x − max) along one axis, ONNX `Softmax` (Operators.md,
//! Softmax-13). Subtracting the maximum keeps exp from overflowing; exp and the sum are
//! evaluated in f64. A NaN in a row makes the whole row NaN, as in numpy; so does +inf (inf −
//! inf), and a row of only −inf.

use crate::data::{alloc, elems, numel, tensor};
use crate::error::EvalError;
use dync_ir::ops::Softmax;
use dync_ir::{Tensor, TensorType};

pub(crate) fn softmax(
    op: &Softmax,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let x = elems::<f32>(inputs[0], "softmax")?;
    let shape = inputs[0].shape();
    let len = shape[op.axis];
    // Elements between consecutive entries of one softmax row.
    let inner = numel(&shape[op.axis + 1..])?;
    let mut y = alloc(x.len(), 0f32)?;
    let mut row = Vec::with_capacity(len);
    for (xs, ys) in x
        .chunks_exact((len * inner).max(1))
        .zip(y.chunks_exact_mut((len * inner).max(1)))
    {
        for i in 0..inner {
            row.clear();
            row.extend((0..len).map(|j| f64::from(xs[j * inner + i])));
            let max = row.iter().fold(
                f64::NEG_INFINITY,
                |m, &v| if v > m || v.is_nan() { v } else { m },
            );
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for (j, &e) in row.iter().enumerate() {
                ys[j * inner + i] = (e / sum) as f32;
            }
        }
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::Softmax;
    use dync_ir::{Op, Tensor};

    fn sm(axis: usize, x: &Tensor) -> Vec<f32> {
        f32s(&run_op(Op::Softmax(Softmax { axis }), &[x]))
    }

    #[test]
    fn onnx_example() {
        // Operators.md, Softmax: [[-1, 0, 1]].
        let y = sm(1, &f32t(&[1, 3], &[-1., 0., 1.]));
        assert_close(&y, &[0.090_030_57, 0.244_728_48, 0.665_240_94], 1e-7);
    }

    #[test]
    fn along_a_middle_axis() {
        // Axis 0 of [2,2]: each column normalizes separately.
        let y = sm(0, &f32t(&[2, 2], &[0., 1., 0., 3.]));
        let e2 = (2f64).exp();
        let want = [0.5, (1. / (1. + e2)) as f32, 0.5, (e2 / (1. + e2)) as f32];
        assert_close(&y, &want, 1e-7);
    }

    #[test]
    fn large_values_do_not_overflow() {
        let y = sm(0, &f32t(&[3], &[1000., 1000., f32::NEG_INFINITY]));
        assert_eq!(y, [0.5, 0.5, 0.]);
        let y = sm(0, &f32t(&[2], &[f32::NAN, 1.]));
        assert!(y.iter().all(|v| v.is_nan()));
    }
}
