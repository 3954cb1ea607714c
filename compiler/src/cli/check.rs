//! `dync check MODEL`: exit 0 when every node is supported; otherwise list every unsupported op
//! or attribute at once (node name and op type each) and exit 1.

use super::common::ModelArgs;
use anyhow::Result;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let m = a.model.load()?;
    let unsupported = dync_onnx::import::check(&m, &a.model.options()?)?;
    let path = a.model.model.display();
    if unsupported.is_empty() {
        // A model may be supported op by op and still be malformed: import it fully.
        super::common::import_with_notes(&m, &a.model.options()?)?;
        println!(
            "{path}: ok: every node is supported ({} nodes)",
            m.graph.node.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{path}: {} unsupported:", unsupported.len());
    for u in &unsupported {
        println!("  {u}");
    }
    Ok(ExitCode::FAILURE)
}
