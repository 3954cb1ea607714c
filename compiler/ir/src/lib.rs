//! dync's intermediate representation.
//!
//! A [`Graph`] of single-result [`Node`]s, each an [`Op`] with a static [`TensorType`]. The
//! text form ([`print`], [`parse`]) reads like CLIF or MLIR and round-trips exactly;
//! [`verify`] checks every invariant that passes and backends rely on.

pub mod attrs;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod math;
pub mod ops;
pub mod parse;
pub mod print;
pub mod tensor;
pub mod verify;

pub use dtype::DType;
pub use error::{ParseError, ShapeError, VerifyError};
pub use graph::{Graph, Node, NodeId};
pub use ops::{Op, OpDef};
pub use parse::parse;
pub use print::{print, Numbering};
pub use tensor::{Tensor, TensorData, TensorType};
pub use verify::{print_with_errors, verify};
