//! Subcommands of the `dync` binary, one file each. Every `run` returns the process exit code;
//! errors are printed by `main` with their full context chain.

pub mod bench;
pub mod check;
pub mod common;
pub mod compile;
pub mod demo;
pub mod inspect;
pub mod run;
pub mod zoo;
