//! `dync zoo list` prints the registry (each network, its twin, the paper's numbers);
//! `dync zoo export NAME -o FILE [--batch N|dynamic] [--form mix|train]
//! [--exporter legacy|dynamo] [--seed S] [--size HxW] [--mixing einsum|matmul|mulsum]`
//! writes one network as ONNX. Option values are parsed by `dync::zoo`, which rejects what
//! cannot be exported (e.g. a dynamic batch for the mix form of a dynamic network).

use anyhow::Context;
use dync::zoo::{self, Batch, Exporter, Form, Mixing, Options};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List the networks with their static twins and the paper's numbers.
    List,
    /// Write one network as ONNX.
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The network (see `dync zoo list`).
    pub name: String,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Batch size, or `dynamic` (train form or static networks only).
    #[arg(long, default_value = "1", value_parser = parse::<Batch>)]
    pub batch: Batch,
    /// Export form of dynamic convs: `mix` (kernel mixing, inference) or `train` (DyNet Eq. 2).
    #[arg(long, default_value = "mix", value_parser = parse::<Form>)]
    pub form: Form,
    /// Exporter style: `legacy` (TorchScript, opset 17) or `dynamo` (opset 18).
    #[arg(long, default_value = "legacy", value_parser = parse::<Exporter>)]
    pub exporter: Exporter,
    /// Seed of the random weights.
    #[arg(long, default_value_t = zoo::DEFAULT_SEED)]
    pub seed: u64,
    /// Input image size, HxW.
    #[arg(long, default_value = "224x224", value_parser = zoo::parse_size)]
    pub size: (usize, usize),
    /// Mixing op of the mix form (default: the network's choice for the exporter style).
    #[arg(long, value_parser = parse::<Mixing>)]
    pub mixing: Option<Mixing>,
}

fn parse<T: std::str::FromStr<Err = zoo::ZooError>>(s: &str) -> Result<T, zoo::ZooError> {
    s.parse()
}

pub fn run(c: Cmd) -> anyhow::Result<ExitCode> {
    match c {
        Cmd::List => {
            print!("{}", list());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Export(a) => {
            let options = Options {
                batch: a.batch,
                form: a.form,
                exporter: a.exporter,
                seed: a.seed,
                height: a.size.0,
                width: a.size.1,
                mixing: a.mixing,
            };
            let built =
                zoo::build(&a.name, &options).with_context(|| format!("exporting `{}`", a.name))?;
            let bytes = prost::Message::encode_to_vec(&built.model);
            std::fs::write(&a.output, &bytes)
                .with_context(|| format!("writing {}", a.output.display()))?;
            eprintln!(
                "wrote {} ({} bytes, {} dynamic convs, seed {})",
                a.output.display(),
                bytes.len(),
                built.dynamic_convs,
                a.seed
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list() -> String {
    let mut s = format!(
        "{:<22} {:<8} {:<22} {:>12} {:>9}  {}\n",
        "name", "kind", "twin", "paper MMACs", "ratio", "summary"
    );
    for n in zoo::networks() {
        let macs = n.paper_mmacs.map_or("-".to_string(), |m| format!("{m}"));
        let ratio = n.paper_ratio.map_or("-".to_string(), |r| format!("{r:.3}"));
        let kind = if n.dynamic { "dynamic" } else { "static" };
        s.push_str(&format!(
            "{:<22} {:<8} {:<22} {:>12} {:>9}  {}\n",
            n.name, kind, n.twin, macs, ratio, n.summary
        ));
    }
    s
}
