//! The direct conv path (depthwise and small-group convs, run-time weights) and dyn_conv's
//! direct path against the reference interpreter, in checked and unchecked mode: odd sizes,
//! strides 1 to 4 (vector de-interleaving for 2 and 3, lane by lane beyond), dilation,
//! asymmetric padding, batches, the fused clamp (NaN kept, lo > hi) and partial channel blocks;
//! the padded-plane depthwise path (`conv_dw`) on rows 4 to 32 wide, strides 1 and 2.

mod common;

use common::*;
use dync_ir::ops::*;
use dync_ir::{Op, Tensor};

/// A conv with per-side pads [top, left, bottom, right].
fn conv_op(
    s: [usize; 2],
    pads: [usize; 4],
    d: [usize; 2],
    group: usize,
    clamp: Option<Clamp>,
) -> Conv {
    Conv {
        strides: s,
        pads,
        dilations: d,
        group,
        clamp,
        residual: false,
        act: None,
        in_scale: false,
    }
}

#[test]
fn depthwise_and_small_group_convs() {
    let mut r = rng(71);
    let relu6 = Some(Clamp { lo: 0.0, hi: 6.0 });
    #[rustfmt::skip]
    let cases = [
        // (n, c, h, w, o, k, stride, pads, dilation, group, clamp)
        (1, 3, 13, 19, 3, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 3, relu6),
        (2, 5, 9, 23, 5, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 5, None),
        (1, 4, 17, 31, 4, [3, 3], [2, 2], [0, 1, 1, 0], [1, 1], 4, relu6),
        (1, 2, 11, 29, 2, [3, 3], [3, 3], [1, 2, 0, 1], [1, 1], 2, None),
        (1, 2, 10, 27, 2, [3, 3], [4, 4], [1, 1, 1, 1], [1, 1], 2, None),
        (2, 3, 12, 21, 3, [3, 3], [1, 2], [2, 2, 2, 2], [2, 2], 3, relu6),
        (1, 2, 15, 37, 2, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 2, Some(Clamp { lo: -0.5, hi: 0.5 })),
        (1, 2, 9, 9, 2, [3, 5], [2, 1], [1, 2, 1, 2], [1, 3], 2, None),
        (1, 3, 7, 7, 3, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 3, Some(Clamp { lo: 1.0, hi: -1.0 })),
        (1, 2, 2, 3, 2, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2, None),
        (1, 2, 1, 1, 2, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 2, None),
        // The padded-plane depthwise path: 4-wide rows with an input column past the last
        // window, 5×5 on 7×7 and 14×14, stride 2 with 5×5 and an odd left pad, 32 wide.
        (1, 2, 10, 10, 2, [3, 3], [2, 2], [1, 0, 1, 0], [1, 1], 2, relu6),
        (2, 3, 7, 7, 3, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 3, None),
        (1, 5, 14, 14, 5, [5, 5], [2, 2], [1, 1, 2, 2], [1, 1], 5, relu6),
        (1, 2, 14, 14, 2, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 2, None),
        (1, 2, 6, 32, 2, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2, None),
        (1, 2, 5, 65, 2, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 2, None),
        // Depthwise with a channel multiplier, and small groups (dy-mobile's 6 per group).
        (1, 3, 11, 14, 6, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 3, relu6),
        (2, 12, 10, 13, 12, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2, relu6),
        (1, 12, 14, 14, 12, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 2, None),
        (1, 10, 9, 17, 15, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 5, None),
        (1, 6, 8, 11, 9, [3, 3], [3, 3], [1, 0, 2, 1], [2, 1], 3, relu6),
    ];
    for (n, c, h, w, o, k, s, pads, d, g, clamp) in cases {
        let x = rand_f32(&mut r, &[n, c, h, w]);
        let wt = rand_f32(&mut r, &[o, c / g, k[0], k[1]]);
        let b = rand_f32(&mut r, &[o]);
        let op = Op::Conv(conv_op(s, pads, d, g, clamp));
        for (const_w, bias) in [(true, true), (false, false)] {
            let w_arg = if const_w {
                Arg::Const(wt.clone())
            } else {
                Arg::In(wt.clone())
            };
            let mut args = vec![Arg::In(x.clone()), w_arg];
            if bias {
                args.push(Arg::Const(b.clone()));
            }
            check_op(
                op.clone(),
                args,
                &format!(
                    "conv n{n} c{c} {h}x{w} o{o} k{k:?} s{s:?} p{pads:?} d{d:?} g{g} {clamp:?} const_w={const_w}"
                ),
            );
        }
    }
}

#[test]
fn clamp_keeps_nan_and_infinities() {
    let mut r = rng(72);
    let mut v = match rand_f32(&mut r, &[1, 2, 6, 9]).data() {
        dync_ir::TensorData::F32(v) => v.clone(),
        other => panic!("not f32: {other:?}"),
    };
    v[10] = f32::NAN;
    v[30] = f32::INFINITY;
    v[70] = f32::NEG_INFINITY;
    let x = Tensor::from_f32([1, 2, 6, 9], v).unwrap();
    let wt = Tensor::from_f32([2, 1, 1, 1], vec![1.5, -2.0]).unwrap();
    let op = Op::Conv(conv_op(
        [1, 1],
        [0; 4],
        [1, 1],
        2,
        Some(Clamp { lo: -1.0, hi: 2.0 }),
    ));
    check_op(
        op,
        vec![Arg::In(x), Arg::Const(wt)],
        "clamped depthwise 1x1 with NaN and inf",
    );
}

#[test]
fn dyn_conv_depthwise_and_small_groups() {
    let mut r = rng(73);
    #[rustfmt::skip]
    let cases = [
        // (n, c, h, w, group, experts, k, stride, pad, clamp)
        (1, 8, 13, 17, 8, 4, 3, 1, 1, Some(Clamp { lo: 0.0, hi: 6.0 })),
        (2, 6, 12, 15, 6, 3, 3, 2, 1, None),
        (3, 4, 9, 10, 4, 2, 5, 1, 2, Some(Clamp { lo: 0.0, hi: 6.0 })),
        (2, 12, 14, 14, 2, 4, 3, 2, 1, Some(Clamp { lo: 0.0, hi: 6.0 })),
        (1, 18, 11, 11, 3, 4, 3, 1, 1, None),
        (2, 8, 7, 7, 8, 4, 5, 1, 2, None),
        (1, 6, 14, 14, 6, 3, 5, 2, 2, Some(Clamp { lo: 0.0, hi: 6.0 })),
    ];
    for (n, c, h, w, group, e, k, s, p, clamp) in cases {
        let op = DynConv {
            strides: [s; 2],
            pads: [p; 4],
            dilations: [1, 1],
            group,
            bias: true,
            bias_bank: false,
            clamp,
            residual: false,
            act: None,
            in_scale: false,
        };
        let args = vec![
            Arg::In(rand_f32(&mut r, &[n, c, h, w])),
            Arg::In(rand_f32(&mut r, &[n, e])),
            Arg::Const(rand_f32(&mut r, &[e, c, c / group, k, k])),
            Arg::Const(rand_f32(&mut r, &[c])),
        ];
        check_op(
            Op::DynConv(op),
            args,
            &format!("dyn_conv n{n} c{c} {h}x{w} g{group} e{e} k{k} s{s} p{p} {clamp:?}"),
        );
    }
}

/// Depthwise convs and dyn_convs on 7×7-sized maps run in blocks of 16 channels (the
/// channel-block micro-kernel, or each channel's padded plane without it: the same bits):
/// full and partial blocks, strides 1 and 2, rows 4 to 8 wide, the clamp and both activations,
/// per-expert and per-channel coefficients, batches.
#[test]
fn depthwise_channel_blocks() {
    let mut r = rng(74);
    let relu6 = Some(Clamp { lo: 0.0, hi: 6.0 });
    #[rustfmt::skip]
    let cases = [
        // (n, c, h, w, k, stride, pad, clamp, act)
        (1, 37, 7, 7, 5, 1, 2, None, Some(Act::Silu)),
        (2, 16, 7, 7, 3, 1, 1, relu6, None),
        (1, 40, 14, 14, 5, 2, 2, None, Some(Act::HardSwish)),
        (1, 33, 8, 8, 3, 1, 1, relu6, Some(Act::HardSwish)),
        (1, 20, 9, 4, 3, 1, 1, None, Some(Act::Silu)),
        (2, 17, 13, 13, 3, 2, 1, Some(Clamp { lo: 1.0, hi: -1.0 }), None),
    ];
    for (n, c, h, w, k, s, p, clamp, act) in cases {
        let x = rand_f32(&mut r, &[n, c, h, w]);
        let conv = Conv {
            act,
            ..conv_op([s; 2], [p; 4], [1, 1], c, clamp)
        };
        for bias in [true, false] {
            let mut args = vec![
                Arg::In(x.clone()),
                Arg::Const(rand_f32(&mut r, &[c, 1, k, k])),
            ];
            if bias {
                args.push(Arg::Const(rand_f32(&mut r, &[c])));
            }
            check_op(
                Op::Conv(conv.clone()),
                args,
                &format!("conv n{n} c{c} {h}x{w} k{k} s{s} p{p} {clamp:?} {act:?} bias={bias}"),
            );
        }
        for per_channel in [false, true] {
            let e = 4;
            let coefs = if per_channel {
                rand_f32(&mut r, &[n, c, e])
            } else {
                rand_f32(&mut r, &[n, e])
            };
            let op = DynConv {
                strides: [s; 2],
                pads: [p; 4],
                dilations: [1, 1],
                group: c,
                bias: true,
                bias_bank: per_channel,
                clamp,
                residual: false,
                act,
                in_scale: false,
            };
            let mut args = vec![
                Arg::In(x.clone()),
                Arg::In(coefs),
                Arg::Const(rand_f32(&mut r, &[e, c, 1, k, k])),
                Arg::Const(rand_f32(&mut r, &[c])),
            ];
            if per_channel {
                args.push(Arg::Const(rand_f32(&mut r, &[e, c])));
            }
            check_op(
                Op::DynConv(op),
                args,
                &format!("dyn_conv n{n} c{c} {h}x{w} k{k} s{s} p{p} per_channel={per_channel}"),
            );
        }
    }
}
