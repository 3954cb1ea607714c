//! Speed checks of the reference interpreter: torchvision's ResNet-50 (v1.5) at 224x224, batch
//! 8, with random weights, built directly in the IR (about 12 s of CPU), and DyNet's kernel
//! mixing einsum at ResNet-50 width (about 1 s). Ignored by default (they take seconds in a
//! release build and minutes in a debug one); run them with
//! `cargo test --release -p dync-interp --test resnet50_speed -- --ignored --nocapture`.

use dync_ir::ops::{
    BatchNorm, Binary, BinaryKind, Conv, Gemm, MaxPool, Reduce, ReduceKind, Unary, UnaryKind,
};
use dync_ir::{Graph, NodeId, Op, Tensor, TensorType};
use std::time::Instant;

/// A small deterministic generator (xorshift64*) for weights and inputs.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        v as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f32(shape, (0..n).map(|_| self.next() * scale).collect()).unwrap()
    }
}

struct Builder {
    g: Graph,
    rng: Rng,
}

impl Builder {
    fn op(&mut self, op: Op, args: &[NodeId]) -> NodeId {
        self.g.add(op, args, None).unwrap()
    }

    /// conv (no bias) + batch_norm, optionally followed by relu.
    fn conv_bn(&mut self, x: NodeId, out_c: usize, k: usize, stride: usize, relu: bool) -> NodeId {
        let in_c = self.g.ty(x).shape[1];
        let scale = (3.0 / (in_c * k * k) as f32).sqrt();
        let w = self.rng.tensor(&[out_c, in_c, k, k], scale);
        let w = self.g.add_const(w, None);
        let p = k / 2;
        let conv = Conv {
            strides: [stride; 2],
            pads: [p; 4],
            dilations: [1; 2],
            group: 1,
            clamp: None,
            residual: false,
            act: None,
            in_scale: false,
        };
        let y = self.op(Op::Conv(conv), &[x, w]);
        let params: Vec<NodeId> = [(1.0, 0.1), (0.0, 0.1), (0.0, 0.1), (1.0, 0.1)]
            .iter()
            .map(|&(base, spread)| {
                let v: Vec<f32> = (0..out_c)
                    .map(|_| base + spread * self.rng.next())
                    .collect();
                self.g
                    .add_const(Tensor::from_f32([out_c], v).unwrap(), None)
            })
            .collect();
        let y = self.op(
            Op::BatchNorm(BatchNorm { epsilon: 1e-5 }),
            &[y, params[0], params[1], params[2], params[3]],
        );
        if relu {
            self.op(
                Op::Unary(Unary {
                    kind: UnaryKind::Relu,
                }),
                &[y],
            )
        } else {
            y
        }
    }

    fn bottleneck(&mut self, x: NodeId, width: usize, stride: usize) -> NodeId {
        let in_c = self.g.ty(x).shape[1];
        let a = self.conv_bn(x, width, 1, 1, true);
        let b = self.conv_bn(a, width, 3, stride, true);
        let c = self.conv_bn(b, width * 4, 1, 1, false);
        let skip = if stride != 1 || in_c != width * 4 {
            self.conv_bn(x, width * 4, 1, stride, false)
        } else {
            x
        };
        let sum = self.op(
            Op::Binary(Binary {
                kind: BinaryKind::Add,
            }),
            &[c, skip],
        );
        self.op(
            Op::Unary(Unary {
                kind: UnaryKind::Relu,
            }),
            &[sum],
        )
    }
}

fn resnet50(batch: usize) -> Graph {
    let mut b = Builder {
        g: Graph::new(),
        rng: Rng(0x9e37_79b9_7f4a_7c15),
    };
    let x = b.g.add_input("x", TensorType::f32([batch, 3, 224, 224]));
    let mut y = b.conv_bn(x, 64, 7, 2, true);
    let pool = MaxPool {
        kernel: [3; 2],
        strides: [2; 2],
        pads: [1; 4],
        dilations: [1; 2],
        ceil_mode: false,
    };
    y = b.op(Op::MaxPool(pool), &[y]);
    for (stage, (&blocks, &width)) in [3, 4, 6, 3].iter().zip(&[64, 128, 256, 512]).enumerate() {
        for i in 0..blocks {
            let stride = if i == 0 && stage > 0 { 2 } else { 1 };
            y = b.bottleneck(y, width, stride);
        }
    }
    y = b.op(
        Op::Reduce(Reduce {
            kind: ReduceKind::Mean,
            axes: vec![2, 3],
            keepdims: false,
        }),
        &[y],
    );
    let w = b.rng.tensor(&[1000, 2048], 0.04);
    let w = b.g.add_const(w, None);
    let bias = b.rng.tensor(&[1000], 0.1);
    let bias = b.g.add_const(bias, None);
    let gemm = Gemm {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: true,
    };
    y = b.op(Op::Gemm(gemm), &[y, w, bias]);
    b.g.set_output("logits", y);
    b.g
}

#[test]
#[ignore = "speed check; run in release with --ignored"]
fn resnet50_batch8_224() {
    let g = resnet50(8);
    let x = Rng(7).tensor(&[8, 3, 224, 224], 1.0);
    let start = Instant::now();
    let out = dync_interp::run(&g, &[x]).unwrap();
    let elapsed = start.elapsed();
    println!(
        "ResNet-50, batch 8, 224x224: {:.2} s",
        elapsed.as_secs_f64()
    );
    assert_eq!(out[0].shape(), &[8, 1000]);
    assert!(out[0].as_f32().unwrap().iter().all(|v| v.is_finite()));
}

/// DyNet's kernel mixing at the size of ResNet-50's widest 3x3 conv, batch 8: 75M MACs.
#[test]
#[ignore = "speed check; run in release with --ignored"]
fn dynet_kernel_mixing_einsum() {
    let mut rng = Rng(11);
    let attn = rng.tensor(&[8, 512, 4], 1.0);
    let bank = rng.tensor(&[512, 4, 512, 3, 3], 0.1);
    let op = Op::Einsum(dync_ir::ops::Einsum {
        equation: "bog,ogcij->bocij".into(),
    });
    let out = TensorType::f32([8, 512, 512, 3, 3]);
    let start = Instant::now();
    let y = dync_interp::eval(&op, &[&attn, &bank], &out).unwrap();
    println!(
        "einsum bog,ogcij->bocij (8x512x512x3x3, g=4): {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(y.shape(), out.shape.as_slice());
}
