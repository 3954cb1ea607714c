//! The bad-input fixture suite (`tests/bad-inputs/fixtures.rs`) through the library: every case
//! is loaded, checked, imported, verified and (when it has inputs or must succeed) interpreted,
//! in its own thread under `catch_unwind` with a timeout, so a panic or a hang is reported
//! against the fixture instead of taking the run down. An abort (stack overflow, failed
//! allocation) still ends the process, which fails the test as well.
//!
//! For each case: an expected error must have one of the expected kinds and a message naming the
//! case's file and every expected name; an expected success must run, and NaN/Inf outputs must
//! sit exactly where onnxruntime puts them. The CLI runs the same cases in
//! `compiler/tests/cli.rs`.
//!
//! Errors of `dync run`'s own steps (an input file that does not fit the model, an interpreter
//! error) are formed here as `dync run` forms them, with the file prefixed: the interpreter does
//! not know files. The CLI test checks the real messages.

#[path = "../bad-inputs/fixtures.rs"]
mod fixtures;

use dync_ir::{DType, Tensor, TensorData, TensorType};
use dync_onnx::import::{self, ImportOptions};
use dync_onnx::{load_model, ErrorKind, ImportError, Limits};
use dync_runtime::npy::{read_npy, NpyData};
use fixtures::{Case, Expect};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Longest a single case may take in a debug build before it counts as a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest `.npy` input read, as in `dync run`.
const MAX_INPUT_BYTES: u64 = 4 << 30;

/// An error as the runner saw it: its kind (see [`Expect::Err`]) and full message.
#[derive(Debug)]
struct Failure {
    kind: String,
    message: String,
}

/// The variant name of an enum value from its `Debug` form (`Node { .. }` → `Node`).
fn variant(debug: String) -> String {
    debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn import_failure(e: ImportError) -> Failure {
    Failure {
        kind: variant(format!("{:?}", e.kind())),
        message: e.to_string(),
    }
}

/// Loads, checks, imports and verifies the case's model, then runs it on the case's inputs
/// (random ones for the inputs not given) when it has inputs or must succeed.
fn run_case(case: &Case) -> Result<Vec<(String, Tensor)>, Failure> {
    let m = load_model(&case.model, &Limits::default()).map_err(import_failure)?;
    let mut given = Vec::new();
    for (name, file) in &case.inputs {
        let arr = read_npy(file, MAX_INPUT_BYTES).map_err(|e| Failure {
            kind: format!("Npy/{}", variant(format!("{:?}", e.kind))),
            message: e.to_string(),
        })?;
        given.push((name.clone(), file.clone(), npy_tensor(arr)));
    }
    let opts = ImportOptions {
        input_shapes: case.input_shapes.iter().cloned().collect(),
        ..Default::default()
    };
    let unsupported = import::check(&m, &opts).map_err(import_failure)?;
    if !unsupported.is_empty() {
        return Err(import_failure(m.error(ErrorKind::Unsupported(unsupported))));
    }
    let imp = import::import(&m, &opts).map_err(import_failure)?;
    let g = &imp.graph;
    if let Err(errors) = dync_ir::verify(g) {
        return Err(Failure {
            kind: "Verify".into(),
            message: format!("the imported graph does not verify: {errors:?}"),
        });
    }
    let must_run = !case.inputs.is_empty() || !matches!(case.expect, Expect::Err { .. });
    if !must_run {
        return Ok(Vec::new());
    }
    let mut inputs = Vec::new();
    for (k, (name, id)) in g.inputs.iter().enumerate() {
        let ty = g.ty(*id);
        let t = match given.iter().position(|(n, _, _)| n == name) {
            Some(i) => {
                let (_, file, t) = given.remove(i);
                if t.ty() != *ty {
                    return Err(Failure {
                        kind: "Input".into(),
                        message: format!(
                            "{}: input {name:?}: the file holds {} but the model takes {ty}",
                            file.display(),
                            t.ty()
                        ),
                    });
                }
                t
            }
            None => deterministic(ty, k),
        };
        inputs.push(t);
    }
    let outputs = dync_interp::run(g, &inputs).map_err(|e| Failure {
        kind: "Eval".into(),
        message: format!("{}: {e}", case.model.display()),
    })?;
    Ok(g.outputs
        .iter()
        .map(|(n, _)| n.clone())
        .zip(outputs)
        .collect())
}

fn npy_tensor(a: dync_runtime::npy::NpyArray) -> Tensor {
    let data = match a.data {
        NpyData::F32(v) => TensorData::F32(v),
        NpyData::I64(v) => TensorData::I64(v),
        NpyData::I32(v) => TensorData::I32(v),
        NpyData::Bool(v) => TensorData::Bool(v),
    };
    match Tensor::new(a.shape, data) {
        Ok(t) => t,
        Err(e) => panic!("read_npy returned an array whose shape does not fit its data: {e}"),
    }
}

/// A reproducible input of type `ty` (the `k`-th graph input).
fn deterministic(ty: &TensorType, k: usize) -> Tensor {
    let n = match ty.numel() {
        Ok(n) => n,
        Err(e) => panic!("an imported input type has no element count: {e}"),
    };
    let data = match ty.dtype {
        DType::F32 => TensorData::F32(fixtures::values(n, k as f32)),
        DType::I64 => TensorData::I64(vec![0; n]),
        DType::I32 => TensorData::I32(vec![0; n]),
        DType::Bool => TensorData::Bool(vec![false; n]),
    };
    match Tensor::new(ty.shape.clone(), data) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `case` in its own thread: `Err` on a panic or a timeout.
fn run_guarded(case: &Case) -> Result<Result<Vec<(String, Tensor)>, Failure>, String> {
    let (tx, rx) = mpsc::channel();
    let c = case.clone();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(|| run_case(&c)));
        // The receiver may have given up (timeout); nothing to do then.
        let _ = tx.send(r);
    });
    match rx.recv_timeout(CASE_TIMEOUT) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(payload)) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("PANICKED: {msg}"))
        }
        Err(_) => Err(format!("HUNG: no result after {CASE_TIMEOUT:?}")),
    }
}

/// Checks one case against its expectation; `Err` describes the mismatch.
fn check_case(case: &Case) -> Result<(), String> {
    let result = run_guarded(case)?;
    match (&case.expect, result) {
        (Expect::Err { kinds, names }, Err(f)) => {
            if !kinds.contains(&f.kind.as_str()) {
                return Err(format!(
                    "error kind {} (expected {kinds:?}): {}",
                    f.kind, f.message
                ));
            }
            let file = case.blame.display().to_string();
            let missing: Vec<&str> = std::iter::once(file.as_str())
                .chain(names.iter().map(String::as_str))
                .filter(|n| !f.message.contains(n))
                .collect();
            if !missing.is_empty() {
                return Err(format!("message does not name {missing:?}: {}", f.message));
            }
            if f.message.contains('\u{1b}') || f.message.contains('\0') {
                return Err(format!(
                    "message holds raw control characters: {:?}",
                    f.message
                ));
            }
            Ok(())
        }
        (Expect::Err { kinds, .. }, Ok(_)) => Err(format!("succeeded; expected {kinds:?}")),
        (_, Err(f)) => Err(format!("failed with {}: {}", f.kind, f.message)),
        (Expect::Ok, Ok(_)) => Ok(()),
        (Expect::SameAs(inputs), Ok(got)) => {
            let mut reference = case.clone();
            reference.inputs = inputs.clone();
            reference.expect = Expect::Ok;
            let want = run_guarded(&reference)?
                .map_err(|f| format!("the reference run failed: {}", f.message))?;
            if got != want {
                return Err("outputs differ from the reference inputs' outputs".into());
            }
            Ok(())
        }
        (Expect::Nonfinite, Ok(got)) => check_against_ort(case, &got),
    }
}

/// Compares the interpreter's outputs with onnxruntime's: NaN where ORT has NaN, the same
/// infinities, close elsewhere; and the fixture must really produce NaN and Inf.
fn check_against_ort(case: &Case, got: &[(String, Tensor)]) -> Result<(), String> {
    let ort = dync_tests::ort_run(&case.model, &case.inputs);
    let (mut nans, mut infs) = (0, 0);
    let mut errors = Vec::new();
    for ((name, t), (ort_name, file)) in got.iter().zip(&ort.outputs) {
        if name != ort_name {
            return Err(format!(
                "output order differs: {name} vs onnxruntime's {ort_name}"
            ));
        }
        let (shape, want) = dync_tests::read_npy_f32(file);
        if t.shape() != shape.as_slice() {
            return Err(format!(
                "{name}: shape {:?}, onnxruntime {shape:?}",
                t.shape()
            ));
        }
        let Some(have) = t.as_f32() else {
            return Err(format!("{name}: not f32"));
        };
        if let Err(e) = dync_tests::check_close(have, &want, 1e-5, 1e-4) {
            errors.push(format!("{name}: {e}\n  dync {have:?}\n  ort  {want:?}"));
        }
        nans += want.iter().filter(|v| v.is_nan()).count();
        infs += want.iter().filter(|v| v.is_infinite()).count();
    }
    if got.len() != ort.outputs.len() || nans == 0 || infs == 0 {
        errors.push(format!(
            "{} outputs vs onnxruntime's {}; onnxruntime gave {nans} NaN and {infs} Inf",
            got.len(),
            ort.outputs.len()
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Generates every fixture into `root/<name>/`; (fixture name, case) pairs.
fn generate(root: &Path) -> Vec<(&'static str, Case)> {
    fixtures::all()
        .into_iter()
        .flat_map(|f| {
            let dir = root.join(f.name);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                panic!("{}: {e}", dir.display());
            }
            (f.make)(&dir).into_iter().map(move |c| (f.name, c))
        })
        .collect()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dync-bad-inputs-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

#[test]
fn every_fixture_gives_its_error_without_panicking() {
    let dir = tempdir();
    let cases = generate(dir.path());
    let mut failures = Vec::new();
    let only = std::env::var("DYNC_FIXTURE").ok();
    for (name, case) in &cases {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        if let Err(e) = check_case(case) {
            let at = if case.label.is_empty() {
                String::new()
            } else {
                format!("@{}", case.label)
            };
            failures.push(format!("{name}{at}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    if only.is_none() {
        println!(
            "bad inputs: {} fixtures, {} cases, every one handled as expected",
            fixtures::all().len(),
            cases.len()
        );
    }
}

#[test]
fn there_are_at_least_40_uniquely_named_fixtures() {
    let names: Vec<&str> = fixtures::all().iter().map(|f| f.name).collect();
    assert!(names.len() >= 40, "only {} fixtures", names.len());
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        names.len(),
        "duplicate fixture names in {names:?}"
    );
}

/// The truncation oracle must predict every outcome somewhere, or the fixture tests less than it
/// claims.
#[test]
fn truncation_fixtures_reach_every_outcome() {
    let dir = tempdir();
    let fixtures = fixtures::all();
    for wanted in ["truncated-every-offset", "truncated-field-boundaries"] {
        let Some(f) = fixtures.iter().find(|f| f.name == wanted) else {
            panic!("no fixture {wanted}")
        };
        let sub = dir.path().join(format!("{wanted}-outcomes"));
        if let Err(e) = std::fs::create_dir_all(&sub) {
            panic!("{e}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in (f.make)(&sub) {
            seen.insert(match c.expect {
                Expect::Err { kinds, .. } => kinds.join("|"),
                Expect::Ok => "Ok".into(),
                _ => "other".into(),
            });
        }
        let want: std::collections::BTreeSet<String> =
            ["NotOnnx", "MissingGraph", "MissingOpset", "Ok"]
                .into_iter()
                .map(String::from)
                .collect();
        assert_eq!(seen, want, "{wanted}");
    }
}

const README_BEGIN: &str =
    "<!-- fixtures:begin (generated by tests/tests/bad_inputs.rs; DYNC_BLESS=1 rewrites) -->";
const README_END: &str = "<!-- fixtures:end -->";

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bad-inputs/README.md")
}

/// The README's fixture table, from the fixture list.
fn readme_table() -> String {
    let mut s = String::from("| # | fixture | asserts |\n|---|---|---|\n");
    for (i, f) in fixtures::all().iter().enumerate() {
        let asserts = f.asserts.replace('|', "\\|");
        s.push_str(&format!("| {} | `{}` | {asserts} |\n", i + 1, f.name));
    }
    s
}

#[test]
fn readme_lists_every_fixture() {
    let path = readme_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (Some(b), Some(e)) = (text.find(README_BEGIN), text.find(README_END)) else {
        panic!("{}: no fixture table markers", path.display())
    };
    let start = b + README_BEGIN.len() + 1;
    let table = readme_table();
    if std::env::var_os("DYNC_BLESS").is_some() {
        let new = format!("{}{table}{}", &text[..start], &text[e..]);
        if let Err(err) = std::fs::write(&path, new) {
            panic!("{}: {err}", path.display());
        }
        return;
    }
    assert_eq!(
        &text[start..e],
        table,
        "{} is out of date; rerun with DYNC_BLESS=1",
        path.display()
    );
}

/// Writes every fixture's files into `$DYNC_FIXTURES_OUT`: the seeds of the fuzz corpora (see
/// `fuzz/README.md`). Ignored unless asked for with `--ignored`.
#[test]
#[ignore = "writes the fixtures for the fuzz corpora into $DYNC_FIXTURES_OUT"]
fn write_fixtures() {
    let out = std::env::var_os("DYNC_FIXTURES_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("set DYNC_FIXTURES_OUT to the folder to write"));
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let cases = generate(&out);
    assert!(!cases.is_empty());
}
