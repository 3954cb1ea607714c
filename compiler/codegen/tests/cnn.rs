//! Whole networks and random conv layers, JIT against the interpreter: a small hand-built
//! CNN (conv → batch_norm → relu → max_pool → grouped, dilated, strided conv → global average
//! → gemm → softmax), a dynamic convolution whose weights are computed at run time, and a
//! property test over random conv layers in checked mode.

mod common;

use common::*;
use dync_ir::ops::*;
use dync_ir::{Graph, Op, Tensor, TensorType};
use proptest::prelude::*;

fn conv(strides: usize, pads: usize, dilations: usize, group: usize) -> Op {
    Op::Conv(Conv {
        strides: [strides; 2],
        pads: [pads; 4],
        dilations: [dilations; 2],
        group,
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    })
}

#[test]
fn small_cnn_matches_the_interpreter() {
    let mut r = rng(100);
    let mut g = Graph::new();
    let x = g.add_input("image", TensorType::f32([2, 3, 17, 17]));
    let w1 = g.add_const(rand_f32(&mut r, &[8, 3, 3, 3]), None);
    let b1 = g.add_const(rand_f32(&mut r, &[8]), None);
    let c1 = g
        .add(conv(1, 1, 1, 1), &[x, w1, b1], Some("conv1".into()))
        .unwrap();
    let mut bn = vec![c1];
    for i in 0..4 {
        let p = rand_f32(&mut r, &[8]);
        let p = if i == 3 {
            Tensor::from_f32(
                [8],
                p.as_f32().unwrap().iter().map(|v| v.abs() + 0.5).collect(),
            )
            .unwrap()
        } else {
            p
        };
        bn.push(g.add_const(p, None));
    }
    let n1 = g
        .add(
            Op::BatchNorm(BatchNorm { epsilon: 1e-5 }),
            &bn,
            Some("bn1".into()),
        )
        .unwrap();
    let a1 = g
        .add(
            Op::Unary(Unary {
                kind: UnaryKind::Relu,
            }),
            &[n1],
            Some("relu1".into()),
        )
        .unwrap();
    let mp = MaxPool {
        kernel: [2, 2],
        strides: [2, 2],
        pads: [0; 4],
        dilations: [1, 1],
        ceil_mode: true,
    };
    let p1 = g.add(Op::MaxPool(mp), &[a1], Some("pool1".into())).unwrap();
    let w2 = g.add_const(rand_f32(&mut r, &[12, 4, 3, 3]), None);
    let b2 = g.add_const(rand_f32(&mut r, &[12]), None);
    let c2 = g
        .add(conv(2, 2, 2, 2), &[p1, w2, b2], Some("conv2".into()))
        .unwrap();
    let gap = g
        .add(
            Op::Reduce(Reduce {
                kind: ReduceKind::Mean,
                axes: vec![2, 3],
                keepdims: false,
            }),
            &[c2],
            Some("gap".into()),
        )
        .unwrap();
    let wf = g.add_const(rand_f32(&mut r, &[10, 12]), None);
    let bf = g.add_const(rand_f32(&mut r, &[10]), None);
    let fc = g
        .add(
            Op::Gemm(Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            }),
            &[gap, wf, bf],
            Some("fc".into()),
        )
        .unwrap();
    let sm = g
        .add(
            Op::Softmax(Softmax { axis: 1 }),
            &[fc],
            Some("softmax".into()),
        )
        .unwrap();
    g.set_output("probs", sm);
    let image = rand_f32(&mut r, &[2, 3, 17, 17]);
    let out = check_graph(&g, &[image], "small cnn");
    let probs = out[0].as_f32().unwrap();
    for row in probs.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

/// DyNet's dynamic convolution: per-sample coefficients from a global-average predictor mix
/// a bank of kernels (einsum), and the mixed kernel convolves the input (batch 1).
#[test]
fn dynamic_convolution_matches_the_interpreter() {
    let mut r = rng(101);
    let (c, o, gk, k) = (6, 8, 4, 3);
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([1, c, 9, 9]));
    let gap = g
        .add(
            Op::Reduce(Reduce {
                kind: ReduceKind::Mean,
                axes: vec![2, 3],
                keepdims: false,
            }),
            &[x],
            None,
        )
        .unwrap();
    let wp = g.add_const(rand_f32(&mut r, &[o * gk, c]), None);
    let fc = g
        .add(
            Op::Gemm(Gemm {
                alpha: 1.0,
                beta: 0.0,
                trans_a: false,
                trans_b: true,
            }),
            &[gap, wp],
            None,
        )
        .unwrap();
    let coeff = g
        .add(
            Op::Reshape(Reshape {
                shape: vec![1, o, gk],
            }),
            &[fc],
            None,
        )
        .unwrap();
    let coeff = g
        .add(
            Op::Unary(Unary {
                kind: UnaryKind::Sigmoid,
            }),
            &[coeff],
            None,
        )
        .unwrap();
    let bank = g.add_const(rand_f32(&mut r, &[o, gk, c, k, k]), None);
    let mixed = g
        .add(
            Op::Einsum(Einsum {
                equation: "bog,ogcij->bocij".into(),
            }),
            &[coeff, bank],
            None,
        )
        .unwrap();
    let w = g
        .add(
            Op::Reshape(Reshape {
                shape: vec![o, c, k, k],
            }),
            &[mixed],
            None,
        )
        .unwrap();
    let y = g
        .add(conv(1, 1, 1, 1), &[x, w], Some("dynconv".into()))
        .unwrap();
    g.set_output("y", y);
    g.set_output("coeff", coeff);
    let input = rand_f32(&mut r, &[1, c, 9, 9]);
    check_graph(&g, &[input], "dynamic conv");
}

#[test]
fn dyn_conv_op_matches_the_interpreter() {
    let mut r = rng(102);
    // (n, c, o, experts, k, stride, pad, group, per_channel, bias, bias_bank, h, w)
    #[rustfmt::skip]
    let cases = [
        (1, 6, 8, 4, 3, 1, 1, 1, true, false, false, 9, 11),
        (2, 6, 6, 4, 3, 2, 1, 2, true, true, false, 9, 11),
        (2, 4, 5, 3, 1, 1, 0, 1, false, true, true, 9, 11),
        (1, 6, 6, 2, 3, 1, 1, 6, false, false, true, 9, 11),
        (3, 3, 7, 5, 5, 2, 2, 1, true, true, true, 9, 11),
        // The GEMM path (≥ 8 channels per group): a partial channel panel and more images
        // than one mixing pass takes, the in-place 1×1 path, stride 2.
        (5, 16, 20, 4, 3, 1, 1, 2, true, true, true, 9, 11),
        (2, 40, 24, 6, 1, 1, 0, 1, false, false, true, 9, 11),
        (9, 12, 16, 3, 3, 2, 1, 1, true, true, false, 9, 11),
        // One image in at most two tiles: the mixing fused into the convolution (3×3 over
        // 7×7: two tiles of four and three rows; 1×1 over 7×8: two runs of 32 and 24).
        (1, 16, 20, 4, 3, 1, 1, 2, true, true, true, 7, 7),
        (1, 24, 16, 3, 1, 1, 0, 1, false, true, false, 7, 8),
        (1, 20, 12, 5, 3, 2, 1, 1, true, false, true, 9, 11),
        // Tasks of six channel panels, mixed four, then two (the last one partial) before
        // each in-place tile call.
        (1, 16, 330, 2, 3, 1, 1, 1, true, true, false, 7, 7),
        // Several images of a 1×1 conv read in place in at most two tiles: the mixing fused,
        // each task taking every image (3, and the most, 8); 9 images mix in phase 0.
        (3, 24, 16, 3, 1, 1, 0, 1, true, true, true, 7, 8),
        (8, 20, 12, 8, 1, 1, 0, 2, false, false, true, 7, 7),
        (9, 16, 16, 2, 1, 1, 0, 1, true, true, false, 7, 7),
        // Up to eight tiles read in place (14×14: seven; 10×10: four): the mixing fused at
        // batch 1, a task covering the image (3×3 on the in-place tile, 1×1); 3 images and
        // 17×17 (ten tiles) mix in phase 0.
        (1, 16, 20, 4, 3, 1, 1, 1, true, true, true, 14, 14),
        (1, 12, 16, 3, 3, 1, 1, 1, false, false, true, 10, 10),
        (1, 40, 24, 6, 1, 1, 0, 1, false, true, false, 14, 14),
        (3, 24, 16, 3, 1, 1, 0, 1, true, false, true, 12, 13),
        (1, 16, 16, 2, 1, 1, 0, 1, true, true, false, 17, 17),
    ];
    for (i, (n, c, o, e, k, s, p, group, per_channel, bias, bias_bank, h, w)) in
        cases.into_iter().enumerate()
    {
        let op = DynConv {
            strides: [s; 2],
            pads: [p; 4],
            dilations: [1, 1],
            group,
            bias,
            bias_bank,
            clamp: (i % 2 == 1).then_some(Clamp { lo: -0.5, hi: 1.0 }),
            residual: false,
            act: None,
            in_scale: false,
        };
        let coeff = if per_channel {
            rand_f32(&mut r, &[n, o, e])
        } else {
            rand_f32(&mut r, &[n, e])
        };
        let mut args = vec![
            Arg::In(rand_f32(&mut r, &[n, c, h, w])),
            Arg::In(coeff),
            Arg::Const(rand_f32(&mut r, &[e, o, c / group, k, k])),
        ];
        if bias {
            args.push(Arg::Const(rand_f32(&mut r, &[o])));
        }
        if bias_bank {
            args.push(Arg::Const(rand_f32(&mut r, &[e, o])));
        }
        check_op(
            Op::DynConv(op),
            args,
            &format!(
                "dyn_conv n{n} c{c} {h}x{w} o{o} e{e} k{k} s{s} p{p} g{group} per_channel={per_channel}"
            ),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_conv_layers(
        seed in any::<u64>(),
        cg in 1usize..4, og in 1usize..13, group in 1usize..4,
        k in 1usize..5, stride in 1usize..4, pad in 0usize..4, dilation in 1usize..4,
        h in 1usize..12, w in 1usize..19, batch in 1usize..3, bias in any::<bool>(),
    ) {
        let (c, o) = (cg * group, og * group);
        let op = conv(stride, pad, dilation, group);
        let xt = TensorType::f32([batch, c, h, w]);
        let wt = TensorType::f32([o, cg, k, k]);
        prop_assume!(op.infer(&[&xt, &wt]).is_ok());
        let mut r = rng(seed);
        let mut args = vec![Arg::In(rand_f32(&mut r, &xt.shape)), Arg::Const(rand_f32(&mut r, &wt.shape))];
        if bias {
            args.push(Arg::Const(rand_f32(&mut r, &[o])));
        }
        check_op(op, args, &format!("conv c{c} o{o} g{group} k{k} s{stride} p{pad} d{dilation} {h}x{w}"));
    }
}
