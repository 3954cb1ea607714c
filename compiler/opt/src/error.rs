//! Errors of the pass pipeline. A pass that breaks a graph invariant is a dync bug; it is still
//! reported as an error (naming the pass and the verifier's findings), never a panic.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PassError {
    #[error("pass `{pass}` produced an invalid graph:\n{report}")]
    Verify { pass: &'static str, report: String },
    #[error("pass `{pass}`: at {origin}: {message}")]
    Rewrite {
        pass: &'static str,
        origin: String,
        message: String,
    },
    #[error("unknown pass `{0}` (known: {known})", known = crate::PASS_NAMES.join(", "))]
    UnknownPass(String),
    /// `--batch N` cannot apply to the graph as a whole.
    #[error("--batch {batch}: {reason}")]
    Batch { batch: usize, reason: String },
    /// `--batch N` meets an op that is not per-sample (or a constant that spells the batch
    /// out with different slices); `value` is its `%k` in the printed IR.
    #[error("--batch {batch}: cannot re-target {value} = {op} (ONNX node `{origin}`): {reason}")]
    Retarget {
        batch: usize,
        value: String,
        op: &'static str,
        origin: String,
        reason: String,
    },
}
