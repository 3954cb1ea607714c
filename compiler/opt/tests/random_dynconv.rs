//! Property test: random dynamic-convolution layers, written as ONNX the ways exporters write
//! them, are recognized and stay correct.
//!
//! A layer draws C, O, groups, k, stride, dilation, pads, g (kernels per output channel or
//! experts), the routing (per-channel sigmoid [B,O,g] as DyNet, or per-expert softmax of
//! logits / temperature [B,g] as CondConv/DY-CNN), the batch 1..=3, the form (mix: kernel
//! mixing with the batch folded into the groups; train: O·g kernels, weighted and summed), the
//! mixing op (matmul, gemm, einsum, mul + reduce sum), an optional mixed bias, and the exporter
//! variants (no input reshape at batch 1, transpose before the final reshape, the padding as a
//! Pad op of the folded input). After import and the pipeline: exactly one `dyn_conv`, no conv
//! left, the predictor fused into one `predict`, no remark, and outputs equal to the
//! interpreter on the original graph (atol 1e-4 + rtol 1e-3).

mod common;

use common::{dyn_convs, optimize_and_compare};
use dync_ir::{DType, Op, Tensor};
use dync_onnx::write::{Attr, Dim, ModelBuilder};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mixing {
    MatMul,
    /// Gemm with the bank transposed (per-expert only; per-channel layers use matmul).
    Gemm,
    Einsum,
    MulSum,
}

#[derive(Clone, Debug)]
struct Layer {
    batch: usize,
    groups: usize,
    cg: usize,
    og: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pads: [usize; 4],
    g: usize,
    per_channel: bool,
    train: bool,
    mixing: Mixing,
    bias: bool,
    reshape_at_b1: bool,
    transpose_out: bool,
    /// Mix form: the pads as a Pad op of the folded input (timm's "same" padding).
    pad_op: bool,
    side: usize,
    seed: u64,
}

fn layer() -> impl Strategy<Value = Layer> {
    (
        (1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3),
        (
            1usize..=2,
            1usize..=2,
            [0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2],
        ),
        (1usize..=4, any::<bool>(), any::<bool>()),
        (
            prop_oneof![
                Just(Mixing::MatMul),
                Just(Mixing::Gemm),
                Just(Mixing::Einsum),
                Just(Mixing::MulSum)
            ],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (5usize..=8, any::<u64>(), any::<bool>()),
    )
        .prop_map(
            |(
                (batch, groups, cg, og, k),
                (stride, dilation, pads),
                (g, per_channel, train),
                (mixing, bias, reshape_at_b1, transpose_out),
                (side, seed, pad_op),
            )| Layer {
                batch,
                groups,
                cg,
                og,
                k,
                stride,
                dilation,
                pads,
                // The training form sums g >= 2 kernels (g = 1 is a conv scaled per channel).
                g: if train { g.max(2) } else { g },
                per_channel,
                train,
                mixing,
                bias,
                reshape_at_b1,
                transpose_out,
                pad_op,
                side,
                seed,
            },
        )
}

/// Seeded values uniform in (lo, hi).
struct Rng(u64);

impl Rng {
    fn values(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                lo + (hi - lo) * ((self.0 >> 40) as f32 / (1u64 << 24) as f32)
            })
            .collect()
    }
}

/// A model builder with helpers for the node kinds the layers use.
struct B {
    mb: ModelBuilder,
    rng: Rng,
}

impl B {
    fn init(&mut self, base: &str, shape: &[usize], lo: f32, hi: f32) -> String {
        let n = shape.iter().product();
        let t = Tensor::from_f32(shape, self.rng.values(n, lo, hi)).expect("tensor");
        let name = self.mb.fresh(base);
        self.mb.initializer(&name, &t).expect("initializer");
        name
    }
    fn ints(&mut self, v: &[i64]) -> String {
        let t = Tensor::from_i64([v.len()], v.to_vec()).expect("tensor");
        let name = self.mb.fresh("shape");
        self.mb.initializer(&name, &t).expect("initializer");
        name
    }
    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let out = self.mb.fresh(op);
        let name = self.mb.fresh(&format!("/{op}"));
        self.mb
            .node(op, &name, inputs, &[&out], attrs)
            .expect("node");
        out
    }
    fn reshape(&mut self, x: &str, shape: &[usize]) -> String {
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let s = self.ints(&s);
        self.node("Reshape", &[x, &s], &[])
    }
    fn reduce_sum(&mut self, x: &str, axis: i64) -> String {
        let axes = self.ints(&[axis]);
        self.node("ReduceSum", &[x, &axes], &[Attr::int("keepdims", 0)])
    }
}

fn out_dim(l: &Layer, pad: usize) -> usize {
    (l.side + pad - l.dilation * (l.k - 1) - 1) / l.stride + 1
}

/// The layer as ONNX (opset 17).
fn build(l: &Layer) -> Vec<u8> {
    let (b, c, o) = (l.batch, l.groups * l.cg, l.groups * l.og);
    let (g, k, r) = (l.g, l.k, l.cg * l.k * l.k);
    let (h, w) = (
        out_dim(l, l.pads[0] + l.pads[2]),
        out_dim(l, l.pads[1] + l.pads[3]),
    );
    let mut s = B {
        mb: ModelBuilder::new(17),
        rng: Rng(l.seed | 1),
    };
    let dims: Vec<Dim> = [b, c, l.side, l.side]
        .iter()
        .map(|&d| Dim::Fixed(d))
        .collect();
    s.mb.input("x", DType::F32, &dims).expect("input");
    // Predictor: global average → gemm → sigmoid, or (÷ temperature) → softmax.
    let t = if l.per_channel { o * g } else { g };
    let pooled = s.node("GlobalAveragePool", &["x"], &[]);
    let flat = s.node("Flatten", &[&pooled], &[Attr::int("axis", 1)]);
    let rw = s.init("route.weight", &[t, c], -1.0, 1.0);
    let rb = s.init("route.bias", &[t], -1.0, 1.0);
    let logits = s.node("Gemm", &[&flat, &rw, &rb], &[Attr::int("transB", 1)]);
    let coeff = if l.per_channel {
        s.node("Sigmoid", &[&logits], &[])
    } else {
        let tau = s.mb.fresh("temperature");
        s.mb.initializer(&tau, &Tensor::scalar_f32(0.5))
            .expect("initializer");
        let z = s.node("Div", &[&logits, &tau], &[]);
        s.node("Softmax", &[&z], &[Attr::int("axis", 1)])
    };
    let pads: Vec<i64> = l.pads.iter().map(|&p| p as i64).collect();
    let conv_attrs = |group: usize, pads: &[i64]| {
        vec![
            Attr::ints("dilations", &[l.dilation as i64; 2]),
            Attr::int("group", group as i64),
            Attr::ints("kernel_shape", &[k as i64; 2]),
            Attr::ints("pads", pads),
            Attr::ints("strides", &[l.stride as i64; 2]),
        ]
    };
    let y = if l.train {
        let wt = s.init("conv.weight", &[o * g, l.cg, k, k], -0.5, 0.5);
        let mut ins = vec!["x".to_string(), wt];
        if l.bias {
            ins.push(s.init("conv.bias", &[o * g], -0.5, 0.5));
        }
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        let y = s.node("Conv", &ins, &conv_attrs(l.groups, &pads));
        let y = s.reshape(&y, &[b, o, g, h, w]);
        let e = if l.per_channel {
            s.reshape(&coeff, &[b, o, g, 1, 1])
        } else {
            s.reshape(&coeff, &[b, 1, g, 1, 1])
        };
        let m = s.node("Mul", &[&y, &e], &[]);
        s.reduce_sum(&m, 2)
    } else {
        // Mixed kernels [B, O, R] (in some layout), then [B·O, C/groups, k, k].
        let mixed = match (l.per_channel, l.mixing) {
            (true, Mixing::Einsum) => {
                let bank = s.init("conv.weight", &[o, g, l.cg, k, k], -0.5, 0.5);
                let e = s.reshape(&coeff, &[b, o, g]);
                let eq = Attr::string("equation", "bog,ogcij->bocij");
                s.node("Einsum", &[&e, &bank], &[eq])
            }
            (true, Mixing::MatMul | Mixing::Gemm) => {
                let bank = s.init("conv.weight", &[o, g, r], -0.5, 0.5);
                let e = s.reshape(&coeff, &[b, o, g]);
                let axes = s.ints(&[2]);
                let e = s.node("Unsqueeze", &[&e, &axes], &[]);
                s.node("MatMul", &[&e, &bank], &[])
            }
            (true, Mixing::MulSum) => {
                let bank = s.init("conv.weight", &[o, g, l.cg, k, k], -0.5, 0.5);
                let e = s.reshape(&coeff, &[b, o, g, 1, 1, 1]);
                let m = s.node("Mul", &[&e, &bank], &[]);
                s.reduce_sum(&m, 2)
            }
            (false, Mixing::MatMul) => {
                let bank = s.init("conv.weight", &[g, o * r], -0.5, 0.5);
                s.node("MatMul", &[&coeff, &bank], &[])
            }
            (false, Mixing::Gemm) => {
                let bank = s.init("conv.weight", &[o * r, g], -0.5, 0.5);
                s.node("Gemm", &[&coeff, &bank], &[Attr::int("transB", 1)])
            }
            (false, Mixing::Einsum) => {
                let bank = s.init("conv.weight", &[g, o, l.cg, k, k], -0.5, 0.5);
                let eq = Attr::string("equation", "bg,gocij->bocij");
                s.node("Einsum", &[&coeff, &bank], &[eq])
            }
            (false, Mixing::MulSum) => {
                let bank = s.init("conv.weight", &[g, o, l.cg, k, k], -0.5, 0.5);
                let e = s.reshape(&coeff, &[b, g, 1, 1, 1, 1]);
                let m = s.node("Mul", &[&e, &bank], &[]);
                s.reduce_sum(&m, 1)
            }
        };
        let wmix = s.reshape(&mixed, &[b * o, l.cg, k, k]);
        let mut ins = vec![];
        let folded = if b == 1 && !l.reshape_at_b1 {
            "x".to_string()
        } else {
            s.reshape("x", &[1, b * c, l.side, l.side])
        };
        ins.push(if l.pad_op {
            let [t, lf, bt, r] = [pads[0], pads[1], pads[2], pads[3]];
            let amounts = s.ints(&[0, 0, t, lf, 0, 0, bt, r]);
            s.node(
                "Pad",
                &[&folded, &amounts],
                &[Attr::string("mode", "constant")],
            )
        } else {
            folded
        });
        ins.push(wmix);
        if l.bias {
            let bias = if l.per_channel {
                let bb = s.init("conv.bias", &[o, g], -0.5, 0.5);
                let e = s.reshape(&coeff, &[b, o, g]);
                let eq = Attr::string("equation", "bog,og->bo");
                s.node("Einsum", &[&e, &bb], &[eq])
            } else {
                let bb = s.init("conv.bias", &[g, o], -0.5, 0.5);
                s.node("MatMul", &[&coeff, &bb], &[])
            };
            ins.push(s.reshape(&bias, &[b * o]));
        }
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        let conv_pads = if l.pad_op { vec![0; 4] } else { pads.clone() };
        let y = s.node("Conv", &ins, &conv_attrs(l.groups * b, &conv_pads));
        let y = if l.transpose_out {
            s.node("Transpose", &[&y], &[Attr::ints("perm", &[1, 0, 2, 3])])
        } else {
            y
        };
        s.reshape(&y, &[b, o, h, w])
    };
    let out = s.node("Relu", &[&y], &[]);
    s.mb.rename(&out, "y").expect("rename");
    let dims: Vec<Dim> = [b, o, h, w].iter().map(|&d| Dim::Fixed(d)).collect();
    s.mb.output("y", DType::F32, &dims).expect("output");
    s.mb.encode()
}

/// Whether the layer's dilated kernel fits the padded input (else no valid conv exists).
fn valid(l: &Layer) -> bool {
    let extent = l.dilation * (l.k - 1) + 1;
    l.side + l.pads[0] + l.pads[2] >= extent && l.side + l.pads[1] + l.pads[3] >= extent
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_layers_are_recognized(l in layer().prop_filter("kernel fits", valid)) {
        let what = format!("{l:?}");
        let bytes = build(&l);
        let (g, remarks) = optimize_and_compare(&bytes, &[], &what);
        prop_assert!(remarks.is_empty(), "{}: {:?}", what, remarks);
        prop_assert_eq!(dyn_convs(&g), 1, "{}", what);
        let convs = g
            .node_ids()
            .filter(|&n| matches!(g.node(n).op, Op::Conv(_)))
            .count();
        prop_assert_eq!(convs, 0, "{}", what);
        let predicts = g
            .node_ids()
            .filter(|&n| matches!(g.node(n).op, Op::Predict(_)))
            .count();
        prop_assert_eq!(predicts, 1, "{}: the predictor is one predict op", what);
    }
}
