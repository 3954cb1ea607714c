//! Differential tests: random small CNNs (`random_cnn`: convs with groups, dilations, pads and
//! strides, activations, pools, BatchNormalization, residual adds, dynamic convolutions),
//! written as ONNX, give the same outputs in every engine within atol 1e-4 + rtol 1e-3:
//!
//! - property test (proptest, shrinking towards the smallest network): the JIT in checked mode
//!   (every load and store bounds-checked) on the optimized graph against the interpreter on the
//!   imported graph;
//! - a fixed sample of seeded networks: the interpreter and the checked JIT against onnxruntime
//!   (one Python process for the whole sample); the largest |difference| is printed;
//! - a few networks compiled ahead of time (`dync compile --checked`), run as executables.
//!
//! Case counts are bounded so that the file runs in about a minute in a release build.

mod aot_common;
mod random_cnn;

use aot_common::{compile, read_f32, run_ok};
use dync_codegen::{CodegenOptions, JitModel};
use dync_ir::{Graph, Op, Tensor};
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model_bytes, Limits};
use dync_runtime::npy::{write_npy, NpyArray, NpyData};
use dync_runtime::rt::SplitMix;
use dync_tests::{check_close, venv_python};
use proptest::prelude::*;
use random_cnn::{Choose, Model, Stream};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-3;

/// Choices drawn from a seeded generator (the fixed samples).
struct Seeded(SplitMix);

impl Choose for Seeded {
    fn pick(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.0.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

fn seeded_model(seed: u64) -> Model {
    random_cnn::build(&mut Seeded(SplitMix(seed)))
}

fn describe(m: &Model) -> String {
    m.layers.join("; ")
}

fn import_model(m: &Model) -> Graph {
    let what = describe(m);
    let loaded = load_model_bytes(&m.bytes, None, &Limits::default())
        .unwrap_or_else(|e| panic!("{what}: load: {e}"));
    let g = import(&loaded, &ImportOptions::default())
        .unwrap_or_else(|e| panic!("{what}: import: {e}"))
        .graph;
    if let Err(e) = dync_ir::verify(&g) {
        panic!("{what}: {}", dync_ir::print_with_errors(&g, &e));
    }
    g
}

fn input(m: &Model) -> Tensor {
    Tensor::from_f32(m.input, random_cnn::input_values(m)).unwrap_or_else(|e| panic!("{e}"))
}

fn f32s(t: &Tensor, what: &str) -> Vec<f32> {
    t.as_f32()
        .unwrap_or_else(|| panic!("{what}: output is not f32"))
        .to_vec()
}

/// Outputs of one network.
struct Run {
    /// The interpreter on the imported graph.
    interp: Vec<f32>,
    /// The checked JIT on the optimized graph.
    jit: Vec<f32>,
    /// `dyn_conv` ops in the optimized graph (the recognizers found them).
    dyn_convs: usize,
}

fn interp_and_jit(m: &Model) -> Run {
    let what = describe(m);
    let g0 = import_model(m);
    let x = [input(m)];
    let want = dync_interp::run(&g0, &x).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let mut g = g0;
    dync_opt::optimize(&mut g, &dync_opt::Options::default())
        .unwrap_or_else(|e| panic!("{what}: optimize: {e}"));
    if let Err(e) = dync_ir::verify(&g) {
        panic!(
            "{what}: after optimize: {}",
            dync_ir::print_with_errors(&g, &e)
        );
    }
    let opts = CodegenOptions {
        checked: true,
        ..Default::default()
    };
    let got = JitModel::compile(&g, &opts)
        .and_then(|j| j.run(&x))
        .unwrap_or_else(|e| panic!("{what}: jit: {e}"));
    assert_eq!(got[0].shape(), m.output, "{what}: jit output shape");
    assert_eq!(
        want[0].shape(),
        m.output,
        "{what}: interpreter output shape"
    );
    Run {
        interp: f32s(&want[0], &what),
        jit: f32s(&got[0], &what),
        dyn_convs: g
            .node_ids()
            .filter(|&n| matches!(g.node(n).op, Op::DynConv(_)))
            .count(),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn checked_jit_matches_interpreter(choices in prop::collection::vec(any::<u32>(), 0..64)) {
        let m = random_cnn::build(&mut Stream { values: &choices, next: 0 });
        let r = interp_and_jit(&m);
        if let Err(e) = check_close(&r.jit, &r.interp, ATOL, RTOL) {
            return Err(TestCaseError::fail(format!("{}: jit vs interpreter: {e}", describe(&m))));
        }
    }
}

fn write_input(dir: &Path, m: &Model, stem: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{stem}.x.npy"));
    let arr = NpyArray {
        shape: m.input.to_vec(),
        data: NpyData::F32(random_cnn::input_values(m)),
    };
    write_npy(&path, &arr).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Runs every `(model, input, output)` in onnxruntime (CPU, default session options) in one
/// Python process.
fn ort_batch(jobs: &[(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)]) {
    const SCRIPT: &str = "\
import sys, numpy as np, onnxruntime as ort
for line in sys.stdin:
    model, x, out = line.rstrip('\\n').split('\\t')
    s = ort.InferenceSession(model, providers=['CPUExecutionProvider'])
    np.save(out, s.run(None, {s.get_inputs()[0].name: np.load(x)})[0])
";
    let mut child = Command::new(venv_python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", venv_python().display()));
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        for (model, x, out) in jobs {
            writeln!(
                stdin,
                "{}\t{}\t{}",
                model.display(),
                x.display(),
                out.display()
            )
            .unwrap_or_else(|e| panic!("writing to python: {e}"));
        }
    }
    let status = child.wait().unwrap_or_else(|e| panic!("python: {e}"));
    assert!(status.success(), "onnxruntime batch failed: {status}");
}

/// Seeded networks: the interpreter and the checked JIT agree with onnxruntime.
#[test]
fn interpreter_and_checked_jit_match_onnxruntime() {
    const CASES: u64 = 32;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let models: Vec<Model> = (0..CASES).map(|s| seeded_model(1000 + s)).collect();
    let mut jobs = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let model = dir.path().join(format!("m{i}.onnx"));
        std::fs::write(&model, &m.bytes).unwrap_or_else(|e| panic!("{e}"));
        let x = write_input(dir.path(), m, &format!("m{i}"));
        jobs.push((model, x, dir.path().join(format!("m{i}.ort.npy"))));
    }
    ort_batch(&jobs);
    let (mut max_interp, mut max_jit, mut dynamic) = (0f32, 0f32, 0);
    let mut failures = Vec::new();
    for (m, (_, _, out)) in models.iter().zip(&jobs) {
        let (shape, ort) = read_f32(out);
        assert_eq!(shape, m.output, "{}: onnxruntime output shape", describe(m));
        let r = interp_and_jit(m);
        max_interp = max_interp.max(max_abs_diff(&r.interp, &ort));
        max_jit = max_jit.max(max_abs_diff(&r.jit, &ort));
        dynamic += usize::from(r.dyn_convs > 0);
        for (engine, got) in [("interpreter", &r.interp), ("jit", &r.jit)] {
            if let Err(e) = check_close(got, &ort, ATOL, RTOL) {
                failures.push(format!("{}: {engine} vs onnxruntime: {e}", describe(m)));
            }
        }
    }
    println!(
        "max |dync - onnxruntime| over {CASES} random CNNs ({dynamic} with a recognized \
         dyn_conv): interpreter {max_interp:e}, checked jit {max_jit:e}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(dynamic > 0, "no sampled network has a recognized dyn_conv");
}

/// A few seeded networks compiled ahead of time in checked mode: the executables agree with
/// the interpreter.
#[test]
fn checked_executables_match_interpreter() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The first three seeded networks with a dynamic convolution and at least two layers.
    let models = (0u64..)
        .map(|s| (s, seeded_model(s)))
        .filter(|(_, m)| m.layers.len() > 2 && m.layers.iter().any(|l| l.starts_with("dyn_conv")))
        .take(3);
    for (seed, m) in models {
        let what = describe(&m);
        let stem = format!("s{seed}");
        let model = dir.path().join(format!("{stem}.onnx"));
        std::fs::write(&model, &m.bytes).unwrap_or_else(|e| panic!("{e}"));
        let x = write_input(dir.path(), &m, &stem);
        let exe = dir.path().join(format!("{stem}.exe"));
        compile(&model, &exe, &["--checked"]);
        let out = dir.path().join(format!("{stem}-out"));
        run_ok(
            Command::new(&exe)
                .arg("--input")
                .arg(format!("x={}", x.display()))
                .arg("--output-dir")
                .arg(&out),
        );
        let (shape, got) = read_f32(&out.join("y.npy"));
        assert_eq!(shape, m.output, "{what}: executable output shape");
        if let Err(e) = check_close(&got, &interp_and_jit(&m).interp, ATOL, RTOL) {
            panic!("{what}: executable vs interpreter: {e}");
        }
    }
}
