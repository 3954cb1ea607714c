//! The SiLU micro-kernel: `x ← x · σ(x)` in place over a strided 2-D region, the activation
//! epilogue of EfficientNet/CondConv convs, which Cranelift's 4-lane code computes at a
//! quarter of the AVX-512 width.
//!
//! # Contract
//! `silu_f32(x, rows, cols, ld)` ([`SiluF32Fn`], a field of [`super::UkernelTable`]): for
//! `i < rows`, `j < cols`, the element
//! `x[i·ld + j]` becomes `v · (1 / (1 + e))` with `v` its value and `e` the polynomial
//! `exp(−v)` of the compiler's inline math (`compiler/codegen/src/lower/math.rs`,
//! `exp_saturating`): the argument clamped to [−87.336 54, 87.336 54] (NaN kept), `n =
//! round_half_even(a · log₂e)`, `r = a − n·C1 − n·C2` (two FMAs), a degree-6 polynomial in
//! Horner form with FMAs, scaled by `2ⁿ` built from exponent bits. Every variant performs the
//! same operations in the same order with fused multiply-adds (AVX-512 scales with `vscalefps`,
//! which rounds the same exact product), so the results are the same bits as the generated
//! code's and each other's. Nothing else is read or written;
//! `rows == 0` or `cols == 0` does nothing. Reentrant, no allocation, no global state.

/// The SiLU kernel's type; see the module documentation.
///
/// # Safety
/// `x` is readable and writable for the `rows × cols` elements at row stride `ld`.
pub type SiluF32Fn = unsafe extern "C" fn(x: *mut f32, rows: usize, cols: usize, ld: usize);

/// The constants of the exp polynomial (Cephes' expf), shared with the compiler's inline math
/// so that both compute the same bits: the lower end of the argument range, ln 2 split in a
/// part exact in few bits and the rest (negated first part), and the polynomial's
/// coefficients, highest degree first.
pub const LO: f32 = -87.336_54;
const LOG2E: f32 = std::f32::consts::LOG2_E;
pub const C1: f32 = -0.693_359_4;
pub const C2: f32 = 2.121_944_4e-4;
pub const POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// SiLU of one value, the reference of every variant.
pub fn silu(v: f32) -> f32 {
    let a = -v;
    // max(lo, a) then min(hi, ·) with x86's operand rules: NaN stays NaN.
    let a = if LO > a { LO } else { a };
    let a = if -LO < a { -LO } else { a };
    let n = (a * LOG2E).round_ties_even();
    let r = n.mul_add(C1, a);
    let r = n.mul_add(C2, r);
    let mut p = POLY[0];
    for c in &POLY[1..] {
        p = p.mul_add(r, *c);
    }
    let y = p.mul_add(r * r, r + 1.0);
    // n is an integer in [-126, 126] (NaN: the saturating conversion gives 0).
    let ni = if n.is_nan() { 0 } else { n as i32 };
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    v * (1.0 / (1.0 + y * scale))
}

/// The portable variant.
///
/// # Safety
/// As [`SiluF32Fn`].
pub unsafe extern "C" fn silu_generic(x: *mut f32, rows: usize, cols: usize, ld: usize) {
    for i in 0..rows {
        for j in 0..cols {
            // SAFETY: element (i, j) of the caller's region.
            unsafe {
                let p = x.add(i * ld + j);
                *p = silu(*p);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::{C1, C2, LO, LOG2E, POLY};
    use std::arch::x86_64::*;

    /// # Safety
    /// As [`super::SiluF32Fn`], on a CPU with AVX-512F.
    pub(in crate::ukernel) unsafe extern "C" fn silu_avx512(
        x: *mut f32,
        rows: usize,
        cols: usize,
        ld: usize,
    ) {
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F.
        unsafe { avx512(x, rows, cols, ld) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(x: *mut f32, rows: usize, cols: usize, ld: usize) {
        for i in 0..rows {
            // SAFETY: row i of the caller's region; masked lanes past `cols` are not accessed.
            unsafe {
                let row = x.add(i * ld);
                let mut j = 0;
                // Four vectors at a time: each is a chain of some twenty dependent operations,
                // and one at a time leaves the FMA units waiting on their latency.
                while j + 64 <= cols {
                    let v: [__m512; 4] =
                        std::array::from_fn(|u| _mm512_loadu_ps(row.add(j + 16 * u)));
                    let s = v.map(|v| silu16(v));
                    for (u, s) in s.into_iter().enumerate() {
                        _mm512_storeu_ps(row.add(j + 16 * u), s);
                    }
                    j += 64;
                }
                while j < cols {
                    let left = cols - j;
                    let mask: __mmask16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
                    let v = _mm512_maskz_loadu_ps(mask, row.add(j));
                    _mm512_mask_storeu_ps(row.add(j), mask, silu16(v));
                    j += 16;
                }
            }
        }
    }

    /// SiLU of 16 lanes (the GEMM tile's `GEMM_SILU` epilogue uses it too).
    #[target_feature(enable = "avx512f")]
    pub(in crate::ukernel) fn silu16(v: __m512) -> __m512 {
        let set = _mm512_set1_ps;
        let a = _mm512_sub_ps(_mm512_setzero_ps(), v);
        // maxps/minps return the second operand when either is NaN: NaN is kept.
        let a = _mm512_min_ps(set(-LO), _mm512_max_ps(set(LO), a));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(a, set(LOG2E)),
        );
        let r = _mm512_fmadd_ps(n, set(C1), a);
        let r = _mm512_fmadd_ps(n, set(C2), r);
        let mut p = set(POLY[0]);
        for c in &POLY[1..] {
            p = _mm512_fmadd_ps(p, r, set(*c));
        }
        let y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, set(1.0)));
        // y · 2ⁿ in one instruction: n is an integer in [−126, 126], so this is the same
        // correctly rounded product as the reference's multiplication by 2ⁿ built from
        // exponent bits; a NaN n comes with a NaN y, and both give NaN.
        let e = _mm512_scalef_ps(y, n);
        let one = set(1.0);
        _mm512_mul_ps(v, _mm512_div_ps(one, _mm512_add_ps(one, e)))
    }

    /// # Safety
    /// As [`super::SiluF32Fn`], on a CPU with AVX2 and FMA.
    pub(in crate::ukernel) unsafe extern "C" fn silu_avx2(
        x: *mut f32,
        rows: usize,
        cols: usize,
        ld: usize,
    ) {
        // SAFETY: the same contract; only reachable when the CPU has AVX2 and FMA.
        unsafe { avx2(x, rows, cols, ld) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(x: *mut f32, rows: usize, cols: usize, ld: usize) {
        for i in 0..rows {
            // SAFETY: row i of the caller's region; the tail runs the scalar reference.
            unsafe {
                let row = x.add(i * ld);
                let mut j = 0;
                while j + 8 <= cols {
                    let v = _mm256_loadu_ps(row.add(j));
                    _mm256_storeu_ps(row.add(j), silu8(v));
                    j += 8;
                }
                super::silu_generic(row.add(j), 1, cols - j, 0);
            }
        }
    }

    /// SiLU of 8 lanes (the GEMM tile's `GEMM_SILU` epilogue uses it too).
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::ukernel) fn silu8(v: __m256) -> __m256 {
        let set = _mm256_set1_ps;
        let a = _mm256_sub_ps(_mm256_setzero_ps(), v);
        let a = _mm256_min_ps(set(-LO), _mm256_max_ps(set(LO), a));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(a, set(LOG2E)),
        );
        let r = _mm256_fmadd_ps(n, set(C1), a);
        let r = _mm256_fmadd_ps(n, set(C2), r);
        let mut p = set(POLY[0]);
        for c in &POLY[1..] {
            p = _mm256_fmadd_ps(p, r, set(*c));
        }
        let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, set(1.0)));
        let ok = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_ORD_Q>(n, n));
        let ni = _mm256_and_si256(ok, _mm256_cvttps_epi32(n));
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(ni, _mm256_set1_epi32(127)));
        let e = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
        let one = set(1.0);
        _mm256_mul_ps(v, _mm256_div_ps(one, _mm256_add_ps(one, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::SplitMix;
    use crate::ukernel::{table, Isa};

    /// Every variant this CPU runs, bit for bit against the scalar reference, over a strided
    /// region (elements outside it must be left alone) with every width's tail, special values
    /// and the clamp's ends; and the reference against f64 within a few ulp of x·σ(x).
    #[test]
    fn variants_match_the_reference() {
        let mut rng = SplitMix(7);
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            87.0,
            -87.0,
            88.0,
            -88.0,
            1e-30,
            -1e-30,
            1e30,
            -1e30,
        ];
        for isa in Isa::ALL {
            let Some(f) = table(isa).map(|t| t.silu_f32) else {
                eprintln!("{}: not supported by this CPU, skipped", isa.name());
                continue;
            };
            for (rows, cols, ld) in [(1, 1, 1), (3, 17, 20), (2, 16, 16), (4, 45, 50), (1, 0, 3)] {
                let len = rows * ld + 5;
                let mut x: Vec<f32> = (0..len)
                    .map(|i| match i % 7 {
                        0 => specials[(i / 7) % specials.len()],
                        _ => rng.normal() * 12.0,
                    })
                    .collect();
                let before = x.clone();
                // SAFETY: the region lies inside `x`.
                unsafe { f(x.as_mut_ptr(), rows, cols, ld) };
                for (i, (&got, &was)) in x.iter().zip(&before).enumerate() {
                    let inside = i / ld < rows && i % ld < cols;
                    let want = if inside { silu(was) } else { was };
                    assert!(
                        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                        "{} rows {rows} cols {cols} ld {ld}: element {i} ({was}) gave {got}, want {want}",
                        isa.name()
                    );
                }
            }
        }
        for i in 0..20_000 {
            let v = (i as f32 - 10_000.0) * 0.01;
            let exact = f64::from(v) / (1.0 + (-f64::from(v)).exp());
            let got = f64::from(silu(v));
            assert!(
                // σ saturates below −87.3 at 1.2e-38 instead of underflowing.
                (got - exact).abs()
                    <= 4.0 * f64::from(f32::EPSILON) * exact.abs() + 1.2e-38 * f64::from(v).abs(),
                "silu({v}) = {got}, want {exact}"
            );
        }
        assert!(silu(f32::NAN).is_nan());
        assert_eq!(silu(f32::INFINITY), f32::INFINITY);
        assert_eq!(silu(0.0), 0.0);
    }
}
