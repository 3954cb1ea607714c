//! AOT objects ([`dync_codegen::object`]) at the library level: ELF for x86-64 and aarch64,
//! deterministic bytes, the exported symbols, unsupported targets and names rejected, and the
//! generated C wrapper exercised by a C program linked with the system compiler: results equal
//! to the JIT's, statuses and their messages (a gather fault names its node), null arguments,
//! and one handle shared by several threads giving the serial result.

mod common;

use common::*;
use dync_codegen::header::header;
use dync_codegen::object::{compile_object, CompiledObject, ObjectOptions};
use dync_codegen::{CodegenError, CodegenOptions, Cpu, JitModel, Target};
use dync_ir::ops::{Gather, Unary, UnaryKind};
use dync_ir::{Graph, Op, Tensor};
use std::path::Path;
use std::process::Command;

/// y = tanh(gather(table, idx)) over a 64-entry table: a libm call and a fault source.
fn model() -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let mut r = rng(7);
    let table = rand_f32(&mut r, &[64, 3]);
    let idx = Tensor::new([5], dync_ir::TensorData::I64(vec![0, 63, -1, 7, 20])).unwrap();
    let t = g.add_input("table", table.ty());
    let i = g.add_input("idx", idx.ty());
    let gathered = g
        .add(
            Op::Gather(Gather { axis: 0 }),
            &[t, i],
            Some("the_gather".into()),
        )
        .unwrap();
    let y = g
        .add(
            Op::Unary(Unary {
                kind: UnaryKind::Tanh,
            }),
            &[gathered],
            Some("the_tanh".into()),
        )
        .unwrap();
    g.set_output("y", y);
    (g, vec![table, idx])
}

fn compile(target: Target, name: &str, main: bool) -> Result<CompiledObject, CodegenError> {
    let (g, _) = model();
    let opts = CodegenOptions {
        cpu: if target == Target::Host {
            Cpu::Native
        } else {
            Cpu::Generic
        },
        target,
        checked: false,
        no_ukernels: false,
    };
    compile_object(
        &g,
        &opts,
        &ObjectOptions {
            name: name.into(),
            main,
        },
        &mut |_, _| {},
    )
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn objects_are_deterministic_elf_for_both_architectures() {
    for (target, machine) in [
        (Target::Host, 62u16),
        (
            Target::Triple("aarch64-unknown-linux-gnu".parse().unwrap()),
            183,
        ),
    ] {
        let (a_obj, b_obj) = (
            compile(target.clone(), "m", false).unwrap(),
            compile(target.clone(), "m", false).unwrap(),
        );
        let (a, b) = (a_obj.bytes().unwrap(), b_obj.bytes().unwrap());
        assert!(a == b, "{target:?}: not deterministic");
        // Streaming writes the same bytes; their fingerprint is a function of them.
        let mut streamed = Vec::new();
        let fingerprint = a_obj.write_to(&mut streamed).unwrap();
        assert!(streamed == a, "{target:?}: streamed object differs");
        assert_eq!(fingerprint, b_obj.write_to(std::io::sink()).unwrap());
        assert_eq!(&a[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([a[18], a[19]]), machine);
        for sym in [
            "dync_m_entry",
            "dync_m_model",
            "dync_m_create",
            "dync_m_run",
            "dync_m_destroy",
            "dync_m_error_message",
            "dync_m_error_node",
            "dync_m_arena_bytes",
            "tanhf",
            "aligned_alloc",
        ] {
            assert!(contains(&a, sym), "{target:?}: no symbol {sym}");
        }
        assert!(!contains(&a, "dync_rt_main"), "main only on request");
        assert!(!contains(&a, "dync_tanhf"), "libm names only");
    }
    let with_main = compile(Target::Host, "m", true).unwrap();
    assert!(contains(&with_main.bytes().unwrap(), "dync_rt_main"));
}

#[test]
fn unsupported_targets_and_names_are_errors() {
    for triple in [
        "riscv64gc-unknown-linux-gnu",
        "x86_64-pc-windows-msvc",
        "i686-unknown-linux-gnu",
    ] {
        let e = compile(Target::Triple(triple.parse().unwrap()), "m", false).unwrap_err();
        assert!(matches!(e, CodegenError::Target(_)), "{triple}: {e}");
    }
    let e = compile(
        Target::Triple("aarch64-unknown-linux-gnu".parse().unwrap()),
        "m",
        false,
    );
    assert!(e.is_ok(), "aarch64 with the generic CPU");
    for bad in ["a-b", "1x", ""] {
        assert!(matches!(
            compile(Target::Host, bad, false),
            Err(CodegenError::Target(_))
        ));
    }
}

#[test]
fn header_declares_the_api_and_the_signature() {
    let obj = compile(Target::Host, "net", false).unwrap();
    let h = header(&obj);
    for needle in [
        "#define DYNC_NET_NUM_INPUTS 2",
        "#define DYNC_NET_INPUT1_SHAPE {5}",
        "#define DYNC_NET_INPUT1_DTYPE DYNC_I64",
        "#define DYNC_NET_OUTPUT0_BYTES 60u",
        "dync_net* dync_net_create(void);",
        "int32_t dync_net_run(dync_net* model, const void* const* inputs, void* const* outputs);",
        "extern const dync_model_desc dync_net_model;",
        "input 0: \"table\" f32[64,3]",
    ] {
        assert!(h.contains(needle), "header lacks {needle:?}:\n{h}");
    }
}

const C_TEST: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "net.h"

static float table[64 * 3];
static int64_t idx[5] = {0, 63, -1, 7, 20};
static float serial[5 * 3];
static dync_net* shared;
static int failures;

static void* worker(void* arg) {
    (void)arg;
    for (int r = 0; r < 200; r++) {
        float y[5 * 3];
        const void* in[2] = {table, idx};
        void* out[1] = {y};
        if (dync_net_run(shared, in, out) != 0 || memcmp(y, serial, sizeof y) != 0)
            __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

int main(int argc, char** argv) {
    (void)argc;
    FILE* f = fopen(argv[1], "rb");
    if (!f || fread(table, sizeof table, 1, f) != 1) return 10;
    fclose(f);
    shared = dync_net_create();
    if (!shared) return 11;
    const void* in[2] = {table, idx};
    void* out[1] = {serial};
    int32_t st = dync_net_run(shared, in, out);
    if (st != 0) { printf("status %d %s\n", st, dync_net_error_message(st)); return 12; }
    f = fopen(argv[2], "wb");
    if (!f || fwrite(serial, sizeof serial, 1, f) != 1 || fclose(f)) return 13;

    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("threads %d\n", failures);

    int64_t bad[5] = {0, 64, 0, 0, 0};
    const void* in_bad[2] = {table, bad};
    st = dync_net_run(shared, in_bad, out);
    printf("fault %s | %s\n", dync_net_error_node(st) ? dync_net_error_node(st) : "(null)",
           dync_net_error_message(st));
    printf("null %d %s\n", dync_net_run(NULL, in, out), dync_net_error_message(DYNC_STATUS_NULL));
    printf("null-in %d\n", dync_net_run(shared, NULL, out));
    printf("ok %s | %s\n", dync_net_error_message(0), dync_net_error_node(0) ? "node" : "(null)");
    printf("unknown %s | %s\n", dync_net_error_message(12345), dync_net_error_message(-7));
    printf("oom %s\n", dync_net_error_message(DYNC_STATUS_NO_MEMORY));
    printf("arena %d\n", dync_net_arena_bytes == DYNC_NET_ARENA_BYTES &&
                         dync_net_model.arena_bytes == dync_net_arena_bytes);
    dync_net_destroy(shared);
    dync_net_destroy(NULL);
    return 0;
}
"#;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn c_wrapper_runs_reports_statuses_and_is_thread_safe() {
    let dir = std::env::temp_dir().join(format!("dync-codegen-aot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let obj = compile(Target::Host, "net", false).unwrap();
    write(&dir.join("net.o"), &obj.bytes().unwrap());
    write(&dir.join("net.h"), header(&obj).as_bytes());
    write(&dir.join("test.c"), C_TEST.as_bytes());
    let (g, inputs) = model();
    let table: Vec<u8> = inputs[0]
        .as_f32()
        .unwrap()
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    write(&dir.join("table.raw"), &table);
    let exe = dir.join("test");
    let cc = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(format!("-I{}", dir.display()))
        .arg(dir.join("test.c"))
        .arg(dir.join("net.o"))
        .args(["-lm", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe)
        .arg(dir.join("table.raw"))
        .arg(dir.join("y.raw"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}: {stdout}", out.status);

    let y: Vec<f32> = std::fs::read(dir.join("y.raw"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let jit = JitModel::compile(&g, &CodegenOptions::default())
        .unwrap()
        .run(&inputs)
        .unwrap();
    let want = jit[0].as_f32().unwrap();
    // libm's tanhf and the JIT's f64-rounded tanh agree within an ulp or two.
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() <= 1e-6 + 1e-6 * b.abs(), "{a} vs {b}");
    }
    let lines: Vec<&str> = stdout.lines().collect();
    let expect = [
        "threads 0".to_string(),
        "fault %2 (gather from \"the_gather\") | index out of range".to_string(),
        "null -1 a null model handle, or null input or output pointers".to_string(),
        "null-in -1".to_string(),
        "ok success | (null)".to_string(),
        "unknown unknown status | unknown status".to_string(),
        "oom out of memory (allocating the workspace of a concurrent run)".to_string(),
        "arena 1".to_string(),
    ];
    assert_eq!(lines, expect, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cpu_names_and_target_combinations_are_checked() {
    for name in Cpu::NAMES {
        assert_eq!(name.parse::<Cpu>().unwrap().name(), name);
    }
    assert!(matches!(
        "pentium".parse::<Cpu>(),
        Err(CodegenError::Target(_))
    ));
    let (g, _) = model();
    let aarch64 = Target::Triple("aarch64-unknown-linux-gnu".parse().unwrap());
    for cpu in [Cpu::Native, Cpu::X86_64V3] {
        let opts = CodegenOptions {
            target: aarch64.clone(),
            cpu,
            checked: false,
            no_ukernels: false,
        };
        let obj = ObjectOptions {
            name: "m".into(),
            main: false,
        };
        let e = compile_object(&g, &opts, &obj, &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, CodegenError::Target(_)), "{cpu:?}: {e}");
    }
    let x86 = |cpu| CodegenOptions {
        target: Target::Host,
        cpu,
        checked: false,
        no_ukernels: false,
    };
    let obj = ObjectOptions {
        name: "m".into(),
        main: false,
    };
    let base = compile_object(&g, &x86(Cpu::Generic), &obj, &mut |_, _| {}).unwrap();
    let v4 = compile_object(&g, &x86(Cpu::X86_64V4), &obj, &mut |_, _| {}).unwrap();
    assert!(base.cpu_features.is_empty(), "{:?}", base.cpu_features);
    for f in ["avx2", "fma", "avx512vl"] {
        assert!(
            v4.cpu_features.iter().any(|x| x == f),
            "{:?}",
            v4.cpu_features
        );
    }
}
