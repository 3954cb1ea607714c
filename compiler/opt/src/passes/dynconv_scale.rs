//! `dynconv_scale`: folds a per-sample, per-output-channel scaling of a `dyn_conv`'s result into
//! its coefficients (ODConv's filter attention, `y · α[B, O, 1, 1]`): since the kernel and the
//! bias bank are linear in the coefficients, conv(x, Σᵢ cᵢ·Wᵢ)·α = conv(x, Σᵢ (α·cᵢ)·Wᵢ). One
//! multiply per coefficient replaces one per output element, and a BatchNormalization after the
//! scaling then reads the `dyn_conv` directly (for `fold_bn`).
//!
//! Matches `binary mul` of a `dyn_conv` (its only use, not a graph output, without a static
//! bias, which the scaling would have to multiply per sample) by a value whose shape, aligned at
//! the right with `[N, O, H, W]`, is `[1|N, 1|O, 1, 1]`. Rewrite: the coefficients become
//! `coeff · α` (per-channel `[N, O, g]`, or per-expert `[N, g]` when α has one channel), and
//! the product is replaced by the new `dyn_conv`. Anything else is left alone; the graph stays
//! correct either way.
//!
//! ODConv's channel attention multiplies the `dyn_conv`'s *input* by α[N, C, 1, 1]. That equals
//! scaling the mixed kernel's input-channel axis per sample, which coefficients [N, O, g] over
//! the same bank cannot express (it would take a bank C times larger), so the multiply stays an
//! elementwise op before the `dyn_conv`; the pass adds a note naming it at every such
//! `dyn_conv` (`PassCx::notes`; a note, not a remark: the dynamic conv itself is recognized).

use crate::error::PassError;
use crate::manager::{Pass, PassCx, Remark};
use dync_ir::ops::{Binary, BinaryKind, DynConv, Reshape};
use dync_ir::{Graph, NodeId, Op};

pub struct DynConvScale;

const NAME: &str = "dynconv_scale";

impl Pass for DynConvScale {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<bool, PassError> {
        note_channel_attention(g, cx);
        let muls: Vec<NodeId> = g
            .node_ids()
            .filter(|&n| matches!(&g.node(n).op, Op::Binary(b) if b.kind == BinaryKind::Mul))
            .collect();
        let mut changed = false;
        for m in muls {
            if let Some((d, alpha, op)) = matches(g, m) {
                fold(g, m, d, alpha, op)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// Notes every `dyn_conv` whose input is a computed per-sample, per-input-channel scaling
/// `v · α[N|1, C, 1, 1]` (see the module docs). Each note is made once per `dyn_conv`, when its
/// input is still that multiply.
fn note_channel_attention(g: &Graph, cx: &mut PassCx) {
    for d in g.node_ids() {
        if !matches!(g.node(d).op, Op::DynConv(_)) {
            continue;
        }
        let x = g.operands(d)[0];
        if !matches!(&g.node(x).op, Op::Binary(b) if b.kind == BinaryKind::Mul) {
            continue;
        }
        let xs = &g.ty(x).shape;
        let channel_scale = g.operands(x).into_iter().any(|a| {
            let s = &g.ty(a).shape;
            let full: Vec<usize> = std::iter::repeat_n(1, 4usize.saturating_sub(s.len()))
                .chain(s.iter().copied())
                .collect();
            g.const_value(a).is_none()
                && full.len() == 4
                && full[0] == xs[0]
                && full[1] == xs[1]
                && full[1] > 1
                && full[2] == 1
                && full[3] == 1
        });
        let origin = g.node(d).origin.clone().unwrap_or_default();
        if channel_scale
            && !cx
                .notes
                .iter()
                .any(|n| n.pass == NAME && n.origin == origin)
        {
            cx.notes.push(Remark {
                pass: NAME,
                origin,
                message: format!(
                    "the input is scaled per sample and input channel by {:?} (ODConv channel \
                     attention); that multiply stays an elementwise op before the dyn_conv, as \
                     coefficients [N, O, g] cannot scale the kernel's input-channel axis",
                    g.node(x).origin.clone().unwrap_or_default()
                ),
            });
        }
    }
}

/// (dyn_conv, scaling value, the dyn_conv's op) when `m` is a foldable scaling.
fn matches(g: &Graph, m: NodeId) -> Option<(NodeId, NodeId, DynConv)> {
    let ops = g.operands(m);
    let (d, alpha) = match (&g.node(ops[0]).op, &g.node(ops[1]).op) {
        (Op::DynConv(_), _) => (ops[0], ops[1]),
        (_, Op::DynConv(_)) => (ops[1], ops[0]),
        _ => return None,
    };
    let Op::DynConv(op) = g.node(d).op.clone() else {
        return None;
    };
    let single_use = g.users(d).len() == 1 && !super::is_output(g, d);
    let ys = &g.ty(d).shape;
    let a = &g.ty(alpha).shape;
    let fits = a.len() <= 4 && {
        let full: Vec<usize> = std::iter::repeat_n(1, 4 - a.len())
            .chain(a.iter().copied())
            .collect();
        (full[0] == 1 || full[0] == ys[0])
            && (full[1] == 1 || full[1] == ys[1])
            && full[2] == 1
            && full[3] == 1
    };
    (single_use && fits && !op.bias && alpha != d && g.ty(m).shape == *ys).then_some((d, alpha, op))
}

/// `x` reshaped to `shape`, reading through a reshape that produces `x` (no reshape chains).
fn reshape(
    g: &mut Graph,
    x: NodeId,
    shape: Vec<usize>,
    origin: &Option<String>,
) -> Result<NodeId, dync_ir::ShapeError> {
    let src = match g.node(x).op {
        Op::Reshape(_) => g.operands(x)[0],
        _ => x,
    };
    if g.ty(src).shape == shape {
        return Ok(src);
    }
    g.add(Op::Reshape(Reshape { shape }), &[src], origin.clone())
}

fn fold(g: &mut Graph, m: NodeId, d: NodeId, alpha: NodeId, op: DynConv) -> Result<(), PassError> {
    let origin = g.node(m).origin.clone();
    let err = |e: dync_ir::ShapeError| PassError::Rewrite {
        pass: NAME,
        origin: origin.clone().unwrap_or_default(),
        message: e.to_string(),
    };
    let ops = g.operands(d);
    let coeff = ops[1];
    let n = g.ty(d).shape[0];
    let a = &g.ty(alpha).shape;
    let full: Vec<usize> = std::iter::repeat_n(1, 4 - a.len())
        .chain(a.iter().copied())
        .collect();
    let (an, ao) = (full[0], full[1]);
    let cs = g.ty(coeff).shape.clone();
    let mul = Op::Binary(Binary {
        kind: BinaryKind::Mul,
    });
    let scaled = if cs.len() == 2 && ao == 1 {
        // Per expert, one scale per sample: coeff [N, g] · α [1|N, 1].
        let a2 = reshape(g, alpha, vec![an, 1], &origin).map_err(err)?;
        g.add(mul, &[coeff, a2], origin.clone()).map_err(err)?
    } else {
        let c3 = if cs.len() == 2 {
            reshape(g, coeff, vec![n, 1, cs[1]], &origin).map_err(err)?
        } else {
            coeff
        };
        let a3 = reshape(g, alpha, vec![an, ao, 1], &origin).map_err(err)?;
        // [N, O, g]: α's channel dim is O here (one channel was the branch above, or the
        // coefficients were per channel already).
        g.add(mul, &[c3, a3], origin.clone()).map_err(err)?
    };
    let mut new_ops = ops.clone();
    new_ops[1] = scaled;
    let d_origin = g.node(d).origin.clone();
    let dc = g.add(Op::DynConv(op), &new_ops, d_origin).map_err(err)?;
    g.replace_uses(m, dc);
    Ok(())
}
