//! Resource limits for loading untrusted models, checked before anything proportional to the
//! checked quantity is allocated: the file size before reading it, a tensor's byte size before
//! its data is materialized, the running total of weight bytes before each tensor, the node
//! count and tensor ranks before they are walked.
//!
//! Nesting depth is bounded by prost's decoder (recursion limit 100 on nested messages and
//! groups), so subgraph depth needs no limit of its own; `tests/load.rs` checks that bound.

use crate::error::ErrorKind;

/// Upper bounds on what a model may make dync read or allocate. `Default` gives bounds that every
/// network of the zoo fits in with a wide margin, while a hostile file cannot make dync allocate
/// more than a few times its own size plus these bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Size of the `.onnx` file itself.
    pub max_file_bytes: u64,
    /// Bytes of one tensor as dync stores it (after widening narrow integers to i32).
    pub max_tensor_bytes: u64,
    /// Bytes of all tensors materialized through one `TensorCtx` (initializers, constants and
    /// external data together).
    pub max_total_weight_bytes: u64,
    /// Nodes in the main graph and all its subgraphs together.
    pub max_nodes: usize,
    /// Rank of any tensor or declared value.
    pub max_rank: usize,
}

const GIB: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 4 * GIB,
            max_tensor_bytes: 2 * GIB,
            max_total_weight_bytes: 8 * GIB,
            max_nodes: 1_000_000,
            max_rank: 8,
        }
    }
}

/// `Ok` when `value <= limit`, else an `ErrorKind::Limit` describing `what` was measured.
pub(crate) fn check(
    what: impl FnOnce() -> String,
    value: u64,
    limit: u64,
) -> Result<(), ErrorKind> {
    if value > limit {
        return Err(ErrorKind::Limit {
            what: what(),
            value,
            limit,
        });
    }
    Ok(())
}
