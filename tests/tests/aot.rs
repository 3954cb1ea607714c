//! Ahead-of-time compilation end to end, through the command line: `dync compile` to
//! executables, shared libraries and objects; their outputs against the reference interpreter
//! and onnxruntime (atol 1e-4 + rtol 1e-3, same top-1), on zoo models (mix and train forms,
//! both exporter styles, small inputs) and real torchvision/timm exports; the executables'
//! handling of bad input; `--bench --json`; determinism of artifacts and outputs.

mod aot_common;

use aot_common::*;
use dync_tests::{assert_close, assert_same_top1, ort_run, real_export_manifest, sanitize_name};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Checks `got` (an output `.npy`) against `want` (a reference `.npy`).
fn check_output(got: &Path, want: &Path, what: &str) {
    let (gs, g) = read_f32(got);
    let (ws, w) = read_f32(want);
    assert_eq!(gs, ws, "{what}: shape");
    assert_close(&g, &w, 1e-4, 1e-3, what);
    assert_same_top1(&g, &w, &ws, 1e-4, 1e-3, what);
}

/// Output `.npy` files of `dync run --engine interp` on `model` with `inputs`, in `dir`.
fn interp_outputs(model: &Path, inputs: &[(String, PathBuf)], dir: &Path) {
    let mut cmd = Command::new(dync_bin());
    cmd.args(["run", "--engine", "interp"]).arg(model);
    for (n, f) in inputs {
        cmd.arg("--input").arg(format!("{n}={}", f.display()));
    }
    run_ok(cmd.arg("--output-dir").arg(dir));
}

/// Compiles `model` to an executable, runs it on `inputs`, and compares every output with the
/// interpreter's and onnxruntime's (`ort`: (name, file) in graph order, or None to run it).
fn check_executable(
    dir: &Path,
    model: &Path,
    inputs: &[(String, PathBuf)],
    ort: Option<&[(String, PathBuf)]>,
) {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exe = dir.join(format!("{stem}.exe"));
    let t = Instant::now();
    compile(model, &exe, &[]);
    let secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&exe).map(|m| m.len()).unwrap_or(0);
    eprintln!("{stem}: compiled in {secs:.2} s, executable {size} bytes");

    let out = dir.join(format!("{stem}-aot"));
    let mut cmd = Command::new(&exe);
    for (n, f) in inputs {
        cmd.arg("--input").arg(format!("{n}={}", f.display()));
    }
    run_ok(cmd.arg("--output-dir").arg(&out));
    let interp = dir.join(format!("{stem}-interp"));
    interp_outputs(model, inputs, &interp);
    let ort_owned;
    let ort = match ort {
        Some(o) => o,
        None => {
            ort_owned = ort_run(model, inputs);
            &ort_owned.outputs
        }
    };
    assert!(!ort.is_empty(), "{stem}: no outputs");
    for (name, want) in ort {
        let file = format!("{}.npy", sanitize_name(name));
        let got = out.join(&file);
        check_output(&got, want, &format!("{stem} {name:?}: AOT vs onnxruntime"));
        check_output(
            &got,
            &interp.join(&file),
            &format!("{stem} {name:?}: AOT vs interpreter"),
        );
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dync-aot-")
        .tempdir()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A zoo model at 32×32 with its input file.
fn zoo_case(
    dir: &Path,
    name: &str,
    extra: &[&str],
    tag: &str,
) -> (PathBuf, Vec<(String, PathBuf)>) {
    let model = export_zoo(dir, name, 32, extra, &format!("{name}-{tag}.onnx"));
    let x = dir.join(format!("{name}-{tag}-input.npy"));
    random_input(&x, &[1, 3, 32, 32], 11);
    (model, vec![("input".to_string(), x)])
}

#[test]
fn zoo_models_compile_to_executables_matching_interpreter_and_onnxruntime() {
    let dir = tempdir();
    let cases: [(&str, &[&str], &str); 6] = [
        ("dy-mobile", &[], "mix-legacy"),
        ("mobilenetv2", &[], "static"),
        (
            "dy-resnet18",
            &["--form", "train", "--exporter", "dynamo"],
            "train-dynamo",
        ),
        ("dy-shuffle", &["--exporter", "dynamo"], "mix-dynamo"),
        ("dy-mobilenetv3-small", &[], "mix-legacy"),
        ("resnet18", &[], "static"),
    ];
    for (name, extra, tag) in cases {
        let (model, inputs) = zoo_case(dir.path(), name, extra, tag);
        check_executable(dir.path(), &model, &inputs, None);
    }
}

fn real_case(model: &str, exporter: &str) {
    let entries = real_export_manifest();
    let Some(e) = entries
        .iter()
        .find(|e| e.model == model && e.exporter == exporter && e.batch == 1)
    else {
        panic!("no export of {model} ({exporter}, batch 1) in the manifest");
    };
    if let Some(err) = &e.error {
        panic!("{}: the export failed: {err}", e.name);
    }
    let dir = tempdir();
    check_executable(dir.path(), &e.path, &e.inputs, Some(&e.outputs));
}

#[test]
fn real_resnet18_legacy_compiles_to_a_matching_executable() {
    real_case("resnet18", "legacy");
}

#[test]
fn real_efficientnet_condconv_dynamo_compiles_to_a_matching_executable() {
    real_case("efficientnet_cc_b0_4e", "dynamo");
}

/// dy-mobile at 32×32 compiled as an executable in `dir`, with an input file.
fn dy_mobile_exe(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (model, inputs) = zoo_case(dir, "dy-mobile", &[], "mix");
    let exe = dir.join("dy_mobile");
    compile(&model, &exe, &[]);
    (model, exe, inputs[0].1.clone())
}

#[test]
fn shared_library_and_object_run_from_c_with_the_executables_results() {
    let dir = tempdir();
    let d = dir.path();
    let (model, exe, x) = dy_mobile_exe(d);
    run_ok(
        Command::new(&exe)
            .arg("--input")
            .arg(&x)
            .arg("--output-dir")
            .arg(d.join("exe-out")),
    );
    let want = read_f32(&d.join("exe-out/output.npy")).1;
    let raw_in = d.join("x.raw");
    npy_to_raw(&x, &raw_in);

    // --emit so: the C harness linked against the shared library.
    // The model's name is the file's stem without `lib`: dym_so, declared in libdym_so.h.
    let so = d.join("libdym_so.so");
    compile(&model, &so, &["--emit", "so"]);
    std::fs::rename(d.join("libdym_so.h"), d.join("dym_so.h")).unwrap_or_else(|e| panic!("{e}"));
    let h_so = d.join("harness_so");
    let rpath = format!("-Wl,-rpath,{}", d.display());
    build_harness(
        "cc",
        d,
        "dym_so",
        &[&so.display().to_string(), &rpath, "-lm"],
        &h_so,
    );
    run_ok(Command::new(&h_so).arg(&raw_in).arg(d.join("so.raw")));
    assert_eq!(
        read_raw_f32(&d.join("so.raw")),
        want,
        "shared library vs executable"
    );

    // --emit obj: the harness linked with the object and libm only.
    let obj = d.join("dym_obj.o");
    compile(&model, &obj, &["--emit", "obj"]);
    let h_obj = d.join("harness_obj");
    build_harness(
        "cc",
        d,
        "dym_obj",
        &[&obj.display().to_string(), "-lm"],
        &h_obj,
    );
    run_ok(Command::new(&h_obj).arg(&raw_in).arg(d.join("obj.raw")));
    assert_eq!(
        read_raw_f32(&d.join("obj.raw")),
        want,
        "object vs executable"
    );

    // The harness reports a wrong-sized input file instead of running on it.
    std::fs::write(d.join("short.raw"), [0u8; 10]).unwrap_or_else(|e| panic!("{e}"));
    let err = run_fails(
        Command::new(&h_obj)
            .arg(d.join("short.raw"))
            .arg(d.join("o.raw")),
    );
    assert!(
        err.contains("\"input\"") && err.contains("short.raw"),
        "{err}"
    );
}

#[test]
fn executables_reject_bad_inputs_with_clear_errors() {
    let dir = tempdir();
    let d = dir.path();
    let (_, exe, x) = dy_mobile_exe(d);
    let good = std::fs::read(&x).unwrap_or_else(|e| panic!("{e}"));
    let write = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{e}"));
        p
    };
    let wrong_shape = d.join("wrong_shape.npy");
    random_input(&wrong_shape, &[1, 3, 32, 31], 1);
    let wrong_dtype = {
        let arr = dync_runtime::npy::NpyArray {
            shape: vec![1, 3, 32, 32],
            data: dync_runtime::npy::NpyData::I64(vec![0; 3 * 32 * 32]),
        };
        let p = d.join("wrong_dtype.npy");
        dync_runtime::npy::write_npy(&p, &arr).unwrap_or_else(|e| panic!("{e}"));
        p
    };
    let truncated = write("truncated.npy", &good[..good.len() - 100]);
    let header_cut = write("header_cut.npy", &good[..40]);
    let garbage = write(
        "garbage.npy",
        b"this is not an npy file at all, just text\n",
    );
    let longer = write("longer.npy", &[good.as_slice(), &[0u8; 8]].concat());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![format!("input={}", wrong_shape.display())],
            "wrong_shape.npy",
        ),
        (
            vec![format!("input={}", wrong_dtype.display())],
            "wrong_dtype.npy",
        ),
        (vec![truncated.display().to_string()], "truncated.npy"),
        (vec![header_cut.display().to_string()], "header_cut.npy"),
        (vec![garbage.display().to_string()], "garbage.npy"),
        (vec![longer.display().to_string()], "longer.npy"),
        (
            vec![d.join("missing.npy").display().to_string()],
            "missing.npy",
        ),
        (vec![format!("nosuch={}", x.display())], "nosuch"),
        (
            vec![x.display().to_string(), x.display().to_string()],
            "only 1 inputs",
        ),
    ];
    for (args, needle) in cases {
        let mut cmd = Command::new(&exe);
        for a in &args {
            cmd.arg("--input").arg(a);
        }
        let err = run_fails(cmd.arg("--output-dir").arg(d.join("o")));
        assert!(
            err.contains(needle),
            "{args:?}: {err:?} does not name {needle}"
        );
        if !needle.starts_with("only") && needle != "nosuch" {
            assert!(
                err.contains("\"input\""),
                "{args:?}: {err:?} does not name the input"
            );
        }
    }
    for bad in [
        &["--threads", "0"][..],
        &["--frobnicate"],
        &["--iters", "3"],
    ] {
        run_fails(Command::new(&exe).args(bad));
    }
    assert!(!d.join("o").exists(), "no output written on errors");
}

#[test]
fn bench_json_reports_latency_and_random_inputs_match_dync_run() {
    let dir = tempdir();
    let d = dir.path();
    let (model, exe, _) = dy_mobile_exe(d);
    let out = run_ok(Command::new(&exe).args(["--bench", "--iters", "3", "--json"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    for key in ["median_ms", "min_ms", "p90_ms"] {
        let ms = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{line}: no {key}"));
        assert!(ms > 0.0 && ms < 60_000.0, "{key} = {ms}");
    }
    assert_eq!(v["iters"].as_u64(), Some(3));
    let text = run_ok(Command::new(&exe).args(["--bench", "--iters", "2"]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("median") && text.contains("p90"), "{text}");

    // Without --input both draw the same seeded inputs: the JIT's and the executable's outputs
    // agree (the same lowering: bit for bit, up to libm's rounding in math calls).
    run_ok(
        Command::new(&exe)
            .args(["--seed", "5", "--output-dir"])
            .arg(d.join("a")),
    );
    run_ok(
        Command::new(dync_bin())
            .arg("run")
            .arg(&model)
            .args(["--seed", "5", "--output-dir"])
            .arg(d.join("j")),
    );
    let (_, a) = read_f32(&d.join("a/output.npy"));
    let (_, j) = read_f32(&d.join("j/output.npy"));
    assert_close(&a, &j, 1e-5, 0.0, "AOT vs JIT on --seed 5 inputs");
}

#[test]
fn artifacts_and_outputs_are_deterministic() {
    let dir = tempdir();
    let d = dir.path();
    let (model, _, x) = dy_mobile_exe(d);
    let bytes = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    for (emit, file) in [("exe", "m"), ("obj", "m.o"), ("so", "libm.so")] {
        let (a, b) = (d.join("1").join(file), d.join("2").join(file));
        compile(&model, &a, &["--emit", emit, "--name", "m"]);
        compile(&model, &b, &["--emit", emit, "--name", "m"]);
        assert!(bytes(&a) == bytes(&b), "--emit {emit}: two compiles differ");
    }
    let exe = d.join("1").join("m");
    let mut outs = Vec::new();
    for (i, threads) in ["1", "1", "2"].into_iter().enumerate() {
        let o = d.join(format!("out{i}"));
        run_ok(
            Command::new(&exe)
                .arg("--input")
                .arg(&x)
                .args(["--threads", threads, "--output-dir"])
                .arg(&o),
        );
        outs.push(bytes(&o.join("output.npy")));
    }
    assert!(
        outs.windows(2).all(|w| w[0] == w[1]),
        "outputs differ between runs"
    );
}

#[test]
fn compile_reports_bad_flags_and_targets() {
    let dir = tempdir();
    let d = dir.path();
    let model = export_zoo(d, "mobilenetv2", 32, &[], "m.onnx");
    let base = |args: &[&str]| {
        let mut c = Command::new(dync_bin());
        c.arg("compile")
            .arg(&model)
            .arg("-o")
            .arg(d.join("x"))
            .args(args);
        c
    };
    for (args, needle) in [
        (&["--cpu", "pentium"][..], "unknown CPU"),
        (&["--target", "aarch64-unknown-linux-gnu"], "--emit obj"),
        (
            &[
                "--target",
                "aarch64-unknown-linux-gnu",
                "--cpu",
                "x86-64-v3",
                "--emit",
                "obj",
            ],
            "x86-64",
        ),
        (
            &["--target", "riscv64gc-unknown-linux-gnu", "--emit", "obj"],
            "x86_64 and aarch64",
        ),
        (&["--target", "not-a-triple"], "--target"),
        (&["--name", "bad-name"], "C identifier"),
    ] {
        let err = run_fails(&mut base(args));
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let err = run_fails(base(&[]).env("DYNC_RUNTIME_LIB", d.join("nope.a")));
    assert!(err.contains("DYNC_RUNTIME_LIB"), "{err}");
}

#[test]
fn portable_cpu_levels_compile_and_agree() {
    let dir = tempdir();
    let d = dir.path();
    let (model, inputs) = zoo_case(d, "dy-mobile", &[], "mix");
    let mut results = Vec::new();
    for cpu in ["generic", "x86-64-v3", "native"] {
        let exe = d.join(format!("m-{cpu}"));
        compile(&model, &exe, &["--cpu", cpu]);
        let o = d.join(format!("o-{cpu}"));
        run_ok(
            Command::new(&exe)
                .arg("--input")
                .arg(&inputs[0].1)
                .arg("--output-dir")
                .arg(&o),
        );
        results.push((cpu, read_f32(&o.join("output.npy")).1));
    }
    let (_, base) = &results[0];
    for (cpu, r) in &results[1..] {
        assert_close(r, base, 1e-5, 1e-4, &format!("--cpu {cpu} vs generic"));
    }
}
