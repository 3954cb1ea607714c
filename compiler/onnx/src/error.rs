//! The one error type of dync-onnx: [`ImportError`], an [`ErrorKind`] plus the model file it
//! concerns.
//!
//! Code deep in the frontend builds an `ErrorKind` (naming the node, tensor or value involved)
//! and converts it with `?`/`into()`; whoever knows the file attaches it once with
//! [`ImportError::with_path`] (or [`crate::load::LoadedModel::error`]). Messages then read
//! `model.onnx: node "/layer1/Conv" (Conv): ...`. Names are printed with Rust's string escaping,
//! so control characters or NUL bytes in a hostile name cannot garble a terminal.

use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// An error of loading or importing an ONNX model, with the model file when known.
#[derive(Debug)]
pub struct ImportError {
    path: Option<PathBuf>,
    // Boxed so that `Result<_, ImportError>` stays two words wide.
    kind: Box<ErrorKind>,
}

impl ImportError {
    /// Attaches the model file, unless one is already attached (the innermost file wins, so an
    /// error that already names a file keeps it).
    pub fn with_path(mut self, path: impl AsRef<Path>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.as_ref().to_path_buf());
        }
        self
    }

    /// The model file, when known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub fn into_kind(self) -> ErrorKind {
        *self.kind
    }
}

impl From<ErrorKind> for ImportError {
    fn from(kind: ErrorKind) -> Self {
        ImportError {
            path: None,
            kind: Box::new(kind),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}

/// What went wrong. Every variant names the model element involved; the file is on the wrapping
/// [`ImportError`]. A variant that wraps another error prints its message and does not return it
/// as `source()` as well: reporters that print the chain (anyhow's `{:#}`) would repeat it.
#[derive(Debug, Error)]
pub enum ErrorKind {
    /// The model file could not be opened or read.
    #[error("cannot read the model: {error}")]
    Io { error: std::io::Error },
    /// The bytes are not an ONNX model (empty, another known format, text, or not protobuf).
    #[error("not an ONNX model: {reason}")]
    NotOnnx { reason: String },
    #[error("the model has no graph")]
    MissingGraph,
    /// `opset_import` has no entry for the default domain (`""` or `"ai.onnx"`).
    #[error("the model imports no opset of the default ONNX domain (opset_import)")]
    MissingOpset,
    #[error(
        "opset {version} of domain {} is not supported (dync supports ai.onnx opsets {}..={})",
        domain_name(domain),
        crate::load::MIN_OPSET,
        crate::load::MAX_OPSET
    )]
    UnsupportedOpset { domain: String, version: i64 },
    #[error("opset_import lists domain {} more than once", domain_name(domain))]
    DuplicateOpset { domain: String },
    /// A tensor (initializer, attribute value or external-data tensor) is malformed.
    #[error("tensor {name:?}: {message}")]
    Tensor { name: String, message: String },
    /// A declared graph input, output or value_info is malformed.
    #[error("value {name:?}: {message}")]
    Value { name: String, message: String },
    /// External data of a tensor is unsafe or inconsistent. `path` is the `location` as written
    /// in the model.
    #[error("tensor {tensor:?}: external data {path:?}: {message}")]
    ExternalData {
        tensor: String,
        path: String,
        message: String,
    },
    /// A resource limit of [`crate::limits::Limits`] was exceeded.
    #[error("{what} is {value}, over the limit of {limit}")]
    Limit {
        what: String,
        value: u64,
        limit: u64,
    },
    /// A node is malformed (attributes, input counts, ...).
    #[error("node {node:?} ({op_type}): {message}")]
    Node {
        node: String,
        op_type: String,
        message: String,
    },
    /// Every unsupported op or attribute of the model, reported together.
    #[error("{}", UnsupportedList(.0))]
    Unsupported(Vec<Unsupported>),
    /// The graph's structure is inconsistent (dangling inputs, cycles, duplicate outputs, ...).
    #[error("invalid graph: {message}")]
    Graph { message: String },
    /// A node's operands violate its op's type or shape rules.
    #[error("node {node:?} ({op_type}): {error}")]
    Shape {
        node: String,
        op_type: String,
        error: dync_ir::ShapeError,
    },
}

/// One op or attribute that dync does not support, at a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub node: String,
    pub op_type: String,
    /// What is unsupported, e.g. `op type Loop` or `attribute auto_pad=VALID`.
    pub what: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {:?} ({}): unsupported {}",
            self.node, self.op_type, self.what
        )
    }
}

struct UnsupportedList<'a>(&'a [Unsupported]);

impl fmt::Display for UnsupportedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} unsupported op{} or attribute{}:",
            plural(n),
            plural(n)
        )?;
        for u in self.0 {
            write!(f, "\n  {u}")?;
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `ai.onnx` for the default domain (`""`), else the quoted domain.
fn domain_name(domain: &str) -> String {
    if domain.is_empty() {
        "ai.onnx".to_string()
    } else {
        format!("{domain:?}")
    }
}

impl ErrorKind {
    pub fn tensor(name: &str, message: impl Into<String>) -> Self {
        ErrorKind::Tensor {
            name: name.to_string(),
            message: message.into(),
        }
    }

    pub fn value(name: &str, message: impl Into<String>) -> Self {
        ErrorKind::Value {
            name: name.to_string(),
            message: message.into(),
        }
    }

    pub fn node(node: &str, op_type: &str, message: impl Into<String>) -> Self {
        ErrorKind::Node {
            node: node.to_string(),
            op_type: op_type.to_string(),
            message: message.into(),
        }
    }

    pub fn shape(node: &str, op_type: &str, error: dync_ir::ShapeError) -> Self {
        ErrorKind::Shape {
            node: node.to_string(),
            op_type: op_type.to_string(),
            error,
        }
    }

    pub fn graph(message: impl Into<String>) -> Self {
        ErrorKind::Graph {
            message: message.into(),
        }
    }

    pub fn not_onnx(reason: impl Into<String>) -> Self {
        ErrorKind::NotOnnx {
            reason: reason.into(),
        }
    }
}
