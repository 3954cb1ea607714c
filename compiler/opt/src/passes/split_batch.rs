//! `split_batch`: runs the high-resolution prefix of a batched graph image by image, so that
//! each image's activations stay in the caches between its layers.
//!
//! Why: at batch 8, EfficientNet-CondConv's 112×112 layers write and read back 38 MB per
//! value (the 96-channel expansion before its first stride-2 depthwise conv), more than the
//! 32 MB L3 here, so each of them goes through memory; one image's 4.8 MB stays in L3. The
//! prefix's weights are small, so reading them once per image costs little, while the
//! dynamic convolutions after it keep the whole batch (their banks are read once for all
//! images).
//!
//! Matches: a graph whose inputs share a leading dim N ≥ 2. The prefix is the longest run of
//! computed nodes at the start of the dependency order ([`Graph::topo_order`]) none of which
//! is a `dyn_conv`, whose results have N as leading dim, and whose constant operands are no
//! larger than their largest activation (operand or result) per image: the run ends at the
//! first layer whose weights outweigh its activations (a classifier, a 1×1 conv on 7×7 maps),
//! where batching pays again. The longest start of that run is split that holds a conv, some
//! value of at least `min_bytes` (the whole batch's; smaller ones stay in the caches anyway)
//! and hands on at most a quarter of its largest value (its frontier: results used after it,
//! or graph outputs; a larger one would only add copies).
//!
//! Rewrite: the prefix is re-targeted to batch 1 (`retarget_batch`, which also proves every
//! node per-sample; when it refuses, nothing changes), then inserted N times, copy n reading
//! `slice`s of the graph inputs at sample n and sharing the constants; each frontier value
//! becomes the `concat` along axis 0 of its N copies. The graph is rebuilt with copy n's nodes
//! after copy n − 1's, so the dependency order (earliest inserted first among ready nodes)
//! runs them image after image, and the memory plan reuses one copy's buffers for the next. Each copy
//! computes every element with the same operations as the batched node did, so results do
//! not change.
//!
//! Must run last (after `retarget_batch`: it needs the final batch). Rejects nothing: a graph
//! that does not match is left unchanged.

use super::retarget_batch::RetargetBatch;
use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::{Concat, Slice};
use dync_ir::{Graph, Node, NodeId, Op};
use std::collections::{HashMap, HashSet};

/// The pass; `min_bytes` is the size one of the prefix's values must reach (`split_batch=B`
/// in pass lists and filetests).
pub struct SplitBatch {
    pub min_bytes: usize,
}

/// Half the L3 of the machines this was measured on (32 MB): below it a batch's values stay
/// in the caches between layers.
pub const DEFAULT_MIN_BYTES: usize = 16 << 20;

const NAME: &str = "split_batch";

impl Pass for SplitBatch {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        let Some(prefix) = Prefix::find(g, self.min_bytes)? else {
            return Ok(false);
        };
        let Some(one) = prefix.per_image(g) else {
            return Ok(false);
        };
        *g = prefix.splice(g, &one)?;
        Ok(true)
    }
}

/// The prefix to split.
struct Prefix {
    n: usize,
    /// The graph's nodes in dependency order.
    order: Vec<NodeId>,
    /// The computed nodes, in dependency order, and as a set.
    nodes: Vec<NodeId>,
    inside: HashSet<NodeId>,
    /// Its results used after it or as graph outputs.
    frontier: Vec<NodeId>,
    /// The graph inputs it reads, in signature order.
    inputs: Vec<NodeId>,
}

/// The prefix at batch 1: its graph (inputs in [`Prefix::inputs`] order, outputs in
/// [`Prefix::frontier`] order) and, for each of its constants taken unchanged from the graph,
/// the graph's node.
struct PerImage {
    g: Graph,
    consts: HashMap<NodeId, NodeId>,
}

impl Prefix {
    fn find(g: &Graph, min_bytes: usize) -> Result<Option<Prefix>, PassError> {
        let lead = |id: NodeId| g.ty(id).shape.first().copied();
        let Some(n) = g.inputs.first().and_then(|&(_, i)| lead(i)) else {
            return Ok(None);
        };
        if n < 2 || g.inputs.iter().any(|&(_, i)| lead(i) != Some(n)) {
            return Ok(None);
        }
        let bytes = |id: NodeId| g.ty(id).bytes().unwrap_or(usize::MAX);
        let order = super::topo_order(g, NAME)?;
        let mut nodes = Vec::new();
        for &id in &order {
            let node = g.node(id);
            match node.op {
                Op::Input(_) | Op::Const(_) => continue,
                Op::DynConv(_) => break,
                _ => {}
            }
            let operands = g.operands(id);
            let (consts, values): (Vec<NodeId>, Vec<NodeId>) = operands
                .iter()
                .partition(|&&o| matches!(g.node(o).op, Op::Const(_)));
            let weights: usize = consts.iter().map(|&c| bytes(c)).sum();
            let activation = values
                .iter()
                .chain([&id])
                .map(|&v| bytes(v))
                .max()
                .unwrap_or(0);
            if lead(id) != Some(n) || weights > activation / n {
                break;
            }
            nodes.push(id);
        }
        // The longest run that qualifies: shorter runs end at other cuts, some of them with a
        // smaller frontier (a cut inside a residual block hands on the block's input too).
        let outputs: HashSet<NodeId> = g.outputs.iter().map(|&(_, o)| o).collect();
        let split = (1..=nodes.len()).rev().find_map(|k| {
            let inside: HashSet<NodeId> = nodes[..k].iter().copied().collect();
            let frontier: Vec<NodeId> = nodes[..k]
                .iter()
                .copied()
                .filter(|&v| {
                    outputs.contains(&v) || g.users(v).iter().any(|(u, _)| !inside.contains(u))
                })
                .collect();
            let largest = nodes[..k].iter().map(|&v| bytes(v)).max().unwrap_or(0);
            let handed_on: usize = frontier.iter().map(|&v| bytes(v)).sum();
            let has_conv = nodes[..k]
                .iter()
                .any(|&v| matches!(g.node(v).op, Op::Conv(_)));
            (has_conv && largest >= min_bytes && handed_on.saturating_mul(4) <= largest)
                .then_some((k, inside, frontier))
        });
        let Some((k, inside, frontier)) = split else {
            return Ok(None);
        };
        nodes.truncate(k);
        let inputs = g
            .inputs
            .iter()
            .map(|&(_, i)| i)
            .filter(|&i| g.users(i).iter().any(|(u, _)| inside.contains(u)))
            .collect();
        Ok(Some(Prefix {
            n,
            order,
            nodes,
            inside,
            frontier,
            inputs,
        }))
    }

    /// The prefix as a graph of its own, re-targeted to batch 1; `None` when some node is
    /// not per-sample.
    fn per_image(&self, g: &Graph) -> Option<PerImage> {
        let mut one = Graph::new();
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        let mut consts = HashMap::new();
        for &i in &self.inputs {
            let name = g.inputs.iter().find(|&&(_, x)| x == i)?.0.clone();
            map.insert(i, one.add_input(name, g.ty(i).clone()));
        }
        for &v in &self.nodes {
            let mut operands = Vec::new();
            for o in g.operands(v) {
                let mapped = match map.get(&o) {
                    Some(&m) => m,
                    None => {
                        // Not an input nor a node before v in the prefix: a constant (the
                        // prefix is a start of the dependency order).
                        let node = g.node(o);
                        if !matches!(node.op, Op::Const(_)) {
                            return None;
                        }
                        let c = copy_node(&mut one, node, &[]);
                        consts.insert(c, o);
                        map.insert(o, c);
                        c
                    }
                };
                operands.push(mapped);
            }
            map.insert(v, copy_node(&mut one, g.node(v), &operands));
        }
        for (k, f) in self.frontier.iter().enumerate() {
            one.set_output(format!("frontier{k}"), map[f]);
        }
        RetargetBatch { batch: 1 }
            .run(&mut one, &mut PassCx::default())
            .ok()?;
        // The re-targeted graph keeps the constants it did not replace.
        consts.retain(|&c, _| one.contains(c));
        Some(PerImage { g: one, consts })
    }

    /// The graph rebuilt in the order to run: its inputs and constants, the N copies (copy n
    /// reading slices of the inputs at sample n), the frontier's concats, then the rest.
    /// Rebuilt rather than edited because node ids break ties in the dependency order and
    /// an edited graph reuses the ids of removed nodes, which would interleave the copies.
    fn splice(&self, g: &Graph, one: &PerImage) -> Result<Graph, PassError> {
        let fail = |message: String| PassError::Rewrite {
            pass: NAME,
            origin: g.node(self.nodes[0]).origin.clone().unwrap_or_default(),
            message,
        };
        let per_image = super::topo_order(&one.g, NAME)?;
        let inside = &self.inside;
        let mut h = Graph::new();
        // Graph node -> rebuilt node.
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        for (name, i) in &g.inputs {
            map.insert(*i, h.add_input(name.clone(), g.ty(*i).clone()));
        }
        for &v in &self.order {
            if let Op::Const(_) = g.node(v).op {
                map.insert(v, copy_node(&mut h, g.node(v), &[]));
            }
        }
        let origin = |i: NodeId| {
            g.users(i)
                .iter()
                .find(|(u, _)| inside.contains(u))
                .and_then(|&(u, _)| g.node(u).origin.clone())
        };
        // Constants the re-targeting replaced, added once for every copy.
        let mut replaced: HashMap<NodeId, NodeId> = HashMap::new();
        let mut copies: Vec<Vec<NodeId>> = vec![Vec::with_capacity(self.n); self.frontier.len()];
        for s in 0..self.n {
            // Per-image node -> rebuilt node of copy s.
            let mut copy: HashMap<NodeId, NodeId> = HashMap::new();
            for (&i, &(_, x)) in self.inputs.iter().zip(&one.g.inputs) {
                let shape = &g.ty(i).shape;
                let at = i64::try_from(s).map_err(|e| fail(e.to_string()))?;
                let mut ends = shape
                    .iter()
                    .map(|&d| i64::try_from(d))
                    .collect::<Result<Vec<i64>, _>>()
                    .map_err(|e| fail(e.to_string()))?;
                let mut starts = vec![0; shape.len()];
                (starts[0], ends[0]) = (at, at + 1);
                let slice = Slice {
                    starts,
                    ends,
                    steps: vec![1; shape.len()],
                };
                let id = h
                    .add(Op::Slice(slice), &[map[&i]], origin(i))
                    .map_err(|e| fail(e.to_string()))?;
                copy.insert(x, id);
            }
            for &v in &per_image {
                let node = one.g.node(v);
                let id = match node.op {
                    Op::Input(_) => continue,
                    Op::Const(_) => match one.consts.get(&v) {
                        Some(c) => map[c],
                        None => *replaced
                            .entry(v)
                            .or_insert_with(|| copy_node(&mut h, node, &[])),
                    },
                    _ => {
                        let operands: Vec<NodeId> =
                            one.g.operands(v).iter().map(|o| copy[o]).collect();
                        copy_node(&mut h, node, &operands)
                    }
                };
                copy.insert(v, id);
            }
            for (c, &(_, out)) in copies.iter_mut().zip(&one.g.outputs) {
                c.push(copy[&out]);
            }
        }
        for (&f, c) in self.frontier.iter().zip(&copies) {
            let concat = h
                .add(Op::Concat(Concat { axis: 0 }), c, g.node(f).origin.clone())
                .map_err(|e| fail(e.to_string()))?;
            map.insert(f, concat);
        }
        for &v in &self.order {
            let node = g.node(v);
            if inside.contains(&v) || matches!(node.op, Op::Input(_) | Op::Const(_)) {
                continue;
            }
            let operands: Vec<NodeId> = g.operands(v).iter().map(|o| map[o]).collect();
            map.insert(v, copy_node(&mut h, node, &operands));
        }
        for (name, o) in &g.outputs {
            h.set_output(name.clone(), map[o]);
        }
        Ok(h)
    }
}

/// Adds a copy of `node` (op, declared type, origin) to `h` on `operands`.
fn copy_node(h: &mut Graph, node: &Node, operands: &[NodeId]) -> NodeId {
    h.add_typed(
        node.op.clone(),
        operands,
        node.ty.clone(),
        node.origin.clone(),
    )
}
