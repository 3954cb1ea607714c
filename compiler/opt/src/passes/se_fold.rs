//! `se_fold`: folds a squeeze-excitation gate — an elementwise multiply of a feature map by a
//! per-image, per-channel scale — into the conv or dyn_conv that reads the product, as its
//! input scale (`in_scale`): the conv then scales its weights per image, `W[o, c] · s[n, c]`
//! (a dyn_conv its mixed kernels), which costs O·C·kh·kw multiplies per image where the
//! multiply made a pass over the feature map through memory (EfficientNet's and
//! MobileNetV3's `se/Mul` before each projection conv).
//!
//! Matches `binary mul` of x [N, C, H, W] and s [N, C, 1, 1] (either order, both f32, more
//! than one position) whose only use is operand 0 of one `conv` or `dyn_conv`, which is not
//! a graph output, when that conv:
//! - has no input scale yet, one group and stride 1 (no split-copy phase);
//! - takes the GEMM path (codegen's packing criterion: at least [`MIN_OUT`] output
//!   channels, a reduction of at least [`MIN_STEPS`] steps, at least [`MIN_POSITIONS`]
//!   output positions) with a constant weight (bank) used by nothing else, so that it is
//!   packed;
//! - has no more weight elements than one image of x (scaling the weights per image costs
//!   less than the pass it saves; MobileNet's and EfficientNet's 7×7 projections have more).
//!
//! The conv gets `in_scale=true` and s as its last operand (after a residual: run after
//! `fuse_residual`, `fuse_clamp` and `fuse_act`, which append or set the epilogue), and the
//! multiply is left dead for DCE. Not bit-exact: compiled code multiplies the weights by the
//! scale instead of the feature map, so products round differently (to f32 rounding).

use super::is_output;
use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::BinaryKind;
use dync_ir::{DType, Graph, NodeId, Op};

/// The GEMM path's smallest conv (`compiler/codegen/src/pack.rs`, `Packing::for_conv`): output
/// channels, reduction steps and output positions.
pub const MIN_OUT: usize = 4;
pub const MIN_STEPS: usize = 4;
pub const MIN_POSITIONS: usize = 8;

pub struct SeFold;

impl Pass for SeFold {
    fn name(&self) -> &'static str {
        "se_fold"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        super::fuse_in_order(g, "se_fold", fold)
    }
}

/// The feature map and the scale `n` multiplies, when it is a squeeze-excitation gate.
fn gate(g: &Graph, n: NodeId) -> Option<(NodeId, NodeId)> {
    if !matches!(&g.node(n).op, Op::Binary(b) if b.kind == BinaryKind::Mul) {
        return None;
    }
    let [a, b] = g.operands(n)[..] else {
        return None;
    };
    let ty = g.ty(n);
    [(a, b), (b, a)].into_iter().find(|&(x, s)| {
        let (xt, st) = (g.ty(x), g.ty(s));
        let [images, ch, h, w] = xt.shape[..] else {
            return false;
        };
        xt == ty
            && xt.dtype == DType::F32
            && st.dtype == DType::F32
            && st.shape == [images, ch, 1, 1]
            && h.saturating_mul(w) > 1
    })
}

/// Whether `conv`, a conv or dyn_conv reading the gated map as operand 0, takes the gate as
/// its input scale.
fn takes(g: &Graph, conv: NodeId) -> bool {
    let (free, group, strides, w) = match &g.node(conv).op {
        Op::Conv(c) => (!c.in_scale, c.group, c.strides, 1),
        Op::DynConv(d) => (!d.in_scale, d.group, d.strides, 2),
        _ => return false,
    };
    let ops = g.operands(conv);
    let (Some(&x), Some(&w)) = (ops.first(), ops.get(w)) else {
        return false;
    };
    let (xt, wt, yt) = (g.ty(x), g.ty(w), g.ty(conv));
    // A dyn_conv's bank has the experts first.
    let ws = &wt.shape[wt.shape.len().saturating_sub(4)..];
    let ([_, ch, h, wd], [o, _, kh, kw], [_, _, oh, ow]) = (&xt.shape[..], ws, &yt.shape[..])
    else {
        return false;
    };
    let steps = ch.saturating_mul(kh * kw);
    let packed = *o >= MIN_OUT && steps >= MIN_STEPS && oh.saturating_mul(*ow) >= MIN_POSITIONS;
    let weight_alone = matches!(g.node(w).op, Op::Const(_)) && g.users(w).len() == 1;
    let cheaper = o.saturating_mul(steps) <= ch.saturating_mul(h.saturating_mul(*wd));
    free && group == 1 && strides == [1, 1] && packed && weight_alone && cheaper
}

fn fold(g: &mut Graph, n: NodeId) -> bool {
    let Some((_, s)) = gate(g, n) else {
        return false;
    };
    let users = g.users(n);
    let [(conv, 0)] = users[..] else {
        return false;
    };
    if is_output(g, n) || !takes(g, conv) {
        return false;
    }
    let x = g.operands(n).into_iter().find(|&o| o != s).unwrap_or(s);
    let port = g.operands(conv).len();
    match &mut g.node_mut(conv).op {
        Op::Conv(c) => c.in_scale = true,
        Op::DynConv(d) => d.in_scale = true,
        _ => return false,
    }
    g.set_operand(conv, 0, x);
    g.set_operand(conv, port, s);
    true
}
