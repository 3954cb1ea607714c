//! The IR text form, printer side (the grammar is in [`crate::parse`]):
//!
//! ```text
//! graph(%0: f32[1,3,8,8] "input") -> ("logits" = %4) {
//!   %1 = const f32[4] [1.0, -2.5, inf, NaN] loc("conv1.bias")
//!   %2 = const f32[4,3,3,3] blob(9f2c1a3b00ffee12) loc("conv1.weight")
//!   %3 = conv %0, %2, %1 {strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1} : f32[1,4,8,8]
//!   %4 = unary %3 {kind=relu} : f32[1,4,8,8] loc("/relu/Relu")
//! }
//! ```
//!
//! Values are numbered canonically ([`Numbering`]): graph inputs in signature order, then the
//! other nodes in `Graph::topo_order`, so printing does not depend on node ids and
//! `print(parse(print(g))) == print(g)`. Constants with at most `ops::INLINE_LIMIT` elements are
//! printed inline, larger ones (and data-less ones) as the 16-hex-digit `Tensor::content_hash`.
//!
//! The printer accepts any graph, also one the verifier rejects, so that errors can be shown on
//! its lines: a cyclic graph is numbered in insertion order, and signature entries naming
//! missing nodes get the numbers after every node. Not expressible in the text (so lost by a
//! round trip, and all rejected by the verifier): a node type differing from its `const`'s
//! declared type, a const value of another dtype than declared, an origin on a signature
//! input, a signature input that is not an `input` node or is missing (printed with type `?`).

use crate::attrs::{write_f32, AttrWriter};
use crate::graph::{Graph, NodeId};
use crate::ops::{Const, Op, INLINE_LIMIT};
use crate::tensor::TensorData;
use std::collections::HashMap;
use std::fmt::Write;

/// The canonical `%N` number of every value of a graph, shared by the printer and the verifier
/// (whose errors name values by these numbers).
#[derive(Clone, Debug)]
pub struct Numbering {
    numbers: HashMap<NodeId, usize>,
    /// `order[k]` is the node printed as `%k`.
    order: Vec<NodeId>,
    /// The nodes printed as instruction lines, in print order: every node except the `input`
    /// nodes the signature lists.
    body: Vec<NodeId>,
    /// `in_body[k]`: whether `%k` is printed as an instruction line.
    in_body: Vec<bool>,
}

impl Numbering {
    pub fn new(g: &Graph) -> Self {
        let mut n = Numbering {
            numbers: HashMap::new(),
            order: Vec::new(),
            body: Vec::new(),
            in_body: Vec::new(),
        };
        for (_, id) in &g.inputs {
            n.assign(*id);
        }
        let nodes = g.topo_order().unwrap_or_else(|_| g.node_ids().collect());
        for id in nodes {
            let in_header = n.numbers.contains_key(&id) && matches!(g.node(id).op, Op::Input(_));
            n.assign(id);
            if !in_header {
                n.body.push(id);
                if let Some(k) = n.number(id) {
                    n.in_body[k] = true;
                }
            }
        }
        for (_, id) in &g.outputs {
            n.assign(*id);
        }
        n
    }

    fn assign(&mut self, id: NodeId) {
        if !self.numbers.contains_key(&id) {
            self.numbers.insert(id, self.order.len());
            self.order.push(id);
            self.in_body.push(false);
        }
    }

    /// The number of `id`, when the graph prints it.
    pub fn number(&self, id: NodeId) -> Option<usize> {
        self.numbers.get(&id).copied()
    }

    /// The node printed as `%n`.
    pub fn node(&self, n: usize) -> Option<NodeId> {
        self.order.get(n).copied()
    }

    /// Nodes printed as instruction lines, in print order.
    pub fn body(&self) -> &[NodeId] {
        &self.body
    }

    /// Whether `%n` is defined by an instruction line (rather than the signature).
    pub fn in_body(&self, n: usize) -> bool {
        self.in_body.get(n).copied().unwrap_or(false)
    }

    fn name(&self, id: NodeId) -> String {
        // Every node and every signature entry is numbered by `new`.
        format!("%{}", self.numbers.get(&id).copied().unwrap_or(usize::MAX))
    }
}

/// What one printed line shows, so that annotations can be placed under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// `graph(...) -> (...) {`
    Header,
    /// The instruction defining `%n`.
    Value(usize),
    /// The closing `}`.
    End,
}

/// Prints `g` in the text form.
pub fn print(g: &Graph) -> String {
    let mut s = String::new();
    for (_, line) in lines(g, &Numbering::new(g)) {
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// The printed lines of `g` (without newlines), each with what it shows.
pub(crate) fn lines(g: &Graph, num: &Numbering) -> Vec<(Line, String)> {
    let mut out = Vec::with_capacity(num.body.len() + 2);
    out.push((Line::Header, header(g, num)));
    for &id in &num.body {
        let n = num.number(id).unwrap_or(usize::MAX);
        out.push((Line::Value(n), instruction(g, num, id)));
    }
    out.push((Line::End, "}".to_string()));
    out
}

fn header(g: &Graph, num: &Numbering) -> String {
    let mut s = String::from("graph(");
    for (i, (name, id)) in g.inputs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let ty = if g.contains(*id) {
            g.ty(*id).to_string()
        } else {
            "?".to_string()
        };
        let _ = write!(s, "{}: {ty} {name:?}", num.name(*id));
    }
    s.push_str(") -> (");
    for (i, (name, id)) in g.outputs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{name:?} = {}", num.name(*id));
    }
    s.push_str(") {");
    s
}

fn instruction(g: &Graph, num: &Numbering, id: NodeId) -> String {
    let node = g.node(id);
    let mut s = format!("  {} = {}", num.name(id), node.op.name());
    match &node.op {
        Op::Const(c) => {
            let _ = write!(s, " {} ", c.ty);
            write_const_data(&mut s, c);
        }
        op => {
            for (i, o) in g.operands(id).into_iter().enumerate() {
                s.push_str(if i == 0 { " " } else { ", " });
                s.push_str(&num.name(o));
            }
            let mut w = AttrWriter::default();
            op.write_attrs(&mut w);
            s.push_str(&w.render());
            let _ = write!(s, " : {}", node.ty);
        }
    }
    if let Some(origin) = &node.origin {
        let _ = write!(s, " loc({origin:?})");
    }
    s
}

/// Writes a const's data: inline `[...]` (row-major) up to `INLINE_LIMIT` elements, otherwise
/// `blob(<content hash>)`; a data-less const prints the hash it was parsed with.
fn write_const_data(s: &mut String, c: &Const) {
    let hash = match &c.value {
        Some(v) if v.len() <= INLINE_LIMIT => {
            s.push('[');
            match v.data() {
                TensorData::F32(d) => list(s, d, |s, x| write_f32(s, *x)),
                TensorData::I64(d) => list(s, d, |s, x| {
                    let _ = write!(s, "{x}");
                }),
                TensorData::I32(d) => list(s, d, |s, x| {
                    let _ = write!(s, "{x}");
                }),
                TensorData::Bool(d) => list(s, d, |s, x| {
                    let _ = write!(s, "{x}");
                }),
            }
            s.push(']');
            return;
        }
        Some(v) => v.content_hash(),
        None => c.blob_hash.unwrap_or(0),
    };
    let _ = write!(s, "blob({hash:016x})");
}

fn list<T>(s: &mut String, items: &[T], mut f: impl FnMut(&mut String, &T)) {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        f(s, x);
    }
}
