//! `fuse_act`: folds a SiLU or HardSwish after a conv or dyn_conv into its epilogue activation
//! (`act`), applied after the producer's clamp, so the activation costs no pass over memory.
//!
//! Matches, on a `conv` or `dyn_conv` x without an activation that is not a graph output:
//! - `unary hard_swish` of x, x used by nothing else: `act=hard_swish`;
//! - SiLU as exported (timm, torch): `binary mul` of x and `unary sigmoid` of x (either
//!   order), x used only by those two and the sigmoid only by the mul and not a graph output:
//!   `act=silu`.
//!
//! Exact: the producer computes the same functions of the same f32 value (SiLU as
//! x·sigmoid(x) rounded like the two ops). The HardSigmoid+Mul spelling of HardSwish is left
//! alone (its α = 1/6 rounds to f32, so it is not the same function). Run after `fuse_clamp`
//! (a clamp applies before the activation, so `silu(relu(conv))` folds both, while a clamp
//! after the activation cannot fold into an epilogue that already has one). Leaves the
//! activation dead for DCE.

use super::is_output;
use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::{Act, BinaryKind, UnaryKind};
use dync_ir::{Graph, NodeId, Op};

pub struct FuseAct;

impl Pass for FuseAct {
    fn name(&self) -> &'static str {
        "fuse_act"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        super::fuse_in_order(g, "fuse_act", fuse)
    }
}

fn is_unary(g: &Graph, n: NodeId, kind: UnaryKind) -> bool {
    matches!(&g.node(n).op, Op::Unary(u) if u.kind == kind)
}

/// The activation `n` computes of its producer, and that producer: x with its only users
/// listed in `users` (the activation's nodes).
fn matched(g: &Graph, n: NodeId) -> Option<(Act, NodeId)> {
    if is_unary(g, n, UnaryKind::HardSwish) {
        let x = g.operands(n)[0];
        return (g.users(x).len() == 1).then_some((Act::HardSwish, x));
    }
    if !matches!(&g.node(n).op, Op::Binary(b) if b.kind == BinaryKind::Mul) {
        return None;
    }
    let ops = g.operands(n);
    let [a, b] = ops[..] else {
        return None;
    };
    let (x, s) = [(a, b), (b, a)].into_iter().find(|&(x, s)| {
        is_unary(g, s, UnaryKind::Sigmoid) && g.operands(s)[0] == x && g.ty(x) == g.ty(n)
    })?;
    let only_here = g.users(x).len() == 2 && g.users(s).len() == 1 && !is_output(g, s);
    only_here.then_some((Act::Silu, x))
}

fn fuse(g: &mut Graph, n: NodeId) -> bool {
    let Some((act, x)) = matched(g, n) else {
        return false;
    };
    if is_output(g, x) {
        return false;
    }
    let slot = match &mut g.node_mut(x).op {
        Op::Conv(conv) => &mut conv.act,
        Op::DynConv(conv) => &mut conv.act,
        _ => return false,
    };
    if slot.is_some() {
        return false;
    }
    *slot = Some(act);
    g.replace_uses(n, x);
    true
}
