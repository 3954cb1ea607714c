//! The matrix-vector micro-kernel: the dot products of one vector with the rows of a
//! row-major matrix, the batch-1 fully connected layer (`Gemm` with `transB`).
//!
//! A classifier's FC layer streams megabytes of weights for one use each (MobileNetV3's two:
//! 5 MB and 4.9 MB); the compiler's 4-lane code, four rows at a time, waited on those loads
//! for twice onnxruntime's time. These kernels run 16 lanes and prefetch every row ahead.
//!
//! # Contract
//! `gemv_f32(k, x, w, ldw, y, n)` ([`GemvF32Fn`], a field of [`super::UkernelTable`], null
//! where an ISA has no variant): for `j < n`, `y[j] = Σ_{p < k} x[p] · w[j·ldw + p]`, summed
//! in the order of the compiler's dot products (`compiler/codegen/src/lower/matmul.rs`,
//! `dots`), so that both give the same bits:
//!
//! ```text
//! a[0..8] = +0.0                          (lane l sums the p with p mod 8 = l)
//! for p in 0, 8, … while p + 8 <= k:       a[l] = fma(x[p + l], w[p + l], a[l])       (l < 8)
//! if k mod 8 >= 4, p = k − k mod 8:        a[l] = fma(x[p + l], w[p + l], a[l])       (l < 4)
//! v[l] = a[l] + a[l + 4]                   (l < 4)
//! s = ((v[0] + v[1]) + v[2]) + v[3]
//! for q from k − k mod 4 to k − 1:         s = fma(x[q], w[q], s)
//! ```
//!
//! (`w` stands for row `j`). Each `y[j]` depends only on `x` and row `j`, so splitting the
//! rows over calls does not change it. `n == 0` writes nothing. Nothing else is read or
//! written. Reentrant, no allocation, no global state.

/// The matrix-vector kernel's type; see the module documentation.
///
/// # Safety
/// `x` is readable for `k` floats, `w` for `(n − 1)·ldw + k` (when `n > 0`), `y` writable for
/// `n` and overlaps neither.
pub type GemvF32Fn =
    unsafe extern "C" fn(k: usize, x: *const f32, w: *const f32, ldw: usize, y: *mut f32, n: usize);

/// The contract's lane sums `v` reduced in order, then its scalar tail.
fn finish(v: [f32; 4], tail: impl Iterator<Item = (f32, f32)>) -> f32 {
    let s = ((v[0] + v[1]) + v[2]) + v[3];
    tail.fold(s, |s, (x, w)| x.mul_add(w, s))
}

/// The portable variant (the reference of the others).
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
    // SAFETY: x has k floats.
    let x = unsafe { std::slice::from_raw_parts(x, k) };
    let (wide, full) = (k / 8 * 8, k / 4 * 4);
    for j in 0..n {
        // SAFETY: row j has k readable floats.
        let row = unsafe { std::slice::from_raw_parts(w.add(j * ldw), k) };
        let mut a = [0.0f32; 8];
        for p in (0..wide).step_by(8) {
            for (l, a) in a.iter_mut().enumerate() {
                *a = x[p + l].mul_add(row[p + l], *a);
            }
        }
        for (l, a) in a.iter_mut().enumerate().take(full - wide) {
            *a = x[wide + l].mul_add(row[wide + l], *a);
        }
        let v = std::array::from_fn(|l| a[l] + a[l + 4]);
        let s = finish(v, (full..k).map(|q| (x[q], row[q])));
        // SAFETY: y has n floats.
        unsafe { *y.add(j) = s };
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// Rows per pass (independent FMA chains; their streams prefetched side by side).
    const ROWS: usize = 8;
    /// Floats of each row prefetched ahead of the current step (2 KiB), for long rows.
    const AHEAD: usize = 512;
    /// Floats of a pass (`ROWS` rows) up to which each step prefetches the next pass's rows
    /// instead (16 KiB): rows shorter than [`AHEAD`] would prefetch the lines their own pass
    /// is already loading. DyNet ResNet-50's 256-wide predictor rows stream from memory at
    /// 24 → 31 GiB/s with it, 92 % of a plain read loop (the `dram256x9216` bench).
    const NEXT_PASS: usize = 4096;

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
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F (which implies
        // AVX2 and FMA).
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

    /// The contract's sums for `R` rows: one 8-lane accumulator per row (the contract's
    /// `a`), every row's next lines prefetched each step.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn rows<const R: usize>(
        k: usize,
        x: *const f32,
        w: *const f32,
        ldw: usize,
        y: *mut f32,
    ) {
        let (wide, full) = (k / 8 * 8, k / 4 * 4);
        let mut acc = [_mm256_setzero_ps(); R];
        let ahead = if R * ldw <= NEXT_PASS { R * ldw } else { AHEAD };
        // SAFETY (all): p + 8 <= wide <= k (p + 4 <= full) stays within x and each row;
        // prefetches never fault.
        for p in (0..wide).step_by(8) {
            let xv = unsafe { _mm256_loadu_ps(x.add(p)) };
            for (r, a) in acc.iter_mut().enumerate() {
                let row = w.wrapping_add(r * ldw + p);
                if p % 16 == 0 {
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(ahead).cast());
                }
                *a = _mm256_fmadd_ps(xv, unsafe { _mm256_loadu_ps(row) }, *a);
            }
        }
        if full > wide {
            // Lanes 4..8 add 0·0 to sums that are never −0 (they start at +0.0): unchanged.
            let xv = unsafe { _mm256_zextps128_ps256(_mm_loadu_ps(x.add(wide))) };
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = unsafe { _mm256_zextps128_ps256(_mm_loadu_ps(w.add(r * ldw + wide))) };
                *a = _mm256_fmadd_ps(xv, wv, *a);
            }
        }
        for (r, a) in acc.into_iter().enumerate() {
            let v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let mut lanes = [0f32; 4];
            // SAFETY: four floats into a local array.
            unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), v) };
            let row = w.wrapping_add(r * ldw);
            // SAFETY: q < k: within x and the row; y[r] is one of the caller's outputs.
            unsafe {
                let tail = (full..k).map(|q| (*x.add(q), *row.add(q)));
                *y.add(r) = super::finish(lanes, tail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GemvF32Fn;
    use crate::rt::SplitMix;
    use crate::ukernel::{table, Isa};

    /// Every variant against an f64 reference and bit for bit against the portable one, over
    /// row counts around the passes, reductions around the steps and a row stride with a gap
    /// (NaN, never read); guards after `y`.
    #[test]
    fn variants_match_the_reference() {
        let mut rng = SplitMix(17);
        let kernels: Vec<(&str, GemvF32Fn)> = Isa::ALL
            .into_iter()
            .filter_map(table)
            .filter_map(|t| t.gemv_f32.map(|f| (t.isa.name(), f)))
            .collect();
        assert!(!kernels.is_empty());
        for k in [
            0usize, 1, 3, 4, 5, 7, 8, 12, 15, 16, 17, 31, 32, 33, 100, 1280,
        ] {
            for n in [0usize, 1, 3, 4, 5, 9, 17] {
                let ldw = k + 3;
                let mut w = vec![f32::NAN; n * ldw + 1];
                for j in 0..n {
                    for x in &mut w[j * ldw..j * ldw + k] {
                        *x = rng.normal();
                    }
                }
                let x: Vec<f32> = (0..k).map(|_| rng.normal()).collect();
                let mut want = vec![0f32; n];
                // SAFETY: as below.
                unsafe {
                    super::gemv_generic(k, x.as_ptr(), w.as_ptr(), ldw, want.as_mut_ptr(), n)
                };
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
