//! The `dync` command line. Each subcommand lives in `cli/<name>.rs`; this file only parses
//! arguments and maps errors to exit codes (0 ok, 1 error or unsupported model, 2 usage).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod alloc;
mod cli;

#[derive(Parser)]
#[command(
    name = "dync",
    version,
    about = "An ahead-of-time compiler for dynamic-convolution CNNs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check that every node of an ONNX model is supported.
    Check(cli::check::Args),
    /// Print a model's ops, parameters, MACs, inputs and outputs (or its IR).
    Inspect(cli::inspect::Args),
    /// Run a model (interpreter or JIT) on .npy inputs and write .npy outputs.
    Run(cli::run::Args),
    /// Compile a model ahead of time to an executable, a shared library or an object file.
    Compile(cli::compile::Args),
    /// Export a zoo dynamic model and its static twin, compile both, check them against the
    /// interpreter and compare their latency.
    Demo(cli::demo::Args),
    /// Benchmark a model compiled by dync against onnxruntime, the interpreter and the literal
    /// pipeline: median and p90 latency, GFLOP/s, speed-ups.
    Bench(cli::bench::Args),
    /// The DyNet model zoo: list the networks, export them as ONNX.
    #[command(subcommand)]
    Zoo(cli::zoo::Cmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Check(a) => cli::check::run(a),
        Cmd::Inspect(a) => cli::inspect::run(a),
        Cmd::Run(a) => cli::run::run(a),
        Cmd::Compile(a) => cli::compile::run(a),
        Cmd::Demo(a) => cli::demo::run(a),
        Cmd::Bench(a) => cli::bench::run(a),
        Cmd::Zoo(c) => cli::zoo::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text is already in the
/// message (many error types print their source in their own message and return it as well).
fn message(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if s.is_empty() {
            s = c;
        } else if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s
}
