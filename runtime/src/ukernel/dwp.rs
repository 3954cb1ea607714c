//! The small-map depthwise micro-kernel: one channel's outputs from a zero-padded copy of its
//! input plane, one 16-lane vector per output row of up to 16 outputs, two for 17–32.
//!
//! MobileNetV3's and EfficientNet's depthwise convs on 14×14 and 28×28 maps (5×5 kernels, up
//! to 672 channels) run on the compiler's padded-plane path (`compiler/codegen/src/lower/
//! conv_dw.rs`: the task copies the channel into a stack buffer with zero borders, then every
//! output vector reads every tap with one load). Its 4-lane vectors cover a 14-wide row with
//! four overlapping vectors; here one masked vector covers it, and eight rows run as eight
//! independent FMA chains sharing one mask, one broadcast weight and one tap offset per tap.
//! Each output is still the same FMA chain, so the compiler calls this kernel instead of its
//! own code (which then neither fills a plane nor computes) and gets the same bits. For 3×3
//! and 5×5 kernels at vertical stride 1 and 5×5 at stride 2 the rows run as bands that load
//! each input row's tap vector once for every output row that reads it (a load per tap and
//! output row made the kernel load-bound): EfficientNet-B0's 28×28 5×5 depthwise conv at one
//! thread 0.131 → 0.106 ms with SiLU in the call, its 14×14 3×3 one 0.056 → 0.049 ms. (3×3
//! at stride 2 measured slower in bands.)
//!
//! # Contract
//! `dwp_f32(x, h, w, wts, kh, kw, sy, sx, pt, pl, y, oh, ow, bias, flags, lo, hi)`
//! ([`DwpF32Fn`], a field of [`super::UkernelTable`], null where an ISA has no variant): the
//! arguments of [`super::dw`]'s kernel — the input plane `x` is `h × w` floats (row stride
//! `w`), the kernel `wts` is `kh × kw` floats, the output plane `y` is `oh × ow` floats (row
//! stride `ow`), `sy`, `sx` the strides, `pt`, `pl` the top and left padding — with one FMA
//! chain per output, the padding multiplied in. For each output `(oy, ox)`:
//!
//! ```text
//! s = bias
//! for ky < kh, then kx < kw:
//!     iy = oy·sy + ky − pt,  ix = ox·sx + kx − pl
//!     s = fma(x[iy·w + ix] if 0 <= iy < h and 0 <= ix < w else +0.0, wts[ky·kw + kx], s)
//! s = min(hi, max(lo, s))      if flags & GEMM_CLAMP
//! s = s · σ(s)                 if flags & GEMM_SILU ([`super::silu::silu`])
//! s = s · min(1, max(0, fma(s, 1/6, 1/2)))   if flags & GEMM_HARDSWISH (the GEMM tile's)
//! y[oy·ow + ox] = s
//! ```
//!
//! Strides other than 1 and 2, rows wider than 32, or a padded plane (the rows and columns the
//! outputs read, [`plane_floats`]) over [`DWP_MAX_PLANE`] floats write nothing. The flags are
//! [`super::GEMM_CLAMP`] (the clamp propagates NaN as the GEMM tile's does),
//! [`super::GEMM_SILU`] and [`super::GEMM_HARDSWISH`]. Nothing outside `y`'s `oh × ow`
//! elements is written, nothing outside `x`'s plane and the kernel is read. Reentrant, no
//! allocation, no global state; the AVX-512 variant uses 32 KB of stack.
//!
//! # The AVX-512 variant
//! It first copies the plane into a zero-padded one on its stack, as the compiler's path
//! does (a stride-2 row stored as its even padded columns, then its odd ones, so that every
//! tap of an output row is one contiguous masked load): two masked loads, two permutes and two
//! stores per 32 input columns of a stride-2 row, where the compiler's 4-lane copy took a load,
//! a shuffle and a store per 4 (MobileNetV2's 56 → 28 depthwise conv spent two thirds of its
//! time in that copy).

use super::{
    generic::{clamp, hard_swish},
    silu::silu,
    GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU,
};

/// The kernel's type: [`super::dw::DwF32Fn`]'s arguments, this module's contract.
///
/// # Safety
/// `x` is readable for `h·w` floats, `wts` for `kh·kw`, `y` writable for `oh·ow` and overlaps
/// neither.
pub type DwpF32Fn = super::dw::DwF32Fn;

/// Most floats of the padded plane (32 KB, within L1): the AVX-512 variant's stack buffer.
pub const DWP_MAX_PLANE: usize = 8 * 1024;

/// Floats of the padded plane of `oh × ow` outputs of a `kh × kw` kernel at strides `sy`,
/// `sx`: the rows the outputs read, each as `sx` phases of `⌈cols / sx⌉` floats (None on
/// overflow or a zero stride).
pub fn plane_floats(
    (oh, ow): (usize, usize),
    (kh, kw): (usize, usize),
    (sy, sx): (usize, usize),
) -> Option<usize> {
    let rows = oh.checked_sub(1)?.checked_mul(sy)?.checked_add(kh)?;
    let cols = ow.checked_sub(1)?.checked_mul(sx)?.checked_add(kw)?;
    let len = (sx != 0).then(|| cols.div_ceil(sx))?;
    rows.checked_mul(len)?.checked_mul(sx)
}

/// Whether a call computes anything (see the contract).
fn takes(ow: usize, (kh, kw): (usize, usize), (sy, sx): (usize, usize), oh: usize) -> bool {
    matches!(sy, 1 | 2)
        && matches!(sx, 1 | 2)
        && ow <= 32
        && plane_floats((oh, ow), (kh, kw), (sy, sx)).is_some_and(|f| f <= DWP_MAX_PLANE)
}

/// The portable variant (the reference of the others).
///
/// # Safety
/// As [`DwpF32Fn`].
#[allow(clippy::too_many_arguments)] // the C signature of the contract
pub unsafe extern "C" fn dwp_generic(
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
    if !takes(ow, (kh, kw), (sy, sx), oh) {
        return;
    }
    let inside = |i: usize, pad: usize, n: usize| i.checked_sub(pad).filter(|&i| i < n);
    for oy in 0..oh {
        for ox in 0..ow {
            let mut s = bias;
            for ky in 0..kh {
                for kx in 0..kw {
                    let at = inside(oy * sy + ky, pt, h).zip(inside(ox * sx + kx, pl, w));
                    // SAFETY: an element of the plane, and a tap of the kernel.
                    unsafe {
                        let v = at.map_or(0.0, |(iy, ix)| *x.add(iy * w + ix));
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
    use super::super::dw::x86::valid;
    use super::super::silu::x86::silu16;
    use super::super::x86::hard_swish16;
    use super::{takes, DWP_MAX_PLANE, GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU};
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
        if !takes(ow, (kh, kw), (sy, sx), oh) {
            return;
        }
        let rows = (oh - 1) * sy + kh;
        let len = ((ow - 1) * sx + kw).div_ceil(sx);
        let mut buf = std::mem::MaybeUninit::<[f32; DWP_MAX_PLANE]>::uninit();
        let plane = buf.as_mut_ptr().cast::<f32>();
        let t = Taps {
            plane,
            len,
            phases: sx,
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
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F. The plane's
        // `rows · sx · len` floats fit the buffer (`takes`), and the fill writes all of them
        // before any is read. 3×3 kernels at vertical stride 1 and 5×5 ones (MobileNetV3's,
        // EfficientNet's) on planes of 4 rows or more take bands of rows that share their
        // input rows' loads; other kernels rows with their own loads.
        unsafe {
            fill(x, (h, w), (pt, pl), t, rows);
            match (kh, kw, sy) {
                (3, 3, 1) if oh >= 4 => bands::<3, 3, 1>(t, o, oh),
                (5, 5, 1) if oh >= 4 => bands::<5, 5, 1>(t, o, oh),
                (5, 5, 2) if oh >= 4 => bands::<5, 5, 2>(t, o, oh),
                _ => each_row(t, o, oh),
            }
        }
    }

    /// Writes the `rows` padded rows of `t`'s plane from the `h × w` plane `x` at top and left
    /// padding `pt`, `pl`: padded row `r`, column `c` (at `(r·phases + c mod phases)·len + c
    /// div phases`) holds `x[r − pt][c − pl]`, or +0.0 outside `x`. It goes by blocks of 16
    /// columns of each phase, then rows, so that a block's masks are computed once (a plane's
    /// rows are one or two blocks wide). A stride-2 row's 32 input columns from `2·j − pl` are
    /// one even and one odd block (two permutes).
    ///
    /// # Safety
    /// `x` is readable for `h·w` floats, `t.plane` writable for `rows · phases · len`.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn fill(
        x: *const f32,
        (h, w): (usize, usize),
        (pt, pl): (usize, usize),
        t: Taps,
        rows: usize,
    ) {
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let (plane, len, phases) = (t.plane.cast_mut(), t.len, t.phases);
        let row_floats = phases * len;
        // Padded rows `top .. bottom` hold input rows, the others zeros.
        let top = pt.min(rows);
        let bottom = (pt + h).min(rows).max(top);
        for j in (0..len).step_by(16) {
            let m = row_masks::<1>(len - j)[0];
            let at = |r: usize, q: usize| plane.wrapping_add(r * row_floats + q * len + j);
            for r in (0..top).chain(bottom..rows) {
                for q in 0..phases {
                    // SAFETY: lanes below `len` of a phase row of padded row r.
                    unsafe { _mm512_mask_storeu_ps(at(r, q), m, _mm512_setzero_ps()) };
                }
            }
            // Input column of lane 0, and the lanes inside the row.
            let c = (phases * j) as isize - pl as isize;
            let (m0, m1) = (valid(c, w), valid(c + 16, w));
            for r in top..bottom {
                let src = x.wrapping_add((r - pt) * w).wrapping_offset(c);
                // SAFETY: the lanes loaded are columns of input row r − pt; the stores are
                // lanes below `len` of the phase rows of padded row r.
                unsafe {
                    let a0 = _mm512_maskz_loadu_ps(m0, src);
                    if phases == 1 {
                        _mm512_mask_storeu_ps(at(r, 0), m, a0);
                    } else {
                        let a1 = _mm512_maskz_loadu_ps(m1, src.wrapping_add(16));
                        _mm512_mask_storeu_ps(at(r, 0), m, _mm512_permutex2var_ps(a0, evens, a1));
                        _mm512_mask_storeu_ps(at(r, 1), m, _mm512_permutex2var_ps(a0, odds, a1));
                    }
                }
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
    use super::{plane_floats, DwpF32Fn, DWP_MAX_PLANE};
    use crate::rt::SplitMix;
    use crate::ukernel::{same_bits, variants, GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU};

    /// Every variant this CPU runs against the portable one, bit for bit (guards around the
    /// output), and the portable one against an f64 reference, over widths around the vector
    /// counts, row counts around the groups, both strides, paddings on every side (and none,
    /// and planes with rows and columns no output reads) and the clamp.
    #[test]
    fn variants_match_the_portable_kernel() {
        let mut rng = SplitMix(23);
        let kernels: Vec<(&str, DwpF32Fn)> = variants(|t| t.dwp_f32);
        // (oh, ow, kh, kw, sy, sx, pt, pl, h, w)
        let shapes = [
            (
                7usize, 7usize, 5usize, 5usize, 1usize, 1usize, 2usize, 2usize, 7usize, 7usize,
            ),
            (14, 14, 5, 5, 1, 1, 2, 2, 14, 14),
            (14, 14, 3, 3, 2, 2, 1, 1, 28, 28),
            (28, 28, 3, 3, 2, 2, 1, 1, 56, 56),
            (28, 28, 3, 3, 2, 2, 0, 0, 57, 57),
            (9, 9, 3, 3, 1, 1, 1, 1, 9, 9),
            (11, 16, 5, 5, 2, 2, 2, 2, 22, 32),
            (28, 28, 3, 3, 1, 1, 1, 1, 28, 28),
            (5, 17, 3, 3, 1, 1, 0, 0, 7, 19),
            (3, 32, 7, 7, 2, 2, 3, 3, 5, 63),
            (1, 12, 1, 1, 1, 1, 0, 0, 1, 12),
            (10, 20, 3, 5, 1, 2, 1, 2, 10, 40),
            (10, 20, 3, 5, 2, 1, 1, 2, 20, 20),
            // Rows of 4 to 8 outputs; the last group overlapping the one before.
            (7, 4, 3, 3, 1, 1, 1, 1, 7, 4),
            (5, 8, 5, 5, 2, 2, 2, 2, 9, 15),
            (13, 6, 3, 3, 1, 1, 1, 1, 13, 6),
            (3, 5, 3, 3, 1, 1, 1, 1, 3, 5),
            // Bands of two-vector rows, the last one overlapping.
            (6, 24, 5, 5, 1, 1, 2, 2, 6, 24),
            (9, 20, 3, 3, 2, 2, 1, 1, 18, 40),
            // Asymmetric padding (TensorFlow's SAME at stride 2), a plane smaller than the
            // window (every tap of some rows in the padding), padding wider than 16 lanes.
            (14, 14, 3, 3, 2, 2, 0, 0, 28, 28),
            (4, 4, 5, 5, 1, 1, 3, 3, 2, 2),
            (2, 10, 3, 3, 1, 1, 1, 17, 2, 1),
        ];
        for (oh, ow, kh, kw, sy, sx, pt, pl, h, w) in shapes {
            let floats = plane_floats((oh, ow), (kh, kw), (sy, sx)).unwrap();
            assert!(floats <= DWP_MAX_PLANE, "shape too large for the kernel");
            for flags in [
                0,
                GEMM_CLAMP,
                GEMM_HARDSWISH,
                GEMM_CLAMP | GEMM_HARDSWISH,
                GEMM_SILU,
            ] {
                let x: Vec<f32> = (0..h * w).map(|_| rng.normal()).collect();
                let wts: Vec<f32> = (0..kh * kw).map(|_| rng.normal()).collect();
                let bias = rng.normal();
                let run = |f: DwpF32Fn| {
                    let mut y = vec![-7.25e30f32; oh * ow + 16];
                    // SAFETY: the plane, kernel and output hold the contract's elements.
                    unsafe {
                        f(
                            x.as_ptr(),
                            h,
                            w,
                            wts.as_ptr(),
                            kh,
                            kw,
                            sy,
                            sx,
                            pt,
                            pl,
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
                                let (iy, ix) = (oy * sy + ky, ox * sx + kx);
                                if (pt..pt + h).contains(&iy) && (pl..pl + w).contains(&ix) {
                                    let p = x[(iy - pt) * w + ix - pl];
                                    r += f64::from(wts[ky * kw + kx]) * f64::from(p);
                                }
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
                        "{name}: {oh}x{ow} k{kh}x{kw} s{sy}x{sx} pads {pt},{pl} flags {flags}"
                    );
                }
            }
        }
    }

    /// Calls the contract leaves alone write nothing: rows wider than 32, a stride of 3, a
    /// padded plane over the limit.
    #[test]
    fn out_of_contract_calls_write_nothing() {
        let x = vec![1.0f32; 200 * 200];
        let wts = [1.0f32; 9];
        for f in variants(|t| t.dwp_f32)
            .into_iter()
            .map(|(_, f)| f)
            .chain([super::dwp_generic as DwpF32Fn])
        {
            for (oh, ow, s, h, w) in [(4, 33, 1, 4, 33), (4, 8, 3, 12, 24), (300, 30, 1, 300, 30)] {
                let mut y = vec![5.0f32; oh * ow];
                // SAFETY: the plane, kernel and output hold the contract's elements.
                unsafe {
                    f(
                        x.as_ptr(),
                        h,
                        w,
                        wts.as_ptr(),
                        3,
                        3,
                        s,
                        s,
                        1,
                        1,
                        y.as_mut_ptr(),
                        oh,
                        ow,
                        0.0,
                        0,
                        0.0,
                        0.0,
                    )
                };
                assert!(y.iter().all(|&v| v == 5.0), "{oh}x{ow} stride {s} written");
            }
        }
    }
}
