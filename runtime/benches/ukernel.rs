//! GFLOP/s of each GEMM tile variant this CPU runs (criterion's throughput is in FLOPs, so its
//! "elem/s" reads as FLOP/s): one 8 × 32 tile over packed panels for K = 256 and 512 (the
//! panels stay in L1/L2, as in a blocked conv), and the same tile reading B straight from an
//! NCHW activation with a 56·56 row stride (a 1×1 conv without packing). `fma_peak` measures
//! the FMA throughput the CPU gives right now (independent register FMAs, no loads), the
//! ceiling to read the tiles against on a shared machine. `silu_f32`: elements per second of
//! each SiLU variant over a 56×56 plane. `mix_f32`: bytes of bank per second each mixing
//! variant streams; `mix_f32_images` the elements each mixes for 8 images from a block in L2.
//! `dw_f32`: outputs per second of each depthwise variant over a 112×112
//! and a 56×56 plane; `dwc_f32` of the channel-block variants over 16 channels of a 7×7 map
//! (5×5, SiLU). `gemv_f32`: bytes of weights per second each matrix-vector variant streams.
//! `taps_f32`: FLOP/s of the in-place stride-1 convolution tile against the GEMM tile on the
//! packed panel it replaces.
//!
//! Run briefly: `cargo bench -p dync-runtime --bench ukernel -- --warm-up-time 1
//! --measurement-time 3`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dync_runtime::ukernel::{table, Isa, GEMM_CLAMP, GEMM_F32_M0, GEMM_F32_N0, GEMM_SILU};
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
                                std::ptr::null(),
                                0,
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

/// Independent FMA chains per loop step: enough to cover latency × ports on current cores.
const CHAINS: usize = 16;
/// Loop steps per measured call.
const STEPS: usize = 4096;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_zmm(x: f32) -> f32 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm512_set1_ps(black_box(0.999)), _mm512_set1_ps(1e-3));
    let mut acc = [_mm512_set1_ps(x); CHAINS];
    for _ in 0..STEPS {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    _mm512_reduce_add_ps(
        acc.into_iter()
            .fold(_mm512_setzero_ps(), |s, a| _mm512_add_ps(s, a)),
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_ymm(x: f32) -> f32 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm256_set1_ps(black_box(0.999)), _mm256_set1_ps(1e-3));
    // 12 chains: 16 ymm registers hold them and the two operands.
    let mut acc = [_mm256_set1_ps(x); 12];
    for _ in 0..STEPS {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut out = [0f32; 8];
    let s = acc
        .into_iter()
        .fold(_mm256_setzero_ps(), |s, a| _mm256_add_ps(s, a));
    // SAFETY: 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}

#[cfg(target_arch = "x86_64")]
fn fma_peak(c: &mut Criterion) {
    let mut g = c.benchmark_group("fma_peak");
    if is_x86_feature_detected!("avx512f") {
        g.throughput(Throughput::Elements((2 * 16 * CHAINS * STEPS) as u64));
        // SAFETY: AVX-512F checked above.
        g.bench_function("avx512", |b| b.iter(|| unsafe { fma_zmm(black_box(1.0)) }));
    }
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        g.throughput(Throughput::Elements((2 * 8 * 12 * STEPS) as u64));
        // SAFETY: AVX2 and FMA checked above.
        g.bench_function("avx2", |b| b.iter(|| unsafe { fma_ymm(black_box(1.0)) }));
    }
    g.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_peak(_: &mut Criterion) {}

/// Elements per second of each SiLU variant over one 56×56 plane (in place, in L1/L2).
fn silu(c: &mut Criterion) {
    let mut g = c.benchmark_group("silu_f32");
    let n = 56 * 56;
    g.throughput(Throughput::Elements(n as u64));
    for isa in Isa::ALL {
        let Some(t) = table(isa) else {
            continue;
        };
        // Values in [-1, 1): SiLU maps them back into the range, so repeated runs stay finite.
        let mut x = data(n, 4);
        g.bench_function(isa.name(), |bench| {
            bench.iter(|| {
                // SAFETY: one row of n elements inside `x`.
                unsafe { (t.silu_f32)(x.as_mut_ptr(), 1, n, n) };
                black_box(&mut x);
            })
        });
    }
    g.finish();
}

/// Bytes of bank per second each mixing variant reads: CondConv's 4-expert bank of a 192→1152
/// 1×1 layer (3.5 MB, beyond L2), mixed for one image in calls of 192 steps, one channel panel
/// each, as a fused dyn_conv does.
fn mix(c: &mut Criterion) {
    let mut g = c.benchmark_group("mix_f32");
    let (experts, steps, panels) = (4, 192, 1152 / GEMM_F32_M0);
    // The compiler's blocked bank: per panel, each step's experts side by side.
    let block = steps * experts * GEMM_F32_M0;
    let bank = data(panels * block, 5);
    let coefs = data(experts * GEMM_F32_M0, 6);
    let mut dst = vec![0f32; steps * GEMM_F32_M0];
    g.throughput(Throughput::Bytes((panels * block * 4) as u64));
    for isa in Isa::ALL {
        let Some(t) = table(isa) else {
            continue;
        };
        g.bench_function(isa.name(), |bench| {
            bench.iter(|| {
                for p in 0..panels {
                    // SAFETY: panel p's steps of every expert are inside `bank`; `dst` holds
                    // one image's `steps` rows.
                    unsafe {
                        (t.mix_f32)(
                            steps,
                            bank.as_ptr().add(p * block),
                            GEMM_F32_M0,
                            experts * GEMM_F32_M0,
                            experts,
                            coefs.as_ptr(),
                            1,
                            dst.as_mut_ptr(),
                            0,
                        )
                    };
                    black_box(&mut dst);
                }
            })
        });
    }
    g.finish();
}

/// Mixed elements (image × expert × lane) per second of each mixing variant at batch 8: one
/// panel's block of 192 steps of 8 experts (48 KB, in L2) for 8 images, as a dyn_conv's
/// mixing phase at batch 8 calls it (bound by instructions, not memory).
fn mix_images(c: &mut Criterion) {
    let mut g = c.benchmark_group("mix_f32_images");
    let (experts, steps, images) = (8, 192, 8);
    let block = steps * experts * GEMM_F32_M0;
    let bank = data(block, 5);
    let coefs = data(images * experts * GEMM_F32_M0, 6);
    let mut dst = vec![0f32; images * steps * GEMM_F32_M0];
    g.throughput(Throughput::Elements((images * block) as u64));
    for isa in Isa::ALL {
        let Some(t) = table(isa) else {
            continue;
        };
        g.bench_function(isa.name(), |bench| {
            bench.iter(|| {
                // SAFETY: the block's steps of every expert are inside `bank`; `dst` holds
                // `images` rows of `steps` steps.
                unsafe {
                    (t.mix_f32)(
                        steps,
                        bank.as_ptr(),
                        GEMM_F32_M0,
                        experts * GEMM_F32_M0,
                        experts,
                        coefs.as_ptr(),
                        images,
                        dst.as_mut_ptr(),
                        steps * GEMM_F32_M0,
                    )
                };
                black_box(&mut dst);
            })
        });
    }
    g.finish();
}

/// Output elements per second of each depthwise variant: MobileNetV2's 3×3 depthwise convs
/// over one 112×112 and one 56×56 channel, stride 1 and 2, with ReLU6.
fn dw(c: &mut Criterion) {
    let mut g = c.benchmark_group("dw_f32");
    for (h, w) in [(112usize, 112usize), (56, 56)] {
        let x = data(h * w, 7);
        let wts = data(9, 8);
        for s in [1, 2] {
            let (oh, ow) = ((h - 1) / s + 1, (w - 1) / s + 1);
            let mut y = vec![0f32; oh * ow];
            g.throughput(Throughput::Elements((oh * ow) as u64));
            for isa in Isa::ALL {
                let Some(f) = table(isa).and_then(|t| t.dw_f32) else {
                    continue;
                };
                // The plane whole, then in two bands of rows as the compiler cuts it
                // (each band a plane of the input rows its windows reach).
                for bands in [1usize, 2] {
                    let name = match bands {
                        1 => format!("3x3s{s}w{w}"),
                        _ => format!("3x3s{s}w{w}/{bands}bands"),
                    };
                    g.bench_function(BenchmarkId::new(isa.name(), name), |bench| {
                        bench.iter(|| {
                            let per = oh / bands;
                            for b in 0..bands {
                                let (r0, r1) = (b * per, (b + 1) * per);
                                let first = (r0 * s) as isize - 1;
                                let lo = first.max(0) as usize;
                                let hi = ((r1 - 1) * s + 2).min(h);
                                let pt = (lo as isize - first) as usize;
                                // SAFETY: rows lo..hi of the h×w plane, a 3×3 kernel, rows
                                // r0..r1 of the oh×ow output.
                                unsafe {
                                    f(
                                        x.as_ptr().add(lo * w),
                                        hi - lo,
                                        w,
                                        wts.as_ptr(),
                                        3,
                                        3,
                                        s,
                                        s,
                                        pt,
                                        1,
                                        y.as_mut_ptr().add(r0 * ow),
                                        r1 - r0,
                                        ow,
                                        0.5,
                                        GEMM_CLAMP,
                                        0.0,
                                        6.0,
                                    )
                                };
                            }
                            black_box(&mut y);
                        })
                    });
                }
            }
        }
    }
    g.finish();
}

/// Output elements per second of each small-map depthwise variant, the plane's padding
/// included: MobileNetV2's 3×3 depthwise convs on 28×28 and 14×14 maps (stride 1, and stride 2
/// from twice the size) with ReLU6, EfficientNet's 5×5 on 28×28 with SiLU, and stride 2 from
/// 14×14 to 7×7 with SiLU (against the channel-block kernel's `dwc_f32` cases: per output).
fn dwp(c: &mut Criterion) {
    let mut g = c.benchmark_group("dwp_f32");
    for (ow, k, s, flags) in [
        (28usize, 3usize, 1usize, GEMM_CLAMP),
        (28, 3, 2, GEMM_CLAMP),
        (14, 3, 1, GEMM_CLAMP),
        (14, 3, 2, GEMM_CLAMP),
        (28, 5, 1, GEMM_SILU),
        (7, 3, 2, GEMM_SILU),
        (7, 5, 2, GEMM_SILU),
    ] {
        let w = ow * s;
        let x = data(w * w, 11);
        let wts = data(k * k, 12);
        let mut y = vec![0f32; ow * ow];
        g.throughput(Throughput::Elements((ow * ow) as u64));
        for isa in Isa::ALL {
            let Some(f) = table(isa).and_then(|t| t.dwp_f32) else {
                continue;
            };
            let name = format!("{k}x{k}s{s}w{ow}");
            g.bench_function(BenchmarkId::new(isa.name(), name), |bench| {
                bench.iter(|| {
                    // SAFETY: the w×w plane, a k×k kernel, the ow×ow output.
                    unsafe {
                        f(
                            x.as_ptr(),
                            w,
                            w,
                            wts.as_ptr(),
                            k,
                            k,
                            s,
                            s,
                            k / 2,
                            k / 2,
                            y.as_mut_ptr(),
                            ow,
                            ow,
                            0.5,
                            flags,
                            0.0,
                            6.0,
                        )
                    };
                    black_box(&mut y);
                })
            });
        }
    }
    g.finish();
}

/// Outputs per second of each channel-block depthwise variant: 16 channels of a 7×7 map with
/// SiLU, a 5×5 kernel (EfficientNet's last stage), and stride 2 from 14×14 with 3×3 and 5×5
/// kernels (the stage entries).
fn dwc(c: &mut Criterion) {
    use dync_runtime::ukernel::dwc::{DwcGeo, DWC_CHANNELS};
    let mut g = c.benchmark_group("dwc_f32");
    for (k, s) in [(5usize, 1usize), (3, 2), (5, 2)] {
        let h = 7 * s;
        let geo = DwcGeo {
            h,
            w: h,
            oh: 7,
            ow: 7,
            kh: k,
            kw: k,
            s,
            pt: k / 2,
            pl: k / 2,
        };
        let x = data(DWC_CHANNELS * h * h, 9);
        let wts = data(DWC_CHANNELS * k * k, 10);
        let bias = data(DWC_CHANNELS, 11);
        let mut y = vec![0f32; DWC_CHANNELS * 49];
        g.throughput(Throughput::Elements((DWC_CHANNELS * 49) as u64));
        for isa in Isa::ALL {
            let Some(f) = table(isa).and_then(|t| t.dwc_f32) else {
                continue;
            };
            let name = format!("{k}x{k}s{s}w7");
            g.bench_function(BenchmarkId::new(isa.name(), name), |bench| {
                bench.iter(|| {
                    // SAFETY: 16 planes of h×h, 16 kernels of k×k, 16 biases and outputs.
                    unsafe {
                        f(
                            x.as_ptr(),
                            h * h,
                            &geo,
                            wts.as_ptr(),
                            k * k,
                            bias.as_ptr(),
                            y.as_mut_ptr(),
                            49,
                            DWC_CHANNELS,
                            GEMM_SILU,
                            0.0,
                            0.0,
                        )
                    };
                    black_box(&mut y);
                })
            });
        }
    }
    g.finish();
}

/// Bytes of weights per second each matrix-vector variant reads: MobileNetV2's classifier,
/// 1280 → 1000 (5 MB, beyond L2), for one vector and for a batch of eight.
fn gemv(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemv_f32");
    // A classifier (L3-resident: 5 MB) at batch 1 and 8, and DyNet ResNet-50's largest
    // predictor layer run over eight copies in turn (75 MB: its weights stream from memory,
    // as in a model's run), and DyNet MobileNetV3-large's largest (160 wide, 8 MB) from L3
    // and over eight copies from memory.
    for (k, n, m, copies, label) in [
        (1280, 1000, 1, 1, "fc1280x1000"),
        (1280, 1000, 8, 1, "b8fc1280x1000"),
        (256, 9216, 1, 8, "dram256x9216"),
        (160, 12480, 1, 1, "l3_160x12480"),
        (160, 12480, 1, 8, "dram160x12480"),
    ] {
        let x = data(m * k, 9);
        let w = data(n * k * copies, 10);
        let mut y = vec![0f32; m * n];
        g.throughput(Throughput::Bytes((n * k * 4) as u64));
        for isa in Isa::ALL {
            let Some(f) = table(isa).and_then(|t| t.gemv_f32) else {
                continue;
            };
            let mut copy = 0;
            g.bench_function(BenchmarkId::new(isa.name(), label), |bench| {
                bench.iter(|| {
                    copy = (copy + 1) % copies;
                    // SAFETY: x has m vectors of k floats, w `copies` matrices of n rows of k,
                    // y m rows of n floats.
                    unsafe {
                        f(
                            k,
                            x.as_ptr(),
                            k,
                            m,
                            w.as_ptr().add(copy * n * k),
                            k,
                            y.as_mut_ptr(),
                            n,
                            n,
                        )
                    };
                    black_box(&mut y);
                })
            });
        }
    }
    g.finish();
}

/// The in-place stride-1 convolution tile against the GEMM tile on the packed panel it
/// replaces: 28 input channels of a 3×3 conv with padding 1 (K = 252, a chunk of ResNet's
/// 64-channel layer 1) over a 56×56 map, one 8 × 32 tile crossing a row end
/// (`in_place`); and over a 7×7 map, its one tile of 49 columns (`in_place_7x7`: ResNet's
/// layer 4).
fn taps(c: &mut Criterion) {
    use dync_runtime::ukernel::taps::{TapGeo, TAPS_COLUMNS};
    let mut g = c.benchmark_group("taps_f32");
    let k = 28 * 9;
    let a = data(k * GEMM_F32_M0, 1);
    let b = data(k * GEMM_F32_N0, 2);
    let bias = data(GEMM_F32_M0, 3);
    // The 56×56 tile's first position (row 10, column 40), which the packed case stores too.
    let row_end = 56 * 10 + 40;
    for (label, side, pos0, n) in [
        ("in_place", 56, row_end, GEMM_F32_N0),
        ("in_place_7x7", 7, 0, TAPS_COLUMNS),
    ] {
        let geo = TapGeo {
            h: side,
            w: side,
            s: 1,
            kh: 3,
            kw: 3,
            dh: 1,
            dw: 1,
            pt: 1,
            pl: 1,
        };
        let x = data(28 * side * side, 4);
        let mut out = vec![0f32; GEMM_F32_M0 * side * side];
        g.throughput(Throughput::Elements(2 * (k * GEMM_F32_M0 * n) as u64));
        for isa in Isa::ALL {
            let Some(f) = table(isa).and_then(|t| t.taps_f32) else {
                continue;
            };
            g.bench_function(BenchmarkId::new(isa.name(), label), |bench| {
                bench.iter(|| {
                    // SAFETY: the planes hold every tap the tile reads, C 8 rows of the map.
                    unsafe {
                        f(
                            black_box(k),
                            a.as_ptr(),
                            k * GEMM_F32_M0,
                            x.as_ptr(),
                            &geo,
                            pos0,
                            out.as_mut_ptr().add(pos0),
                            side * side,
                            std::ptr::null(),
                            GEMM_F32_M0,
                            n,
                            bias.as_ptr(),
                            GEMM_CLAMP,
                            0.0,
                            6.0,
                            std::ptr::null(),
                            0,
                        )
                    };
                    black_box(&mut out);
                })
            });
        }
    }
    g.throughput(Throughput::Elements(
        2 * (k * GEMM_F32_M0 * GEMM_F32_N0) as u64,
    ));
    let mut out = vec![0f32; GEMM_F32_M0 * 56 * 56];
    for isa in Isa::ALL {
        let Some(t) = table(isa) else { continue };
        g.bench_function(BenchmarkId::new(isa.name(), "packed"), |bench| {
            bench.iter(|| {
                // SAFETY: as `tile`'s packed case.
                unsafe {
                    (t.gemm_f32)(
                        black_box(k),
                        a.as_ptr(),
                        b.as_ptr(),
                        GEMM_F32_N0,
                        out.as_mut_ptr().add(row_end),
                        56 * 56,
                        GEMM_F32_M0,
                        GEMM_F32_N0,
                        bias.as_ptr(),
                        GEMM_CLAMP,
                        0.0,
                        6.0,
                        std::ptr::null(),
                        0,
                    )
                };
                black_box(&mut out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tile, fma_peak, silu, mix, mix_images, dw, dwp, dwc, gemv, taps);
criterion_main!(benches);
