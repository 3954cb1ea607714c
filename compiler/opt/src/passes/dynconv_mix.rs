//! `dynconv_mix`: recognizes kernel mixing — a `conv` whose weight is computed from a constant
//! bank by a linear mix of per-sample coefficients (timm CondConv, DY-CNN, DyNet Eq. 1, ODConv's
//! kernel and spatial attention) — and rewrites it into one `dyn_conv`.
//!
//! Matches a `conv` with a non-constant weight `[B·O, C/g, kh, kw]`, either with the batch
//! folded into the groups (input `[1, B·C, H, W]` a reshape, possibly zero-padded in H and W, of
//! the per-sample input `[B, C, H, W]`; group = B·g) or at batch 1 (input `[1, C, H, W]`, group
//! = g). The exporters' mixing op is not matched by name: the weight is traced backwards
//! (`dynconv_trace`) through ops linear in their non-constant operand to its single source `c`
//! (the first non-linear value, e.g. a sigmoid or softmax output); a bias computed the same way
//! becomes a bias bank plus a static bias.
//!
//! Proof, before anything changes: (1) structure — every traced kernel element is a sum of
//! `factor · c[k]` terms with `k` in sample 0's part of `c`, each output channel reads the same
//! number g of coefficients, every op between `c` and the kernel is one the tracer follows (so
//! the kernel is linear in `c`), and a constant at least as large as one sample's kernels is
//! multiplied on the way (the bank); (2) the bank is read from that constant when the traced
//! terms read it at an affine index of (channel, kernel, element) — the layouts exporters write
//! — and otherwise extracted by evaluating the weight's cone on one-hot coefficients; (3) the
//! original cone evaluated on a random `c` must equal the mixing formula on every sample
//! (relative tolerance 1e-5): two linear maps that agree at a random point are equal, so this
//! also proves that each sample's kernel depends only on its own coefficients.
//!
//! Rewrite: `dyn_conv(x, coeff, bank[g,O,C/g,kh,kw] (, bias, bias_bank))` with coeff `[B, g]`
//! or `[B, O, g]` built from `c` by slice/reshape/transpose/gather (shared between the convs of
//! a predictor), reshaped back to the conv's result shape. Anything that fails is left as it is
//! and named in a remark with the reason.

use super::dynconv_common::{
    close, coefficient_operand, eval_with, random_tensor, traced_cone, Layout,
};
use super::dynconv_trace::{Source, Tracer};
use crate::error::PassError;
use crate::manager::{Pass, PassCx, Remark};
use dync_ir::ops::{BinaryKind, DynConv, PadMode, Reshape};
use dync_ir::{Graph, NodeId, Op, Tensor};
use std::collections::{BTreeSet, HashMap};

pub struct DynConvMix;

const NAME: &str = "dynconv_mix";
/// More coefficients per output channel than this is not a kernel bank.
const MAX_G: usize = 1024;
/// Largest bank (elements) the pass builds; beyond it the conv is left alone with a remark.
const MAX_BANK: usize = 1 << 28;

/// Everything the rewrite needs, computed before the graph changes (the bank as `[g, O·R]`
/// until verified, then `[g, O, C/group, kh, kw]`).
struct Plan {
    x: NodeId,
    source: NodeId,
    batch: usize,
    per_sample: usize,
    layout: Layout,
    bank: Tensor,
    bias: Option<Tensor>,
    bias_bank: Option<Tensor>,
    op: DynConv,
}

/// The conv's dims: batch B, output channels O per sample, and one kernel's element count R.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    o: usize,
    r: usize,
}

impl Pass for DynConvMix {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        let convs: Vec<NodeId> = g
            .node_ids()
            .filter(|&n| {
                matches!(g.node(n).op, Op::Conv(_))
                    && !matches!(g.node(g.operands(n)[1]).op, Op::Const(_))
            })
            .collect();
        let mut changed = false;
        for conv in convs {
            match analyze(g, conv) {
                Ok(plan) => {
                    apply(g, conv, plan)?;
                    changed = true;
                }
                Err(why) => cx.remarks.push(Remark {
                    pass: NAME,
                    origin: g.node(conv).origin.clone().unwrap_or_default(),
                    message: format!("conv with a computed kernel left as generic ops: {why}"),
                }),
            }
        }
        Ok(changed)
    }
}

/// The per-sample input of a conv whose input is `[1, B·C, H, W]`.
struct Input {
    /// `[B, C, H₀, W₀]`: the farthest ancestor of that shape through reshapes (and zero pads of
    /// H and W), with the largest B; the conv's own input (B = 1) when there is none.
    x: NodeId,
    batch: usize,
    /// Zero padding [top, left, bottom, right] between `x` and the conv, added to its pads.
    pads: [usize; 4],
}

fn per_sample_input(g: &Graph, xc: NodeId) -> Result<Input, String> {
    let s = g.ty(xc).shape.clone();
    if s[0] != 1 {
        return Err(format!(
            "its {} samples share one computed kernel (no per-sample mixing)",
            s[0]
        ));
    }
    let mut best = Input {
        x: xc,
        batch: 1,
        pads: [0; 4],
    };
    let (mut cur, mut pads, mut hw) = (xc, [0usize; 4], [s[2], s[3]]);
    loop {
        match &g.node(cur).op {
            Op::Reshape(_) => {}
            // A zero pad of H and W only, on a layout [a, b, H, W] with a·b = B·C (so that it
            // pads the same planes as a pad of [B, C, H, W] would).
            Op::Pad(p)
                if p.mode == PadMode::Constant
                    && p.value == 0.0
                    && p.pads.len() == 8
                    && g.ty(cur).shape[2..] == hw
                    && g.ty(cur).shape[0].checked_mul(g.ty(cur).shape[1]) == Some(s[1]) =>
            {
                let amount = |i: usize| usize::try_from(p.pads[i]).ok();
                let spatial = [amount(2), amount(3), amount(6), amount(7)];
                if [0, 1, 4, 5].iter().any(|&i| p.pads[i] != 0) || spatial.contains(&None) {
                    break;
                }
                let [t, l, b, r] = spatial.map(|v| v.unwrap_or(0));
                pads = [pads[0] + t, pads[1] + l, pads[2] + b, pads[3] + r];
                hw = [hw[0] - t - b, hw[1] - l - r];
            }
            _ => break,
        }
        cur = g.operands(cur)[0];
        let p = &g.ty(cur).shape;
        if p.len() == 4
            && p[2..] == hw
            && p[0].checked_mul(p[1]) == Some(s[1])
            && p[0] >= best.batch
        {
            best = Input {
                x: cur,
                batch: p[0],
                pads,
            };
        }
    }
    Ok(best)
}

/// Kernel elements traced per output channel: every tap of the first input channel (spatial
/// attention differs per tap) and the last element; the numerical proof covers the rest.
fn traced_elements(r: usize, taps: usize) -> BTreeSet<usize> {
    let mut rs: BTreeSet<usize> = (0..taps.min(r)).collect();
    rs.insert(r - 1);
    rs
}

/// The terms of traced kernel (or bias) elements, grouped by output channel: the single
/// coefficient source, its values per sample, and the source indices each channel reads.
struct Traced {
    batch: usize,
    source: Option<NodeId>,
    per_sample: usize,
    slots: Vec<BTreeSet<usize>>,
    /// Of the last element traced: its constant terms, and (source index, factor) of the others.
    constants: Vec<f64>,
    factors: Vec<(usize, f64, Source)>,
}

impl Traced {
    fn new(batch: usize, channels: usize) -> Self {
        Traced {
            batch,
            source: None,
            per_sample: 0,
            slots: vec![BTreeSet::new(); channels],
            constants: Vec::new(),
            factors: Vec::new(),
        }
    }

    /// Traces element `flat` of `value`, which belongs to output channel `o` of sample 0.
    fn add(
        &mut self,
        g: &Graph,
        tracer: &Tracer,
        value: NodeId,
        o: usize,
        flat: usize,
    ) -> Result<(), String> {
        self.constants.clear();
        self.factors.clear();
        for t in tracer.element(value, flat)? {
            match t.leaves.as_slice() {
                [] => self.constants.push(t.factor),
                [leaf] => {
                    let src = *self.source.get_or_insert(leaf.node);
                    if src != leaf.node {
                        return Err(format!(
                            "it mixes coefficients from two sources, {} and {}",
                            describe(g, src),
                            describe(g, leaf.node)
                        ));
                    }
                    if self.per_sample == 0 {
                        let n = g.ty(src).numel().map_err(|e| e.to_string())?;
                        if n % self.batch != 0 {
                            return Err(format!(
                                "its coefficient source {} does not split into {} samples",
                                describe(g, src),
                                self.batch
                            ));
                        }
                        self.per_sample = n / self.batch;
                    }
                    if leaf.index >= self.per_sample {
                        return Err(
                            "the kernel of sample 0 depends on another sample's coefficients"
                                .into(),
                        );
                    }
                    self.slots[o].insert(leaf.index);
                    self.factors.push((leaf.index, t.factor, t.source));
                }
                _ => return Err("the kernel is a product of computed values".into()),
            }
        }
        Ok(())
    }
}

/// `%n (op "origin")`, for remarks.
fn describe(g: &Graph, n: NodeId) -> String {
    let node = g.node(n);
    match &node.origin {
        Some(o) => format!("%{} ({} {o:?})", n.index(), node.op.name()),
        None => format!("%{} ({})", n.index(), node.op.name()),
    }
}

fn analyze(g: &Graph, conv: NodeId) -> Result<Plan, String> {
    let Op::Conv(cv) = &g.node(conv).op else {
        return Err("not a conv".into());
    };
    let ops = g.operands(conv);
    let (xc, w) = (ops[0], ops[1]);
    let ws = g.ty(w).shape.clone();
    let input = per_sample_input(g, xc)?;
    let (x, b) = (input.x, input.batch);
    if !ws[0].is_multiple_of(b) || !cv.group.is_multiple_of(b) {
        return Err(format!(
            "group {} and {} kernels do not split into {b} samples",
            cv.group, ws[0]
        ));
    }
    let taps = ws[2] * ws[3];
    if ws.contains(&0) {
        return Err("its kernel is empty".into());
    }
    let d = Dims {
        b,
        o: ws[0] / b,
        r: ws[1] * taps,
    };
    let tracer = Tracer::new(g, Vec::new(), false);
    let mut tr = Traced::new(b, d.o);
    let rs = traced_elements(d.r, taps);
    let mut records = Vec::new();
    for o in 0..d.o {
        for &e in &rs {
            tr.add(g, &tracer, w, o, o * d.r + e)?;
            if tr.constants.iter().any(|&c| c != 0.0) {
                return Err(
                    "its kernel has a constant part (affine, not linear, in the coefficients)"
                        .into(),
                );
            }
            records.extend(tr.factors.iter().map(|&(k, f, src)| Record {
                o,
                e,
                k,
                factor: f,
                source: src,
            }));
        }
    }
    let source = tr.source.ok_or("its kernel depends on no computed value")?;
    let mut values = vec![w];
    values.extend(ops.get(2).filter(|&&b| g.const_value(b).is_none()));
    check_cone(g, &tracer, &values, source, d)?;
    let slots: Vec<Vec<usize>> = tr
        .slots
        .iter()
        .map(|s| s.iter().copied().collect())
        .collect();
    let gk = slots[0].len();
    if slots.iter().any(|s| s.len() != gk) {
        return Err("its output channels mix different numbers of kernels".into());
    }
    if gk > MAX_G {
        return Err(format!(
            "{gk} coefficients per output channel is not a kernel bank"
        ));
    }
    if gk.checked_mul(d.o * d.r).is_none_or(|n| n > MAX_BANK) {
        return Err(format!(
            "its bank of {gk} × {} kernel elements is too large",
            d.o * d.r
        ));
    }
    let layout = Layout::from_slots(slots);
    let per_sample = tr.per_sample;
    let bank = match read_off_bank(g, &records, &layout, d, &rs) {
        Some(bank) => bank,
        None => extract_bank(g, w, source, d, per_sample, &layout)?,
    };
    let (bias, bias_bank) = match ops.get(2) {
        Some(&bn) => mixed_bias(g, &tracer, bn, &mut tr, d, &layout)?,
        None => (None, None),
    };
    let op = DynConv {
        strides: cv.strides,
        pads: [0, 1, 2, 3].map(|i| cv.pads[i] + input.pads[i]),
        dilations: cv.dilations,
        group: cv.group / b,
        bias: bias.is_some(),
        bias_bank: bias_bank.is_some(),
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    };
    let plan = Plan {
        x,
        source,
        batch: b,
        per_sample,
        layout,
        bank,
        bias,
        bias_bank,
        op,
    };
    verify(g, conv, &plan, d)?;
    let bank = plan
        .bank
        .reshaped([gk, d.o, ws[1], ws[2], ws[3]])
        .map_err(|e| e.to_string())?;
    Ok(Plan { bank, ..plan })
}

/// The kernel must be linear in `source` and mixed from a constant bank: every op of its cone
/// is one the tracer follows (so the numerical proof at a random point is a proof, not a
/// sample), and some op multiplies by a constant holding at least one sample's kernels (without
/// one, `source` computes the kernel itself). The same linearity is required of the bias.
fn check_cone(
    g: &Graph,
    tracer: &Tracer,
    values: &[NodeId],
    source: NodeId,
    d: Dims,
) -> Result<(), String> {
    let per_sample_kernels = d.o * d.r;
    let mut has_bank = false;
    for &v in values {
        let nodes = traced_cone(g, tracer, v, &[source], |n| {
            format!(
                "it is computed through {}, which is not linear in the coefficients {}",
                describe(g, n),
                describe(g, source)
            )
        })?;
        for n in nodes {
            let multiplies = match &g.node(n).op {
                Op::MatMul(_) | Op::Gemm(_) | Op::Einsum(_) => true,
                Op::Binary(b) => b.kind == BinaryKind::Mul,
                _ => false,
            };
            has_bank |= v == values[0]
                && multiplies
                && g.operands(n).iter().any(|&o| {
                    g.const_value(o)
                        .is_some_and(|t| t.len() >= per_sample_kernels)
                });
        }
    }
    if has_bank {
        Ok(())
    } else {
        Err(format!(
            "its kernel is computed by {}, which is not a linear mix of a constant bank",
            describe(g, source)
        ))
    }
}

/// One traced term of kernel element `e` of output channel `o` (sample 0): coefficient `k`
/// times `factor`, read from the bank element `source`.
struct Record {
    o: usize,
    e: usize,
    k: usize,
    factor: f64,
    source: Source,
}

/// The bank `[g, O·R]` read straight from the constant the kernel is mixed from, when every
/// traced term reads element d + a·o + b·i + c·e of one constant times one common scale (the
/// layouts exporters write: the bank's dims permuted and reshaped) and every traced element
/// mixes all g kernels; `None` otherwise, and the probes extract it instead. The numerical
/// proof checks the result either way; this only saves the probes' evaluations.
fn read_off_bank(
    g: &Graph,
    records: &[Record],
    layout: &Layout,
    d: Dims,
    traced: &BTreeSet<usize>,
) -> Option<Tensor> {
    let gk = layout.g();
    if records.len() != d.o * traced.len() * gk {
        return None;
    }
    let (first, _) = records.first()?.source?;
    let bank = g.const_value(first.node)?.as_f32()?;
    // Each record as (o, slot i, e, index into the constant, factor).
    let points: Vec<(usize, usize, usize, usize, f64)> = records
        .iter()
        .map(|r| {
            let (leaf, _) = r.source?;
            let i = (0..gk).find(|&i| layout.index(r.o, i) == r.k)?;
            (leaf.node == first.node).then_some((r.o, i, r.e, leaf.index, r.factor))
        })
        .collect::<Option<_>>()?;
    let at = |o, i, e| {
        points
            .iter()
            .find(|p| (p.0, p.1, p.2) == (o, i, e))
            .and_then(|p| i64::try_from(p.3).ok())
    };
    let base = at(0, 0, 0)?;
    let step = |p: Option<i64>, n: i64| -> Option<i64> {
        let diff = p? - base;
        (diff % n == 0).then_some(diff / n)
    };
    let a = if d.o > 1 { step(at(1, 0, 0), 1)? } else { 0 };
    let b = if gk > 1 { step(at(0, 1, 0), 1)? } else { 0 };
    let c = match traced.iter().find(|&&e| e > 0) {
        Some(&e1) => step(at(0, 0, e1), i64::try_from(e1).ok()?)?,
        None => 0,
    };
    let index = |o: usize, i: usize, e: usize| -> Option<usize> {
        let v = base
            .checked_add(a.checked_mul(i64::try_from(o).ok()?)?)?
            .checked_add(b.checked_mul(i64::try_from(i).ok()?)?)?
            .checked_add(c.checked_mul(i64::try_from(e).ok()?)?)?;
        usize::try_from(v).ok().filter(|&v| v < bank.len())
    };
    // One scale, from the term with the largest bank value.
    let &(_, _, _, ref_index, ref_factor) = points
        .iter()
        .max_by(|x, y| bank[x.3].abs().total_cmp(&bank[y.3].abs()))?;
    let ref_value = f64::from(bank[ref_index]);
    if ref_value == 0.0 {
        return None;
    }
    let scale = ref_factor / ref_value;
    for &(o, i, e, idx, factor) in &points {
        let want = scale * f64::from(bank[idx]);
        if index(o, i, e)? != idx || (factor - want).abs() > 1e-6 * factor.abs() {
            return None;
        }
    }
    // Every kernel's elements lie at start + c·e; both ends must be in range.
    let kernels = d.o * d.r;
    let mut out = vec![0f32; gk * kernels];
    for i in 0..gk {
        for o in 0..d.o {
            let start = index(o, i, 0)?;
            index(o, i, d.r - 1)?;
            let dst = &mut out[i * kernels + o * d.r..][..d.r];
            for (e, v) in dst.iter_mut().enumerate() {
                // In range: between the two ends checked above.
                let src = (start as i64 + c * e as i64) as usize;
                *v = (scale * f64::from(bank[src])) as f32;
            }
        }
    }
    Tensor::from_f32([gk, kernels], out).ok()
}

/// Sample 0's probe pattern: every coefficient slot `i` of every channel set to 1. The slots
/// must be distinct per source element so that one probe isolates one kernel per channel.
fn probe_slots(layout: &Layout) -> Result<(), String> {
    if let Layout::PerChannel(rows) = layout {
        let mut slot_of: HashMap<usize, usize> = HashMap::new();
        for row in rows {
            for (i, &k) in row.iter().enumerate() {
                if *slot_of.entry(k).or_insert(i) != i {
                    return Err(
                        "one coefficient weighs different kernels of different channels".into(),
                    );
                }
            }
        }
    }
    Ok(())
}

/// The bank `[g, O·R]`: kernel slot i of every channel is the weight computed with coefficient
/// slot i set to one and all others zero. Sample b of a round probes slot `round·B + b`.
fn extract_bank(
    g: &Graph,
    w: NodeId,
    source: NodeId,
    d: Dims,
    per_sample: usize,
    layout: &Layout,
) -> Result<Tensor, String> {
    probe_slots(layout)?;
    let gk = layout.g();
    let shape = g.ty(source).shape.clone();
    let kernels = d.o * d.r;
    let mut bank = vec![0f32; gk * kernels];
    for round in 0..gk.div_ceil(d.b) {
        let mut probe = vec![0f32; d.b * per_sample];
        for s in 0..d.b {
            let i = round * d.b + s;
            if i < gk {
                for o in 0..d.o {
                    probe[s * per_sample + layout.index(o, i)] = 1.0;
                }
            }
        }
        let probe = Tensor::from_f32(shape.clone(), probe).map_err(|e| e.to_string())?;
        let wv = eval_with(g, w, &[(source, &probe)])?;
        let wv = wv.as_f32().ok_or("the kernel is not f32")?;
        for s in 0..d.b {
            let i = round * d.b + s;
            if i < gk {
                bank[i * kernels..][..kernels].copy_from_slice(&wv[s * kernels..][..kernels]);
            }
        }
    }
    Tensor::from_f32([gk, kernels], bank).map_err(|e| e.to_string())
}

/// The bias `[B·O]` as a static part `[O]` and a bias bank `[g, O]` over the kernel's
/// coefficient slots (each `None` when zero).
fn mixed_bias(
    g: &Graph,
    tracer: &Tracer,
    bias: NodeId,
    tr: &mut Traced,
    d: Dims,
    layout: &Layout,
) -> Result<(Option<Tensor>, Option<Tensor>), String> {
    let gk = layout.g();
    let mut stat = vec![0f32; d.o];
    let mut bb = vec![0f32; gk * d.o];
    for o in 0..d.o {
        let before = tr.slots[o].clone();
        tr.add(g, tracer, bias, o, o)?;
        if tr.slots[o] != before {
            return Err("its bias reads coefficients its kernel does not".into());
        }
        stat[o] = tr.constants.iter().sum::<f64>() as f32;
        for &(k, f, _) in &tr.factors {
            let i = (0..gk)
                .find(|&i| layout.index(o, i) == k)
                .ok_or("its bias reads coefficients its kernel does not")?;
            bb[i * d.o + o] += f as f32;
        }
    }
    let stat = stat
        .iter()
        .any(|&v| v != 0.0)
        .then(|| Tensor::from_f32([d.o], stat))
        .transpose()
        .map_err(|e| e.to_string())?;
    let bb = bb
        .iter()
        .any(|&v| v != 0.0)
        .then(|| Tensor::from_f32([gk, d.o], bb))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok((stat, bb))
}

/// The numerical proof: on a random coefficient source, the conv's original kernel (and bias)
/// equal the mixing formula on every sample.
fn verify(g: &Graph, conv: NodeId, p: &Plan, d: Dims) -> Result<(), String> {
    let (source, per_sample, layout) = (p.source, p.per_sample, &p.layout);
    let ops = g.operands(conv);
    let shape = g.ty(source).shape.clone();
    let c = random_tensor(&shape, 0x5eed ^ conv.index() as u64)?;
    let cv = c.as_f32().ok_or("coefficients are not f32")?;
    let gk = layout.g();
    let coef = |s: usize, o: usize, i: usize| f64::from(cv[s * per_sample + layout.index(o, i)]);
    let wv = eval_with(g, ops[1], &[(source, &c)])?;
    let wv = wv.as_f32().ok_or("the kernel is not f32")?;
    let bank = p.bank.as_f32().ok_or("the bank is not f32")?;
    let kernels = d.o * d.r;
    // Per kernel, the mix Σ_i coef·bank_i (and Σ_i |coef·bank_i|) of all its elements, summed
    // over i in ascending order.
    let (mut want, mut mag) = (vec![0f64; d.r], vec![0f64; d.r]);
    for s in 0..d.b {
        for o in 0..d.o {
            want.fill(0.0);
            mag.fill(0.0);
            for i in 0..gk {
                let c = coef(s, o, i);
                let row = &bank[i * kernels + o * d.r..][..d.r];
                for ((w, m), &v) in want.iter_mut().zip(&mut mag).zip(row) {
                    let t = c * f64::from(v);
                    *w += t;
                    *m += t.abs();
                }
            }
            let got = &wv[s * kernels + o * d.r..][..d.r];
            for (e, ((&x, &want), &mag)) in got.iter().zip(&want).zip(&mag).enumerate() {
                if !close(x, want, mag) {
                    return Err(format!(
                        "its kernel is not the per-sample mix of a bank (sample {s}, output \
                         channel {o}, element {e}: {x} vs {want})"
                    ));
                }
            }
        }
    }
    if let Some(&bn) = ops.get(2) {
        let bv = eval_with(g, bn, &[(source, &c)])?;
        let bv = bv.as_f32().ok_or("the bias is not f32")?;
        let stat = p.bias.as_ref().and_then(Tensor::as_f32);
        let bb = p.bias_bank.as_ref().and_then(Tensor::as_f32);
        for s in 0..d.b {
            for o in 0..d.o {
                let base = stat.map_or(0.0, |v| f64::from(v[o]));
                let (mut want, mut mag) = (base, base.abs());
                if let Some(bb) = bb {
                    for i in 0..gk {
                        let t = coef(s, o, i) * f64::from(bb[i * d.o + o]);
                        want += t;
                        mag += t.abs();
                    }
                }
                if !close(bv[s * d.o + o], want, mag) {
                    return Err(format!(
                        "its bias is not the per-sample mix of a bias bank (sample {s}, output \
                         channel {o})"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn apply(g: &mut Graph, conv: NodeId, p: Plan) -> Result<(), PassError> {
    let origin = g.node(conv).origin.clone();
    let err = |e: dync_ir::ShapeError| PassError::Rewrite {
        pass: NAME,
        origin: origin.clone().unwrap_or_default(),
        message: e.to_string(),
    };
    let coeff = coefficient_operand(g, p.source, p.batch, p.per_sample, &p.layout)?;
    let bank = g.add_const(p.bank, origin.clone());
    let mut operands = vec![p.x, coeff, bank];
    if let Some(b) = p.bias {
        operands.push(g.add_const(b, origin.clone()));
    }
    if let Some(bb) = p.bias_bank {
        operands.push(g.add_const(bb, origin.clone()));
    }
    let dc = g
        .add(Op::DynConv(p.op), &operands, origin.clone())
        .map_err(err)?;
    let want = g.ty(conv).shape.clone();
    let y = if g.ty(dc).shape == want {
        dc
    } else {
        g.add(Op::Reshape(Reshape { shape: want }), &[dc], origin.clone())
            .map_err(err)?
    };
    g.replace_uses(conv, y);
    Ok(())
}
