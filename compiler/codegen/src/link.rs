//! Linking compiled objects with the system C compiler (`$CC`, else `cc`) for the host.
//!
//! - Executables: the object (which defines `main`, see [`crate::object`]) plus the runtime's
//!   static library `libdync_runtime.a` and the system libraries a Rust static library needs on
//!   Linux; unused sections are dropped (`--gc-sections`) and debug info stripped (`-S`). The
//!   result needs only the C library, libm and libgcc_s at run time, no Rust toolchain.
//! - Shared libraries: the object (`-shared`) with libm and, when it is found, the runtime
//!   library (for `create_threads`; its own symbols are not exported, `--exclude-libs`); the
//!   exported symbols are the model's C API. Without the runtime `create_threads(n > 1)`
//!   returns null.
//!
//! The build ID is given (`--build-id=0x…`, the object's fingerprint from
//! [`crate::object::CompiledObject::write_to`]) rather than computed by the linker, which would
//! hash the whole output (hundreds of MB of weights: about 0.4 s of gold's 0.55 s for
//! dy-resnet50).
//!
//! For executables, when `ld.gold` is on `PATH` the compiler is asked to use it
//! (`-fuse-ld=gold`): it copies a model's weights (hundreds of MB) into the output about twice
//! as fast as the BFD linker. If that link fails, it is retried with the compiler's default
//! linker, whose error is reported. Shared libraries use the default linker: gold names the
//! (temporary) output file in a shared library's version definitions, so two compiles would
//! differ.
//!
//! The linker writes a temporary file beside the destination, renamed into place on success,
//! so a failed link never leaves a partial file under the destination's name. Errors name the
//! command and carry the compiler's own message. Linking for another architecture than the
//! host's is not done here (use `--emit obj` and a cross toolchain).

use crate::object::{RT_CTX_FREE_SYMBOL, RT_CTX_NEW_SYMBOL};
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

/// Name of the runtime's static library.
pub const RUNTIME_LIB: &str = "libdync_runtime.a";
/// Environment variable overriding where the runtime library is.
pub const RUNTIME_LIB_VAR: &str = "DYNC_RUNTIME_LIB";
/// System libraries a Rust static library links against on Linux (`rustc --print
/// native-static-libs`).
const RUST_SYSTEM_LIBS: [&str; 7] = [
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

#[derive(Debug, Error)]
pub enum LinkError {
    #[error(
        "the dync runtime library {RUNTIME_LIB} is not at {0}; build it with \
         `cargo build --release` (or `cargo build -p dync-runtime --release`) in the dync \
         repository, or point {RUNTIME_LIB_VAR} at it"
    )]
    NoRuntime(PathBuf),
    #[error("{RUNTIME_LIB_VAR}={0}: no such file")]
    BadRuntimeVar(PathBuf),
    #[error("cannot run the C compiler `{cc}` to link (set CC to a C compiler): {error}")]
    NoCompiler { cc: String, error: std::io::Error },
    #[error("linking {out} failed: `{command}` exited with {status}:\n{stderr}")]
    Failed {
        out: PathBuf,
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The runtime library: `$DYNC_RUNTIME_LIB`, else `libdync_runtime.a` in the directory of the
/// running executable (cargo puts both in `target/<profile>/`).
pub fn find_runtime_lib() -> Result<PathBuf, LinkError> {
    if let Some(p) = std::env::var_os(RUNTIME_LIB_VAR).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LinkError::BadRuntimeVar(p))
        };
    }
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let p = dir.join(RUNTIME_LIB);
    if p.is_file() {
        Ok(p)
    } else {
        Err(LinkError::NoRuntime(p))
    }
}

/// The C compiler: `$CC` or `cc`.
pub fn c_compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "cc".into())
}

/// The linker flag setting the build ID to `id`.
fn build_id_flag(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("-Wl,--build-id=0x{hex}")
}

/// Links `object` and the runtime library into the executable `out`, with build ID `build_id`.
pub fn link_executable(
    object: &Path,
    runtime: &Path,
    out: &Path,
    build_id: &[u8; 16],
) -> Result<(), LinkError> {
    let mut args: Vec<String> = vec![
        object.display().to_string(),
        runtime.display().to_string(),
        "-Wl,--gc-sections".into(),
        "-Wl,-S".into(),
        build_id_flag(build_id),
    ];
    args.extend(RUST_SYSTEM_LIBS.iter().map(|s| s.to_string()));
    link(&args, out, has_gold())
}

/// Links `object` (with the runtime library when [`find_runtime_lib`] finds it) into the shared
/// library `out`, with build ID `build_id`.
pub fn link_shared(object: &Path, out: &Path, build_id: &[u8; 16]) -> Result<(), LinkError> {
    let mut args = vec![
        "-shared".to_string(),
        object.display().to_string(),
        build_id_flag(build_id),
    ];
    if let Ok(runtime) = find_runtime_lib() {
        // The wrapper's references to the context functions are weak, which does not pull
        // archive members in: ask for them.
        args.extend([
            format!("-Wl,--undefined={RT_CTX_NEW_SYMBOL}"),
            format!("-Wl,--undefined={RT_CTX_FREE_SYMBOL}"),
            runtime.display().to_string(),
            "-Wl,--exclude-libs,ALL".into(),
            "-Wl,--gc-sections".into(),
            "-Wl,-S".into(),
        ]);
        args.extend(RUST_SYSTEM_LIBS.iter().map(|s| s.to_string()));
    } else {
        args.push("-lm".into());
    }
    link(&args, out, false)
}

/// Whether `ld.gold` is an executable file in a directory of `PATH`.
fn has_gold() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("ld.gold").is_file()))
}

/// Runs the C compiler on `args` into `out` (through a temporary file), with gold first when
/// `gold`.
fn link(args: &[String], out: &Path, gold: bool) -> Result<(), LinkError> {
    let cc = c_compiler();
    let file = out
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = out.with_file_name(format!(".{file}.link-{}", std::process::id()));
    let run = |extra: Option<&str>| {
        let mut cmd = Command::new(&cc);
        cmd.args(extra).args(args).arg("-o").arg(&tmp);
        cmd.output().map_err(|error| LinkError::NoCompiler {
            cc: cc.clone(),
            error,
        })
    };
    let gold = gold.then_some("-fuse-ld=gold");
    let mut output = run(gold)?;
    if gold.is_some() && !output.status.success() {
        output = run(None)?;
    }
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(LinkError::Failed {
            out: out.to_path_buf(),
            command: format!("{cc} {} -o {}", args.join(" "), tmp.display()),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_string(),
        });
    }
    std::fs::rename(&tmp, out).map_err(|error| {
        let _ = std::fs::remove_file(&tmp);
        LinkError::Io {
            path: out.to_path_buf(),
            error,
        }
    })
}
