//! The depthwise convolution micro-kernel: one channel's plane, stride 1 or 2, with the fused
//! bias, clamp and SiLU, 16 output columns per AVX-512 vector.
//!
//! Depthwise convs are a small share of a MobileNet's or EfficientNet's FLOPs but a large
//! share of its time: each output needs its own kh·kw taps, so they are bound by loads and
//! FMAs, not by a GEMM tile. The compiler's 4-lane Cranelift code (and its edge vectors at the
//! padding) ran MobileNetV2's 112- and 56-wide depthwise convs at half onnxruntime's speed.
//!
//! # Contract
//! `dw_f32(x, h, w, wts, kh, kw, sy, sx, pt, pl, y, oh, ow, bias, flags, lo, hi)`
//! ([`DwF32Fn`], a field of [`super::UkernelTable`], null where an ISA has no variant): the
//! input plane `x` is `h × w` floats (row stride `w`), the kernel `wts` is `kh × kw` floats,
//! the output plane `y` is `oh × ow` floats (row stride `ow`); strides `sy`, `sx` are 1 or 2
//! (others: nothing is written), dilation 1, `pt`/`pl` the top and left padding. For each
//! output `(oy, ox)`, with `ix(kx) = ox·sx + kx − pl`:
//!
//! ```text
//! c₀ = bias, c₁ = c₂ = +0.0
//! for ky < kh whose input row iy = oy·sy + ky − pt is inside 0..h:
//!     for kx < kw that column group ⌊ox/4⌋ uses:
//!         c[ky mod 3] = fma(x[iy·w + ix(kx)] or +0.0 when ix(kx) ∉ 0..w, wts[ky·kw + kx], c[ky mod 3])
//! s = (c₀ + c₁) + c₂
//! s = min(hi, max(lo, s))                          if flags & GEMM_CLAMP
//! s = s · σ(s)   ([`super::silu::silu`])            if flags & GEMM_SILU
//! y[oy·ow + ox] = s
//! ```
//!
//! where column group `g` (outputs `4g .. 4g + 4`) uses tap column `kx` when `ix(kx)` is inside
//! `0..w` for at least one of its outputs below `ow`. This is the compiler's direct depthwise
//! path, operation for operation (its f32x4 vectors are those column groups; an edge vector
//! skips the tap columns none of its lanes reads), so the kernel and the generated code give
//! the same bits. The flags are [`super::GEMM_CLAMP`] and [`super::GEMM_SILU`] (and the hint
//! [`super::GEMM_STREAM`]); the clamp propagates NaN as the GEMM tile's does. Nothing outside
//! `y`'s `oh × ow` elements is written, nothing outside `x`'s plane and the kernel is read.
//! Reentrant, no allocation, no global state.

use super::{generic::clamp, silu::silu, GEMM_CLAMP, GEMM_SILU};

/// The depthwise kernel's type; see the module documentation.
///
/// # Safety
/// `x` is readable for `h·w` floats, `wts` for `kh·kw`, `y` writable for `oh·ow` and overlaps
/// neither.
pub type DwF32Fn = unsafe extern "C" fn(
    x: *const f32,
    h: usize,
    w: usize,
    wts: *const f32,
    kh: usize,
    kw: usize,
    sy: usize,
    sx: usize,
    pt: usize,
    pl: usize,
    y: *mut f32,
    oh: usize,
    ow: usize,
    bias: f32,
    flags: u32,
    lo: f32,
    hi: f32,
);

/// The input row of kernel row `ky` for output row `oy`, if inside the plane.
fn input_row(oy: usize, ky: usize, sy: usize, pt: usize, h: usize) -> Option<usize> {
    (oy * sy + ky).checked_sub(pt).filter(|&iy| iy < h)
}

/// Whether column group `g` uses tap column `kx`: some output of the group below `ow` reads an
/// input column inside `0..w`.
fn group_uses(g: usize, kx: usize, (sx, pl, w, ow): (usize, usize, usize, usize)) -> bool {
    (4 * g..(4 * g + 4).min(ow)).any(|ox| (ox * sx + kx).checked_sub(pl).is_some_and(|ix| ix < w))
}

/// The epilogue of one sum.
fn finish(s: f32, flags: u32, lo: f32, hi: f32) -> f32 {
    let mut s = s;
    if flags & GEMM_CLAMP != 0 {
        s = clamp(s, lo, hi);
    }
    if flags & GEMM_SILU != 0 {
        s = silu(s);
    }
    s
}

/// The portable variant (the reference of the others).
///
/// # Safety
/// As [`DwF32Fn`].
#[allow(clippy::too_many_arguments)] // the C signature of the contract
pub unsafe extern "C" fn dw_generic(
    x: *const f32,
    h: usize,
    w: usize,
    wts: *const f32,
    kh: usize,
    kw: usize,
    sy: usize,
    sx: usize,
    pt: usize,
    pl: usize,
    y: *mut f32,
    oh: usize,
    ow: usize,
    bias: f32,
    flags: u32,
    lo: f32,
    hi: f32,
) {
    if !matches!(sy, 1 | 2) || !matches!(sx, 1 | 2) {
        return;
    }
    for oy in 0..oh {
        for ox in 0..ow {
            let mut c = [bias, 0.0, 0.0];
            for ky in 0..kh {
                let Some(iy) = input_row(oy, ky, sy, pt, h) else {
                    continue;
                };
                for kx in 0..kw {
                    if !group_uses(ox / 4, kx, (sx, pl, w, ow)) {
                        continue;
                    }
                    let v = match (ox * sx + kx).checked_sub(pl).filter(|&ix| ix < w) {
                        // SAFETY: (iy, ix) is inside the plane.
                        Some(ix) => unsafe { *x.add(iy * w + ix) },
                        None => 0.0,
                    };
                    // SAFETY: a tap of the kernel.
                    let wt = unsafe { *wts.add(ky * kw + kx) };
                    c[ky % 3] = v.mul_add(wt, c[ky % 3]);
                }
            }
            let s = (c[0] + c[1]) + c[2];
            // SAFETY: an element of the output plane.
            unsafe { *y.add(oy * ow + ox) = finish(s, flags, lo, hi) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::super::silu::x86::silu16;
    use super::{group_uses, input_row, GEMM_CLAMP, GEMM_SILU};
    use crate::ukernel::GEMM_STREAM;
    use std::arch::x86_64::*;

    /// Output vectors of a row computed together (independent FMA chains): 64 columns; a
    /// row's remainder takes groups of 2 and 1 (three instantiations per kernel width keep
    /// the runtime small).
    const GROUP: usize = 4;
    /// Output rows ahead whose input rows the first pass over a plane prefetches.
    const AHEAD_ROWS: usize = 4;

    /// # Safety
    /// As [`super::DwF32Fn`], on a CPU with AVX-512F.
    #[allow(clippy::too_many_arguments)] // the C signature of the contract
    pub(in crate::ukernel) unsafe extern "C" fn dw_avx512(
        x: *const f32,
        h: usize,
        w: usize,
        wts: *const f32,
        kh: usize,
        kw: usize,
        sy: usize,
        sx: usize,
        pt: usize,
        pl: usize,
        y: *mut f32,
        oh: usize,
        ow: usize,
        bias: f32,
        flags: u32,
        lo: f32,
        hi: f32,
    ) {
        if !matches!(sy, 1 | 2) || !matches!(sx, 1 | 2) {
            return;
        }
        let p = Plane {
            x,
            h,
            w,
            wts,
            kh,
            sy,
            sx,
            pt,
            pl,
        };
        let o = Out {
            y,
            oh,
            ow,
            bias,
            flags,
            lo,
            hi,
        };
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F. Kernel widths
        // other than 3, 5 and 7 (rare in depthwise layers) take the portable loop.
        unsafe {
            match kw {
                3 => row_groups::<3>(&p, &o),
                5 => row_groups::<5>(&p, &o),
                7 => row_groups::<7>(&p, &o),
                _ => super::dw_generic(
                    x, h, w, wts, kh, kw, sy, sx, pt, pl, y, oh, ow, bias, flags, lo, hi,
                ),
            }
        }
    }

    /// The input side of a call (the kernel's width is a type parameter).
    struct Plane {
        x: *const f32,
        h: usize,
        w: usize,
        wts: *const f32,
        kh: usize,
        sy: usize,
        sx: usize,
        pt: usize,
        pl: usize,
    }

    /// The output side of a call.
    struct Out {
        y: *mut f32,
        oh: usize,
        ow: usize,
        bias: f32,
        flags: u32,
        lo: f32,
        hi: f32,
    }

    /// Prefetches the `w` floats of the row at `row`, a line at a time.
    #[inline(never)]
    fn prefetch_row(row: *const f32, w: usize) {
        for c in (0..w).step_by(16) {
            // SAFETY: prefetches never fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(c).cast()) };
        }
    }

    /// Bits `j` of a 16-lane mask for which `0 <= c + j < w`.
    fn valid(c: isize, w: usize) -> __mmask16 {
        let lo = (-c).clamp(0, 16);
        let hi = (w as isize - c).clamp(0, 16);
        if hi <= lo {
            return 0;
        }
        let upto = |n: isize| if n >= 16 { !0u16 } else { (1u16 << n) - 1 };
        upto(hi) & !upto(lo)
    }

    /// Every output column: interior vectors (every tap of every lane inside the row, every
    /// column group using every tap) in runs of up to [`GROUP`] with plain loads and FMAs, the
    /// others one by one with masked ones.
    #[target_feature(enable = "avx512f")]
    unsafe fn row_groups<const KW: usize>(p: &Plane, o: &Out) {
        let vecs = o.ow.div_ceil(16);
        let inner = |v: usize| {
            let x0 = 16 * v;
            let first = (x0 * p.sx) as isize - p.pl as isize;
            // The last column its loads read: at stride 2 the pair of loads of the last tap
            // spans one column past the last one used.
            let last = ((x0 + 15) * p.sx + KW - 1 + (p.sx - 1)) as isize - p.pl as isize;
            x0 + 16 <= o.ow && first >= 0 && last < p.w as isize
        };
        let mut v = 0;
        while v < vecs {
            let run = (v..vecs.min(v + GROUP)).take_while(|&u| inner(u)).count();
            // SAFETY: the caller's contract.
            unsafe {
                v += match run {
                    0 => columns::<1, KW, true>(p, o, 16 * v),
                    1 => columns::<1, KW, false>(p, o, 16 * v),
                    2 | 3 => columns::<2, KW, false>(p, o, 16 * v),
                    _ => columns::<GROUP, KW, false>(p, o, 16 * v),
                };
            }
        }
    }

    /// Output columns `x0 .. x0 + 16·V` (clipped at `ow`) of every output row; returns `V`.
    /// `MASKED`: loads masked to the lanes inside the row and FMAs to the column groups that
    /// use the tap (the contract's order); otherwise the vectors are interior ones.
    #[target_feature(enable = "avx512f")]
    unsafe fn columns<const V: usize, const KW: usize, const MASKED: bool>(
        p: &Plane,
        o: &Out,
        x0: usize,
    ) -> usize {
        let s2 = p.sx == 2;
        // The input column of vector 0's tap 0; vector v's tap kx reads from
        // base + 16·v·sx + kx. Masks per vector and tap (the first and, at stride 2, second
        // load; the lanes of the column groups that use the tap), the same for every row.
        let base = (x0 * p.sx) as isize - p.pl as isize;
        let step = 16 * p.sx;
        let geo = (p.sx, p.pl, p.w, o.ow);
        // Interior vectors (not `MASKED`) read no mask: none is computed for them.
        let mut masks = [[(0u16, 0u16, 0u16); KW]; V];
        for (v, mv) in masks.iter_mut().enumerate().filter(|_| MASKED) {
            for (kx, m) in mv.iter_mut().enumerate() {
                let c = base + (step * v + kx) as isize;
                let g0 = (x0 + 16 * v) / 4;
                let uses = (0..4).fold(0u16, |acc, g| {
                    if group_uses(g0 + g, kx, geo) {
                        acc | (0xf << (4 * g))
                    } else {
                        acc
                    }
                });
                *m = (valid(c, p.w), if s2 { valid(c + 16, p.w) } else { 0 }, uses);
            }
        }
        let store: [__mmask16; V] = std::array::from_fn(|v| valid((x0 + 16 * v) as isize, o.ow));
        // Even lanes of two concatenated vectors: stride-2 columns.
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let (vlo, vhi, vbias) = (
            _mm512_set1_ps(o.lo),
            _mm512_set1_ps(o.hi),
            _mm512_set1_ps(o.bias),
        );
        // Kernel row ky's taps into `chain` (every address, mask and weight index static but
        // the row): a macro, so that each chain's accumulators stay in registers.
        macro_rules! kernel_row {
            ($chain:ident, $oy:expr, $ky:expr) => {
                if let Some(iy) = input_row($oy, $ky, p.sy, p.pt, p.h) {
                    let row = p.x.wrapping_add(iy * p.w).wrapping_offset(base);
                    // kx and v index the weights, the addresses and the masks together.
                    #[allow(clippy::needless_range_loop)]
                    for kx in 0..KW {
                        // SAFETY: a tap of the kernel.
                        let wv = _mm512_set1_ps(unsafe { *p.wts.add($ky * KW + kx) });
                        for v in 0..V {
                            let at = row.wrapping_add(step * v + kx);
                            let (m0, m1, uses) = masks[v][kx];
                            // SAFETY: only the lanes inside the row (the masks, or all of
                            // an interior vector's) are read.
                            $chain[v] = unsafe {
                                if MASKED {
                                    let a0 = _mm512_maskz_loadu_ps(m0, at);
                                    let xin = if s2 {
                                        let a1 = _mm512_maskz_loadu_ps(m1, at.wrapping_add(16));
                                        _mm512_permutex2var_ps(a0, evens, a1)
                                    } else {
                                        a0
                                    };
                                    _mm512_mask3_fmadd_ps(xin, wv, $chain[v], uses)
                                } else {
                                    let a0 = _mm512_loadu_ps(at);
                                    let xin = if s2 {
                                        let a1 = _mm512_loadu_ps(at.wrapping_add(16));
                                        _mm512_permutex2var_ps(a0, evens, a1)
                                    } else {
                                        a0
                                    };
                                    _mm512_fmadd_ps(xin, wv, $chain[v])
                                }
                            };
                        }
                    }
                }
            };
        }
        // With GEMM_STREAM (the plane comes from memory, as a large batch's do), the first pass
        // over the plane prefetches the input rows of the output row AHEAD_ROWS on: its
        // column-major passes read each row's first lines a row apart, which the hardware
        // prefetchers do not follow (MobileNetV2's 112 → 56 stride-2 layer at batch 8, one
        // thread: 4.16 → 2.23 ms). The rows prefetched per output row are a count, not a
        // branch, so that the compiler keeps one copy of the row loop (a test here doubled the
        // kernel's code).
        let ahead = if x0 == 0 && o.flags & GEMM_STREAM != 0 {
            p.sy
        } else {
            0
        };
        for oy in 0..o.oh {
            let iy0 = (oy + AHEAD_ROWS) * p.sy;
            for iy in iy0..(iy0 + ahead).min(p.h) {
                prefetch_row(p.x.wrapping_add(iy * p.w), p.w);
            }
            // Kernel row ky into chain ky mod 3; the bias starts chain 0.
            let mut acc0 = [vbias; V];
            let mut acc1 = [_mm512_setzero_ps(); V];
            let mut acc2 = [_mm512_setzero_ps(); V];
            let mut ky = 0;
            while ky < p.kh {
                kernel_row!(acc0, oy, ky);
                if ky + 1 < p.kh {
                    kernel_row!(acc1, oy, ky + 1);
                }
                if ky + 2 < p.kh {
                    kernel_row!(acc2, oy, ky + 2);
                }
                ky += 3;
            }
            let acc = [acc0, acc1, acc2];
            let yrow = o.y.wrapping_add(oy * o.ow + x0);
            for v in 0..V {
                let mut s = _mm512_add_ps(_mm512_add_ps(acc[0][v], acc[1][v]), acc[2][v]);
                if o.flags & GEMM_CLAMP != 0 {
                    s = _mm512_min_ps(vhi, _mm512_max_ps(vlo, s));
                }
                if o.flags & GEMM_SILU != 0 {
                    s = silu16(s);
                }
                // SAFETY: only the lanes inside the output row are written.
                unsafe { _mm512_mask_storeu_ps(yrow.wrapping_add(16 * v), store[v], s) };
            }
        }
        V
    }
}

#[cfg(test)]
mod tests {
    use super::DwF32Fn;
    use crate::rt::SplitMix;
    use crate::ukernel::{table, Isa, GEMM_CLAMP, GEMM_SILU, GEMM_STREAM};

    /// Every variant this CPU runs against the portable one, bit for bit (guards around the
    /// output), and the portable one against an f64 reference, over strides, pads, kernel
    /// sizes, widths around the vector groups, and each epilogue.
    #[test]
    fn variants_match_the_portable_kernel() {
        let mut rng = SplitMix(11);
        let kernels: Vec<(&str, DwF32Fn)> = Isa::ALL
            .into_iter()
            .filter_map(table)
            .filter_map(|t| t.dw_f32.map(|f| (t.isa.name(), f)))
            .collect();
        let shapes = [
            // (h, w, kh, kw, s, pad)
            (5usize, 5usize, 3usize, 3usize, 1usize, 1usize),
            (7, 40, 3, 3, 2, 1),
            (4, 112, 3, 3, 1, 1),
            (6, 113, 3, 3, 2, 1),
            (3, 129, 5, 5, 1, 2),
            (9, 200, 5, 5, 2, 2),
            (2, 300, 7, 7, 1, 3),
            (4, 17, 1, 1, 1, 0),
            (3, 20, 3, 9, 1, 4),
            (1, 3, 3, 3, 2, 0),
        ];
        for (h, w, kh, kw, s, pad) in shapes {
            for flags in [
                0,
                GEMM_CLAMP,
                GEMM_SILU,
                GEMM_CLAMP | GEMM_SILU,
                GEMM_STREAM,
            ] {
                let Some(oh) = (h + 2 * pad).checked_sub(kh).map(|d| d / s + 1) else {
                    continue;
                };
                let ow = (w + 2 * pad - kw) / s + 1;
                let x: Vec<f32> = (0..h * w).map(|_| rng.normal()).collect();
                let wts: Vec<f32> = (0..kh * kw).map(|_| rng.normal()).collect();
                let bias = rng.normal();
                let run = |f: DwF32Fn| {
                    let mut y = vec![-7.25e30f32; oh * ow + 16];
                    // SAFETY: the plane, kernel and output are as large as the contract needs.
                    unsafe {
                        f(
                            x.as_ptr(),
                            h,
                            w,
                            wts.as_ptr(),
                            kh,
                            kw,
                            s,
                            s,
                            pad,
                            pad,
                            y.as_mut_ptr(),
                            oh,
                            ow,
                            bias,
                            flags,
                            -0.5,
                            0.75,
                        )
                    };
                    y
                };
                let want = run(super::dw_generic);
                assert!(
                    want[oh * ow..].iter().all(|&g| g == -7.25e30),
                    "guard written"
                );
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut r = 0f64;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (oy * s + ky, ox * s + kx);
                                if iy >= pad && iy - pad < h && ix >= pad && ix - pad < w {
                                    r += f64::from(wts[ky * kw + kx])
                                        * f64::from(x[(iy - pad) * w + ix - pad]);
                                }
                            }
                        }
                        let mut r = r + f64::from(bias);
                        if flags & GEMM_CLAMP != 0 {
                            r = r.clamp(-0.5, 0.75);
                        }
                        if flags & GEMM_SILU != 0 {
                            r /= 1.0 + (-r).exp();
                        }
                        let got = f64::from(want[oy * ow + ox]);
                        assert!((got - r).abs() <= 1e-4 * (1.0 + r.abs()), "{got} vs {r}");
                    }
                }
                for (name, f) in &kernels {
                    let got = run(*f);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{name}: {h}x{w} k{kh}x{kw} s{s} p{pad} flags {flags}");
                }
            }
        }
    }
}
