//! Errors of the backend. Every failure a user can cause (a graph the backend cannot compile,
//! inputs of the wrong type, a run-time error of generated code such as an out-of-range
//! gather index) is one of these values, naming the IR value (`%N`), its op and the ONNX node
//! it came from. Generated code never panics or aborts; it returns a status (see [`crate::abi`]).

use thiserror::Error;

/// Where in the graph an error happened: the printed value number, the op and the ONNX node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    pub value: usize,
    pub op: &'static str,
    pub origin: Option<String>,
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "%{} ({}", self.value, self.op)?;
        if let Some(o) = &self.origin {
            write!(f, " from \"{o}\"")?;
        }
        f.write_str(")")
    }
}

#[derive(Debug, Error)]
pub enum CodegenError {
    /// The graph violates IR invariants; every problem the verifier found, one per line.
    #[error("the graph does not verify:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Verify(Vec<dync_ir::VerifyError>),
    /// A node cannot be compiled.
    #[error("{node}: {message}")]
    Lower { node: NodeRef, message: String },
    /// A size or offset does not fit the target's address space.
    #[error("{0} overflows the address space")]
    Overflow(String),
    /// Cranelift rejected a function or data object (a backend bug, reported, never a panic).
    #[error("code generation failed for {what}: {message}")]
    Cranelift { what: String, message: String },
    /// The target machine cannot be set up.
    #[error("target: {0}")]
    Target(String),
    #[error("the model has {expected} inputs but {got} tensors were given")]
    InputCount { expected: usize, got: usize },
    /// A given input does not match the graph's declared input type.
    #[error("input `{name}`: expected {expected}, got {got}")]
    Input {
        name: String,
        expected: String,
        got: String,
    },
    /// Generated code stopped with an error status.
    #[error("{node}: {message}")]
    Runtime {
        node: NodeRef,
        message: &'static str,
    },
    /// Generated code returned a status no kernel of this model can produce.
    #[error("generated code returned the unknown status {0}")]
    UnknownStatus(i32),
    #[error("cannot allocate {0} bytes")]
    Alloc(usize),
    #[error("cannot start a pool of {threads} threads: {error}")]
    Threads {
        threads: usize,
        error: std::io::Error,
    },
}

impl CodegenError {
    /// A `Lower` error at `node`.
    pub fn lower(node: &NodeRef, message: impl Into<String>) -> Self {
        CodegenError::Lower {
            node: node.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn cranelift(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        CodegenError::Cranelift {
            what: what.into(),
            message: e.to_string(),
        }
    }
}
