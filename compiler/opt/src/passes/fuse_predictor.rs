//! `fuse_predictor`: replaces a coefficient predictor written as a chain of generic ops by one
//! `predict` op (see `dync_ir::ops::Predict`), which the backend computes in one routine per
//! sample: the global average, the fully connected layers and the activation, with no
//! intermediate tensor in memory and one kernel call instead of five to ten.
//!
//! Matches, walking back from a `unary` sigmoid or a `softmax` over the last axis (whose run
//! length becomes `run`):
//! - an optional multiply or divide by an f32 scalar constant (DY-CNN's temperature) → `scale`;
//! - one or more layers, each `gemm` (alpha = beta = 1, `a` not transposed, constant weight and
//!   bias), `matmul` by a constant [I, O] followed by `add` of a constant bias, or a 1×1 `conv`
//!   of a [N, I, 1, 1] value (group 1, no padding or residual, constant weight and bias; its
//!   epilogue may be a Relu clamp [0, inf] or a SiLU); between layers all the same activation:
//!   Relu, SiLU (as a 1×1 conv's epilogue) or none;
//! - down to `reduce` mean over axes [2, 3] of a rank-4 value x (GlobalAveragePool/ReduceMean);
//! - reshapes anywhere between, when they keep the leading (sample) extent: each sample's data
//!   stays contiguous and in order.
//!
//! Every matched value but the activation's must have the chain as its only user and not be a
//! graph output (it is no longer computed). The activation's uses then read the `predict`
//! (through a reshape to the activation's shape when it is not [N, O]). Run after `fuse_clamp`
//! and `fuse_act` (a hidden 1×1 conv's Relu or SiLU is then its epilogue); `retarget_batch`
//! handles `predict`. Leaves the chain dead for DCE. Anything else is left alone, still correct as generic ops.

use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::{
    Act, BinaryKind, Clamp, Hidden, Predict, PredictAct, ReduceKind, Reshape, UnaryKind,
};
use dync_ir::{Graph, NodeId, Op, Tensor};

pub struct FusePredictor;

impl Pass for FusePredictor {
    fn name(&self) -> &'static str {
        "fuse_predictor"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        let acts: Vec<NodeId> = g
            .node_ids()
            .filter(|&n| activation(g, n).is_some())
            .collect();
        let mut changed = false;
        for a in acts {
            if let Some(chain) = Chain::find(g, a) {
                chain.rewrite(g, a)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// The final activation `n` computes, and its operand.
fn activation(g: &Graph, n: NodeId) -> Option<(PredictAct, NodeId)> {
    let x = *g.operands(n).first()?;
    match &g.node(n).op {
        Op::Unary(u) if u.kind == UnaryKind::Sigmoid => Some((PredictAct::Sigmoid, x)),
        Op::Softmax(s) if s.axis + 1 == g.ty(n).rank() => {
            let run = *g.ty(n).shape.last()?;
            Some((PredictAct::Softmax { run }, x))
        }
        _ => None,
    }
}

/// One fully connected layer: weight [O, I] and bias [O] (row-major f32).
struct Layer {
    w: Vec<f32>,
    inputs: usize,
    outputs: usize,
    b: Vec<f32>,
}

/// A matched predictor: the pooled value, the layers in order, the activations.
struct Chain {
    x: NodeId,
    layers: Vec<Layer>,
    hidden: Hidden,
    act: PredictAct,
    scale: f32,
}

/// Walks back from the activation. Every node it steps onto must be private to the chain: one
/// user, not a graph output.
struct Walk<'g> {
    g: &'g Graph,
}

impl Walk<'_> {
    fn private(&self, v: NodeId) -> Option<()> {
        let g = self.g;
        (g.users(v).len() == 1 && !super::is_output(g, v)).then_some(())
    }

    /// Steps onto `v`, then down through reshapes that keep the leading (sample) extent.
    fn down(&self, mut v: NodeId) -> Option<NodeId> {
        self.private(v)?;
        while let Op::Reshape(_) = self.g.node(v).op {
            let src = self.g.operands(v)[0];
            if self.g.ty(src).shape.first() != self.g.ty(v).shape.first() {
                return None;
            }
            self.private(src)?;
            v = src;
        }
        Some(v)
    }

    /// `v` as a multiply or divide by an f32 scalar constant: the factor and the other operand.
    fn scaling(&self, v: NodeId) -> Option<(f32, NodeId)> {
        let Op::Binary(bin) = &self.g.node(v).op else {
            return None;
        };
        let ops = self.g.operands(v);
        let scalar = |i: usize| self.constant(ops[i]).filter(|s| s.len() == 1).map(|s| s[0]);
        match bin.kind {
            BinaryKind::Mul => match (scalar(0), scalar(1)) {
                (_, Some(s)) => Some((s, ops[0])),
                (Some(s), None) => Some((s, ops[1])),
                (None, None) => None,
            },
            BinaryKind::Div => scalar(1).map(|s| (1.0 / s, ops[0])),
            _ => None,
        }
    }

    /// The f32 elements of constant `v`.
    fn constant(&self, v: NodeId) -> Option<&[f32]> {
        self.g.const_value(v).and_then(Tensor::as_f32)
    }

    /// A bias of `outputs` elements from constant `v` ([O] or [1, O]).
    fn bias(&self, v: Option<NodeId>, outputs: usize) -> Option<Vec<f32>> {
        match v {
            None => Some(vec![0.0; outputs]),
            Some(v) => {
                let shape = &self.g.ty(v).shape;
                let ok = shape == &[outputs] || shape == &[1, outputs];
                ok.then(|| self.constant(v).map(<[f32]>::to_vec)).flatten()
            }
        }
    }

    /// The layer computing `v`, its input value and the activation its epilogue ends with.
    fn layer(&self, v: NodeId) -> Option<(Layer, NodeId, Hidden)> {
        let ops = self.g.operands(v);
        let in_ty = |i: usize| self.g.ty(ops[i]).shape.clone();
        match &self.g.node(v).op {
            Op::Gemm(gm) if gm.alpha == 1.0 && gm.beta == 1.0 && !gm.trans_a => {
                let w = self.g.ty(ops[1]).shape.clone();
                let (i, o) = if gm.trans_b {
                    (w[1], w[0])
                } else {
                    (w[0], w[1])
                };
                let data = self.constant(ops[1])?;
                let w = if gm.trans_b {
                    data.to_vec()
                } else {
                    transpose(data, i, o)
                };
                let b = self.bias(ops.get(2).copied(), o)?;
                let layer = Layer {
                    w,
                    inputs: i,
                    outputs: o,
                    b,
                };
                Some((layer, ops[0], Hidden::None))
            }
            Op::Binary(bin) if bin.kind == BinaryKind::Add => {
                let (mm, bias) = match (&self.g.node(ops[0]).op, &self.g.node(ops[1]).op) {
                    (Op::MatMul(_), _) => (ops[0], ops[1]),
                    (_, Op::MatMul(_)) => (ops[1], ops[0]),
                    _ => return None,
                };
                let m = self.g.operands(mm);
                let (a, w) = (&self.g.ty(m[0]).shape, &self.g.ty(m[1]).shape);
                if a.len() != 2 || w.len() != 2 || self.g.ty(v).shape != [a[0], w[1]] {
                    return None;
                }
                let (i, o) = (w[0], w[1]);
                let layer = Layer {
                    w: transpose(self.constant(m[1])?, i, o),
                    inputs: i,
                    outputs: o,
                    b: self.bias(Some(bias), o)?,
                };
                self.private(mm)?;
                Some((layer, m[0], Hidden::None))
            }
            Op::Conv(c) if c.group == 1 && c.pads == [0; 4] && !c.residual => {
                let (x, w) = (in_ty(0), in_ty(1));
                if x.len() != 4 || x[2..] != [1, 1] || w[2..] != [1, 1] {
                    return None;
                }
                let ends = match (c.clamp, c.act) {
                    (None, None) => Hidden::None,
                    (Some(Clamp { lo, hi }), None) if lo == 0.0 && hi == f32::INFINITY => {
                        Hidden::Relu
                    }
                    (None, Some(Act::Silu)) => Hidden::Silu,
                    _ => return None,
                };
                let (o, i) = (w[0], w[1]);
                let layer = Layer {
                    w: self.constant(ops[1])?.to_vec(),
                    inputs: i,
                    outputs: o,
                    b: self.bias(c.bias_index(ops.len()).map(|b| ops[b]), o)?,
                };
                Some((layer, ops[0], ends))
            }
            _ => None,
        }
    }
}

impl Chain {
    /// The predictor ending in activation `a`, when every node of it qualifies.
    fn find(g: &Graph, a: NodeId) -> Option<Chain> {
        let (act, v) = activation(g, a)?;
        let walk = Walk { g };
        let mut v = walk.down(v)?;
        let mut scale = 1.0;
        if let Some((s, inner)) = walk.scaling(v) {
            scale = s;
            v = walk.down(inner)?;
        }
        let mut layers = Vec::new();
        // The activation of each boundary between two layers: a unary Relu, or the epilogue
        // of the layer below when it is a 1×1 conv (not both); `above` is the boundary above
        // the layer being matched, none for the last layer.
        let mut boundaries = Vec::new();
        let mut above: Option<Hidden> = None;
        let x = loop {
            let (layer, input, ends) = walk.layer(v)?;
            match (above, ends) {
                (None, Hidden::None) => {}
                (None, _) => return None,
                (Some(h), Hidden::None) => boundaries.push(h),
                (Some(Hidden::None), e) => boundaries.push(e),
                (Some(_), _) => return None,
            }
            layers.push(layer);
            let mut u = walk.down(input)?;
            let relu = matches!(&g.node(u).op, Op::Unary(un) if un.kind == UnaryKind::Relu);
            if relu {
                u = walk.down(g.operands(u)[0])?;
            }
            if is_global_mean(g, u) {
                // A Relu of the pooled vector is no boundary between layers.
                if relu {
                    return None;
                }
                break g.operands(u)[0];
            }
            above = Some(if relu { Hidden::Relu } else { Hidden::None });
            v = u;
        };
        let hidden = match boundaries.split_first() {
            None => Hidden::None,
            Some((&h, rest)) if rest.iter().all(|&r| r == h) => h,
            Some(_) => return None,
        };
        layers.reverse();
        let chain = Chain {
            x,
            layers,
            hidden,
            act,
            scale,
        };
        chain.chains(g).then_some(chain)
    }

    /// The layer widths chain from the pooled channels to the activation's elements.
    fn chains(&self, g: &Graph) -> bool {
        let mut width = g.ty(self.x).shape[1];
        for l in &self.layers {
            if l.inputs != width || l.w.len() != l.inputs * l.outputs || l.b.len() != l.outputs {
                return false;
            }
            width = l.outputs;
        }
        true
    }

    fn rewrite(self, g: &mut Graph, a: NodeId) -> Result<(), PassError> {
        let origin = g.node(a).origin.clone();
        let err = |e: String| PassError::Rewrite {
            pass: "fuse_predictor",
            origin: origin.clone().unwrap_or_default(),
            message: e,
        };
        let mut operands = vec![self.x];
        for l in self.layers {
            let w = Tensor::from_f32([l.outputs, l.inputs], l.w).map_err(|e| err(e.to_string()))?;
            let b = Tensor::from_f32([l.outputs], l.b).map_err(|e| err(e.to_string()))?;
            operands.push(g.add_const(w, origin.clone()));
            operands.push(g.add_const(b, origin.clone()));
        }
        let op = Predict {
            hidden: self.hidden,
            act: self.act,
            scale: self.scale,
        };
        let mut new = g
            .add(Op::Predict(op), &operands, origin.clone())
            .map_err(|e| err(e.to_string()))?;
        let shape = g.ty(a).shape.clone();
        if g.ty(new).shape != shape {
            new = g
                .add(Op::Reshape(Reshape { shape }), &[new], origin.clone())
                .map_err(|e| err(e.to_string()))?;
        }
        g.replace_uses(a, new);
        Ok(())
    }
}

/// `v` is the mean of a rank-4 value over its spatial axes.
fn is_global_mean(g: &Graph, v: NodeId) -> bool {
    matches!(&g.node(v).op, Op::Reduce(r) if r.kind == ReduceKind::Mean && r.axes == [2, 3])
        && g.ty(g.operands(v)[0]).rank() == 4
}

/// The [cols, rows] transpose of a row-major [rows, cols] matrix.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| v[r * cols + c]))
        .collect()
}
