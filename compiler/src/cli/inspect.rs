//! `dync inspect MODEL [--json] [--print-ir]`: the graph's inputs and outputs, the op histogram
//! and parameter count as written, MACs per layer and in total — `macs_onnx` as the file is
//! written, `macs` as dync runs it (after the passes, mixing included), the number of recognized
//! dynamic convolutions — or, with `--print-ir`, the IR text.

use super::common::{import_with_notes, thousands, ModelArgs, PassArgs};
use anyhow::Result;
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Print the IR text of the compiled graph (after the passes).
    #[arg(long)]
    pub print_ir: bool,
    #[command(flatten)]
    pub passes: PassArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let m = a.model.load()?;
    let mut imp = import_with_notes(&m, &a.model.options()?)?;
    let pm = a.passes.optimize(&mut imp.graph, false)?;
    let g = &imp.graph;
    let dynamic_convs = g
        .node_ids()
        .filter(|&n| matches!(g.node(n).op, dync_ir::Op::DynConv(_)))
        .count();
    if a.print_ir {
        print!("{}", dync_ir::print::print(g));
        return Ok(ExitCode::SUCCESS);
    }
    let values = |list: &[(String, dync_ir::NodeId)]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|(name, id)| {
                let t = g.ty(*id);
                json!({"name": name, "dtype": t.dtype.name(), "shape": t.shape})
            })
            .collect()
    };
    let macs = g.macs();
    if a.json {
        let layers: Vec<_> = imp
            .node_macs
            .iter()
            .map(|l| json!({"node": l.node, "op_type": l.op_type, "macs": l.macs}))
            .collect();
        let out = json!({
            "model": a.model.model.display().to_string(),
            "opset": imp.opset,
            "inputs": values(&g.inputs),
            "outputs": values(&g.outputs),
            "ops": imp.onnx_ops,
            "params": imp.params,
            "macs_onnx": imp.macs_onnx,
            "macs": macs,
            "layers": layers,
            "dynamic_convs": dynamic_convs,
            "remarks": pm.cx.remarks.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        });
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("model:   {} (opset {})", a.model.model.display(), imp.opset);
    for (kind, list) in [("input: ", &g.inputs), ("output:", &g.outputs)] {
        for (name, id) in list {
            println!("{kind}  {name:?} {}", g.ty(*id));
        }
    }
    println!("params:  {}", thousands(imp.params));
    println!(
        "MACs:    {} as written, {} as compiled",
        thousands(imp.macs_onnx),
        thousands(macs)
    );
    println!("ops as written:");
    let mut ops: Vec<_> = imp.onnx_ops.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (op, n) in ops {
        println!("  {op:<24} {n:>6}");
    }
    println!("layers (MACs as written):");
    let width = imp
        .node_macs
        .iter()
        .map(|l| l.node.len())
        .max()
        .unwrap_or(4)
        .min(60);
    for l in &imp.node_macs {
        println!(
            "  {:<width$}  {:<10} {:>16}",
            l.node,
            l.op_type,
            thousands(l.macs)
        );
    }
    Ok(ExitCode::SUCCESS)
}
