//! Conformance: the ONNX backend node tests (generated from the installed `onnx` package's case
//! definitions by `examples/pytorch/onnx_node_tests.py`) run through dync's importer and reference interpreter, at the
//! suite's tolerances (rtol 1e-3, atol 1e-7).
//!
//! Every test whose ops are all in dync's registry is listed in `tests/onnx-node/node.txt` as
//! `pass` or `skip: <reason>`. The test fails when a `pass` test fails, when a `skip` test passes
//! (the list must stay honest) and when a relevant test is missing from the list.
//! `DYNC_BLESS=1` rewrites the list (keeping the reasons of tests that still fail).
//!
//! Inputs are fed at run time where dync allows it. Inputs that dync needs as compile-time
//! constants (shapes, axes, scales: "computed at run time" errors) are bound as initializers,
//! first all but the data input, then all.

use dync_ir::{Tensor, TensorData};
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::proto::{ModelProto, TensorProto};
use dync_onnx::tensor::{tensor_from_proto, TensorCtx};
use dync_onnx::{load_model_bytes, Limits};
use prost::Message;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

fn list_path() -> PathBuf {
    dync_tests::repo_root().join("tests/onnx-node/node.txt")
}

fn read_pb(path: &Path) -> Result<(TensorProto, Tensor), String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let proto =
        TensorProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))?;
    let limits = Limits::default();
    let t = tensor_from_proto(&proto, &TensorCtx::new(None, &limits)).map_err(|e| e.to_string())?;
    Ok((proto, t))
}

fn close(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() || got.shape() != want.shape() {
        return Err(format!("got {} but expected {}", got.ty(), want.ty()));
    }
    match (got.data(), want.data()) {
        (TensorData::F32(g), TensorData::F32(w)) => {
            for (i, (&a, &e)) in g.iter().zip(w).enumerate() {
                let ok = (a.is_nan() && e.is_nan())
                    || a == e
                    || ((a as f64) - (e as f64)).abs() <= ATOL + RTOL * (e as f64).abs();
                if !ok {
                    return Err(format!("element {i}: got {a}, expected {e}"));
                }
            }
            Ok(())
        }
        _ if got == want => Ok(()),
        _ => Err("integer/bool values differ".into()),
    }
}

/// Imports `model` with the inputs at positions `bind` made initializers, runs the rest.
fn try_run(
    model: &ModelProto,
    inputs: &[(TensorProto, Tensor)],
    bind: &[usize],
) -> Result<Vec<Tensor>, String> {
    let mut m = model.clone();
    let g = m.graph.as_mut().ok_or("no graph")?;
    let names: Vec<String> = g.input.iter().map(|v| v.name.clone()).collect();
    let mut opts = ImportOptions::default();
    let mut runtime = Vec::new();
    for (j, (proto, t)) in inputs.iter().enumerate() {
        let name = names.get(j).ok_or("more input files than graph inputs")?;
        if bind.contains(&j) {
            let mut p = proto.clone();
            p.name = name.clone();
            g.initializer.push(p);
        } else {
            opts.input_shapes.insert(name.clone(), t.shape().to_vec());
            runtime.push(t.clone());
        }
    }
    g.input
        .retain(|v| !g.initializer.iter().any(|i| i.name == v.name));
    let loaded = load_model_bytes(&m.encode_to_vec(), None, &Limits::default())
        .map_err(|e| e.to_string())?;
    let imported = import(&loaded, &opts).map_err(|e| e.to_string())?;
    dync_interp::run(&imported.graph, &runtime).map_err(|e| e.to_string())
}

/// Runs one node test folder: Ok, or the first failure.
fn run_test(dir: &Path) -> Result<(), String> {
    let bytes = fs::read(dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let mut sets: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    for set in sets {
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for j in 0.. {
            let p = set.join(format!("input_{j}.pb"));
            if !p.exists() {
                break;
            }
            inputs.push(read_pb(&p)?);
        }
        for j in 0.. {
            let p = set.join(format!("output_{j}.pb"));
            if !p.exists() {
                break;
            }
            outputs.push(read_pb(&p)?.1);
        }
        let all: Vec<usize> = (0..inputs.len()).collect();
        let mut result = try_run(&model, &inputs, &[]);
        for bind in [&all[1.min(all.len())..], &all[..]] {
            match &result {
                Err(e) if e.contains("computed at run time") => {
                    result = try_run(&model, &inputs, bind)
                }
                _ => break,
            }
        }
        let got = result?;
        if got.len() != outputs.len() {
            return Err(format!("{} outputs, expected {}", got.len(), outputs.len()));
        }
        for (k, (g, w)) in got.iter().zip(&outputs).enumerate() {
            close(g, w).map_err(|e| format!("output {k}: {e}"))?;
        }
    }
    Ok(())
}

/// Whether every node of the test's model has an op type dync registers.
fn relevant(dir: &Path) -> bool {
    let Ok(bytes) = fs::read(dir.join("model.onnx")) else {
        return false;
    };
    let Ok(model) = ModelProto::decode(bytes.as_slice()) else {
        return false;
    };
    model.graph.is_some_and(|g| {
        g.node.iter().all(|n| {
            dync_onnx::load::is_default_domain(&n.domain)
                && dync_onnx::registry::lookup(&n.op_type).is_some()
        })
    })
}

#[derive(Clone, PartialEq)]
enum Status {
    Pass,
    Skip(String),
}

fn parse_list(text: &str) -> BTreeMap<String, Status> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let rest = rest.trim();
            let status = match rest.strip_prefix("skip:") {
                Some(reason) => Status::Skip(reason.trim().to_string()),
                None => Status::Pass,
            };
            Some((name.trim().to_string(), status))
        })
        .collect()
}

#[test]
fn onnx_node_tests() {
    let root = dync_tests::onnx_node_test_dir();
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    let listed = parse_list(&fs::read_to_string(list_path()).unwrap_or_default());
    let bless = std::env::var_os("DYNC_BLESS").is_some();
    let mut actual: BTreeMap<String, Status> = BTreeMap::new();
    let mut problems = Vec::new();
    for dir in dirs.iter().filter(|d| relevant(d)) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(result) = std::panic::catch_unwind(|| run_test(dir)) else {
            problems.push(format!("{name}: panicked (a panic is always a bug)"));
            continue;
        };
        let status = match result {
            Ok(()) => Status::Pass,
            Err(e) => Status::Skip(match listed.get(&name) {
                Some(Status::Skip(reason)) => reason.clone(),
                _ => e.split_whitespace().collect::<Vec<_>>().join(" "),
            }),
        };
        match (listed.get(&name), &status) {
            (Some(Status::Pass), Status::Skip(e)) => {
                problems.push(format!("{name}: listed as pass, fails: {e}"))
            }
            (Some(Status::Skip(_)), Status::Pass) => {
                problems.push(format!("{name}: listed as skip, now passes"))
            }
            (None, _) => problems.push(format!("{name}: not listed in node.txt")),
            _ => {}
        }
        actual.insert(name, status);
    }
    let passed = actual.values().filter(|s| **s == Status::Pass).count();
    let skipped = actual.len() - passed;
    println!(
        "onnx node tests: {passed} passed, {skipped} skipped (of {} relevant, {} in the suite)",
        actual.len(),
        dirs.len()
    );
    if bless {
        let mut text = String::from(
            "# ONNX backend node tests whose ops dync registers: `pass`, or `skip: <reason>`.\n\
             # Checked by tests/tests/onnx_node.rs; DYNC_BLESS=1 rewrites it.\n",
        );
        for (name, s) in &actual {
            match s {
                Status::Pass => text.push_str(&format!("{name}: pass\n")),
                Status::Skip(r) => text.push_str(&format!("{name}: skip: {r}\n")),
            }
        }
        fs::write(list_path(), text).expect("write node.txt");
        return;
    }
    assert!(
        problems.is_empty(),
        "{} problems (DYNC_BLESS=1 re-blesses):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
