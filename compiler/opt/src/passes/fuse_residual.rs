//! `fuse_residual`: folds an elementwise add of a conv's or dyn_conv's result into its
//! epilogue (ResNet's `conv_bn(x) + identity`), so the sum costs no pass over memory: the
//! producer gets `residual=true` and the other addend as its last operand, and the add's uses
//! read the producer.
//!
//! Matches `binary add` with a `conv` or `dyn_conv` operand (either position; the first that
//! qualifies) that has no epilogue yet (no residual, clamp or activation: the residual comes
//! first in the epilogue), is used by nothing else and is not a graph output (its value
//! without the addend must not be observable), and whose type the add's result and the other
//! addend both have exactly (no broadcast). Exact: the producer computes (conv + bias) + r in
//! f32 like the add. The other addend cannot depend on the producer (its only use is the add),
//! so no cycle arises. Run after `fold_bn` (a BatchNorm between conv and add must fold first)
//! and before `fuse_clamp`, so a Relu after the add still folds: y = clamp(conv + r). Leaves
//! the add dead for DCE.

use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::BinaryKind;
use dync_ir::{Graph, NodeId, Op};

pub struct FuseResidual;

impl Pass for FuseResidual {
    fn name(&self) -> &'static str {
        "fuse_residual"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        super::fuse_in_order(g, "fuse_residual", fuse)
    }
}

/// Whether `x` is a conv or dyn_conv without an epilogue, whose only use is one operand of
/// one node and which is not a graph output.
fn fusable(g: &Graph, x: NodeId) -> bool {
    let bare = match &g.node(x).op {
        Op::Conv(c) => !c.residual && c.clamp.is_none() && c.act.is_none(),
        Op::DynConv(c) => !c.residual && c.clamp.is_none() && c.act.is_none(),
        _ => false,
    };
    bare && g.users(x).len() == 1 && !super::is_output(g, x)
}

fn fuse(g: &mut Graph, n: NodeId) -> bool {
    if !matches!(&g.node(n).op, Op::Binary(b) if b.kind == BinaryKind::Add) {
        return false;
    }
    let ops = g.operands(n);
    let [a, b] = ops[..] else {
        return false;
    };
    let ty = g.ty(n);
    let Some((x, r)) = [(a, b), (b, a)]
        .into_iter()
        .find(|&(x, r)| fusable(g, x) && g.ty(x) == ty && g.ty(r) == ty)
    else {
        return false;
    };
    let port = g.operands(x).len();
    match &mut g.node_mut(x).op {
        Op::Conv(c) => c.residual = true,
        Op::DynConv(c) => c.residual = true,
        _ => return false,
    }
    g.set_operand(x, port, r);
    g.replace_uses(n, x);
    true
}
