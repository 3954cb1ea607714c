//! Memory safety of generated code: every zoo network (`dync::zoo::networks()`), exported at a
//! small size (32×32, the segmentation nets 16×16; batch 1), compiled ahead of time with `dync compile --cpu x86-64-v3` (valgrind
//! does not implement AVX-512) and run on seeded random inputs under
//! `valgrind --tool=memcheck --error-exitcode=99 --leak-check=full`: 0 errors (invalid reads
//! and writes, uses of uninitialised values, leaks) for every network.
//!
//! Skipped, with a note, when `valgrind` is not installed (CI installs it: `scripts/test`).
//! `DYNC_VALGRIND_NETS=a,b` runs only the named networks.

mod aot_common;

use aot_common::{compile, dync_bin, run_ok};
use dync::zoo::Task;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Input side per task: the smallest at which the network keeps a non-empty feature map (the
/// classification nets reduce by 32; the FCN by 8, 2×2 maps at 16), which keeps memcheck's
/// slowdown to seconds per network (the FCN's 2048-channel head dominates the whole file at 32).
fn side(task: Task) -> usize {
    match task {
        Task::Classification => 32,
        Task::Segmentation => 16,
    }
}

fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn zoo_executables_run_clean_under_memcheck() {
    if !have_valgrind() {
        eprintln!("note: valgrind is not installed; skipping (CI installs it)");
        return;
    }
    let only: Option<Vec<String>> = std::env::var("DYNC_VALGRIND_NETS")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let mut ran = 0;
    for net in dync::zoo::networks() {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == net.name))
        {
            continue;
        }
        let t = Instant::now();
        let model = dir.path().join(format!("{}.onnx", net.name));
        let side = side(net.task);
        run_ok(
            Command::new(dync_bin())
                .args(["zoo", "export", net.name, "--size"])
                .arg(format!("{side}x{side}"))
                .arg("-o")
                .arg(&model),
        );
        let exe = dir.path().join(net.name);
        compile(&model, &exe, &["--cpu", "x86-64-v3"]);
        let compiled = t.elapsed().as_secs_f64();
        let out = Command::new("valgrind")
            .args([
                "--tool=memcheck",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite,possible",
            ])
            .arg(&exe)
            .args(["--seed", "7", "--output-dir"])
            .arg(dir.path().join(format!("{}-out", net.name)))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run valgrind: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        // memcheck's summary line: "ERROR SUMMARY: N errors from M contexts".
        let summary = stderr
            .lines()
            .rev()
            .find(|l| l.contains("ERROR SUMMARY:"))
            .unwrap_or("no ERROR SUMMARY line")
            .to_string();
        eprintln!(
            "{}: compiled in {compiled:.1} s, memcheck {:.1} s: {summary}",
            net.name,
            t.elapsed().as_secs_f64() - compiled
        );
        ran += 1;
        if !out.status.success() || !summary.contains("ERROR SUMMARY: 0 errors") {
            failures.push(format!("{}: {} \n{stderr}", net.name, out.status));
        }
    }
    assert!(ran > 0, "no network selected");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!("memcheck: {ran} zoo executables, 0 errors");
}
