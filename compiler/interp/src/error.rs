//! Errors of the interpreter. [`EvalError`] is what evaluating one op can fail with;
//! [`InterpError`] is what running a graph can fail with, naming the node (`%N`, op, ONNX origin)
//! or the graph input concerned.
//!
//! Every failure the interpreter can meet on a graph the verifier accepts, or on bad inputs, is
//! one of these values: the interpreter does not panic.

use dync_ir::{DType, ShapeError, TensorType};
use thiserror::Error;

/// Why evaluating one op failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvalError {
    /// The operands violate the op's shape/type rules (from re-running its shape inference).
    #[error("{0}")]
    Shape(#[from] ShapeError),
    #[error("the operands give a {inferred} result but the node declares {declared}")]
    TypeMismatch {
        inferred: TensorType,
        declared: TensorType,
    },
    #[error("index {index} is out of range for axis {axis} of extent {extent}")]
    IndexOutOfRange {
        index: i64,
        axis: usize,
        extent: usize,
    },
    #[error("integer division by zero")]
    DivisionByZero,
    #[error("integer overflow in {0}")]
    Overflow(&'static str),
    #[error("integer pow with the negative exponent {0}")]
    NegativeExponent(i64),
    #[error(
        "{mode} padding by {pad} of dim {dim} needs more than its extent {extent} after cropping"
    )]
    PadTooLarge {
        mode: &'static str,
        dim: usize,
        pad: i64,
        extent: usize,
    },
    #[error("{op} is not defined on {dtype}")]
    UnsupportedDtype { op: &'static str, dtype: DType },
    #[error("cannot allocate a result of {0} elements")]
    Alloc(usize),
    #[error("constant has no data (its IR text elided the weights)")]
    MissingData,
    #[error("`input` nodes take their value from the graph's inputs, not from eval")]
    GraphInput,
    #[error("operand {0} has no value")]
    MissingOperand(usize),
}

/// Why running a graph failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InterpError {
    #[error("the graph has {expected} inputs but {got} tensors were given")]
    InputCount { expected: usize, got: usize },
    /// A given input does not match the graph's declared input type.
    #[error("input `{name}`: {message}")]
    Input { name: String, message: String },
    /// A `const` without data (parsed from IR text with `blob(...)` weights) was needed.
    #[error(
        "%{value}{}: constant has no data (its IR text elided the weights)",
        origin_suffix(origin)
    )]
    MissingData {
        value: usize,
        origin: Option<String>,
    },
    /// Evaluating a node failed.
    #[error("%{value} ({op}{}): {source}", origin_suffix(origin))]
    Node {
        value: usize,
        op: &'static str,
        origin: Option<String>,
        source: EvalError,
    },
    #[error("the graph has a cycle through %{0}")]
    Cycle(usize),
    #[error("%{0} is an `input` node that is not one of the graph's inputs")]
    UndeclaredInput(usize),
    #[error("graph {what} `{name}` names %{value}, which is not in the graph")]
    Dangling {
        what: &'static str,
        name: String,
        value: usize,
    },
}

fn origin_suffix(origin: &Option<String>) -> String {
    origin
        .as_deref()
        .map(|o| format!(" from \"{o}\""))
        .unwrap_or_default()
}
