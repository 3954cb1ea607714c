//! `fuse_clamp`: folds a Relu or Clip into the epilogue of the conv or dyn_conv it reads, so
//! the activation costs no pass over memory: the producer gets `clamp` (Relu: [0, inf], Clip:
//! its bounds) and the activation's uses read the producer.
//!
//! Matches `unary` Relu / Clip whose operand is a `conv` or `dyn_conv` without a clamp or an
//! activation (the epilogue clamps before its activation), used by nothing else and not a
//! graph output (its unclamped value must not be observable); a fused residual stays (the
//! clamp follows it: y = clamp(conv + r)). Exact: the clamp is the same function on the same
//! value. Run after the rewrites that create `dyn_conv`s, after `fold_bn` (a BatchNorm between
//! conv and activation must fold first) and `fuse_residual`, before `fuse_act`; leaves the
//! activation dead for DCE.

use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::{Clamp, UnaryKind};
use dync_ir::{Graph, NodeId, Op};

pub struct FuseClamp;

impl Pass for FuseClamp {
    fn name(&self) -> &'static str {
        "fuse_clamp"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        super::fuse_in_order(g, "fuse_clamp", fuse)
    }
}

/// The clamp a Relu or Clip applies.
fn clamp_of(op: &Op) -> Option<Clamp> {
    match op {
        Op::Unary(u) => match u.kind {
            UnaryKind::Relu => Some(Clamp {
                lo: 0.0,
                hi: f32::INFINITY,
            }),
            UnaryKind::Clip { min, max } => Some(Clamp { lo: min, hi: max }),
            _ => None,
        },
        _ => None,
    }
}

fn fuse(g: &mut Graph, n: NodeId) -> bool {
    let Some(c) = clamp_of(&g.node(n).op) else {
        return false;
    };
    let x = g.operands(n)[0];
    let private = g.users(x).len() == 1 && !super::is_output(g, x);
    let (slot, act) = match &mut g.node_mut(x).op {
        Op::Conv(conv) => (&mut conv.clamp, conv.act),
        Op::DynConv(conv) => (&mut conv.clamp, conv.act),
        _ => return false,
    };
    if !private || slot.is_some() || act.is_some() {
        return false;
    }
    *slot = Some(c);
    g.replace_uses(n, x);
    true
}
