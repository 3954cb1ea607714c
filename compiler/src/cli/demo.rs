//! `dync demo`: the README's main job, with nothing to download. Exports a zoo dynamic model and
//! its static twin as ONNX, compiles both (import, passes, Cranelift JIT), checks each against
//! the reference interpreter on the original graph, and prints their latency side by side.

use super::common::{close, thousands, PassArgs};
use anyhow::{bail, Context, Result};
use dync::zoo;
use dync_ir::{Op, Tensor};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// The dynamic network of the zoo (its static twin is compared with it).
    #[arg(long, default_value = "dy-mobile")]
    pub model: String,
    /// Timed runs per model (after one warm-up run).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Input size, HxW.
    #[arg(long, default_value = "224x224")]
    pub size: String,
    /// Where to write the exported ONNX files.
    #[arg(long, default_value = "target/dync-demo")]
    pub out: PathBuf,
}

struct Row {
    name: String,
    macs: u64,
    dynamic_convs: usize,
    compile: Duration,
    max_err: f32,
    median: Duration,
    min: Duration,
}

fn measure(name: &str, opts: &zoo::Options, a: &Args) -> Result<Row> {
    let bytes = zoo::export(name, opts)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let path = a.out.join(format!("{name}.onnx"));
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "exported {} ({} bytes)",
        path.display(),
        thousands(bytes.len() as u64)
    );

    let m = dync_onnx::load_model(&path, &Default::default())?;
    let original = dync_onnx::import::import(&m, &Default::default())?.graph;
    let mut g = original.clone();
    let t0 = Instant::now();
    PassArgs::default().optimize(&mut g, false)?;
    let jit = dync_codegen::JitModel::compile(&g, &Default::default())?;
    let compile = t0.elapsed();
    let dynamic_convs = g
        .node_ids()
        .filter(|&n| matches!(g.node(n).op, Op::DynConv(_)))
        .count();

    let inputs: Vec<Tensor> = original
        .inputs
        .iter()
        .map(|(_, id)| {
            let ty = original.ty(*id);
            let n = ty.numel()?;
            // A fixed, smooth input: deterministic without a random generator.
            let v = (0..n)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
                .collect();
            Ok(Tensor::from_f32(ty.shape.clone(), v)?)
        })
        .collect::<Result<_>>()?;
    let want = dync_interp::run(&original, &inputs)?;
    let got = jit.run(&inputs)?;
    let mut max_err = 0f32;
    for (w, g) in want.iter().zip(&got) {
        let (Some(w), Some(g)) = (w.as_f32(), g.as_f32()) else {
            bail!("{name}: non-f32 output")
        };
        for (&x, &y) in w.iter().zip(g) {
            if !close(y, x) {
                bail!("{name}: compiled output {y} differs from the interpreter's {x}");
            }
            max_err = max_err.max((x - y).abs());
        }
    }
    let mut times = Vec::with_capacity(a.iters);
    for _ in 0..a.iters.max(1) {
        let t = Instant::now();
        jit.run(&inputs)?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(Row {
        name: name.to_string(),
        macs: g.macs(),
        dynamic_convs,
        compile,
        max_err,
        median: times[times.len() / 2],
        min: times[0],
    })
}

pub fn run(a: Args) -> Result<ExitCode> {
    let net = zoo::find(&a.model)?;
    if !net.dynamic {
        bail!(
            "{} is a static network; name a dynamic one (its twin is {})",
            net.name,
            net.twin
        );
    }
    let (height, width) = zoo::parse_size(&a.size)?;
    let opts = zoo::Options {
        height,
        width,
        ..Default::default()
    };
    let rows = [measure(net.name, &opts, &a)?, measure(net.twin, &opts, &a)?];
    println!();
    println!(
        "{:<22} {:>15} {:>9} {:>10} {:>12} {:>11} {:>9}",
        "model", "MACs", "dyn convs", "compile s", "max |err|", "median ms", "min ms"
    );
    for r in &rows {
        println!(
            "{:<22} {:>15} {:>9} {:>10.2} {:>12.2e} {:>11.2} {:>9.2}",
            r.name,
            thousands(r.macs),
            r.dynamic_convs,
            r.compile.as_secs_f64(),
            r.max_err,
            r.median.as_secs_f64() * 1e3,
            r.min.as_secs_f64() * 1e3
        );
    }
    let (dy, st) = (&rows[0], &rows[1]);
    println!(
        "\n{} vs {}: {:.2}x fewer MACs, {:.2}x the speed (median latency, 1 thread, JIT); \
         both match the reference interpreter (atol 1e-4 + rtol 1e-3)",
        dy.name,
        st.name,
        st.macs as f64 / dy.macs.max(1) as f64,
        st.median.as_secs_f64() / dy.median.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
