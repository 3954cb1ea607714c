//! The matrix-vector micro-kernel: the dot products of one vector with the rows of a
//! row-major matrix, the batch-1 fully connected layer (`Gemm` with `transB`).
//!
//! A classifier's FC layer streams megabytes of weights for one use each (MobileNetV3's two:
//! 5 MB and 4.9 MB); the compiler's 4-lane code, four rows at a time, waited on those loads
//! for twice onnxruntime's time. These kernels run 16 lanes and prefetch every row ahead.
//!
//! # Contract
//! `gemv_f32(k, x, w, ldw, y, n)` ([`GemvF32Fn`], a field of [`super::UkernelTable`], null
//! where an ISA has no variant): for `j < n`, `y[j] = Σ_{p < k} x[p] · w[j·ldw + p]`. The
//! order of the summation is the variant's own (it may differ from another variant's by
//! rounding), but fixed: the same arguments give the same bits, and each `y[j]` depends only
//! on `x` and row `j`, so splitting the rows over calls does not change it. `k == 0` gives
//! zeros; `n == 0` writes nothing. Nothing else is read or written. Reentrant, no allocation,
//! no global state.

/// The matrix-vector kernel's type; see the module documentation.
///
/// # Safety
/// `x` is readable for `k` floats, `w` for `(n − 1)·ldw + k` (when `n > 0`), `y` writable for
/// `n` and overlaps neither.
pub type GemvF32Fn =
    unsafe extern "C" fn(k: usize, x: *const f32, w: *const f32, ldw: usize, y: *mut f32, n: usize);

/// The portable variant: each dot product in order, with fused multiply-adds.
///
/// # Safety
/// As [`GemvF32Fn`].
pub unsafe extern "C" fn gemv_generic(
    k: usize,
    x: *const f32,
    w: *const f32,
    ldw: usize,
    y: *mut f32,
    n: usize,
) {
    for j in 0..n {
        let mut s = 0.0f32;
        for p in 0..k {
            // SAFETY: the elements the contract names.
            s = unsafe { (*x.add(p)).mul_add(*w.add(j * ldw + p), s) };
        }
        // SAFETY: as above.
        unsafe { *y.add(j) = s };
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// Rows per pass (their streams prefetched side by side).
    const ROWS: usize = 4;
    /// Floats of each row prefetched ahead of the current step (2 KiB).
    const AHEAD: usize = 512;

    /// # Safety
    /// As [`super::GemvF32Fn`], on a CPU with AVX-512F.
    pub(in crate::ukernel) unsafe extern "C" fn gemv_avx512(
        k: usize,
        x: *const f32,
        w: *const f32,
        ldw: usize,
        y: *mut f32,
        n: usize,
    ) {
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F.
        unsafe {
            let mut j = 0;
            while j + ROWS <= n {
                rows::<ROWS>(k, x, w.add(j * ldw), ldw, y.add(j));
                j += ROWS;
            }
            while j < n {
                rows::<1>(k, x, w.add(j * ldw), ldw, y.add(j));
                j += 1;
            }
        }
    }

    /// The dot products of `x` with `R` rows: per row two 16-lane accumulators over steps of
    /// 32 (a masked step for the rest), summed, then reduced across lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize>(
        k: usize,
        x: *const f32,
        w: *const f32,
        ldw: usize,
        y: *mut f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let mut p = 0;
        // SAFETY (both loops): p + 32 <= k (or the masked lanes below k) stays within x and
        // each row; prefetches never fault.
        while p + 32 <= k {
            let xv = unsafe { [_mm512_loadu_ps(x.add(p)), _mm512_loadu_ps(x.add(p + 16))] };
            for (r, a) in acc.iter_mut().enumerate() {
                let row = w.wrapping_add(r * ldw + p);
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(AHEAD).cast());
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(AHEAD + 16).cast());
                for (h, v) in a.iter_mut().enumerate() {
                    let wv = unsafe { _mm512_loadu_ps(row.add(16 * h)) };
                    *v = _mm512_fmadd_ps(xv[h], wv, *v);
                }
            }
            p += 32;
        }
        while p < k {
            let left = k - p;
            let mask: __mmask16 = if left >= 16 { !0 } else { (1u16 << left) - 1 };
            let xv = unsafe { _mm512_maskz_loadu_ps(mask, x.add(p)) };
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = unsafe { _mm512_maskz_loadu_ps(mask, w.wrapping_add(r * ldw + p)) };
                a[0] = _mm512_fmadd_ps(xv, wv, a[0]);
            }
            p += 16;
        }
        for (r, [a0, a1]) in acc.into_iter().enumerate() {
            // SAFETY: y[r] is one of the caller's n outputs.
            unsafe { *y.add(r) = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GemvF32Fn;
    use crate::rt::SplitMix;
    use crate::ukernel::{table, Isa};

    /// Every variant against an f64 reference, over row counts around the passes, reductions
    /// around the steps and a row stride with a gap (NaN, never read); guards after `y`.
    #[test]
    fn variants_match_the_reference() {
        let mut rng = SplitMix(17);
        let kernels: Vec<(&str, GemvF32Fn)> = Isa::ALL
            .into_iter()
            .filter_map(table)
            .filter_map(|t| t.gemv_f32.map(|f| (t.isa.name(), f)))
            .collect();
        assert!(!kernels.is_empty());
        for k in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 1280] {
            for n in [0usize, 1, 3, 4, 5, 9] {
                let ldw = k + 3;
                let mut w = vec![f32::NAN; n * ldw + 1];
                for j in 0..n {
                    for x in &mut w[j * ldw..j * ldw + k] {
                        *x = rng.normal();
                    }
                }
                let x: Vec<f32> = (0..k).map(|_| rng.normal()).collect();
                for (name, f) in &kernels {
                    let mut y = vec![-7.25e30f32; n + 4];
                    // SAFETY: x, w and y are as large as the contract requires.
                    unsafe { f(k, x.as_ptr(), w.as_ptr(), ldw, y.as_mut_ptr(), n) };
                    assert!(
                        y[n..].iter().all(|&g| g == -7.25e30),
                        "{name}: guard written"
                    );
                    for j in 0..n {
                        let r: f64 = (0..k)
                            .map(|p| f64::from(x[p]) * f64::from(w[j * ldw + p]))
                            .sum();
                        let scale: f64 = (0..k)
                            .map(|p| (f64::from(x[p]) * f64::from(w[j * ldw + p])).abs())
                            .sum();
                        let got = f64::from(y[j]);
                        assert!(
                            (got - r).abs() <= 1e-6 * (1.0 + scale),
                            "{name}: k {k}, n {n}, row {j}: {got} vs {r}"
                        );
                    }
                }
            }
        }
    }
}
