//! `pad`: pads or crops every dim, ONNX `Pad` (Operators.md, Pad-21, modes constant, reflect
//! and edge). `pads` = [begin_0..begin_r, end_0..end_r]; any dtype (the constant `value`
//! converts to the dtype as `as` does, bool as `!= 0`).
//!
//! Negative amounts crop first; the positive ones then pad the cropped tensor, as onnxruntime
//! does (numpy's `pad`, behind the ONNX reference, rejects negative amounts). Per dim, the
//! result's coordinate o reads the cropped input at j = o − pad_begin when 0 <= j < m (m the
//! cropped extent); outside, constant mode reads `value`, edge mode the nearest border
//! element, and reflect mode the mirror image without repeating the border (−j before the
//! start, 2(m − 1) − j after the end). Like onnxruntime, reflect padding must be smaller than
//! the cropped extent and edge padding needs a non-empty one; otherwise it is an error.

use crate::data::{elems, for_dtype, numel, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::{Pad, PadMode};
use dync_ir::{Tensor, TensorType};

pub(crate) fn pad(op: &Pad, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, EvalError> {
    for_dtype!(out.dtype, T => typed::<T>(op, inputs[0], out))
}

/// For each result coordinate of dim `dim`, the input index it reads, or `None` for `value`.
/// Arithmetic is in i128, so no extent or amount can overflow it.
fn source_map(
    op: &Pad,
    shape: &[usize],
    dim: usize,
    out_len: usize,
) -> Result<Vec<Option<usize>>, EvalError> {
    let r = shape.len();
    let (begin, end) = (op.pads[dim], op.pads[dim + r]);
    let (d, b, e) = (shape[dim] as i128, i128::from(begin), i128::from(end));
    // The cropped input is [lo, lo + m).
    let lo = (-b).max(0);
    let m = d - lo - (-e).max(0);
    let too_large = |pad: i64| EvalError::PadTooLarge {
        mode: op.mode.name(),
        dim,
        pad,
        extent: usize::try_from(m).unwrap_or(0),
    };
    for pad in [begin, end] {
        let fits = match op.mode {
            PadMode::Constant => true,
            PadMode::Edge => pad <= 0 || m > 0,
            PadMode::Reflect => pad <= 0 || i128::from(pad) < m,
        };
        if !fits {
            return Err(too_large(pad));
        }
    }
    let to_index = |j: i128| usize::try_from(lo + j).map_err(|_| EvalError::Overflow("pad"));
    (0..out_len)
        .map(|o| {
            let j = o as i128 - b.max(0);
            if (0..m).contains(&j) {
                return to_index(j).map(Some);
            }
            match op.mode {
                PadMode::Constant => Ok(None),
                PadMode::Edge => to_index(j.clamp(0, m - 1)).map(Some),
                PadMode::Reflect => to_index(if j < 0 { -j } else { 2 * (m - 1) - j }).map(Some),
            }
        })
        .collect()
}

fn typed<T: Elem>(op: &Pad, x: &Tensor, out: &TensorType) -> Result<Tensor, EvalError> {
    let xv = elems::<T>(x, "pad")?;
    let n = numel(&out.shape)?;
    let maps = (0..out.shape.len())
        .map(|d| source_map(op, x.shape(), d, out.shape[d]))
        .collect::<Result<Vec<_>, _>>()?;
    let strides = dync_ir::tensor::strides(x.shape());
    let mut y = Vec::new();
    y.try_reserve_exact(n).map_err(|_| EvalError::Alloc(n))?;
    fill(&maps, &strides, xv, T::from_f32(op.value), Some(0), &mut y);
    tensor(&out.shape, y)
}

/// Appends, in row-major order, the result elements over the remaining dims (`maps`, one
/// source map each), reading the input at `base` plus their offsets; `base` is `None` once an
/// outer coordinate reads the constant.
fn fill<T: Elem>(
    maps: &[Vec<Option<usize>>],
    strides: &[usize],
    xv: &[T],
    value: T,
    base: Option<usize>,
    y: &mut Vec<T>,
) {
    let Some((map, inner_maps)) = maps.split_first() else {
        y.push(base.map_or(value, |b| xv[b]));
        return;
    };
    for &src in map {
        let b = base.zip(src).map(|(b, s)| b + s * strides[0]);
        fill(inner_maps, &strides[1..], xv, value, b, y);
    }
}

#[cfg(test)]
mod tests {
    use crate::error::EvalError;
    use crate::testutil::*;
    use dync_ir::ops::{Pad, PadMode};
    use dync_ir::{Op, Tensor};

    fn pad(pads: &[i64], mode: PadMode, value: f32, x: &Tensor) -> Result<Tensor, EvalError> {
        try_eval(
            Op::Pad(Pad {
                pads: pads.to_vec(),
                mode,
                value,
            }),
            &[x],
        )
    }

    fn example() -> Tensor {
        f32t(&[3, 2], &[1., 1.2, 2.3, 3.4, 4.5, 5.7])
    }

    #[test]
    fn onnx_examples_three_modes() {
        // Operators.md, Pad: pads [0, 2, 0, 0] on [[1, 1.2], [2.3, 3.4], [4.5, 5.7]].
        let y = pad(&[0, 2, 0, 0], PadMode::Constant, 0., &example()).unwrap();
        assert_eq!(y.shape(), &[3, 4]);
        assert_eq!(
            f32s(&y),
            [0., 0., 1., 1.2, 0., 0., 2.3, 3.4, 0., 0., 4.5, 5.7]
        );
        // (The reflect example pads 2 on an extent-2 dim, which the IR rejects as onnxruntime
        // does; pad 1 instead.)
        let y = pad(&[0, 1, 0, 0], PadMode::Reflect, 0., &example()).unwrap();
        assert_eq!(f32s(&y), [1.2, 1., 1.2, 3.4, 2.3, 3.4, 5.7, 4.5, 5.7]);
        let y = pad(&[0, 2, 0, 0], PadMode::Edge, 0., &example()).unwrap();
        assert_eq!(
            f32s(&y),
            [1., 1., 1., 1.2, 2.3, 2.3, 2.3, 3.4, 4.5, 4.5, 4.5, 5.7]
        );
    }

    #[test]
    fn reflect_on_both_dims() {
        // numpy.pad(arange(9).reshape(3,3), ((1,2),(2,1)), 'reflect').
        let y = pad(&[1, 2, 2, 1], PadMode::Reflect, 0., &iota(&[3, 3])).unwrap();
        assert_eq!(y.shape(), &[6, 6]);
        #[rustfmt::skip]
        let want = [5., 4., 3., 4., 5., 4.,  2., 1., 0., 1., 2., 1.,  5., 4., 3., 4., 5., 4.,
                    8., 7., 6., 7., 8., 7.,  5., 4., 3., 4., 5., 4.,  2., 1., 0., 1., 2., 1.];
        assert_eq!(f32s(&y), want);
    }

    #[test]
    fn negative_pads_crop_first() {
        let x = f32t(&[4], &[1., 2., 3., 4.]);
        let y = pad(&[-1, 2], PadMode::Edge, 0., &x).unwrap();
        assert_eq!(f32s(&y), [2., 3., 4., 4., 4.]);
        let y = pad(&[1, -2], PadMode::Constant, 9., &x).unwrap();
        assert_eq!(f32s(&y), [9., 1., 2.]);
        // Reflection happens inside the cropped range [0, 1, 2, 3] of 0..5.
        let y = pad(&[2, -1], PadMode::Reflect, 0., &iota(&[5])).unwrap();
        assert_eq!(f32s(&y), [2., 1., 0., 1., 2., 3.]);
    }

    #[test]
    fn pads_too_large_for_the_cropped_extent_are_errors() {
        let err = pad(&[-2, 1], PadMode::Edge, 0., &iota(&[2])).unwrap_err();
        assert_eq!(
            err,
            EvalError::PadTooLarge {
                mode: "edge",
                dim: 0,
                pad: 1,
                extent: 0
            }
        );
        // Reflecting by 1 needs two elements; cropping 0..3 by 2 leaves one.
        let err = pad(&[-2, 1], PadMode::Reflect, 0., &iota(&[3])).unwrap_err();
        assert_eq!(
            err,
            EvalError::PadTooLarge {
                mode: "reflect",
                dim: 0,
                pad: 1,
                extent: 1
            }
        );
        // Constant mode is fine.
        assert_eq!(
            f32s(&pad(&[-2, 1], PadMode::Constant, 7., &iota(&[2])).unwrap()),
            [7.]
        );
    }

    #[test]
    fn integer_value_converts() {
        let y = pad(&[1, 1], PadMode::Constant, 2.7, &i64t(&[1], &[5])).unwrap();
        assert_eq!(y.as_i64().unwrap(), [2, 5, 2]);
    }
}
