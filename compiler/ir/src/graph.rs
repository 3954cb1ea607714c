//! The IR graph: a petgraph `StableDiGraph` whose nodes are single-result operations and whose
//! edges run from operand to user, weighted by the operand's port number.
//!
//! Invariants (checked by `verify`): every node's incoming ports are exactly 0..n with n admitted
//! by its op's arity; every node's `ty` equals `op.infer` of its operands' types; the graph is
//! acyclic; graph inputs are `Op::Input` nodes and outputs name live nodes.

use crate::error::ShapeError;
use crate::ops::{Const, Input, Op};
use crate::tensor::{Tensor, TensorType};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

/// Handle of an IR value (the node that produces it).
pub type NodeId = NodeIndex;

/// One operation and its result type. `origin` names the ONNX node it came from, so that every
/// later error and profile line can name the user's node.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub ty: TensorType,
    pub origin: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    g: StableDiGraph<Node, usize>,
    /// Graph inputs in signature order: (name, `Op::Input` node).
    pub inputs: Vec<(String, NodeId)>,
    /// Graph outputs in signature order: (name, producing node).
    pub outputs: Vec<(String, NodeId)>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> NodeId {
        let id = self.g.add_node(Node {
            op: Op::Input(Input { ty: ty.clone() }),
            ty,
            origin: None,
        });
        self.inputs.push((name.into(), id));
        id
    }

    /// Adds a constant node holding `t`.
    pub fn add_const(&mut self, t: Tensor, origin: Option<String>) -> NodeId {
        let ty = t.ty();
        self.g.add_node(Node {
            op: Op::Const(Const::new(t)),
            ty,
            origin,
        })
    }

    /// Adds `op` applied to `operands`, inferring its result type.
    pub fn add(
        &mut self,
        op: Op,
        operands: &[NodeId],
        origin: Option<String>,
    ) -> Result<NodeId, ShapeError> {
        let tys: Vec<&TensorType> = operands.iter().map(|&o| &self.g[o].ty).collect();
        let ty = op.infer(&tys)?;
        Ok(self.add_typed(op, operands, ty, origin))
    }

    /// Adds a node with a declared type, without inference (the parser uses this; the verifier
    /// then checks the declaration).
    pub fn add_typed(
        &mut self,
        op: Op,
        operands: &[NodeId],
        ty: TensorType,
        origin: Option<String>,
    ) -> NodeId {
        let id = self.g.add_node(Node { op, ty, origin });
        for (port, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, id, port);
        }
        id
    }

    pub fn set_output(&mut self, name: impl Into<String>, id: NodeId) {
        self.outputs.push((name.into(), id));
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.g[id].ty
    }

    /// The constant value of `id`, when it is a `const` with data.
    pub fn const_value(&self, id: NodeId) -> Option<&Tensor> {
        match &self.g[id].op {
            Op::Const(c) => c.value.as_deref(),
            _ => None,
        }
    }

    /// Operands of `id`, ordered by port.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut e: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort_unstable_by_key(|&(p, _)| p);
        e.into_iter().map(|(_, n)| n).collect()
    }

    /// Operand ports as stored, for the verifier: (port, producer), unsorted.
    pub fn operand_ports(&self, id: NodeId) -> Vec<(usize, NodeId)> {
        self.g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect()
    }

    /// Users of `id` with the port at which they use it.
    pub fn users(&self, id: NodeId) -> Vec<(NodeId, usize)> {
        self.g
            .edges_directed(id, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect()
    }

    /// Redirects every use of `old` (operands and graph outputs) to `new`.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let uses: Vec<_> = self
            .g
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        for (eid, target, port) in uses {
            self.g.remove_edge(eid);
            self.g.add_edge(new, target, port);
        }
        for (_, o) in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Replaces the operand at `port` of `user` with `new`.
    pub fn set_operand(&mut self, user: NodeId, port: usize, new: NodeId) {
        let old: Vec<_> = self
            .g
            .edges_directed(user, Direction::Incoming)
            .filter(|e| *e.weight() == port)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        self.g.add_edge(new, user, port);
    }

    /// Removes nodes that no graph output depends on (graph inputs are kept). Returns how many.
    pub fn remove_dead(&mut self) -> usize {
        let mut live = std::collections::HashSet::new();
        let mut stack: Vec<NodeId> = self.outputs.iter().map(|(_, o)| *o).collect();
        stack.extend(self.inputs.iter().map(|(_, i)| *i));
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(self.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        let dead: Vec<NodeId> = self
            .g
            .node_indices()
            .filter(|n| !live.contains(n))
            .collect();
        for &n in &dead {
            self.g.remove_node(n);
        }
        dead.len()
    }

    /// Multiply-accumulates performed by node `id`.
    pub fn node_macs(&self, id: NodeId) -> u64 {
        let operands = self.operands(id);
        let tys: Vec<&TensorType> = operands.iter().map(|&o| &self.g[o].ty).collect();
        self.g[id].op.macs(&tys, &self.g[id].ty)
    }

    /// Multiply-accumulates of the whole graph.
    pub fn macs(&self) -> u64 {
        self.g
            .node_indices()
            .map(|n| self.node_macs(n))
            .fold(0, u64::saturating_add)
    }

    /// Node ids in insertion order (not necessarily topological).
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Nodes in a topological order (operands before users; among the nodes whose operands are
    /// all placed, the earliest inserted comes first), or the id of a node on a cycle. The order
    /// is therefore deterministic, and a graph inserted in topological order (as the parser
    /// inserts the printed text) comes back in insertion order, which the text round trip needs.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, NodeId> {
        use std::cmp::Reverse;
        use std::collections::{BinaryHeap, HashMap};
        let mut pending: HashMap<NodeId, usize> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for n in self.g.node_indices() {
            let k = self.g.edges_directed(n, Direction::Incoming).count();
            if k == 0 {
                ready.push(Reverse(n));
            } else {
                pending.insert(n, k);
            }
        }
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                if let Some(k) = pending.get_mut(&e.target()) {
                    *k -= 1;
                    if *k == 0 {
                        pending.remove(&e.target());
                        ready.push(Reverse(e.target()));
                    }
                }
            }
        }
        match pending.keys().min() {
            None => Ok(order),
            // Every unplaced node has an unplaced operand; walking operands from one must
            // revisit a node, and that node lies on a cycle.
            Some(&start) => {
                let mut seen = std::collections::HashSet::new();
                let mut n = start;
                while seen.insert(n) {
                    n = self
                        .g
                        .neighbors_directed(n, Direction::Incoming)
                        .filter(|p| pending.contains_key(p))
                        .min()
                        .unwrap_or(n);
                }
                Err(n)
            }
        }
    }

    /// The underlying petgraph graph, for algorithms (read-only).
    pub fn petgraph(&self) -> &StableDiGraph<Node, usize> {
        &self.g
    }
}
