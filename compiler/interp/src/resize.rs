//! `resize`: nearest or (multi)linear resampling of an f32 tensor to `sizes`, ONNX `Resize`
//! (Operators.md, Resize-19, without antialias, cubic or tf_crop_and_resize, which import
//! rejects), following the ONNX reference implementation (`onnx/reference/ops/op_resize.py`).
//!
//! Interpolation is separable: each dim whose size or scale changes (a dim with scale 1 and
//! unchanged size is skipped, as in the reference) is resampled in turn, in f64, rounding to
//! f32 once at the end. Output coordinate y of a dim with input extent n, output extent m and
//! scale s (the `scales` attribute, as f64; see `Resize::effective_scale` for scales derived from
//! sizes) maps to the input coordinate
//! - half_pixel: (y + 0.5)/s − 0.5
//! - pytorch_half_pixel: (y + 0.5)/s − 0.5, or 0 when m = 1
//! - align_corners: y·(n − 1)/(s·n − 1), or 0 when m = 1 (the reference divides by s·n − 1,
//!   not m − 1: they differ when s·n is not an integer)
//! - asymmetric: y/s
//! - half_pixel_symmetric: c·(1 − m/(s·n)) + (y + 0.5)/s − 0.5 with c = n/2.
//!
//! Nearest picks index x when x is an integer, otherwise floor(x) or floor(x) + 1 by
//! `nearest` (round_prefer_floor: up when frac > 0.5; round_prefer_ceil: up when frac >= 0.5;
//! floor; ceil), clamped to [0, n − 1]. Linear blends floor(x) and floor(x) + 1 with weights
//! 1 − frac and frac, each index clamped to [0, n − 1] (so coordinates outside the input read
//! the border, as the reference's edge padding does).

use crate::data::{alloc, elems, numel, tensor};
use crate::error::EvalError;
use dync_ir::ops::{Resize, Taps};
use dync_ir::{Tensor, TensorType};

/// Resamples dim `axis` of `x` (shape `shape`) to extent `m` with per-coordinate taps.
fn resample_axis(
    x: &[f64],
    shape: &[usize],
    axis: usize,
    m: usize,
    taps: &[Taps],
) -> Result<Vec<f64>, EvalError> {
    let n = shape[axis];
    let outer = numel(&shape[..axis])?;
    let inner = numel(&shape[axis + 1..])?;
    // Intermediate shapes mix input and output extents: their size is checked anew.
    let mut resized = shape.to_vec();
    resized[axis] = m;
    let mut y = alloc(numel(&resized)?, 0f64)?;
    for o in 0..outer {
        for (j, tj) in taps.iter().enumerate() {
            let dst = &mut y[(o * m + j) * inner..][..inner];
            // Zero-weight taps are skipped, so an infinite neighbour never turns into NaN.
            for &(i, w) in tj.iter().filter(|t| t.1 != 0.0) {
                let src = &x[(o * n + i) * inner..][..inner];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d += w * v;
                }
            }
        }
    }
    Ok(y)
}

pub(crate) fn resize(
    op: &Resize,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let x = elems::<f32>(inputs[0], "resize")?;
    let mut shape = inputs[0].shape().to_vec();
    let mut cur: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for axis in 0..shape.len() {
        let (n, m) = (shape[axis], op.sizes[axis]);
        if !op.resamples(axis, n) {
            continue;
        }
        // n > 0: shape inference lets an empty dim resize only to an empty one, and `eval`
        // only runs kernels for non-empty results.
        let t: Vec<Taps> = (0..m).map(|y| op.taps(axis, y, n)).collect();
        cur = resample_axis(&cur, &shape, axis, m, &t)?;
        shape[axis] = m;
    }
    tensor(&out.shape, cur.iter().map(|&v| v as f32).collect())
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::{CoordMode, NearestMode, Resize, ResizeMode};
    use dync_ir::{Op, Tensor};

    fn rs(
        mode: ResizeMode,
        coord: CoordMode,
        nearest: NearestMode,
        sizes: &[usize],
        scales: &[f32],
        x: &Tensor,
    ) -> Vec<f32> {
        let op = Resize {
            mode,
            coord,
            nearest,
            sizes: sizes.to_vec(),
            scales: scales.to_vec(),
        };
        let y = run_op(Op::Resize(op), &[x]);
        assert_eq!(y.shape(), sizes);
        f32s(&y)
    }

    /// 1, 2, ..., 16 as [1,1,4,4] (the ONNX Resize examples' input).
    fn x4() -> Tensor {
        f32t(
            &[1, 1, 4, 4],
            &(1..=16).map(|v| v as f32).collect::<Vec<_>>(),
        )
    }

    fn x2() -> Tensor {
        f32t(&[1, 1, 2, 2], &[1., 2., 3., 4.])
    }

    use CoordMode::*;
    use NearestMode::*;
    use ResizeMode::*;

    #[test]
    fn upsample_nearest_half_pixel_and_asymmetric() {
        // ONNX resize_upsample_scales_nearest: scales [1, 1, 2, 3], default half_pixel.
        let s = [1., 1., 2., 3.];
        let y = rs(
            Nearest,
            HalfPixel,
            RoundPreferFloor,
            &[1, 1, 4, 6],
            &s,
            &x2(),
        );
        #[rustfmt::skip]
        let want = [1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2.,
                    3., 3., 3., 4., 4., 4., 3., 3., 3., 4., 4., 4.];
        assert_eq!(y, want);
        // Asymmetric: columns sample x = y/3, i.e. 0, 1/3, 2/3 (rounds up), 1, 4/3, 5/3 (clamped).
        let y = rs(
            Nearest,
            Asymmetric,
            RoundPreferFloor,
            &[1, 1, 4, 6],
            &s,
            &x2(),
        );
        assert_eq!(y[..6], [1., 1., 2., 2., 2., 2.]);
    }

    #[test]
    fn downsample_nearest() {
        // ONNX resize_downsample_scales_nearest: [1,1,2,4] 1..8, scales [1, 1, 0.6, 0.6].
        let x = f32t(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let y = rs(
            Nearest,
            HalfPixel,
            RoundPreferFloor,
            &[1, 1, 1, 2],
            &[1., 1., 0.6, 0.6],
            &x,
        );
        assert_eq!(y, [1., 3.]);
    }

    #[test]
    fn nearest_modes_on_half_pixel_upsampling() {
        // ONNX resize_upsample_sizes_nearest_{ceil_half_pixel,floor_align_corners,
        // round_prefer_ceil_asymmetric}, first rows: 4x4 to 8x8.
        let s = [1., 1., 2., 2.];
        let y = rs(Nearest, HalfPixel, Ceil, &[1, 1, 8, 8], &s, &x4());
        assert_eq!(y[..8], [1., 2., 2., 3., 3., 4., 4., 4.]);
        assert_eq!(y[56..], [13., 14., 14., 15., 15., 16., 16., 16.]);
        let y = rs(Nearest, AlignCorners, Floor, &[1, 1, 8, 8], &s, &x4());
        assert_eq!(y[..8], [1., 1., 1., 2., 2., 3., 3., 4.]);
        let y = rs(
            Nearest,
            Asymmetric,
            RoundPreferCeil,
            &[1, 1, 8, 8],
            &s,
            &x4(),
        );
        assert_eq!(y[..8], [1., 2., 2., 3., 3., 4., 4., 4.]);
        assert_eq!(y[8..16], [5., 6., 6., 7., 7., 8., 8., 8.]);
    }

    #[test]
    fn upsample_linear_half_pixel_and_align_corners() {
        // ONNX resize_upsample_scales_linear: 2x2 to 4x4, half_pixel.
        let y = rs(
            Linear,
            HalfPixel,
            RoundPreferFloor,
            &[1, 1, 4, 4],
            &[1., 1., 2., 2.],
            &x2(),
        );
        #[rustfmt::skip]
        let want = [1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5,
                    2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.];
        assert_close(&y, &want, 1e-7);
        // ONNX resize_upsample_scales_linear_align_corners.
        let y = rs(
            Linear,
            AlignCorners,
            RoundPreferFloor,
            &[1, 1, 4, 4],
            &[1., 1., 2., 2.],
            &x2(),
        );
        #[rustfmt::skip]
        let want = [1., 4. / 3., 5. / 3., 2., 5. / 3., 2., 7. / 3., 8. / 3.,
                    7. / 3., 8. / 3., 3., 10. / 3., 3., 10. / 3., 11. / 3., 4.];
        assert_close(&y, &want, 1e-6);
    }

    #[test]
    fn downsample_linear_variants() {
        let x = f32t(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let s = [1., 1., 0.6, 0.6];
        // ONNX resize_downsample_scales_linear: [[2.6666665, 4.3333331]].
        let y = rs(Linear, HalfPixel, RoundPreferFloor, &[1, 1, 1, 2], &s, &x);
        assert_close(&y, &[2.666_666_5, 4.333_333], 1e-6);
        // ONNX resize_downsample_scales_linear_align_corners: [[1, 3.142857]] (divides by
        // s·n − 1 = 1.4, not m − 1 = 1).
        let y = rs(
            Linear,
            AlignCorners,
            RoundPreferFloor,
            &[1, 1, 1, 2],
            &s,
            &x,
        );
        assert_close(&y, &[1., 1. + 3. / 1.4], 1e-6);
        // ONNX resize_downsample_scales_linear_half_pixel_symmetric: [1,1,1,4] 1..4, scale 0.6.
        let x = f32t(&[1, 1, 1, 4], &[1., 2., 3., 4.]);
        let y = rs(
            Linear,
            HalfPixelSymmetric,
            RoundPreferFloor,
            &[1, 1, 1, 2],
            &[1., 1., 1., 0.6],
            &x,
        );
        assert_close(&y, &[1.666_666_7, 3.333_333_3], 1e-6);
    }

    #[test]
    fn pytorch_half_pixel_to_size_one() {
        // Output extent 1 samples coordinate 0 (half_pixel would sample the middle).
        let x = f32t(&[1, 4], &[1., 2., 3., 4.]);
        let y = rs(
            Linear,
            PytorchHalfPixel,
            RoundPreferFloor,
            &[1, 1],
            &[1., 0.25],
            &x,
        );
        assert_eq!(y, [1.]);
        let y = rs(
            Linear,
            HalfPixel,
            RoundPreferFloor,
            &[1, 1],
            &[1., 0.25],
            &x,
        );
        assert_eq!(y, [2.5]);
        // ONNX resize_downsample_sizes_linear_pytorch_half_pixel: 4x4 to 3x1.
        let y = rs(
            Linear,
            PytorchHalfPixel,
            RoundPreferFloor,
            &[1, 1, 3, 1],
            &[1., 1., 0.75, 0.25],
            &x4(),
        );
        assert_close(&y, &[1.666_666_7, 7., 12.333_333], 1e-6);
    }

    #[test]
    fn scales_derived_from_sizes_use_the_exact_ratio() {
        // sizes 5 -> 9: the importer stores f32(9/5) = 1.79999995; the reference uses 9/5, so
        // output 4 samples exactly (4.5)/1.8 - 0.5 = 2 (an integer: ceil keeps it).
        let x = iota(&[1, 5]);
        let y = rs(Nearest, HalfPixel, Ceil, &[1, 9], &[1., 9. / 5.], &x);
        assert_eq!(y, [0., 1., 1., 2., 2., 3., 4., 4., 4.]);
    }

    #[test]
    fn identity_dims_are_untouched_and_empty_works() {
        let x = iota(&[2, 3]);
        let y = rs(Linear, HalfPixel, RoundPreferFloor, &[2, 3], &[1., 1.], &x);
        assert_eq!(y, f32s(&x));
        let e = f32t(&[0, 3], &[]);
        let y = rs(Nearest, HalfPixel, RoundPreferFloor, &[0, 6], &[1., 2.], &e);
        assert!(y.is_empty());
    }
}
