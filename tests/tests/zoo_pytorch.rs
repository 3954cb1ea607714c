//! The zoo against its PyTorch reference (`examples/pytorch/`).
//!
//! - One test per zoo network: dync's Rust zoo (`dync::zoo::export`) writes the network for
//!   every export form and exporter style at a small size (64×64; FCNs 64×128), and
//!   `zoo_reference.py check` loads each file's initializers into the PyTorch network, exports
//!   that through PyTorch's real exporter and requires the same normalized op sequence and the
//!   same outputs (onnxruntime on both, atol 1e-4 + rtol 1e-3). Dynamic networks: `mix` at
//!   batch 1 and 2, `train` at a dynamic batch; static networks: batch 2 and dynamic (the form
//!   does not change a static network's graph). Each configuration's one-line summary goes to
//!   stderr (`--nocapture` shows the matrix). Cost: the dynamo exporter dominates (25–120 s per
//!   export on a loaded 2-core machine, legacy 2–25 s); the whole file took 29 min wall and
//!   18 min CPU with two test threads.
//! - Digits: `train_digits.py` trains a small dy-CNN on scikit-learn's digits (cached under
//!   `<fixtures>/digits`, retrained only when the script or `dynet/dyconv.py` changes) and
//!   exports it in the mix form at batch 1 and at the test-set batch; dync imports both and the
//!   reference interpreter must reach PyTorch's test accuracy with the same predictions (a
//!   different class only at a tie of PyTorch's logits within 1e-5) and logits within
//!   atol 1e-4 + rtol 1e-3.
//!
//! Python is never a reason to skip: `dync_tests::venv_python` builds a missing venv.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dync::zoo::{self, Batch, Exporter, Form, Options};
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model, Limits};
use dync_tests::{
    assert_close, check_same_top1, fixtures_dir, read_npy, read_npy_f32, repo_root, top1,
    venv_python,
};
use serde_json::Value;

fn script(name: &str) -> PathBuf {
    repo_root().join("examples/pytorch").join(name)
}

/// Runs a Python script of `examples/pytorch` in the venv; (status code, stdout, stderr).
fn python(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(venv_python());
    cmd.args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The export configurations checked for a network.
fn configs(dynamic: bool, (height, width): (usize, usize)) -> Vec<Options> {
    let shapes: &[(Form, Batch)] = if dynamic {
        &[
            (Form::Mix, Batch::Fixed(1)),
            (Form::Mix, Batch::Fixed(2)),
            (Form::Train, Batch::Dynamic),
        ]
    } else {
        &[(Form::Mix, Batch::Fixed(2)), (Form::Mix, Batch::Dynamic)]
    };
    [Exporter::Legacy, Exporter::Dynamo]
        .into_iter()
        .flat_map(|exporter| {
            shapes.iter().map(move |&(form, batch)| Options {
                batch,
                form,
                exporter,
                height,
                width,
                ..Options::default()
            })
        })
        .collect()
}

/// A short description of one summary line for the test's log.
fn describe(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    let b = |k: &str| v[k].as_bool().unwrap_or(false);
    let diff = &v["outputs"]["torch_onnx_vs_rust_onnx"]["max_abs"];
    format!(
        "{} {} {} b{} ({}): ok={} compute_equal={} exact={} max|diff|={} export={}s",
        s("network"),
        s("form"),
        s("exporter"),
        s("batch"),
        s("mixing"),
        b("ok"),
        b("compute_equal"),
        b("exact"),
        diff,
        v["times_s"]["torch_export"],
    )
}

fn check_network(name: &str) {
    let network = zoo::find(name).unwrap_or_else(|e| panic!("{e}"));
    let size = if network.task == zoo::Task::Segmentation {
        (64, 128)
    } else {
        (64, 64)
    };
    let dir = tempfile::Builder::new()
        .prefix("dync-zoo-pytorch-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let mut args: Vec<std::ffi::OsString> = vec![script("zoo_reference.py").into(), "check".into()];
    let configs = configs(network.dynamic, size);
    for o in &configs {
        let bytes = zoo::export(name, o).unwrap_or_else(|e| panic!("{name} {o:?}: {e}"));
        let file = dir.path().join(format!(
            "{name}-{}-{}-b{}.onnx",
            o.form, o.exporter, o.batch
        ));
        std::fs::write(&file, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        args.push("--rust-onnx".into());
        args.push(file.into());
    }
    args.push("--out".into());
    args.push(dir.path().join("out").into());
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (code, stdout, stderr) = python(&refs);
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad summary {l:?}: {e}")))
        .collect();
    for v in &lines {
        eprintln!("{}", describe(v));
    }
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|v| v["ok"] != Value::Bool(true))
        .collect();
    assert!(
        code == Some(0) && failed.is_empty() && lines.len() == configs.len(),
        "{name}: zoo_reference.py exited {code:?} with {} of {} summaries, failures:\n{}\n\
         --- stderr (tail) ---\n{}",
        lines.len(),
        configs.len(),
        failed
            .iter()
            .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&stderr, 40)
    );
}

/// The op-sequence check has teeth: the same network and weights, built in PyTorch with another
/// mixing op (MatMul instead of the file's Einsum), computes the same outputs but must fail on
/// its compute sequence.
#[test]
fn a_different_mixing_chain_is_rejected() {
    let dir = tempfile::Builder::new()
        .prefix("dync-zoo-pytorch-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let o = Options {
        batch: Batch::Fixed(2),
        height: 32,
        width: 32,
        mixing: Some(zoo::Mixing::Einsum),
        ..Options::default()
    };
    let file = dir.path().join("dy-mobile.onnx");
    let bytes = zoo::export("dy-mobile", &o).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    let out = dir.path().join("out");
    let script = script("zoo_reference.py");
    let args: [&std::ffi::OsStr; 8] = [
        script.as_ref(),
        "check".as_ref(),
        "--rust-onnx".as_ref(),
        file.as_ref(),
        "--torch-mixing".as_ref(),
        "matmul".as_ref(),
        "--out".as_ref(),
        out.as_ref(),
    ];
    let (code, stdout, stderr) = python(&args);
    let v: Value = stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary; stderr:\n{}", tail(&stderr, 40)));
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], Value::Bool(false), "{v}");
    assert_eq!(v["compute_equal"], Value::Bool(false), "{v}");
    let chunks = v["compute_diff"]["chunks"].to_string();
    assert!(
        chunks.contains("Einsum") && chunks.contains("MatMul"),
        "{chunks}"
    );
    // The function is the same: only the chain differs.
    assert_eq!(
        v["outputs"]["torch_onnx_vs_rust_onnx"]["ok"],
        Value::Bool(true),
        "{v}"
    );
}

dync_tests::zoo_network_tests!(check_network);

// ---- digits ---------------------------------------------------------------------------------

/// The trained digits fixture (trained once per script version).
fn digits_dir() -> PathBuf {
    let dir = fixtures_dir().join("digits");
    let out = dir.as_os_str();
    let script = script("train_digits.py");
    let (code, stdout, stderr) = python(&[script.as_os_str(), "--out".as_ref(), out]);
    assert_eq!(
        code,
        Some(0),
        "train_digits.py failed:\n{}\n--- stderr (tail) ---\n{}",
        stdout,
        tail(&stderr, 40)
    );
    dir
}

/// A model imported into dync's IR.
fn load_graph(model: &Path) -> dync_ir::Graph {
    let m = load_model(model, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    import(&m, &ImportOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", model.display()))
        .graph
}

/// The reference interpreter's first output (the logits) for input `x` of `shape`.
fn run_logits(g: &dync_ir::Graph, shape: &[usize], x: &[f32]) -> Vec<f32> {
    let t = dync_ir::Tensor::from_f32(shape.to_vec(), x.to_vec()).unwrap_or_else(|e| panic!("{e}"));
    let out = dync_interp::run(g, &[t]).unwrap_or_else(|e| panic!("{e}"));
    match out.first().and_then(|t| t.as_f32()) {
        Some(v) => v.to_vec(),
        None => panic!("the digits model has no f32 output"),
    }
}

#[test]
fn digits_accuracy_matches_pytorch() {
    const CLASSES: usize = 10;
    let dir = digits_dir();
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("result.json"))
            .unwrap_or_else(|e| panic!("cannot read result.json: {e}")),
    )
    .unwrap_or_else(|e| panic!("result.json: {e}"));
    let (xshape, x) = read_npy_f32(&dir.join("x_test.npy"));
    let (_, labels) = read_npy::<i64>(&dir.join("y_test.npy"));
    let (lshape, torch_logits) = read_npy_f32(&dir.join("logits_torch.npy"));
    let n = xshape[0];
    assert_eq!(xshape, [n, 1, 8, 8]);
    assert_eq!(lshape, [n, CLASSES]);
    assert_eq!(labels.len(), n);

    // The whole test set through the batch-as-groups model, then image by image at batch 1.
    let batched = run_logits(&load_graph(&dir.join("model_test.onnx")), &xshape, &x);
    let g1 = load_graph(&dir.join("model_b1.onnx"));
    let single: Vec<f32> = x
        .chunks_exact(64)
        .flat_map(|image| run_logits(&g1, &[1, 1, 8, 8], image))
        .collect();

    let predict = |logits: &[f32]| top1(&lshape, logits).unwrap_or_else(|e| panic!("{e}"));
    let correct = |pred: &[usize]| {
        pred.iter()
            .zip(&labels)
            .filter(|(&p, &y)| i64::try_from(p) == Ok(y))
            .count()
    };
    let torch_pred = predict(&torch_logits);
    let torch_correct = correct(&torch_pred);
    let torch_acc = torch_correct as f64 / n as f64;
    let recorded = result["accuracy"]["torch"].as_f64().unwrap_or(-1.0);
    assert!(
        (torch_acc - recorded).abs() < 1e-12,
        "fixture: logits_torch.npy gives {torch_acc}, result.json {recorded}"
    );
    assert!(
        torch_acc >= 0.95,
        "the trained model reaches only {torch_acc}"
    );
    for (what, logits) in [
        ("batch-as-groups model", &batched),
        ("batch-1 model", &single),
    ] {
        assert_close(
            logits,
            &torch_logits,
            1e-4,
            1e-3,
            &format!("digits {what} logits"),
        );
        if let Err(msg) = check_same_top1(logits, &torch_logits, &lshape, 1e-5, 0.0) {
            panic!("digits {what}: predictions differ from PyTorch's beyond ties: {msg}");
        }
        let pred = predict(logits);
        let flips = pred.iter().zip(&torch_pred).filter(|(a, b)| a != b).count();
        let dync_correct = correct(&pred);
        assert!(
            dync_correct.abs_diff(torch_correct) <= flips,
            "digits {what}: dync {dync_correct}/{n} correct, PyTorch {torch_correct}/{n}"
        );
        eprintln!(
            "digits {what}: dync {:.4} ({dync_correct}/{n}), PyTorch {torch_acc:.4}, \
             onnxruntime b1 {} / test batch {}, {flips} tie flips",
            dync_correct as f64 / n as f64,
            result["accuracy"]["onnxruntime_b1"],
            result["accuracy"]["onnxruntime_test"],
        );
    }
}
