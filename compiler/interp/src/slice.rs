//! `slice`: strided sub-range on every dim, ONNX `Slice` (Operators.md, Slice-13) with starts,
//! ends and steps already normalized and clamped at import (`Slice::clamp`): along dim i the
//! result takes x indices start, start + step, … while before end (negative steps walk
//! backwards). Any dtype. Evaluated as a strided view starting at Σ start_i·stride_i with
//! strides scaled by the steps.

use crate::broadcast::{offsets, row_major_strides};
use crate::data::{collect, elems, for_dtype, numel, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::Slice;
use dync_ir::{Tensor, TensorType};

pub(crate) fn slice(op: &Slice, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, EvalError> {
    for_dtype!(out.dtype, T => typed::<T>(op, inputs[0], out))
}

fn typed<T: Elem>(op: &Slice, x: &Tensor, out: &TensorType) -> Result<Tensor, EvalError> {
    let xv = elems::<T>(x, "slice")?;
    let n = numel(&out.shape)?;
    // `eval` only runs kernels for non-empty results: every dim takes at least one index, so
    // every start is a valid index of its dim.
    let own = row_major_strides(x.shape());
    let strides = own
        .iter()
        .zip(&op.steps)
        .map(|(&s, &st)| s * st as isize)
        .collect();
    let start = own
        .iter()
        .zip(&op.starts)
        .map(|(&s, &st)| s * st as isize)
        .sum();
    let y = collect(n, offsets(&out.shape, strides, start).map(|o| Ok(xv[o])))?;
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::Slice;
    use dync_ir::{Op, Tensor};

    fn sl(starts: &[i64], ends: &[i64], steps: &[i64], x: &Tensor) -> Tensor {
        let op = Slice {
            starts: starts.to_vec(),
            ends: ends.to_vec(),
            steps: steps.to_vec(),
        };
        run_op(Op::Slice(op), &[x])
    }

    #[test]
    fn forward_ranges() {
        // x[0:2, 1:3] of a 3x4 iota.
        let y = sl(&[0, 1], &[2, 3], &[1, 1], &iota(&[3, 4]));
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(f32s(&y), [1., 2., 5., 6.]);
        // x[:, ::3] takes columns 0 and 3.
        let y = sl(&[0, 0], &[3, 4], &[1, 3], &iota(&[3, 4]));
        assert_eq!(f32s(&y), [0., 3., 4., 7., 8., 11.]);
    }

    #[test]
    fn negative_steps_walk_backwards() {
        // x[2::-1, 3::-2]: rows 2, 1, 0 and columns 3, 1 (end -1 = "past the beginning").
        let y = sl(&[2, 3], &[-1, -1], &[-1, -2], &iota(&[3, 4]));
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(f32s(&y), [11., 9., 7., 5., 3., 1.]);
    }

    #[test]
    fn onnx_style_bounds_through_clamp() {
        // numpy x[-1:-6:-2] on 0..5 is [4, 2, 0]; x[-3:100] is [2, 3, 4].
        let (s, e) = Slice::clamp(-1, -6, -2, 5).unwrap();
        assert_eq!(f32s(&sl(&[s], &[e], &[-2], &iota(&[5]))), [4., 2., 0.]);
        let (s, e) = Slice::clamp(-3, 100, 1, 5).unwrap();
        assert_eq!(f32s(&sl(&[s], &[e], &[1], &iota(&[5]))), [2., 3., 4.]);
    }

    #[test]
    fn empty_result_and_ints() {
        let y = sl(&[2, 0], &[2, 4], &[1, 1], &iota(&[3, 4]));
        assert_eq!(y.shape(), &[0, 4]);
        let y = sl(&[3], &[0], &[-1], &i64t(&[4], &[1, 2, 3, 4]));
        assert_eq!(y.as_i64().unwrap(), [4, 3, 2]);
    }
}
