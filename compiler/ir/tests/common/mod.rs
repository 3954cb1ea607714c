//! Shared helpers of the IR tests: a generator of random valid graphs driven by a list of random
//! numbers (so that proptest can shrink it), and a structural comparison of graphs that ignores
//! node ids and const data above the inline limit.

#![allow(dead_code)] // Each test binary uses a different part.

use dync_ir::ops::*;
use dync_ir::{
    print_with_errors, verify, DType, Graph, NodeId, Numbering, Op, Tensor, TensorData, TensorType,
};

/// Strings that stress the text form's escaping: quotes, backslashes, control characters,
/// non-ASCII, text that looks like syntax.
pub const TRICKY: &[&str] = &[
    "x",
    "",
    "a\"b",
    "back\\slash",
    "\n\t\r\0",
    "ünï ☃",
    "\u{1F600}",
    "// not a comment",
    "loc(\"y\") }",
    "\u{200b}\u{301}\u{7f}",
    "%3 = const",
];

/// Turns a list of random numbers into choices; past its end every choice is 0.
pub struct Chooser<'a> {
    bits: &'a [u32],
    pos: usize,
}

impl<'a> Chooser<'a> {
    pub fn new(bits: &'a [u32]) -> Self {
        Chooser { bits, pos: 0 }
    }
    pub fn exhausted(&self) -> bool {
        self.pos >= self.bits.len()
    }
    pub fn next(&mut self) -> u32 {
        let v = self.bits.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.next() as usize % n
        }
    }
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    pub fn flip(&mut self) -> bool {
        self.below(2) == 1
    }
    pub fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }
    pub fn f32(&mut self) -> f32 {
        match self.below(12) {
            0 => f32::INFINITY,
            1 => f32::NEG_INFINITY,
            2 => f32::NAN,
            3 => -0.0,
            4 => f32::from_bits(1), // the smallest subnormal
            5 => f32::MAX,
            6 => 1e-7,
            _ => (self.below(2001) as f32 - 1000.0) / 8.0,
        }
    }
    pub fn origin(&mut self) -> Option<String> {
        if self.flip() {
            None
        } else {
            Some(self.pick(TRICKY).to_string())
        }
    }
}

fn const_of(c: &mut Chooser, ty: &TensorType) -> Tensor {
    // The data comes from its own generator (seeded by one choice), so that big consts do not
    // use up the choices that shape the graph.
    let n = ty.numel().unwrap_or(0);
    let mut state = u64::from(c.next()) | 1 << 40;
    let words: Vec<u32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 16) as u32
        })
        .collect();
    let mut d = Chooser::new(&words);
    let data = match ty.dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| d.f32()).collect()),
        DType::I64 => TensorData::I64((0..n).map(|_| d.next() as i64 - (1 << 31)).collect()),
        DType::I32 => TensorData::I32((0..n).map(|_| d.next() as i32).collect()),
        DType::Bool => TensorData::Bool((0..n).map(|_| d.flip()).collect()),
    };
    Tensor::new(ty.shape.clone(), data).unwrap_or_else(|e| panic!("building a const: {e}"))
}

/// Adds a random const of type `ty`.
pub fn add_const(g: &mut Graph, c: &mut Chooser, ty: TensorType) -> NodeId {
    let t = const_of(c, &ty);
    let origin = c.origin();
    g.add_const(t, origin)
}

fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|&d| n.is_multiple_of(d)).collect()
}

/// One random op applied to `x` (adding the consts it needs), or `None` when the choice does
/// not apply to `x`'s type. Attributes are chosen to be valid for `x`; `Graph::add` checks.
fn random_op(
    g: &mut Graph,
    c: &mut Chooser,
    x: NodeId,
    values: &[NodeId],
) -> Option<(Op, Vec<NodeId>)> {
    let t = g.ty(x).clone();
    let r = t.rank();
    let f32_ = t.dtype == DType::F32;
    let s = t.shape.clone();
    Some(match c.below(23) {
        0 if f32_ && r == 4 => {
            let ch = s[1];
            let group = c.pick(&divisors(ch.max(1)));
            let o = group * c.range(1, 2);
            let (kh, kw) = (c.range(1, 3), c.range(1, 3));
            let w = add_const(g, c, TensorType::f32([o, ch / group, kh, kw]));
            let mut ops = vec![x, w];
            if c.flip() {
                ops.push(add_const(g, c, TensorType::f32([o])));
            }
            let in_scale = c.flip();
            if in_scale {
                ops.push(add_const(g, c, TensorType::f32([s[0], ch, 1, 1])));
            }
            let conv = Conv {
                strides: [c.range(1, 2), c.range(1, 2)],
                pads: [c.below(2), c.below(2), c.below(2), c.below(2)],
                dilations: [c.range(1, 2), c.range(1, 2)],
                group,
                clamp: None,
                residual: false,
                act: None,
                in_scale,
            };
            (Op::Conv(conv), ops)
        }
        1 if f32_ && r >= 2 => {
            let mut ops = vec![x];
            for _ in 0..4 {
                ops.push(add_const(g, c, TensorType::f32([s[1]])));
            }
            (
                Op::BatchNorm(BatchNorm {
                    epsilon: c.pick(&[1e-5, 1e-3, 0.0]),
                }),
                ops,
            )
        }
        2 if f32_ => {
            let (a, b) = (c.f32(), c.f32());
            let (lo, hi) = if a.is_nan() || b.is_nan() {
                (0.0, 6.0)
            } else {
                (a.min(b), a.max(b))
            };
            let kind = match c.below(14) {
                0 => UnaryKind::Relu,
                1 => UnaryKind::LeakyRelu {
                    alpha: if lo.is_nan() { 0.1 } else { lo },
                },
                2 => UnaryKind::Sigmoid,
                3 => UnaryKind::HardSigmoid {
                    alpha: 0.2,
                    beta: hi,
                },
                4 => UnaryKind::HardSwish,
                5 => UnaryKind::Clip { min: lo, max: hi },
                6 => UnaryKind::Tanh,
                7 => UnaryKind::Exp,
                8 => UnaryKind::Log,
                9 => UnaryKind::Sqrt,
                10 => UnaryKind::Neg,
                11 => UnaryKind::Abs,
                12 => UnaryKind::Reciprocal,
                _ => UnaryKind::Erf,
            };
            (Op::Unary(Unary { kind }), vec![x])
        }
        3 if t.dtype != DType::Bool => {
            // A broadcastable partner: a suffix of x's shape with some dims set to 1.
            let keep = c.below(r + 1);
            let shape: Vec<usize> = s[r - keep..]
                .iter()
                .map(|&d| if c.flip() { 1 } else { d })
                .collect();
            let other = add_const(g, c, TensorType::new(t.dtype, shape));
            let kinds = [
                BinaryKind::Add,
                BinaryKind::Sub,
                BinaryKind::Mul,
                BinaryKind::Div,
                BinaryKind::Pow,
                BinaryKind::Max,
                BinaryKind::Min,
            ];
            let ops = if c.flip() {
                vec![x, other]
            } else {
                vec![other, x]
            };
            (
                Op::Binary(Binary {
                    kind: c.pick(&kinds),
                }),
                ops,
            )
        }
        4 if f32_ && r >= 1 => {
            let k = s[r - 1];
            let b = if c.flip() {
                add_const(g, c, TensorType::f32([k]))
            } else {
                let n = c.range(1, 3);
                add_const(g, c, TensorType::f32([k, n]))
            };
            (Op::MatMul(MatMul), vec![x, b])
        }
        5 if f32_ && r == 2 => {
            let (trans_a, trans_b) = (c.flip(), c.flip());
            let k = if trans_a { s[0] } else { s[1] };
            let m = if trans_a { s[1] } else { s[0] };
            let n = c.range(1, 3);
            let b = add_const(g, c, TensorType::f32(if trans_b { [n, k] } else { [k, n] }));
            let mut ops = vec![x, b];
            if c.flip() {
                let cshape = c.pick(&[vec![n], vec![m, n], vec![1, n], vec![]]);
                ops.push(add_const(g, c, TensorType::f32(cshape)));
            }
            (
                Op::Gemm(Gemm {
                    alpha: c.f32(),
                    beta: 1.0,
                    trans_a,
                    trans_b,
                }),
                ops,
            )
        }
        6 if f32_ && r >= 1 => {
            // Keep a random subset of x's labels in a random order (the others are summed).
            let labels: Vec<char> = "abcdefgh".chars().take(r).collect();
            let mut out: Vec<char> = labels.iter().copied().filter(|_| c.flip()).collect();
            for i in (1..out.len()).rev() {
                out.swap(i, c.below(i + 1));
            }
            let lhs: String = labels.iter().collect();
            let rhs: String = out.iter().collect();
            let equation = if c.flip() {
                format!("{lhs}->{rhs}")
            } else {
                format!("...{}->...{}", &lhs[1..], rhs.replace('a', ""))
            };
            (Op::Einsum(Einsum { equation }), vec![x])
        }
        7 if f32_ && r >= 1 => (Op::Softmax(Softmax { axis: c.below(r) }), vec![x]),
        8 | 9 if f32_ && r == 4 => {
            let kernel = [c.range(1, 3), c.range(1, 3)];
            let pads = [
                c.below(kernel[0]),
                c.below(kernel[1]),
                c.below(kernel[0]),
                c.below(kernel[1]),
            ];
            let strides = [c.range(1, 3), c.range(1, 3)];
            let ceil_mode = c.flip();
            if c.flip() {
                (
                    Op::AvgPool(AvgPool {
                        kernel,
                        strides,
                        pads,
                        ceil_mode,
                        count_include_pad: c.flip(),
                    }),
                    vec![x],
                )
            } else {
                let dilations = [c.range(1, 2), c.range(1, 2)];
                (
                    Op::MaxPool(MaxPool {
                        kernel,
                        strides,
                        pads,
                        dilations,
                        ceil_mode,
                    }),
                    vec![x],
                )
            }
        }
        10 if t.dtype != DType::Bool => {
            let axes: Vec<usize> = (0..r).filter(|_| c.flip()).collect();
            let kinds: &[ReduceKind] = if f32_ {
                &[
                    ReduceKind::Mean,
                    ReduceKind::Sum,
                    ReduceKind::Max,
                    ReduceKind::Min,
                    ReduceKind::Prod,
                ]
            } else {
                &[
                    ReduceKind::Sum,
                    ReduceKind::Max,
                    ReduceKind::Min,
                    ReduceKind::Prod,
                ]
            };
            (
                Op::Reduce(Reduce {
                    kind: c.pick(kinds),
                    axes,
                    keepdims: c.flip(),
                }),
                vec![x],
            )
        }
        11 => {
            let n = t.numel().ok()?;
            let shape = match c.below(3) {
                0 => vec![n],
                1 => vec![1, n],
                _ => s.iter().rev().copied().collect(),
            };
            (Op::Reshape(Reshape { shape }), vec![x])
        }
        12 => {
            let mut perm: Vec<usize> = (0..r).collect();
            for i in (1..r).rev() {
                perm.swap(i, c.below(i + 1));
            }
            (Op::Transpose(Transpose { perm }), vec![x])
        }
        13 if r >= 1 => {
            let same: Vec<NodeId> = values.iter().copied().filter(|&v| *g.ty(v) == t).collect();
            let ops = (0..c.range(1, 3)).map(|_| c.pick(&same)).collect();
            (Op::Concat(Concat { axis: c.below(r) }), ops)
        }
        14 => {
            let (mut starts, mut ends, mut steps) = (vec![], vec![], vec![]);
            for &d in &s {
                let di = d as i64;
                let step = *[1i64, 2, -1, -2].get(c.below(4))?;
                let raw = |c: &mut Chooser| c.below(2 * d + 3) as i64 - di - 1;
                let (st, en) = Slice::clamp(raw(c), raw(c), step, d).ok()?;
                starts.push(st);
                ends.push(en);
                steps.push(step);
            }
            (
                Op::Slice(Slice {
                    starts,
                    ends,
                    steps,
                }),
                vec![x],
            )
        }
        15 if r >= 1 => {
            let axis = c.below(r);
            let d = s[axis].max(1) as i64;
            let ishape = c.pick(&[vec![], vec![2], vec![2, 1]]);
            let n: usize = ishape.iter().product();
            let idx: Vec<i64> = (0..n).map(|_| c.below(2 * d as usize) as i64 - d).collect();
            let indices = g.add_const(Tensor::from_i64(ishape, idx).ok()?, None);
            (Op::Gather(Gather { axis }), vec![x, indices])
        }
        16 => {
            let pads: Vec<i64> = (0..2 * r).map(|_| c.below(4) as i64 - 1).collect();
            let mode = c.pick(&[PadMode::Constant, PadMode::Reflect, PadMode::Edge]);
            (
                Op::Pad(Pad {
                    pads,
                    mode,
                    value: c.f32(),
                }),
                vec![x],
            )
        }
        17 if f32_ => {
            let sizes: Vec<usize> = s
                .iter()
                .map(|&d| if d == 0 { 0 } else { c.range(1, 6) })
                .collect();
            let scales = s
                .iter()
                .zip(&sizes)
                .map(|(&d, &o)| if d == 0 { 1.0 } else { o as f32 / d as f32 })
                .collect();
            let resize = Resize {
                mode: c.pick(&[ResizeMode::Nearest, ResizeMode::Linear]),
                coord: c.pick(&[
                    CoordMode::HalfPixel,
                    CoordMode::PytorchHalfPixel,
                    CoordMode::AlignCorners,
                    CoordMode::Asymmetric,
                    CoordMode::HalfPixelSymmetric,
                ]),
                nearest: c.pick(&[
                    NearestMode::RoundPreferFloor,
                    NearestMode::RoundPreferCeil,
                    NearestMode::Floor,
                    NearestMode::Ceil,
                ]),
                sizes,
                scales,
            };
            (Op::Resize(resize), vec![x])
        }
        18 => (
            Op::Cast(Cast {
                to: c.pick(&[DType::F32, DType::I64, DType::I32, DType::Bool]),
            }),
            vec![x],
        ),
        19 => {
            let mut shape: Vec<usize> = s
                .iter()
                .map(|&d| if d == 1 { c.range(1, 3) } else { d })
                .collect();
            if c.flip() {
                shape.insert(0, 2);
            }
            (Op::Expand(Expand { shape }), vec![x])
        }
        20 if f32_ && r == 4 => {
            let ch = s[1];
            let group = c.pick(&divisors(ch.max(1)));
            let o = group * c.range(1, 2);
            let (g_, kh, kw) = (c.range(1, 3), c.range(1, 3), c.range(1, 3));
            let coeff_shape = if c.flip() {
                vec![s[0], o, g_]
            } else {
                vec![s[0], g_]
            };
            let coeff = add_const(g, c, TensorType::f32(coeff_shape));
            let bank = add_const(g, c, TensorType::f32([g_, o, ch / group, kh, kw]));
            let (bias, bias_bank) = (c.flip(), c.flip());
            let mut ops = vec![x, coeff, bank];
            if bias {
                ops.push(add_const(g, c, TensorType::f32([o])));
            }
            if bias_bank {
                ops.push(add_const(g, c, TensorType::f32([g_, o])));
            }
            let op = DynConv {
                strides: [c.range(1, 2), c.range(1, 2)],
                pads: [c.below(2), c.below(2), c.below(2), c.below(2)],
                dilations: [c.range(1, 2), c.range(1, 2)],
                group,
                bias,
                bias_bank,
                clamp: None,
                residual: false,
                act: None,
                in_scale: false,
            };
            (Op::DynConv(op), ops)
        }
        21 if f32_ && r == 4 => {
            let mut ops = vec![x];
            let mut width = s[1];
            for _ in 0..c.range(1, 3) {
                let out = c.range(1, 4);
                ops.push(add_const(g, c, TensorType::f32([out, width])));
                ops.push(add_const(g, c, TensorType::f32([out])));
                width = out;
            }
            let act = if c.flip() {
                PredictAct::Sigmoid
            } else {
                PredictAct::Softmax {
                    run: c.pick(&divisors(width)),
                }
            };
            let hidden = c.pick(&[Hidden::None, Hidden::Relu, Hidden::Silu]);
            (
                Op::Predict(Predict {
                    hidden,
                    act,
                    scale: c.f32(),
                }),
                ops,
            )
        }
        _ => return None,
    })
}

/// A random valid graph: one or two inputs, random ops (until the choices run out), mostly on
/// the latest value and sometimes on an earlier one, and outputs on the last value and random others; dead nodes removed.
pub fn random_graph(bits: &[u32]) -> Graph {
    let mut c = Chooser::new(bits);
    let mut g = Graph::new();
    let mut values = Vec::new();
    for i in 0..c.range(1, 2) {
        let shape = [c.range(1, 2), c.range(1, 4), c.range(1, 5), c.range(1, 5)];
        let name = format!("{}{i}", c.pick(TRICKY));
        values.push(g.add_input(name, TensorType::f32(shape)));
    }
    while !c.exhausted() {
        // Mostly chains (so that most ops survive dead-code removal), sometimes branches.
        let x = if c.below(4) == 0 {
            c.pick(&values)
        } else {
            values[values.len() - 1]
        };
        if let Some((op, operands)) = random_op(&mut g, &mut c, x, &values) {
            let origin = c.origin();
            if let Ok(id) = g.add(op, &operands, origin) {
                values.push(id);
            }
        }
    }
    // The last value, and up to two random ones (possibly the same again, or an input).
    let last = values[values.len() - 1];
    g.set_output(c.pick(TRICKY), last);
    for i in 0..c.below(3) {
        let v = c.pick(&values);
        g.set_output(format!("{}{i}", c.pick(TRICKY)), v);
    }
    // Drops the consts of ops that were not added, and values no output uses.
    g.remove_dead();
    g
}

fn same_data(a: &Tensor, b: &Tensor) -> bool {
    let bits = |t: &Tensor| -> Vec<u64> {
        match t.data() {
            // All NaNs print as `NaN`, so payloads are not compared.
            TensorData::F32(v) => v
                .iter()
                .map(|x| {
                    if x.is_nan() {
                        u64::MAX
                    } else {
                        x.to_bits() as u64
                    }
                })
                .collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as u64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as u64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u64).collect(),
        }
    };
    a.ty() == b.ty() && bits(a) == bits(b)
}

/// Asserts that `parsed` (from the text of `orig`) is `orig` up to node ids, with the const
/// data above the inline limit replaced by its content hash.
pub fn assert_same_graph(orig: &Graph, parsed: &Graph) {
    let (na, nb) = (Numbering::new(orig), Numbering::new(parsed));
    let num = |n: &Numbering, id: NodeId| n.number(id).unwrap_or(usize::MAX);
    let sig = |g: &Graph, n: &Numbering, list: &[(String, NodeId)]| -> Vec<(String, usize)> {
        let _ = g;
        list.iter()
            .map(|(s, id)| (s.clone(), num(n, *id)))
            .collect()
    };
    assert_eq!(
        sig(orig, &na, &orig.inputs),
        sig(parsed, &nb, &parsed.inputs),
        "inputs"
    );
    assert_eq!(
        sig(orig, &na, &orig.outputs),
        sig(parsed, &nb, &parsed.outputs),
        "outputs"
    );
    assert_eq!(na.body().len(), nb.body().len(), "instruction count");
    for (&a, &b) in na.body().iter().zip(nb.body()) {
        let (x, y) = (orig.node(a), parsed.node(b));
        let at = num(&na, a);
        assert_eq!(at, num(&nb, b), "numbering");
        assert_eq!(x.ty, y.ty, "type of %{at}");
        assert_eq!(x.origin, y.origin, "origin of %{at}");
        let ops = |g: &Graph, n: &Numbering, id| {
            g.operands(id)
                .iter()
                .map(|&o| num(n, o))
                .collect::<Vec<_>>()
        };
        assert_eq!(ops(orig, &na, a), ops(parsed, &nb, b), "operands of %{at}");
        match (&x.op, &y.op) {
            (Op::Const(p), Op::Const(q)) => {
                assert_eq!(p.ty, q.ty, "const type of %{at}");
                match (&p.value, &q.value) {
                    (Some(v), Some(w)) => {
                        assert!(same_data(v, w), "const data of %{at}: {v:?} vs {w:?}")
                    }
                    (Some(v), None) => {
                        assert!(v.len() > INLINE_LIMIT, "small const %{at} lost its data");
                        assert_eq!(q.blob_hash, Some(v.content_hash()), "blob hash of %{at}");
                    }
                    (None, None) => assert_eq!(
                        q.blob_hash,
                        Some(p.blob_hash.unwrap_or(0)),
                        "blob hash of %{at}"
                    ),
                    (None, Some(_)) => panic!("data-less const %{at} gained data"),
                }
            }
            // Debug output compares floats by their shortest decimal form, so NaN equals NaN.
            (p, q) => assert_eq!(format!("{p:?}"), format!("{q:?}"), "op of %{at}"),
        }
    }
}

/// Asserts that `g` verifies, showing the errors on the IR otherwise.
pub fn assert_verifies(g: &Graph) {
    if let Err(errors) = verify(g) {
        panic!("verifier errors:\n{}", print_with_errors(g, &errors));
    }
}
