//! The matrix-vector micro-kernel: the dot products of one or several vectors with the rows
//! of a row-major matrix, the fully connected layer (`Gemm` with `transB`, a predictor's
//! layers) at any batch.
//!
//! A classifier's FC layer streams megabytes of weights for one use each per sample
//! (MobileNetV3's two: 5 MB and 4.9 MB); the compiler's 4-lane code, four rows at a time,
//! waited on those loads for twice onnxruntime's time, and at batch 8 read every weight row
//! once per sample (dy-mobile's largest predictor, 3.7 MB, at 17 GFLOP/s). These kernels run
//! 16 lanes, prefetch every row ahead, and with several vectors load each weight row once for
//! up to eight of them.
//!
//! # Contract
//! `gemv_f32(k, x, ldx, m, w, ldw, y, ldy, n)` ([`GemvF32Fn`], a field of
//! [`super::UkernelTable`], null where an ISA has no variant): for `i < m` and `j < n`,
//! `y[i·ldy + j] = Σ_{p < k} x[i·ldx + p] · w[j·ldw + p]`, each summed in the order of the
//! compiler's dot products (`compiler/codegen/src/lower/matmul.rs`, `dots`), so that both
//! give the same bits:
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
//! (`x` stands for vector `i`, `w` for row `j`). Each `y[i·ldy + j]` depends only on vector
//! `i` and row `j`, so splitting the rows or the vectors over calls does not change it.
//! `m == 0` or `n == 0` writes nothing. Nothing else is read or written. Reentrant, no
//! allocation, no global state.

/// The matrix-vector kernel's type; see the module documentation.
///
/// # Safety
/// When `m > 0` and `n > 0`: `x` is readable for `(m − 1)·ldx + k` floats, `w` for
/// `(n − 1)·ldw + k`, `y` writable for `(m − 1)·ldy + n`, and `y`'s elements overlap neither.
pub type GemvF32Fn = unsafe extern "C" fn(
    k: usize,
    x: *const f32,
    ldx: usize,
    m: usize,
    w: *const f32,
    ldw: usize,
    y: *mut f32,
    ldy: usize,
    n: usize,
);

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
    ldx: usize,
    m: usize,
    w: *const f32,
    ldw: usize,
    y: *mut f32,
    ldy: usize,
    n: usize,
) {
    let (wide, full) = (k / 8 * 8, k / 4 * 4);
    for i in 0..m {
        // SAFETY: vector i has k readable floats.
        let x = unsafe { std::slice::from_raw_parts(x.add(i * ldx), k) };
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
            // SAFETY: y[i·ldy + j] is one of the outputs.
            unsafe { *y.add(i * ldy + j) = s };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// Rows per pass of one vector (independent FMA chains; their streams prefetched side by
    /// side).
    const ROWS: usize = 8;
    /// Rows per pass of several vectors (each loaded once for up to [`VECTORS`] vectors).
    const BATCH_ROWS: usize = 4;
    /// Vectors per pass: two per 16-lane register, each half the contract's 8-lane `a`.
    const VECTORS: usize = 8;
    /// Widest rows read in memory order by one vector (see [`rows`]).
    const IN_ORDER_MAX_K: usize = 512;
    /// Floats prefetched ahead of the current step when the rows are read in memory order
    /// (4 KiB). 160-wide rows on both cores here: 1 KiB ahead read 43–45 GB/s, 2 KiB 46–47,
    /// 4 KiB 49–50, 8 KiB 43–47.
    const STREAM_AHEAD: usize = 1024;
    /// Floats of each row prefetched ahead of the current step (2 KiB), for long rows.
    const AHEAD: usize = 512;
    /// Floats of a pass (`ROWS` rows) up to which each step prefetches the next pass's rows
    /// instead (16 KiB): rows shorter than [`AHEAD`] would prefetch the lines their own pass
    /// is already loading. DyNet ResNet-50's 256-wide predictor rows stream from memory at
    /// 24 → 31 GiB/s with it, 92 % of a plain read loop (the `dram256x9216` bench).
    const NEXT_PASS: usize = 4096;

    /// # Safety
    /// As [`super::GemvF32Fn`], on a CPU with AVX-512F.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::ukernel) unsafe extern "C" fn gemv_avx512(
        k: usize,
        x: *const f32,
        ldx: usize,
        m: usize,
        w: *const f32,
        ldw: usize,
        y: *mut f32,
        ldy: usize,
        n: usize,
    ) {
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F (which implies
        // AVX2 and FMA).
        unsafe {
            if m == 1 {
                let mut j = 0;
                while j + ROWS <= n {
                    let (wj, yj) = (w.add(j * ldw), y.add(j));
                    if k <= IN_ORDER_MAX_K {
                        rows::<ROWS, true>(k, x, wj, ldw, yj);
                    } else {
                        rows::<ROWS, false>(k, x, wj, ldw, yj);
                    }
                    j += ROWS;
                }
                while j < n {
                    rows::<1, false>(k, x, w.add(j * ldw), ldw, y.add(j));
                    j += 1;
                }
                return;
            }
            let mut j = 0;
            while j < n {
                let r = if j + BATCH_ROWS <= n { BATCH_ROWS } else { 1 };
                let (wj, yj) = (w.add(j * ldw), y.add(j));
                let mut i = 0;
                while i < m {
                    let cnt = (m - i).min(VECTORS);
                    let (xi, yi) = (x.add(i * ldx), yj.add(i * ldy));
                    let vs = (xi, ldx, cnt, yi, ldy);
                    match (r, cnt) {
                        (BATCH_ROWS, 1..=2) => vectors::<BATCH_ROWS, 1>(k, vs, wj, ldw),
                        (BATCH_ROWS, 3..=4) => vectors::<BATCH_ROWS, 2>(k, vs, wj, ldw),
                        (BATCH_ROWS, _) => vectors::<BATCH_ROWS, 4>(k, vs, wj, ldw),
                        (_, 1..=2) => vectors::<1, 1>(k, vs, wj, ldw),
                        (_, 3..=4) => vectors::<1, 2>(k, vs, wj, ldw),
                        _ => vectors::<1, 4>(k, vs, wj, ldw),
                    }
                    i += cnt;
                }
                j += r;
            }
        }
    }

    /// Where a pass prefetches each row: the next pass's row when a pass of `r` rows is
    /// short, else [`AHEAD`] floats on.
    fn ahead(r: usize, ldw: usize) -> usize {
        if r * ldw <= NEXT_PASS {
            r * ldw
        } else {
            AHEAD
        }
    }

    /// The contract's sums for `R` rows of one vector: one 8-lane accumulator per row (the
    /// contract's `a`).
    ///
    /// `IN_ORDER`: the rows one after the other in memory order, each step prefetching
    /// [`STREAM_AHEAD`] floats on; else the rows side by side, step by step, every row's next
    /// lines prefetched each step. The rows' chains are independent, so the out-of-order core
    /// overlaps consecutive rows in order as long as a row is short, and its loads then walk
    /// memory as one stream. Dynamic models' predictor weights (tens of MB a run) stream from
    /// memory, and there the order wins: on both cores here, 160- to 512-wide rows read at
    /// 47–52 GB/s in order against 24–39 side by side (a plain read loop 45–52); one thread,
    /// 160 wide (criterion's `dram160x12480`), 243 → 211 µs. From L3 one thread is slower in
    /// order (`l3_160x12480` 69 → 86 µs: only about three rows' chains fit the out-of-order
    /// window) and 1280-wide rows are slower on both cores (59 against 74 GB/s), hence
    /// [`IN_ORDER_MAX_K`]: classifiers keep the side-by-side order.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn rows<const R: usize, const IN_ORDER: bool>(
        k: usize,
        x: *const f32,
        w: *const f32,
        ldw: usize,
        y: *mut f32,
    ) {
        let (wide, full) = (k / 8 * 8, k / 4 * 4);
        let mut acc = [_mm256_setzero_ps(); R];
        // SAFETY (all): p + 8 <= wide <= k (p + 4 <= full) stays within x and each row;
        // prefetches never fault.
        let xv = |p: usize| unsafe { _mm256_loadu_ps(x.add(p)) };
        let step = |a: __m256, xv: __m256, row: *const f32, p: usize| unsafe {
            _mm256_fmadd_ps(xv, _mm256_loadu_ps(row.add(p)), a)
        };
        if IN_ORDER {
            for (r, a) in acc.iter_mut().enumerate() {
                let row = w.wrapping_add(r * ldw);
                for p in (0..wide).step_by(8) {
                    if p % 16 == 0 {
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(p + STREAM_AHEAD).cast());
                    }
                    *a = step(*a, xv(p), row, p);
                }
            }
        } else {
            let ahead = ahead(R, ldw);
            for p in (0..wide).step_by(8) {
                // One load of x's step for all the rows.
                let xp = xv(p);
                for (r, a) in acc.iter_mut().enumerate() {
                    let row = w.wrapping_add(r * ldw);
                    if p % 16 == 0 {
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(p + ahead).cast());
                    }
                    *a = step(*a, xp, row, p);
                }
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
        let vs = acc.map(|a| _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a)));
        // SAFETY: y[..R] are the caller's outputs; x and the R rows hold k floats.
        unsafe { store(vs, x, w, ldw, (full, k), y) };
    }

    /// The contract's sums for `R` rows of `cnt ≤ 2·P` vectors `vs = (x, ldx, cnt, y, ldy)`:
    /// vectors `2q` and `2q + 1` share a 16-lane accumulator per row (each half the contract's
    /// `a` of one vector), every row's 8 floats of a step loaded once into both halves. Past
    /// `cnt`, the halves run vector 0 again and are not stored.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn vectors<const R: usize, const P: usize>(
        k: usize,
        (x, ldx, cnt, y, ldy): (*const f32, usize, usize, *mut f32, usize),
        w: *const f32,
        ldw: usize,
    ) {
        let (wide, full) = (k / 8 * 8, k / 4 * 4);
        let xs: [*const f32; VECTORS] =
            std::array::from_fn(|v| if v < cnt { x.wrapping_add(v * ldx) } else { x });
        let mut acc = [[_mm512_setzero_ps(); R]; P];
        let ahead = ahead(R, ldw);
        // Both halves: 8 floats of a row, or two vectors' 8 floats (4 and zeros in the tail).
        let both = |v: __m256| _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(v)));
        let pair = |lo: __m256, hi: __m256| {
            let lo = _mm512_castpd256_pd512(_mm256_castps_pd(lo));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, _mm256_castps_pd(hi)))
        };
        // SAFETY (all): p + 8 <= wide <= k (p + 4 <= full) stays within each vector and row;
        // prefetches never fault.
        for p in (0..wide).step_by(8) {
            let wv: [__m512; R] = std::array::from_fn(|r| {
                let row = w.wrapping_add(r * ldw + p);
                if p % 16 == 0 {
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(ahead).cast());
                }
                both(unsafe { _mm256_loadu_ps(row) })
            });
            for (q, acc) in acc.iter_mut().enumerate() {
                let xv = unsafe {
                    pair(
                        _mm256_loadu_ps(xs[2 * q].add(p)),
                        _mm256_loadu_ps(xs[2 * q + 1].add(p)),
                    )
                };
                for (a, wv) in acc.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(xv, *wv, *a);
                }
            }
        }
        if full > wide {
            // Lanes 4..8 of each half add 0·0 to sums that are never −0: unchanged.
            let tail = |at: *const f32| unsafe { _mm256_zextps128_ps256(_mm_loadu_ps(at)) };
            let wv: [__m512; R] =
                std::array::from_fn(|r| both(tail(w.wrapping_add(r * ldw + wide))));
            for (q, acc) in acc.iter_mut().enumerate() {
                let xv = pair(
                    tail(xs[2 * q].wrapping_add(wide)),
                    tail(xs[2 * q + 1].wrapping_add(wide)),
                );
                for (a, wv) in acc.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(xv, *wv, *a);
                }
            }
        }
        for (q, acc) in acc.into_iter().enumerate() {
            // Each half's v (the contract's a[l] + a[l + 4]) in 128-bit blocks 0 and 2.
            let t = acc.map(|a| _mm512_add_ps(a, _mm512_shuffle_f32x4::<0b10_11_00_01>(a, a)));
            let halves = [
                t.map(|a| _mm512_castps512_ps128(a)),
                t.map(|a| _mm512_extractf32x4_ps::<2>(a)),
            ];
            for (h, vs) in halves.into_iter().enumerate() {
                let v = 2 * q + h;
                if v < cnt {
                    // SAFETY: y[v·ldy..][..R] are the caller's outputs; vector v and the R
                    // rows hold k floats.
                    unsafe { store(vs, xs[v], w, ldw, (full, k), y.add(v * ldy)) };
                }
            }
        }
    }

    /// Finishes the contract's sums of vector `x` with the `R` rows from `w` (`ldw` apart)
    /// from their lane sums `vs` (the contract's `v`): adds each `v`'s lanes in order and the
    /// tail steps `full..k`, and stores the results at `y[..R]`; four rows at a time as
    /// vectors (the `v`s transposed, so that each lane adds one row's in order), the rest one
    /// by one.
    ///
    /// # Safety
    /// `x` and each row hold `k` floats, `y[..R]` is writable.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store<const R: usize>(
        vs: [__m128; R],
        x: *const f32,
        w: *const f32,
        ldw: usize,
        (full, k): (usize, usize),
        y: *mut f32,
    ) {
        let quads = R / 4 * 4;
        for r0 in (0..quads).step_by(4) {
            let lo01 = _mm_unpacklo_ps(vs[r0], vs[r0 + 1]);
            let lo23 = _mm_unpacklo_ps(vs[r0 + 2], vs[r0 + 3]);
            let hi01 = _mm_unpackhi_ps(vs[r0], vs[r0 + 1]);
            let hi23 = _mm_unpackhi_ps(vs[r0 + 2], vs[r0 + 3]);
            let t0 = _mm_movelh_ps(lo01, lo23);
            let t1 = _mm_movehl_ps(lo23, lo01);
            let t2 = _mm_movelh_ps(hi01, hi23);
            let t3 = _mm_movehl_ps(hi23, hi01);
            let mut s = _mm_add_ps(_mm_add_ps(_mm_add_ps(t0, t1), t2), t3);
            let row = w.wrapping_add(r0 * ldw);
            // SAFETY: q < k: within x and rows r0..r0 + 4; y[r0..r0 + 4] are outputs.
            unsafe {
                for q in full..k {
                    let at = |r: usize| *row.add(r * ldw + q);
                    let wv = _mm_setr_ps(at(0), at(1), at(2), at(3));
                    s = _mm_fmadd_ps(_mm_set1_ps(*x.add(q)), wv, s);
                }
                _mm_storeu_ps(y.add(r0), s);
            }
        }
        for (r, v) in vs.iter().enumerate().skip(quads) {
            let mut lanes = [0f32; 4];
            let row = w.wrapping_add(r * ldw);
            // SAFETY: four floats into a local array; q < k: within x and row r; y[r] is
            // an output.
            unsafe {
                _mm_storeu_ps(lanes.as_mut_ptr(), *v);
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
    use crate::ukernel::variants;

    /// Every variant against an f64 reference and bit for bit against the portable one, over
    /// row counts around the passes, vector counts around the pairs and passes, reductions
    /// around the steps, and row and vector strides with a gap (NaN, never read); guards
    /// between and after the outputs.
    #[test]
    fn variants_match_the_reference() {
        let mut rng = SplitMix(17);
        let kernels: Vec<(&str, GemvF32Fn)> = variants(|t| t.gemv_f32);
        assert!(!kernels.is_empty());
        const GUARD: f32 = -7.25e30;
        for k in [
            0usize, 1, 3, 4, 5, 7, 8, 12, 15, 16, 17, 31, 32, 33, 100, 1280,
        ] {
            for n in [0usize, 1, 3, 4, 5, 9, 17] {
                for m in [1usize, 2, 3, 4, 5, 8, 9, 17] {
                    if k > 100 && m > 3 && n > 5 {
                        continue;
                    }
                    let (ldw, ldx, ldy) = (k + 3, k + 1, n + 2);
                    let noisy = |rows: usize, ld: usize, rng: &mut SplitMix| {
                        let mut v = vec![f32::NAN; rows * ld + 1];
                        for r in 0..rows {
                            for e in &mut v[r * ld..r * ld + k] {
                                *e = rng.normal();
                            }
                        }
                        v
                    };
                    let w = noisy(n, ldw, &mut rng);
                    let x = noisy(m, ldx, &mut rng);
                    let run = |f: GemvF32Fn| {
                        let mut y = vec![GUARD; m * ldy + 4];
                        // SAFETY: x, w and y are as large as the contract requires.
                        unsafe {
                            f(
                                k,
                                x.as_ptr(),
                                ldx,
                                m,
                                w.as_ptr(),
                                ldw,
                                y.as_mut_ptr(),
                                ldy,
                                n,
                            )
                        };
                        y
                    };
                    let want = run(super::gemv_generic);
                    for (name, f) in &kernels {
                        let y = run(*f);
                        for (e, &g) in y.iter().enumerate() {
                            let (i, j) = (e / ldy, e % ldy);
                            if i >= m || j >= n {
                                assert_eq!(g, GUARD, "{name}: guard {e} written");
                                continue;
                            }
                            let terms = (0..k)
                                .map(|p| f64::from(x[i * ldx + p]) * f64::from(w[j * ldw + p]));
                            let r: f64 = terms.clone().sum();
                            let scale: f64 = terms.map(f64::abs).sum();
                            assert!(
                                (f64::from(g) - r).abs() <= 1e-6 * (1.0 + scale),
                                "{name}: k {k}, m {m}, n {n}, ({i}, {j}): {g} vs {r}"
                            );
                            assert_eq!(
                                g.to_bits(),
                                want[e].to_bits(),
                                "{name}: k {k}, m {m}, n {n}, ({i}, {j}) differs from generic"
                            );
                        }
                    }
                }
            }
        }
    }
}
