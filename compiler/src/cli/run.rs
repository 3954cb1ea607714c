//! `dync run MODEL [--engine jit|interp] [--input [NAME=]FILE.npy]... [--output-dir DIR] [--seed S]
//! [--threads N] [--compare REF.npy]`: runs the model — compiled in process (jit, the default: import, the pass
//! pipeline, Cranelift) or on the reference interpreter (interp: the imported graph as is) — and
//! writes `DIR/<output>.npy` for every graph output
//! (names sanitized to [A-Za-z0-9._-]). Inputs not given are seeded random tensors (the seed is
//! printed; the generator is the runtime's, shared with compiled executables). Input files fix the model's symbolic dims. Prints the top-5 classes of a
//! classifier output; `--compare` reports max abs/rel error of the first output and exits 3 when
//! it exceeds atol 1e-4 + rtol 1e-3. `--threads N` runs the JIT's code on N threads (1: serial;
//! outputs are bit-identical at every count); the interpreter is serial.

use super::common::{close, import_with_notes, npy_to_tensor, tensor_to_npy, ModelArgs, PassArgs};
use anyhow::{bail, Context, Result};
use dync_ir::{DType, Tensor, TensorType};
use dync_runtime::npy::{read_npy, sanitize_name, write_npy, NpyDType};
use dync_runtime::rt::{random_array, top5_lines, SplitMix};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Largest .npy input dync reads (4 GiB).
const MAX_INPUT_BYTES: u64 = 4 << 30;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Compile in process with Cranelift and run the native code.
    Jit,
    /// The reference interpreter, on the imported graph without passes.
    Interp,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum, default_value = "jit")]
    pub engine: Engine,
    /// JIT: bounds-check every load and store of the generated code (an out-of-bounds access
    /// stops the run with an error).
    #[arg(long)]
    pub checked: bool,
    /// JIT: never call the runtime's x86 micro-kernels (GEMM tiles run Cranelift-generated
    /// code).
    #[arg(long)]
    pub no_ukernels: bool,
    #[command(flatten)]
    pub passes: PassArgs,
    /// An input as `NAME=FILE.npy`, or `FILE.npy` for the inputs in order.
    #[arg(long, value_name = "[NAME=]FILE.npy")]
    pub input: Vec<String>,
    /// Where to write `<output>.npy` files.
    #[arg(long, default_value = ".")]
    pub output_dir: PathBuf,
    /// Seed of the random inputs generated for inputs not given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// JIT: threads to run on (1: serial, no worker threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=dync_runtime::pool::MAX_THREADS as i64))]
    pub threads: u32,
    /// Compare the first output with this .npy file.
    #[arg(long, value_name = "REF.npy")]
    pub compare: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let m = a.model.load()?;
    let input_names: Vec<String> = {
        let inits: std::collections::HashSet<&str> = m
            .graph
            .initializer
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        m.graph
            .input
            .iter()
            .filter(|v| !inits.contains(v.name.as_str()))
            .map(|v| v.name.clone())
            .collect()
    };
    // Input name → (file, tensor).
    let mut given: BTreeMap<String, (String, Tensor)> = BTreeMap::new();
    for (i, spec) in a.input.iter().enumerate() {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) if input_names.iter().any(|x| x == n) => (n.to_string(), f),
            Some((n, _)) => {
                bail!("--input {spec:?}: the model has no input {n:?} (inputs: {input_names:?})")
            }
            None => match input_names.get(i) {
                Some(n) => (n.clone(), spec.as_str()),
                None => bail!(
                    "--input {spec:?}: the model has only {} inputs",
                    input_names.len()
                ),
            },
        };
        let arr = read_npy(file.as_ref(), MAX_INPUT_BYTES)?;
        let t = npy_to_tensor(arr).with_context(|| format!("input file {file}"))?;
        if given.insert(name.clone(), (file.to_string(), t)).is_some() {
            bail!("input {name:?} is given twice");
        }
    }
    let mut opts = a.model.options()?;
    // A file fixes the dims its input leaves open; against a fully declared shape it is checked
    // below, with a message naming the file.
    for v in &m.graph.input {
        if let Some((_, t)) = given.get(&v.name) {
            if !fully_declared(v, &opts.limits) {
                opts.input_shapes
                    .entry(v.name.clone())
                    .or_insert_with(|| t.shape().to_vec());
            }
        }
    }
    if a.engine == Engine::Interp && a.passes.batch.is_some() {
        bail!(
            "--batch needs the jit engine: the interpreter runs the imported graph as exported \
             (export the batch you want, or drop --engine interp)"
        );
    }
    let mut imp = import_with_notes(&m, &opts)?;
    // The decoded file (a copy of every weight) is not needed past import: its memory is
    // reused by the passes and code generation instead of fresh pages.
    drop(m);
    if a.engine == Engine::Jit {
        a.passes.optimize(&mut imp.graph, false)?;
    }
    let g = &imp.graph;
    let mut inputs = Vec::new();
    let mut rng = SplitMix(a.seed);
    let mut random_used = false;
    for (name, id) in &g.inputs {
        let ty = g.ty(*id);
        let t = match given.remove(name) {
            Some((file, t)) => {
                if t.ty() != *ty {
                    bail!(
                        "{file}: input {name:?}: the file holds {} but the model takes {ty}",
                        t.ty()
                    );
                }
                t
            }
            None => {
                random_used = true;
                random_tensor(ty, &mut rng)?
            }
        };
        inputs.push(t);
    }
    if random_used {
        eprintln!("note: random inputs with seed {} (standard normal)", a.seed);
    }
    let running = || format!("running {}", a.model.model.display());
    let outputs = match a.engine {
        Engine::Interp => dync_interp::run(g, &inputs).with_context(running)?,
        Engine::Jit => {
            let opts = dync_codegen::CodegenOptions {
                checked: a.checked,
                no_ukernels: a.no_ukernels,
                ..Default::default()
            };
            dync_codegen::JitModel::compile(g, &opts)
                .and_then(|mut j| {
                    j.set_threads(a.threads as usize)?;
                    j.run(&inputs)
                })
                .with_context(running)?
        }
    };
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("cannot create output directory {}", a.output_dir.display()))?;
    for ((name, _), t) in g.outputs.iter().zip(&outputs) {
        let path = a.output_dir.join(format!("{}.npy", sanitize_name(name)));
        write_npy(&path, &tensor_to_npy(t))?;
        println!("wrote {} {}", path.display(), t.ty());
        print_top5(name, t);
    }
    if let Some(r) = &a.compare {
        let want = npy_to_tensor(read_npy(r, MAX_INPUT_BYTES)?)
            .with_context(|| format!("reference {}", r.display()))?;
        let Some(got) = outputs.first() else {
            bail!("the model has no output to compare")
        };
        return compare(got, &want, r);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `v` declares every dim of its shape as a number (then an input file cannot change it).
fn fully_declared(v: &dync_onnx::proto::ValueInfoProto, limits: &dync_onnx::Limits) -> bool {
    match dync_onnx::tensor::value_info_type(v, limits) {
        Ok(t) => t.shape.is_some_and(|s| {
            s.iter()
                .all(|d| matches!(d, dync_onnx::tensor::Dim::Known(_)))
        }),
        Err(_) => false,
    }
}

/// Prints the top-5 classes per sample of a classifier output (see `top5_lines`).
fn print_top5(name: &str, t: &Tensor) {
    if let Some(v) = t.as_f32() {
        for line in top5_lines(name, t.shape(), v) {
            println!("{line}");
        }
    }
}

fn compare(got: &Tensor, want: &Tensor, path: &std::path::Path) -> Result<ExitCode> {
    if got.shape() != want.shape() {
        bail!(
            "{}: shape {:?} differs from the output's {:?}",
            path.display(),
            want.shape(),
            got.shape()
        );
    }
    let (Some(g), Some(w)) = (got.as_f32(), want.as_f32()) else {
        bail!("--compare needs f32 tensors");
    };
    let (mut max_abs, mut max_rel, mut ok) = (0f32, 0f32, true);
    for (&x, &y) in g.iter().zip(w) {
        let d = (x - y).abs();
        if !close(x, y) {
            ok = false;
        }
        max_abs = max_abs.max(d);
        max_rel = max_rel.max(d / y.abs().max(f32::MIN_POSITIVE));
    }
    println!(
        "compare with {}: max abs error {max_abs:e}, max rel error {max_rel:e}",
        path.display()
    );
    if ok {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("mismatch: beyond atol 1e-4 + rtol 1e-3");
        Ok(ExitCode::from(3))
    }
}

fn random_tensor(ty: &TensorType, rng: &mut SplitMix) -> Result<Tensor> {
    let dtype = match ty.dtype {
        DType::F32 => NpyDType::F32,
        DType::I64 => NpyDType::I64,
        DType::I32 => NpyDType::I32,
        DType::Bool => NpyDType::Bool,
    };
    npy_to_tensor(random_array(dtype, &ty.shape, rng)?)
}
