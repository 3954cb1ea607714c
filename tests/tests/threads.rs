//! Threads: generated code gives bit-identical outputs at every thread count, in process (the
//! JIT, on conv and dyn_conv layers with a batch of 3 and odd channel counts, also matching the
//! interpreter) and through compiled executables and shared libraries; the kernel hook of the
//! run-time context sees every kernel begin and end, in order.

mod aot_common;

use aot_common::{compile, export_zoo, random_input, run_ok};
use dync_codegen::{CodegenOptions, JitModel};
use dync_ir::ops::{Conv, DynConv, Unary, UnaryKind};
use dync_ir::{Graph, Op, Tensor, TensorData, TensorType};
use dync_runtime::ctx::{RtCtx, HOOK_BEGIN, HOOK_END};
use std::process::Command;
use std::sync::Mutex;

/// SplitMix-seeded standard-normal tensor.
fn rand(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = dync_runtime::rt::SplitMix(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() * 0.5).collect();
    Tensor::new(shape.to_vec(), TensorData::F32(v)).unwrap()
}

/// x [3, 5, 13, 11] → conv 5→7 (3×3, pad 1, bias) → relu → dyn_conv 7→9 (3×3, stride 2,
/// 3 experts per output channel, static bias and bias bank) → dyn_conv 9→9 (group 3, 1 expert
/// coefficient per image) → outputs.
fn graph() -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let x = rand(&[3, 5, 13, 11], 1);
    let c1 = rand(&[3, 9, 3], 2);
    let c2 = rand(&[3, 2], 3);
    let xi = g.add_input("x", x.ty());
    let c1i = g.add_input("c1", c1.ty());
    let c2i = g.add_input("c2", c2.ty());
    let w = g.add_const(rand(&[7, 5, 3, 3], 4), None);
    let b = g.add_const(rand(&[7], 5), None);
    let conv = Conv {
        strides: [1, 1],
        pads: [1; 4],
        dilations: [1, 1],
        group: 1,
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    };
    let y = g
        .add(Op::Conv(conv), &[xi, w, b], Some("conv".into()))
        .unwrap();
    let y = g
        .add(
            Op::Unary(Unary {
                kind: UnaryKind::Relu,
            }),
            &[y],
            None,
        )
        .unwrap();
    let bank = g.add_const(rand(&[3, 9, 7, 3, 3], 6), None);
    let bias = g.add_const(rand(&[9], 7), None);
    let bias_bank = g.add_const(rand(&[3, 9], 8), None);
    let d1 = DynConv {
        strides: [2, 2],
        pads: [1; 4],
        dilations: [1, 1],
        group: 1,
        bias: true,
        bias_bank: true,
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    };
    let y = g
        .add(
            Op::DynConv(d1),
            &[y, c1i, bank, bias, bias_bank],
            Some("dyn1".into()),
        )
        .unwrap();
    let bank2 = g.add_const(rand(&[2, 9, 3, 3, 3], 9), None);
    let d2 = DynConv {
        strides: [1, 1],
        pads: [1; 4],
        dilations: [1, 1],
        group: 3,
        bias: false,
        bias_bank: false,
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    };
    let z = g
        .add(Op::DynConv(d2), &[y, c2i, bank2], Some("dyn2".into()))
        .unwrap();
    g.set_output("y", y);
    g.set_output("z", z);
    (g, vec![x, c1, c2])
}

fn bits(ts: &[Tensor]) -> Vec<Vec<u32>> {
    ts.iter()
        .map(|t| match t.data() {
            TensorData::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            _ => panic!("f32 outputs expected"),
        })
        .collect()
}

#[test]
fn jit_outputs_are_bit_identical_at_every_thread_count() {
    let (g, inputs) = graph();
    let want = dync_interp::run(&g, &inputs).unwrap();
    for checked in [false, true] {
        let opts = CodegenOptions {
            checked,
            ..Default::default()
        };
        let mut m = JitModel::compile(&g, &opts).unwrap();
        let serial = m.run(&inputs).unwrap();
        for (got, want) in serial.iter().zip(&want) {
            let (TensorData::F32(a), TensorData::F32(b)) = (got.data(), want.data()) else {
                panic!("f32 outputs expected")
            };
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-4 + 1e-3 * y.abs(), "{x} vs {y}");
            }
        }
        for threads in [2, 3, 4, 1] {
            m.set_threads(threads).unwrap();
            assert_eq!(m.threads(), threads);
            for _ in 0..3 {
                let got = m.run(&inputs).unwrap();
                assert!(
                    bits(&got) == bits(&serial),
                    "{threads} threads (checked={checked}) differ from 1"
                );
            }
        }
    }
}

static EVENTS: Mutex<Vec<(u32, u32)>> = Mutex::new(Vec::new());

unsafe extern "C" fn record(_ctx: *mut RtCtx, kernel: u32, phase: u32) {
    EVENTS.lock().unwrap().push((kernel, phase));
}

#[test]
fn the_kernel_hook_brackets_every_kernel() {
    let (g, inputs) = graph();
    let mut m = JitModel::compile(&g, &CodegenOptions::default()).unwrap();
    m.set_threads(2).unwrap();
    m.ctx_mut().kernel_hook = Some(record);
    m.run(&inputs).unwrap();
    let kernels = m.emitted().kernels.len() as u32;
    let events = std::mem::take(&mut *EVENTS.lock().unwrap());
    let want: Vec<(u32, u32)> = (0..kernels)
        .flat_map(|k| [(k, HOOK_BEGIN), (k, HOOK_END)])
        .collect();
    assert_eq!(events, want);
    m.ctx_mut().kernel_hook = None;
    m.run(&inputs).unwrap();
    assert!(EVENTS.lock().unwrap().is_empty());
}

/// The output files of `exe` run with `threads` threads on `input`.
fn exe_outputs(exe: &std::path::Path, input: &std::path::Path, threads: usize) -> Vec<Vec<u8>> {
    let dir = exe.with_file_name(format!("out{threads}"));
    run_ok(
        Command::new(exe)
            .arg("--input")
            .arg(input)
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--output-dir")
            .arg(&dir),
    );
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn executables_give_identical_outputs_at_every_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_zoo(
        dir.path(),
        "dy-mobile",
        32,
        &["--batch", "3"],
        "dy_mobile.onnx",
    );
    let exe = dir.path().join("dy_mobile");
    compile(&model, &exe, &[]);
    let input = dir.path().join("x.npy");
    random_input(&input, &[3, 3, 32, 32], 7);
    let serial = exe_outputs(&exe, &input, 1);
    for threads in [2, 3, 4] {
        assert!(
            exe_outputs(&exe, &input, threads) == serial,
            "{threads} threads differ from 1"
        );
    }
    let bench =
        run_ok(Command::new(&exe).args(["--bench", "--iters", "2", "--threads", "2", "--json"]));
    let line = String::from_utf8_lossy(&bench.stdout);
    assert!(
        line.contains("\"threads\":2") && line.contains("median_ms"),
        "{line}"
    );
}

#[test]
fn threads_need_no_input_type_change() {
    // A model without parallel kernels runs the same on a pool.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([2, 3]));
    let y = g
        .add(
            Op::Unary(Unary {
                kind: UnaryKind::Neg,
            }),
            &[x],
            None,
        )
        .unwrap();
    g.set_output("y", y);
    let mut m = JitModel::compile(&g, &CodegenOptions::default()).unwrap();
    m.set_threads(3).unwrap();
    let t = rand(&[2, 3], 11);
    let out = m.run(std::slice::from_ref(&t)).unwrap();
    let (TensorData::F32(a), TensorData::F32(b)) = (out[0].data(), t.data()) else {
        panic!("f32")
    };
    assert!(a.iter().zip(b).all(|(x, y)| *x == -*y));
}

/// A C program comparing `create()` with `create_threads(3)` on one input, for a model named
/// `dymob` with one f32 input and one output.
const SO_HARNESS: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "libdymob.h"
int main(void) {
    size_t in_bytes = DYNC_DYMOB_INPUT0_BYTES, out_bytes = DYNC_DYMOB_OUTPUT0_BYTES;
    float* x = malloc(in_bytes);
    void* a = malloc(out_bytes);
    void* b = malloc(out_bytes);
    for (size_t i = 0; i < in_bytes / 4; i++) x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    dync_dymob* s = dync_dymob_create();
    dync_dymob* p = dync_dymob_create_threads(3);
    if (!s || !p || !x || !a || !b) { fprintf(stderr, "create failed\n"); return 1; }
    const void* in[1] = {x};
    void* oa[1] = {a};
    void* ob[1] = {b};
    if (dync_dymob_run(s, in, oa) || dync_dymob_run(p, in, ob) || dync_dymob_run(p, in, ob)) return 2;
    int same = memcmp(a, b, out_bytes) == 0;
    dync_dymob_destroy(s);
    dync_dymob_destroy(p);
    printf(same ? "same\n" : "differ\n");
    return same ? 0 : 3;
}
"#;

#[test]
fn shared_libraries_run_on_threads_with_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_zoo(
        dir.path(),
        "dy-mobile",
        32,
        &["--batch", "2"],
        "dy_mobile.onnx",
    );
    let so = dir.path().join("libdymob.so");
    compile(&model, &so, &["--emit", "so", "--name", "dymob"]);
    let src = dir.path().join("main.c");
    std::fs::write(&src, SO_HARNESS).unwrap();
    let exe = dir.path().join("main");
    run_ok(
        Command::new(dync_codegen::link::c_compiler())
            .args(["-std=c11", "-O1", "-Wall", "-Werror"])
            .arg(format!("-I{}", dir.path().display()))
            .arg(&src)
            .arg(&so)
            .arg(format!("-Wl,-rpath,{}", dir.path().display()))
            .arg("-o")
            .arg(&exe),
    );
    let out = run_ok(&mut Command::new(&exe));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "same");
}
