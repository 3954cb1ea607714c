//! Random small CNNs written as ONNX (opset 17), drawn from a stream of choices: shared by the
//! differential property test (`tests/tests/differential.rs`, choices from proptest, which
//! shrink towards the smallest network) and the `compile_run` fuzz target (`fuzz/`, choices
//! from libFuzzer's bytes).
//!
//! A network is an input [B, C, H, W] (B ≤ 2, C ≤ 6, H, W in 3..=10) and one to four layers:
//! convolutions (groups dividing the channels, kernel 1..=3 per axis, strides and dilations
//! 1..=2, pads 0..=2 per side, optional bias), activations (Relu, Sigmoid, Tanh, LeakyRelu,
//! Clip, HardSigmoid, HardSwish), max and average pools (kernel 1..=3, pads below the kernel,
//! count_include_pad), global average pools, BatchNormalization, residual blocks (x + conv(x))
//! and dynamic convolutions as exporters write them (pooled routing → softmax → MatMul with
//! the kernel bank → one grouped conv over the batch folded into the channels).
//!
//! Invariant: every model [`build`] returns is valid ONNX with fully static shapes, and its
//! declared output shape is the one ONNX's formulas give. Choices that would not fit (a dilated
//! kernel larger than the padded input) are reduced (dilation, then kernel, to 1) rather than
//! rejected, so every choice stream yields a network.

#![allow(dead_code)] // each consumer uses part of the module

use dync_ir::{DType, Tensor};
use dync_onnx::write::{Attr, Dim, ModelBuilder};

/// A source of choices: `pick(lo, hi)` returns a value in `lo..=hi`, `lo` when exhausted.
pub trait Choose {
    fn pick(&mut self, lo: usize, hi: usize) -> usize;
}

/// Choices read from a list of numbers (proptest's draws): `lo + v % (hi − lo + 1)`.
pub struct Stream<'a> {
    pub values: &'a [u32],
    pub next: usize,
}

impl Choose for Stream<'_> {
    fn pick(&mut self, lo: usize, hi: usize) -> usize {
        let Some(&v) = self.values.get(self.next) else {
            return lo;
        };
        self.next += 1;
        lo + (v as usize) % (hi - lo + 1)
    }
}

/// A network as ONNX bytes, its input and output shapes and a readable description.
pub struct Model {
    pub bytes: Vec<u8>,
    pub input: [usize; 4],
    pub output: [usize; 4],
    /// One line per layer, for failure messages.
    pub layers: Vec<String>,
    /// Seed for [`input_values`].
    pub seed: u64,
}

/// Seeded values uniform in (lo, hi) (xorshift64).
pub struct Rng(pub u64);

impl Rng {
    pub fn values(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
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

/// The model's input values (uniform in (-1, 1)) in NCHW order.
pub fn input_values(m: &Model) -> Vec<f32> {
    let n = m.input.iter().product();
    Rng(m.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).values(n, -1.0, 1.0)
}

struct B {
    mb: ModelBuilder,
    rng: Rng,
}

impl B {
    /// An f32 initializer; the builder's names are fresh, so insertion cannot fail.
    fn init(&mut self, base: &str, shape: &[usize], scale: f32) -> String {
        let n = shape.iter().product();
        let t = Tensor::from_f32(shape, self.rng.values(n, -scale, scale)).expect("f32 tensor");
        let name = self.mb.fresh(base);
        self.mb.initializer(&name, &t).expect("fresh initializer");
        name
    }
    fn ints(&mut self, v: &[i64]) -> String {
        let t = Tensor::from_i64([v.len()], v.to_vec()).expect("i64 tensor");
        let name = self.mb.fresh("shape");
        self.mb.initializer(&name, &t).expect("fresh initializer");
        name
    }
    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let out = self.mb.fresh(op);
        let name = self.mb.fresh(&format!("/{op}"));
        self.mb
            .node(op, &name, inputs, &[&out], attrs)
            .expect("inputs defined, output fresh");
        out
    }
    fn reshape(&mut self, x: &str, shape: &[usize]) -> String {
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let s = self.ints(&s);
        self.node("Reshape", &[x, &s], &[])
    }
}

/// Window geometry of a conv or pool along both spatial axes.
#[derive(Clone, Copy, Debug)]
struct Window {
    k: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// ONNX order: top, left, bottom, right.
    pads: [usize; 4],
}

impl Window {
    /// Draws a window for input `hw`; pads stay below the kernel when `pool` (ONNX pools).
    fn draw(c: &mut impl Choose, hw: [usize; 2], pool: bool) -> Window {
        let mut w = Window {
            k: [c.pick(1, 3), c.pick(1, 3)],
            stride: [c.pick(1, 2), c.pick(1, 2)],
            dilation: if pool {
                [1, 1]
            } else {
                [c.pick(1, 2), c.pick(1, 2)]
            },
            pads: [c.pick(0, 2), c.pick(0, 2), c.pick(0, 2), c.pick(0, 2)],
        };
        for (a, &side) in hw.iter().enumerate() {
            if pool {
                w.pads[a] = w.pads[a].min(w.k[a] - 1);
                w.pads[a + 2] = w.pads[a + 2].min(w.k[a] - 1);
            }
            let padded = side + w.pads[a] + w.pads[a + 2];
            if padded < w.extent(a) {
                w.dilation[a] = 1;
            }
            if padded < w.extent(a) {
                w.k[a] = padded.min(w.k[a]).max(1);
                if pool {
                    w.pads[a] = w.pads[a].min(w.k[a] - 1);
                    w.pads[a + 2] = w.pads[a + 2].min(w.k[a] - 1);
                }
            }
        }
        w
    }
    fn extent(&self, a: usize) -> usize {
        self.dilation[a] * (self.k[a] - 1) + 1
    }
    fn out(&self, hw: [usize; 2]) -> [usize; 2] {
        [0, 1].map(|a| {
            (hw[a] + self.pads[a] + self.pads[a + 2] - self.extent(a)) / self.stride[a] + 1
        })
    }
    fn attrs(&self, conv: bool) -> Vec<Attr> {
        let i = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        let mut a = vec![
            Attr::ints("kernel_shape", &i(&self.k)),
            Attr::ints("pads", &i(&self.pads)),
            Attr::ints("strides", &i(&self.stride)),
        ];
        if conv {
            a.push(Attr::ints("dilations", &i(&self.dilation)));
        }
        a
    }
}

/// Divisors of `n` (≥ 1).
fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|&d| n.is_multiple_of(d)).collect()
}

/// Draws a network from `c`.
pub fn build(c: &mut impl Choose) -> Model {
    let b = c.pick(1, 2);
    let c0 = c.pick(1, 6);
    let hw0 = [c.pick(3, 10), c.pick(3, 10)];
    let seed = c.pick(0, u32::MAX as usize) as u64;
    let mut s = B {
        mb: ModelBuilder::new(17),
        rng: Rng(seed.wrapping_add(0x5851_f42d_4c95_7f2d) | 1),
    };
    let dims = |v: [usize; 4]| v.map(Dim::Fixed);
    s.mb.input("x", DType::F32, &dims([b, c0, hw0[0], hw0[1]]))
        .expect("input");
    let (mut x, mut ch, mut hw) = ("x".to_string(), c0, hw0);
    let mut layers = vec![format!("input [{b}, {c0}, {}, {}]", hw0[0], hw0[1])];
    for _ in 0..c.pick(1, 4) {
        let (y, desc);
        (y, ch, hw, desc) = match c.pick(0, 8) {
            0 | 1 => {
                let groups = *pick_of(c, &divisors(ch));
                let o = groups * c.pick(1, 3);
                let w = Window::draw(c, hw, false);
                let bias = c.pick(0, 1) == 1;
                let fan_in = (ch / groups * w.k[0] * w.k[1]) as f32;
                let wt = s.init(
                    "conv.weight",
                    &[o, ch / groups, w.k[0], w.k[1]],
                    fan_in.sqrt().recip(),
                );
                let mut ins = vec![x.clone(), wt];
                if bias {
                    ins.push(s.init("conv.bias", &[o], 0.5));
                }
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                let mut attrs = w.attrs(true);
                attrs.push(Attr::int("group", groups as i64));
                let y = s.node("Conv", &ins, &attrs);
                (
                    y,
                    o,
                    w.out(hw),
                    format!("conv o={o} groups={groups} bias={bias} {w:?}"),
                )
            }
            2 => {
                let (op, attrs): (&str, Vec<Attr>) = match c.pick(0, 6) {
                    0 => ("Relu", vec![]),
                    1 => ("Sigmoid", vec![]),
                    2 => ("Tanh", vec![]),
                    3 => ("LeakyRelu", vec![Attr::float("alpha", 0.1)]),
                    4 => ("HardSigmoid", vec![]),
                    5 => ("HardSwish", vec![]),
                    _ => ("Clip", vec![]),
                };
                let y = if op == "Clip" {
                    let lo = s.mb.fresh("clip_min");
                    s.mb.initializer(&lo, &Tensor::scalar_f32(-0.5))
                        .expect("initializer");
                    let hi = s.mb.fresh("clip_max");
                    s.mb.initializer(&hi, &Tensor::scalar_f32(0.75))
                        .expect("initializer");
                    s.node(op, &[&x, &lo, &hi], &attrs)
                } else {
                    s.node(op, &[&x], &attrs)
                };
                (y, ch, hw, op.to_string())
            }
            3 => {
                let w = Window::draw(c, hw, true);
                let y = s.node("MaxPool", &[&x], &w.attrs(false));
                (y, ch, w.out(hw), format!("maxpool {w:?}"))
            }
            4 => {
                let w = Window::draw(c, hw, true);
                let cip = c.pick(0, 1);
                let mut attrs = w.attrs(false);
                attrs.push(Attr::int("count_include_pad", cip as i64));
                let y = s.node("AveragePool", &[&x], &attrs);
                (
                    y,
                    ch,
                    w.out(hw),
                    format!("avgpool count_include_pad={cip} {w:?}"),
                )
            }
            5 => {
                let y = s.node("GlobalAveragePool", &[&x], &[]);
                (y, ch, [1, 1], "global average pool".to_string())
            }
            6 => {
                let scale = s.init("bn.scale", &[ch], 1.0);
                let bias = s.init("bn.bias", &[ch], 0.5);
                let mean = s.init("bn.mean", &[ch], 0.5);
                let var = {
                    let t = Tensor::from_f32([ch], s.rng.values(ch, 0.5, 1.5)).expect("tensor");
                    let name = s.mb.fresh("bn.var");
                    s.mb.initializer(&name, &t).expect("initializer");
                    name
                };
                let y = s.node(
                    "BatchNormalization",
                    &[&x, &scale, &bias, &mean, &var],
                    &[Attr::float("epsilon", 1e-5)],
                );
                (y, ch, hw, "batchnorm".to_string())
            }
            7 => {
                // x + conv(x): a same-size conv (odd kernel, stride 1, symmetric pads).
                let groups = *pick_of(c, &divisors(ch));
                let k = [1, 3][c.pick(0, 1)];
                let p = (k / 2) as i64;
                let fan_in = (ch / groups * k * k) as f32;
                let wt = s.init(
                    "res.weight",
                    &[ch, ch / groups, k, k],
                    fan_in.sqrt().recip(),
                );
                let attrs = [
                    Attr::ints("kernel_shape", &[k as i64; 2]),
                    Attr::ints("pads", &[p; 4]),
                    Attr::int("group", groups as i64),
                ];
                let r = s.node("Conv", &[&x, &wt], &attrs);
                let y = s.node("Add", &[&x, &r], &[]);
                (y, ch, hw, format!("residual k={k} groups={groups}"))
            }
            _ => dyn_conv(&mut s, c, &x, b, ch, hw),
        };
        x = y;
        layers.push(desc);
    }
    let out = s.node("Identity", &[&x], &[]);
    s.mb.rename(&out, "y").expect("rename");
    let output = [b, ch, hw[0], hw[1]];
    s.mb.output("y", DType::F32, &dims(output)).expect("output");
    Model {
        bytes: s.mb.encode(),
        input: [b, c0, hw0[0], hw0[1]],
        output,
        layers,
        seed,
    }
}

fn pick_of<'a, T>(c: &mut impl Choose, v: &'a [T]) -> &'a T {
    &v[c.pick(0, v.len() - 1)]
}

/// A dynamic convolution in the mix form: GAP → Flatten → Gemm → Softmax gives per-sample
/// expert weights [B, g]; MatMul with the bank [g, O·C/groups·kh·kw] mixes the kernels, which
/// convolve the input reshaped to [1, B·C, H, W] with B·groups groups.
fn dyn_conv(
    s: &mut B,
    c: &mut impl Choose,
    x: &str,
    b: usize,
    ch: usize,
    hw: [usize; 2],
) -> (String, usize, [usize; 2], String) {
    let groups = *pick_of(c, &divisors(ch));
    let o = groups * c.pick(1, 3);
    let g = c.pick(1, 4);
    let w = Window::draw(c, hw, false);
    let bias = c.pick(0, 1) == 1;
    let cg = ch / groups;
    let r = cg * w.k[0] * w.k[1];
    let pooled = s.node("GlobalAveragePool", &[x], &[]);
    let flat = s.node("Flatten", &[&pooled], &[Attr::int("axis", 1)]);
    let rw = s.init("route.weight", &[g, ch], 1.0);
    let rb = s.init("route.bias", &[g], 1.0);
    let logits = s.node("Gemm", &[&flat, &rw, &rb], &[Attr::int("transB", 1)]);
    let coeff = s.node("Softmax", &[&logits], &[Attr::int("axis", 1)]);
    let bank = s.init("dyn.weight", &[g, o * r], (r as f32).sqrt().recip());
    let mixed = s.node("MatMul", &[&coeff, &bank], &[]);
    let wmix = s.reshape(&mixed, &[b * o, cg, w.k[0], w.k[1]]);
    let folded = s.reshape(x, &[1, b * ch, hw[0], hw[1]]);
    let mut ins = vec![folded, wmix];
    if bias {
        let bb = s.init("dyn.bias", &[g, o], 0.5);
        let mb = s.node("MatMul", &[&coeff, &bb], &[]);
        ins.push(s.reshape(&mb, &[b * o]));
    }
    let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
    let mut attrs = w.attrs(true);
    attrs.push(Attr::int("group", (groups * b) as i64));
    let y = s.node("Conv", &ins, &attrs);
    let out = w.out(hw);
    let y = s.reshape(&y, &[b, o, out[0], out[1]]);
    let desc = format!("dyn_conv o={o} groups={groups} experts={g} bias={bias} {w:?}");
    (y, o, out, desc)
}
