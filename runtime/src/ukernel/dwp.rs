//! The small-map depthwise micro-kernel: one channel's outputs from a zero-padded copy of its
//! input plane, one 16-lane vector per output row of up to 16 outputs, two for 17–32.
//!
//! MobileNetV3's and EfficientNet's depthwise convs on 14×14 and 28×28 maps (5×5 kernels, up
//! to 672 channels) run on the compiler's padded-plane path (`compiler/codegen/src/lower/
//! conv_dw.rs`: the task copies the channel into a stack buffer with zero borders, then every
//! output vector reads every tap with one load). Its 4-lane vectors cover a 14-wide row with
//! four overlapping vectors; here one masked vector covers it, and eight rows run as eight
//! independent FMA chains sharing one mask, one broadcast weight and one tap offset per tap.
//! Each output is still the same FMA chain, so the compiler calls this kernel on the plane it
//! filled and gets the same bits. For 3×3 and 5×5 kernels at vertical stride 1 and 5×5 at
//! stride 2 the rows run as bands that load each input row's tap vector once for every
//! output row that reads it (a load per tap and output row made the kernel load-bound):
//! EfficientNet-B0's 28×28 5×5 depthwise conv at one thread 0.131 → 0.106 ms with SiLU in
//! the call, its 14×14 3×3 one 0.056 → 0.049 ms. (3×3 at stride 2 measured slower in bands.)
//!
//! # Contract
//! `dwp_f32(plane, len, phases, sy, wts, kh, kw, y, oh, ow, bias, flags, lo, hi)` ([`DwpF32Fn`],
//! a field of [`super::UkernelTable`], null where an ISA has no variant): the padded plane
//! holds padded row `r`, column `c` at `plane[(r·phases + c mod phases)·len + c div phases]`
//! (`phases` 1 or 2, the horizontal stride: a stride-2 row is stored as its even columns,
//! then its odd ones); the kernel `wts` is `kh × kw` floats, the output plane `y` is `oh × ow`
//! floats (row stride `ow`), `sy` the vertical stride. For each output `(oy, ox)`:
//!
//! ```text
//! s = bias
//! for ky < kh, then kx < kw:   s = fma(plane at (oy·sy + ky, ox·phases + kx), wts[ky·kw + kx], s)
//! s = min(hi, max(lo, s))      if flags & GEMM_CLAMP
//! s = s · σ(s)                 if flags & GEMM_SILU ([`super::silu::silu`])
//! s = s · min(1, max(0, fma(s, 1/6, 1/2)))   if flags & GEMM_HARDSWISH (the GEMM tile's)
//! y[oy·ow + ox] = s
//! ```
//!
//! `phases` other than 1 and 2, or rows wider than 32, write nothing. The flags are
//! [`super::GEMM_CLAMP`] (the clamp propagates NaN as the GEMM tile's does),
//! [`super::GEMM_SILU`] and [`super::GEMM_HARDSWISH`]. Nothing outside
//! `y`'s `oh × ow` elements is written, nothing outside the plane's elements the outputs read
//! and the kernel is read. Reentrant, no allocation, no global state.

use super::{
    generic::{clamp, hard_swish},
    silu::silu,
    GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU,
};

/// The kernel's type; see the module documentation.
///
/// # Safety
/// `plane` is readable at every element an output reads, `wts` for `kh·kw` floats, `y`
/// writable for `oh·ow` and overlaps neither.
pub type DwpF32Fn = unsafe extern "C" fn(
    plane: *const f32,
    len: usize,
    phases: usize,
    sy: usize,
    wts: *const f32,
    kh: usize,
    kw: usize,
    y: *mut f32,
    oh: usize,
    ow: usize,
    bias: f32,
    flags: u32,
    lo: f32,
    hi: f32,
);

/// Element index in the plane of padded (row, col).
fn at(len: usize, phases: usize, row: usize, col: usize) -> usize {
    (row * phases + col % phases) * len + col / phases
}

/// The portable variant (the reference of the others).
///
/// # Safety
/// As [`DwpF32Fn`].
#[allow(clippy::too_many_arguments)] // the C signature of the contract
pub unsafe extern "C" fn dwp_generic(
    plane: *const f32,
    len: usize,
    phases: usize,
    sy: usize,
    wts: *const f32,
    kh: usize,
    kw: usize,
    y: *mut f32,
    oh: usize,
    ow: usize,
    bias: f32,
    flags: u32,
    lo: f32,
    hi: f32,
) {
    if !matches!(phases, 1 | 2) || ow > 32 {
        return;
    }
    for oy in 0..oh {
        for ox in 0..ow {
            let mut s = bias;
            for ky in 0..kh {
                for kx in 0..kw {
                    // SAFETY: an element the output reads, and a tap of the kernel.
                    unsafe {
                        let v = *plane.add(at(len, phases, oy * sy + ky, ox * phases + kx));
                        s = v.mul_add(*wts.add(ky * kw + kx), s);
                    }
                }
            }
            if flags & GEMM_CLAMP != 0 {
                s = clamp(s, lo, hi);
            }
            if flags & GEMM_SILU != 0 {
                s = silu(s);
            }
            if flags & GEMM_HARDSWISH != 0 {
                s = hard_swish(s);
            }
            // SAFETY: an element of the output plane.
            unsafe { *y.add(oy * ow + ox) = s };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::super::silu::x86::silu16;
    use super::super::x86::hard_swish16;
    use super::{GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU};
    use std::arch::x86_64::*;

    /// The plane and kernel of a call.
    #[derive(Clone, Copy)]
    struct Taps {
        plane: *const f32,
        len: usize,
        phases: usize,
        sy: usize,
        wts: *const f32,
        kh: usize,
        kw: usize,
    }

    /// The output plane and epilogue of a call.
    #[derive(Clone, Copy)]
    struct Out {
        y: *mut f32,
        ow: usize,
        bias: f32,
        flags: u32,
        lo: f32,
        hi: f32,
    }

    /// # Safety
    /// As [`super::DwpF32Fn`], on a CPU with AVX-512F.
    #[allow(clippy::too_many_arguments)] // the C signature of the contract
    pub(in crate::ukernel) unsafe extern "C" fn dwp_avx512(
        plane: *const f32,
        len: usize,
        phases: usize,
        sy: usize,
        wts: *const f32,
        kh: usize,
        kw: usize,
        y: *mut f32,
        oh: usize,
        ow: usize,
        bias: f32,
        flags: u32,
        lo: f32,
        hi: f32,
    ) {
        if !matches!(phases, 1 | 2) || ow > 32 || ow == 0 {
            return;
        }
        let t = Taps {
            plane,
            len,
            phases,
            sy,
            wts,
            kh,
            kw,
        };
        let o = Out {
            y,
            ow,
            bias,
            flags,
            lo,
            hi,
        };
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F. 3×3 kernels at
        // vertical stride 1 and 5×5 ones (MobileNetV3's, EfficientNet's) on planes of 4 rows
        // or more take bands of rows that share their input rows' loads; other kernels rows
        // with their own loads.
        unsafe {
            match (kh, kw, sy) {
                (3, 3, 1) if oh >= 4 => bands::<3, 3, 1>(t, o, oh),
                (5, 5, 1) if oh >= 4 => bands::<5, 5, 1>(t, o, oh),
                (5, 5, 2) if oh >= 4 => bands::<5, 5, 2>(t, o, oh),
                _ => each_row(t, o, oh),
            }
        }
    }

    /// Every output row: rows of up to 16 outputs one vector each, wider ones two. Groups of 8
    /// (one vector) or 4 (two) rows are independent FMA chains; the last group of a plane of
    /// 8 rows or more overlaps the one before (its rows are stored twice, the same values)
    /// rather than running its rows one by one.
    #[target_feature(enable = "avx512f")]
    unsafe fn each_row(t: Taps, o: Out, oh: usize) {
        // SAFETY (all): the caller's contract.
        unsafe {
            if o.ow <= 16 && oh >= 8 {
                for oy in group_starts(oh, 8) {
                    rows::<8, 1>(t, o, oy);
                }
            } else if o.ow <= 16 {
                for oy in 0..oh {
                    rows::<1, 1>(t, o, oy);
                }
            } else {
                let mut oy = 0;
                while oy + 4 <= oh {
                    rows::<4, 2>(t, o, oy);
                    oy += 4;
                }
                while oy < oh {
                    rows::<1, 2>(t, o, oy);
                    oy += 1;
                }
            }
        }
    }

    /// The first rows of groups of `r` rows covering `0..oh` (`oh ≥ r`): every `r` rows from
    /// 0, and `oh − r` when `r` does not divide `oh` (that group overlaps the one before: its
    /// shared rows are stored twice, the same values).
    fn group_starts(oh: usize, r: usize) -> impl Iterator<Item = usize> {
        (0..oh / r)
            .map(move |i| i * r)
            .chain((!oh.is_multiple_of(r)).then_some(oh - r))
    }

    /// The lanes of each of a row's `V` vectors inside the row.
    fn row_masks<const V: usize>(ow: usize) -> [__mmask16; V] {
        std::array::from_fn(|v| {
            let n = (ow - 16 * v).min(16);
            ((1u32 << n) - 1) as __mmask16
        })
    }

    /// Output rows `oy .. oy + R`, `V` vectors each (columns 0..16 and 16..ow): `R·V`
    /// independent FMA chains, each tap's vector loaded for each row.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize, const V: usize>(t: Taps, o: Out, oy: usize) {
        let masks = row_masks::<V>(o.ow);
        // Padded row (oy + r)·sy, phase 0, column 0 of each output row.
        let row_floats = t.sy * t.phases * t.len;
        let base = t.plane.wrapping_add(oy * row_floats);
        let mut acc = [[_mm512_set1_ps(o.bias); V]; R];
        for ky in 0..t.kh {
            for kx in 0..t.kw {
                // Tap (ky, kx) of an output at padded (r, c·phases): row r + ky, phase
                // kx mod phases, index c + kx div phases.
                let shift = t.phases - 1;
                let tap = (ky * t.phases + (kx & shift)) * t.len + (kx >> shift);
                // SAFETY: a tap of the kernel.
                let w = _mm512_set1_ps(unsafe { *t.wts.add(ky * t.kw + kx) });
                let p = base.wrapping_add(tap);
                for (r, row) in acc.iter_mut().enumerate() {
                    for (v, a) in row.iter_mut().enumerate() {
                        // SAFETY: the masked lanes read elements the row's outputs read; the
                        // others are not accessed.
                        let x = unsafe {
                            _mm512_maskz_loadu_ps(masks[v], p.wrapping_add(r * row_floats + 16 * v))
                        };
                        *a = _mm512_fmadd_ps(x, w, *a);
                    }
                }
            }
        }
        // SAFETY: rows oy .. oy + R of the output plane.
        unsafe { finish(o, acc, oy, masks) };
    }

    /// Every output row of a `KH × KW` kernel at vertical stride `SY` (`oh` ≥ 4), in bands
    /// of 8 rows of one vector or 4 of two (the last band overlapping the one before).
    #[target_feature(enable = "avx512f")]
    unsafe fn bands<const KH: usize, const KW: usize, const SY: usize>(t: Taps, o: Out, oh: usize) {
        // SAFETY (all): the caller's contract, oh ≥ 4.
        unsafe {
            if o.ow <= 16 && oh >= 8 {
                for oy in group_starts(oh, 8) {
                    band::<8, 1, KH, KW, SY>(t, o, oy);
                }
            } else if o.ow <= 16 {
                // Fewer than 8 rows of 9 to 16 (rare: maps are square and 7×7 ones keep the
                // compiler's code); a band of 4 here would add its code to every executable.
                each_row(t, o, oh);
            } else {
                for oy in group_starts(oh, 4) {
                    band::<4, 2, KH, KW, SY>(t, o, oy);
                }
            }
        }
    }

    /// Output rows `oy .. oy + R` (`V` vectors each) from the band of padded rows they read:
    /// each input row's tap vector is loaded once and feeds every output row that reads it
    /// (input row `i` of the band is kernel row `i − SY·r` of output row `r`). The rows go in
    /// order, so each output's chain keeps the contract's order. MobileNetV3's 5×5 on 14×14
    /// loads 60 vectors per 8 rows instead of 200.
    #[target_feature(enable = "avx512f")]
    unsafe fn band<
        const R: usize,
        const V: usize,
        const KH: usize,
        const KW: usize,
        const SY: usize,
    >(
        t: Taps,
        o: Out,
        oy: usize,
    ) {
        let masks = row_masks::<V>(o.ow);
        let row_floats = t.phases * t.len;
        let base = t.plane.wrapping_add(oy * SY * row_floats);
        // Tap column kx: phase kx mod phases, index kx div phases.
        let taps: [usize; KW] = std::array::from_fn(|kx| (kx % t.phases) * t.len + kx / t.phases);
        let mut acc = [[_mm512_set1_ps(o.bias); V]; R];
        for i in 0..(R - 1) * SY + KH {
            let row = base.wrapping_add(i * row_floats);
            for (kx, tap) in taps.iter().enumerate() {
                // SAFETY: the masked lanes read elements the outputs read.
                let x: [__m512; V] = std::array::from_fn(|v| unsafe {
                    _mm512_maskz_loadu_ps(masks[v], row.wrapping_add(tap + 16 * v))
                });
                for (r, a) in acc.iter_mut().enumerate() {
                    let Some(ky) = i.checked_sub(SY * r).filter(|&ky| ky < KH) else {
                        continue;
                    };
                    // SAFETY: a tap of the kernel.
                    let w = _mm512_set1_ps(unsafe { *t.wts.add(ky * KW + kx) });
                    for (a, x) in a.iter_mut().zip(x) {
                        *a = _mm512_fmadd_ps(x, w, *a);
                    }
                }
            }
        }
        // SAFETY: rows oy .. oy + R of the output plane.
        unsafe { finish(o, acc, oy, masks) };
    }

    /// The epilogue of rows `oy .. oy + R` and their stores (the lanes of `masks`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn finish<const R: usize, const V: usize>(
        o: Out,
        acc: [[__m512; V]; R],
        oy: usize,
        masks: [__mmask16; V],
    ) {
        let (vlo, vhi) = (_mm512_set1_ps(o.lo), _mm512_set1_ps(o.hi));
        for (r, row) in acc.iter().enumerate() {
            for (v, &a) in row.iter().enumerate() {
                let mut s = a;
                if o.flags & GEMM_CLAMP != 0 {
                    s = _mm512_min_ps(vhi, _mm512_max_ps(vlo, s));
                }
                if o.flags & GEMM_SILU != 0 {
                    s = silu16(s);
                }
                if o.flags & GEMM_HARDSWISH != 0 {
                    s = hard_swish16(s);
                }
                let at = (oy + r) * o.ow + 16 * v;
                // SAFETY: the row's outputs, inside y's oh·ow elements.
                unsafe { _mm512_mask_storeu_ps(o.y.wrapping_add(at), masks[v], s) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{at, DwpF32Fn};
    use crate::rt::SplitMix;
    use crate::ukernel::{same_bits, variants, GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU};

    /// Every variant this CPU runs against the portable one, bit for bit (guards around the
    /// output), and the portable one against an f64 reference, over widths around the vector
    /// counts, row counts around the groups, both strides and the clamp.
    #[test]
    fn variants_match_the_portable_kernel() {
        let mut rng = SplitMix(23);
        let kernels: Vec<(&str, DwpF32Fn)> = variants(|t| t.dwp_f32);
        // (oh, ow, kh, kw, sy, phases)
        let shapes = [
            (7usize, 7usize, 5usize, 5usize, 1usize, 1usize),
            (14, 14, 5, 5, 1, 1),
            (14, 14, 3, 3, 2, 2),
            (9, 9, 3, 3, 1, 1),
            (11, 16, 5, 5, 2, 2),
            (28, 28, 3, 3, 1, 1),
            (5, 17, 3, 3, 1, 1),
            (3, 32, 7, 7, 2, 2),
            (1, 12, 1, 1, 1, 1),
            (10, 20, 3, 5, 1, 2),
            // Rows of 4 to 8 outputs; the last group overlapping the one before.
            (7, 4, 3, 3, 1, 1),
            (5, 8, 5, 5, 2, 2),
            (13, 6, 3, 3, 1, 1),
            (3, 5, 3, 3, 1, 1),
            // Bands of two-vector rows, the last one overlapping.
            (6, 24, 5, 5, 1, 1),
            (9, 20, 3, 3, 2, 2),
        ];
        for (oh, ow, kh, kw, sy, phases) in shapes {
            for flags in [
                0,
                GEMM_CLAMP,
                GEMM_HARDSWISH,
                GEMM_CLAMP | GEMM_HARDSWISH,
                GEMM_SILU,
            ] {
                let rows = (oh - 1) * sy + kh;
                let len = ((ow - 1) * phases + kw).div_ceil(phases);
                let plane: Vec<f32> = (0..rows * phases * len).map(|_| rng.normal()).collect();
                let wts: Vec<f32> = (0..kh * kw).map(|_| rng.normal()).collect();
                let bias = rng.normal();
                let run = |f: DwpF32Fn| {
                    let mut y = vec![-7.25e30f32; oh * ow + 16];
                    // SAFETY: the plane holds every padded row and column the outputs read.
                    unsafe {
                        f(
                            plane.as_ptr(),
                            len,
                            phases,
                            sy,
                            wts.as_ptr(),
                            kh,
                            kw,
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
                let want = run(super::dwp_generic);
                assert!(
                    want[oh * ow..].iter().all(|&g| g == -7.25e30),
                    "guard written"
                );
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut r = f64::from(bias);
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let p = plane[at(len, phases, oy * sy + ky, ox * phases + kx)];
                                r += f64::from(wts[ky * kw + kx]) * f64::from(p);
                            }
                        }
                        if flags & GEMM_CLAMP != 0 {
                            r = r.clamp(-0.5, 0.75);
                        }
                        if flags & GEMM_SILU != 0 {
                            r /= 1.0 + (-r).exp();
                        }
                        if flags & GEMM_HARDSWISH != 0 {
                            r *= (r / 6.0 + 0.5).clamp(0.0, 1.0);
                        }
                        let got = f64::from(want[oy * ow + ox]);
                        assert!((got - r).abs() <= 1e-4 * (1.0 + r.abs()), "{got} vs {r}");
                    }
                }
                for (name, f) in &kernels {
                    let got = run(*f);
                    let same = same_bits(&got, &want);
                    assert!(
                        same,
                        "{name}: {oh}x{ow} k{kh}x{kw} s{sy} phases {phases} flags {flags}"
                    );
                }
            }
        }
    }
}
