//! Writing ONNX: a small builder that assembles a [`proto::ModelProto`] node by node and encodes
//! it with prost. Used by the model zoo and by tests that need hand-made models.
//!
//! Contract:
//! - Output is deterministic: nodes, initializers, inputs, outputs and attributes appear in the
//!   order they were added, so the same calls give byte-identical files.
//! - Every value name is defined once (graph input, initializer, or node output) and every node
//!   input must already be defined when the node is added (or be `""`, ONNX's "absent optional
//!   input"); violations are [`WriteError`]s, so a graph built through this API is in topological
//!   order with SSA names.
//! - Initializers are stored as little-endian `raw_data`; dims must fit `i64`.
//! - The builder does not check operator semantics (attribute names, input counts): that is the
//!   caller's job, and `onnx.checker` / dync's importer check the result.

use crate::proto::{
    self, tensor_shape_proto, type_proto, AttributeProto, AttributeType, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use dync_ir::{DType, Tensor, TensorData};
use prost::Message;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use thiserror::Error;

/// A misuse of the builder: the graph it would produce is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WriteError {
    #[error("value `{0}` is defined twice")]
    DuplicateValue(String),
    #[error("node `{node}` ({op_type}) reads `{input}`, which is not defined before it")]
    UndefinedInput {
        node: String,
        op_type: String,
        input: String,
    },
    #[error("graph output `{0}` is not defined")]
    UndefinedOutput(String),
    #[error("dimension {dim} of `{name}` does not fit in an ONNX int64")]
    DimOverflow { name: String, dim: usize },
}

/// One dimension of a graph input/output type: a known size or a symbolic name (e.g. `"batch"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

/// A typed attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Floats(Vec<f32>),
    String(String),
    Tensor(Tensor),
}

/// A named attribute, as passed to [`ModelBuilder::node`].
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub name: String,
    pub value: AttrValue,
}

impl Attr {
    pub fn int(name: &str, v: i64) -> Attr {
        Attr::new(name, AttrValue::Int(v))
    }
    pub fn ints(name: &str, v: &[i64]) -> Attr {
        Attr::new(name, AttrValue::Ints(v.to_vec()))
    }
    pub fn float(name: &str, v: f32) -> Attr {
        Attr::new(name, AttrValue::Float(v))
    }
    pub fn floats(name: &str, v: &[f32]) -> Attr {
        Attr::new(name, AttrValue::Floats(v.to_vec()))
    }
    pub fn string(name: &str, v: &str) -> Attr {
        Attr::new(name, AttrValue::String(v.to_string()))
    }
    pub fn tensor(name: &str, t: Tensor) -> Attr {
        Attr::new(name, AttrValue::Tensor(t))
    }
    fn new(name: &str, value: AttrValue) -> Attr {
        Attr {
            name: name.to_string(),
            value,
        }
    }
}

/// How [`ModelBuilder::initializer_dedup`] treats a tensor equal to an earlier initializer
/// (same dtype, dims and bytes), as PyTorch's exporters do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedup {
    /// Always store a new initializer.
    Keep,
    /// Legacy (TorchScript) exporter: the duplicate becomes `Identity(first)`, placed with the
    /// other such nodes at the start of the graph.
    Identity,
    /// Dynamo exporter: the duplicate's users read the first initializer's name.
    Share,
}

/// The ONNX `TensorProto.DataType` of a dync dtype.
pub fn onnx_dtype(d: DType) -> proto::DataType {
    match d {
        DType::F32 => proto::DataType::Float,
        DType::I64 => proto::DataType::Int64,
        DType::I32 => proto::DataType::Int32,
        DType::Bool => proto::DataType::Bool,
    }
}

/// The smallest ONNX IR version that admits `opset` of the default domain (ONNX's versioning
/// table); unknown future opsets get the newest IR version this schema declares (10).
pub fn ir_version_for_opset(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

fn dims_i64(name: &str, shape: &[usize]) -> Result<Vec<i64>, WriteError> {
    shape
        .iter()
        .map(|&d| {
            i64::try_from(d).map_err(|_| WriteError::DimOverflow {
                name: name.to_string(),
                dim: d,
            })
        })
        .collect()
}

/// The concatenated little-endian bytes of `v`. Written with plain indexing into a
/// preallocated buffer: the zoo converts tens of millions of weights, and this form stays fast
/// in debug builds too.
fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = vec![0u8; v.len().saturating_mul(N)];
    for (dst, &x) in out.chunks_exact_mut(N).zip(v) {
        dst.copy_from_slice(&f(x));
    }
    out
}

/// A `TensorProto` named `name` holding `t` as little-endian `raw_data`.
pub fn tensor_proto(name: &str, t: &Tensor) -> Result<TensorProto, WriteError> {
    let raw_data = match t.data() {
        TensorData::F32(v) => le_bytes(v, |x| x.to_le_bytes()),
        TensorData::I64(v) => le_bytes(v, |x| x.to_le_bytes()),
        TensorData::I32(v) => le_bytes(v, |x| x.to_le_bytes()),
        TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
    };
    Ok(TensorProto {
        dims: dims_i64(name, t.shape())?,
        data_type: onnx_dtype(t.dtype()) as i32,
        name: name.to_string(),
        raw_data,
        ..Default::default()
    })
}

fn attribute(a: &Attr) -> Result<AttributeProto, WriteError> {
    use AttributeType as T;
    let mut p = AttributeProto {
        name: a.name.clone(),
        ..Default::default()
    };
    let ty = match &a.value {
        AttrValue::Int(v) => {
            p.i = *v;
            T::Int
        }
        AttrValue::Ints(v) => {
            p.ints = v.clone();
            T::Ints
        }
        AttrValue::Float(v) => {
            p.f = *v;
            T::Float
        }
        AttrValue::Floats(v) => {
            p.floats = v.clone();
            T::Floats
        }
        AttrValue::String(v) => {
            p.s = v.as_bytes().to_vec();
            T::String
        }
        AttrValue::Tensor(t) => {
            p.t = Some(tensor_proto("", t)?);
            T::Tensor
        }
    };
    p.r#type = ty as i32;
    Ok(p)
}

fn value_info(name: &str, dtype: DType, dims: &[Dim]) -> Result<ValueInfoProto, WriteError> {
    use tensor_shape_proto::dimension::Value;
    let dim = dims
        .iter()
        .map(|d| {
            let value = match d {
                Dim::Fixed(n) => {
                    Value::DimValue(i64::try_from(*n).map_err(|_| WriteError::DimOverflow {
                        name: name.to_string(),
                        dim: *n,
                    })?)
                }
                Dim::Symbolic(s) => Value::DimParam(s.clone()),
            };
            Ok(tensor_shape_proto::Dimension {
                denotation: String::new(),
                value: Some(value),
            })
        })
        .collect::<Result<Vec<_>, WriteError>>()?;
    Ok(ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: onnx_dtype(dtype) as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    })
}

/// A cheap lookup key for initializer deduplication: type, dims and the first bytes of data
/// (candidates are then compared in full). Only used for in-memory lookup, never written.
fn content_key(p: &TensorProto) -> u64 {
    let mut h = DefaultHasher::new();
    p.data_type.hash(&mut h);
    p.dims.hash(&mut h);
    p.raw_data[..p.raw_data.len().min(64)].hash(&mut h);
    h.finish()
}

/// Builds one ONNX model (default domain only). See the module docs for the invariants.
#[derive(Debug)]
pub struct ModelBuilder {
    opset: i64,
    graph: GraphProto,
    metadata: Vec<StringStringEntryProto>,
    /// Every value name defined so far (inputs, initializers, node outputs).
    defined: HashSet<String>,
    /// Every name handed out by `fresh` or taken by a node, value or initializer.
    taken: HashSet<String>,
    /// Next suffix to try per `fresh` base, so that `fresh` is O(1) amortised.
    counters: HashMap<String, usize>,
    /// Initializer indices by `content_key`, for `initializer_dedup`.
    by_content: HashMap<u64, Vec<usize>>,
    /// How many `Identity` nodes `Dedup::Identity` has put at the front of the node list.
    front_identities: usize,
}

impl ModelBuilder {
    /// An empty model importing `opset` of the default ONNX domain, with the matching IR version.
    pub fn new(opset: i64) -> Self {
        ModelBuilder {
            opset,
            graph: GraphProto {
                name: "main_graph".to_string(),
                ..Default::default()
            },
            metadata: Vec::new(),
            defined: HashSet::new(),
            taken: HashSet::new(),
            counters: HashMap::new(),
            by_content: HashMap::new(),
            front_identities: 0,
        }
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Sets the graph's name (default `main_graph`).
    pub fn set_graph_name(&mut self, name: &str) {
        self.graph.name = name.to_string();
    }

    /// Adds a `metadata_props` entry.
    pub fn metadata(&mut self, key: &str, value: &str) {
        self.metadata.push(StringStringEntryProto {
            key: key.to_string(),
            value: value.to_string(),
        });
    }

    /// A name not used yet: `base` itself, else `base_1`, `base_2`, … (PyTorch's legacy
    /// exporter numbers repeated node names the same way). The name is reserved.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut n = self.counters.get(base).copied().unwrap_or(0);
        loop {
            let candidate = if n == 0 {
                base.to_string()
            } else {
                format!("{base}_{n}")
            };
            n += 1;
            if !self.taken.contains(&candidate) {
                self.counters.insert(base.to_string(), n);
                self.taken.insert(candidate.clone());
                return candidate;
            }
        }
    }

    /// Whether `name` is a defined value (input, initializer or node output).
    pub fn is_defined(&self, name: &str) -> bool {
        self.defined.contains(name)
    }

    fn define(&mut self, name: &str) -> Result<(), WriteError> {
        if !self.defined.insert(name.to_string()) {
            return Err(WriteError::DuplicateValue(name.to_string()));
        }
        self.taken.insert(name.to_string());
        Ok(())
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, dtype: DType, dims: &[Dim]) -> Result<(), WriteError> {
        let vi = value_info(name, dtype, dims)?;
        self.define(name)?;
        self.graph.input.push(vi);
        Ok(())
    }

    /// Declares a graph output; the value must be defined by then.
    pub fn output(&mut self, name: &str, dtype: DType, dims: &[Dim]) -> Result<(), WriteError> {
        if !self.defined.contains(name) {
            return Err(WriteError::UndefinedOutput(name.to_string()));
        }
        self.graph.output.push(value_info(name, dtype, dims)?);
        Ok(())
    }

    /// Records the type of an intermediate value (`value_info`).
    pub fn value_info(&mut self, name: &str, dtype: DType, dims: &[Dim]) -> Result<(), WriteError> {
        self.graph.value_info.push(value_info(name, dtype, dims)?);
        Ok(())
    }

    /// Adds an initializer called `name`.
    pub fn initializer(&mut self, name: &str, t: &Tensor) -> Result<(), WriteError> {
        let p = tensor_proto(name, t)?;
        self.push_initializer(p)
    }

    fn push_initializer(&mut self, p: TensorProto) -> Result<(), WriteError> {
        self.define(&p.name)?;
        self.by_content
            .entry(content_key(&p))
            .or_default()
            .push(self.graph.initializer.len());
        self.graph.initializer.push(p);
        Ok(())
    }

    /// Adds an initializer called `name`, or, when an equal one exists, follows `mode`. Returns
    /// the name users should read (`name`, or the earlier initializer's under `Dedup::Share`).
    pub fn initializer_dedup(
        &mut self,
        name: &str,
        t: &Tensor,
        mode: Dedup,
    ) -> Result<String, WriteError> {
        let p = tensor_proto(name, t)?;
        let earlier = self
            .by_content
            .get(&content_key(&p))
            .into_iter()
            .flatten()
            .map(|&i| &self.graph.initializer[i])
            .find(|q| q.data_type == p.data_type && q.dims == p.dims && q.raw_data == p.raw_data)
            .map(|q| q.name.clone());
        match (mode, earlier) {
            (Dedup::Share, Some(first)) => Ok(first),
            (Dedup::Identity, Some(first)) => {
                self.define(name)?;
                let node = NodeProto {
                    input: vec![first],
                    output: vec![name.to_string()],
                    name: self.fresh(&format!("Identity_{name}")),
                    op_type: "Identity".to_string(),
                    ..Default::default()
                };
                self.graph.node.insert(self.front_identities, node);
                self.front_identities += 1;
                Ok(name.to_string())
            }
            _ => {
                self.push_initializer(p)?;
                Ok(name.to_string())
            }
        }
    }

    /// Adds a node. `name` is the node's name (unique by convention; see [`Self::fresh`]);
    /// every non-empty input must be defined, every output must be new.
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[Attr],
    ) -> Result<(), WriteError> {
        if let Some(missing) = inputs
            .iter()
            .find(|i| !i.is_empty() && !self.defined.contains(**i))
        {
            return Err(WriteError::UndefinedInput {
                node: name.to_string(),
                op_type: op_type.to_string(),
                input: missing.to_string(),
            });
        }
        let attribute = attrs.iter().map(attribute).collect::<Result<_, _>>()?;
        for o in outputs {
            self.define(o)?;
        }
        self.taken.insert(name.to_string());
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: name.to_string(),
            op_type: op_type.to_string(),
            attribute,
            ..Default::default()
        });
        Ok(())
    }

    /// Renames the node output `old` to `new` everywhere it is read (PyTorch's exporters name
    /// graph outputs this way rather than through an extra node). `old` must be a node output.
    pub fn rename(&mut self, old: &str, new: &str) -> Result<(), WriteError> {
        let Some(pos) = self
            .graph
            .node
            .iter()
            .position(|n| n.output.iter().any(|o| o == old))
        else {
            return Err(WriteError::UndefinedOutput(old.to_string()));
        };
        self.define(new)?;
        self.defined.remove(old);
        for n in &mut self.graph.node[pos..] {
            for v in n.output.iter_mut().chain(n.input.iter_mut()) {
                if v == old {
                    *v = new.to_string();
                }
            }
        }
        Ok(())
    }

    /// Adds a `Constant` node named `name` whose output `output` holds `t`.
    pub fn constant(&mut self, name: &str, output: &str, t: Tensor) -> Result<(), WriteError> {
        self.node(
            "Constant",
            name,
            &[],
            &[output],
            &[Attr::tensor("value", t)],
        )
    }

    /// Adds an `Identity` node `output = input`.
    pub fn identity(&mut self, name: &str, input: &str, output: &str) -> Result<(), WriteError> {
        self.node("Identity", name, &[input], &[output], &[])
    }

    /// The finished model.
    pub fn finish(self) -> ModelProto {
        ModelProto {
            ir_version: ir_version_for_opset(self.opset),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "dync".to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            graph: Some(self.graph),
            metadata_props: self.metadata,
            ..Default::default()
        }
    }

    /// The finished model, encoded as ONNX protobuf bytes.
    pub fn encode(self) -> Vec<u8> {
        self.finish().encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> ModelProto {
        match ModelProto::decode(bytes) {
            Ok(m) => m,
            Err(e) => panic!("written model does not decode: {e}"),
        }
    }

    fn small_model() -> Result<ModelBuilder, WriteError> {
        let mut b = ModelBuilder::new(17);
        b.input(
            "x",
            DType::F32,
            &[Dim::Symbolic("batch".into()), Dim::Fixed(3)],
        )?;
        let w = Tensor::from_f32([3, 2], vec![1.0, -2.0, 3.5, 0.25, -0.0, 7.0])
            .map_err(|_| WriteError::DuplicateValue("bad test tensor".into()))?;
        b.initializer("w", &w)?;
        let shape = Tensor::from_i64([2], vec![-1, 2])
            .map_err(|_| WriteError::DuplicateValue("bad test tensor".into()))?;
        let c = b.fresh("Constant");
        b.constant(&c, "shape", shape)?;
        let mm = b.fresh("MatMul");
        b.node("MatMul", &mm, &["x", "w"], &["y"], &[])?;
        let g = b.fresh("Gemm");
        b.node(
            "Gemm",
            &g,
            &["y", "w", ""],
            &["z"],
            &[
                Attr::float("alpha", 0.5),
                Attr::int("transB", 1),
                Attr::ints("perm", &[1, 0]),
                Attr::floats("fs", &[1.5, -2.0]),
                Attr::string("mode", "linear"),
            ],
        )?;
        b.output(
            "z",
            DType::F32,
            &[Dim::Symbolic("batch".into()), Dim::Fixed(3)],
        )?;
        b.metadata("seed", "7");
        Ok(b)
    }

    #[test]
    fn round_trip_fields() -> Result<(), WriteError> {
        let m = decode(&small_model()?.encode());
        assert_eq!(m.ir_version, 8);
        assert_eq!(m.opset_import.len(), 1);
        assert_eq!(m.opset_import[0].version, 17);
        assert_eq!(m.metadata_props[0].key, "seed");
        let g = m
            .graph
            .as_ref()
            .map_or_else(|| panic!("no graph"), |g| g.clone());
        // Inputs: symbolic and fixed dims survive.
        let Some(type_proto::Value::TensorType(t)) =
            g.input[0].r#type.as_ref().and_then(|t| t.value.clone())
        else {
            panic!("input has no tensor type")
        };
        assert_eq!(t.elem_type, proto::DataType::Float as i32);
        let dims: Vec<_> = t
            .shape
            .map(|s| s.dim.into_iter().map(|d| d.value).collect())
            .unwrap_or_default();
        use tensor_shape_proto::dimension::Value;
        assert_eq!(
            dims,
            vec![
                Some(Value::DimParam("batch".into())),
                Some(Value::DimValue(3))
            ]
        );
        // Initializer: dims and little-endian raw data decode to the original values.
        let w = &g.initializer[0];
        assert_eq!(w.dims, vec![3, 2]);
        let back: Vec<f32> = w
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, vec![1.0, -2.0, 3.5, 0.25, -0.0, 7.0]);
        assert_eq!(back[4].to_bits(), (-0.0f32).to_bits());
        // Nodes in insertion order, with typed attributes.
        let ops: Vec<_> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Constant", "MatMul", "Gemm"]);
        let c = &g.node[0].attribute[0];
        assert_eq!(c.r#type, AttributeType::Tensor as i32);
        let ct = c.t.clone().unwrap_or_default();
        assert_eq!(ct.data_type, proto::DataType::Int64 as i32);
        let back: Vec<i64> = ct
            .raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        assert_eq!(back, vec![-1, 2]);
        let gemm = &g.node[2];
        assert_eq!(gemm.input, ["y", "w", ""]);
        let a = |n: &str| {
            gemm.attribute
                .iter()
                .find(|a| a.name == n)
                .cloned()
                .unwrap_or_default()
        };
        use AttributeType as T;
        assert_eq!((a("alpha").r#type, a("alpha").f), (T::Float as i32, 0.5));
        assert_eq!((a("transB").r#type, a("transB").i), (T::Int as i32, 1));
        assert_eq!(
            (a("perm").r#type, a("perm").ints),
            (T::Ints as i32, vec![1, 0])
        );
        assert_eq!(a("fs").floats, vec![1.5, -2.0]);
        assert_eq!(
            (a("mode").r#type, a("mode").s),
            (T::String as i32, b"linear".to_vec())
        );
        Ok(())
    }

    #[test]
    fn deterministic_bytes() -> Result<(), WriteError> {
        assert_eq!(small_model()?.encode(), small_model()?.encode());
        Ok(())
    }

    #[test]
    fn fresh_names_are_unique() {
        let mut b = ModelBuilder::new(18);
        let names: Vec<_> = (0..4).map(|_| b.fresh("Conv")).collect();
        assert_eq!(names, ["Conv", "Conv_1", "Conv_2", "Conv_3"]);
        // A name taken by a value is skipped by fresh.
        assert!(b.input("Relu", DType::F32, &[Dim::Fixed(1)]).is_ok());
        assert_eq!(b.fresh("Relu"), "Relu_1");
    }

    #[test]
    fn rejects_malformed_graphs() {
        let mut b = ModelBuilder::new(17);
        assert!(b.input("x", DType::F32, &[Dim::Fixed(2)]).is_ok());
        assert_eq!(
            b.input("x", DType::F32, &[Dim::Fixed(2)]),
            Err(WriteError::DuplicateValue("x".into()))
        );
        assert!(matches!(
            b.node("Relu", "r", &["nope"], &["y"], &[]),
            Err(WriteError::UndefinedInput { .. })
        ));
        assert!(b.node("Relu", "r", &["x"], &["y"], &[]).is_ok());
        assert_eq!(
            b.node("Relu", "r2", &["x"], &["y"], &[]),
            Err(WriteError::DuplicateValue("y".into()))
        );
        assert_eq!(
            b.output("z", DType::F32, &[]),
            Err(WriteError::UndefinedOutput("z".into()))
        );
    }

    #[test]
    fn dedup_modes() -> Result<(), WriteError> {
        let t = |v: f32| {
            Tensor::from_f32([2], vec![v, 1.0])
                .map_err(|_| WriteError::DuplicateValue("bad test tensor".into()))
        };
        let mut b = ModelBuilder::new(17);
        assert!(b.input("x", DType::F32, &[Dim::Fixed(2)]).is_ok());
        assert_eq!(b.initializer_dedup("a", &t(0.0)?, Dedup::Identity)?, "a");
        b.node("Add", "add", &["x", "a"], &["y"], &[])?;
        assert_eq!(b.initializer_dedup("b", &t(0.0)?, Dedup::Identity)?, "b");
        assert_eq!(b.initializer_dedup("c", &t(2.0)?, Dedup::Identity)?, "c");
        assert_eq!(b.initializer_dedup("d", &t(0.0)?, Dedup::Share)?, "a");
        assert_eq!(b.initializer_dedup("e", &t(0.0)?, Dedup::Keep)?, "e");
        let g = b.finish().graph.unwrap_or_default();
        let inits: Vec<_> = g.initializer.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inits, ["a", "c", "e"]);
        // The Identity for `b` goes before the Add added earlier.
        assert_eq!(g.node[0].op_type, "Identity");
        assert_eq!(
            (g.node[0].input[0].as_str(), g.node[0].output[0].as_str()),
            ("a", "b")
        );
        assert_eq!(g.node[1].op_type, "Add");
        Ok(())
    }

    #[test]
    fn rename_updates_producer_and_users() -> Result<(), WriteError> {
        let mut b = ModelBuilder::new(17);
        b.input("x", DType::F32, &[Dim::Fixed(2)])?;
        b.node("Relu", "r", &["x"], &["a"], &[])?;
        b.node("Neg", "n", &["a"], &["b"], &[])?;
        b.node("Add", "s", &["a", "b"], &["c"], &[])?;
        b.rename("a", "y")?;
        assert_eq!(
            b.rename("x", "z"),
            Err(WriteError::UndefinedOutput("x".into()))
        );
        assert_eq!(
            b.rename("b", "c"),
            Err(WriteError::DuplicateValue("c".into()))
        );
        assert!(b.is_defined("y") && !b.is_defined("a"));
        b.output("y", DType::F32, &[Dim::Fixed(2)])?;
        let g = b.finish().graph.unwrap_or_default();
        assert_eq!(g.node[0].output, ["y"]);
        assert_eq!(g.node[1].input, ["y"]);
        assert_eq!(g.node[2].input, ["y", "b"]);
        Ok(())
    }

    #[test]
    fn ir_version_follows_opset() {
        assert_eq!(ir_version_for_opset(17), 8);
        assert_eq!(ir_version_for_opset(18), 8);
        assert_eq!(ir_version_for_opset(20), 9);
        assert_eq!(ir_version_for_opset(21), 10);
    }
}
