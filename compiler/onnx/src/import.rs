//! ONNX graph → IR, with shape inference and constant folding as it goes.
//!
//! Nodes are imported in dependency order (the file's order is not trusted: cycles, dangling
//! inputs and duplicate producers are errors). Each node goes through its importer in
//! `ops/<op>.rs` (found through `registry`), which adds IR ops through [`Ctx::add`]; an op whose
//! operands are all constants is evaluated by the reference interpreter on the spot, so shape
//! subgraphs (Shape → Gather → Concat → Reshape, ShuffleNet's channel split) and
//! `Identity(initializer)` chains come out as constants and every shape is static.
//!
//! Symbolic input dims must be fixed by [`ImportOptions::input_shapes`]; a symbolic leading
//! (batch) dim defaults to 1 with a note. Declared output and value_info types are checked
//! against the inferred ones (known dims only).

use crate::error::{ErrorKind, ImportError, Unsupported};
use crate::limits::Limits;
use crate::load::{is_default_domain, LoadedModel};
use crate::node::NodeError;
use crate::proto::NodeProto;
use crate::registry;
use crate::tensor::{tensor_from_proto, value_info_type, Dim, TensorCtx};
use dync_ir::{Graph, NodeId, Op, Tensor, TensorType};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// What the caller fixes about the import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Shapes for graph inputs by name (`--input-shape NAME=1x3x224x224`).
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    pub limits: Limits,
}

/// MACs of one ONNX node as written in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMacs {
    pub node: String,
    pub op_type: String,
    pub macs: u64,
}

/// The imported graph and facts about the file as written.
#[derive(Debug)]
pub struct Imported {
    pub graph: Graph,
    /// ONNX op type → node count, as written in the file.
    pub onnx_ops: BTreeMap<String, usize>,
    /// Elements of all floating-point initializers (the model's parameters).
    pub params: u64,
    /// Multiply-accumulates of Conv/Gemm/MatMul/Einsum nodes as written.
    pub macs_onnx: u64,
    /// Per-node MACs as written, in import order (nodes with non-zero MACs only).
    pub node_macs: Vec<NodeMacs>,
    /// Things the user should know (e.g. a symbolic batch dim set to 1).
    pub notes: Vec<String>,
    pub opset: i64,
}

/// State shared by op importers while one graph is imported.
pub struct Ctx<'a> {
    pub graph: Graph,
    tensors: &'a TensorCtx<'a>,
    pub opset: i64,
    /// Name of the ONNX node being imported, used as the origin of the IR ops it creates.
    origin: String,
    /// MACs of the IR ops created for the current node (before folding).
    node_macs: u64,
}

impl Ctx<'_> {
    /// Materializes a tensor-valued attribute (e.g. Constant's `value`).
    pub fn tensor(&self, t: &crate::proto::TensorProto) -> Result<Tensor, NodeError> {
        tensor_from_proto(t, self.tensors).map_err(|e| NodeError::Tensor(e.to_string()))
    }

    /// Checks that a new tensor of `n` elements of `dtype` fits the tensor-size limit.
    pub fn check_alloc(&self, n: usize, dtype: dync_ir::DType) -> Result<(), NodeError> {
        let bytes = (n as u64).checked_mul(dtype.size() as u64).ok_or_else(|| {
            NodeError::Tensor(format!(
                "a computed tensor of {n} {dtype} elements has a byte size that overflows"
            ))
        })?;
        crate::limits::check(
            || "a computed tensor's size in bytes".into(),
            bytes,
            self.tensors.limits().max_tensor_bytes,
        )
        .map_err(|e| NodeError::Tensor(e.to_string()))
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        self.graph.ty(id)
    }

    /// The constant value of `id`, if it is a constant.
    pub fn const_of(&self, id: NodeId) -> Option<&Tensor> {
        self.graph.const_value(id)
    }

    /// Adds `op` on `operands`, inferring its type, or folds it into a constant when every
    /// operand is a constant. The result must fit the tensor-size limit either way: whoever
    /// runs the graph allocates it.
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId, NodeError> {
        let tys: Vec<&TensorType> = operands.iter().map(|&o| self.graph.ty(o)).collect();
        let ty = op.infer(&tys)?;
        self.check_alloc(ty.numel()?, ty.dtype)?;
        self.node_macs = self.node_macs.saturating_add(op.macs(&tys, &ty));
        let consts: Option<Vec<&Tensor>> = operands
            .iter()
            .map(|&o| self.graph.const_value(o))
            .collect();
        if let Some(vals) = consts {
            if !operands.is_empty() {
                let t = dync_interp::eval(&op, &vals, &ty)?;
                return Ok(self.graph.add_const(t, Some(self.origin.clone())));
            }
        }
        Ok(self
            .graph
            .add_typed(op, operands, ty, Some(self.origin.clone())))
    }

    /// Adds a constant tensor.
    pub fn constant(&mut self, t: Tensor) -> NodeId {
        self.graph.add_const(t, Some(self.origin.clone()))
    }
}

/// The operands of one ONNX node, resolved to IR values.
pub struct Operands {
    ids: Vec<Option<NodeId>>,
}

impl Operands {
    /// Number of operand slots written (including empty optional ones).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Operand `i`, which must be present.
    pub fn get(&self, i: usize) -> Result<NodeId, NodeError> {
        self.opt(i)
            .ok_or_else(|| NodeError::Invalid(format!("input {i} is required")))
    }

    /// Operand `i`, or `None` when absent or given as the empty name.
    pub fn opt(&self, i: usize) -> Option<NodeId> {
        self.ids.get(i).copied().flatten()
    }

    /// All present operands, in order.
    pub fn present(&self) -> Vec<NodeId> {
        self.ids.iter().flatten().copied().collect()
    }

    /// Requires between `lo` and `hi` operand slots.
    pub fn expect(&self, lo: usize, hi: usize) -> Result<(), NodeError> {
        if self.ids.len() < lo || self.ids.len() > hi {
            let want = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo} to {hi}")
            };
            return Err(NodeError::Invalid(format!(
                "expected {want} input{}, got {}",
                if hi == 1 { "" } else { "s" },
                self.ids.len()
            )));
        }
        Ok(())
    }

    /// The constant integer values of operand `i` (`None` when absent); an error when the
    /// operand is computed at run time, since `what` must be known at compile time.
    pub fn ints(&self, cx: &Ctx, i: usize, what: &str) -> Result<Option<Vec<i64>>, NodeError> {
        let Some(id) = self.opt(i) else {
            return Ok(None);
        };
        match cx.const_of(id) {
            Some(t) => t.to_i64_vec().map(Some).ok_or_else(|| {
                NodeError::Invalid(format!(
                    "{what} must be an integer tensor, got {}",
                    t.dtype()
                ))
            }),
            None => Err(NodeError::Unsupported(format!(
                "{what} computed at run time (dync needs it constant)"
            ))),
        }
    }

    /// The constant f32 values of operand `i` (`None` when absent); see [`Self::ints`].
    pub fn floats(&self, cx: &Ctx, i: usize, what: &str) -> Result<Option<Vec<f32>>, NodeError> {
        let Some(id) = self.opt(i) else {
            return Ok(None);
        };
        match cx.const_of(id) {
            Some(t) => t.as_f32().map(|v| Some(v.to_vec())).ok_or_else(|| {
                NodeError::Invalid(format!("{what} must be a float tensor, got {}", t.dtype()))
            }),
            None => Err(NodeError::Unsupported(format!(
                "{what} computed at run time (dync needs it constant)"
            ))),
        }
    }
}

/// A node's display name: its name, or `<op_type>#<index>` when unnamed.
pub fn node_label(n: &NodeProto, index: usize) -> String {
    if n.name.is_empty() {
        format!("{}#{index}", n.op_type)
    } else {
        n.name.clone()
    }
}

/// How `run` treats node failures: stop at the first, or collect every unsupported feature.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strict,
    Collect,
}

/// Imports `m` into the IR.
pub fn import(m: &LoadedModel, opts: &ImportOptions) -> Result<Imported, ImportError> {
    run(m, opts, Mode::Strict)
        .map(|(imp, _)| imp)
        .map_err(|e| m.error(e))
}

/// Lists every unsupported op and attribute of `m` at once (empty when all are supported).
/// Errors other than unsupported features (a malformed model) are returned as `Err`.
pub fn check(m: &LoadedModel, opts: &ImportOptions) -> Result<Vec<Unsupported>, ImportError> {
    run(m, opts, Mode::Collect)
        .map(|(_, u)| u)
        .map_err(|e| m.error(e))
}

fn run(
    m: &LoadedModel,
    opts: &ImportOptions,
    mode: Mode,
) -> Result<(Imported, Vec<Unsupported>), ImportError> {
    let g = &m.graph;
    let limits = &opts.limits;
    crate::limits::check(
        || "the node count".into(),
        g.node.len() as u64,
        limits.max_nodes as u64,
    )?;
    let tctx = m.tensor_ctx(limits);
    let mut cx = Ctx {
        graph: Graph::new(),
        tensors: &tctx,
        opset: m.opset,
        origin: String::new(),
        node_macs: 0,
    };
    let mut values: HashMap<String, NodeId> = HashMap::new();
    let mut notes = Vec::new();
    let mut params = 0u64;

    // Initializers are constants; a graph input of the same name is a default we do not expose.
    for t in &g.initializer {
        if t.name.is_empty() {
            return Err(ErrorKind::tensor("", "an initializer has no name").into());
        }
        let value = tensor_from_proto(t, &tctx)?;
        if value.dtype() == dync_ir::DType::F32 {
            params = params.saturating_add(value.len() as u64);
        }
        if values
            .insert(
                t.name.clone(),
                cx.graph.add_const(value, Some(t.name.clone())),
            )
            .is_some()
        {
            return Err(
                ErrorKind::graph(format!("initializer {:?} is defined twice", t.name)).into(),
            );
        }
    }
    let mut shape_opts = opts.input_shapes.clone();
    for v in &g.input {
        if values.contains_key(&v.name) {
            if g.initializer.iter().any(|t| t.name == v.name) {
                continue;
            }
            return Err(
                ErrorKind::graph(format!("graph input {:?} is declared twice", v.name)).into(),
            );
        }
        let vt = value_info_type(v, limits)?;
        let given = shape_opts.remove(&v.name);
        let shape = resolve_input_shape(&v.name, vt.shape.as_deref(), given, &mut notes)?;
        let ty = TensorType::new(vt.dtype, shape);
        let numel = ty
            .numel()
            .map_err(|e| ErrorKind::value(&v.name, e.to_string()))?;
        // The caller allocates every input: bound it like any tensor.
        crate::limits::check(
            || format!("the size in bytes of input {:?}", v.name),
            (numel as u64).saturating_mul(ty.dtype.size() as u64),
            limits.max_tensor_bytes,
        )?;
        values.insert(v.name.clone(), cx.graph.add_input(v.name.clone(), ty));
    }
    if let Some(name) = shape_opts.keys().next() {
        return Err(ErrorKind::graph(format!(
            "--input-shape names {name:?}, which is not a graph input"
        ))
        .into());
    }

    let order = node_order(&g.node, &values)?;
    let mut onnx_ops: BTreeMap<String, usize> = BTreeMap::new();
    let mut node_macs = Vec::new();
    let mut unsupported = Vec::new();
    // Outputs that a node declares but cannot provide (or that failed in Collect mode): using
    // them is an error with this reason.
    let mut unavailable: HashMap<String, String> = HashMap::new();
    let mut poisoned: HashSet<String> = HashSet::new();

    for &i in &order {
        let n = &g.node[i];
        let label = node_label(n, i);
        *onnx_ops.entry(n.op_type.clone()).or_default() += 1;
        let node_err = |msg: String| ImportError::from(ErrorKind::node(&label, &n.op_type, msg));

        if n.input.iter().any(|x| poisoned.contains(x)) {
            n.output.iter().for_each(|o| {
                poisoned.insert(o.clone());
            });
            continue;
        }
        let domain_ok = is_default_domain(&n.domain);
        let entry = if domain_ok {
            registry::lookup(&n.op_type)
        } else {
            None
        };
        let mut problems: Vec<String> = Vec::new();
        match entry {
            None if !domain_ok => {
                problems.push(format!("op {} of domain {:?}", n.op_type, n.domain))
            }
            None => problems.push(format!("op {}", n.op_type)),
            Some(e) => {
                for a in &n.attribute {
                    if !e.attrs.contains(&a.name.as_str()) {
                        problems.push(format!("attribute `{}`", a.name));
                    }
                }
            }
        }
        let mut fail =
            |what: Vec<String>, unsupported: &mut Vec<Unsupported>| -> Result<(), ImportError> {
                if mode == Mode::Strict {
                    return Err(ErrorKind::Unsupported(
                        what.into_iter()
                            .map(|w| Unsupported {
                                node: label.clone(),
                                op_type: n.op_type.clone(),
                                what: w,
                            })
                            .collect(),
                    )
                    .into());
                }
                unsupported.extend(what.into_iter().map(|w| Unsupported {
                    node: label.clone(),
                    op_type: n.op_type.clone(),
                    what: w,
                }));
                n.output.iter().for_each(|o| {
                    poisoned.insert(o.clone());
                });
                Ok(())
            };
        let Some(entry) = entry.filter(|_| problems.is_empty()) else {
            fail(problems, &mut unsupported)?;
            continue;
        };

        let mut ids = Vec::with_capacity(n.input.len());
        for x in &n.input {
            if x.is_empty() {
                ids.push(None);
            } else if let Some(reason) = unavailable.get(x) {
                return Err(node_err(format!(
                    "uses {x:?}, which is unavailable: {reason}"
                )));
            } else {
                // `node_order` guarantees every non-empty input is defined by now.
                let id = values
                    .get(x)
                    .copied()
                    .ok_or_else(|| node_err(format!("input {x:?} is not defined")))?;
                ids.push(Some(id));
            }
        }
        cx.origin = label.clone();
        cx.node_macs = 0;
        let result = (entry.import)(&mut cx, n, &Operands { ids });
        let outs = match result {
            Ok(outs) => outs,
            Err(NodeError::Unsupported(what)) => {
                fail(vec![what], &mut unsupported)?;
                continue;
            }
            Err(NodeError::Shape(source)) => {
                return Err(ErrorKind::shape(&label, &n.op_type, source).into())
            }
            Err(e) => return Err(node_err(e.to_string())),
        };
        if cx.node_macs > 0 {
            node_macs.push(NodeMacs {
                node: label.clone(),
                op_type: n.op_type.clone(),
                macs: cx.node_macs,
            });
        }
        for (k, name) in n.output.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            match outs.get(k) {
                Some(&id) => {
                    values.insert(name.clone(), id);
                }
                None => {
                    unavailable.insert(
                        name.clone(),
                        format!(
                            "it is output {k} of node {label:?} ({op}), and dync provides only \
                             {} output{} of {op}",
                            outs.len(),
                            if outs.len() == 1 { "" } else { "s" },
                            op = n.op_type,
                        ),
                    );
                }
            }
        }
    }

    let macs_onnx = node_macs
        .iter()
        .map(|m| m.macs)
        .fold(0u64, u64::saturating_add);
    if mode == Mode::Collect && (!unsupported.is_empty() || !poisoned.is_empty()) {
        let imported = Imported {
            graph: cx.graph,
            onnx_ops,
            params,
            macs_onnx,
            node_macs,
            notes,
            opset: m.opset,
        };
        return Ok((imported, unsupported));
    }

    let mut out_names = HashSet::new();
    for v in &g.output {
        if !out_names.insert(v.name.as_str()) {
            return Err(
                ErrorKind::graph(format!("graph output {:?} is listed twice", v.name)).into(),
            );
        }
        if let Some(reason) = unavailable.get(&v.name) {
            return Err(ErrorKind::graph(format!(
                "graph output {:?} is unavailable: {reason}",
                v.name
            ))
            .into());
        }
        let id = *values.get(&v.name).ok_or_else(|| {
            ErrorKind::graph(format!("graph output {:?} is produced by no node", v.name))
        })?;
        check_declared(&v.name, cx.graph.ty(id), v, limits)?;
        cx.graph.set_output(v.name.clone(), id);
    }
    for v in &g.value_info {
        if let Some(&id) = values.get(&v.name) {
            check_declared(&v.name, cx.graph.ty(id), v, limits)?;
        }
    }
    cx.graph.remove_dead();
    Ok((
        Imported {
            graph: cx.graph,
            onnx_ops,
            params,
            macs_onnx,
            node_macs,
            notes,
            opset: m.opset,
        },
        unsupported,
    ))
}

/// Fixes a graph input's shape from its declaration and an optional `--input-shape`.
fn resolve_input_shape(
    name: &str,
    declared: Option<&[Dim]>,
    given: Option<Vec<usize>>,
    notes: &mut Vec<String>,
) -> Result<Vec<usize>, ErrorKind> {
    match (declared, given) {
        (None, Some(s)) => Ok(s),
        (None, None) => Err(ErrorKind::value(
            name,
            "has no declared shape; give one with --input-shape",
        )),
        (Some(d), Some(s)) => {
            let fits = d.len() == s.len()
                && d.iter().zip(&s).all(|(d, &v)| match d {
                    Dim::Known(k) => *k == v,
                    Dim::Symbolic(_) | Dim::Unknown => true,
                });
            if !fits {
                let decl: Vec<String> = d.iter().map(|x| x.to_string()).collect();
                return Err(ErrorKind::value(
                    name,
                    format!(
                        "the shape {s:?} given for it (--input-shape or an input file) does not \
                         fit the declared shape [{}]",
                        decl.join(",")
                    ),
                ));
            }
            Ok(s)
        }
        (Some(d), None) => d
            .iter()
            .enumerate()
            .map(|(i, dim)| match dim {
                Dim::Known(k) => Ok(*k),
                Dim::Symbolic(_) | Dim::Unknown if i == 0 && d.len() > 1 => {
                    notes.push(format!(
                        "input {name:?}: symbolic batch dim `{dim}` set to 1 (use --input-shape)"
                    ));
                    Ok(1)
                }
                _ => Err(ErrorKind::value(
                    name,
                    format!("dim {i} is symbolic (`{dim}`); fix it with --input-shape {name}=..."),
                )),
            })
            .collect(),
    }
}

/// Compares a declared output/value_info type with the inferred one (known dims only).
fn check_declared(
    name: &str,
    ty: &TensorType,
    v: &crate::proto::ValueInfoProto,
    limits: &Limits,
) -> Result<(), ImportError> {
    if v.r#type.is_none() {
        return Ok(());
    }
    let vt = value_info_type(v, limits)?;
    let mismatch = || ErrorKind::value(name, format!("declared {vt} but computes {ty}"));
    if vt.dtype != ty.dtype {
        return Err(mismatch().into());
    }
    if let Some(shape) = &vt.shape {
        if shape.len() != ty.rank() {
            return Err(mismatch().into());
        }
        for (d, &k) in shape.iter().zip(&ty.shape) {
            if let Dim::Known(x) = d {
                if *x != k {
                    return Err(mismatch().into());
                }
            }
        }
    }
    Ok(())
}

/// Orders nodes so that each comes after the producers of its inputs (stable: file order among
/// ready nodes). Errors on duplicate producers, inputs nobody defines, and cycles.
fn node_order(
    nodes: &[NodeProto],
    defined: &HashMap<String, NodeId>,
) -> Result<Vec<usize>, ErrorKind> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if defined.contains_key(o.as_str()) || producer.insert(o, i).is_some() {
                return Err(ErrorKind::node(
                    &node_label(n, i),
                    &n.op_type,
                    format!("output {o:?} is already defined elsewhere"),
                ));
            }
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            if let Some(&p) = producer.get(x.as_str()) {
                pending[i] += 1;
                users[p].push(i);
            } else if !defined.contains_key(x.as_str()) {
                return Err(ErrorKind::node(
                    &node_label(n, i),
                    &n.op_type,
                    format!("input {x:?} is produced by no node, initializer or graph input"),
                ));
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len()).find(|&i| pending[i] > 0).unwrap_or(0);
        return Err(ErrorKind::graph(format!(
            "the graph has a cycle through node {:?} ({})",
            node_label(&nodes[stuck], stuck),
            nodes[stuck].op_type
        )));
    }
    Ok(order)
}
