//! Every GEMM tile variant this CPU runs (and the generic one at other tile sizes) against an
//! f64 reference: every edge tile, K of 0, 1 and more, accumulate/overwrite, each epilogue,
//! strided B and C, NaN in everything the contract says is not used, and elements outside the
//! tile left untouched.

use super::*;
use crate::rt::SplitMix;
use proptest::prelude::*;

/// One call of the tile contract.
#[derive(Clone, Copy, Debug)]
struct Case {
    k: usize,
    m: usize,
    n: usize,
    /// `ldb - n` (so `ldb == n0` when `n == n0` and this is 0: a packed panel).
    ldb_extra: usize,
    ldc_extra: usize,
    flags: u32,
    bias: bool,
    lo: f32,
    hi: f32,
    seed: u64,
}

/// Value of every element the kernel must not read as data or must not write.
const POISON: f32 = f32::NAN;
/// Value of C's elements outside the tile (checked bit for bit afterwards).
const GUARD: f32 = -7.25e30;

/// Runs `case` through `kernel` (tile `m0 × n0`) and checks it against the f64 reference.
fn check(kernel: GemmF32Fn, m0: usize, n0: usize, case: Case) -> Result<(), String> {
    let Case { k, m, n, .. } = case;
    assert!(m <= m0 && n <= n0, "a case within the tile");
    let mut rng = SplitMix(case.seed);
    let ldb = n + case.ldb_extra;
    let ldc = n + case.ldc_extra;
    // A: k rows of m0; lanes m.. are read but must not matter.
    let a: Vec<f32> = (0..k * m0)
        .map(|e| if e % m0 < m { rng.normal() } else { POISON })
        .collect();
    // B: exactly as long as the contract requires, gaps between rows poisoned.
    let b_len = if k == 0 { 0 } else { (k - 1) * ldb + n };
    let b: Vec<f32> = (0..b_len)
        .map(|e| if e % ldb < n { rng.normal() } else { POISON })
        .collect();
    let bias: Vec<f32> = (0..m).map(|_| rng.normal()).collect();
    // C: m0 rows so that writes to rows m.. would show.
    let c0: Vec<f32> = (0..m0 * ldc)
        .map(|e| {
            if e / ldc < m && e % ldc < n {
                rng.normal()
            } else {
                GUARD
            }
        })
        .collect();
    let mut c = c0.clone();
    let bias_ptr = if case.bias {
        bias.as_ptr()
    } else {
        std::ptr::null()
    };
    // SAFETY: the buffers are laid out as the contract requires for this case.
    unsafe {
        kernel(
            k,
            a.as_ptr(),
            b.as_ptr(),
            ldb,
            c.as_mut_ptr(),
            ldc,
            m,
            n,
            bias_ptr,
            case.flags,
            case.lo,
            case.hi,
            // The side hint over other memory: results must not depend on it.
            c0.as_ptr(),
            c0.len(),
        )
    };
    for (e, (&got, &old)) in c.iter().zip(&c0).enumerate() {
        let (i, j) = (e / ldc, e % ldc);
        if i >= m || j >= n {
            if got.to_bits() != old.to_bits() {
                return Err(format!("C[{i}][{j}] outside the tile changed to {got}"));
            }
            continue;
        }
        // The reference and the magnitude of everything summed (for the rounding bound).
        let (mut s, mut mag) = (0f64, 0f64);
        for p in 0..k {
            let t = f64::from(a[p * m0 + i]) * f64::from(b[p * ldb + j]);
            s += t;
            mag += t.abs();
        }
        if case.flags & GEMM_ACCUMULATE != 0 {
            s += f64::from(old);
            mag += f64::from(old).abs();
        }
        if case.bias {
            s += f64::from(bias[i]);
            mag += f64::from(bias[i]).abs();
        }
        if case.flags & GEMM_CLAMP != 0 {
            let (lo, hi) = (f64::from(case.lo), f64::from(case.hi));
            s = if lo > s { lo } else { s };
            s = if hi < s { hi } else { s };
        }
        // k + 2 roundings of the sum (FMA or not), one of the result; clamping is 1-Lipschitz.
        let mut tol =
            (k as f64 + 3.0) * f64::from(f32::EPSILON) * mag + f64::from(f32::MIN_POSITIVE);
        if case.flags & GEMM_SILU != 0 {
            // |d/ds s·σ(s)| < 1.1; a few ulp of SiLU's own rounding; σ saturating below −87.3.
            s /= 1.0 + (-s).exp();
            tol = 1.1 * tol + 4.0 * f64::from(f32::EPSILON) * s.abs() + 1.2e-38 * mag;
        }
        if case.flags & GEMM_HARDSWISH != 0 {
            // |d/ds s·min(1, max(0, s/6 + 1/2))| ≤ 1.5 (|s| ≤ 3); three roundings of its own.
            s *= (s / 6.0 + 0.5).clamp(0.0, 1.0);
            tol = 1.5 * tol + 4.0 * f64::from(f32::EPSILON) * s.abs();
        }
        let err = (f64::from(got) - s).abs();
        if err.is_nan() || err > tol {
            return Err(format!(
                "C[{i}][{j}] = {got}, expected {s} (tolerance {tol:e})"
            ));
        }
    }
    Ok(())
}

/// The tables this CPU runs (the generic one always).
fn tables() -> Vec<&'static UkernelTable> {
    Isa::ALL.into_iter().filter_map(table).collect()
}

#[test]
fn tables_are_consistent() {
    let t = tables();
    eprintln!(
        "ukernel variants under test: {:?}",
        t.iter().map(|t| t.isa.name()).collect::<Vec<_>>()
    );
    for t in t {
        assert_eq!((t.gemm_f32_m0, t.gemm_f32_n0), (GEMM_F32_M0, GEMM_F32_N0));
        assert_eq!(table(t.isa).map(|x| x.isa), Some(t.isa));
    }
    assert_eq!(table(Isa::Generic).map(|t| t.isa), Some(Isa::Generic));
    assert_eq!(
        (
            UKERNELS_GEMM_F32,
            UKERNELS_GEMM_F32_M0,
            UKERNELS_GEMM_F32_N0
        ),
        (0, 8, 16)
    );
    // SAFETY: the symbol returns a pointer to a static table.
    assert_eq!(unsafe { (*dync_ukernels()).isa }, select().isa);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn select_prefers_the_widest_isa() {
    let expected = if is_x86_feature_detected!("avx512f") {
        Isa::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2
    } else {
        Isa::Generic
    };
    assert_eq!(select().isa, expected);
}

/// Every edge tile, both modes, with and without bias, clamp and SiLU, K from 0 to a full
/// panel.
#[test]
fn every_edge_tile_and_mode() {
    for t in tables() {
        let mut seed = 1;
        for k in [0, 1, 2, 5, 64, 257] {
            for m in 0..=GEMM_F32_M0 {
                for n in 0..=GEMM_F32_N0 {
                    for flags in 0..32 {
                        for bias in [false, true] {
                            seed += 1;
                            let case = Case {
                                k,
                                m,
                                n,
                                ldb_extra: GEMM_F32_N0 - n + (seed % 2) as usize * 5,
                                ldc_extra: (seed % 3) as usize,
                                flags,
                                bias,
                                lo: -0.5,
                                hi: 0.75,
                                seed,
                            };
                            if let Err(e) = check(t.gemm_f32, GEMM_F32_M0, GEMM_F32_N0, case) {
                                panic!("{}: {case:?}: {e}", t.isa.name());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The generic kernel at tile sizes other than the crate's.
#[test]
fn generic_any_tile_size() {
    macro_rules! tile {
        ($m0:literal, $n0:literal) => {{
            unsafe extern "C" fn f(
                k: usize,
                a: *const f32,
                b: *const f32,
                ldb: usize,
                c: *mut f32,
                ldc: usize,
                m: usize,
                n: usize,
                bias: *const f32,
                flags: u32,
                lo: f32,
                hi: f32,
                _side: *const f32,
                _side_len: usize,
            ) {
                // SAFETY: the caller's contract at this tile size.
                unsafe {
                    gemm_f32_generic::<$m0, $n0>(k, a, b, ldb, c, ldc, m, n, bias, flags, lo, hi)
                }
            }
            (f as GemmF32Fn, $m0, $n0)
        }};
    }
    let mut seed = 1000;
    for (f, m0, n0) in [tile!(1, 1), tile!(3, 5), tile!(6, 16), tile!(16, 16)] {
        for k in [0, 1, 9] {
            for m in 0..=m0 {
                for n in 0..=n0 {
                    seed += 1;
                    let case = Case {
                        k,
                        m,
                        n,
                        ldb_extra: 2,
                        ldc_extra: 1,
                        flags: (seed % 32) as u32,
                        bias: seed % 5 < 2,
                        lo: 0.0,
                        hi: 6.0,
                        seed,
                    };
                    if let Err(e) = check(f, m0, n0, case) {
                        panic!("{m0}x{n0}: {case:?}: {e}");
                    }
                }
            }
        }
    }
}

/// The clamp's corner cases agree bit for bit between variants: NaN propagates, `lo > hi`
/// gives `hi`, -0 stays -0 under ReLU, infinities clamp.
#[test]
fn clamp_corner_cases_match_generic() {
    let specials = [
        f32::NAN,
        -0.0,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        3.0,
        -3.0,
        7.0,
    ];
    for t in tables() {
        for (lo, hi) in [(0.0, f32::INFINITY), (0.0, 6.0), (2.0, 1.0), (-1.0, 1.0)] {
            // k = 1, A = 1: the sum is B itself.
            let a = [1.0f32; GEMM_F32_M0];
            let b: Vec<f32> = (0..GEMM_F32_N0)
                .map(|j| specials[j % specials.len()])
                .collect();
            let run = |f: GemmF32Fn| {
                let mut c = vec![0f32; GEMM_F32_M0 * GEMM_F32_N0];
                // SAFETY: full packed panels and tile.
                unsafe {
                    f(
                        1,
                        a.as_ptr(),
                        b.as_ptr(),
                        GEMM_F32_N0,
                        c.as_mut_ptr(),
                        GEMM_F32_N0,
                        GEMM_F32_M0,
                        GEMM_F32_N0,
                        std::ptr::null(),
                        GEMM_CLAMP,
                        lo,
                        hi,
                        std::ptr::null(),
                        0,
                    )
                };
                c
            };
            let (got, want) = (run(t.gemm_f32), run(generic::gemm_f32_tile));
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{}: clamp({}, {lo}, {hi}) = {g}, generic {w}",
                    t.isa.name(),
                    b[j % GEMM_F32_N0]
                );
            }
            for (&s, &w) in b.iter().zip(&want) {
                if s.is_nan() {
                    assert!(w.is_nan(), "NaN must propagate through the clamp");
                } else if lo > hi {
                    assert_eq!(w, hi);
                } else {
                    assert_eq!(w, s.max(lo).min(hi), "clamp({s}, {lo}, {hi})");
                }
            }
        }
    }
}

proptest! {
    /// Random shapes, strides and clamp bounds (including `lo > hi`).
    #[test]
    fn random_calls(
        k in prop_oneof![0usize..4, 4usize..600],
        m in 0..=GEMM_F32_M0,
        n in 0..=GEMM_F32_N0,
        ldb_extra in prop_oneof![Just(0usize), 0usize..3000],
        ldc_extra in 0usize..70,
        flags in 0u32..16,
        bias in any::<bool>(),
        lo in -3.0f32..1.0,
        hi in -1.0f32..3.0,
        seed in any::<u64>(),
    ) {
        let case = Case { k, m, n, ldb_extra, ldc_extra, flags, bias, lo, hi, seed };
        for t in tables() {
            let r = check(t.gemm_f32, GEMM_F32_M0, GEMM_F32_N0, case);
            prop_assert!(r.is_ok(), "{}: {:?}", t.isa.name(), r);
        }
    }
}

/// The AVX-512 tiles' `side` hint: one line a step ([`SIDE_LINES_PER_STEP`] with
/// [`GEMM_SIDE_FAST`]) from where the call's part starts until the stream ends, nothing for a
/// null one.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_side_hint_streams_its_part_in_order() {
    use super::x86::Side;
    let buf = [0f32; 4];
    for (flags, line) in [(0, 64), (GEMM_SIDE_FAST, 64 * SIDE_LINES_PER_STEP)] {
        for (len, steps, index) in [
            (0, 5, 0),
            (16, 1, 0),
            (1000, 7, 0),
            (1000, 7, 1),
            (1000, 7, 9),
        ] {
            let bytes = len * 4;
            let mut side = Side::new(buf.as_ptr(), len, flags).part(index, steps);
            let start = (index * steps * line).min(bytes);
            let what = format!("flags {flags} len {len} steps {steps} part {index}");
            assert_eq!(side.left(), bytes - start, "{what}");
            for s in 0..steps {
                let before = side.left();
                side.step();
                assert_eq!(before - side.left(), line.min(before), "{what} step {s}");
            }
        }
        assert_eq!(Side::new(std::ptr::null(), 1000, flags).left(), 0);
    }
}
