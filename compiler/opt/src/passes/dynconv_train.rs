//! `dynconv_train`: recognizes DyNet's training form — a `conv` with O·g static kernels whose
//! output is weighted per sample and summed over the g kernels of each output channel (exported
//! as `conv → reshape [B,O,g,H,W] → mul η[B,O,g,1,1] → reduce sum over g`) — and rewrites it
//! into one `dyn_conv` that mixes the g kernels first: g× fewer conv multiply-adds.
//!
//! Matches a `conv` with a constant weight `[O·g, C/group, kh, kw]` (and a constant or no bias)
//! followed by a chain of single-user ops (reshape, transpose, expand, slice, binary, reduce sum
//! or mean) that contains a product with a computed value and a reduction, and ends in a value
//! `z` of shape `[B, O, H', W']` (the last such value of the chain). Nothing is matched by name.
//!
//! Proof, before anything changes: (1) structure — `z[0, o, 0, 0]` is traced backwards
//! (`dynconv_trace`, products of computed values allowed) and must be a sum of
//! `factor · y[0, ch, 0, 0] · s[k]` terms, `y` the conv's output and `s` one other computed value
//! (the coefficients), each output channel weighting the same number g of distinct conv channels
//! that lie in its own group; (2) every op between (`y`, `s`) and `z` is one the tracer follows,
//! so the chain is a polynomial in (`y`, `s`); (3) the chain evaluated on random `y` and `s`
//! must equal Σᵢ factor·s[b, k(o,i)]·y[b, ch(o,i), h, w] everywhere (relative tolerance 1e-5):
//! agreement of two polynomials at a random point proves the identity. Every value of the chain
//! must be used only by the chain, so the conv disappears.
//!
//! Rewrite: `dyn_conv(x, coeff, bank (, bias_bank))` replacing `z`, with bank[i, o] =
//! factor(o,i)·W[ch(o,i)], the conv's bias (if any) mixed as a bias bank, and coeff built from
//! `s` as in `dynconv_mix`. A chain that looks like the training form but fails a check is left
//! as it is and named in a remark with the reason.

use super::dynconv_common::{
    close, coefficient_operand, eval_with, random_tensor, traced_cone, Layout,
};
use super::dynconv_trace::Tracer;
use crate::error::PassError;
use crate::manager::{Pass, PassCx, Remark};
use dync_ir::ops::{BinaryKind, DynConv, ReduceKind};
use dync_ir::{Graph, NodeId, Op, Tensor};
use std::collections::HashSet;

pub struct DynConvTrain;

const NAME: &str = "dynconv_train";
/// Longest chain of ops followed from the conv.
const MAX_CHAIN: usize = 16;
/// Largest bank (elements) the pass builds; beyond it the conv is left alone with a remark.
const MAX_BANK: usize = 1 << 28;

/// One weighted conv channel of an output channel: (conv channel, coefficient index within a
/// sample, constant factor).
type Weighted = (usize, usize, f64);

struct Plan {
    z: NodeId,
    x: NodeId,
    source: NodeId,
    batch: usize,
    per_sample: usize,
    layout: Layout,
    bank: Tensor,
    bias_bank: Option<Tensor>,
    op: DynConv,
}

impl Pass for DynConvTrain {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        let convs: Vec<NodeId> = g
            .node_ids()
            .filter(|&n| {
                matches!(g.node(n).op, Op::Conv(_))
                    && g.operands(n)[1..]
                        .iter()
                        .all(|&o| g.const_value(o).is_some())
            })
            .collect();
        let mut changed = false;
        for conv in convs {
            let Some(z) = chain_end(g, conv) else {
                continue;
            };
            match analyze(g, conv, z) {
                Ok(plan) => {
                    apply(g, conv, plan)?;
                    changed = true;
                }
                Err(why) => cx.remarks.push(Remark {
                    pass: NAME,
                    origin: g.node(conv).origin.clone().unwrap_or_default(),
                    message: format!(
                        "conv weighted and summed per output channel left as generic ops: {why}"
                    ),
                }),
            }
        }
        Ok(changed)
    }
}

/// The end `z` of the training-form chain after conv `y`, if the chain has one (see the module
/// docs).
fn chain_end(g: &Graph, y: NodeId) -> Option<NodeId> {
    let ys = g.ty(y).shape.clone();
    let (mut cur, mut found) = (y, None);
    let (mut weighted, mut summed) = (false, false);
    for _ in 0..MAX_CHAIN {
        if super::is_output(g, cur) {
            break;
        }
        let mut users: Vec<NodeId> = g.users(cur).into_iter().map(|(u, _)| u).collect();
        users.sort_unstable();
        users.dedup();
        let [u] = users[..] else {
            break;
        };
        let ops = g.operands(u);
        match &g.node(u).op {
            Op::Reshape(_) | Op::Transpose(_) | Op::Expand(_) | Op::Slice(_) => {}
            Op::Binary(b) => {
                let computed_other = ops.iter().any(|&o| o != cur && g.const_value(o).is_none());
                weighted |= b.kind == BinaryKind::Mul && computed_other;
            }
            Op::Reduce(r) if matches!(r.kind, ReduceKind::Sum | ReduceKind::Mean) => summed = true,
            _ => break,
        }
        cur = u;
        let s = &g.ty(cur).shape;
        if weighted
            && summed
            && s.len() == 4
            && s[0] == ys[0]
            && s[2..] == ys[2..]
            && s[1] > 0
            && s[1] < ys[1]
            && ys[1].is_multiple_of(s[1])
        {
            found = Some(cur);
        }
    }
    found
}

fn analyze(g: &Graph, conv: NodeId, z: NodeId) -> Result<Plan, String> {
    let Op::Conv(cv) = &g.node(conv).op else {
        return Err("not a conv".into());
    };
    let ops = g.operands(conv);
    let ys = g.ty(conv).shape.clone();
    let (b, og, hw) = (ys[0], ys[1], ys[2] * ys[3]);
    let o = g.ty(z).shape[1];
    if b == 0 || hw == 0 {
        return Err("its output is empty".into());
    }
    let tracer = Tracer::new(g, vec![conv], true);
    let mut source: Option<NodeId> = None;
    let mut per_sample = 0;
    let mut rows: Vec<Vec<Weighted>> = Vec::with_capacity(o);
    for oc in 0..o {
        let mut row = Vec::new();
        for t in tracer.element(z, oc * hw)? {
            let (ys_leaf, s_leaf) =
                match t.leaves.as_slice() {
                    [a, c] if a.node == conv && c.node != conv => (a, c),
                    [a, c] if c.node == conv && a.node != conv => (c, a),
                    _ => return Err(
                        "its sum is not of conv channels each weighted by one computed coefficient"
                            .into(),
                    ),
                };
            let src = *source.get_or_insert(s_leaf.node);
            if src != s_leaf.node {
                return Err("its coefficients come from two different values".into());
            }
            if per_sample == 0 {
                let n = g.ty(src).numel().map_err(|e| e.to_string())?;
                if n % b != 0 {
                    return Err(format!("its coefficients do not split into {b} samples"));
                }
                per_sample = n / b;
            }
            let iy = ys_leaf.index;
            if iy / (og * hw) != 0 || iy % hw != 0 || s_leaf.index >= per_sample {
                return Err(
                    "an output element reads other samples or other positions of the conv".into(),
                );
            }
            row.push(((iy / hw) % og, s_leaf.index, t.factor));
        }
        row.sort_by_key(|w| w.0);
        if row.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err("a conv channel is weighted by a sum of coefficients".into());
        }
        rows.push(row);
    }
    let gk = rows.first().map_or(0, Vec::len);
    if gk == 0 || rows.iter().any(|r| r.len() != gk) {
        return Err("its output channels sum different numbers of conv channels".into());
    }
    let source = source.ok_or("its sum is not weighted by computed coefficients")?;
    let grp = cv.group;
    if !o.is_multiple_of(grp) {
        return Err(format!(
            "{o} output channels do not split into {grp} groups"
        ));
    }
    let (per_group_y, per_group_z) = (og / grp, o / grp);
    if rows
        .iter()
        .enumerate()
        .any(|(oc, r)| r.iter().any(|w| w.0 / per_group_y != oc / per_group_z))
    {
        return Err("an output channel sums conv channels of another group".into());
    }
    let layout = Layout::from_slots(
        rows.iter()
            .map(|r| r.iter().map(|w| w.1).collect())
            .collect(),
    );
    let w = g
        .const_value(ops[1])
        .and_then(Tensor::as_f32)
        .ok_or("its kernel is not an f32 constant")?;
    let ws = g.ty(ops[1]).shape.clone();
    let k = ws[1] * ws[2] * ws[3];
    if gk.checked_mul(o * k).is_none_or(|n| n > MAX_BANK) {
        return Err(format!(
            "its bank of {gk} × {} kernel elements is too large",
            o * k
        ));
    }
    let mut bank = vec![0f32; gk * o * k];
    for (oc, r) in rows.iter().enumerate() {
        for (i, &(ch, _, f)) in r.iter().enumerate() {
            for (dst, &src) in bank[(i * o + oc) * k..][..k]
                .iter_mut()
                .zip(&w[ch * k..][..k])
            {
                *dst = (f * f64::from(src)) as f32;
            }
        }
    }
    let bank = Tensor::from_f32([gk, o, ws[1], ws[2], ws[3]], bank).map_err(|e| e.to_string())?;
    let bias_bank = match ops.get(2) {
        Some(&bn) => {
            let bv = g
                .const_value(bn)
                .and_then(Tensor::as_f32)
                .ok_or("its bias is not an f32 constant")?;
            let mut bb = vec![0f32; gk * o];
            for (oc, r) in rows.iter().enumerate() {
                for (i, &(ch, _, f)) in r.iter().enumerate() {
                    bb[i * o + oc] = (f * f64::from(bv[ch])) as f32;
                }
            }
            Some(Tensor::from_f32([gk, o], bb).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    check_chain(g, &tracer, conv, z, source)?;
    verify(g, conv, z, source, per_sample, &rows)?;
    Ok(Plan {
        z,
        x: ops[0],
        source,
        batch: b,
        per_sample,
        layout,
        bank,
        bias_bank: bias_bank.clone(),
        op: DynConv {
            strides: cv.strides,
            pads: cv.pads,
            dilations: cv.dilations,
            group: grp,
            bias: false,
            bias_bank: bias_bank.is_some(),
            clamp: None,
            residual: false,
            act: None,
            in_scale: false,
        },
    })
}

/// The numerical proof (see the module docs).
fn verify(
    g: &Graph,
    conv: NodeId,
    z: NodeId,
    source: NodeId,
    per_sample: usize,
    rows: &[Vec<Weighted>],
) -> Result<(), String> {
    let ys = g.ty(conv).shape.clone();
    let (b, og, hw) = (ys[0], ys[1], ys[2] * ys[3]);
    let seed = conv.index() as u64;
    let y = random_tensor(&ys, 0x7a11 ^ seed)?;
    let s = random_tensor(&g.ty(source).shape, 0xc0ef ^ seed)?;
    let zv = eval_with(g, z, &[(conv, &y), (source, &s)])?;
    let (yv, sv) = (
        y.as_f32().unwrap_or_default(),
        s.as_f32().unwrap_or_default(),
    );
    let zv = zv.as_f32().ok_or("the sum is not f32")?;
    let o = rows.len();
    for bi in 0..b {
        for (oc, row) in rows.iter().enumerate() {
            for p in 0..hw {
                let (mut want, mut mag) = (0f64, 0f64);
                for &(ch, k, f) in row {
                    let t = f
                        * f64::from(sv[bi * per_sample + k])
                        * f64::from(yv[(bi * og + ch) * hw + p]);
                    want += t;
                    mag += t.abs();
                }
                let got = zv[(bi * o + oc) * hw + p];
                if !close(got, want, mag) {
                    return Err(format!(
                        "its result is not the weighted sum of conv channels (sample {bi}, \
                         output channel {oc}, position {p}: {got} vs {want})"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every op between the conv (and the coefficients) and `z` must be one the tracer follows, so
/// that the chain is a polynomial in (`y`, `s`) and the numerical proof a proof; and every
/// value between the conv and `z` must be used only on the way to `z`, or the conv stays.
fn check_chain(
    g: &Graph,
    tracer: &Tracer,
    conv: NodeId,
    z: NodeId,
    source: NodeId,
) -> Result<(), String> {
    let mut dep: HashSet<NodeId> = HashSet::from([conv]);
    let nodes = traced_cone(g, tracer, z, &[conv, source], |n| {
        format!(
            "%{} ({}) between the conv and the sum is not linear",
            n.index(),
            g.node(n).op.name()
        )
    })?;
    for n in nodes {
        if g.operands(n).iter().any(|o| dep.contains(o)) {
            dep.insert(n);
        }
    }
    for &n in &dep {
        if n == z {
            continue;
        }
        if super::is_output(g, n) {
            return Err(format!("%{} is also a graph output", n.index()));
        }
        if let Some((u, _)) = g.users(n).into_iter().find(|(u, _)| !dep.contains(u)) {
            return Err(format!(
                "%{} is also used by %{} ({})",
                n.index(),
                u.index(),
                g.node(u).op.name()
            ));
        }
    }
    Ok(())
}

fn apply(g: &mut Graph, conv: NodeId, p: Plan) -> Result<(), PassError> {
    let origin = g.node(conv).origin.clone();
    let coeff = coefficient_operand(g, p.source, p.batch, p.per_sample, &p.layout)?;
    let bank = g.add_const(p.bank, origin.clone());
    let mut operands = vec![p.x, coeff, bank];
    if let Some(bb) = p.bias_bank {
        operands.push(g.add_const(bb, origin.clone()));
    }
    let dc = g
        .add(Op::DynConv(p.op), &operands, origin.clone())
        .map_err(|e| PassError::Rewrite {
            pass: NAME,
            origin: origin.unwrap_or_default(),
            message: e.to_string(),
        })?;
    g.replace_uses(p.z, dc);
    Ok(())
}
