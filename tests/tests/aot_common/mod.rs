//! Helpers of the ahead-of-time tests (`aot.rs`, `aot_aarch64.rs`): the release `dync` binary
//! and runtime library (built once per test process with the cargo that runs the tests), zoo
//! exports, running commands, and reading outputs.
//!
//! The tests drive the real command line (`dync compile`, `dync run`, the compiled programs)
//! through [`dync_bin`] (`dync_tests::dync_bin`, which builds it).
#![allow(dead_code)]

pub use dync_tests::dync_bin;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `cmd`; panics with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd`, which must fail cleanly: a non-zero exit status (not a signal) and a one-line
/// `error:` on stderr. Returns stderr.
pub fn run_fails(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => panic!("{cmd:?} succeeded; stderr: {stderr}"),
        Some(_) => {}
        None => panic!(
            "{cmd:?} was killed by a signal ({}); stderr: {stderr}",
            out.status
        ),
    }
    assert!(
        stderr.contains("error:") && !stderr.contains("panicked"),
        "{cmd:?}: unexpected stderr {stderr:?}"
    );
    stderr
}

/// `dync zoo export NAME` at `height`×`width` with `extra` flags, into `dir/file`.
pub fn export_zoo(dir: &Path, name: &str, size: usize, extra: &[&str], file: &str) -> PathBuf {
    let path = dir.join(file);
    run_ok(
        Command::new(dync_bin())
            .args(["zoo", "export", name, "--size", &format!("{size}x{size}")])
            .args(extra)
            .arg("-o")
            .arg(&path),
    );
    path
}

/// `dync compile MODEL -o OUT ARGS...`.
pub fn compile(model: &Path, out: &Path, args: &[&str]) -> Output {
    run_ok(
        Command::new(dync_bin())
            .arg("compile")
            .arg(model)
            .arg("-o")
            .arg(out)
            .args(args),
    )
}

/// A seeded random f32 `.npy` file of `shape` (standard normal), written with the runtime.
pub fn random_input(path: &Path, shape: &[usize], seed: u64) {
    let mut rng = dync_runtime::rt::SplitMix(seed);
    let arr = dync_runtime::rt::random_array(dync_runtime::npy::NpyDType::F32, shape, &mut rng)
        .unwrap_or_else(|e| panic!("{e}"));
    dync_runtime::npy::write_npy(path, &arr).unwrap_or_else(|e| panic!("{e}"));
}

/// The f32 data and shape of an `.npy` file.
pub fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    dync_tests::read_npy_f32(path)
}

/// f32 values from a raw native-endian file.
pub fn read_raw_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len() % 4, 0, "{}: not f32 data", path.display());
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes the data of the f32 `.npy` file `npy` raw (native endian) to `raw`.
pub fn npy_to_raw(npy: &Path, raw: &Path) {
    let (_, v) = read_f32(npy);
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
    std::fs::write(raw, bytes).unwrap_or_else(|e| panic!("{}: {e}", raw.display()));
}

/// The C harness of `examples/embed_in_c`.
pub fn harness_source() -> PathBuf {
    dync_tests::repo_root().join("examples/embed_in_c/harness.c")
}

/// Compiles the harness with `cc` (a C compiler command) against `model_name`'s header in
/// `dir` and the given link inputs.
pub fn build_harness(cc: &str, dir: &Path, model_name: &str, link: &[&str], out: &Path) {
    let mut cmd = Command::new(cc);
    cmd.args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{}", dir.display()))
        .arg(format!("-DDYNC_MODEL={model_name}"))
        .arg(format!("-DDYNC_HEADER=\"{model_name}.h\""))
        .arg(harness_source())
        .args(link)
        .arg("-o")
        .arg(out);
    run_ok(&mut cmd);
}
