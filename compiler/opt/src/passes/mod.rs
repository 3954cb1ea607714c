//! One file per pass; each opens with its contract (what it matches, what it guarantees, what
//! must run first). `crate::pipeline` orders them. The helpers here walk a graph in dependency
//! order for the passes that rewrite node by node.

use crate::error::PassError;
use dync_ir::{Graph, NodeId};

pub mod concat_transpose;
pub mod dce;
mod dynconv_common;
pub mod dynconv_mix;
pub mod dynconv_scale;
mod dynconv_trace;
pub mod dynconv_train;
pub mod fold_bn;
pub mod fold_constants;
pub mod fuse_act;
pub mod fuse_clamp;
pub mod fuse_predictor;
pub mod fuse_residual;
pub mod retarget_batch;
pub mod se_fold;
pub mod simplify_reshapes;
pub mod split_batch;

/// Whether `x` is one of `g`'s outputs.
pub(crate) fn is_output(g: &Graph, x: NodeId) -> bool {
    g.outputs.iter().any(|(_, o)| *o == x)
}

/// The nodes of `g` in dependency order, or the error of pass `pass` on a cyclic graph.
pub(crate) fn topo_order(g: &Graph, pass: &'static str) -> Result<Vec<NodeId>, PassError> {
    g.topo_order().map_err(|n| PassError::Rewrite {
        pass,
        origin: format!("%{}", n.index()),
        message: "the graph has a cycle".into(),
    })
}

/// Runs `fuse` on every node in dependency order (each call sees the rewrites made before
/// it); whether any call changed the graph.
pub(crate) fn fuse_in_order(
    g: &mut Graph,
    pass: &'static str,
    mut fuse: impl FnMut(&mut Graph, NodeId) -> bool,
) -> Result<bool, PassError> {
    let mut changed = false;
    for n in topo_order(g, pass)? {
        changed |= fuse(g, n);
    }
    Ok(changed)
}
