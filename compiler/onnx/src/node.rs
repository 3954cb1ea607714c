//! Per-node view used by op importers: typed attribute access (wrong attribute types are
//! errors, not defaults) and access to the node's operands through the import context.

use crate::proto::{AttributeProto, AttributeType, NodeProto, TensorProto};
use dync_ir::ShapeError;
use thiserror::Error;

/// Why one node could not be imported. The import driver attaches the node name, op type and
/// file.
#[derive(Debug, Error)]
pub enum NodeError {
    /// A feature dync does not support (reported by `dync check`, with all others at once).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The node is malformed (bad attribute, wrong input count, non-constant shape input...).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Shape(#[from] ShapeError),
    #[error("constant folding failed: {0}")]
    Eval(#[from] dync_interp::EvalError),
    /// A tensor-valued attribute (e.g. Constant's value) could not be read.
    #[error("{0}")]
    Tensor(String),
}

/// Returns `Err(NodeError::Invalid(format!(...)))`.
macro_rules! invalid {
    ($($arg:tt)*) => { return Err($crate::node::NodeError::Invalid(format!($($arg)*))) };
}
/// Returns `Err(NodeError::Unsupported(format!(...)))`.
macro_rules! unsupported {
    ($($arg:tt)*) => { return Err($crate::node::NodeError::Unsupported(format!($($arg)*))) };
}
pub(crate) use {invalid, unsupported};

/// Typed access to a node's attributes.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

/// The attribute's type as written, for messages: `Int`, or `unknown type code 99`.
fn attr_type_name(a: &AttributeProto) -> String {
    match AttributeType::try_from(a.r#type) {
        Ok(t) => format!("{t:?}"),
        Err(_) => format!("unknown type code {}", a.r#type),
    }
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attrs { node }
    }

    fn get(
        &self,
        name: &str,
        want: AttributeType,
    ) -> Result<Option<&'a AttributeProto>, NodeError> {
        let mut found = self.node.attribute.iter().filter(|a| a.name == name);
        let Some(a) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            invalid!("attribute `{name}` is given twice");
        }
        if !a.ref_attr_name.is_empty() {
            unsupported!("attribute `{name}` refers to a function attribute");
        }
        if a.r#type != want as i32 {
            invalid!(
                "attribute `{name}` must be {want:?}, got {}",
                attr_type_name(a)
            );
        }
        Ok(Some(a))
    }

    pub fn has(&self, name: &str) -> bool {
        self.node.attribute.iter().any(|a| a.name == name)
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, NodeError> {
        Ok(self.get(name, AttributeType::Int)?.map(|a| a.i))
    }
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, NodeError> {
        Ok(self.int(name)?.unwrap_or(default))
    }
    pub fn float(&self, name: &str) -> Result<Option<f32>, NodeError> {
        Ok(self.get(name, AttributeType::Float)?.map(|a| a.f))
    }
    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, NodeError> {
        Ok(self.float(name)?.unwrap_or(default))
    }
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, NodeError> {
        Ok(self.get(name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, NodeError> {
        Ok(self
            .get(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }
    pub fn string(&self, name: &str) -> Result<Option<String>, NodeError> {
        match self.get(name, AttributeType::String)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| NodeError::Invalid(format!("attribute `{name}` is not valid UTF-8"))),
        }
    }
    pub fn string_or(&self, name: &str, default: &str) -> Result<String, NodeError> {
        Ok(self.string(name)?.unwrap_or_else(|| default.to_string()))
    }
    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, NodeError> {
        match self.get(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => match &a.t {
                Some(t) => Ok(Some(t)),
                None => invalid!("tensor attribute `{name}` has no tensor"),
            },
        }
    }
    /// A boolean given as an int attribute (0 or 1).
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, NodeError> {
        match self.int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => invalid!("attribute `{name}` must be 0 or 1, got {v}"),
        }
    }
}

/// Normalizes a possibly negative axis against `rank` (ONNX: -rank <= axis < rank).
pub fn norm_axis(axis: i64, rank: usize, what: &str) -> Result<usize, NodeError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        invalid!("{what} {axis} out of range for rank {rank}");
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Converts ONNX dims (i64) to usize, rejecting negatives.
pub fn to_dims(v: &[i64], what: &str) -> Result<Vec<usize>, NodeError> {
    v.iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| NodeError::Invalid(format!("{what} has negative entry {d}")))
        })
        .collect()
}
