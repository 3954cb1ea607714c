//! Shared helpers of dync's end-to-end tests: the Python venv, the real-export fixtures, the
//! onnxruntime bridge, the ONNX backend node-test data, `.npy` files, tolerance checks, the
//! release `dync` binary and its two compiled engines ([`run_engines`]: the JIT of `dync run` and
//! an executable from `dync compile`), and the one-test-per-zoo-network macro
//! ([`zoo_network_tests!`]).
//!
//! Contract:
//! - Python is never a reason to skip a test: a missing venv is built by `scripts/setup-venv`
//!   (once per test process), missing or stale real exports are made by
//!   `examples/pytorch/export_real.py` (under a cross-process lock on `<fixtures>/real.lock`),
//!   the ONNX node-test folders by `examples/pytorch/onnx_node_tests.py`.
//! - Locations: venv `${DYNC_VENV:-$HOME/.cache/dync/venv}`, fixtures
//!   `${DYNC_FIXTURES:-$HOME/.cache/dync/fixtures}`; `DYNC_REAL_QUICK=1` restricts
//!   [`real_exports`] to the script's `--quick` set (a developer shortcut; `scripts/test` always
//!   exports the full set first).
//! - Failures panic with a message naming the command or file and the cause: these helpers run
//!   only inside tests, where a panic is the failure report. The pure parts ([`load_manifest`],
//!   [`check_close`], [`check_same_top1`], [`sanitize_name`]) return `Result` and are unit-tested.
//! - Tensor files are C-order `.npy`; Fortran-order files are rejected.
//! - Every comparison of model outputs uses [`ATOL`] + [`RTOL`] elementwise and, for classifier
//!   outputs (`[B, K]` or `[B, K, 1, 1]`, K > 1), the same top-1 class per sample
//!   ([`check_outputs`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use npyz::WriterBuilder;
use serde::Deserialize;

/// Exit status of `export_real.py` when some exports failed and were recorded in the manifest
/// (the other entries are valid); see the script's docstring.
const EXPORT_FAILED_EXIT: i32 = 4;

/// The root of the dync repository (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    match tests_dir.parent() {
        Some(root) => root.to_path_buf(),
        None => panic!(
            "dync-tests: crate dir {} has no parent",
            tests_dir.display()
        ),
    }
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(".cache").join("dync"),
        _ => panic!("dync-tests: HOME is not set; set DYNC_VENV and DYNC_FIXTURES instead"),
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The venv directory: `$DYNC_VENV`, or `$HOME/.cache/dync/venv`.
pub fn venv_dir() -> PathBuf {
    env_path("DYNC_VENV").unwrap_or_else(|| cache_dir().join("venv"))
}

/// The fixture cache: `$DYNC_FIXTURES`, or `$HOME/.cache/dync/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    env_path("DYNC_FIXTURES").unwrap_or_else(|| cache_dir().join("fixtures"))
}

/// The venv's python. When the venv is missing or incomplete (no `.dync-complete` stamp, which
/// `scripts/setup-venv` writes after checking every import), runs `scripts/setup-venv` first;
/// at most once per process.
pub fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    unwrap_cached(PYTHON.get_or_init(|| {
        let venv = venv_dir();
        let python = venv.join("bin").join("python");
        if python.is_file() && venv.join(".dync-complete").is_file() {
            return Ok(python);
        }
        let script = repo_root().join("scripts").join("setup-venv");
        // Inherit stderr: installing torch takes minutes and pip's progress is the only sign.
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .env("DYNC_VENV", &venv)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        run(&mut cmd)?;
        if python.is_file() {
            Ok(python)
        } else {
            Err(format!(
                "{} succeeded but {} does not exist",
                script.display(),
                python.display()
            ))
        }
    }))
}

/// A once-per-process result: the value, or the recorded failure as a panic in every caller.
fn unwrap_cached(cached: &Result<PathBuf, String>) -> PathBuf {
    match cached {
        Ok(path) => path.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

/// Run a command; `Err` carries the command line, its status and the tail of its output.
fn run(cmd: &mut Command) -> Result<Output, String> {
    let output = cmd
        .output()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(failure_message(cmd, &output))
    }
}

fn failure_message(cmd: &Command, output: &Output) -> String {
    format!(
        "{cmd:?} failed ({}):\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        output.status,
        tail(&output.stdout),
        tail(&output.stderr)
    )
}

fn tail(bytes: &[u8]) -> String {
    const LINES: usize = 60;
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// The real-export fixtures (`<fixtures>/real`), made or refreshed by `export_real.py` (cheap
/// when up to date) under a cross-process lock; at most once per process. Exports that fail in
/// this torch version do not fail this call: they are entries with `error` set (see
/// [`RealExport`]), for the tests to report.
pub fn real_exports() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    unwrap_cached(DIR.get_or_init(|| {
        let python = venv_python();
        let fixtures = fixtures_dir();
        let dir = fixtures.join("real");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let lock_path = fixtures.join("real.lock");
        let lock = File::create(&lock_path)
            .map_err(|e| format!("cannot open lock {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        let mut cmd = Command::new(python);
        cmd.arg(repo_root().join("examples/pytorch/export_real.py"))
            .arg("--out")
            .arg(&dir)
            .stdin(Stdio::null());
        if std::env::var_os("DYNC_REAL_QUICK").is_some_and(|v| v == "1") {
            cmd.arg("--quick");
        }
        let output = cmd
            .output()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        match output.status.code() {
            Some(0) => {}
            Some(EXPORT_FAILED_EXIT) => eprintln!("{}", failure_message(&cmd, &output)),
            _ => return Err(failure_message(&cmd, &output)),
        }
        Ok(dir)
    }))
}

/// One entry of the real-export manifest, with every path made absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct RealExport {
    /// `<model>-<exporter>-b<batch>`, also the entry's directory name.
    pub name: String,
    /// torchvision/timm model name, e.g. `resnet18`.
    pub model: String,
    /// `legacy` (TorchScript, opset 17) or `dynamo`.
    pub exporter: String,
    pub batch: usize,
    /// `model.onnx` (empty when the export failed).
    pub path: PathBuf,
    /// (graph input name, `.npy` file), in graph order.
    pub inputs: Vec<(String, PathBuf)>,
    /// (graph output name, onnxruntime's `.npy` file), in graph order.
    pub outputs: Vec<(String, PathBuf)>,
    /// Op histogram (`domain::Op` for non-default domains).
    pub ops: BTreeMap<String, u64>,
    /// Opset per domain (`ai.onnx` for the default domain).
    pub opsets: BTreeMap<String, i64>,
    /// The exporter's error when this export failed; then there are no files.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    entries: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    name: String,
    model: String,
    exporter: String,
    batch: usize,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    inputs: Vec<RawFile>,
    #[serde(default)]
    outputs: Vec<RawFile>,
    #[serde(default)]
    ops: BTreeMap<String, u64>,
    #[serde(default)]
    opsets: BTreeMap<String, i64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct RawFile {
    name: String,
    /// Relative to the entry's directory.
    file: String,
}

/// Parse `<dir>/manifest.json` as written by `export_real.py`. A successful entry must name its
/// model file and at least one input and output.
pub fn load_manifest(dir: &Path) -> Result<Vec<RealExport>, String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let raw: RawManifest =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    raw.entries
        .into_iter()
        .map(|e| {
            let entry_dir = dir.join(&e.name);
            let files = |list: Vec<RawFile>| -> Vec<(String, PathBuf)> {
                list.into_iter()
                    .map(|f| (f.name, entry_dir.join(f.file)))
                    .collect()
            };
            let model_path = match (&e.error, &e.path) {
                (Some(_), _) => PathBuf::new(),
                (None, Some(p)) if !e.inputs.is_empty() && !e.outputs.is_empty() => dir.join(p),
                (None, _) => {
                    return Err(format!(
                        "{}: entry {} has no error but lacks its path, inputs or outputs",
                        path.display(),
                        e.name
                    ))
                }
            };
            Ok(RealExport {
                path: model_path,
                inputs: files(e.inputs),
                outputs: files(e.outputs),
                name: e.name,
                model: e.model,
                exporter: e.exporter,
                batch: e.batch,
                ops: e.ops,
                opsets: e.opsets,
                error: e.error,
            })
        })
        .collect()
}

/// [`real_exports`] parsed: every entry of its manifest, failed ones included.
pub fn real_export_manifest() -> Vec<RealExport> {
    let dir = real_exports();
    load_manifest(&dir).unwrap_or_else(|e| panic!("{e}"))
}

/// The successful real export of `model` by `exporter` at `batch` ([`real_export_manifest`]);
/// panics when the manifest has none or the export failed.
pub fn real_export(model: &str, exporter: &str, batch: usize) -> RealExport {
    let entries = real_export_manifest();
    let Some(e) = entries
        .into_iter()
        .find(|e| e.model == model && e.exporter == exporter && e.batch == batch)
    else {
        panic!("no export of {model} ({exporter}, batch {batch}) in the manifest");
    };
    if let Some(err) = &e.error {
        panic!("{}: the export failed: {err}", e.name);
    }
    e
}

/// A temporary directory `dync-test-*`, deleted when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dync-test-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

/// onnxruntime outputs written into a temporary directory, deleted when this is dropped.
#[derive(Debug)]
pub struct OrtOutputs {
    /// (graph output name, `.npy` file), in graph order.
    pub outputs: Vec<(String, PathBuf)>,
    _dir: tempfile::TempDir,
}

/// Run `model` in onnxruntime (CPU) through `examples/pytorch/ort_run.py`; the outputs live in
/// a temporary directory owned by the result.
pub fn ort_run(model: &Path, inputs: &[(String, PathBuf)]) -> OrtOutputs {
    let dir = tempfile::Builder::new()
        .prefix("dync-ort-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let outputs = ort_run_into(model, inputs, dir.path());
    OrtOutputs { outputs, _dir: dir }
}

/// Like [`ort_run`], writing `<sanitized output>.npy` files into `dir`.
pub fn ort_run_into(
    model: &Path,
    inputs: &[(String, PathBuf)],
    dir: &Path,
) -> Vec<(String, PathBuf)> {
    #[derive(Deserialize)]
    struct Report {
        outputs: Vec<ReportFile>,
    }
    #[derive(Deserialize)]
    struct ReportFile {
        name: String,
        file: PathBuf,
    }
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo_root().join("examples/pytorch/ort_run.py"))
        .arg(model)
        .arg("--output-dir")
        .arg(dir)
        .arg("--json")
        .stdin(Stdio::null());
    for (name, file) in inputs {
        let mut spec = std::ffi::OsString::from(format!("{name}="));
        spec.push(file);
        cmd.arg("--input").arg(spec);
    }
    let output = run(&mut cmd).unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let report: Report = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{cmd:?}: unexpected output {stdout:?}: {e}"));
    report
        .outputs
        .into_iter()
        .map(|f| (f.name, f.file))
        .collect()
}

/// The ONNX backend node tests of the venv's `onnx` package: one folder per test with
/// `model.onnx` and `test_data_set_*/{input,output}_*.pb`. The PyPI wheels ship only the test
/// definitions, so `examples/pytorch/onnx_node_tests.py` generates the folders (deterministically,
/// once per onnx version) into `<fixtures>/onnx-node/node`; at most once per process.
pub fn onnx_node_test_dir() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    unwrap_cached(DIR.get_or_init(|| {
        let mut cmd = Command::new(venv_python());
        cmd.arg(repo_root().join("examples/pytorch/onnx_node_tests.py"))
            .arg("--out")
            .arg(fixtures_dir().join("onnx-node"))
            .stdin(Stdio::null());
        let output = run(&mut cmd)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(format!("{cmd:?} printed {stdout:?}, not a directory"))
        }
    }))
}

/// Replace characters outside `[A-Za-z0-9._-]` by `_`: tensor name to file stem, the rule of
/// `dync run`, `ort_run.py` and `export_real.py`.
pub fn sanitize_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Read a C-order `.npy` file of element type `T`: (shape, data).
pub fn read_npy<T: npyz::Deserialize>(path: &Path) -> (Vec<usize>, Vec<T>) {
    let fail = |msg: String| -> ! { panic!("{}: {msg}", path.display()) };
    let file = File::open(path).unwrap_or_else(|e| fail(format!("cannot open: {e}")));
    let npy = npyz::NpyFile::new(BufReader::new(file)).unwrap_or_else(|e| fail(e.to_string()));
    if npy.order() != npyz::Order::C {
        fail("Fortran-order arrays are not supported".into());
    }
    let shape = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or_else(|_| fail(format!("dimension {d} too large"))))
        .collect();
    let dtype = npy.dtype();
    let data = npy.into_vec::<T>().unwrap_or_else(|e| {
        fail(format!(
            "cannot read as {}: {e} (file dtype {dtype:?})",
            std::any::type_name::<T>()
        ))
    });
    (shape, data)
}

/// Read a float32 `.npy` file: (shape, data).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    read_npy::<f32>(path)
}

/// Write `data` (C order) with `shape` as a `.npy` file.
pub fn write_npy<T: npyz::AutoSerialize>(path: &Path, shape: &[usize], data: &[T]) {
    let fail = |msg: String| -> ! { panic!("{}: {msg}", path.display()) };
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(data.len()) {
        fail(format!(
            "shape {shape:?} does not hold {} elements",
            data.len()
        ));
    }
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let file = File::create(path).unwrap_or_else(|e| fail(format!("cannot create: {e}")));
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .unwrap_or_else(|e| fail(e.to_string()));
    writer.extend(data).unwrap_or_else(|e| fail(e.to_string()));
    writer.finish().unwrap_or_else(|e| fail(e.to_string()));
}

/// Elementwise `|actual - expected| <= atol + rtol * |expected|` (numpy's `allclose`), with NaN
/// equal to NaN and infinities equal only to themselves. `Err` describes the mismatches: their
/// count, the worst element relative to its tolerance (flat C-order index) and the largest
/// absolute difference.
pub fn check_close(actual: &[f32], expected: &[f32], atol: f32, rtol: f32) -> Result<(), String> {
    if actual.len() != expected.len() {
        return Err(format!(
            "{} elements, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    let mut bad = 0usize;
    // (index, score) of the worst element: |diff| / tolerance, infinite for NaN or inf mismatches.
    let mut worst: Option<(usize, f32)> = None;
    let mut max_diff: Option<(usize, f32)> = None;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        if a == e || (a.is_nan() && e.is_nan()) {
            continue;
        }
        let diff = (a - e).abs();
        let tol = atol + rtol * e.abs();
        // Unequal non-finite values never match (an infinite tolerance would accept them).
        if a.is_finite() && e.is_finite() && diff <= tol {
            continue;
        }
        bad += 1;
        let score = if diff.is_finite() && tol > 0.0 {
            diff / tol
        } else {
            f32::INFINITY
        };
        if worst.is_none_or(|(_, s)| score > s) {
            worst = Some((i, score));
        }
        let diff_key = if diff.is_nan() { f32::INFINITY } else { diff };
        if max_diff.is_none_or(|(_, d)| diff_key > d) {
            max_diff = Some((i, diff_key));
        }
    }
    match (worst, max_diff) {
        (Some((w, score)), Some((m, _))) => Err(format!(
            "{bad} of {} elements differ beyond atol {atol:e} + rtol {rtol:e}·|expected|; \
             worst at index {w}: actual {}, expected {}, |diff| {:e} = {score:.3}× its tolerance; \
             largest |diff| at index {m}: actual {}, expected {}, |diff| {:e}",
            actual.len(),
            actual[w],
            expected[w],
            (actual[w] - expected[w]).abs(),
            actual[m],
            expected[m],
            (actual[m] - expected[m]).abs(),
        )),
        _ => Ok(()),
    }
}

/// Panic unless [`check_close`] holds; the message starts with `what`.
#[track_caller]
pub fn assert_close(actual: &[f32], expected: &[f32], atol: f32, rtol: f32, what: &str) {
    if let Err(msg) = check_close(actual, expected, atol, rtol) {
        panic!("{what}: {msg}");
    }
}

/// Per row (the last dimension is the class axis), the index of the largest value; the first
/// on ties, NaN counts as largest. `Err` when `data` does not have `shape`'s element count or
/// the class axis is empty.
pub fn top1(shape: &[usize], data: &[f32]) -> Result<Vec<usize>, String> {
    let classes = match shape.last() {
        Some(&c) if c > 0 => c,
        _ => return Err(format!("shape {shape:?} has no non-empty class axis")),
    };
    if shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) != Some(data.len()) {
        return Err(format!(
            "shape {shape:?} does not hold {} elements",
            data.len()
        ));
    }
    Ok(data
        .chunks_exact(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, row[0]), |best, (i, &v)| {
                    if v.total_cmp(&best.1).is_gt() && !best.1.is_nan() {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect())
}

/// Same top-1 class per row. A different class is accepted only as a tie within tolerance:
/// `expected` at the actual top-1 is within `atol + rtol * |max|` of expected's maximum (random
/// weights can produce near-ties that float rounding legitimately flips).
pub fn check_same_top1(
    actual: &[f32],
    expected: &[f32],
    shape: &[usize],
    atol: f32,
    rtol: f32,
) -> Result<(), String> {
    let a = top1(shape, actual).map_err(|e| format!("actual: {e}"))?;
    let e = top1(shape, expected).map_err(|e| format!("expected: {e}"))?;
    let classes = shape.last().copied().unwrap_or(1);
    let mut wrong = Vec::new();
    for (row, (&ai, &ei)) in a.iter().zip(&e).enumerate() {
        let base = row * classes;
        let best = expected[base + ei];
        let near_tie = (best - expected[base + ai]).abs() <= atol + rtol * best.abs();
        if ai != ei && !near_tie {
            wrong.push(format!(
                "row {row}: class {ai} (expected value {}) instead of {ei} ({best})",
                expected[base + ai]
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "top-1 differs in {} of {} rows: {}",
            wrong.len(),
            a.len(),
            wrong.join("; ")
        ))
    }
}

/// Panic unless [`check_same_top1`] holds; the message starts with `what`.
#[track_caller]
pub fn assert_same_top1(
    actual: &[f32],
    expected: &[f32],
    shape: &[usize],
    atol: f32,
    rtol: f32,
    what: &str,
) {
    if let Err(msg) = check_same_top1(actual, expected, shape, atol, rtol) {
        panic!("{what}: {msg}");
    }
}

/// Absolute tolerance of every output comparison.
pub const ATOL: f32 = 1e-4;
/// Relative tolerance of every output comparison.
pub const RTOL: f32 = 1e-3;

/// A named f32 tensor in C order: a model input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads (name, `.npy` file) pairs as f32 tensors, in order.
pub fn read_named(files: &[(String, PathBuf)]) -> Vec<Named> {
    files
        .iter()
        .map(|(name, file)| {
            let (shape, data) = read_npy_f32(file);
            Named {
                name: name.clone(),
                shape,
                data,
            }
        })
        .collect()
}

/// The f32 inputs of a graph whose inputs are `names` (in graph order), each read from its file
/// in `files` (any order); panics naming `what` when one has no file.
pub fn read_inputs<'a>(
    names: impl IntoIterator<Item = &'a str>,
    files: &[(String, PathBuf)],
    what: &str,
) -> Vec<Named> {
    names
        .into_iter()
        .map(|name| {
            let Some((_, file)) = files.iter().find(|(n, _)| n == name) else {
                panic!("{what}: no input file for {name:?}");
            };
            read_named(&[(name.to_string(), file.clone())]).remove(0)
        })
        .collect()
}

/// `[rows, classes]` when `shape` is a classifier output: `[B, K]` or `[B, K, 1, 1]`, K > 1.
fn classifier_rows(shape: &[usize]) -> Option<[usize; 2]> {
    match *shape {
        [b, k] | [b, k, 1, 1] if k > 1 => Some([b, k]),
        _ => None,
    }
}

/// `actual` against `expected` (both in graph output order): the same count, names and shapes,
/// values within [`ATOL`] + [`RTOL`] ([`check_close`]), and for classifier outputs the same top-1
/// per sample ([`check_same_top1`]). `Err` names the first failing output.
pub fn check_outputs(actual: &[Named], expected: &[Named]) -> Result<(), String> {
    if actual.len() != expected.len() {
        return Err(format!(
            "{} outputs, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    for (a, e) in actual.iter().zip(expected) {
        let fail = |msg: String| format!("output {:?}: {msg}", e.name);
        if a.name != e.name {
            return Err(fail(format!("named {:?}", a.name)));
        }
        if a.shape != e.shape {
            return Err(fail(format!("shape {:?}, expected {:?}", a.shape, e.shape)));
        }
        check_close(&a.data, &e.data, ATOL, RTOL).map_err(fail)?;
        if let Some(rows) = classifier_rows(&e.shape) {
            check_same_top1(&a.data, &e.data, &rows, ATOL, RTOL).map_err(fail)?;
        }
    }
    Ok(())
}

/// Panic unless [`check_outputs`] holds; the message starts with `what`.
#[track_caller]
pub fn assert_outputs(actual: &[Named], expected: &[Named], what: &str) {
    if let Err(msg) = check_outputs(actual, expected) {
        panic!("{what}: {msg}");
    }
}

/// `inputs` as interpreter tensors, in order.
pub fn tensors(inputs: &[Named]) -> Vec<dync_ir::Tensor> {
    inputs
        .iter()
        .map(|t| {
            dync_ir::Tensor::from_f32(t.shape.clone(), t.data.clone())
                .unwrap_or_else(|e| panic!("input {:?}: {e}", t.name))
        })
        .collect()
}

/// The reference interpreter on `g` with `inputs` (in graph input order): its outputs, named as
/// the graph's outputs; panics naming `what` on an error or a non-f32 output.
pub fn interp_outputs(g: &dync_ir::Graph, inputs: &[Named], what: &str) -> Vec<Named> {
    let out = dync_interp::run(g, &tensors(inputs)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(out.len(), g.outputs.len(), "{what}: output count");
    g.outputs
        .iter()
        .zip(out)
        .map(|((name, _), t)| Named {
            name: name.clone(),
            shape: t.shape().to_vec(),
            data: t
                .as_f32()
                .unwrap_or_else(|| panic!("{what}: output {name:?} is not f32"))
                .to_vec(),
        })
        .collect()
}

/// The release `dync` binary, next to `libdync_runtime.a`. Cargo does not build a dependency's
/// binaries for tests, so this runs `cargo build --release -p dync -p dync-runtime` with the
/// cargo that runs the tests (a no-op when up to date; release because end-to-end runs are too
/// slow in debug builds); at most once per process.
pub fn dync_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    unwrap_cached(BIN.get_or_init(|| {
        let root = repo_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--release", "-p", "dync", "-p", "dync-runtime"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !status.success() {
            return Err(format!("{cmd:?} failed: {status}"));
        }
        let release = env_path("CARGO_TARGET_DIR")
            .unwrap_or_else(|| root.join("target"))
            .join("release");
        let bin = release.join("dync");
        for f in [&bin, &release.join("libdync_runtime.a")] {
            if !f.is_file() {
                return Err(format!("{} missing after {cmd:?}", f.display()));
            }
        }
        Ok(bin)
    }))
}

/// The outputs named `names` that a dync engine wrote into `dir` (`<sanitized name>.npy`).
pub fn read_outputs(dir: &Path, names: &[String]) -> Vec<Named> {
    let files: Vec<(String, PathBuf)> = names
        .iter()
        .map(|n| (n.clone(), dir.join(format!("{}.npy", sanitize_name(n)))))
        .collect();
    read_named(&files)
}

/// dync's compiled engines on `model`: `dync run` (the JIT, after the pass pipeline) and an
/// executable compiled by `dync compile` (one compile), each fed `inputs` ((graph input name,
/// `.npy` file)) and with `input_shapes` (`NAME=DIMS` for `--input-shape`), writing into `dir`.
/// Returns ("JIT" | "AOT", the outputs named `outputs`, in that order). The compile's wall time
/// and the executable's size go to stderr.
pub fn run_engines(
    model: &Path,
    inputs: &[(String, PathBuf)],
    input_shapes: &[String],
    outputs: &[String],
    dir: &Path,
) -> [(&'static str, Vec<Named>); 2] {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let add_inputs = |cmd: &mut Command| {
        for (name, file) in inputs {
            let mut spec = std::ffi::OsString::from(format!("{name}="));
            spec.push(file);
            cmd.arg("--input").arg(spec);
        }
    };
    let add_shapes = |cmd: &mut Command| {
        for s in input_shapes {
            cmd.arg("--input-shape").arg(s);
        }
    };
    let (jit, aot) = (
        dir.join(format!("{stem}-jit")),
        dir.join(format!("{stem}-aot")),
    );
    let mut cmd = Command::new(dync_bin());
    cmd.arg("run").arg(model).arg("--output-dir").arg(&jit);
    add_inputs(&mut cmd);
    add_shapes(&mut cmd);
    run(cmd.stdin(Stdio::null())).unwrap_or_else(|e| panic!("{e}"));

    let exe = dir.join(format!("{stem}.exe"));
    let mut cmd = Command::new(dync_bin());
    cmd.arg("compile").arg(model).arg("-o").arg(&exe);
    add_shapes(&mut cmd);
    let t = Instant::now();
    run(cmd.stdin(Stdio::null())).unwrap_or_else(|e| panic!("{e}"));
    let size = std::fs::metadata(&exe).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{stem}: compiled in {:.2} s, executable {size} bytes",
        t.elapsed().as_secs_f64()
    );
    let mut cmd = Command::new(&exe);
    cmd.arg("--output-dir").arg(&aot);
    add_inputs(&mut cmd);
    run(cmd.stdin(Stdio::null())).unwrap_or_else(|e| panic!("{e}"));
    // The executable is large (its weights); the outputs are what the caller needs.
    let _ = std::fs::remove_file(&exe);
    [
        ("JIT", read_outputs(&jit, outputs)),
        ("AOT", read_outputs(&aot, outputs)),
    ]
}

/// Checks `model` through both compiled engines ([`run_engines`]) against the reference
/// interpreter's outputs and onnxruntime's ([`assert_outputs`]); `what` names the case.
pub fn assert_engines_match(
    model: &Path,
    inputs: &[(String, PathBuf)],
    input_shapes: &[String],
    interp: &[Named],
    ort: &[Named],
    dir: &Path,
    what: &str,
) {
    let names: Vec<String> = interp.iter().map(|t| t.name.clone()).collect();
    for (engine, got) in run_engines(model, inputs, input_shapes, &names, dir) {
        assert_outputs(&got, interp, &format!("{what}: {engine} vs interpreter"));
        assert_outputs(&got, ort, &format!("{what}: {engine} vs onnxruntime"));
    }
}

/// One `#[test]` per zoo network, each calling `$check(name)` with the network's name, and
/// `every_network_is_covered`, which fails when `dync::zoo::networks()` has a network not
/// listed here. The calling crate must depend on `dync`.
#[macro_export]
macro_rules! zoo_network_tests {
    ($check:path) => {
        $crate::zoo_network_tests! {
            @each $check;
            dy_mobile: "dy-mobile";
            mobilenetv2: "mobilenetv2";
            dy_shuffle: "dy-shuffle";
            shufflenetv2: "shufflenetv2";
            dy_resnet18: "dy-resnet18";
            resnet18: "resnet18";
            dy_resnet50: "dy-resnet50";
            resnet50: "resnet50";
            dy_mobilenetv3_small: "dy-mobilenetv3-small";
            mobilenetv3_small: "mobilenetv3-small";
            dy_mobilenetv3_large: "dy-mobilenetv3-large";
            mobilenetv3_large: "mobilenetv3-large";
            dy_fcn_resnet50: "dy-fcn-resnet50";
            fcn_resnet50: "fcn-resnet50";
        }
    };
    (@each $check:path; $($test:ident: $name:literal;)*) => {
        $(
            #[test]
            fn $test() {
                $check($name);
            }
        )*

        /// Every zoo network has a test above.
        #[test]
        fn every_network_is_covered() {
            let covered = [$($name),*];
            for n in dync::zoo::networks() {
                assert!(covered.contains(&n.name), "zoo network {} has no test here", n.name);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_replaces_only_disallowed_characters() {
        assert_eq!(sanitize_name("input.1"), "input.1");
        assert_eq!(sanitize_name("a/b:c d-e_f"), "a_b_c_d-e_f");
        assert_eq!(sanitize_name("é"), "_");
    }

    #[test]
    fn npy_round_trip_keeps_shape_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy(&path, &[2, 3, 4], &data);
        assert_eq!(read_npy_f32(&path), (vec![2, 3, 4], data));
        let ints = [7i64, -1];
        write_npy(&path, &[2], &ints);
        assert_eq!(read_npy::<i64>(&path), (vec![2], ints.to_vec()));
        write_npy::<f32>(&path, &[0, 5], &[]);
        assert_eq!(read_npy_f32(&path), (vec![0, 5], vec![]));
    }

    #[test]
    #[should_panic(expected = "does not hold 3 elements")]
    fn write_npy_rejects_wrong_shape() {
        let dir = tempfile::tempdir().unwrap();
        write_npy(&dir.path().join("x.npy"), &[2, 2], &[1.0f32, 2.0, 3.0]);
    }

    #[test]
    #[should_panic(expected = "cannot read as f32")]
    fn read_npy_rejects_other_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        write_npy(&path, &[1], &[1.0f64]);
        read_npy_f32(&path);
    }

    #[test]
    fn close_accepts_within_tolerance_and_special_values() {
        let e = [1.0, -2.0, 1000.0, f32::NAN, f32::INFINITY, 0.0];
        let a = [1.0 + 1e-5, -2.0, 1000.5, f32::NAN, f32::INFINITY, -1e-5];
        assert_eq!(check_close(&a, &e, 1e-4, 1e-3), Ok(()));
    }

    #[test]
    fn close_reports_worst_element_and_count() {
        let e = [0.0, 100.0, 1.0, 5.0];
        // index 1 has the largest |diff| (2) but index 2 is worst relative to its tolerance.
        let a = [0.0, 102.0, 1.5, 5.0];
        let msg = check_close(&a, &e, 0.01, 0.01).unwrap_err();
        assert!(msg.starts_with("2 of 4 elements differ"), "{msg}");
        assert!(
            msg.contains("worst at index 2: actual 1.5, expected 1"),
            "{msg}"
        );
        assert!(
            msg.contains("largest |diff| at index 1: actual 102"),
            "{msg}"
        );
    }

    #[test]
    fn close_rejects_nan_inf_and_length_mismatch() {
        assert!(check_close(&[f32::NAN], &[1.0], 1.0, 1.0).is_err());
        assert!(check_close(&[1.0], &[f32::NAN], 1.0, 1.0).is_err());
        assert!(check_close(&[f32::NEG_INFINITY], &[f32::INFINITY], 1.0, 1.0).is_err());
        assert!(check_close(&[1.0], &[1.0, 2.0], 1.0, 1.0)
            .unwrap_err()
            .contains("1 elements, expected 2"));
    }

    #[test]
    #[should_panic(expected = "logits: 1 of 1 elements differ")]
    fn assert_close_panics_with_what() {
        assert_close(&[2.0], &[1.0], 0.0, 0.0, "logits");
    }

    #[test]
    fn top1_per_row() {
        let data = [0.0, 3.0, 1.0, 5.0, -1.0, 5.0];
        assert_eq!(top1(&[2, 3], &data), Ok(vec![1, 0]));
        assert_eq!(top1(&[3], &[f32::NAN, 9.0, 1.0]), Ok(vec![0]));
        assert!(top1(&[2, 2], &data).is_err());
        assert!(top1(&[2, 0], &[]).is_err());
    }

    #[test]
    fn same_top1_allows_only_near_ties() {
        let expected = [1.0, 2.0, 2.00001, 0.0];
        let tie = [1.0, 2.0001, 2.0, 0.0];
        assert_eq!(
            check_same_top1(&tie, &expected, &[1, 4], 1e-4, 1e-3),
            Ok(())
        );
        let wrong = [3.0, 2.0, 2.0, 0.0];
        let msg = check_same_top1(&wrong, &expected, &[1, 4], 1e-4, 1e-3).unwrap_err();
        assert!(msg.contains("row 0: class 0"), "{msg}");
    }

    #[test]
    fn manifest_resolves_paths_and_keeps_failures() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"generator": "export_real.py", "entries": [
            {"name": "m-legacy-b1", "model": "m", "path": "m-legacy-b1/model.onnx",
             "exporter": "legacy", "batch": 1,
             "inputs": [{"name": "input.1", "file": "inputs/input.1.npy", "shape": [1, 3]}],
             "outputs": [{"name": "a:b", "file": "ort/a_b.npy", "shape": [1], "dtype": "float32"}],
             "ops": {"Conv": 2}, "opsets": {"ai.onnx": 17}, "error": null, "versions": {}},
            {"name": "m-dynamo-b8", "model": "m", "exporter": "dynamo", "batch": 8,
             "error": "RuntimeError: boom"}]}"#;
        std::fs::write(dir.path().join("manifest.json"), json).unwrap();
        let entries = load_manifest(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        let ok = &entries[0];
        assert_eq!(ok.path, dir.path().join("m-legacy-b1/model.onnx"));
        assert_eq!(
            ok.inputs,
            vec![(
                "input.1".to_string(),
                dir.path().join("m-legacy-b1/inputs/input.1.npy")
            )]
        );
        assert_eq!(ok.outputs[0].0, "a:b");
        assert_eq!(ok.ops.get("Conv"), Some(&2));
        assert_eq!(ok.opsets.get("ai.onnx"), Some(&17));
        assert_eq!(entries[1].error.as_deref(), Some("RuntimeError: boom"));
        assert!(entries[1].inputs.is_empty());
    }

    #[test]
    fn manifest_rejects_incomplete_successful_entry() {
        let dir = tempfile::tempdir().unwrap();
        let json =
            r#"{"entries": [{"name": "x", "model": "x", "exporter": "legacy", "batch": 1}]}"#;
        std::fs::write(dir.path().join("manifest.json"), json).unwrap();
        assert!(load_manifest(dir.path())
            .unwrap_err()
            .contains("entry x has no error"));
        assert!(load_manifest(&dir.path().join("missing"))
            .unwrap_err()
            .contains("cannot read"));
    }
    fn named(name: &str, shape: &[usize], data: &[f32]) -> Named {
        Named {
            name: name.into(),
            shape: shape.to_vec(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn outputs_compare_names_shapes_values_and_top1() {
        let e = [named("logits", &[1, 3], &[0.0, 1.0, 0.5])];
        assert_eq!(check_outputs(&e, &e), Ok(()));
        let shifted = [named("logits", &[1, 3], &[0.0, 1.0 + 5e-4, 0.5])];
        assert_eq!(check_outputs(&shifted, &e), Ok(()));
        let far = [named("logits", &[1, 3], &[0.0, 1.1, 0.5])];
        assert!(check_outputs(&far, &e)
            .unwrap_err()
            .starts_with("output \"logits\": 1 of 3"));
        let renamed = [named("x", &[1, 3], &[0.0, 1.0, 0.5])];
        assert!(check_outputs(&renamed, &e)
            .unwrap_err()
            .contains("named \"x\""));
        let reshaped = [named("logits", &[3, 1], &[0.0, 1.0, 0.5])];
        assert!(check_outputs(&reshaped, &e)
            .unwrap_err()
            .contains("shape [3, 1]"));
        assert!(check_outputs(&[], &e).unwrap_err().contains("0 outputs"));
    }

    #[test]
    fn top1_applies_to_classifier_shapes_only() {
        // Each element within its tolerance, yet the top class flips beyond a tie.
        let e = [named("p", &[1, 2, 1, 1], &[1.0, 1.0019])];
        let a = [named("p", &[1, 2, 1, 1], &[1.00105, 1.0009])];
        assert_eq!(check_close(&a[0].data, &e[0].data, ATOL, RTOL), Ok(()));
        assert!(check_outputs(&a, &e).unwrap_err().contains("top-1"));
        // The same values as a [1, 1, 1, 2] map are no classifier output: no top-1 check.
        let (e4, a4) = (
            [named("p", &[1, 1, 1, 2], &e[0].data)],
            [named("p", &[1, 1, 1, 2], &a[0].data)],
        );
        assert_eq!(check_outputs(&a4, &e4), Ok(()));
        assert_eq!(classifier_rows(&[8, 1000]), Some([8, 1000]));
        assert_eq!(classifier_rows(&[2, 19, 8, 8]), None);
        assert_eq!(classifier_rows(&[4, 1]), None);
    }

    #[test]
    fn inputs_are_read_in_graph_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
        write_npy(&a, &[2], &[1.0f32, 2.0]);
        write_npy(&b, &[1], &[3.0f32]);
        let files = [("b".to_string(), b), ("a".to_string(), a)];
        let got = read_inputs(["a", "b"], &files, "m");
        assert_eq!(
            got,
            vec![named("a", &[2], &[1.0, 2.0]), named("b", &[1], &[3.0])]
        );
    }

    #[test]
    #[should_panic(expected = "m: no input file for \"c\"")]
    fn missing_input_file_is_named() {
        read_inputs(["c"], &[], "m");
    }
}
