//! `dync bench MODEL [--vs OTHER.onnx] [--baseline ort|interp|literal|cranelift]... [--threads N]
//! [--batch N] [--iters N] [--warmup N] [--seed S] [--json] [--profile [--profile-svg PATH]]`:
//! latency of MODEL compiled by dync
//! (import, the pass pipeline, the Cranelift JIT) — median, p90 and min over `--iters` timed runs
//! after `--warmup` untimed ones, taken in [`ROUNDS`] rounds in turn with every baseline's and
//! `--vs`'s (see [`time_in_rounds`]) — its GFLOP/s (2 FLOPs per MAC of the compiled graph,
//! `Graph::macs`, at the median), and the speed-up over each baseline (baseline median / dync
//! median):
//! - `literal`: the same file compiled without the dynamic-conv recognition passes
//!   (`dync_opt::Options { literal: true }`), timed like dync;
//! - `cranelift`: the same graph compiled without the runtime's x86 micro-kernels (GEMM tiles
//!   run the module's Cranelift tile: the pure-Cranelift path, aarch64's), timed like dync;
//! - `interp`: dync's reference interpreter on the imported graph (no warm-up runs: it keeps no
//!   state between runs); with `--batch` on the literal pipeline's re-targeted graph, since the
//!   imported graph keeps the file's batch;
//! - `ort`: onnxruntime (CPUExecutionProvider, `--threads` intra-op threads) on the same file and
//!   the same inputs, through the Python bridge `examples/pytorch/ort_run.py --serve` (embedded
//!   in this binary, run by `${DYNC_VENV:-$HOME/.cache/dync/venv}/bin/python`), which stays up
//!   for the rounds and times blocks of runs on request.
//!
//! `--baseline` may repeat; without it every baseline runs, and one that cannot (no venv,
//! onnxruntime missing or failing on the file, the literal pipeline failing to re-target the
//! batch) is skipped with its reason (stderr, and `skipped` in JSON; `ort --vs` for OTHER's
//! onnxruntime run). A baseline named explicitly that cannot run is an error.
//! `--vs OTHER.onnx` benchmarks a second model (e.g. the static twin) with dync, and with
//! onnxruntime when `ort` is among the baselines, and reports MODEL's speed-up over it (OTHER's
//! median / MODEL's median); `--input-shape` applies to both files.
//! `--batch N` re-targets fixed-batch graphs through the pipeline (`Options::batch`); onnxruntime
//! gets the same batch-N inputs, which a file with a fixed batch of another size rejects.
//! `--threads N` (default: the CPUs) is the thread count of dync's JIT models (their run-time
//! context's pool) and onnxruntime's intra-op threads.
//! Inputs are seeded standard-normal tensors (`--seed`, the runtime's generator, as `dync run`).
//!
//! `--profile` runs MODEL `--iters` more times with the run-time context's kernel hook set, which
//! the generated entry point calls before and after every kernel: a per-kernel table (kernel
//! index, the ONNX node it came from, op, median ms, % of the kernels' total, GFLOP/s from the
//! node's MACs), and a horizontal bar chart of it as SVG (`--profile-svg`, default
//! `<MODEL>.profile.svg`). The times are measured, per kernel, inside the whole model's runs.
//!
//! `--json` prints one object instead of the table:
//! `{model, macs, batch, threads, dync_threads, iters, warmup, compile_s, median_ms, p90_ms,
//! min_ms, gflops, baselines: {NAME: {median_ms, p90_ms, min_ms, speedup[, version]}},
//! skipped: {NAME: reason}, vs: null | {model, macs, median_ms, p90_ms, min_ms, gflops,
//! speedup, macs_ratio, ort: null | {median_ms, p90_ms, min_ms, speedup}},
//! profile: null | {svg, kernels: [{kernel, node, op, macs, ms, percent, gflops}]}}`.
//!
//! Rejected: `--iters 0`, `--threads 0`, `--batch 0` (usage errors), models dync cannot compile
//! (the pipeline's or code generator's error, naming the node).

use super::common::{import_with_notes, npy_to_tensor, thousands, ModelArgs};
use anyhow::{bail, Context, Result};
use dync_codegen::JitModel;
use dync_ir::{DType, Graph, Tensor};
use dync_runtime::npy::{sanitize_name, write_npy, NpyArray, NpyDType};
use dync_runtime::rt::{random_array, SplitMix, Stats};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The onnxruntime bridge, embedded so that the binary runs it from anywhere.
const ORT_RUN_PY: &str = include_str!("../../../examples/pytorch/ort_run.py");
/// `ort_run.py`'s exit status when onnxruntime or numpy cannot be imported.
const ORT_RUN_NO_ORT: i32 = 3;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// onnxruntime on the same file (Python bridge).
    Ort,
    /// dync's reference interpreter.
    Interp,
    /// The same file compiled by dync without the dynamic-conv passes.
    Literal,
    /// The same graph compiled by dync without the x86 micro-kernels (pure Cranelift).
    Cranelift,
}

impl Baseline {
    const ALL: [Baseline; 4] = [
        Baseline::Cranelift,
        Baseline::Literal,
        Baseline::Interp,
        Baseline::Ort,
    ];

    fn name(self) -> &'static str {
        match self {
            Baseline::Ort => "ort",
            Baseline::Interp => "interp",
            Baseline::Literal => "literal",
            Baseline::Cranelift => "cranelift",
        }
    }
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not an integer >= 1")),
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A second model (e.g. the static twin), benchmarked the same way; reports MODEL's speed-up
    /// over it.
    #[arg(long, value_name = "OTHER.onnx")]
    pub vs: Option<PathBuf>,
    /// A baseline to compare with (repeatable; default: every one that can run).
    #[arg(long, value_enum)]
    pub baseline: Vec<Baseline>,
    /// Threads of dync's compiled models and of onnxruntime (default: the CPUs).
    #[arg(long, value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Re-target fixed-batch graphs to this batch size.
    #[arg(long, value_parser = at_least_one)]
    pub batch: Option<usize>,
    /// Timed runs per engine.
    #[arg(long, default_value = "20", value_parser = at_least_one)]
    pub iters: usize,
    /// Untimed runs before timing (compiled engines and onnxruntime).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Time every kernel of MODEL: a per-layer table and an SVG bar chart.
    #[arg(long)]
    pub profile: bool,
    /// Where `--profile` writes its chart (default: `<MODEL>.profile.svg`).
    #[arg(long, value_name = "PATH", requires = "profile")]
    pub profile_svg: Option<PathBuf>,
}

/// Latency of one engine on one model.
#[derive(Clone, Copy)]
struct Timing {
    median_ms: f64,
    p90_ms: f64,
    min_ms: f64,
}

impl Timing {
    fn of(times: &[Duration]) -> Result<Timing> {
        let s = Stats::of(times).context("no timed runs")?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Ok(Timing {
            median_ms: ms(s.median),
            p90_ms: ms(s.p90),
            min_ms: ms(s.min),
        })
    }

    fn json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("median_ms".into(), json!(self.median_ms));
        m.insert("p90_ms".into(), json!(self.p90_ms));
        m.insert("min_ms".into(), json!(self.min_ms));
        m
    }
}

/// The timed runs of every engine are taken in this many rounds, each engine running its share
/// of `--iters` in turn (dync, the baselines, then `--vs`'s engines): a slow spell of a shared
/// host then falls on all of them alike instead of on whichever ran at the time.
const ROUNDS: usize = 5;

/// A pause after each engine's block, so that its idle threads are asleep before the next
/// engine runs: onnxruntime's intra-op workers spin 40–50 ms after a run (measured on a 2-core
/// AMD EPYC VM: one core busy that long), and a shorter pause lets them take a core from the
/// first runs of dync's next block (dy-mobile at two threads: median 2.9–3.1 ms timed alone,
/// 3.3–5.6 ms with p90 7.7–8.9 ms in rounds with onnxruntime and a 20 ms pause).
const PAUSE: Duration = Duration::from_millis(100);

/// Something timed in rounds: `run(n)` runs it `n` times and returns each run's time.
struct Engine<'a> {
    /// The baseline's name, or `None` for a dync model (whose failure is an error).
    baseline: Option<&'static str>,
    /// Untimed runs before the first round.
    warmup: usize,
    /// One untimed run before each round's timed ones: the engines between two rounds of one
    /// push its weights and buffers out of the caches, and a first run that reloads them is
    /// not the steady state that `--warmup` asks to time.
    rewarm: bool,
    run: Box<dyn FnMut(usize) -> Result<Vec<Duration>, String> + 'a>,
    times: Vec<Duration>,
    failed: Option<String>,
}

impl<'a> Engine<'a> {
    fn new(
        baseline: Option<&'static str>,
        (warmup, rewarm): (usize, bool),
        run: impl FnMut(usize) -> Result<Vec<Duration>, String> + 'a,
    ) -> Engine<'a> {
        Engine {
            baseline,
            warmup,
            rewarm,
            run: Box::new(run),
            times: Vec::new(),
            failed: None,
        }
    }

    /// The timing of the runs taken, or why the engine stopped.
    fn timing(&self) -> Result<Timing, String> {
        match &self.failed {
            Some(why) => Err(why.clone()),
            None => Timing::of(&self.times).map_err(|e| format!("{e:#}")),
        }
    }
}

/// Warms every engine up, then takes `iters` timed runs of each in [`ROUNDS`] rounds; an engine
/// that fails stops there (its error kept).
fn time_in_rounds(engines: &mut [Engine], iters: usize) {
    for e in engines.iter_mut() {
        if e.warmup > 0 {
            if let Err(why) = (e.run)(e.warmup) {
                e.failed = Some(why);
            }
            std::thread::sleep(PAUSE);
        }
    }
    for r in 0..ROUNDS {
        let n = iters * (r + 1) / ROUNDS - iters * r / ROUNDS;
        if n == 0 {
            continue;
        }
        for e in engines.iter_mut().filter(|e| e.failed.is_none()) {
            let warm = if e.rewarm {
                (e.run)(1).map(drop)
            } else {
                Ok(())
            };
            match warm.and_then(|()| (e.run)(n)) {
                Ok(times) => e.times.extend(times),
                Err(why) => e.failed = Some(why),
            }
            std::thread::sleep(PAUSE);
        }
    }
}

/// `n` timed calls of `f`.
fn timed(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<Duration>, String> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f().map_err(|e| format!("{e:#}"))?;
            Ok(t.elapsed())
        })
        .collect()
}

/// GFLOP/s of `macs` multiply-accumulates done in `ms` milliseconds.
fn gflops(macs: u64, ms: f64) -> f64 {
    2.0 * macs as f64 / (ms * 1e6)
}

/// The random inputs of a graph's signature, as tensors (for dync) and .npy arrays (for
/// onnxruntime), keyed by input name.
struct Inputs {
    tensors: Vec<Tensor>,
    arrays: Vec<(String, NpyArray)>,
}

fn random_inputs(g: &Graph, seed: u64) -> Result<Inputs> {
    let mut rng = SplitMix(seed);
    let (mut tensors, mut arrays) = (Vec::new(), Vec::new());
    for (name, id) in &g.inputs {
        let ty = g.ty(*id);
        let dtype = match ty.dtype {
            DType::F32 => NpyDType::F32,
            DType::I64 => NpyDType::I64,
            DType::I32 => NpyDType::I32,
            DType::Bool => NpyDType::Bool,
        };
        let a = random_array(dtype, &ty.shape, &mut rng)
            .with_context(|| format!("input {name:?} of type {ty}"))?;
        tensors.push(npy_to_tensor(a.clone())?);
        arrays.push((name.clone(), a));
    }
    Ok(Inputs { tensors, arrays })
}

/// A model imported, optimized and compiled by dync.
struct Compiled {
    path: PathBuf,
    /// The imported graph, before any pass.
    imported: Graph,
    /// The optimized graph the JIT compiled.
    graph: Graph,
    jit: JitModel,
    compile: Duration,
}

/// How a model is compiled: the pipeline without the recognition passes (`literal`), code
/// without the micro-kernels (`no_ukernels`).
#[derive(Clone, Copy, Default)]
struct How {
    literal: bool,
    no_ukernels: bool,
}

fn compile(path: &Path, a: &Args, how: How, imported: Option<&Graph>) -> Result<Compiled> {
    let imported = match imported {
        Some(g) => g.clone(),
        None => {
            let m = dync_onnx::load_model(path, &Default::default())?;
            let opts = a.model.options()?;
            import_with_notes(&m, &opts)?.graph
        }
    };
    let t0 = Instant::now();
    let mut graph = imported.clone();
    dync_opt::optimize(
        &mut graph,
        &dync_opt::Options {
            literal: how.literal,
            batch: a.batch,
            ..Default::default()
        },
    )
    .with_context(|| format!("optimizing {}", path.display()))?;
    let opts = dync_codegen::CodegenOptions {
        no_ukernels: how.no_ukernels,
        ..Default::default()
    };
    let mut jit = JitModel::compile(&graph, &opts)
        .with_context(|| format!("compiling {}", path.display()))?;
    jit.set_threads(threads(a))
        .with_context(|| format!("starting {} threads", threads(a)))?;
    Ok(Compiled {
        path: path.to_path_buf(),
        imported,
        graph,
        jit,
        compile: t0.elapsed(),
    })
}

/// `--threads`, or the CPUs.
fn threads(a: &Args) -> usize {
    a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// An engine running the compiled model `c` on `inputs`.
fn jit_engine<'a>(
    baseline: Option<&'static str>,
    c: &'a Compiled,
    inputs: &'a Inputs,
    a: &Args,
) -> Engine<'a> {
    Engine::new(baseline, (a.warmup, a.warmup > 0), move |n| {
        timed(n, || {
            c.jit
                .run(&inputs.tensors)
                .with_context(|| format!("running {}", c.path.display()))?;
            Ok(())
        })
    })
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let base = std::env::temp_dir();
        for i in 0..100u32 {
            let p = base.join(format!("dync-bench-{}-{i}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(TempDir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", p.display())),
            }
        }
        bail!(
            "cannot create a temporary directory under {}",
            base.display()
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// onnxruntime through `ort_run.py`, or why it cannot run.
struct Ort {
    python: PathBuf,
    dir: TempDir,
    threads: usize,
}

impl Ort {
    /// The bridge, when the venv's Python exists (otherwise the reason it does not).
    fn new(threads: usize) -> Result<Ort, String> {
        let venv = match std::env::var_os("DYNC_VENV").filter(|v| !v.is_empty()) {
            Some(v) => PathBuf::from(v),
            None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                Some(h) => PathBuf::from(h).join(".cache/dync/venv"),
                None => return Err("neither DYNC_VENV nor HOME is set".into()),
            },
        };
        let python = venv.join("bin/python");
        if !python.is_file() {
            return Err(format!(
                "onnxruntime is not installed: no Python venv at {} (run scripts/setup-venv, or \
                 set DYNC_VENV to a venv with onnxruntime and numpy)",
                venv.display()
            ));
        }
        let dir = TempDir::new().map_err(|e| format!("{e:#}"))?;
        std::fs::write(dir.0.join("ort_run.py"), ORT_RUN_PY)
            .map_err(|e| format!("cannot write the onnxruntime bridge: {e}"))?;
        Ok(Ort {
            python,
            dir,
            threads,
        })
    }

    /// Starts onnxruntime on `model` and `inputs` (`ort_run.py --serve`: loaded, checked and
    /// warmed up when this returns); `tag` keeps the files of two models apart.
    fn serve(
        &self,
        model: &Path,
        inputs: &Inputs,
        tag: &str,
        a: &Args,
    ) -> Result<OrtServer, String> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(self.dir.0.join("ort_run.py")).arg(model);
        for (i, (name, arr)) in inputs.arrays.iter().enumerate() {
            let file = self
                .dir
                .0
                .join(format!("{tag}-{i}-{}.npy", sanitize_name(name)));
            write_npy(&file, arr).map_err(|e| format!("writing {}: {e}", file.display()))?;
            cmd.arg("--input").arg(format!("{name}={}", file.display()));
        }
        cmd.arg("--serve")
            .arg(format!("--warmup={}", a.warmup))
            .arg(format!("--threads={}", self.threads));
        // stderr into a file: a pipe nobody reads while the bridge runs could fill up.
        let err_path = self.dir.0.join(format!("{tag}.stderr"));
        let err = std::fs::File::create(&err_path)
            .map_err(|e| format!("cannot create {}: {e}", err_path.display()))?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.python.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the onnxruntime bridge has no pipes".into());
        };
        let mut server = OrtServer {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            err_path,
            model: model.to_path_buf(),
            version: String::new(),
        };
        let ready = server.reply()?;
        server.version = ready
            .get("ort_version")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        Ok(server)
    }
}

/// A running `ort_run.py --serve` of one model: blocks of timed runs on request.
struct OrtServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    err_path: PathBuf,
    model: PathBuf,
    version: String,
}

impl OrtServer {
    /// The next JSON line the bridge prints, or why there is none (its exit status and stderr).
    fn reply(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line)
                .map_err(|e| format!("ort_run.py printed {line:?}, not a JSON report: {e}")),
            Ok(_) => Err(self.exited()),
            Err(e) => Err(format!("reading from ort_run.py: {e}")),
        }
    }

    /// Why the bridge stopped: waits for it and reads its stderr.
    fn exited(&mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait();
        let stderr = std::fs::read_to_string(&self.err_path).unwrap_or_default();
        let stderr = stderr.trim();
        match status.map(|s| (s.code(), s)) {
            Ok((Some(ORT_RUN_NO_ORT), _)) => format!("onnxruntime is not installed: {stderr}"),
            Ok((_, status)) => format!(
                "onnxruntime failed on {} ({status}): {stderr}",
                self.model.display()
            ),
            Err(e) => format!("waiting for ort_run.py: {e}"),
        }
    }

    /// Times `n` runs.
    fn runs(&mut self, n: usize) -> Result<Vec<Duration>, String> {
        let sent = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{n}").and_then(|()| stdin.flush()).is_ok(),
            None => false,
        };
        if !sent {
            return Err(self.exited());
        }
        let reply = self.reply()?;
        let times: Vec<Duration> = reply
            .get("times_ms")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| Duration::from_secs_f64(ms / 1e3))
            .collect();
        if times.len() != n {
            return Err(format!("ort_run.py reported {reply} for {n} runs"));
        }
        Ok(times)
    }
}

impl Drop for OrtServer {
    fn drop(&mut self) {
        // The end of stdin ends the bridge.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Baselines that could not run: an error when baselines were named (`--baseline`), else a
/// note and an entry of the report.
struct Skipped {
    explicit: bool,
    list: Vec<(&'static str, String)>,
}

impl Skipped {
    fn add(&mut self, name: &'static str, why: String) -> Result<()> {
        if self.explicit {
            bail!("baseline {name}: {why}");
        }
        eprintln!("note: skipping baseline {name}: {why}");
        self.list.push((name, why));
        Ok(())
    }
}

/// The literal pipeline's model of `model`'s file, compiled on first use.
fn literal_of<'c>(
    slot: &'c mut Option<Compiled>,
    model: &Compiled,
    a: &Args,
) -> Result<&'c Compiled> {
    if slot.is_none() {
        let how = How {
            literal: true,
            ..Default::default()
        };
        *slot = Some(compile(&a.model.model, a, how, Some(&model.imported))?);
    }
    slot.as_ref().context("the literal model")
}

/// One baseline's result row.
struct Row {
    name: &'static str,
    timing: Timing,
    version: Option<String>,
}

/// The second model of `--vs`.
struct Vs {
    path: PathBuf,
    macs: u64,
    timing: Timing,
    ort: Option<Timing>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let explicit = !a.baseline.is_empty();
    let mut baselines: Vec<Baseline> = Vec::new();
    for b in if explicit {
        a.baseline.clone()
    } else {
        Baseline::ALL.to_vec()
    } {
        if !baselines.contains(&b) {
            baselines.push(b);
        }
    }
    let threads = threads(&a);

    let mut model = compile(&a.model.model, &a, How::default(), None)?;
    let inputs = random_inputs(&model.graph, a.seed)?;
    let macs = model.graph.macs();

    // Everything the engines run, built first: the baselines' models and onnxruntime bridges,
    // `--vs`'s model and bridge.
    let mut skipped = Skipped {
        explicit,
        list: Vec::new(),
    };
    let mut literal: Option<Compiled> = None;
    let mut cranelift: Option<Compiled> = None;
    let mut ort: Option<Ort> = None;
    let mut ort_main: Option<OrtServer> = None;
    let mut ready: Vec<Baseline> = Vec::new();
    let failed = |e: anyhow::Error| format!("{e:#}");
    for &b in &baselines {
        let result = match b {
            Baseline::Literal => literal_of(&mut literal, &model, &a)
                .map(|_| ())
                .map_err(failed),
            Baseline::Cranelift => {
                let how = How {
                    no_ukernels: true,
                    ..Default::default()
                };
                compile(&a.model.model, &a, how, Some(&model.imported))
                    .map(|c| cranelift = Some(c))
                    .map_err(failed)
            }
            // The imported graph keeps the file's batch; with --batch the literal pipeline
            // re-targets it.
            Baseline::Interp if a.batch.is_some() => literal_of(&mut literal, &model, &a)
                .map(|_| ())
                .map_err(failed),
            Baseline::Interp => Ok(()),
            Baseline::Ort => Ort::new(threads).and_then(|o| {
                ort_main = Some(o.serve(&a.model.model, &inputs, "model", &a)?);
                ort = Some(o);
                Ok(())
            }),
        };
        match result {
            Ok(()) => ready.push(b),
            Err(why) => skipped.add(b.name(), why)?,
        }
    }
    let other = match &a.vs {
        None => None,
        Some(path) => {
            let c = compile(path, &a, How::default(), None)?;
            let i = random_inputs(&c.graph, a.seed)?;
            Some((c, i))
        }
    };
    let mut ort_other = None;
    if let (Some(o), Some((_, other_inputs)), Some(path)) = (&ort, &other, &a.vs) {
        match o.serve(path, other_inputs, "vs", &a) {
            Ok(server) => ort_other = Some(server),
            Err(why) => skipped.add("ort --vs", why)?,
        }
    }
    let ort_version = ort_main.as_ref().map(|o| o.version.clone());

    // The engines, timed in rounds: dync, each baseline ready to run, `--vs`'s dync and
    // onnxruntime.
    let mut engines = vec![jit_engine(None, &model, &inputs, &a)];
    for &b in &ready {
        engines.push(match b {
            Baseline::Literal => match &literal {
                Some(c) => jit_engine(Some(b.name()), c, &inputs, &a),
                None => bail!("the literal model was not compiled"),
            },
            Baseline::Cranelift => match &cranelift {
                Some(c) => jit_engine(Some(b.name()), c, &inputs, &a),
                None => bail!("the pure-Cranelift model was not compiled"),
            },
            Baseline::Interp => {
                let g = match (&literal, a.batch) {
                    (Some(c), Some(_)) => &c.graph,
                    _ => &model.imported,
                };
                let (inputs, path) = (&inputs, &a.model.model);
                // No warm-up runs: the interpreter keeps no state between runs.
                Engine::new(Some(b.name()), (0, false), move |n| {
                    timed(n, || {
                        dync_interp::run(g, &inputs.tensors)
                            .with_context(|| format!("interpreting {}", path.display()))?;
                        Ok(())
                    })
                })
            }
            Baseline::Ort => match ort_main.take() {
                // The bridge ran the warm-up runs itself.
                Some(mut server) => {
                    Engine::new(Some(b.name()), (0, a.warmup > 0), move |n| server.runs(n))
                }
                None => bail!("the onnxruntime bridge was not started"),
            },
        });
    }
    if let Some((c, other_inputs)) = &other {
        engines.push(jit_engine(None, c, other_inputs, &a));
        if let Some(mut server) = ort_other.take() {
            let warm = (0, a.warmup > 0);
            engines.push(Engine::new(Some("ort --vs"), warm, move |n| server.runs(n)));
        }
    }
    time_in_rounds(&mut engines, a.iters);

    // The results: a dync model that failed is an error, a baseline that did is skipped.
    let mut timings = Vec::with_capacity(engines.len());
    for e in &engines {
        match (e.timing(), e.baseline) {
            (Ok(t), _) => timings.push(Some(t)),
            (Err(why), None) => bail!("{why}"),
            (Err(why), Some(name)) => {
                skipped.add(name, why)?;
                timings.push(None);
            }
        }
    }
    drop(engines);
    let main = timings[0].context("dync's timing")?;
    let rows: Vec<Row> = ready
        .iter()
        .zip(&timings[1..])
        .filter_map(|(b, t)| {
            t.map(|timing| Row {
                name: b.name(),
                timing,
                version: (*b == Baseline::Ort).then(|| ort_version.clone()).flatten(),
            })
        })
        .collect();
    let vs = match (&a.vs, &other) {
        (Some(path), Some((c, _))) => {
            let at = 1 + ready.len();
            Some(Vs {
                path: path.clone(),
                macs: c.graph.macs(),
                timing: timings[at].context("--vs's timing")?,
                ort: timings.get(at + 1).copied().flatten(),
            })
        }
        _ => None,
    };
    drop((literal, cranelift, other));

    let profile = if a.profile {
        let kernels = profile_kernels(&mut model, &inputs, &a)?;
        let svg = match &a.profile_svg {
            Some(p) => p.clone(),
            None => {
                let mut p = a.model.model.clone().into_os_string();
                p.push(".profile.svg");
                PathBuf::from(p)
            }
        };
        let title = format!(
            "{}: {} threads, batch {}, median of {} runs per kernel",
            a.model.model.display(),
            model.jit.threads(),
            batch_of(&model.graph, a.batch),
            a.iters
        );
        std::fs::write(&svg, profile_svg(&title, &kernels))
            .with_context(|| format!("cannot write {}", svg.display()))?;
        Some((kernels, svg))
    } else {
        None
    };

    let report = Report {
        a: &a,
        macs,
        batch: batch_of(&model.graph, a.batch),
        threads,
        dync_threads: model.jit.threads(),
        compile: model.compile,
        main,
        rows: &rows,
        skipped: &skipped.list,
        vs: vs.as_ref(),
        profile: profile.as_ref().map(|(k, p)| (k.as_slice(), p.as_path())),
    };
    if a.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--batch`, or the leading dim of the graph's first input (1 without one).
fn batch_of(g: &Graph, batch: Option<usize>) -> usize {
    batch.unwrap_or_else(|| {
        g.inputs
            .first()
            .and_then(|(_, id)| g.ty(*id).shape.first().copied())
            .unwrap_or(1)
    })
}

/// Everything measured, ready to print.
struct Report<'a> {
    a: &'a Args,
    macs: u64,
    batch: usize,
    threads: usize,
    dync_threads: usize,
    compile: Duration,
    main: Timing,
    rows: &'a [Row],
    skipped: &'a [(&'static str, String)],
    vs: Option<&'a Vs>,
    profile: Option<(&'a [KernelTime], &'a Path)>,
}

impl Report<'_> {
    fn speedup(&self, baseline_ms: f64) -> f64 {
        baseline_ms / self.main.median_ms
    }

    fn json(&self) -> Value {
        let mut baselines = Map::new();
        for r in self.rows {
            let mut m = r.timing.json();
            m.insert("speedup".into(), json!(self.speedup(r.timing.median_ms)));
            if let Some(v) = &r.version {
                m.insert("version".into(), json!(v));
            }
            baselines.insert(r.name.into(), Value::Object(m));
        }
        let skipped: Map<String, Value> = self
            .skipped
            .iter()
            .map(|(n, why)| (n.to_string(), json!(why)))
            .collect();
        let vs = self.vs.map(|v| {
            let mut m = v.timing.json();
            m.insert("model".into(), json!(v.path.display().to_string()));
            m.insert("macs".into(), json!(v.macs));
            m.insert("gflops".into(), json!(gflops(v.macs, v.timing.median_ms)));
            m.insert("speedup".into(), json!(self.speedup(v.timing.median_ms)));
            m.insert(
                "macs_ratio".into(),
                json!(v.macs as f64 / self.macs.max(1) as f64),
            );
            let ort = v.ort.map(|t| {
                let mut o = t.json();
                o.insert("speedup".into(), json!(self.speedup(t.median_ms)));
                Value::Object(o)
            });
            m.insert("ort".into(), ort.unwrap_or(Value::Null));
            Value::Object(m)
        });
        let mut m = self.main.json();
        m.insert(
            "model".into(),
            json!(self.a.model.model.display().to_string()),
        );
        m.insert("macs".into(), json!(self.macs));
        m.insert("batch".into(), json!(self.batch));
        m.insert("threads".into(), json!(self.threads));
        m.insert("dync_threads".into(), json!(self.dync_threads));
        m.insert("iters".into(), json!(self.a.iters));
        m.insert("warmup".into(), json!(self.a.warmup));
        m.insert("compile_s".into(), json!(self.compile.as_secs_f64()));
        m.insert(
            "gflops".into(),
            json!(gflops(self.macs, self.main.median_ms)),
        );
        m.insert("baselines".into(), Value::Object(baselines));
        m.insert("skipped".into(), Value::Object(skipped));
        m.insert("vs".into(), vs.unwrap_or(Value::Null));
        let profile = self.profile.map(|(kernels, svg)| {
            let rows: Vec<Value> = kernels
                .iter()
                .map(|k| {
                    json!({
                        "kernel": k.index,
                        "node": k.node,
                        "op": k.op,
                        "macs": k.macs,
                        "ms": k.ms,
                        "percent": k.percent,
                        "gflops": gflops(k.macs, k.ms),
                    })
                })
                .collect();
            json!({"svg": svg.display().to_string(), "kernels": rows})
        });
        m.insert("profile".into(), profile.unwrap_or(Value::Null));
        Value::Object(m)
    }

    fn table(&self) -> String {
        use std::fmt::Write;
        let a = self.a;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: batch {}, {} MACs, compiled in {:.2} s; {} timed runs after {} warm-up runs",
            a.model.model.display(),
            self.batch,
            thousands(self.macs),
            self.compile.as_secs_f64(),
            a.iters,
            a.warmup
        );
        let _ = writeln!(
            s,
            "{:<28} {:>10} {:>10} {:>10} {:>9} {:>9}",
            "engine", "median ms", "p90 ms", "min ms", "GFLOP/s", "speed-up"
        );
        let line = |s: &mut String, name: &str, t: &Timing, gf: Option<f64>, sp: Option<f64>| {
            let gf = gf.map_or("-".to_string(), |g| format!("{g:.2}"));
            let sp = sp.map_or("-".to_string(), |x| format!("{x:.2}x"));
            let _ = writeln!(
                s,
                "{:<28} {:>10.3} {:>10.3} {:>10.3} {:>9} {:>9}",
                name, t.median_ms, t.p90_ms, t.min_ms, gf, sp
            );
        };
        line(
            &mut s,
            &format!("dync (JIT, {} thr)", self.dync_threads),
            &self.main,
            Some(gflops(self.macs, self.main.median_ms)),
            None,
        );
        for r in self.rows {
            let name = match (r.name, &r.version) {
                ("ort", Some(v)) => format!("onnxruntime {v} ({} thr)", self.threads),
                (n, _) => n.to_string(),
            };
            line(
                &mut s,
                &name,
                &r.timing,
                None,
                Some(self.speedup(r.timing.median_ms)),
            );
        }
        for (n, why) in self.skipped {
            let _ = writeln!(s, "{n:<28} skipped: {why}");
        }
        if let Some(v) = self.vs {
            let _ = writeln!(
                s,
                "\nvs {}: {} MACs ({:.2}x MODEL's)",
                v.path.display(),
                thousands(v.macs),
                v.macs as f64 / self.macs.max(1) as f64
            );
            line(
                &mut s,
                "dync (JIT)",
                &v.timing,
                Some(gflops(v.macs, v.timing.median_ms)),
                Some(self.speedup(v.timing.median_ms)),
            );
            if let Some(t) = &v.ort {
                line(
                    &mut s,
                    &format!("onnxruntime ({} thr)", self.threads),
                    t,
                    None,
                    Some(self.speedup(t.median_ms)),
                );
            }
            let _ = writeln!(
                s,
                "(speed-up: MODEL's dync median against this model's median)"
            );
        }
        if let Some((kernels, svg)) = self.profile {
            let total: f64 = kernels.iter().map(|k| k.ms).sum();
            let _ = writeln!(
                s,
                "\nprofile: {} kernels, {total:.3} ms in kernels (median per kernel over {} runs); \
                 chart: {}",
                kernels.len(),
                a.iters,
                svg.display()
            );
            let ops: Vec<String> = by_op(kernels)
                .iter()
                .map(|(op, ms, pc)| format!("{op} {ms:.3} ms ({pc:.1}%)"))
                .collect();
            let _ = writeln!(s, "by op: {}", ops.join(", "));
            let _ = writeln!(
                s,
                "{:>6} {:<40} {:<16} {:>10} {:>7} {:>9}",
                "kernel", "ONNX node", "op", "ms", "%", "GFLOP/s"
            );
            for k in kernels {
                let _ = writeln!(
                    s,
                    "{:>6} {:<40} {:<16} {:>10.3} {:>7.2} {:>9}",
                    k.index,
                    k.node,
                    k.op,
                    k.ms,
                    k.percent,
                    if k.macs > 0 {
                        format!("{:.2}", gflops(k.macs, k.ms))
                    } else {
                        "-".into()
                    }
                );
            }
        }
        s
    }
}

/// One kernel's profile.
struct KernelTime {
    index: usize,
    /// The ONNX node it came from (`-` for nodes the passes made from none).
    node: String,
    op: &'static str,
    macs: u64,
    /// Median over the profiled runs.
    ms: f64,
    /// Share of the sum of all kernels' medians.
    percent: f64,
}

/// What the kernel hook records: per kernel, the start of its current run and its durations.
struct Profiler {
    start: Vec<Option<Instant>>,
    times: Vec<Vec<Duration>>,
}

/// The kernel hook: `hook_data` is the `Profiler` of [`profile_kernels`]. Never panics (it runs
/// inside generated code): unknown kernels and an END without a BEGIN are ignored.
unsafe extern "C" fn kernel_hook(ctx: *mut dync_runtime::ctx::RtCtx, kernel: u32, phase: u32) {
    let now = Instant::now();
    // SAFETY: the entry point passes the context `profile_kernels` set up, whose `hook_data`
    // points at a live `Profiler` used by nothing else while the model runs (runs are serial,
    // and the entry point calls the hook from its own thread only).
    let Some(p) =
        (unsafe { ctx.as_ref() }).and_then(|c| unsafe { c.hook_data.cast::<Profiler>().as_mut() })
    else {
        return;
    };
    let Ok(k) = usize::try_from(kernel) else {
        return;
    };
    let (Some(start), Some(times)) = (p.start.get_mut(k), p.times.get_mut(k)) else {
        return;
    };
    if phase == dync_runtime::ctx::HOOK_BEGIN {
        *start = Some(now);
    } else if let Some(t0) = start.take() {
        times.push(now - t0);
    }
}

/// Runs `c` `--iters` times with the kernel hook set and returns every kernel's median time,
/// named after its node.
fn profile_kernels(c: &mut Compiled, inputs: &Inputs, a: &Args) -> Result<Vec<KernelTime>> {
    let n = c.jit.emitted().kernels.len();
    let mut p = Profiler {
        start: vec![None; n],
        times: vec![Vec::with_capacity(a.iters); n],
    };
    // Warm-up runs first (other engines ran since this model's rounds), then the recorded ones.
    let run = |c: &Compiled| -> Result<()> {
        c.jit.run(&inputs.tensors)?;
        Ok(())
    };
    timed(a.warmup, || run(c)).map_err(anyhow::Error::msg)?;
    let ctx = c.jit.ctx_mut();
    ctx.kernel_hook = Some(kernel_hook);
    ctx.hook_data = (&mut p as *mut Profiler).cast();
    let result = timed(a.iters, || run(c));
    let ctx = c.jit.ctx_mut();
    ctx.kernel_hook = None;
    ctx.hook_data = std::ptr::null_mut();
    result.map_err(anyhow::Error::msg)?;
    let emitted = c.jit.emitted();
    let mut kernels = Vec::with_capacity(n);
    for (i, (nref, times)) in emitted.kernels.iter().zip(&p.times).enumerate() {
        let t = Timing::of(times).with_context(|| format!("kernel {i} ({nref}) was not timed"))?;
        let macs = emitted
            .plan
            .kernels
            .get(i)
            .map_or(0, |&id| c.graph.node_macs(id));
        kernels.push(KernelTime {
            index: i,
            node: nref.origin.clone().unwrap_or_else(|| "-".into()),
            op: nref.op,
            macs,
            ms: t.median_ms,
            percent: 0.0,
        });
    }
    let total: f64 = kernels.iter().map(|k| k.ms).sum();
    for k in &mut kernels {
        k.percent = if total > 0.0 {
            100.0 * k.ms / total
        } else {
            0.0
        };
    }
    Ok(kernels)
}

/// `s` with XML's special characters escaped.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every op's kernels' summed median ms and share, the most expensive first.
fn by_op(kernels: &[KernelTime]) -> Vec<(&'static str, f64, f64)> {
    let mut ops: Vec<(&'static str, f64, f64)> = Vec::new();
    for k in kernels {
        match ops.iter_mut().find(|(op, _, _)| *op == k.op) {
            Some(e) => {
                e.1 += k.ms;
                e.2 += k.percent;
            }
            None => ops.push((k.op, k.ms, k.percent)),
        }
    }
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    ops
}

/// A horizontal bar chart coloured by op: the ops' totals, then every kernel in execution order.
fn profile_svg(title: &str, kernels: &[KernelTime]) -> String {
    use std::fmt::Write;
    const ROW: usize = 16;
    const LABEL: usize = 430;
    const BAR: f64 = 520.0;
    const TOP: usize = 40;
    const PALETTE: [&str; 10] = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac",
    ];
    let ops = by_op(kernels);
    let colour =
        |op: &str| PALETTE[ops.iter().position(|&(o, _, _)| o == op).unwrap_or(0) % PALETTE.len()];
    let total: f64 = kernels.iter().map(|k| k.ms).sum();
    let width = LABEL + BAR as usize + 170;
    // Title, the ops' rows, a heading, the kernels' rows.
    let kernels_top = TOP + ROW * (ops.len() + 2);
    let height = kernels_top + ROW * (kernels.len() + 1);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11" xml:space="preserve">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="8" y="18" font-size="13" font-weight="bold">{}</text><text x="8" y="32">{} kernels, {total:.3} ms in kernels. By op (sum of the kernels' medians):</text>"#,
        xml(title),
        kernels.len()
    );
    let op_max = ops.first().map_or(0.0, |o| o.1);
    for (row, (op, ms, percent)) in ops.iter().enumerate() {
        let y = TOP + ROW * row;
        let w = if op_max > 0.0 { BAR * ms / op_max } else { 0.0 };
        let _ = writeln!(
            s,
            r#"<text x="8" y="{}">{}</text><rect x="{LABEL}" y="{}" width="{w:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}">{ms:.3} ms ({percent:.1}%)</text>"#,
            y + 12,
            xml(op),
            y + 2,
            ROW - 4,
            colour(op),
            LABEL as f64 + w + 4.0,
            y + 12,
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="8" y="{}" font-weight="bold">By kernel, in execution order (kernel, op, ONNX node):</text>"#,
        kernels_top - 4
    );
    let max = kernels.iter().map(|k| k.ms).fold(0.0, f64::max);
    for (row, k) in kernels.iter().enumerate() {
        let y = kernels_top + ROW * row;
        let w = if max > 0.0 { BAR * k.ms / max } else { 0.0 };
        let mut label = format!("{:>4} {} {}", k.index, k.op, k.node);
        if label.chars().count() > 66 {
            label = label.chars().take(65).collect::<String>() + "…";
        }
        let _ = writeln!(
            s,
            r#"<g><title>{}</title><text x="8" y="{}">{}</text><rect x="{LABEL}" y="{}" width="{w:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}">{:.3} ms ({:.1}%)</text></g>"#,
            xml(&format!(
                "kernel {}: {} from {:?}, {:.3} ms, {:.2}%",
                k.index, k.op, k.node, k.ms, k.percent
            )),
            y + 12,
            xml(&label),
            y + 2,
            ROW - 4,
            colour(k.op),
            LABEL as f64 + w + 4.0,
            y + 12,
            k.ms,
            k.percent
        );
    }
    s.push_str("</svg>\n");
    s
}
