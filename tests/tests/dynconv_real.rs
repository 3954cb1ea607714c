//! Recognition of real dynamic-convolution exports made by PyTorch:
//! - timm `efficientnet_cc_b0_4e` and `_8e` (CondConv: 8 blocks × 3 dynamic convs), legacy and
//!   dynamo exporters, batch 1 and 8 (made by `examples/pytorch/export_real.py`): exactly 24
//!   `dyn_conv` ops;
//! - DY-CNN and ODConv networks (`examples/pytorch/dyconv_variants.py`, cached under
//!   `<fixtures>/variants`), legacy and dynamo, batch 1 and 2: as many `dyn_conv` ops as the
//!   script reports dynamic convs.
//!
//! After import and the pass pipeline, each has no conv with a computed kernel left, no remark,
//! and outputs equal to the interpreter on the original imported graph for the exporter's seeded
//! input; so do both compiled engines (the JIT of `dync run` and an executable from
//! `dync compile`), which also match onnxruntime (atol 1e-4 + rtol 1e-3, same top-1;
//! `dync_tests::assert_outputs`).

use dync_ir::{Graph, Op};
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model, Limits};
use dync_tests::{
    assert_engines_match, assert_outputs, fixtures_dir, interp_outputs, ort_run, read_inputs,
    read_named, real_export, repo_root, tempdir, Named,
};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// CondConv blocks × dynamic convs per block in both models.
const DYNAMIC_CONVS: usize = 24;

fn count(g: &Graph, f: impl Fn(&Graph, dync_ir::NodeId) -> bool) -> usize {
    g.node_ids().filter(|&n| f(g, n)).count()
}

fn check_export(model: &str, exporter: &str, batch: usize) {
    let e = real_export(model, exporter, batch);
    let ort = read_named(&e.outputs);
    check_model(&e.name, &e.path, &e.inputs, &ort, DYNAMIC_CONVS);
}

/// Imports `path`, optimizes it and checks the recognition and the outputs (see the module docs);
/// `ort`: onnxruntime's outputs for `input_files`.
fn check_model(
    name: &str,
    path: &Path,
    input_files: &[(String, PathBuf)],
    ort: &[Named],
    expected: usize,
) {
    let m = load_model(path, &Limits::default()).unwrap_or_else(|err| panic!("{err}"));
    let original = import(&m, &ImportOptions::default())
        .unwrap_or_else(|err| panic!("{err}"))
        .graph;
    let inputs = read_inputs(
        original.inputs.iter().map(|(n, _)| n.as_str()),
        input_files,
        name,
    );
    let want = interp_outputs(&original, &inputs, name);
    let mut g = original;
    let pm = dync_opt::optimize(&mut g, &dync_opt::Options::default())
        .unwrap_or_else(|err| panic!("{name}: {err}"));
    let remarks: Vec<String> = pm.cx.remarks.iter().map(|r| r.to_string()).collect();
    let dyn_convs = count(&g, |g, n| matches!(g.node(n).op, Op::DynConv(_)));
    assert_eq!(dyn_convs, expected, "{name}: remarks {remarks:#?}");
    let generic = count(&g, |g, n| {
        matches!(g.node(n).op, Op::Conv(_)) && g.const_value(g.operands(n)[1]).is_none()
    });
    assert_eq!(generic, 0, "{name}: convs with a computed kernel left");
    assert!(remarks.is_empty(), "{name}: {remarks:#?}");
    let got = interp_outputs(&g, &inputs, name);
    assert_outputs(&got, &want, &format!("{name}: optimized vs original"));
    let dir = tempdir();
    assert_engines_match(path, input_files, &[], &want, ort, dir.path(), name);
}

/// One entry of the variants manifest.
#[derive(serde::Deserialize)]
struct Variant {
    name: String,
    model: String,
    exporter: String,
    batch: usize,
    path: String,
    input: String,
    dynamic_convs: usize,
}

#[derive(serde::Deserialize)]
struct VariantManifest {
    entries: Vec<Variant>,
}

/// The variants' directory, made or refreshed by `dyconv_variants.py` (cheap when up to date)
/// under a cross-process lock; at most once per process.
fn variants_dir() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = DIR.get_or_init(|| {
        let fixtures = fixtures_dir();
        let dir = fixtures.join("variants");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let lock_path = fixtures.join("variants.lock");
        let lock = File::create(&lock_path)
            .map_err(|e| format!("cannot open lock {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        let mut cmd = Command::new(dync_tests::venv_python());
        cmd.arg(repo_root().join("examples/pytorch/dyconv_variants.py"))
            .arg("--out")
            .arg(&dir)
            .stdin(Stdio::null());
        let out = cmd
            .output()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{cmd:?} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    match made {
        Ok(dir) => dir.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

fn check_variant(model: &str, exporter: &str, batch: usize) {
    let dir = variants_dir();
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    let manifest: VariantManifest = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", manifest.display()));
    let Some(v) = manifest
        .entries
        .iter()
        .find(|v| v.model == model && v.exporter == exporter && v.batch == batch)
    else {
        panic!("no variant {model} ({exporter}, batch {batch}) in the manifest");
    };
    let m = load_model(&dir.join(&v.path), &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let input_name = m
        .graph
        .input
        .first()
        .map(|i| i.name.clone())
        .unwrap_or_else(|| panic!("{}: no graph input", v.name));
    let inputs = [(input_name, dir.join(&v.input))];
    let path = dir.join(&v.path);
    let ort = read_named(&ort_run(&path, &inputs).outputs);
    check_model(&v.name, &path, &inputs, &ort, v.dynamic_convs);
}

macro_rules! real_tests {
    ($($test:ident: $model:literal, $exporter:literal, $batch:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_export($model, $exporter, $batch);
            }
        )*
    };
}

real_tests! {
    cc_b0_4e_legacy_b1: "efficientnet_cc_b0_4e", "legacy", 1;
    cc_b0_4e_legacy_b8: "efficientnet_cc_b0_4e", "legacy", 8;
    cc_b0_4e_dynamo_b1: "efficientnet_cc_b0_4e", "dynamo", 1;
    cc_b0_4e_dynamo_b8: "efficientnet_cc_b0_4e", "dynamo", 8;
    cc_b0_8e_legacy_b1: "efficientnet_cc_b0_8e", "legacy", 1;
    cc_b0_8e_legacy_b8: "efficientnet_cc_b0_8e", "legacy", 8;
    cc_b0_8e_dynamo_b1: "efficientnet_cc_b0_8e", "dynamo", 1;
    cc_b0_8e_dynamo_b8: "efficientnet_cc_b0_8e", "dynamo", 8;
}

macro_rules! variant_tests {
    ($($test:ident: $model:literal, $exporter:literal, $batch:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_variant($model, $exporter, $batch);
            }
        )*
    };
}

variant_tests! {
    dycnn_legacy_b1: "dycnn", "legacy", 1;
    dycnn_legacy_b2: "dycnn", "legacy", 2;
    dycnn_dynamo_b1: "dycnn", "dynamo", 1;
    dycnn_dynamo_b2: "dycnn", "dynamo", 2;
    odconv_legacy_b1: "odconv", "legacy", 1;
    odconv_legacy_b2: "odconv", "legacy", 2;
    odconv_dynamo_b1: "odconv", "dynamo", 1;
    odconv_dynamo_b2: "odconv", "dynamo", 2;
}
