//! Fused conv epilogues (`residual`, `clamp`, `act`) against the reference interpreter on both
//! convolution paths and for `conv` and `dyn_conv`, with micro-kernels, on the pure Cranelift
//! path and checked ([`common::check_graph`]): the GEMM path (≥ 8 channels per group, several
//! reduction chunks, partial channel panels, column tiles and rows per tile with run-time
//! widths, the in-place 1×1 path, tasks of several tiles when the A panels exceed L2) and the direct path (depthwise, odd widths whose edge
//! vectors store partial lanes; the padded-plane depthwise path, whose last vector of a row
//! overlaps the one before; depthwise maps in bands of rows), and inputs large enough for the
//! micro-kernels' streaming hint.

mod common;

use common::*;
use dync_ir::ops::*;
use dync_ir::Op;

/// The epilogues tried on every shape: (residual, clamp, act).
fn epilogues() -> Vec<(bool, Option<Clamp>, Option<Act>)> {
    let relu = Some(Clamp {
        lo: 0.0,
        hi: f32::INFINITY,
    });
    let six = Some(Clamp { lo: 0.0, hi: 6.0 });
    vec![
        (true, None, None),
        (true, relu, None),
        (false, None, Some(Act::Silu)),
        (false, None, Some(Act::HardSwish)),
        (true, six, Some(Act::Silu)),
        (true, None, Some(Act::HardSwish)),
    ]
}

/// Random weights of `shape` scaled by 1/√fan_in (fan_in: the product of the last three
/// dims), as trained layers are: sums of thousands of terms then stay O(1), so the
/// tolerance's relative part is not swamped by the rounding of large cancelling sums.
fn weights(r: &mut rand_chacha::ChaCha8Rng, shape: &[usize]) -> dync_ir::Tensor {
    let fan_in: usize = shape[shape.len() - 3..].iter().product();
    let scale = 1.0 / (fan_in as f32).sqrt();
    let t = rand_f32(r, shape);
    let v = t.as_f32().expect("f32").iter().map(|x| x * scale).collect();
    dync_ir::Tensor::from_f32(shape, v).expect("same shape")
}

#[test]
fn conv_epilogues_on_both_paths() {
    let mut r = rng(61);
    #[rustfmt::skip]
    let cases = [
        // (n, c, h, w, o, k, stride, pad, group): GEMM path first, then direct.
        (1, 300, 5, 7, 9, 1, 1, 0, 1),
        (2, 24, 14, 14, 16, 1, 1, 0, 1),
        (2, 16, 9, 37, 20, 3, 1, 1, 1),
        (1, 12, 11, 11, 16, 3, 2, 1, 1),
        // Stride 2 on both axes read in place from phase planes by the in-place tile: a
        // 7×7 stem and a 1×1 downsampling conv on odd and even sizes.
        (2, 3, 19, 22, 16, 7, 2, 3, 1),
        (1, 24, 14, 13, 32, 1, 2, 0, 1),
        // The in-place tile's wide tiles: a 7×7 map as one tile of 49 columns (stride 1 and,
        // from 13×13, stride 2), and 5×10, which keeps tiles of 32 (49 + 1 is dearer).
        (1, 24, 7, 7, 40, 3, 1, 1, 1),
        (2, 16, 13, 13, 24, 3, 2, 1, 1),
        (1, 16, 5, 10, 20, 3, 1, 1, 1),
        // A panels beyond L2 (> 1.5 MiB per task): tasks run 4 tiles per reduction chunk; 5
        // tiles per tiling row, the last one clipped; in place (1×1).
        (1, 768, 20, 20, 64, 3, 1, 1, 1),
        (1, 6400, 10, 10, 128, 1, 1, 0, 1),
        (2, 7, 9, 13, 7, 3, 1, 1, 7),
        (1, 6, 6, 5, 6, 3, 2, 1, 6),
        // The padded-plane depthwise path: 5×5 on 7×7 (EfficientNet), stride 2.
        (2, 4, 7, 7, 4, 5, 1, 2, 4),
        // Its rows of 9 to 32 outputs take the small-map depthwise micro-kernel (epilogue
        // in the call, bands of rows for 3×3 and 5×5): 5×5 on 14×14 (MobileNetV3), stride 2
        // to 14 wide, 20 wide.
        (1, 4, 14, 14, 4, 5, 1, 2, 4),
        (1, 3, 28, 28, 3, 3, 2, 1, 3),
        (2, 2, 11, 20, 2, 3, 1, 1, 2),
        // 1×1 depthwise: one kernel row, so the plane loads are ordinary loads.
        (2, 6, 3, 5, 6, 1, 1, 0, 6),
        (1, 6, 1, 4, 6, 1, 1, 0, 6),
        (1, 3, 15, 13, 3, 5, 2, 2, 3),
        (1, 4, 5, 7, 6, 3, 1, 1, 2),
        // Depthwise rows wider than 32: the depthwise micro-kernel (stride 1 and 2, 3×3 to
        // 7×7, more than 128 columns: two vector groups; 9 wide: its own loop).
        (2, 3, 5, 40, 3, 3, 1, 1, 3),
        (1, 4, 9, 75, 4, 3, 2, 1, 4),
        (1, 2, 4, 57, 2, 5, 1, 2, 2),
        (1, 2, 6, 139, 2, 7, 2, 3, 2),
        (1, 2, 3, 150, 2, 3, 1, 1, 2),
        // Depthwise maps cut into bands of rows, a task each: two bands of 16 rows
        // (stride 1 and 2, 5×5 and 7×7), four of 16 over two images.
        (1, 3, 32, 40, 3, 3, 1, 1, 3),
        (1, 3, 64, 70, 3, 3, 2, 1, 3),
        (1, 2, 63, 80, 2, 5, 2, 2, 2),
        (1, 2, 32, 48, 2, 7, 1, 3, 2),
        (2, 2, 64, 36, 2, 3, 1, 1, 2),
        // Inputs beyond 8 MiB: the GEMM tile gets the `GEMM_STREAM` prefetch hint (the
        // in-place 1×1 GEMM); a large depthwise conv at stride 2.
        (2, 32, 184, 184, 16, 1, 1, 0, 1),
        (2, 40, 168, 168, 40, 3, 2, 1, 40),
        // Fully connected layers (1×1 over 1×1): contiguous dot products, in tasks.
        (1, 240, 1, 1, 960, 1, 1, 0, 1),
        (3, 24, 1, 1, 40, 1, 2, 0, 2),
    ];
    for (n, c, h, w, o, k, s, p, g) in cases {
        let x = rand_f32(&mut r, &[n, c, h, w]);
        let wt = weights(&mut r, &[o, c / g, k, k]);
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        for (i, (residual, clamp, act)) in epilogues().into_iter().enumerate() {
            let op = Conv {
                strides: [s; 2],
                pads: [p; 4],
                dilations: [1, 1],
                group: g,
                clamp,
                residual,
                act,
                in_scale: false,
            };
            let mut args = vec![Arg::In(x.clone()), Arg::Const(wt.clone())];
            let bias = i % 2 == 0;
            if bias {
                args.push(Arg::Const(rand_f32(&mut r, &[o])));
            }
            if residual {
                args.push(Arg::In(rand_f32(&mut r, &[n, o, oh, ow])));
            }
            check_op(
                Op::Conv(op),
                args,
                &format!(
                    "conv n{n} c{c} {h}x{w} o{o} k{k} s{s} p{p} g{g} bias={bias} \
                     residual={residual} {clamp:?} {act:?}"
                ),
            );
        }
    }
}

/// A conv with an input scale (`se_fold`'s squeeze-excitation gate): the weights scaled per
/// image in phase 0, then the GEMM path, with every epilogue; 1×1 in place (a partial channel
/// panel, three images) and 3×3 on the in-place tile.
#[test]
fn conv_input_scale_on_the_gemm_path() {
    let mut r = rng(63);
    // (n, c, h, w, o, k, pad)
    let cases = [
        (1, 16, 8, 8, 8, 1, 0),
        (3, 24, 9, 11, 20, 1, 0),
        (2, 12, 10, 10, 16, 3, 1),
    ];
    for (n, c, h, w, o, k, p) in cases {
        let x = rand_f32(&mut r, &[n, c, h, w]);
        let wt = weights(&mut r, &[o, c, k, k]);
        let scale = rand_f32(&mut r, &[n, c, 1, 1]);
        for (i, (residual, clamp, act)) in epilogues().into_iter().enumerate() {
            let op = Conv {
                strides: [1, 1],
                pads: [p; 4],
                dilations: [1, 1],
                group: 1,
                clamp,
                residual,
                act,
                in_scale: true,
            };
            let mut args = vec![Arg::In(x.clone()), Arg::Const(wt.clone())];
            let bias = i % 2 == 0;
            if bias {
                args.push(Arg::Const(rand_f32(&mut r, &[o])));
            }
            if residual {
                args.push(Arg::In(rand_f32(&mut r, &[n, o, h, w])));
            }
            args.push(Arg::In(scale.clone()));
            check_op(
                Op::Conv(op),
                args,
                &format!(
                    "in_scale conv n{n} c{c} {h}x{w} o{o} k{k} bias={bias} residual={residual} \
                     {clamp:?} {act:?}"
                ),
            );
        }
    }
}

/// A dyn_conv with an input scale on the GEMM path: each image's mixed kernels scaled by its
/// gate, in the mixing phase (three images; 14×14, more tiles than one task covers) and in
/// the chunks of the fused mixing (one image on 7×7: 1×1 in place, also for three images
/// mixed together, and 3×3 on the in-place tile with tasks of six channel panels, mixed four,
/// then two per call).
#[test]
fn dyn_conv_input_scale_on_the_gemm_path() {
    let mut r = rng(64);
    // (n, c, h, w, o, experts, k, pad)
    let cases = [
        (3, 24, 14, 14, 20, 4, 1, 0),
        (1, 16, 7, 7, 12, 3, 1, 0),
        (3, 16, 7, 7, 12, 3, 1, 0),
        (1, 12, 7, 7, 330, 2, 3, 1),
    ];
    for (n, c, h, w, o, e, k, p) in cases {
        for (i, (residual, clamp, act)) in epilogues().into_iter().enumerate() {
            let op = DynConv {
                strides: [1, 1],
                pads: [p; 4],
                dilations: [1, 1],
                group: 1,
                bias: i % 2 == 1,
                bias_bank: i % 3 == 0,
                clamp,
                residual,
                act,
                in_scale: true,
            };
            let per_channel = i % 2 == 0;
            let coefs = if per_channel {
                vec![n, o, e]
            } else {
                vec![n, e]
            };
            let mut args = vec![
                Arg::In(rand_f32(&mut r, &[n, c, h, w])),
                Arg::In(rand_f32(&mut r, &coefs)),
                Arg::Const(weights(&mut r, &[e, o, c, k, k])),
            ];
            if op.bias {
                args.push(Arg::Const(rand_f32(&mut r, &[o])));
            }
            if op.bias_bank {
                args.push(Arg::Const(rand_f32(&mut r, &[e, o])));
            }
            if residual {
                args.push(Arg::In(rand_f32(&mut r, &[n, o, h, w])));
            }
            args.push(Arg::In(rand_f32(&mut r, &[n, c, 1, 1])));
            check_op(
                Op::DynConv(op),
                args,
                &format!(
                    "in_scale dyn_conv n{n} c{c} {h}x{w} o{o} e{e} k{k} residual={residual} \
                     {clamp:?} {act:?}"
                ),
            );
        }
    }
}

#[test]
fn dyn_conv_epilogues_on_both_paths() {
    let mut r = rng(62);
    #[rustfmt::skip]
    let cases = [
        // (n, c, h, w, o, experts, k, stride, pad, group): GEMM path first, then direct.
        (3, 16, 9, 11, 20, 4, 3, 1, 1, 1),
        (2, 40, 6, 6, 24, 3, 1, 1, 0, 1),
        (2, 20, 14, 14, 16, 3, 1, 1, 0, 1),
        // Each image's A panels beyond L2: runs of tiles.
        (2, 704, 13, 13, 64, 2, 3, 1, 1, 1),
        // One image of at most two tiles: mixing fused into the convolution (in place and
        // packed; 17 experts: more than the x86 mixing kernels hold in registers).
        (1, 24, 7, 7, 20, 4, 1, 1, 0, 1),
        (1, 16, 7, 7, 12, 3, 3, 1, 1, 1),
        (1, 8, 5, 5, 8, 17, 1, 1, 0, 1),
        // Unfused, more images than one mixing pass takes.
        (5, 16, 4, 4, 9, 6, 1, 1, 0, 1),
        (2, 6, 9, 11, 6, 4, 3, 1, 1, 6),
        (2, 6, 7, 9, 6, 3, 3, 2, 1, 2),
        (2, 5, 7, 7, 5, 3, 5, 1, 2, 5),
        (2, 6, 3, 6, 6, 3, 1, 1, 0, 6),
        (1, 6, 1, 4, 6, 3, 1, 1, 0, 6),
        (1, 4, 13, 14, 4, 2, 3, 2, 1, 4),
        // Rows wider than 32: the depthwise micro-kernel with the mixed kernels.
        (2, 3, 5, 45, 3, 3, 3, 1, 1, 3),
        (1, 4, 9, 70, 4, 2, 5, 2, 2, 4),
    ];
    for (n, c, h, w, o, e, k, s, p, g) in cases {
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        for (i, (residual, clamp, act)) in epilogues().into_iter().enumerate() {
            let bias = i % 2 == 1;
            let op = DynConv {
                strides: [s; 2],
                pads: [p; 4],
                dilations: [1, 1],
                group: g,
                bias,
                bias_bank: i % 3 == 0,
                clamp,
                residual,
                act,
                in_scale: false,
            };
            let mut args = vec![
                Arg::In(rand_f32(&mut r, &[n, c, h, w])),
                Arg::In(rand_f32(&mut r, &[n, o, e])),
                Arg::Const(weights(&mut r, &[e, o, c / g, k, k])),
            ];
            if bias {
                args.push(Arg::Const(rand_f32(&mut r, &[o])));
            }
            if op.bias_bank {
                args.push(Arg::Const(rand_f32(&mut r, &[e, o])));
            }
            if residual {
                args.push(Arg::In(rand_f32(&mut r, &[n, o, oh, ow])));
            }
            check_op_within(
                Op::DynConv(op),
                args,
                atol_for_sums_of(c / g * k * k),
                &format!(
                    "dyn_conv n{n} c{c} {h}x{w} o{o} e{e} k{k} s{s} p{p} g{g} \
                     residual={residual} {clamp:?} {act:?}"
                ),
            );
        }
    }
}
