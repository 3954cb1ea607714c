//! `dync compile MODEL -o OUT [--emit exe|so|obj] [--target TRIPLE] [--cpu CPU] [--name NAME]
//! [--checked] [--input-shape NAME=DIMS]... [--time-passes]`: ahead-of-time compilation.
//!
//! Pipeline: load, import, the pass pipeline (as `dync run`), Cranelift into a relocatable object
//! (`dync_codegen::object`), then by `--emit`:
//! - `exe` (default): an executable linked with the system C compiler against the runtime's
//!   static library (`libdync_runtime.a`, found next to the `dync` executable or through
//!   `DYNC_RUNTIME_LIB`; checked before compiling). Host targets only.
//! - `so`: a shared library exporting the model's C API, and its C header `OUT.h` (OUT with its
//!   extension replaced). Host targets only.
//! - `obj`: the object file and its header; it needs only libc and libm, for any supported
//!   target (x86_64 and aarch64 Linux).
//!
//! The model's C name (the prefix of its symbols) is `--name`, which must be a C identifier, or
//! OUT's file stem made one (without the `lib` prefix of a shared library's name). `--cpu` defaults to `native` for the host and `generic` for an
//! explicit `--target`. A progress bar over the kernels shows on a terminal. The same model and
//! flags give byte-identical files.

use super::common::{import_with_notes, ModelArgs, PassArgs};
use anyhow::{bail, Context, Result};
use dync_codegen::link::{find_runtime_lib, link_executable, link_shared};
use dync_codegen::object::{
    c_name, compile_object, is_c_identifier, object_isa, CompiledObject, ObjectOptions,
};
use dync_codegen::{CodegenOptions, Cpu, Target};
use dync_ir::Graph;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// A standalone executable (the runtime linked in statically).
    Exe,
    /// A shared library with a C API, and its C header.
    So,
    /// A relocatable object file with a C API, and its C header.
    Obj,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The file to write.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "exe")]
    pub emit: Emit,
    /// Target triple, e.g. aarch64-unknown-linux-gnu (default: this machine).
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// CPU: native, x86-64, x86-64-v3, x86-64-v4 or generic (default: native for this machine,
    /// generic for --target).
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<String>,
    /// The model's C name, the prefix of its symbols (default: OUT's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Bounds-check every load and store of the generated code.
    #[arg(long)]
    pub checked: bool,
    /// x86-64: never call the runtime's AVX-512/AVX2 micro-kernels; GEMM tiles run
    /// Cranelift-generated code (the aarch64 path, always used there).
    #[arg(long)]
    pub no_ukernels: bool,
    #[command(flatten)]
    pub passes: PassArgs,
}

/// OUT's header path: OUT with its extension replaced by `.h` (or `.h` appended).
pub fn header_path(out: &Path) -> PathBuf {
    match out.extension() {
        Some(_) => out.with_extension("h"),
        None => {
            let mut s = out.as_os_str().to_owned();
            s.push(".h");
            PathBuf::from(s)
        }
    }
}

fn codegen_options(a: &Args) -> Result<CodegenOptions> {
    let target = match &a.target {
        None => Target::Host,
        Some(t) => Target::Triple(
            t.parse()
                .map_err(|e| anyhow::anyhow!("--target {t:?}: {e}"))?,
        ),
    };
    let cpu = match (&a.cpu, &target) {
        (Some(c), _) => c.parse::<Cpu>()?,
        (None, Target::Host) => Cpu::Native,
        (None, Target::Triple(_)) => Cpu::Generic,
    };
    if a.emit != Emit::Obj {
        if let Target::Triple(t) = &target {
            let host = dync_codegen::target::Triple::host();
            if t.architecture != host.architecture || t.operating_system != host.operating_system {
                bail!(
                    "--emit {:?} links for this machine ({host}); for --target {t} use --emit obj \
                     and a cross toolchain",
                    a.emit
                );
            }
        }
    }
    Ok(CodegenOptions {
        target,
        cpu,
        checked: a.checked,
        no_ukernels: a.no_ukernels,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// What [`build`] wrote, and how long it took.
pub struct Built {
    pub object: CompiledObject,
    /// Cranelift code generation.
    pub codegen: Duration,
    /// Writing the files and linking.
    pub link: Duration,
}

/// Compiles the optimized `graph` into the file `out` as `emit`, with `name` as the model's C
/// name (a C identifier): an executable links `runtime` (found by [`find_runtime_lib`] when
/// `None`); `so` and `obj` also write their C header at [`header_path`]`(out)`. A progress bar
/// over the kernels shows on a terminal. `out`'s directory is created if needed.
pub fn build(
    graph: &Graph,
    opts: &CodegenOptions,
    name: &str,
    emit: Emit,
    runtime: Option<&Path>,
    out: &Path,
) -> Result<Built> {
    let runtime = match (emit, runtime) {
        (Emit::Exe, Some(rt)) => Some(rt.to_path_buf()),
        (Emit::Exe, None) => Some(find_runtime_lib()?),
        (Emit::So | Emit::Obj, _) => None,
    };
    let t1 = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "compiling {msg} [{bar:30}] {pos}/{len} kernels ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(name.to_string());
        b
    });
    let mut progress = |done: usize, total: usize| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    };
    let obj = compile_object(
        graph,
        opts,
        &ObjectOptions {
            name: name.to_string(),
            main: emit == Emit::Exe,
        },
        &mut progress,
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let obj = obj?;
    let codegen = t1.elapsed();

    let t2 = Instant::now();
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    // Returns the object's fingerprint (the build ID of what is linked from it).
    let write_object = |path: &Path| -> Result<[u8; 16]> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        obj.write_to(std::io::BufWriter::new(file))
            .with_context(|| format!("cannot write {}", path.display()))
    };
    match emit {
        Emit::Obj => {
            write_object(out)?;
        }
        Emit::Exe | Emit::So => {
            let file = out
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = out.with_file_name(format!(".{file}.{}.o", std::process::id()));
            let written = write_object(&tmp);
            let build_id = match written {
                Ok(id) => id,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            let linked = match &runtime {
                Some(rt) => link_executable(&tmp, rt, out, &build_id),
                None => link_shared(&tmp, out, &build_id),
            };
            let _ = std::fs::remove_file(&tmp);
            linked?;
        }
    }
    if emit != Emit::Exe {
        write(
            &header_path(out),
            dync_codegen::header::header(&obj).as_bytes(),
        )?;
    }
    Ok(Built {
        object: obj,
        codegen,
        link: t2.elapsed(),
    })
}

pub fn run(a: Args) -> Result<ExitCode> {
    let name = match &a.name {
        Some(n) if is_c_identifier(n) => n.clone(),
        Some(n) => bail!("--name {n:?} is not a C identifier ([A-Za-z_][A-Za-z0-9_]*)"),
        None => {
            let stem = a
                .output
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A shared library's `lib` prefix is part of the file name, not of the model's.
            match stem.strip_prefix("lib") {
                Some(rest) if a.emit == Emit::So && !rest.is_empty() => c_name(rest),
                _ => c_name(&stem),
            }
        }
    };
    let opts = codegen_options(&a)?;
    // Unsupported targets and CPUs are reported before the model is loaded.
    object_isa(&opts)?;
    let runtime = match a.emit {
        Emit::Exe => Some(find_runtime_lib()?),
        Emit::So | Emit::Obj => None,
    };
    let t0 = Instant::now();
    let m = a.model.load()?;
    let mut imp = import_with_notes(&m, &a.model.options()?)?;
    // The decoded file (a copy of every weight) is not needed past import: its memory is
    // reused by the passes and code generation instead of fresh pages.
    drop(m);
    a.passes.optimize(&mut imp.graph, false)?;
    let t_front = t0.elapsed();

    let built = build(
        &imp.graph,
        &opts,
        &name,
        a.emit,
        runtime.as_deref(),
        &a.output,
    )
    .with_context(|| format!("compiling {}", a.model.model.display()))?;
    let (obj, out, header) = (&built.object, &a.output, header_path(&a.output));
    if a.passes.time_passes {
        eprintln!(
            "load+import+passes {}, codegen {}, write+link {}",
            ms(t_front),
            ms(built.codegen),
            ms(built.link)
        );
    }
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({} bytes; {} for {}, cpu {}): model `{}`, {} kernels, arena {} bytes, \
         weights {} bytes, compiled in {}",
        out.display(),
        size,
        match a.emit {
            Emit::Exe => "executable",
            Emit::So => "shared library",
            Emit::Obj => "object",
        },
        obj.triple,
        opts.cpu.name(),
        obj.name,
        obj.kernels,
        obj.arena_bytes,
        obj.weight_bytes,
        ms(t0.elapsed())
    );
    if a.emit != Emit::Exe {
        println!("wrote {}", header.display());
    }
    Ok(ExitCode::SUCCESS)
}
