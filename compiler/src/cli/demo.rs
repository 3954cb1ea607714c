//! `dync demo`: the README's main job, with nothing to download. Exports a zoo dynamic model and
//! its static twin as ONNX into `--out`, compiles both to native executables there exactly as
//! `dync compile MODEL -o OUT` does ([`super::compile::build`]: import, passes, Cranelift,
//! linked with the runtime library found next to the `dync` executable), runs each executable
//! on a seeded random input (`<model>-input/*.npy`) writing `.npy` outputs (`<model>-out/`), and
//! requires them to match the reference interpreter on the original imported graph (atol 1e-4 +
//! rtol 1e-3 elementwise, and the same top-1 class for classifier outputs, a different class
//! only at a tie within that tolerance). Then runs each with `--bench --iters N --json` and
//! prints a side-by-side table: MACs, dynamic convs, compile time, executable size, max error,
//! median and min latency, and the speed-up over the static twin.
//!
//! Rejects a static network as `--model`, a malformed `--size`, and models whose inputs are not
//! f32; any mismatch or failing executable is an error (non-zero exit).

use super::common::{close, npy_to_tensor, thousands, PassArgs};
use super::compile::{build, Emit};
use anyhow::{bail, Context, Result};
use dync::zoo;
use dync_codegen::link::find_runtime_lib;
use dync_codegen::object::c_name;
use dync_ir::{DType, Op, Tensor};
use dync_runtime::npy::{read_npy, sanitize_name, write_npy, NpyDType};
use dync_runtime::rt::{random_array, SplitMix};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// The dynamic network of the zoo (its static twin is compared with it).
    #[arg(long, default_value = "dy-mobile")]
    pub model: String,
    /// Timed runs per model (the executable's `--bench --iters`).
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Threads of each executable (`--threads`).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Input size, HxW.
    #[arg(long, default_value = "224x224")]
    pub size: String,
    /// Seed of the random input.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the ONNX files, executables, inputs and outputs.
    #[arg(long, default_value = "target/dync-demo")]
    pub out: PathBuf,
}

struct Row {
    name: String,
    macs: u64,
    dynamic_convs: usize,
    compile: Duration,
    exe_bytes: u64,
    max_err: f32,
    median_ms: f64,
    min_ms: f64,
}

/// Runs `cmd`; its output, or an error with its stderr when it fails.
fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(out)
}

/// The index of the largest value of `row` (the first on ties).
fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// Checks the executable's output `got` against the interpreter's `want`: elementwise within
/// [`close`], and for a classifier output (`[B, K]` or `[B, K, 1, 1]`, K > 1) the same top-1
/// class per sample unless the two classes tie within the tolerance. The largest |difference|.
fn compare(what: &str, got: &[f32], want: &Tensor) -> Result<f32> {
    let Some(w) = want.as_f32() else {
        bail!("{what}: the interpreter's output is not f32")
    };
    if got.len() != w.len() {
        bail!(
            "{what}: {} elements, the interpreter has {}",
            got.len(),
            w.len()
        );
    }
    let mut max_err = 0f32;
    for (i, (&g, &x)) in got.iter().zip(w).enumerate() {
        if !close(g, x) {
            bail!("{what}: element {i} is {g}, the interpreter's {x} (atol 1e-4 + rtol 1e-3)");
        }
        max_err = max_err.max((g - x).abs());
    }
    if let [_, k] | [_, k, 1, 1] = want.shape() {
        if *k > 1 {
            for (b, (gr, wr)) in got.chunks(*k).zip(w.chunks(*k)).enumerate() {
                let (gi, wi) = (argmax(gr), argmax(wr));
                if gi != wi && !close(wr[gi], wr[wi]) {
                    bail!("{what}: sample {b} is class {gi}, the interpreter's {wi}");
                }
            }
        }
    }
    Ok(max_err)
}

fn measure(name: &str, opts: &zoo::Options, a: &Args, runtime: &Path) -> Result<Row> {
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

    // Compile exactly as `dync compile`: default import, passes, codegen and link options.
    let t0 = Instant::now();
    let m = dync_onnx::load_model(&path, &Default::default())?;
    let original = dync_onnx::import::import(&m, &Default::default())?.graph;
    let mut g = original.clone();
    PassArgs::default().optimize(&mut g, false)?;
    let exe = a.out.join(name);
    let built = build(
        &g,
        &Default::default(),
        &c_name(name),
        Emit::Exe,
        Some(runtime),
        &exe,
    )
    .with_context(|| format!("compiling {}", path.display()))?;
    let compile = t0.elapsed();
    let exe_bytes = std::fs::metadata(&exe)
        .with_context(|| format!("cannot stat {}", exe.display()))?
        .len();
    println!(
        "compiled {} ({} bytes, {} kernels) in {:.2} s",
        exe.display(),
        thousands(exe_bytes),
        built.object.kernels,
        compile.as_secs_f64()
    );
    let dynamic_convs = g
        .node_ids()
        .filter(|&n| matches!(g.node(n).op, Op::DynConv(_)))
        .count();

    // The seeded input, as files for the executable and tensors for the interpreter.
    let in_dir = a.out.join(format!("{name}-input"));
    std::fs::create_dir_all(&in_dir)
        .with_context(|| format!("cannot create {}", in_dir.display()))?;
    let mut rng = SplitMix(a.seed);
    let mut cmd = Command::new(&exe);
    let mut inputs = Vec::new();
    for (input, id) in &original.inputs {
        let ty = original.ty(*id);
        if ty.dtype != DType::F32 {
            bail!("{name}: input {input:?} is {:?}, not f32", ty.dtype);
        }
        let arr = random_array(NpyDType::F32, &ty.shape, &mut rng)?;
        let file = in_dir.join(format!("{}.npy", sanitize_name(input)));
        write_npy(&file, &arr)?;
        cmd.arg("--input")
            .arg(format!("{input}={}", file.display()));
        inputs.push(npy_to_tensor(arr)?);
    }
    let out_dir = a.out.join(format!("{name}-out"));
    run_ok(
        cmd.arg("--output-dir")
            .arg(&out_dir)
            .arg("--threads")
            .arg(a.threads.to_string()),
    )?;
    let want = dync_interp::run(&original, &inputs)?;
    let mut max_err = 0f32;
    for ((output, _), w) in original.outputs.iter().zip(&want) {
        let file = out_dir.join(format!("{}.npy", sanitize_name(output)));
        let got = npy_to_tensor(read_npy(&file, u64::MAX)?)?;
        if got.shape() != w.shape() {
            bail!(
                "{}: shape {:?}, the interpreter's {:?}",
                file.display(),
                got.shape(),
                w.shape()
            );
        }
        let Some(got) = got.as_f32() else {
            bail!("{}: not f32", file.display())
        };
        let what = format!("{name} output {output:?}");
        max_err = max_err.max(compare(&what, got, w)?);
    }
    println!(
        "{name}: the executable's outputs ({}) match the interpreter's (max |err| {max_err:.2e})",
        out_dir.display()
    );

    let bench = run_ok(
        Command::new(&exe)
            .args(["--bench", "--json", "--iters"])
            .arg(a.iters.max(1).to_string())
            .arg("--threads")
            .arg(a.threads.to_string()),
    )?;
    let stdout = String::from_utf8_lossy(&bench.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| {
        format!(
            "{}: unexpected --bench --json output {line:?}",
            exe.display()
        )
    })?;
    let ms = |key: &str| {
        v[key]
            .as_f64()
            .with_context(|| format!("{}: no {key} in {line:?}", exe.display()))
    };
    Ok(Row {
        name: name.to_string(),
        macs: g.macs(),
        dynamic_convs,
        compile,
        exe_bytes,
        max_err,
        median_ms: ms("median_ms")?,
        min_ms: ms("min_ms")?,
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
    if a.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let (height, width) = zoo::parse_size(&a.size)?;
    let opts = zoo::Options {
        height,
        width,
        ..Default::default()
    };
    // Before any work: the executables need the runtime library.
    let runtime = find_runtime_lib()?;
    let rows = [
        measure(net.name, &opts, &a, &runtime)?,
        measure(net.twin, &opts, &a, &runtime)?,
    ];
    let base = rows[1].median_ms;
    println!();
    println!(
        "{:<22} {:>15} {:>9} {:>10} {:>9} {:>10} {:>10} {:>8} {:>8}",
        "model",
        "MACs",
        "dyn convs",
        "compile s",
        "exe MB",
        "max |err|",
        "median ms",
        "min ms",
        "speed-up"
    );
    for r in &rows {
        println!(
            "{:<22} {:>15} {:>9} {:>10.2} {:>9.1} {:>10.2e} {:>10.2} {:>8.2} {:>7.2}x",
            r.name,
            thousands(r.macs),
            r.dynamic_convs,
            r.compile.as_secs_f64(),
            r.exe_bytes as f64 / 1e6,
            r.max_err,
            r.median_ms,
            r.min_ms,
            base / r.median_ms
        );
    }
    let (dy, st) = (&rows[0], &rows[1]);
    println!(
        "\n{} vs {}: {:.2}x fewer MACs, {:.2}x the speed (median latency, {} thread{}, native \
         executables); both match the reference interpreter (atol 1e-4 + rtol 1e-3, same top-1)",
        dy.name,
        st.name,
        st.macs as f64 / dy.macs.max(1) as f64,
        base / dy.median_ms,
        a.threads,
        if a.threads == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
