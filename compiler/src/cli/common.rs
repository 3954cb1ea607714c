//! What several subcommands share: the model arguments (`MODEL`, `--input-shape`), loading and
//! importing with the user's notes printed, and tensor ↔ .npy conversion.

use anyhow::{bail, Context, Result};
use dync_ir::{Tensor, TensorData};
use dync_onnx::import::{import, ImportOptions, Imported};
use dync_onnx::{load_model, LoadedModel};
use dync_runtime::npy::{NpyArray, NpyData};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// The ONNX model file.
    pub model: PathBuf,
    /// Fix an input's shape, e.g. `input=1x3x224x224` (symbolic dims need it; a symbolic batch
    /// dim defaults to 1).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    pub input_shape: Vec<String>,
}

/// Parses `NAME=1x3x224x224` into (name, dims).
pub fn parse_shape_arg(s: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = s.rsplit_once('=').with_context(|| {
        format!("--input-shape {s:?}: expected NAME=DIMS, e.g. input=1x3x224x224")
    })?;
    let dims = dims
        .split(['x', 'X', ','])
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!("--input-shape {s:?}: dims must be non-negative integers separated by x")
        })?;
    Ok((name.to_string(), dims))
}

impl ModelArgs {
    pub fn options(&self) -> Result<ImportOptions> {
        let mut input_shapes = BTreeMap::new();
        for s in &self.input_shape {
            let (name, dims) = parse_shape_arg(s)?;
            if input_shapes.insert(name.clone(), dims).is_some() {
                bail!("--input-shape names {name:?} twice");
            }
        }
        Ok(ImportOptions {
            input_shapes,
            ..Default::default()
        })
    }

    pub fn load(&self) -> Result<LoadedModel> {
        Ok(load_model(&self.model, &Default::default())?)
    }
}

/// Flags of the pass pipeline, shared by the commands that compile.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PassArgs {
    /// Print how long each pass took (to stderr).
    #[arg(long)]
    pub time_passes: bool,
    /// Print the IR after the named pass, or after every pass with `all` (to stderr).
    #[arg(long, value_name = "PASS|all")]
    pub print_after: Option<String>,
    /// Re-target a fixed-batch model to batch N (every op must be per-sample; an error names the
    /// first op that mixes samples).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
}

impl PassArgs {
    /// Runs the pipeline on `g`, printing the requested dumps, timings and the passes' remarks.
    pub fn optimize(&self, g: &mut dync_ir::Graph, literal: bool) -> Result<dync_opt::PassManager> {
        let print_after = match self.print_after.as_deref() {
            None => dync_opt::PrintAfter::None,
            Some("all") => dync_opt::PrintAfter::All,
            Some(p) => dync_opt::PrintAfter::Pass(p.to_string()),
        };
        let pm = dync_opt::optimize(
            g,
            &dync_opt::Options {
                literal,
                print_after,
                batch: self.batch,
            },
        )?;
        for (pass, ir) in &pm.dumps {
            eprintln!("// IR after {pass}\n{ir}");
        }
        if self.time_passes {
            eprint!("{}", pm.timing_report());
        }
        for r in &pm.cx.remarks {
            eprintln!("remark: {r}");
        }
        for n in &pm.cx.notes {
            eprintln!("note: {n}");
        }
        Ok(pm)
    }
}

/// Imports `m`, printing the importer's notes to stderr.
pub fn import_with_notes(m: &LoadedModel, opts: &ImportOptions) -> Result<Imported> {
    let imp = import(m, opts)?;
    for n in &imp.notes {
        eprintln!("note: {n}");
    }
    Ok(imp)
}

pub fn tensor_to_npy(t: &Tensor) -> NpyArray {
    let data = match t.data() {
        TensorData::F32(v) => NpyData::F32(v.clone()),
        TensorData::I64(v) => NpyData::I64(v.clone()),
        TensorData::I32(v) => NpyData::I32(v.clone()),
        TensorData::Bool(v) => NpyData::Bool(v.clone()),
    };
    NpyArray {
        shape: t.shape().to_vec(),
        data,
    }
}

pub fn npy_to_tensor(a: NpyArray) -> Result<Tensor> {
    let data = match a.data {
        NpyData::F32(v) => TensorData::F32(v),
        NpyData::I64(v) => TensorData::I64(v),
        NpyData::I32(v) => TensorData::I32(v),
        NpyData::Bool(v) => TensorData::Bool(v),
    };
    Ok(Tensor::new(a.shape, data)?)
}

/// Formats an integer with thousands separators.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether `got` matches the reference value `want` within atol 1e-4 + rtol 1e-3 (the tolerance
/// of every comparison dync reports). Equal infinities and NaN against NaN match; NaN against a
/// number does not.
pub fn close(got: f32, want: f32) -> bool {
    got == want || (got - want).abs() <= 1e-4 + 1e-3 * want.abs() || (got.is_nan() && want.is_nan())
}
