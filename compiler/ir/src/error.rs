//! Errors of the IR crate: shape/type errors from inference, verifier errors, text parse errors.

use thiserror::Error;

/// A type or shape rule of an op was violated; the message names the rule.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ShapeError {
    #[error("shape arithmetic overflows for {0}")]
    Overflow(String),
    #[error("tensor data has {got} elements but shape {shape:?} needs {expected}")]
    DataLength {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("expected {expected} inputs, got {got}")]
    Arity { expected: String, got: usize },
    #[error("{0}")]
    Invalid(String),
}

impl ShapeError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ShapeError::Invalid(msg.into())
    }
}

/// Builds a `ShapeError::Invalid` from a format string and returns it from the enclosing fn.
#[macro_export]
macro_rules! bail_shape {
    ($($arg:tt)*) => {
        return Err($crate::error::ShapeError::Invalid(format!($($arg)*)))
    };
}

/// One problem found by the verifier, located at a value (`%N`) and the ONNX node it came from.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("%{value} ({op}{}): {message}", origin.as_deref().map(|o| format!(" from \"{o}\"")).unwrap_or_default())]
pub struct VerifyError {
    pub value: usize,
    pub op: String,
    pub origin: Option<String>,
    pub message: String,
}

/// An error in IR text, with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("line {line}, column {col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}
