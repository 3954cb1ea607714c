//! `dync zoo` (placeholder until implemented).

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List the networks.
    List,
}

pub fn run(_c: Cmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
