//! `conv`: 2-D convolution (cross-correlation) over NCHW f32, ONNX `Conv` (Operators.md,
//! Conv-11/22) with `pads` [top, left, bottom, right], strides, dilations, groups, optional bias:
//!
//! y[n, o, oy, ox] = bias[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · x[n, g·C/G + c, oy·sh + ky·dh − pt, ox·sw + kx·dw − pl]
//!
//! where g = o / (O/G) is o's group and x reads 0 outside the input (zero padding), rounded to
//! f32, then the fused epilogue in the op's order ([`epilogue`]): + residual, clamp,
//! activation, each rounded to f32 as the unfused ops would be. With `in_scale`, x is first
//! multiplied by the scale s[n, c] (rounded to f32, as the folded multiply).
//!
//! Evaluated as im2col + matrix product: per image, group and tile of output positions p, the
//! column matrix col[(c, ky, kx), p] holds the input value each kernel tap sees at p; the
//! group's weights [O/G, C/G·kh·kw] times col are the outputs (f64 accumulation, see
//! `matmul_acc`). Tiling over p bounds the column buffer and keeps it in cache.

use crate::data::{alloc, dims, elems, numel, tensor};
use crate::error::EvalError;
use crate::matmul::matmul_acc;
use crate::unary::apply;
use dync_ir::ops::{Act, Conv, UnaryKind};
use dync_ir::{Tensor, TensorType};

/// The fused epilogue of `op` on `v` (conv plus bias, in f32) with residual value `r`:
/// act(clamp(v + r)), each step rounded to f32 like the unfused ops.
fn epilogue(op: &Conv, v: f32, r: Option<f32>) -> f32 {
    let v = r.map_or(v, |r| v + r);
    let v = op.clamp.map_or(v, |c| c.apply(v));
    match op.act {
        None => v,
        Some(Act::Silu) => v * apply(UnaryKind::Sigmoid, f64::from(v)) as f32,
        Some(Act::HardSwish) => apply(UnaryKind::HardSwish, f64::from(v)) as f32,
    }
}

/// Upper bound (in elements) of the column tile, unless a single column is larger.
const COL_TILE_ELEMS: usize = 1 << 18;

/// Extents of one group's im2col problem.
struct Geometry {
    /// Input height and width.
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    /// Output width (positions are numbered p = oy·ow + ox).
    ow: usize,
    strides: [usize; 2],
    dilations: [usize; 2],
    /// Top and left padding.
    pad: [usize; 2],
}

impl Geometry {
    /// Fills `col` ([C/G·kh·kw, t] row-major) with the taps of output positions p0..p0+t, reading
    /// the group's input planes `x` ([C/G, h, w]).
    ///
    /// Coordinates are computed in the padded frame (`oy·sh + ky·dh`), which the op's shape
    /// inference bounds by the padded extent, so no arithmetic here can overflow.
    fn fill_col(&self, col: &mut [f32], x: &[f32], p0: usize, t: usize) {
        let taps = self.kh * self.kw;
        for (row, dst) in col.chunks_exact_mut(t).enumerate() {
            let (c, ky, kx) = (row / taps, row % taps / self.kw, row % self.kw);
            let plane = &x[c * self.h * self.w..][..self.h * self.w];
            let (mut oy, mut ox) = (p0 / self.ow, p0 % self.ow);
            for d in dst.iter_mut() {
                let yy = oy * self.strides[0] + ky * self.dilations[0];
                let xx = ox * self.strides[1] + kx * self.dilations[1];
                let inside = (self.pad[0]..self.pad[0] + self.h).contains(&yy)
                    && (self.pad[1]..self.pad[1] + self.w).contains(&xx);
                *d = if inside {
                    plane[(yy - self.pad[0]) * self.w + (xx - self.pad[1])]
                } else {
                    0.0
                };
                ox += 1;
                if ox == self.ow {
                    ox = 0;
                    oy += 1;
                }
            }
        }
    }
}

pub(crate) fn conv(op: &Conv, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, EvalError> {
    let x = elems::<f32>(inputs[0], "conv")?;
    let w = elems::<f32>(inputs[1], "conv")?;
    let operand = |i: Option<usize>| i.map(|i| elems::<f32>(inputs[i], "conv")).transpose();
    let bias = operand(op.bias_index(inputs.len()))?;
    let residual = operand(op.residual_index(inputs.len()))?;
    let [n, c, h, wd] = dims(inputs[0].shape())?;
    // `in_scale`: the input scaled per image and channel first, as the folded multiply did.
    let scaled = match operand(op.scale_index(inputs.len()))? {
        Some(s) => {
            let mut v = alloc(x.len(), 0f32)?;
            for (i, (d, &e)) in v.iter_mut().zip(x).enumerate() {
                *d = e * s[i / (h * wd).max(1)];
            }
            Some(v)
        }
        None => None,
    };
    let x = scaled.as_deref().unwrap_or(x);
    let [o, cg, kh, kw] = dims(inputs[1].shape())?;
    let [_, _, oh, ow] = dims(&out.shape)?;
    let groups = op.group;
    let og = o / groups;
    let k = cg * kh * kw;
    let positions = oh * ow;
    let geom = Geometry {
        h,
        w: wd,
        kh,
        kw,
        ow,
        strides: op.strides,
        dilations: op.dilations,
        pad: [op.pads[0], op.pads[1]],
    };
    let tile = (COL_TILE_ELEMS / k.max(1)).min(positions).max(1);
    let mut y = alloc(numel(&out.shape)?, 0f32)?;
    let mut col = alloc(k * tile, 0f32)?;
    let mut acc = alloc(og * tile, 0f64)?;
    for img in 0..n {
        for g in 0..groups {
            let xg = &x[(img * c + g * cg) * h * wd..][..cg * h * wd];
            let wg = &w[g * og * k..][..og * k];
            for p0 in (0..positions).step_by(tile) {
                let t = tile.min(positions - p0);
                let col = &mut col[..k * t];
                geom.fill_col(col, xg, p0, t);
                let acc = &mut acc[..og * t];
                acc.fill(0.0);
                matmul_acc(wg, col, k, t, acc);
                for (oc, acc_row) in acc.chunks_exact(t).enumerate() {
                    let ch = g * og + oc;
                    let b = bias.map_or(0.0, |b| f64::from(b[ch]));
                    let at = (img * o + ch) * positions + p0;
                    let res = residual.map(|r| &r[at..][..t]);
                    for (i, (d, &a)) in y[at..][..t].iter_mut().zip(acc_row).enumerate() {
                        *d = epilogue(op, (a + b) as f32, res.map(|r| r[i]));
                    }
                }
            }
        }
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::{Act, Binary, BinaryKind, Clamp, Conv, Einsum, Unary, UnaryKind};
    use dync_ir::{Op, Tensor};
    use proptest::prelude::*;

    fn conv_op(strides: [usize; 2], pads: [usize; 4], dilations: [usize; 2], group: usize) -> Conv {
        Conv {
            strides,
            pads,
            dilations,
            group,
            clamp: None,
            residual: false,
            act: None,
            in_scale: false,
        }
    }

    fn conv(strides: [usize; 2], pads: [usize; 4], dilations: [usize; 2], group: usize) -> Op {
        Op::Conv(conv_op(strides, pads, dilations, group))
    }

    fn ones(shape: &[usize]) -> Tensor {
        f32t(shape, &vec![1.0; shape.iter().product()])
    }

    #[test]
    fn onnx_example_with_and_without_padding() {
        // Operators.md, Conv: 5x5 input 0..24 and a 3x3 kernel of ones.
        let x = iota(&[1, 1, 5, 5]);
        let w = ones(&[1, 1, 3, 3]);
        let y = run_op(conv([1, 1], [1, 1, 1, 1], [1, 1], 1), &[&x, &w]);
        assert_eq!(y.shape(), &[1, 1, 5, 5]);
        #[rustfmt::skip]
        let want = [12., 21., 27., 33., 24., 33., 54., 63., 72., 51., 63., 99., 108., 117., 81.,
                    93., 144., 153., 162., 111., 72., 111., 117., 123., 84.];
        assert_eq!(f32s(&y), want);
        let y = run_op(conv([1, 1], [0; 4], [1, 1], 1), &[&x, &w]);
        assert_eq!(f32s(&y), [54., 63., 72., 99., 108., 117., 144., 153., 162.]);
    }

    #[test]
    fn onnx_example_strides_and_asymmetric_padding() {
        // Operators.md, Conv with strides: 7x5 input 0..34, 3x3 ones, strides 2.
        let x = iota(&[1, 1, 7, 5]);
        let w = ones(&[1, 1, 3, 3]);
        let y = run_op(conv([2, 2], [1, 1, 1, 1], [1, 1], 1), &[&x, &w]);
        assert_eq!(y.shape(), &[1, 1, 4, 3]);
        assert_eq!(
            f32s(&y),
            [12., 27., 24., 63., 108., 81., 123., 198., 141., 112., 177., 124.]
        );
        let y = run_op(conv([2, 2], [0; 4], [1, 1], 1), &[&x, &w]);
        assert_eq!(f32s(&y), [54., 72., 144., 162., 234., 252.]);
        // Padding only rows (top 1, bottom 1).
        let y = run_op(conv([2, 2], [1, 0, 1, 0], [1, 1], 1), &[&x, &w]);
        assert_eq!(y.shape(), &[1, 1, 4, 2]);
        assert_eq!(f32s(&y), [21., 33., 99., 117., 189., 207., 171., 183.]);
    }

    #[test]
    fn dilation_spreads_the_kernel() {
        let x = iota(&[1, 1, 4, 4]);
        let w = f32t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let y = run_op(conv([1, 1], [0; 4], [2, 2], 1), &[&x, &w]);
        // y[0,0] = 1·x[0,0] + 2·x[0,2] + 3·x[2,0] + 4·x[2,2] = 0 + 4 + 24 + 40.
        assert_eq!(f32s(&y), [68., 78., 108., 118.]);
    }

    #[test]
    fn groups_and_bias() {
        let x = f32t(&[1, 2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let w = f32t(&[2, 1, 1, 1], &[10., 100.]);
        let b = f32t(&[2], &[1., -1.]);
        let y = run_op(conv([1, 1], [0; 4], [1, 1], 2), &[&x, &w, &b]);
        assert_eq!(f32s(&y), [11., 21., 31., 41., 499., 599., 699., 799.]);
    }

    /// Direct evaluation of the formula in the module docs, in f64.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    fn naive(
        x: &Tensor,
        w: &Tensor,
        b: &[f32],
        s: [usize; 2],
        p: [usize; 4],
        d: [usize; 2],
        g: usize,
        out: &[usize],
    ) -> Vec<f32> {
        let (xs, ws) = (x.shape(), w.shape());
        let (xv, wv) = (f32s(x), f32s(w));
        let (og, cg) = (ws[0] / g, ws[1]);
        let mut y = Vec::new();
        for n in 0..out[0] {
            for o in 0..out[1] {
                for oy in 0..out[2] {
                    for ox in 0..out[3] {
                        let mut acc = f64::from(b[o]);
                        for c in 0..cg {
                            for ky in 0..ws[2] {
                                for kx in 0..ws[3] {
                                    let iy = (oy * s[0] + ky * d[0]) as i64 - p[0] as i64;
                                    let ix = (ox * s[1] + kx * d[1]) as i64 - p[1] as i64;
                                    if iy < 0 || ix < 0 || iy >= xs[2] as i64 || ix >= xs[3] as i64
                                    {
                                        continue;
                                    }
                                    let ci = (o / og) * cg + c;
                                    let xi = ((n * xs[1] + ci) * xs[2] + iy as usize) * xs[3]
                                        + ix as usize;
                                    let wi = ((o * cg + c) * ws[2] + ky) * ws[3] + kx;
                                    acc += f64::from(xv[xi]) * f64::from(wv[wi]);
                                }
                            }
                        }
                        y.push(acc as f32);
                    }
                }
            }
        }
        y
    }

    proptest! {
        #[test]
        fn matches_direct_formula(
            (n, cg, og, g) in (1usize..3, 1usize..3, 1usize..6, 1usize..3),
            (h, w, kh, kw) in (1usize..7, 1usize..7, 1usize..4, 1usize..4),
            (s, d) in ([1usize..3, 1usize..3], [1usize..3, 1usize..3]),
            p in [0usize..3, 0usize..3, 0usize..3, 0usize..3],
            vals in prop::collection::vec(-8i8..8, 64),
        ) {
            let fill = |len: usize, off: usize| -> Vec<f32> {
                (0..len).map(|i| f32::from(vals[(i * 7 + off) % vals.len()]) * 0.25).collect()
            };
            let x = Tensor::from_f32([n, cg * g, h, w], fill(n * cg * g * h * w, 0)).unwrap();
            let wt = Tensor::from_f32([og * g, cg, kh, kw], fill(og * g * cg * kh * kw, 3)).unwrap();
            let b = Tensor::from_f32([og * g], fill(og * g, 5)).unwrap();
            let op = conv(s, p, d, g);
            let Ok(y) = try_eval(op, &[&x, &wt, &b]) else {
                // The dilated kernel does not fit the padded input: rejected by inference.
                return Ok(());
            };
            let want = naive(&x, &wt, &f32s(&b), s, p, d, g, y.shape());
            prop_assert_eq!(f32s(&y), want);
        }
    }

    /// Every fused epilogue equals the unfused ops (add, clip, then SiLU as mul by sigmoid, or
    /// hard_swish) bit for bit, with and without a bias.
    #[test]
    fn fused_epilogue_equals_the_unfused_ops() {
        let x = f32t(
            &[1, 2, 3, 3],
            &(0..18).map(|i| i as f32 * 0.37 - 3.0).collect::<Vec<_>>(),
        );
        let w = f32t(&[3, 2, 1, 1], &[0.5, -1.25, 2.0, 0.75, -0.3, 1.1]);
        let b = f32t(&[3], &[0.1, -0.2, 0.3]);
        let r = f32t(
            &[1, 3, 3, 3],
            &(0..27).map(|i| (i % 7) as f32 - 2.5).collect::<Vec<_>>(),
        );
        let un = |kind, v: &Tensor| run_op(Op::Unary(Unary { kind }), &[v]);
        let bin = |kind, a: &Tensor, b: &Tensor| run_op(Op::Binary(Binary { kind }), &[a, b]);
        let clip = UnaryKind::Clip {
            min: -1.0,
            max: 4.0,
        };
        for bias in [false, true] {
            let mut operands = vec![&x, &w];
            if bias {
                operands.push(&b);
            }
            let plain = run_op(conv([1, 1], [0; 4], [1, 1], 1), &operands);
            let clipped = un(clip, &bin(BinaryKind::Add, &plain, &r));
            let acts = [
                (None, clipped.clone()),
                (
                    Some(Act::Silu),
                    bin(BinaryKind::Mul, &clipped, &un(UnaryKind::Sigmoid, &clipped)),
                ),
                (Some(Act::HardSwish), un(UnaryKind::HardSwish, &clipped)),
            ];
            operands.push(&r);
            for (act, want) in acts {
                let op = Conv {
                    clamp: Some(Clamp { lo: -1.0, hi: 4.0 }),
                    residual: true,
                    act,
                    ..conv_op([1, 1], [0; 4], [1, 1], 1)
                };
                let got = run_op(Op::Conv(op), &operands);
                assert_eq!(f32s(&got), f32s(&want), "bias {bias}, {act:?}");
            }
        }
        let silu_only = Conv {
            act: Some(Act::Silu),
            ..conv_op([1, 1], [0; 4], [1, 1], 1)
        };
        let got = run_op(Op::Conv(silu_only), &[&x, &w, &b]);
        let plain = run_op(conv([1, 1], [0; 4], [1, 1], 1), &[&x, &w, &b]);
        let want = bin(BinaryKind::Mul, &plain, &un(UnaryKind::Sigmoid, &plain));
        assert_eq!(f32s(&got), f32s(&want));
    }

    #[test]
    fn pointwise_conv_matches_einsum() {
        let x = iota(&[2, 3, 2, 2]);
        let w = f32t(
            &[4, 3, 1, 1],
            &[1., -1., 0.5, 2., 0., 1., -3., 1., 1., 0.25, 0.5, -2.],
        );
        let y = run_op(conv([1, 1], [0; 4], [1, 1], 1), &[&x, &w]);
        let w2 = w.clone().reshaped([4, 3]).unwrap();
        let e = run_op(
            Op::Einsum(Einsum {
                equation: "nchw,oc->nohw".into(),
            }),
            &[&x, &w2],
        );
        assert_eq!(y.shape(), e.shape());
        assert_eq!(f32s(&y), f32s(&e));
    }

    #[test]
    fn large_channel_count_uses_several_tiles() {
        // k = 64·9 = 576 taps: tiles of 455 positions over 32·32 = 1024 positions.
        let x = f32t(&[1, 64, 32, 32], &vec![0.5; 64 * 32 * 32]);
        let w = ones(&[1, 64, 3, 3]);
        let y = f32s(&run_op(conv([1, 1], [1, 1, 1, 1], [1, 1], 1), &[&x, &w]));
        // Interior positions see 9 taps per channel, corners 4, edges 6.
        assert_eq!(y[33], 64. * 9. * 0.5);
        assert_eq!(y[0], 64. * 4. * 0.5);
        assert_eq!(y[1023], 64. * 4. * 0.5);
        assert_eq!(y[16], 64. * 6. * 0.5);
    }
}
