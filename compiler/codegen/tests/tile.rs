//! The Cranelift GEMM tile (`dync_codegen::tile`) against the runtime's portable kernel
//! (`gemm_f32_generic`, the contract in plain Rust): every `m <= 8`, `n <= 32` and a spread of
//! `k` (incl. 0 and values that are not multiples of the unrolling), both flags, with and
//! without bias, clamps with `lo > hi` and NaN bounds, NaN inputs, strides larger than `n`.
//! C lives inside a guarded buffer whose elements outside `m × n` must keep their bits; A, B
//! and the bias are exactly sized vectors (B ends at its last read element). With native FMA
//! the results may differ by the rounding of the products (bounded by `2(k+2)u·Σ|terms|`);
//! without FMA (the generic CPU) they must be bit-identical. `tile_gflops` (ignored) measures
//! the tile against the selected runtime kernel. The tile also compiles for aarch64.

use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::default_libcall_names;
use cranelift_object::{ObjectBuilder, ObjectModule};
use dync_codegen::target::{isa, CodegenOptions, Cpu, Target};
use dync_codegen::tile::emit_gemm_tile;
use dync_runtime::ukernel::{
    table, GemmF32Fn, Isa, GEMM_ACCUMULATE, GEMM_CLAMP, GEMM_F32_M0 as M0, GEMM_F32_N0 as N0,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A JIT-compiled tile; the module owns the code.
struct Tile {
    _module: JITModule,
    f: GemmF32Fn,
    fma: bool,
}

fn jit_tile(opts: &CodegenOptions) -> Tile {
    let isa = isa(opts, false).unwrap();
    let fma = isa.has_native_fma();
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let id = emit_gemm_tile(&mut module, "tile").unwrap();
    module.finalize_definitions().unwrap();
    let code = module.get_finalized_function(id);
    // SAFETY: the tile is defined with GemmF32Fn's C signature in the host's call conv.
    let f = unsafe { std::mem::transmute::<*const u8, GemmF32Fn>(code) };
    Tile {
        _module: module,
        f,
        fma,
    }
}

/// The runtime's portable kernel (`gemm_f32_generic` at the crate's tile size).
fn generic() -> GemmF32Fn {
    table(Isa::Generic).unwrap().gemm_f32
}

/// One call's operands.
#[derive(Clone, Debug)]
struct Case {
    k: usize,
    m: usize,
    n: usize,
    ldb: usize,
    ldc: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    /// The initial C buffer: `GUARD` elements, `M0` rows of `ldc`, `GUARD` elements.
    c: Vec<f32>,
    bias: Option<Vec<f32>>,
    flags: u32,
    lo: f32,
    hi: f32,
}

const GUARD: usize = 5;

impl Case {
    /// Random operands in [-1, 1]; A's lanes `m..M0` are NaN (read but must not matter).
    fn random(r: &mut ChaCha8Rng, k: usize, m: usize, n: usize) -> Case {
        let ldb = n + if r.random_bool(0.5) {
            0
        } else {
            r.random_range(1..9)
        };
        let ldc = n + r.random_range(0..9);
        let a = (0..k * M0)
            .map(|i| {
                if i % M0 < m {
                    r.random_range(-1.0..1.0)
                } else {
                    f32::NAN
                }
            })
            .collect();
        let b_len = if k == 0 { 0 } else { (k - 1) * ldb + n };
        let b = (0..b_len).map(|_| r.random_range(-1.0..1.0)).collect();
        let c = (0..2 * GUARD + M0 * ldc)
            .map(|_| r.random_range(-4.0..4.0))
            .collect();
        let bias = r
            .random_bool(0.5)
            .then(|| (0..m).map(|_| r.random_range(-1.0..1.0)).collect());
        let (lo, hi) = match r.random_range(0..4) {
            0 => (-0.5, 0.5),
            1 => (0.0, f32::INFINITY),
            2 => (0.3, -0.2), // lo > hi: hi everywhere
            _ => (f32::NAN, 0.25),
        };
        Case {
            k,
            m,
            n,
            ldb,
            ldc,
            a,
            b,
            c,
            bias,
            flags: r.random_range(0..4),
            lo,
            hi,
        }
    }

    /// Runs `f` on a copy of C; returns the whole C buffer.
    fn run(&self, f: GemmF32Fn) -> Vec<f32> {
        let mut c = self.c.clone();
        let bias = self.bias.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        // SAFETY: A holds k·M0 floats, B (k-1)·ldb + n, C M0 rows of ldc >= n after the
        // guard, bias m (or null).
        unsafe {
            f(
                self.k,
                self.a.as_ptr(),
                self.b.as_ptr(),
                self.ldb,
                c[GUARD..].as_mut_ptr(),
                self.ldc,
                self.m,
                self.n,
                bias,
                self.flags,
                self.lo,
                self.hi,
                // A side hint: it must not change any result.
                self.a.as_ptr(),
                self.a.len(),
            )
        };
        c
    }

    /// `Σ|terms|` of element (i, j): the scale of its rounding error.
    fn magnitude(&self, i: usize, j: usize) -> f32 {
        let mut s: f32 = (0..self.k)
            .map(|p| (self.a[p * M0 + i] * self.b[p * self.ldb + j]).abs())
            .sum();
        if self.flags & GEMM_ACCUMULATE != 0 {
            s += self.c[GUARD + i * self.ldc + j].abs();
        }
        if let Some(b) = &self.bias {
            s += b[i].abs();
        }
        s
    }

    /// Asserts the tile's C equals the generic kernel's: elements outside `m × n` bit for bit
    /// unchanged, the others bit-identical (`exact`) or within the FMA rounding bound; NaN
    /// where the reference has NaN.
    fn check(&self, tile: &Tile) {
        let got = self.run(tile.f);
        let want = self.run(generic());
        let exact = !tile.fma;
        let u = f32::EPSILON / 2.0;
        for (idx, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let inside = idx
                .checked_sub(GUARD)
                .filter(|_| self.ldc > 0)
                .and_then(|e| {
                    let (i, j) = (e / self.ldc, e % self.ldc);
                    (i < self.m.min(M0) && j < self.n.min(N0)).then_some((i, j))
                });
            let ok = match inside {
                None => g.to_bits() == self.c[idx].to_bits() && w.to_bits() == g.to_bits(),
                Some(_) if w.is_nan() || g.is_nan() => w.is_nan() && g.is_nan(),
                Some(_) if exact => g.to_bits() == w.to_bits(),
                Some((i, j)) => {
                    let tol = 2.0 * (self.k + 2) as f32 * u * self.magnitude(i, j);
                    g == w || (g - w).abs() <= tol
                }
            };
            assert!(
                ok,
                "C[{idx}] (element {inside:?}): tile {g} ({:#x}), generic {w} ({:#x}); {}",
                g.to_bits(),
                w.to_bits(),
                self.describe()
            );
        }
    }

    fn describe(&self) -> String {
        format!(
            "k={} m={} n={} ldb={} ldc={} flags={} bias={} lo={} hi={}",
            self.k,
            self.m,
            self.n,
            self.ldb,
            self.ldc,
            self.flags,
            self.bias.is_some(),
            self.lo,
            self.hi
        )
    }
}

/// Every (m, n, k) of the brief's grid, every flag value, random bias and bounds.
fn sweep(tile: &Tile, seed: u64) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    for k in [0, 1, 2, 3, 7, 64, 255, 256, 300] {
        for m in 0..=M0 {
            for n in 0..=N0 {
                for flags in 0..4 {
                    let mut case = Case::random(&mut r, k, m, n);
                    case.flags = flags;
                    case.check(tile);
                }
            }
        }
    }
}

#[test]
fn matches_generic_native() {
    sweep(&jit_tile(&CodegenOptions::default()), 1);
}

/// The baseline CPU (x86-64: SSE2 only, no FMA) with Cranelift's verifier on: bit-identical.
#[test]
fn matches_generic_baseline_cpu() {
    let opts = CodegenOptions {
        cpu: Cpu::Generic,
        checked: true,
        ..CodegenOptions::default()
    };
    let tile = jit_tile(&opts);
    assert!(cfg!(not(target_arch = "x86_64")) || !tile.fma);
    sweep(&tile, 2);
}

/// NaN and infinity operands: NaN sums stay NaN through the clamp, infinities are clamped.
#[test]
fn special_values() {
    let tile = jit_tile(&CodegenOptions::default());
    let mut r = ChaCha8Rng::seed_from_u64(3);
    for (m, n, k) in [(8, 32, 9), (5, 13, 4), (3, 7, 1), (8, 4, 0), (1, 1, 5)] {
        for flags in 0..4 {
            let mut case = Case::random(&mut r, k, m, n);
            case.flags = flags;
            case.lo = -0.5;
            case.hi = 0.5;
            for (i, x) in case.b.iter_mut().enumerate() {
                match i % 11 {
                    3 => *x = f32::NAN,
                    5 => *x = f32::INFINITY,
                    7 => *x = -0.0,
                    _ => {}
                }
            }
            for (i, x) in case.c.iter_mut().enumerate() {
                if i % 5 == 2 {
                    *x = f32::NAN;
                }
            }
            if let Some(b) = &mut case.bias {
                if let Some(x) = b.first_mut() {
                    *x = f32::NEG_INFINITY;
                }
            }
            case.check(&tile);
        }
    }
}

/// The tile is also the aarch64 hot path: it must compile for aarch64 (and x86-64 without
/// SIMD extensions) ahead of time, verifier on.
#[test]
fn compiles_for_other_targets() {
    for triple in ["aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu"] {
        let opts = CodegenOptions {
            target: Target::Triple(triple.parse().unwrap()),
            cpu: Cpu::Generic,
            checked: true,
            ..CodegenOptions::default()
        };
        let builder =
            ObjectBuilder::new(isa(&opts, true).unwrap(), "tile", default_libcall_names()).unwrap();
        let mut module = ObjectModule::new(builder);
        emit_gemm_tile(&mut module, "tile").unwrap();
        assert!(!module.finish().emit().unwrap().is_empty(), "{triple}");
    }
}

fn special() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -2.0f32..2.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(-0.0f32),
        1 => Just(0.0f32),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_matches_generic(
        (m, n, k) in (0..=M0, 0..=N0, 0usize..=40),
        ldb_pad in 0usize..5,
        ldc_pad in 0usize..5,
        flags in 0u32..4,
        with_bias in any::<bool>(),
        lo in special(),
        hi in special(),
        seed in any::<u64>(),
    ) {
        let tile = jit_tile(&CodegenOptions::default());
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let mut case = Case::random(&mut r, k, m, n);
        case.ldb = n + ldb_pad;
        case.ldc = n + ldc_pad;
        case.b = (0..if k == 0 { 0 } else { (k - 1) * case.ldb + n })
            .map(|_| r.random_range(-1.0..1.0))
            .collect();
        case.c = (0..2 * GUARD + M0 * case.ldc).map(|_| r.random_range(-4.0..4.0)).collect();
        case.flags = flags;
        case.bias = with_bias.then(|| (0..m).map(|_| r.random_range(-1.0..1.0)).collect());
        case.lo = lo;
        case.hi = hi;
        case.check(&tile);
    }
}

/// GFLOP/s of the Cranelift tile and of the selected runtime kernel for the full tile
/// (k = 256, m = 8, n = 32, ldb = 32), about 0.3 s each.
#[test]
#[ignore]
fn tile_gflops() {
    let (k, m, n) = (256, M0, N0);
    let mut r = ChaCha8Rng::seed_from_u64(4);
    let a: Vec<f32> = (0..k * M0).map(|_| r.random_range(-1.0..1.0)).collect();
    let b: Vec<f32> = (0..k * N0).map(|_| r.random_range(-1.0..1.0)).collect();
    let mut c = vec![0f32; M0 * N0];
    let tile = jit_tile(&CodegenOptions::default());
    let table = dync_runtime::ukernel::select();
    let flops = (2 * k * m * n) as f64;
    for (name, f) in [
        ("cranelift tile", tile.f),
        (table.isa.name(), table.gemm_f32),
    ] {
        let start = std::time::Instant::now();
        let mut calls = 0u64;
        while start.elapsed().as_secs_f64() < 0.3 {
            for _ in 0..100 {
                // SAFETY: A k·M0, B k·N0 (ldb = N0), C M0 × N0 (ldc = N0), no bias.
                unsafe {
                    f(
                        k,
                        a.as_ptr(),
                        b.as_ptr(),
                        N0,
                        c.as_mut_ptr(),
                        N0,
                        m,
                        n,
                        std::ptr::null(),
                        GEMM_CLAMP,
                        0.0,
                        f32::INFINITY,
                        std::ptr::null(),
                        0,
                    )
                };
            }
            calls += 100;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name:>15}: {:6.1} GFLOP/s ({calls} calls in {secs:.2} s)",
            flops * calls as f64 / secs / 1e9
        );
        std::hint::black_box(&mut c);
    }
}
