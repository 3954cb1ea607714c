//! GFLOP/s of each GEMM tile variant this CPU runs (criterion's throughput is in FLOPs, so its
//! "elem/s" reads as FLOP/s): one 8 × 32 tile over packed panels for K = 256 and 512 (the
//! panels stay in L1/L2, as in a blocked conv), and the same tile reading B straight from an
//! NCHW activation with a 56·56 row stride (a 1×1 conv without packing).
//!
//! Run briefly: `cargo bench -p dync-runtime --bench ukernel -- --warm-up-time 1
//! --measurement-time 3`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dync_runtime::ukernel::{table, Isa, GEMM_CLAMP, GEMM_F32_M0, GEMM_F32_N0};
use std::hint::black_box;

/// Deterministic, non-trivial values in [-1, 1).
fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

fn tile(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_f32_tile");
    for isa in Isa::ALL {
        let Some(t) = table(isa) else {
            eprintln!("{}: not supported by this CPU, skipped", isa.name());
            continue;
        };
        for (k, ldb, label) in [
            (256, GEMM_F32_N0, "packed"),
            (512, GEMM_F32_N0, "packed"),
            (256, 56 * 56, "ldb3136"),
        ] {
            let a = data(k * GEMM_F32_M0, 1);
            let b = data((k - 1) * ldb + GEMM_F32_N0, 2);
            let bias = data(GEMM_F32_M0, 3);
            let mut out = vec![0f32; GEMM_F32_M0 * GEMM_F32_N0];
            g.throughput(Throughput::Elements(
                2 * (k * GEMM_F32_M0 * GEMM_F32_N0) as u64,
            ));
            g.bench_function(
                BenchmarkId::new(isa.name(), format!("{label}/K{k}")),
                |bench| {
                    bench.iter(|| {
                        // SAFETY: full packed A panel, k rows of B at stride ldb, a full tile
                        // of C, M0 biases; the table's ISA is supported (checked by `table`).
                        unsafe {
                            (t.gemm_f32)(
                                black_box(k),
                                a.as_ptr(),
                                b.as_ptr(),
                                ldb,
                                out.as_mut_ptr(),
                                GEMM_F32_N0,
                                GEMM_F32_M0,
                                GEMM_F32_N0,
                                bias.as_ptr(),
                                GEMM_CLAMP,
                                0.0,
                                6.0,
                            )
                        };
                        black_box(&mut out);
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, tile);
criterion_main!(benches);
