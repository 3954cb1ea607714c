//! Integration tests of the `dync` binary (`check`, `inspect`, `run`, `zoo list`), run as a
//! subprocess with a timeout: exit codes (0 ok, 1 error or unsupported, 2 usage, 3 `--compare`
//! mismatch), what each command prints or writes, and, for every case of the bad-input fixture
//! suite (`tests/bad-inputs/fixtures.rs`), that the binary exits 1 naming the file and the
//! node, or succeeds where the fixture must — never a panic, never a hang.
//!
//! Models are built in the test with `dync_onnx::write::ModelBuilder` or `dync::zoo`; expected
//! numbers (MACs, parameters, output values) are computed here by hand from the model's
//! definition.

#[path = "../../tests/bad-inputs/fixtures.rs"]
mod fixtures;

use dync::ir::{DType, Tensor, TensorData};
use dync::onnx::write::{Attr, Dim, ModelBuilder};
use dync_runtime::npy::{read_npy, write_npy, NpyArray, NpyData};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest one `dync` invocation may take (debug build) before it counts as a hang.
const TIMEOUT: Duration = Duration::from_secs(300);

/// What one `dync` run did.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `dync args...`, killing it after [`TIMEOUT`]; fails the test on a hang, a signal or a
/// panic message.
fn dync<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dync"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    // Drain both pipes on threads so that a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{shown} HUNG: still running after {TIMEOUT:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{shown}: {e}"),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(code) = status.code() else {
        panic!("{shown} was killed by a signal ({status}); stderr:\n{stderr}");
    };
    assert!(
        !stderr.contains("panicked") && !stdout.contains("panicked"),
        "{shown} PANICKED:\n{stderr}"
    );
    Out {
        code,
        stdout,
        stderr,
    }
}

/// Like [`dync`], asserting the exit code.
fn dync_expect<S: AsRef<std::ffi::OsStr>>(code: i32, args: &[S]) -> Out {
    let o = dync(args);
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        o.code, code,
        "dync {shown:?} exited {}, expected {code}\nstdout:\n{}\nstderr:\n{}",
        o.code, o.stdout, o.stderr
    );
    o
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dync-cli-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

fn f32_tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::new(shape.to_vec(), TensorData::F32(v)).unwrap_or_else(|e| panic!("{e}"))
}

fn fixed(dims: &[usize]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Fixed(d)).collect()
}

fn save(dir: &Path, name: &str, b: ModelBuilder) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, b.encode()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

fn write_f32(path: &Path, shape: &[usize], v: Vec<f32>) {
    let arr = NpyArray {
        shape: shape.to_vec(),
        data: NpyData::F32(v),
    };
    write_npy(path, &arr).unwrap_or_else(|e| panic!("{e}"));
}

fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    match read_npy(path, 1 << 30) {
        Ok(NpyArray {
            shape,
            data: NpyData::F32(v),
        }) => (shape, v),
        Ok(a) => panic!("{}: not f32 but {}", path.display(), a.dtype()),
        Err(e) => panic!("{e}"),
    }
}

/// Weight values that are exact in f32 and distinct: (i mod 7 − 3) / 4.
fn weights(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 7) as f32 - 3.0) / 4.0).collect()
}

/// x f32[2,4,9,9] → Conv "conv" (w f32[6,2,3,3], b f32[6]; group 2, stride 2, pads 1) → y.
/// H' = W' = floor((9 + 2 − 3) / 2) + 1 = 5.
fn grouped_conv_model(dir: &Path) -> PathBuf {
    let mut b = ModelBuilder::new(17);
    b.input("x", DType::F32, &fixed(&[2, 4, 9, 9])).unwrap();
    b.initializer("w", &f32_tensor(&[6, 2, 3, 3], weights(108)))
        .unwrap();
    b.initializer("b", &f32_tensor(&[6], weights(6))).unwrap();
    b.node(
        "Conv",
        "conv",
        &["x", "w", "b"],
        &["y"],
        &[
            Attr::int("group", 2),
            Attr::ints("strides", &[2, 2]),
            Attr::ints("pads", &[1, 1, 1, 1]),
            Attr::ints("kernel_shape", &[3, 3]),
        ],
    )
    .unwrap();
    b.output("y", DType::F32, &fixed(&[2, 6, 5, 5])).unwrap();
    save(dir, "conv.onnx", b)
}

/// x f32[1,2,3] → Mul by k f32[2,1] (broadcast) → Relu → output named `a/b:c`.
fn odd_name_model(dir: &Path) -> PathBuf {
    let mut b = ModelBuilder::new(17);
    b.input("x", DType::F32, &fixed(&[1, 2, 3])).unwrap();
    b.initializer("k", &f32_tensor(&[2, 1], vec![2.0, -0.5]))
        .unwrap();
    b.node("Mul", "mul", &["x", "k"], &["m"], &[]).unwrap();
    b.node("Relu", "relu", &["m"], &["a/b:c"], &[]).unwrap();
    b.output("a/b:c", DType::F32, &fixed(&[1, 2, 3])).unwrap();
    save(dir, "odd.onnx", b)
}

#[test]
fn check_accepts_a_supported_model() {
    let d = tempdir();
    let m = grouped_conv_model(d.path());
    let o = dync_expect(0, &[Path::new("check"), &m]);
    assert!(o.stdout.contains("ok"), "{}", o.stdout);
    assert!(o.stdout.contains(&m.display().to_string()), "{}", o.stdout);
}

#[test]
fn check_lists_every_unsupported_op_and_attribute_at_once() {
    let d = tempdir();
    let mut b = ModelBuilder::new(17);
    b.input("x", DType::F32, &fixed(&[1, 1, 4, 4])).unwrap();
    b.input("boxes", DType::F32, &fixed(&[1, 4, 4])).unwrap();
    b.initializer("w", &f32_tensor(&[1, 1, 1, 1], vec![1.0]))
        .unwrap();
    b.node("Loop", "the_loop", &["", ""], &["l"], &[]).unwrap();
    b.node(
        "NonMaxSuppression",
        "the_nms",
        &["boxes", "boxes"],
        &["n"],
        &[],
    )
    .unwrap();
    b.node(
        "Conv",
        "the_conv",
        &["x", "w"],
        &["y"],
        &[Attr::string("padding_mode", "circular")],
    )
    .unwrap();
    b.output("y", DType::F32, &fixed(&[1, 1, 4, 4])).unwrap();
    let m = save(d.path(), "unsupported.onnx", b);
    let o = dync_expect(1, &[Path::new("check"), &m]);
    for want in [
        "3 unsupported",
        "\"the_loop\" (Loop)",
        "op Loop",
        "\"the_nms\" (NonMaxSuppression)",
        "op NonMaxSuppression",
        "\"the_conv\" (Conv)",
        "attribute `padding_mode`",
    ] {
        assert!(o.stdout.contains(want), "no {want:?} in:\n{}", o.stdout);
    }
}

#[test]
fn inspect_json_counts_a_grouped_conv_by_hand() {
    let d = tempdir();
    let m = grouped_conv_model(d.path());
    let o = dync_expect(0, &[Path::new("inspect"), &m, Path::new("--json")]);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", o.stdout));
    // MACs = N·O·H'·W'·(C/group)·kh·kw; parameters = weight + bias elements.
    let (n, out_c, hw, c_per_group, k) = (2u64, 6u64, 5u64, 2u64, 3u64);
    let macs = n * out_c * hw * hw * c_per_group * k * k;
    assert_eq!(macs, 5400);
    assert_eq!(v["macs_onnx"], macs, "{v}");
    assert_eq!(v["macs"], macs, "{v}");
    assert_eq!(v["params"], 6 * 2 * 3 * 3 + 6, "{v}");
    assert_eq!(v["ops"], serde_json::json!({"Conv": 1}), "{v}");
    assert_eq!(v["dynamic_convs"], 0, "{v}");
    assert_eq!(
        v["inputs"],
        serde_json::json!([{"name": "x", "dtype": "f32", "shape": [2, 4, 9, 9]}]),
        "{v}"
    );
    assert_eq!(
        v["outputs"],
        serde_json::json!([{"name": "y", "dtype": "f32", "shape": [2, 6, 5, 5]}]),
        "{v}"
    );
}

#[test]
fn inspect_print_ir_is_parseable_ir_text() {
    let d = tempdir();
    let m = grouped_conv_model(d.path());
    let o = dync_expect(0, &[Path::new("inspect"), &m, Path::new("--print-ir")]);
    let g = dync::ir::parse(&o.stdout)
        .unwrap_or_else(|e| panic!("dync_ir::parse rejects the IR ({e}):\n{}", o.stdout));
    if let Err(errors) = dync::ir::verify(&g) {
        panic!("the parsed IR does not verify: {errors:?}\n{}", o.stdout);
    }
    assert!(o.stdout.contains("conv"), "{}", o.stdout);
    assert_eq!(g.outputs.len(), 1);
    assert_eq!(g.ty(g.outputs[0].1).shape, [2, 6, 5, 5]);
}

#[test]
fn run_writes_sanitized_outputs_with_both_engines() {
    let d = tempdir();
    let m = odd_name_model(d.path());
    let x = d.path().join("x.npy");
    let xs = vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0];
    write_f32(&x, &[1, 2, 3], xs.clone());
    // y[c, i] = relu(x[c, i] · k[c]) with k = [2, -0.5].
    let want: Vec<f32> = xs
        .iter()
        .enumerate()
        .map(|(i, &v)| (v * if i < 3 { 2.0 } else { -0.5 }).max(0.0))
        .collect();
    for engine in ["interp", "jit"] {
        let out = d.path().join(engine);
        let mut input = std::ffi::OsString::from("x=");
        input.push(&x);
        let o = dync_expect(
            0,
            &[
                "run".as_ref(),
                m.as_os_str(),
                "--engine".as_ref(),
                engine.as_ref(),
                "--input".as_ref(),
                input.as_os_str(),
                "--output-dir".as_ref(),
                out.as_os_str(),
            ],
        );
        let file = out.join("a_b_c.npy");
        assert!(
            file.is_file(),
            "{engine}: no {}:\n{}",
            file.display(),
            o.all()
        );
        let (shape, got) = read_f32(&file);
        assert_eq!(shape, [1, 2, 3], "{engine}");
        assert_eq!(got, want, "{engine}");
        assert!(
            !o.stderr.contains("seed"),
            "{engine}: random inputs used:\n{}",
            o.stderr
        );
    }
}

#[test]
fn random_inputs_print_their_seed_and_repeat_with_it() {
    let d = tempdir();
    let m = odd_name_model(d.path());
    let run = |seed: &str, dir: &str| {
        let out = d.path().join(dir);
        let o = dync_expect(
            0,
            &[
                "run".as_ref(),
                m.as_os_str(),
                "--engine".as_ref(),
                "interp".as_ref(),
                "--seed".as_ref(),
                seed.as_ref(),
                "--output-dir".as_ref(),
                out.as_os_str(),
            ],
        );
        assert!(
            o.stderr.contains(&format!("seed {seed}")),
            "the seed is not printed:\n{}",
            o.stderr
        );
        read_f32(&out.join("a_b_c.npy")).1
    };
    let a = run("7", "a");
    assert_eq!(a, run("7", "b"), "the same seed gives other inputs");
    assert_ne!(a, run("8", "c"), "another seed gives the same inputs");
}

#[test]
fn compare_reports_errors_and_exits_3_on_a_mismatch() {
    let d = tempdir();
    let m = odd_name_model(d.path());
    let out = d.path().join("out");
    let args = |reference: &Path| -> Vec<std::ffi::OsString> {
        [
            "run".as_ref(),
            m.as_os_str(),
            "--engine".as_ref(),
            "interp".as_ref(),
            "--output-dir".as_ref(),
            out.as_os_str(),
            "--compare".as_ref(),
            reference.as_os_str(),
        ]
        .iter()
        .map(|s| s.to_os_string())
        .collect()
    };
    // A first run gives the reference; comparing with it is exact.
    let ok_ref = d.path().join("ref_ok.npy");
    dync_expect(
        0,
        &[
            "run".as_ref(),
            m.as_os_str(),
            "--engine".as_ref(),
            "interp".as_ref(),
            "--output-dir".as_ref(),
            out.as_os_str(),
        ],
    );
    std::fs::copy(out.join("a_b_c.npy"), &ok_ref).unwrap_or_else(|e| panic!("{e}"));
    let o = dync_expect(0, &args(&ok_ref));
    assert!(o.stdout.contains("max abs error 0e0"), "{}", o.stdout);
    // The same values plus 0.5 at one element: max abs error 0.5, exit 3.
    let (shape, mut v) = read_f32(&ok_ref);
    v[4] += 0.5;
    let bad_ref = d.path().join("ref_bad.npy");
    write_f32(&bad_ref, &shape, v);
    let o = dync_expect(3, &args(&bad_ref));
    assert!(o.stdout.contains("max abs error 5e-1"), "{}", o.stdout);
    assert!(o.stdout.contains("mismatch"), "{}", o.stdout);
    // A reference of another shape is an error (exit 1), naming the file.
    let wrong = d.path().join("ref_shape.npy");
    write_f32(&wrong, &[6], vec![0.0; 6]);
    let o = dync_expect(1, &args(&wrong));
    assert!(o.stderr.contains("ref_shape.npy"), "{}", o.stderr);
}

#[test]
fn zoo_list_names_every_network() {
    let o = dync_expect(0, &["zoo", "list"]);
    for n in dync::zoo::networks() {
        assert!(
            o.stdout.contains(n.name),
            "{} missing:\n{}",
            n.name,
            o.stdout
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    dync_expect(2, &["check"]);
    dync_expect(2, &["frobnicate"]);
    dync_expect(2, &["run", "model.onnx", "--engine", "warp"]);
}

/// A dynamic network of the zoo: `check` accepts it, `inspect` finds as many dynamic convs as
/// the zoo wrote, and the JIT agrees with the interpreter on it (`--compare`).
#[test]
fn zoo_dynamic_network_checks_inspects_and_runs() {
    let d = tempdir();
    let options = dync::zoo::Options {
        height: 32,
        width: 32,
        ..Default::default()
    };
    let built =
        dync::zoo::build("dy-mobilenetv3-small", &options).unwrap_or_else(|e| panic!("{e}"));
    let m = d.path().join("dy.onnx");
    std::fs::write(&m, prost::Message::encode_to_vec(&built.model))
        .unwrap_or_else(|e| panic!("{e}"));
    dync_expect(0, &[Path::new("check"), &m]);
    let o = dync_expect(0, &[Path::new("inspect"), &m, Path::new("--json")]);
    let v: serde_json::Value =
        serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}"));
    assert!(built.dynamic_convs > 0);
    assert_eq!(v["dynamic_convs"], built.dynamic_convs, "{v}");
    let interp = d.path().join("interp");
    let jit = d.path().join("jit");
    for (engine, out) in [("interp", &interp), ("jit", &jit)] {
        dync_expect(
            0,
            &[
                "run".as_ref(),
                m.as_os_str(),
                "--engine".as_ref(),
                engine.as_ref(),
                "--output-dir".as_ref(),
                out.as_os_str(),
            ],
        );
    }
    let files: Vec<_> = std::fs::read_dir(&interp)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let (_, a) = read_f32(&interp.join(&files[0]));
    let (_, b) = read_f32(&jit.join(&files[0]));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-4 + 1e-3 * y.abs(),
            "jit {y} vs interp {x}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The bad-input fixture suite through the binary.

/// `run MODEL --engine E --input N=F... --output-dir OUT`.
fn run_args(case: &fixtures::Case, engine: &str, out: &Path) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec![
        "run".into(),
        case.model.clone().into(),
        "--engine".into(),
        engine.into(),
        "--output-dir".into(),
        out.into(),
    ];
    for (name, file) in &case.inputs {
        let mut spec = std::ffi::OsString::from(format!("{name}="));
        spec.push(file);
        a.push("--input".into());
        a.push(spec);
    }
    a
}

fn check_args(case: &fixtures::Case) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["check".into(), case.model.clone().into()];
    for (name, dims) in &case.input_shapes {
        let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        a.push("--input-shape".into());
        a.push(format!("{name}={}", dims.join("x")).into());
    }
    a
}

/// The outputs `dync run` wrote into `dir`, by file name.
fn outputs(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let (shape, data) = read_f32(&e.path());
            (e.file_name().to_string_lossy().into_owned(), shape, data)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Same files, shapes, NaN and infinities; numbers within atol 1e-4 + rtol 1e-3.
fn same_outputs(
    a: &[(String, Vec<usize>, Vec<f32>)],
    b: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} vs {} outputs", a.len(), b.len()));
    }
    for ((na, sa, va), (nb, sb, vb)) in a.iter().zip(b) {
        if na != nb || sa != sb {
            return Err(format!("{na} {sa:?} vs {nb} {sb:?}"));
        }
        for (i, (x, y)) in va.iter().zip(vb).enumerate() {
            let same = if x.is_nan() || y.is_nan() || x.is_infinite() || y.is_infinite() {
                x.is_nan() && y.is_nan() || x == y
            } else {
                (x - y).abs() <= 1e-4 + 1e-3 * y.abs()
            };
            if !same {
                return Err(format!("{na}[{i}]: {x} vs {y}"));
            }
        }
    }
    Ok(())
}

/// Runs one fixture case through the binary; `Err` describes what went wrong.
fn check_case_cli(case: &fixtures::Case, scratch: &Path) -> Result<(), String> {
    use fixtures::Expect;
    let interp_out = scratch.join("interp");
    let jit_out = scratch.join("jit");
    match &case.expect {
        Expect::Err { names, .. } => {
            let runs: Vec<Vec<std::ffi::OsString>> = if case.inputs.is_empty() {
                vec![check_args(case)]
            } else {
                vec![
                    run_args(case, "interp", &interp_out),
                    run_args(case, "jit", &jit_out),
                ]
            };
            for args in runs {
                let o = dync(&args);
                let all = o.all();
                if std::env::var_os("DYNC_SHOW_OUTPUT").is_some() {
                    println!("== {} (exit {}): {all}", case.label, o.code);
                }
                if o.code != 1 {
                    return Err(format!("{args:?} exited {}, expected 1:\n{all}", o.code));
                }
                let file = case.blame.display().to_string();
                let missing: Vec<&str> = std::iter::once(file.as_str())
                    .chain(names.iter().map(String::as_str))
                    .filter(|n| !all.contains(n))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "{args:?}: output does not name {missing:?}:\n{all}"
                    ));
                }
                if all.contains('\u{1b}') {
                    return Err(format!("{args:?}: raw ESC in the output: {all:?}"));
                }
            }
            Ok(())
        }
        expect => {
            let o = dync(&check_args(case));
            if o.code != 0 || !o.stdout.contains("ok") {
                return Err(format!("check exited {}:\n{}", o.code, o.all()));
            }
            let mut first_output = None;
            for (engine, out) in [("interp", &interp_out), ("jit", &jit_out)] {
                let args = run_args(case, engine, out);
                let o = dync(&args);
                if o.code != 0 {
                    return Err(format!("{args:?} exited {}:\n{}", o.code, o.all()));
                }
                // `wrote PATH TYPE`, one line per output in graph order.
                first_output = first_output.or_else(|| {
                    let line = o.stdout.lines().find(|l| l.starts_with("wrote "))?;
                    let rest = line.strip_prefix("wrote ")?;
                    Some(PathBuf::from(rest.rsplit_once(' ')?.0))
                });
            }
            let (a, b) = (outputs(&interp_out), outputs(&jit_out));
            same_outputs(&a, &b).map_err(|e| format!("jit differs from interp: {e}"))?;
            if let Expect::Nonfinite = expect {
                let nonfinite = a
                    .iter()
                    .flat_map(|o| &o.2)
                    .filter(|v| !v.is_finite())
                    .count();
                if nonfinite == 0 {
                    return Err("no NaN or Inf in the outputs".into());
                }
                // `--compare` treats equal infinities and NaN against NaN as matching.
                let Some(reference) = first_output else {
                    return Err("dync run printed no `wrote` line".into());
                };
                let mut args = run_args(case, "jit", &scratch.join("compare"));
                args.push("--compare".into());
                args.push(reference.into());
                let o = dync(&args);
                if o.code != 0 {
                    return Err(format!("{args:?} exited {}:\n{}", o.code, o.all()));
                }
            }
            if let Expect::SameAs(inputs) = expect {
                let mut reference = case.clone();
                reference.inputs = inputs.clone();
                let ref_out = scratch.join("reference");
                let args = run_args(&reference, "interp", &ref_out);
                let o = dync(&args);
                if o.code != 0 {
                    return Err(format!("{args:?} exited {}:\n{}", o.code, o.all()));
                }
                let r = outputs(&ref_out);
                if r != a {
                    return Err("outputs differ from the reference inputs' outputs".into());
                }
            }
            Ok(())
        }
    }
}

#[test]
fn every_bad_input_fixture_through_the_binary() {
    let d = tempdir();
    let only = std::env::var("DYNC_FIXTURE").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for f in fixtures::all() {
        if only.as_deref().is_some_and(|o| o != f.name) {
            continue;
        }
        let dir = d.path().join(f.name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for (i, mut case) in (f.make)(&dir)
            .into_iter()
            .enumerate()
            .filter(|(_, c)| c.cli)
        {
            case.label = format!("{}@{}", f.name, case.label);
            let scratch = dir.join(format!("out{i}"));
            ran += 1;
            if let Err(e) = check_case_cli(&case, &scratch) {
                failures.push(format!("{}: {e}", case.label));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn run_rejects_batch_with_the_interpreter() {
    let d = tempdir();
    let m = grouped_conv_model(d.path());
    let o = dync(&[
        "run".as_ref(),
        m.as_os_str(),
        "--engine".as_ref(),
        "interp".as_ref(),
        "--batch".as_ref(),
        "3".as_ref(),
    ]);
    assert_ne!(o.code, 0, "--batch with the interpreter ran:\n{}", o.stdout);
    assert!(
        o.stderr.contains("--batch needs the jit engine"),
        "unclear error:\n{}",
        o.stderr
    );
}
