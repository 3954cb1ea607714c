//! `avg_pool` and `max_pool`: 2-D windowed pooling over NCHW f32, ONNX `AveragePool` and
//! `MaxPool` (Operators.md, AveragePool-19, MaxPool-12) with `pads` [top, left, bottom, right].
//!
//! The window of output position o along a dim covers padded coordinates o·stride + k·dilation
//! (k < kernel). The result extents (including `ceil_mode`) come from the op's shape inference;
//! with `ceil_mode` the last window may reach past the end padding. Cells there never count.
//! - max_pool: the maximum over the window's input cells (padding never wins, as if −inf);
//!   NaN inputs are skipped, as in the ONNX reference, and a window whose cells are all NaN
//!   gives NaN, as in onnxruntime (not −inf, a value no cell holds).
//! - avg_pool: the f64 sum over the window's input cells divided by the number of input cells,
//!   or with `count_include_pad` by the number of window cells inside the padded extent
//!   (input plus both pads), as PyTorch and onnxruntime do. (The ONNX reference shifts windows
//!   when ceil_mode needs two or more extra cells, i.e. only for strides of 3 or more; dync does
//!   not copy that quirk.)

use crate::data::{alloc, dims, elems, tensor};
use crate::error::EvalError;
use dync_ir::ops::{AvgPool, MaxPool};
use dync_ir::{Tensor, TensorType};

/// Pooling geometry of one spatial dim.
struct Span {
    input: usize,
    pad_begin: usize,
    pad_end: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
}

/// The input indices a window covers (padding skipped) and how many of its cells lie inside
/// the padded extent.
struct Window {
    taps: Vec<usize>,
    padded_cells: usize,
}

impl Span {
    fn window(&self, o: usize) -> Window {
        let start = o * self.stride;
        let padded_len = self.pad_begin + self.input + self.pad_end;
        let mut w = Window {
            taps: Vec::new(),
            padded_cells: 0,
        };
        for k in 0..self.kernel {
            let p = start + k * self.dilation;
            if p < padded_len {
                w.padded_cells += 1;
            }
            if (self.pad_begin..self.pad_begin + self.input).contains(&p) {
                w.taps.push(p - self.pad_begin);
            }
        }
        w
    }
}

/// Applies `f(plane, rows, cols)` to every window of every (image, channel) plane.
fn pool(
    x: &Tensor,
    out: &TensorType,
    spans: [Span; 2],
    f: impl Fn(&[f32], &Window, &Window) -> f32,
) -> Result<Tensor, EvalError> {
    let xv = elems::<f32>(x, "pool")?;
    let [_, _, h, w] = dims(x.shape())?;
    let [n, c, oh, ow] = dims(&out.shape)?;
    let rows: Vec<Window> = (0..oh).map(|o| spans[0].window(o)).collect();
    let cols: Vec<Window> = (0..ow).map(|o| spans[1].window(o)).collect();
    let mut y = alloc(n * c * oh * ow, 0f32)?;
    for (i, ys) in y.chunks_exact_mut(oh * ow).enumerate() {
        let plane = &xv[i * h * w..][..h * w];
        for (r, y_row) in rows.iter().zip(ys.chunks_exact_mut(ow)) {
            for (cw, d) in cols.iter().zip(y_row) {
                *d = f(plane, r, cw);
            }
        }
    }
    tensor(&out.shape, y)
}

fn spans(
    x: &Tensor,
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
) -> [Span; 2] {
    let s = x.shape();
    [0, 1].map(|i| Span {
        input: s[2 + i],
        pad_begin: pads[i],
        pad_end: pads[2 + i],
        kernel: kernel[i],
        stride: strides[i],
        dilation: dilations[i],
    })
}

pub(crate) fn avg_pool(
    op: &AvgPool,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let x = inputs[0];
    let w = x.shape()[3];
    let sp = spans(x, op.kernel, op.strides, op.pads, [1, 1]);
    pool(x, out, sp, |plane, rows, cols| {
        let mut sum = 0f64;
        for &r in &rows.taps {
            for &c in &cols.taps {
                sum += f64::from(plane[r * w + c]);
            }
        }
        let count = if op.count_include_pad {
            rows.padded_cells * cols.padded_cells
        } else {
            rows.taps.len() * cols.taps.len()
        };
        (sum / count as f64) as f32
    })
}

pub(crate) fn max_pool(
    op: &MaxPool,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let x = inputs[0];
    let w = x.shape()[3];
    let sp = spans(x, op.kernel, op.strides, op.pads, op.dilations);
    pool(x, out, sp, |plane, rows, cols| {
        // `f32::max` returns the other operand when one is NaN: starting from NaN, NaN cells
        // are skipped and an all-NaN window stays NaN.
        let mut m = f32::NAN;
        for &r in &rows.taps {
            for &c in &cols.taps {
                m = m.max(plane[r * w + c]);
            }
        }
        m
    })
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::{AvgPool, MaxPool};
    use dync_ir::{Op, Tensor};

    fn avg(
        kernel: [usize; 2],
        strides: [usize; 2],
        pads: [usize; 4],
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> Op {
        Op::AvgPool(AvgPool {
            kernel,
            strides,
            pads,
            ceil_mode,
            count_include_pad,
        })
    }

    fn max(
        kernel: [usize; 2],
        strides: [usize; 2],
        pads: [usize; 4],
        dilations: [usize; 2],
        ceil_mode: bool,
    ) -> Op {
        Op::MaxPool(MaxPool {
            kernel,
            strides,
            pads,
            dilations,
            ceil_mode,
        })
    }

    /// 1, 2, ..., n² as a 1x1xnxn tensor (the ONNX examples' input).
    fn square(n: usize) -> Tensor {
        f32t(
            &[1, 1, n, n],
            &(1..=n * n).map(|v| v as f32).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn avg_pool_pads_excluding_padding() {
        // ONNX averagepool_2d_pads.
        let y = run_op(avg([3, 3], [1, 1], [2; 4], false, false), &[&square(5)]);
        assert_eq!(y.shape(), &[1, 1, 7, 7]);
        #[rustfmt::skip]
        let want = [1., 1.5, 2., 3., 4., 4.5, 5., 3.5, 4., 4.5, 5.5, 6.5, 7., 7.5,
                    6., 6.5, 7., 8., 9., 9.5, 10., 11., 11.5, 12., 13., 14., 14.5, 15.,
                    16., 16.5, 17., 18., 19., 19.5, 20., 18.5, 19., 19.5, 20.5, 21.5, 22., 22.5,
                    21., 21.5, 22., 23., 24., 24.5, 25.];
        assert_eq!(f32s(&y), want);
    }

    #[test]
    fn avg_pool_pads_counting_padding() {
        // ONNX averagepool_2d_pads_count_include_pad: first two rows of the 7x7 result.
        let y = f32s(&run_op(
            avg([3, 3], [1, 1], [2; 4], false, true),
            &[&square(5)],
        ));
        let want_rows = [
            1. / 9.,
            3. / 9.,
            6. / 9.,
            9. / 9.,
            12. / 9.,
            9. / 9.,
            5. / 9.,
            7. / 9.,
            16. / 9.,
            27. / 9.,
            33. / 9.,
            39. / 9.,
            28. / 9.,
            15. / 9.,
        ];
        assert_close(&y[..14], &want_rows, 1e-7);
        assert_eq!(y[24], 13.0);
    }

    #[test]
    fn avg_pool_ceil_mode() {
        // ONNX averagepool_2d_ceil.
        let y = run_op(avg([3, 3], [2, 2], [0; 4], true, false), &[&square(4)]);
        assert_eq!(f32s(&y), [6., 7.5, 12., 13.5]);
    }

    #[test]
    fn ceil_mode_window_past_the_end_padding_is_not_counted() {
        // Width 4, kernel 3, stride 2, pads 1/1, ceil: windows start at padded 0, 2, 4; the last
        // covers x[3], the right pad and one cell beyond it.
        let x = f32t(&[1, 1, 1, 4], &[1., 2., 3., 4.]);
        let y = run_op(avg([1, 3], [1, 2], [0, 1, 0, 1], true, true), &[&x]);
        assert_eq!(f32s(&y), [1., 3., 2.]);
        let y = run_op(avg([1, 3], [1, 2], [0, 1, 0, 1], true, false), &[&x]);
        assert_eq!(f32s(&y), [1.5, 3., 4.]);
    }

    #[test]
    fn max_pool_pads() {
        // ONNX maxpool_2d_pads.
        let y = run_op(max([5, 5], [1, 1], [2; 4], [1, 1], false), &[&square(5)]);
        #[rustfmt::skip]
        let want = [13., 14., 15., 15., 15., 18., 19., 20., 20., 20., 23., 24., 25., 25., 25.,
                    23., 24., 25., 25., 25., 23., 24., 25., 25., 25.];
        assert_eq!(f32s(&y), want);
    }

    #[test]
    fn max_pool_ceil_strides_dilations() {
        // ONNX maxpool_2d_ceil, maxpool_2d_dilations, maxpool_2d_precomputed_strides.
        let y = run_op(max([3, 3], [2, 2], [0; 4], [1, 1], true), &[&square(4)]);
        assert_eq!(f32s(&y), [11., 12., 15., 16.]);
        let y = run_op(max([2, 2], [1, 1], [0; 4], [2, 2], false), &[&square(4)]);
        assert_eq!(f32s(&y), [11., 12., 15., 16.]);
        let y = run_op(max([2, 2], [2, 2], [0; 4], [1, 1], false), &[&square(5)]);
        assert_eq!(f32s(&y), [7., 9., 17., 19.]);
        // Dilated window partly in padding, with ceil_mode.
        let y = run_op(max([3, 3], [2, 2], [1; 4], [2, 2], true), &[&square(5)]);
        assert_eq!(f32s(&y), [19., 19., 19., 19.]);
    }

    #[test]
    fn max_pool_skips_nan_and_padding_with_negative_inputs() {
        let x = f32t(&[1, 1, 2, 2], &[-5., f32::NAN, -7., -6.]);
        let y = run_op(max([2, 2], [1, 1], [1, 1, 0, 0], [1, 1], false), &[&x]);
        // Windows at the top-left see padding and x[0,0] = -5 only; padding does not win.
        assert_eq!(f32s(&y), [-5., -5., -5., -5.]);
    }

    #[test]
    fn max_pool_of_nan_only_is_nan() {
        let x = f32t(
            &[1, 1, 2, 4],
            &[
                f32::NAN,
                f32::NAN,
                -1.,
                f32::NAN,
                f32::NAN,
                f32::NAN,
                f32::NAN,
                f32::NEG_INFINITY,
            ],
        );
        let y = f32s(&run_op(max([2, 2], [2, 2], [0; 4], [1, 1], false), &[&x]));
        assert!(y[0].is_nan(), "{y:?}");
        assert_eq!(y[1], -1.);
    }
}
