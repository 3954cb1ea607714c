//! Tests of `dync bench` through the binary, on small zoo exports (32×32 inputs): the JSON
//! report's keys and that its numbers are positive and consistent with each other (speed-ups
//! and GFLOP/s recomputed here from the reported medians and MACs), `--vs`, skipped and
//! explicitly requested unavailable baselines, usage errors, and the onnxruntime baseline when
//! the Python venv has onnxruntime (otherwise that test prints why it is skipped and passes).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `dync args...` with `env` added to the environment.
fn dync(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dync"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run dync {args:?}: {e}"))
}

/// The JSON object a successful `dync bench ... --json` printed.
fn bench_json(args: &[&str], env: &[(&str, &str)]) -> Value {
    let o = dync(args, env);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "dync {args:?} failed ({}): {stdout}{stderr}",
        o.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("dync {args:?}: not one JSON object ({e}): {stdout}"))
}

/// Writes zoo network `name` at 32×32, batch 1, to `dir/<name>.onnx`.
fn export(dir: &Path, name: &str) -> PathBuf {
    export_form(dir, name, dync::zoo::Form::Mix)
}

fn export_form(dir: &Path, name: &str, form: dync::zoo::Form) -> PathBuf {
    let options = dync::zoo::Options {
        height: 32,
        width: 32,
        form,
        ..Default::default()
    };
    let bytes = dync::zoo::export(name, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let path = dir.join(format!("{name}.onnx"));
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key:?} is not a number in {v}"))
}

/// `median_ms`, `p90_ms`, `min_ms` are positive and ordered min ≤ median ≤ p90.
fn check_timing(v: &Value) {
    let (min, median, p90) = (num(v, "min_ms"), num(v, "median_ms"), num(v, "p90_ms"));
    assert!(min > 0.0 && min <= median && median <= p90, "{v}");
}

/// A baseline entry: its timing, and its speed-up equal to its median over the model's.
fn check_baseline(report: &Value, name: &str) -> Value {
    let b = report["baselines"][name].clone();
    assert!(b.is_object(), "no baseline {name:?} in {report}");
    check_timing(&b);
    let want = num(&b, "median_ms") / num(report, "median_ms");
    assert!((num(&b, "speedup") - want).abs() <= 1e-9 * want, "{b}");
    b
}

/// The model's own numbers: timing, MACs, GFLOP/s = 2·MACs / median, batch, threads, runs.
fn check_report(v: &Value, model: &Path, iters: u64) {
    check_report_batch(v, model, iters, 1);
}

fn check_report_batch(v: &Value, model: &Path, iters: u64, batch: u64) {
    assert_eq!(v["model"], model.display().to_string(), "{v}");
    check_timing(v);
    let macs = v["macs"].as_u64().unwrap_or(0);
    assert!(macs > 0, "{v}");
    let want = 2.0 * macs as f64 / (num(v, "median_ms") * 1e6);
    assert!((num(v, "gflops") - want).abs() <= 1e-9 * want, "{v}");
    assert_eq!(v["batch"], batch, "{v}");
    assert!(v["threads"].as_u64().is_some_and(|t| t >= 1), "{v}");
    assert_eq!(v["dync_threads"], v["threads"], "{v}");
    assert_eq!(v["iters"], iters, "{v}");
    assert!(num(v, "compile_s") > 0.0, "{v}");
}

#[test]
fn interp_baseline_and_vs_in_json() {
    let d = tempdir();
    let dy = export(d.path(), "dy-mobilenetv3-small");
    let twin = export(d.path(), "mobilenetv3-small");
    let (dy_s, twin_s) = (dy.to_str().unwrap_or(""), twin.to_str().unwrap_or(""));
    let v = bench_json(
        &[
            "bench",
            dy_s,
            "--baseline",
            "interp",
            "--json",
            "--iters",
            "2",
            "--vs",
            twin_s,
            "--threads",
            "2",
        ],
        &[],
    );
    check_report(&v, &dy, 2);
    assert_eq!(v["threads"], 2, "{v}");
    assert!(v["profile"].is_null(), "{v}");
    let keys: Vec<&String> = v["baselines"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["interp"], "{v}");
    check_baseline(&v, "interp");
    assert_eq!(v["skipped"], serde_json::json!({}), "{v}");

    let vs = &v["vs"];
    assert_eq!(vs["model"], twin.display().to_string(), "{v}");
    check_timing(vs);
    let (dy_macs, twin_macs) = (num(&v, "macs"), num(vs, "macs"));
    assert!(twin_macs > 0.0, "{v}");
    assert!(
        (num(vs, "macs_ratio") - twin_macs / dy_macs).abs() < 1e-9,
        "{v}"
    );
    let want = num(vs, "median_ms") / num(&v, "median_ms");
    assert!((num(vs, "speedup") - want).abs() <= 1e-9 * want, "{v}");
    // Without the ort baseline, no onnxruntime timing of OTHER.
    assert!(vs["ort"].is_null(), "{v}");
}

/// `--profile`: one row per kernel, named after its ONNX node, whose MACs add up to the model's
/// and whose shares add up to 100 %; the SVG has one bar per kernel.
#[test]
fn profile_table_and_svg() {
    let d = tempdir();
    let m = export(d.path(), "dy-mobilenetv3-small");
    let svg = d.path().join("chart.svg");
    let v = bench_json(
        &[
            "bench",
            m.to_str().unwrap_or(""),
            "--baseline",
            "interp",
            "--json",
            "--iters",
            "2",
            "--threads",
            "1",
            "--profile",
            "--profile-svg",
            svg.to_str().unwrap_or(""),
        ],
        &[],
    );
    check_report(&v, &m, 2);
    let p = &v["profile"];
    assert_eq!(p["svg"], svg.display().to_string(), "{p}");
    let kernels = p["kernels"].as_array().cloned().unwrap_or_default();
    assert!(kernels.len() > 10, "{p}");
    let (mut macs, mut percent) = (0u64, 0.0);
    for (i, k) in kernels.iter().enumerate() {
        assert_eq!(k["kernel"], i, "{k}");
        assert!(k["node"].as_str().is_some_and(|n| !n.is_empty()), "{k}");
        assert!(k["op"].as_str().is_some_and(|n| !n.is_empty()), "{k}");
        assert!(num(k, "ms") >= 0.0, "{k}");
        macs += k["macs"].as_u64().unwrap_or(0);
        percent += num(k, "percent");
    }
    assert_eq!(macs, v["macs"].as_u64().unwrap_or(0), "{p}");
    assert!((percent - 100.0).abs() < 1e-6, "{percent}");
    // The dynamic convs are named after the ONNX nodes they were recognized from.
    assert!(
        kernels
            .iter()
            .any(|k| k["op"] == "dyn_conv" && k["node"] != "-"),
        "{p}"
    );
    let text = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{}: {e}", svg.display()));
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    // One bar per kernel (a `<g>` with its tooltip), after one bar per op.
    assert_eq!(text.matches("<g>").count(), kernels.len());
    let mut ops: Vec<&str> = kernels.iter().filter_map(|k| k["op"].as_str()).collect();
    ops.sort_unstable();
    ops.dedup();
    assert_eq!(text.matches("<rect").count(), 1 + ops.len() + kernels.len());
}

/// `--batch 3` re-targets the batch-1 file: three times the MACs, and the interpreter runs the
/// re-targeted graph too.
#[test]
fn batch_retargets_the_model_and_the_interpreter() {
    let d = tempdir();
    let m = export_form(d.path(), "dy-mobilenetv3-small", dync::zoo::Form::Train);
    let ms = m.to_str().unwrap_or("");
    let args = [
        "bench",
        ms,
        "--baseline",
        "interp",
        "--json",
        "--iters",
        "1",
    ];
    let one = bench_json(&args, &[]);
    check_report(&one, &m, 1);
    let three = bench_json(&[&args[..], &["--batch", "3"]].concat(), &[]);
    check_report_batch(&three, &m, 1, 3);
    check_baseline(&three, "interp");
    assert_eq!(
        three["macs"].as_u64(),
        one["macs"].as_u64().map(|n| 3 * n),
        "{one}\n{three}"
    );
}

#[test]
fn unavailable_baselines_are_skipped_by_default_and_errors_when_named() {
    let d = tempdir();
    let m = export(d.path(), "dy-mobilenetv3-small");
    let ms = m.to_str().unwrap_or("");
    let no_venv = d.path().join("no-venv");
    let env = [("DYNC_VENV", no_venv.to_str().unwrap_or(""))];

    let v = bench_json(&["bench", ms, "--json", "--iters", "1"], &env);
    check_report(&v, &m, 1);
    check_baseline(&v, "literal");
    check_baseline(&v, "interp");
    check_baseline(&v, "cranelift");
    assert!(v["baselines"]["ort"].is_null(), "{v}");
    let why = v["skipped"]["ort"].as_str().unwrap_or("");
    assert!(
        why.contains("no Python venv") && why.contains("no-venv"),
        "{v}"
    );

    let o = dync(&["bench", ms, "--baseline", "ort", "--iters", "1"], &env);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("baseline ort") && stderr.contains("no Python venv"),
        "{stderr}"
    );
}

/// A stand-in for the venv's Python: the onnxruntime bridge's `--serve` protocol (a ready line,
/// then one block of runs), then a failure on the next block.
const FAILING_BRIDGE: &str = r#"#!/bin/sh
echo '{"ready": true, "threads": 1, "ort_version": "0.0-fake"}'
read n
times=""
i=0
while [ "$i" -lt "$n" ]; do times="$times${times:+,}1.5"; i=$((i + 1)); done
echo "{\"times_ms\": [$times]}"
read n
echo "boom: the stand-in bridge fails on its second block" >&2
exit 1
"#;

/// onnxruntime failing between the rounds: skipped with the bridge's exit status and stderr by
/// default (the other engines' rounds go on), an error when `ort` is named.
#[test]
fn a_bridge_failing_mid_rounds_is_skipped_with_its_stderr() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempdir();
    let m = export(d.path(), "dy-mobilenetv3-small");
    let ms = m.to_str().unwrap_or("");
    let venv = d.path().join("venv");
    let python = venv.join("bin/python");
    std::fs::create_dir_all(venv.join("bin")).unwrap_or_else(|e| panic!("venv: {e}"));
    std::fs::write(&python, FAILING_BRIDGE).unwrap_or_else(|e| panic!("python: {e}"));
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    let env = [("DYNC_VENV", venv.to_str().unwrap_or(""))];

    let v = bench_json(&["bench", ms, "--json", "--iters", "5"], &env);
    check_report(&v, &m, 5);
    check_baseline(&v, "literal");
    check_baseline(&v, "interp");
    assert!(v["baselines"]["ort"].is_null(), "{v}");
    let why = v["skipped"]["ort"].as_str().unwrap_or("");
    assert!(
        why.contains("onnxruntime failed on") && why.contains("boom"),
        "{v}"
    );

    let o = dync(&["bench", ms, "--baseline", "ort", "--iters", "5"], &env);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("baseline ort") && stderr.contains("boom"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["bench", "m.onnx", "--iters", "0"][..],
        &["bench", "m.onnx", "--threads", "0"],
        &["bench", "m.onnx", "--batch", "0"],
        &["bench", "m.onnx", "--baseline", "tvm"],
    ] {
        let o = dync(args, &[]);
        assert_eq!(o.status.code(), Some(2), "dync {args:?}");
    }
}

#[test]
fn ort_baseline_when_the_venv_has_onnxruntime() {
    let venv = match std::env::var_os("DYNC_VENV").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".cache/dync/venv"),
            None => {
                println!("skipped: neither DYNC_VENV nor HOME is set");
                return;
            }
        },
    };
    if !venv.join("bin/python").is_file() {
        println!(
            "skipped: no Python venv at {} (scripts/setup-venv makes it)",
            venv.display()
        );
        return;
    }
    let d = tempdir();
    let dy = export(d.path(), "dy-mobilenetv3-small");
    let twin = export(d.path(), "mobilenetv3-small");
    let args = [
        "bench",
        dy.to_str().unwrap_or(""),
        "--baseline",
        "ort",
        "--json",
        "--iters",
        "2",
        "--threads",
        "1",
        "--vs",
        twin.to_str().unwrap_or(""),
    ];
    let o = dync(&args, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() && stderr.contains("onnxruntime is not installed") {
        println!("skipped: {stderr}");
        return;
    }
    let v = bench_json(&args, &[]);
    check_report(&v, &dy, 2);
    assert_eq!(v["threads"], 1, "{v}");
    let ort = check_baseline(&v, "ort");
    assert!(
        ort["version"]
            .as_str()
            .is_some_and(|s| s.chars().next().is_some_and(|c| c.is_ascii_digit())),
        "{v}"
    );
    let vs_ort = &v["vs"]["ort"];
    check_timing(vs_ort);
    let want = num(vs_ort, "median_ms") / num(&v, "median_ms");
    assert!((num(vs_ort, "speedup") - want).abs() <= 1e-9 * want, "{v}");
}
