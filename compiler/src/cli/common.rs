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
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
