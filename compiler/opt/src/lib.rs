//! dync's graph passes and the manager that runs them.
//!
//! A pass rewrites a [`dync_ir::Graph`] in place ([`Pass`]). The [`PassManager`] runs a pipeline
//! of named passes, verifies the graph after each, follows every rewriting pass with constant
//! folding and dead-code elimination, times each pass (`--time-passes`) and can print the IR
//! after any pass (`--print-after PASS|all`). Passes report what users should know (e.g. a
//! dynamic conv left as generic ops, and why) as [`Remark`]s.

pub mod error;
pub mod manager;
pub mod passes;
pub mod pipeline;

pub use error::PassError;
pub use manager::{Pass, PassCx, PassManager, PrintAfter, Remark};
pub use pipeline::{lookup, optimize, pipeline, Options, PASS_NAMES};
