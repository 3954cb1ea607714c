//! The portable GEMM tile: the contract of [`super`] in plain Rust for any tile size, the
//! fallback on CPUs without a SIMD variant and the reference the SIMD variants are tested
//! against (besides an f64 reference). Sums without FMA, in increasing `p` like the others,
//! each from `C`'s element with `GEMM_ACCUMULATE`.

use super::{GEMM_ACCUMULATE, GEMM_CLAMP, GEMM_F32_M0, GEMM_F32_N0, GEMM_HARDSWISH, GEMM_SILU};

/// `min(hi, max(lo, s))` with the SIMD variants' rules: NaN stays NaN, `lo > hi` gives `hi`
/// (x86 `maxps`/`minps` return their second operand unless the first compares greater/less).
pub(super) fn clamp(s: f32, lo: f32, hi: f32) -> f32 {
    let y = if lo > s { lo } else { s };
    if hi < y {
        hi
    } else {
        y
    }
}

/// HardSwish as the tile contract's `GEMM_HARDSWISH` (the compiler's `hard_swish`).
pub(super) fn hard_swish(s: f32) -> f32 {
    s * clamp(s.mul_add(1.0 / 6.0, 0.5), 0.0, 1.0)
}

/// The tile of [`super`]'s contract for an `M0 × N0` tile (`A` packed `M0` wide).
///
/// # Safety
/// As [`super::GemmF32Fn`], with `M0`/`N0` in place of the crate's tile size.
#[allow(clippy::too_many_arguments)] // the C signature of the contract
pub unsafe fn gemm_f32_generic<const M0: usize, const N0: usize>(
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
) {
    let (m, n) = (m.min(M0), n.min(N0));
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the same contract.
    let mut acc = unsafe { start::<M0, N0>(c, ldc, m, n, flags) };
    for p in 0..k {
        // SAFETY: row `p` of the packed A panel and `n` floats of B's row `p` are readable.
        let (ap, bp) = unsafe {
            (
                std::slice::from_raw_parts(a.add(p * M0), m),
                std::slice::from_raw_parts(b.add(p * ldb), n),
            )
        };
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (s, &bj) in row.iter_mut().zip(bp) {
                *s += ai * bj;
            }
        }
    }
    // SAFETY: the same contract.
    unsafe { store(&acc, c, ldc, m, n, bias, flags, lo, hi) }
}

/// The sums' starting values for the portable variants: `C`'s rows `0..m`, columns `0..n`
/// with [`GEMM_ACCUMULATE`], else `+0.0` (as every other element).
///
/// # Safety
/// With [`GEMM_ACCUMULATE`], `C`'s rows `i < m` have `n` readable floats at stride `ldc`.
pub(super) unsafe fn start<const M0: usize, const N0: usize>(
    c: *const f32,
    ldc: usize,
    m: usize,
    n: usize,
    flags: u32,
) -> [[f32; N0]; M0] {
    let mut acc = [[0f32; N0]; M0];
    if flags & GEMM_ACCUMULATE != 0 {
        for (i, row) in acc.iter_mut().enumerate().take(m) {
            // SAFETY: `C`'s row `i` has `n` readable floats.
            let crow = unsafe { std::slice::from_raw_parts(c.add(i * ldc), n.min(N0)) };
            row[..crow.len()].copy_from_slice(crow);
        }
    }
    acc
}

/// The tile's epilogue: rows `0..m`, columns `0..n` of the sums `acc` into `C` as the contract
/// says (bias, clamp, activation), for the portable variants.
///
/// # Safety
/// `C`'s rows `i < m` have `n` readable/writable floats at stride `ldc`; `bias` null or
/// readable for `m` floats.
#[allow(clippy::too_many_arguments)] // the contract's epilogue operands
pub(super) unsafe fn store<const N0: usize>(
    acc: &[[f32; N0]],
    c: *mut f32,
    ldc: usize,
    m: usize,
    n: usize,
    bias: *const f32,
    flags: u32,
    lo: f32,
    hi: f32,
) {
    for (i, row) in acc.iter().enumerate().take(m) {
        // SAFETY: `C`'s row `i` has `n` readable/writable floats; `bias[i]` is readable when
        // `bias` is not null.
        let (crow, bi) = unsafe {
            (
                std::slice::from_raw_parts_mut(c.add(i * ldc), n),
                (!bias.is_null()).then(|| *bias.add(i)),
            )
        };
        for (out, &sum) in crow.iter_mut().zip(row) {
            let mut s = sum;
            if let Some(bi) = bi {
                s += bi;
            }
            *out = activate(s, flags, lo, hi);
        }
    }
}

/// The clamp and activations of the tile contract's epilogue on one sum. Not inlined: the
/// portable kernels are the fallback and the reference, and the store loop would otherwise be
/// vectorized with SiLU's polynomial in every copy (11 KB of an executable's runtime).
#[inline(never)]
fn activate(mut s: f32, flags: u32, lo: f32, hi: f32) -> f32 {
    if flags & GEMM_CLAMP != 0 {
        s = clamp(s, lo, hi);
    }
    if flags & GEMM_SILU != 0 {
        s = super::silu::silu(s);
    }
    if flags & GEMM_HARDSWISH != 0 {
        s = hard_swish(s);
    }
    s
}

/// [`gemm_f32_generic`] at the crate's tile size, with the C ABI of [`super::GemmF32Fn`]
/// (the `side` hint ignored).
///
/// # Safety
/// As [`super::GemmF32Fn`].
pub(super) unsafe extern "C" fn gemm_f32_tile(
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
    // SAFETY: the same contract.
    unsafe {
        gemm_f32_generic::<GEMM_F32_M0, GEMM_F32_N0>(
            k, a, b, ldb, c, ldc, m, n, bias, flags, lo, hi,
        )
    }
}
