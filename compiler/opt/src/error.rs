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
    #[error("{0}")]
    Retarget(String),
}
