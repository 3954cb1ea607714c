//! The main program of the executables `dync compile` builds. The generated `main` calls
//! [`dync_rt_main`] with the model's descriptor (see [`crate::model`]).
//!
//! ```text
//! OUT [--input [NAME=]FILE.npy]... [--output-dir DIR] [--seed S] [--threads N]
//! OUT --bench [--iters N] [--input ...] [--seed S] [--threads N] [--json]
//! OUT --info | --help
//! ```
//! - Run: reads the inputs (each `.npy` fully validated, then checked against the model's dtype
//!   and shape), or, when no `--input` is given, draws seeded random inputs exactly as
//!   `dync run --seed S` does ([`crate::rt::random_array`]); writes `DIR/<output>.npy` for each
//!   output (names sanitized as `dync run` does) and prints the same lines as `dync run`.
//! - Bench: one warm-up run, then `--iters` timed runs (default: as many as fit in about two
//!   seconds, between 10 and 1000); prints median, min and p90 latency, and with `--json` one
//!   JSON line with `median_ms`, `min_ms`, `p90_ms`, `mean_ms`, `iters`, `threads`.
//! - `--threads N` (1 ≤ N ≤ 1024, default 1): the model runs on a pool of N threads (the main thread
//!   and N − 1 workers, [`crate::ctx::RtCtx`]); 1 starts no thread at all. Outputs are
//!   bit-identical at every thread count.
//!
//! Exit status: 0 success, 1 an error (a bad input file, a fault of the model, a CPU that lacks
//! the features the code was compiled for), 2 a usage error. Every error is one line on stderr
//! naming the input and file at fault; nothing panics.

use crate::ctx::RtCtx;
use crate::model::{type_string, zeros, Model, ModelDesc, TensorInfo};
use crate::npy::{read_npy, sanitize_name, write_npy, NpyArray, NpyData};
use crate::pool::MAX_THREADS;
use crate::rt::{missing_cpu_features, random_array, top5_lines, Arena, SplitMix, Stats};
use std::ffi::{c_char, c_int, CStr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: {exe} [--input [NAME=]FILE.npy]... [--output-dir DIR] [--seed S] [--threads N]
       {exe} --bench [--iters N] [--input ...] [--seed S] [--threads N] [--json]
       {exe} --info | --help
Runs the compiled model on .npy inputs (seeded random inputs when none are given) and writes
DIR/<output>.npy for each output; --bench prints its latency (median, min, p90).";

/// A one-line error and its exit status.
struct Failure {
    code: c_int,
    message: String,
}

fn usage(m: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: m.into(),
    }
}

fn error(m: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: m.into(),
    }
}

#[derive(Default)]
struct Args {
    inputs: Vec<String>,
    output_dir: Option<PathBuf>,
    seed: u64,
    threads: usize,
    bench: bool,
    iters: Option<usize>,
    json: bool,
    info: bool,
    help: bool,
}

fn parse_args(args: &[String]) -> Result<Args, Failure> {
    let mut a = Args {
        threads: 1,
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, Failure> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage(format!("{name} needs a value"))),
            }
        };
        let number = |name: &str, v: String| -> Result<u64, Failure> {
            v.parse::<u64>()
                .map_err(|_| usage(format!("{name} {v:?}: expected a non-negative integer")))
        };
        match flag {
            "--input" => a.inputs.push(value(flag)?),
            "--output-dir" => a.output_dir = Some(PathBuf::from(value(flag)?)),
            "--seed" => a.seed = number(flag, value(flag)?)?,
            "--threads" => {
                a.threads = usize::try_from(number(flag, value(flag)?)?)
                    .ok()
                    .filter(|n| (1..=MAX_THREADS).contains(n))
                    .ok_or_else(|| usage(format!("--threads must be 1 to {MAX_THREADS}")))?
            }
            "--iters" => {
                a.iters = Some(
                    usize::try_from(number(flag, value(flag)?)?)
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| usage("--iters must be at least 1"))?,
                )
            }
            "--bench" | "--json" | "--info" | "--help" | "-h" if inline.is_some() => {
                return Err(usage(format!("{flag} takes no value")))
            }
            "--bench" => a.bench = true,
            "--json" => a.json = true,
            "--info" => a.info = true,
            "--help" | "-h" => a.help = true,
            _ => return Err(usage(format!("unknown argument {arg:?} (see --help)"))),
        }
    }
    if !a.bench && (a.iters.is_some() || a.json) {
        return Err(usage("--iters and --json go with --bench"));
    }
    if a.bench && a.output_dir.is_some() {
        return Err(usage("--bench writes no outputs; drop --output-dir"));
    }
    Ok(a)
}

/// The entry of the executable's `main`.
///
/// # Safety
/// `argv` holds `argc` NUL-terminated strings (or is null when `argc` is 0) and `desc` is the
/// descriptor the compiler emitted for this program (see [`Model::from_desc`]).
#[no_mangle]
pub unsafe extern "C" fn dync_rt_main(
    argc: c_int,
    argv: *const *const c_char,
    desc: *const ModelDesc,
) -> c_int {
    let args: Vec<String> = match usize::try_from(argc) {
        Ok(n) if n > 0 && !argv.is_null() => {
            // SAFETY: `argc` strings per the contract.
            let ptrs = unsafe { std::slice::from_raw_parts(argv, n) };
            ptrs.iter()
                .filter(|p| !p.is_null())
                // SAFETY: NUL-terminated per the contract.
                .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
                .collect()
        }
        _ => Vec::new(),
    };
    let exe = args.first().cloned().unwrap_or_else(|| "model".into());
    // SAFETY: `desc` per the contract.
    let model = match unsafe { Model::from_desc(desc) } {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let result = std::panic::catch_unwind(|| main_with(&exe, &args[args.len().min(1)..], &model));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(f)) => {
            eprintln!("error: {}", f.message);
            f.code
        }
        Err(_) => {
            eprintln!("error: internal error in the dync runtime");
            101
        }
    }
}

fn main_with(exe: &str, args: &[String], model: &Model) -> Result<(), Failure> {
    let a = parse_args(args)?;
    if a.help {
        println!("{}", USAGE.replace("{exe}", exe));
        return Ok(());
    }
    if a.info {
        print_info(model);
        return Ok(());
    }
    let missing = missing_cpu_features(&model.cpu_features);
    if !missing.is_empty() {
        return Err(error(format!(
            "this program was compiled for a CPU with {}; this one lacks {} (recompile with \
             `dync compile --cpu generic` or a --cpu this machine has)",
            model.cpu_features.join(","),
            missing.join(",")
        )));
    }
    let mut ctx = RtCtx::new(a.threads)
        .map_err(|e| error(format!("cannot start {} threads: {e}", a.threads)))?;
    let inputs = load_inputs(model, &a)?;
    let mut arena = Arena::new(model.arena_bytes).map_err(|e| error(format!("the arena: {e}")))?;
    let mut outputs = model
        .outputs
        .iter()
        .map(|o| zeros(o).map_err(|e| error(format!("output {:?}: {e}", o.name))))
        .collect::<Result<Vec<_>, _>>()?;
    let input_refs: Vec<&NpyArray> = inputs.iter().collect();
    let mut run = || {
        model
            .run(&mut arena, Some(&mut ctx), &input_refs, &mut outputs)
            .map_err(|e| error(e.to_string()))
    };
    if a.bench {
        run()?;
        let mut times = Vec::new();
        let start = Instant::now();
        loop {
            let t = Instant::now();
            run()?;
            times.push(t.elapsed());
            let done = match a.iters {
                Some(n) => times.len() >= n,
                None => {
                    times.len() >= 1000
                        || (times.len() >= 10 && start.elapsed() >= Duration::from_secs(2))
                }
            };
            if done {
                break;
            }
        }
        let s = Stats::of(&times).ok_or_else(|| error("no timed run"))?;
        report_bench(model, &s, a.threads, a.json);
        return Ok(());
    }
    run()?;
    let dir = a.output_dir.unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| {
        error(format!(
            "cannot create output directory {}: {e}",
            dir.display()
        ))
    })?;
    for (info, arr) in model.outputs.iter().zip(&outputs) {
        let path = dir.join(format!("{}.npy", sanitize_name(&info.name)));
        write_npy(&path, arr).map_err(|e| error(e.to_string()))?;
        println!("wrote {} {}", path.display(), info.type_string());
        if let NpyData::F32(v) = &arr.data {
            for line in top5_lines(&info.name, &arr.shape, v) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

fn print_info(model: &Model) {
    println!("model {} (target {})", model.name, model.target);
    let list = |what: &str, ts: &[TensorInfo]| {
        for t in ts {
            println!("{what} {:?}: {}", t.name, t.type_string());
        }
    };
    list("input", &model.inputs);
    list("output", &model.outputs);
    println!(
        "arena {} bytes, weights {} bytes, {} kernels, CPU features: {}",
        model.arena_bytes,
        model.weight_bytes,
        model.num_kernels,
        if model.cpu_features.is_empty() {
            "none".to_string()
        } else {
            model.cpu_features.join(",")
        }
    );
}

/// The inputs in model order: the given files, or seeded random arrays when none is given.
fn load_inputs(model: &Model, a: &Args) -> Result<Vec<NpyArray>, Failure> {
    let names: Vec<&str> = model.inputs.iter().map(|i| i.name.as_str()).collect();
    if a.inputs.is_empty() {
        let mut rng = SplitMix(a.seed);
        let v = model
            .inputs
            .iter()
            .map(|i| {
                random_array(i.dtype, &i.shape, &mut rng)
                    .map_err(|e| error(format!("input {:?}: {e}", i.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !v.is_empty() {
            eprintln!("note: random inputs with seed {} (standard normal)", a.seed);
        }
        return Ok(v);
    }
    let mut slots: Vec<Option<NpyArray>> = model.inputs.iter().map(|_| None).collect();
    for (pos, spec) in a.inputs.iter().enumerate() {
        let (index, file) = match spec.split_once('=') {
            Some((n, f)) if names.contains(&n) => (names.iter().position(|x| *x == n), f),
            Some((n, _)) if !std::path::Path::new(spec).exists() => {
                return Err(usage(format!(
                    "--input {spec:?}: the model has no input {n:?} (inputs: {names:?})"
                )))
            }
            _ => (Some(pos), spec.as_str()),
        };
        let Some(i) = index.filter(|&i| i < model.inputs.len()) else {
            return Err(usage(format!(
                "--input {spec:?}: the model has only {} inputs ({names:?})",
                names.len()
            )));
        };
        let info = &model.inputs[i];
        if slots[i].is_some() {
            return Err(usage(format!("input {:?} is given twice", info.name)));
        }
        let limit = u64::try_from(info.bytes.saturating_mul(4).max(1 << 20)).unwrap_or(u64::MAX);
        let arr = read_npy(file.as_ref(), limit)
            .map_err(|e| error(format!("input {:?}: {e}", info.name)))?;
        if arr.dtype() != info.dtype || arr.shape != info.shape {
            return Err(error(format!(
                "input {:?}: the model takes {} but {file} holds {}",
                info.name,
                info.type_string(),
                type_string(arr.dtype(), &arr.shape)
            )));
        }
        slots[i] = Some(arr);
    }
    let missing: Vec<&str> = model
        .inputs
        .iter()
        .zip(&slots)
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| i.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(usage(format!(
            "missing input {missing:?}: give every input, or none for random inputs"
        )));
    }
    Ok(slots.into_iter().flatten().collect())
}

fn report_bench(model: &Model, s: &Stats, threads: usize, json: bool) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if json {
        println!(
            "{{\"model\":{},\"iters\":{},\"threads\":{},\"median_ms\":{:.6},\"min_ms\":{:.6},\
             \"p90_ms\":{:.6},\"mean_ms\":{:.6}}}",
            json_string(&model.name),
            s.iters,
            threads,
            ms(s.median),
            ms(s.min),
            ms(s.p90),
            ms(s.mean)
        );
    } else {
        println!(
            "{}: median {:.3} ms, min {:.3} ms, p90 {:.3} ms ({} runs, {} thread{})",
            model.name,
            ms(s.median),
            ms(s.min),
            ms(s.p90),
            s.iters,
            threads,
            if threads == 1 { "" } else { "s" }
        );
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, Failure> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_flags_with_separate_and_inline_values() {
        let a = args(&["--input", "x=a.npy", "--seed=5", "--threads", "2"])
            .ok()
            .unwrap();
        assert_eq!(a.inputs, ["x=a.npy"]);
        assert_eq!((a.seed, a.threads, a.bench), (5, 2, false));
        let b = args(&["--bench", "--iters=3", "--json"]).ok().unwrap();
        assert_eq!((b.bench, b.iters, b.json), (true, Some(3), true));
    }

    #[test]
    fn rejects_bad_usage() {
        for bad in [
            &["--threads", "0"][..],
            &["--threads", "1025"],
            &["--iters", "5"],
            &["--bench", "--output-dir", "d"],
            &["--seed"],
            &["--seed", "-1"],
            &["--frobnicate"],
            &["--bench=1"],
        ] {
            let Err(f) = args(bad) else {
                panic!("{bad:?} accepted")
            };
            assert_eq!(f.code, 2, "{bad:?}: {}", f.message);
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
