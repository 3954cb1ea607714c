//! `retarget_batch`: re-targets a fixed-batch graph to batch N (`--batch N`) when every op is
//! per-sample, i.e. sample n of every value depends only on sample n of the graph inputs.
//!
//! Before: a verified graph whose inputs all have the same leading dim B (the old batch); it
//! runs after recognition, when the batch-as-groups reshapes of dynamic convolutions are gone.
//! The pass tracks, for every value, which axis indexes the samples (`Samples::Axis`) or that the
//! value is the same for every sample (`Samples::Shared`, i.e. derived from constants only).
//! Graph inputs carry the samples on axis 0; every op either maps that axis to an axis of its
//! result (per-sample), or mixes samples. The rewrite changes the inputs' leading dims to N,
//! changes the attributes that spell the batch out (a reshape's target, a full slice's end,
//! resize and expand sizes), replaces constants that repeat one slice B times along the sample
//! axis by the slice (broadcast operands) or N copies (concat, einsum, dyn_conv coefficients),
//! and re-infers every node's type with its op's `infer`.
//!
//! Rejected, with [`PassError::Retarget`] naming the value (`%k` as printed), the op and its
//! ONNX node: an op that mixes samples (a reshape that merges or splits the sample axis, a
//! reduction, softmax, concat, slice, gather, pad or resize along it, a contraction over it, a
//! conv or pool across it, a conv whose kernel is computed per sample, a batch norm whose
//! channels are the samples), and a constant with B different slices along the sample axis
//! (the graph then treats samples differently). Graph-level problems (no inputs, inputs with
//! different leading dims, N = 0) are [`PassError::Batch`]. On error the graph is unchanged.
//! N = B changes nothing and checks nothing.

use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::{EinsumSpec, Input};
use dync_ir::{Graph, NodeId, Numbering, Op, Tensor, TensorData, TensorType};
use std::collections::HashMap;

pub struct RetargetBatch {
    /// The new batch size N.
    pub batch: usize,
}

const NAME: &str = "retarget_batch";

impl Pass for RetargetBatch {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        let n = self.batch;
        let graph_error = |reason: String| PassError::Batch { batch: n, reason };
        if n == 0 {
            return Err(graph_error("the batch must be at least 1".into()));
        }
        let Some((first, _)) = g.inputs.first() else {
            return Err(graph_error("the graph has no inputs to re-target".into()));
        };
        let old = leading_dim(g, 0).ok_or_else(|| {
            graph_error(format!(
                "input {first:?} is a scalar, so it has no batch dim"
            ))
        })?;
        for (i, (name, _)) in g.inputs.iter().enumerate() {
            if leading_dim(g, i) != Some(old) {
                return Err(graph_error(format!(
                    "input {name:?} has type {}, but input {first:?} sets the batch to {old}",
                    g.ty(g.inputs[i].1)
                )));
            }
        }
        if old == 0 {
            return Err(graph_error(format!(
                "input {first:?} has an empty batch, which cannot be re-targeted"
            )));
        }
        if old == n {
            return Ok(false);
        }
        let steps = analyze(g, old, n).map_err(|(id, reason)| node_error(g, id, n, reason))?;
        let mut h = g.clone();
        apply(&mut h, steps, old).map_err(|(id, reason)| node_error(g, id, n, reason))?;
        *g = h;
        Ok(true)
    }
}

fn leading_dim(g: &Graph, input: usize) -> Option<usize> {
    g.ty(g.inputs[input].1).shape.first().copied()
}

/// The error for node `id` of the original graph `g`.
fn node_error(g: &Graph, id: NodeId, batch: usize, reason: String) -> PassError {
    let numbering = Numbering::new(g);
    let node = g.node(id);
    PassError::Retarget {
        batch,
        value: numbering
            .number(id)
            .map_or_else(|| format!("{id:?}"), |k| format!("%{k}")),
        op: node.op.name(),
        origin: node.origin.clone().unwrap_or_else(|| "-".into()),
        reason,
    }
}

/// Where a value carries the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Samples {
    /// The same for every sample (computed from constants only).
    Shared,
    /// Axis `a` indexes the samples; its extent is the batch.
    Axis(usize),
}

/// A shared operand that spells the batch out along the sample axis: operand `port`'s axis
/// `axis` must become `extent` long (1 for a broadcast operand, N otherwise).
struct Retile {
    port: usize,
    axis: usize,
    extent: usize,
}

/// What the rewrite does at one node.
struct Step {
    samples: Samples,
    /// The op with its batch-carrying attributes rewritten, when any.
    op: Option<Op>,
    retiles: Vec<Retile>,
}

impl Step {
    fn keep(samples: Samples) -> Self {
        Step {
            samples,
            op: None,
            retiles: Vec::new(),
        }
    }
}

type NodeResult<T> = Result<T, (NodeId, String)>;

/// The steps that re-target `g` from batch `old` to `new`, in topological order; an error
/// names the offending node. Reads only `g`'s (old) types, so every rule sees one batch.
fn analyze(g: &Graph, old: usize, new: usize) -> NodeResult<Vec<(NodeId, Step)>> {
    let order = g
        .topo_order()
        .map_err(|id| (id, "lies on a cycle".to_string()))?;
    let mut samples: HashMap<NodeId, Samples> = HashMap::new();
    let mut steps = Vec::with_capacity(order.len());
    for id in order {
        let step = if g.inputs.iter().any(|(_, i)| *i == id) {
            let mut ty = g.ty(id).clone();
            ty.shape[0] = new;
            Step {
                samples: Samples::Axis(0),
                op: Some(Op::Input(Input { ty })),
                retiles: Vec::new(),
            }
        } else {
            let operands = g.operands(id);
            let cx = Cx {
                g,
                id,
                old,
                new,
                samples: operands
                    .iter()
                    .map(|o| samples.get(o).copied().unwrap_or(Samples::Shared))
                    .collect(),
                operands: &operands,
            };
            cx.step().map_err(|reason| (id, reason))?
        };
        if let Samples::Axis(a) = step.samples {
            // Every per-sample value must span the batch on its sample axis; the rules derive
            // the axis so that it does, and this keeps them honest.
            if g.ty(id).shape.get(a) != Some(&old) {
                return Err((
                    id,
                    format!(
                        "its result {} does not have the batch {old} on axis {a}",
                        g.ty(id)
                    ),
                ));
            }
        }
        samples.insert(id, step.samples);
        steps.push((id, step));
    }
    Ok(steps)
}

/// Applies `steps` (from [`analyze`] on a graph equal to `h`) to `h`: re-tiled constants, new
/// attributes, and every node's type re-inferred in order.
fn apply(h: &mut Graph, steps: Vec<(NodeId, Step)>, old: usize) -> NodeResult<()> {
    for (id, step) in steps {
        for r in &step.retiles {
            retile(h, id, r, old).map_err(|reason| (id, reason))?;
        }
        if let Some(op) = step.op {
            h.node_mut(id).op = op;
        }
        let ty = match &h.node(id).op {
            Op::Input(i) => i.ty.clone(),
            op => {
                let operands = h.operands(id);
                let tys: Vec<&TensorType> = operands.iter().map(|&o| h.ty(o)).collect();
                op.infer(&tys)
                    .map_err(|e| (id, format!("its type cannot be re-inferred: {e}")))?
            }
        };
        h.node_mut(id).ty = ty;
    }
    Ok(())
}

/// Replaces operand `r.port` of `user` (a constant repeating one slice `old` times along
/// `r.axis`) by a constant with `r.extent` copies of that slice.
fn retile(h: &mut Graph, user: NodeId, r: &Retile, old: usize) -> Result<(), String> {
    let operand = h.operands(user)[r.port];
    let what = format!("operand {} ({})", r.port, h.ty(operand));
    let Some(t) = h.const_value(operand) else {
        return Err(format!(
            "{what} is the same for every sample but spans the batch {old} on axis {}, and it \
             is not a constant with data that could be re-tiled",
            r.axis
        ));
    };
    let shape = t.shape();
    let outer: usize = shape[..r.axis].iter().product();
    let inner: usize = shape[r.axis + 1..].iter().product();
    let data = match t.data() {
        TensorData::F32(v) => tile(v, outer, old, inner, r.extent, |a, b| {
            a.to_bits() == b.to_bits()
        })
        .map(TensorData::F32),
        TensorData::I64(v) => {
            tile(v, outer, old, inner, r.extent, |a, b| a == b).map(TensorData::I64)
        }
        TensorData::I32(v) => {
            tile(v, outer, old, inner, r.extent, |a, b| a == b).map(TensorData::I32)
        }
        TensorData::Bool(v) => {
            tile(v, outer, old, inner, r.extent, |a, b| a == b).map(TensorData::Bool)
        }
    };
    let Some(data) = data else {
        return Err(format!(
            "{what} is a constant whose {old} slices along the sample axis {} differ, so \
             samples are treated differently",
            r.axis
        ));
    };
    let mut new_shape = shape.to_vec();
    new_shape[r.axis] = r.extent;
    let t = Tensor::new(new_shape, data).map_err(|e| format!("{what}: {e}"))?;
    let origin = h.node(operand).origin.clone();
    let c = h.add_const(t, origin);
    h.set_operand(user, r.port, c);
    Ok(())
}

/// `v` viewed as [outer, old, inner] with all `old` slices equal, re-tiled to
/// [outer, extent, inner]; `None` when the slices differ.
fn tile<T: Copy>(
    v: &[T],
    outer: usize,
    old: usize,
    inner: usize,
    extent: usize,
    eq: impl Fn(&T, &T) -> bool,
) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(outer.saturating_mul(extent).saturating_mul(inner));
    for o in 0..outer {
        let block = &v[o * old * inner..(o + 1) * old * inner];
        let first = &block[..inner];
        if !block
            .chunks_exact(inner.max(1))
            .all(|s| s.iter().zip(first).all(|(a, b)| eq(a, b)))
        {
            return None;
        }
        for _ in 0..extent {
            out.extend_from_slice(first);
        }
    }
    Some(out)
}

/// One node's view for the per-op rules.
struct Cx<'a> {
    g: &'a Graph,
    id: NodeId,
    old: usize,
    new: usize,
    operands: &'a [NodeId],
    samples: Vec<Samples>,
}

impl Cx<'_> {
    fn shape(&self, port: usize) -> &[usize] {
        &self.g.ty(self.operands[port]).shape
    }

    /// Where operand 0 carries the samples.
    fn x(&self) -> Samples {
        self.samples.first().copied().unwrap_or(Samples::Shared)
    }

    fn out_shape(&self) -> &[usize] {
        &self.g.ty(self.id).shape
    }

    /// The sample axis of operand `port`, if it has one (`None` for a missing operand).
    fn axis(&self, port: usize) -> Option<usize> {
        match self.samples.get(port)? {
            Samples::Axis(a) => Some(*a),
            Samples::Shared => None,
        }
    }

    /// Requires operand `port` to be the same for every sample.
    fn shared(&self, port: usize, what: &str) -> Result<(), String> {
        match self.axis(port) {
            None => Ok(()),
            Some(a) => Err(format!(
                "its {what} (operand {port}) differs per sample (sample axis {a})"
            )),
        }
    }

    /// The result's sample axis from the operands' axes aligned at the right (elementwise
    /// broadcasting); shared operands spanning the batch there are collapsed to one slice.
    fn broadcast(&self, ports: &[usize]) -> Result<Step, String> {
        let r = self.out_shape().len();
        let mut out = None;
        for &p in ports {
            if let Some(a) = self.axis(p) {
                let aligned = r - self.shape(p).len() + a;
                if out.is_some_and(|o| o != aligned) {
                    return Err(
                        "its operands carry the samples on different axes, so it combines every \
                         sample with every other"
                            .into(),
                    );
                }
                out = Some(aligned);
            }
        }
        let Some(axis) = out else {
            return Ok(Step::keep(Samples::Shared));
        };
        if self.out_shape()[axis] != self.old {
            return Err(format!(
                "it broadcasts the sample axis {axis} to {} entries",
                self.out_shape()[axis]
            ));
        }
        let mut retiles = Vec::new();
        for &p in ports {
            if self.axis(p).is_none() {
                retiles.extend(self.collapse(p, r, axis));
            }
        }
        Ok(Step {
            samples: Samples::Axis(axis),
            op: None,
            retiles,
        })
    }

    /// For shared operand `p` aligned at the right against `r` dims: the re-tiling that makes
    /// it broadcast along the result's sample axis `axis` (none when it already does).
    fn collapse(&self, p: usize, r: usize, axis: usize) -> Option<Retile> {
        let s = self.shape(p);
        let lead = r - s.len();
        (axis >= lead && s[axis - lead] != 1).then_some(Retile {
            port: p,
            axis: axis - lead,
            extent: 1,
        })
    }

    /// Operand `p` (shared) must hold N copies along its axis `axis` when it spans the batch.
    fn tile_shared(&self, p: usize, axis: usize) -> Retile {
        Retile {
            port: p,
            axis,
            extent: self.new,
        }
    }

    fn step(&self) -> Result<Step, String> {
        let x = self.axis(0);
        match &self.g.node(self.id).op {
            // Graph inputs are handled by the caller; an input node outside the signature
            // is not re-targeted (the verifier rejects it anyway).
            Op::Input(_) | Op::Const(_) => Ok(Step::keep(Samples::Shared)),
            Op::Unary(_) | Op::Cast(_) => Ok(Step::keep(self.x())),
            Op::Binary(_) => self.broadcast(&[0, 1]),
            Op::Conv(c) => {
                self.shared(1, "kernel (a dynamic conv dync did not recognize)")?;
                if let Some(b) = c.bias_index(self.operands.len()) {
                    self.shared(b, "bias")?;
                }
                if let Some(r) = c.residual_index(self.operands.len()) {
                    if self.axis(r) != x {
                        return Err("its residual carries the samples unlike its input".into());
                    }
                }
                if let Some(s) = c.scale_index(self.operands.len()) {
                    if self.axis(s) != x {
                        return Err("its input scale carries the samples unlike its input".into());
                    }
                }
                match x {
                    None | Some(0) => Ok(Step::keep(self.x())),
                    Some(a) => Err(format!("it convolves across the sample axis {a}")),
                }
            }
            Op::DynConv(d) => {
                self.shared(2, "bank")?;
                for i in d.bias_index().into_iter().chain(d.bias_bank_index()) {
                    self.shared(i, "bias")?;
                }
                let c = self.axis(1);
                let r = d.residual_index().and_then(|i| self.axis(i));
                let sc = d.scale_index().and_then(|i| self.axis(i));
                if let Some(a) = [x, r, sc].into_iter().flatten().find(|&a| a != 0) {
                    return Err(format!("it convolves across the sample axis {a}"));
                }
                if let Some(a) = c.filter(|&a| a != 0) {
                    return Err(format!(
                        "its coefficients carry the samples on axis {a}, not on the input's"
                    ));
                }
                let mut step = Step::keep(
                    if x.is_some() || c.is_some() || r.is_some() || sc.is_some() {
                        Samples::Axis(0)
                    } else {
                        Samples::Shared
                    },
                );
                // Shared input or coefficients still have one entry per sample.
                if step.samples == Samples::Axis(0) {
                    for p in [0, 1]
                        .into_iter()
                        .chain(d.residual_index())
                        .chain(d.scale_index())
                    {
                        if self.axis(p).is_none() {
                            step.retiles.push(self.tile_shared(p, 0));
                        }
                    }
                }
                Ok(step)
            }
            Op::Predict(_) => {
                for p in 1..self.operands.len() {
                    self.shared(p, "predictor weight or bias")?;
                }
                match x {
                    None | Some(0) => Ok(Step::keep(self.x())),
                    Some(a) => Err(format!("it averages over the sample axis {a}")),
                }
            }
            Op::BatchNorm(_) => {
                for p in 1..self.operands.len() {
                    self.shared(p, "statistics")?;
                }
                match x {
                    Some(1) => Err(
                        "its channels are the samples, each normalized with its own statistics"
                            .into(),
                    ),
                    _ => Ok(Step::keep(self.x())),
                }
            }
            Op::MatMul(_) => self.matmul(),
            Op::Gemm(gm) => {
                let (row, col) = (usize::from(gm.trans_a), usize::from(!gm.trans_b));
                let mut out = Vec::new();
                match x {
                    Some(a) if a == row => out.push(0),
                    Some(_) => return Err("it sums over the sample axis of `a`".into()),
                    None => {}
                }
                match self.axis(1) {
                    Some(b) if b == col => out.push(1),
                    Some(_) => return Err("it sums over the sample axis of `b`".into()),
                    None => {}
                }
                if let Some(c) = self.operands.get(2).and_then(|_| self.axis(2)) {
                    out.push(2 - self.shape(2).len() + c);
                }
                let axis = single_axis(&out)?;
                let mut step = Step::keep(axis.map_or(Samples::Shared, Samples::Axis));
                if let (Some(axis), Some(_)) = (axis, self.operands.get(2)) {
                    if self.axis(2).is_none() {
                        step.retiles.extend(self.collapse(2, 2, axis));
                    }
                }
                Ok(step)
            }
            Op::Einsum(e) => self.einsum(&e.equation),
            Op::Softmax(s) => match x {
                Some(a) if a == s.axis => Err("it normalizes across samples".into()),
                _ => Ok(Step::keep(self.x())),
            },
            Op::AvgPool(_) | Op::MaxPool(_) => match x {
                Some(a) if a >= 2 => Err(format!("it pools across the sample axis {a}")),
                _ => Ok(Step::keep(self.x())),
            },
            Op::Reduce(r) => match x {
                None => Ok(Step::keep(Samples::Shared)),
                Some(a) if r.axes.contains(&a) => {
                    Err(format!("it reduces ({}) across the samples", r.kind.name()))
                }
                Some(a) => {
                    let dropped = if r.keepdims {
                        0
                    } else {
                        r.axes.iter().filter(|&&i| i < a).count()
                    };
                    Ok(Step::keep(Samples::Axis(a - dropped)))
                }
            },
            Op::Reshape(r) => {
                let Some(a) = x else {
                    return Ok(Step::keep(Samples::Shared));
                };
                let prefix: usize = self.shape(0)[..a].iter().product();
                let mut acc = 1usize;
                let mut found = None;
                for (j, &d) in r.shape.iter().enumerate() {
                    if acc == prefix && d == self.old {
                        found = Some(j);
                        break;
                    }
                    acc = acc.saturating_mul(d);
                }
                let Some(j) = found else {
                    return Err(format!(
                        "it reshapes {} to {:?}, which merges the sample axis {a} with other \
                         dims or splits it",
                        self.g.ty(self.operands[0]),
                        r.shape
                    ));
                };
                let mut r = r.clone();
                r.shape[j] = self.new;
                Ok(Step {
                    samples: Samples::Axis(j),
                    op: Some(Op::Reshape(r)),
                    retiles: Vec::new(),
                })
            }
            Op::Transpose(t) => Ok(Step::keep(match x {
                None => Samples::Shared,
                Some(a) => Samples::Axis(
                    t.perm
                        .iter()
                        .position(|&p| p == a)
                        .ok_or_else(|| format!("its permutation {:?} lacks axis {a}", t.perm))?,
                ),
            })),
            Op::Concat(c) => {
                let axes: Vec<usize> = (0..self.operands.len())
                    .filter_map(|p| self.axis(p))
                    .collect();
                let Some(axis) = single_axis(&axes)? else {
                    return Ok(Step::keep(Samples::Shared));
                };
                if axis == c.axis {
                    return Err("it concatenates along the sample axis".into());
                }
                let retiles = (0..self.operands.len())
                    .filter(|&p| self.axis(p).is_none())
                    .map(|p| self.tile_shared(p, axis))
                    .collect();
                Ok(Step {
                    samples: Samples::Axis(axis),
                    op: None,
                    retiles,
                })
            }
            Op::Slice(s) => {
                let Some(a) = x else {
                    return Ok(Step::keep(Samples::Shared));
                };
                let full = i64::try_from(self.old).ok();
                if s.starts[a] != 0 || Some(s.ends[a]) != full || s.steps[a] != 1 {
                    return Err(format!(
                        "it slices samples {}..{} step {} out of {}",
                        s.starts[a], s.ends[a], s.steps[a], self.old
                    ));
                }
                let mut s = s.clone();
                s.ends[a] = i64::try_from(self.new)
                    .map_err(|_| format!("the batch {} does not fit in i64", self.new))?;
                Ok(Step {
                    samples: Samples::Axis(a),
                    op: Some(Op::Slice(s)),
                    retiles: Vec::new(),
                })
            }
            Op::Gather(gt) => {
                let idx_rank = self.shape(1).len();
                match (x, self.axis(1)) {
                    (None, None) => Ok(Step::keep(Samples::Shared)),
                    (Some(a), None) if a == gt.axis => Err("it selects samples by index".into()),
                    (Some(a), None) if a < gt.axis => Ok(Step::keep(Samples::Axis(a))),
                    (Some(a), None) => Ok(Step::keep(Samples::Axis(a + idx_rank - 1))),
                    (None, Some(i)) => Ok(Step::keep(Samples::Axis(gt.axis + i))),
                    (Some(_), Some(_)) => Err(
                        "both its data and its indices differ per sample, so every sample's \
                         indices select from every sample"
                            .into(),
                    ),
                }
            }
            Op::Pad(p) => match x {
                None => Ok(Step::keep(Samples::Shared)),
                Some(a) => {
                    let r = self.shape(0).len();
                    if p.pads[a] != 0 || p.pads[r + a] != 0 {
                        Err("it pads the sample axis".into())
                    } else {
                        Ok(Step::keep(Samples::Axis(a)))
                    }
                }
            },
            Op::Resize(rz) => {
                let Some(a) = x else {
                    return Ok(Step::keep(Samples::Shared));
                };
                if rz.sizes[a] != self.old || rz.scales[a] != 1.0 {
                    return Err("it resizes the sample axis".into());
                }
                let mut rz = rz.clone();
                rz.sizes[a] = self.new;
                Ok(Step {
                    samples: Samples::Axis(a),
                    op: Some(Op::Resize(rz)),
                    retiles: Vec::new(),
                })
            }
            Op::Expand(e) => {
                let Some(a) = x else {
                    return Ok(Step::keep(Samples::Shared));
                };
                let axis = e.shape.len() - self.shape(0).len() + a;
                if e.shape[axis] != self.old {
                    return Err(format!(
                        "it broadcasts the sample axis to {} entries",
                        e.shape[axis]
                    ));
                }
                let mut e = e.clone();
                e.shape[axis] = self.new;
                Ok(Step {
                    samples: Samples::Axis(axis),
                    op: Some(Op::Expand(e)),
                    retiles: Vec::new(),
                })
            }
        }
    }

    /// numpy matmul: the sample axis may be a broadcast batch dim, the rows of `a` or the
    /// columns of `b`, never the contracted dim; shared operands' batch dims broadcast.
    fn matmul(&self) -> Result<Step, String> {
        let (ra, rb) = (self.shape(0).len(), self.shape(1).len());
        let out_rank = self.out_shape().len();
        let nbatch = out_rank - usize::from(ra > 1) - usize::from(rb > 1);
        let mut out = Vec::new();
        for (p, r) in [(0, ra), (1, rb)] {
            let Some(a) = self.axis(p) else { continue };
            // The operand as a matrix: [batch.., rows, cols]; rank 1 is the contracted vector.
            let contracted = if p == 0 { r - 1 } else { r.saturating_sub(2) };
            if r == 1 || a == contracted {
                return Err(format!("it sums over the sample axis of operand {p}"));
            }
            out.push(if a >= r - 2 {
                // Rows of `a` or columns of `b`.
                if p == 0 {
                    nbatch
                } else {
                    out_rank - 1
                }
            } else {
                nbatch - (r - 2) + a
            });
        }
        let axis = single_axis(&out)?;
        let mut step = Step::keep(axis.map_or(Samples::Shared, Samples::Axis));
        if let Some(axis) = axis.filter(|&a| a < nbatch) {
            for (p, r) in [(0, ra), (1, rb)] {
                if self.axis(p).is_none() && r > 2 {
                    // The operand's batch dims, aligned at the right against the result's.
                    let lead = nbatch - (r - 2);
                    if axis >= lead && self.shape(p)[axis - lead] != 1 {
                        step.retiles.push(Retile {
                            port: p,
                            axis: axis - lead,
                            extent: 1,
                        });
                    }
                }
            }
        }
        Ok(step)
    }

    fn einsum(&self, equation: &str) -> Result<Step, String> {
        let shapes: Vec<&[usize]> = (0..self.operands.len()).map(|p| self.shape(p)).collect();
        let spec = EinsumSpec::new(equation, &shapes).map_err(|e| e.to_string())?;
        let mut label = None;
        for (p, labels) in spec.inputs.iter().enumerate() {
            let Some(a) = self.axis(p) else { continue };
            let l = labels[a];
            if label.is_some_and(|m| m != l) {
                return Err(
                    "its operands carry the samples under different labels, so it combines every \
                     sample with every other"
                        .into(),
                );
            }
            if labels.iter().filter(|&&m| m == l).count() > 1 {
                return Err("it takes a diagonal over the sample axis".into());
            }
            label = Some(l);
        }
        let Some(l) = label else {
            return Ok(Step::keep(Samples::Shared));
        };
        let Some(axis) = spec.output.iter().position(|&m| m == l) else {
            return Err("it sums over the sample axis".into());
        };
        let mut retiles = Vec::new();
        for (p, labels) in spec.inputs.iter().enumerate() {
            if self.axis(p).is_some() {
                continue;
            }
            let at: Vec<usize> = (0..labels.len()).filter(|&a| labels[a] == l).collect();
            match at[..] {
                [] => {}
                [a] => retiles.push(self.tile_shared(p, a)),
                _ => return Err("it takes a diagonal over the sample axis".into()),
            }
        }
        Ok(Step {
            samples: Samples::Axis(axis),
            op: None,
            retiles,
        })
    }
}

/// The one result axis all per-sample operands agree on (`None` when no operand is
/// per-sample).
fn single_axis(axes: &[usize]) -> Result<Option<usize>, String> {
    match axes.split_first() {
        None => Ok(None),
        Some((&a, rest)) if rest.iter().all(|&b| b == a) => Ok(Some(a)),
        Some(_) => Err(
            "its operands carry the samples on different axes, so it combines every sample with \
             every other"
                .into(),
        ),
    }
}
