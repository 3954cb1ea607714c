//! The channel-block depthwise micro-kernel: up to [`DWC_CHANNELS`] channels of one image's
//! depthwise convolution on a small map at once, one 16-lane vector holding one output
//! position of every channel.
//!
//! On 7×7 maps (the last stage of EfficientNet, MobileNetV3, ShuffleNet, and CondConv's
//! dynamic depthwise convs) a channel's plane is 49 outputs: the compiler's padded-plane path
//! (`compiler/codegen/src/lower/conv_dw.rs`) covers each 7-wide row with two overlapping
//! 4-lane vectors and pays a padded copy, a SiLU pass and the loop set-up per channel, about
//! 700 cycles for 1,225 multiply-adds; a 16-lane vector per row would leave 9 lanes idle.
//! Here the lanes are channels instead: the input planes of the block are gathered into a
//! zero-padded plane of 16-channel vectors, the weights into one vector per tap, and every
//! output position is one FMA chain per tap over all the block's channels, stored back with a
//! scatter. Each output is the same chain as on the compiler's path (and [`super::dwp`]'s),
//! so the bits are the same.
//!
//! # Contract
//! `dwc_f32(x, x_ld, geo, wts, w_ld, bias, y, y_ld, nc, flags, lo, hi)` ([`DwcF32Fn`], a field
//! of [`super::UkernelTable`], null where an ISA has no variant): for channel `j < nc`
//! (`nc <= DWC_CHANNELS`) the input plane is `geo.h × geo.w` floats at `x + j·x_ld`, the
//! kernel `geo.kh × geo.kw` floats at `wts + j·w_ld`, the bias `bias[j]` (0 when `bias` is
//! null), the output plane `geo.oh × geo.ow` floats at `y + j·y_ld`; for each output
//! `(oy, ox)` of each channel, with `s = geo.s`:
//!
//! ```text
//! v = bias
//! for ky < kh, then kx < kw:
//!     iy = oy·s + ky − pt,  ix = ox·s + kx − pl
//!     v = fma(x[iy·w + ix] if 0 <= iy < h and 0 <= ix < w else 0, wts[ky·kw + kx], v)
//! v = min(hi, max(lo, v))      if flags & GEMM_CLAMP
//! v = v · σ(v)                 if flags & GEMM_SILU ([`super::silu::silu`])
//! v = v · min(1, max(0, fma(v, 1/6, 1/2)))   if flags & GEMM_HARDSWISH (the GEMM tile's)
//! y[oy·ow + ox] = v
//! ```
//!
//! (The padding is multiplied in, as the compiler's padded plane does.) A geometry that does
//! not [`DwcGeo::fits`], or `nc` above [`DWC_CHANNELS`], writes nothing. Only the inputs,
//! weights and biases of the `nc` channels are read, only their outputs written.
//! Reentrant, no allocation, no global state.

use super::{
    generic::{clamp, hard_swish},
    silu::silu,
    GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU,
};

/// Channels per call: the lanes of an AVX-512 vector.
pub const DWC_CHANNELS: usize = 16;
/// Most padded positions (rows × columns the outputs read) of a call's plane.
pub const DWC_MAX_PLANE: usize = 324;
/// Most outputs per channel.
pub const DWC_MAX_OUT: usize = 64;
/// Most taps (`kh · kw`).
pub const DWC_MAX_TAPS: usize = 49;
/// Narrowest and widest output rows (their positions are the vector variant's independent FMA
/// chains; narrower rows would leave the FMA pipes idle).
pub const DWC_MIN_WIDTH: usize = 4;
pub const DWC_MAX_WIDTH: usize = 8;

/// The geometry of a call (see the module documentation): input and output planes, kernel,
/// the stride of both axes and the padding before the first row and column.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwcGeo {
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub s: usize,
    pub pt: usize,
    pub pl: usize,
}

/// Fields of [`DwcGeo`], each pointer-sized, in order: what generated code stores.
pub const DWC_GEO_FIELDS: usize = 9;

impl DwcGeo {
    /// Padded rows and columns the outputs read.
    pub fn padded(&self) -> (usize, usize) {
        (
            (self.oh.max(1) - 1) * self.s + self.kh,
            (self.ow.max(1) - 1) * self.s + self.kw,
        )
    }

    /// Whether calls take this geometry: stride 1 or 2, output rows of [`DWC_MIN_WIDTH`] to
    /// [`DWC_MAX_WIDTH`], at most [`DWC_MAX_OUT`] outputs, [`DWC_MAX_TAPS`] taps and
    /// [`DWC_MAX_PLANE`] padded positions, and the padding inside the kernel.
    pub fn fits(&self) -> bool {
        let (ph, pw) = self.padded();
        matches!(self.s, 1 | 2)
            && (DWC_MIN_WIDTH..=DWC_MAX_WIDTH).contains(&self.ow)
            && self.oh >= 1
            && self.oh * self.ow <= DWC_MAX_OUT
            && (1..=DWC_MAX_TAPS).contains(&(self.kh * self.kw))
            && ph * pw <= DWC_MAX_PLANE
            && self.pt < self.kh
            && self.pl < self.kw
            && self.h * self.w > 0
    }
}

/// The kernel's type; see the module documentation.
///
/// # Safety
/// `geo` is readable; for `j < nc`, `x + j·x_ld` readable for `h·w` floats, `wts + j·w_ld`
/// for `kh·kw`, `bias` null or readable for `nc`, `y + j·y_ld` writable for `oh·ow` and
/// overlapping no input.
pub type DwcF32Fn = unsafe extern "C" fn(
    x: *const f32,
    x_ld: usize,
    geo: *const DwcGeo,
    wts: *const f32,
    w_ld: usize,
    bias: *const f32,
    y: *mut f32,
    y_ld: usize,
    nc: usize,
    flags: u32,
    lo: f32,
    hi: f32,
);

/// The input element output `(oy, ox)` reads at tap `(ky, kx)`, or None in the padding.
fn input_at(g: &DwcGeo, (oy, ox): (usize, usize), (ky, kx): (usize, usize)) -> Option<usize> {
    let iy = (oy * g.s + ky).checked_sub(g.pt).filter(|&iy| iy < g.h)?;
    let ix = (ox * g.s + kx).checked_sub(g.pl).filter(|&ix| ix < g.w)?;
    Some(iy * g.w + ix)
}

/// The portable variant (the reference of the others).
///
/// # Safety
/// As [`DwcF32Fn`].
#[allow(clippy::too_many_arguments)] // the C signature of the contract
pub unsafe extern "C" fn dwc_generic(
    x: *const f32,
    x_ld: usize,
    geo: *const DwcGeo,
    wts: *const f32,
    w_ld: usize,
    bias: *const f32,
    y: *mut f32,
    y_ld: usize,
    nc: usize,
    flags: u32,
    lo: f32,
    hi: f32,
) {
    // SAFETY: `geo` is readable.
    let g = unsafe { *geo };
    if !g.fits() || nc > DWC_CHANNELS {
        return;
    }
    for j in 0..nc {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                // SAFETY (all): channel j's bias, taps, inputs and outputs.
                let mut v = if bias.is_null() {
                    0.0
                } else {
                    unsafe { *bias.add(j) }
                };
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let xv = input_at(&g, (oy, ox), (ky, kx))
                            .map_or(0.0, |i| unsafe { *x.add(j * x_ld + i) });
                        let wv = unsafe { *wts.add(j * w_ld + ky * g.kw + kx) };
                        v = xv.mul_add(wv, v);
                    }
                }
                if flags & GEMM_CLAMP != 0 {
                    v = clamp(v, lo, hi);
                }
                if flags & GEMM_SILU != 0 {
                    v = silu(v);
                }
                if flags & GEMM_HARDSWISH != 0 {
                    v = hard_swish(v);
                }
                unsafe { *y.add(j * y_ld + oy * g.ow + ox) = v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::super::silu::x86::silu16;
    use super::super::x86::hard_swish16;
    use super::{
        DwcGeo, DWC_CHANNELS, DWC_MAX_OUT, DWC_MAX_PLANE, DWC_MAX_TAPS, DWC_MAX_WIDTH, GEMM_CLAMP,
        GEMM_HARDSWISH, GEMM_SILU,
    };
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// # Safety
    /// As [`super::DwcF32Fn`], on a CPU with AVX-512F.
    #[allow(clippy::too_many_arguments)] // the C signature of the contract
    pub(in crate::ukernel) unsafe extern "C" fn dwc_avx512(
        x: *const f32,
        x_ld: usize,
        geo: *const DwcGeo,
        wts: *const f32,
        w_ld: usize,
        bias: *const f32,
        y: *mut f32,
        y_ld: usize,
        nc: usize,
        flags: u32,
        lo: f32,
        hi: f32,
    ) {
        // SAFETY: `geo` is readable.
        let g = unsafe { *geo };
        if !g.fits() || nc > DWC_CHANNELS || nc == 0 {
            // SAFETY: the same contract.
            unsafe {
                super::dwc_generic(x, x_ld, geo, wts, w_ld, bias, y, y_ld, nc, flags, lo, hi)
            };
            return;
        }
        // SAFETY: the CPU has AVX-512F (the table holding this function exists only then).
        unsafe {
            run(
                (x, x_ld),
                &g,
                (wts, w_ld, bias),
                (y, y_ld),
                nc,
                (flags, lo, hi),
            )
        }
    }

    /// Transposes the 16 × 16 floats of `r` (row i, lane j → row j, lane i). Out of line: a
    /// call per 16 positions, three call sites.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    pub(super) fn transpose16(r: &mut [__m512; 16]) {
        // Rows 4k..4k + 3 into u[4k + m]: column 4L + m of those rows in 128-bit lane L.
        let mut u = [_mm512_setzero_ps(); 16];
        for k in 0..4 {
            let (a, b, c, d) = (r[4 * k], r[4 * k + 1], r[4 * k + 2], r[4 * k + 3]);
            let (t0, t1) = (_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
            let (t2, t3) = (_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
            u[4 * k] = _mm512_shuffle_ps::<0x44>(t0, t2);
            u[4 * k + 1] = _mm512_shuffle_ps::<0xEE>(t0, t2);
            u[4 * k + 2] = _mm512_shuffle_ps::<0x44>(t1, t3);
            u[4 * k + 3] = _mm512_shuffle_ps::<0xEE>(t1, t3);
        }
        // Column 4L + m: lane L of u[m], u[4 + m], u[8 + m], u[12 + m].
        for m in 0..4 {
            let v0 = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
            let v1 = _mm512_shuffle_f32x4::<0xDD>(u[m], u[4 + m]);
            let w0 = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
            let w1 = _mm512_shuffle_f32x4::<0xDD>(u[8 + m], u[12 + m]);
            r[m] = _mm512_shuffle_f32x4::<0x88>(v0, w0);
            r[8 + m] = _mm512_shuffle_f32x4::<0xDD>(v0, w0);
            r[4 + m] = _mm512_shuffle_f32x4::<0x88>(v1, w1);
            r[12 + m] = _mm512_shuffle_f32x4::<0xDD>(v1, w1);
        }
    }

    /// Lanes `0 .. n` (n <= 16).
    fn first(n: usize) -> __mmask16 {
        if n >= 16 {
            !0
        } else {
            (1u16 << n) - 1
        }
    }

    /// Element `at` of channel j's row at `base + j·ld`, for j < nc, as one vector per
    /// element: `count` (<= 16) elements from `at`, each channel's read with one masked load,
    /// transposed; `put(i, v)` receives element `at + i`'s vector.
    ///
    /// # Safety
    /// Channel j < nc's row is readable at `at .. at + count`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn gather_block(
        (base, ld, nc): (*const f32, usize, usize),
        (at, count): (usize, usize),
        mut put: impl FnMut(usize, __m512),
    ) {
        let mut t = [_mm512_setzero_ps(); 16];
        for (j, row) in t.iter_mut().enumerate().take(nc) {
            // SAFETY: the caller's.
            *row = unsafe { _mm512_maskz_loadu_ps(first(count), base.add(j * ld + at)) };
        }
        transpose16(&mut t);
        for (i, &v) in t.iter().enumerate().take(count) {
            put(i, v);
        }
    }

    /// The call on a geometry that fits, for channels `0 .. nc`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::type_complexity)] // the contract's operands, passed on unchanged
    unsafe fn run(
        (x, x_ld): (*const f32, usize),
        g: &DwcGeo,
        (wts, w_ld, bias): (*const f32, usize, *const f32),
        (y, y_ld): (*mut f32, usize),
        nc: usize,
        (flags, lo, hi): (u32, f32, f32),
    ) {
        let zero = _mm512_setzero_ps();
        let mask = first(nc);
        let (ph, pw) = g.padded();
        // The padded plane: position (r, c) of every channel at r·pw + c: zeros in the
        // padding, the input elsewhere (every position written before any is read).
        let mut plane = MaybeUninit::<[__m512; DWC_MAX_PLANE]>::uninit();
        let p = plane.as_mut_ptr().cast::<__m512>();
        // SAFETY (all): ph·pw <= DWC_MAX_PLANE (`fits`); the loads read channel j < nc's
        // plane and kernel.
        unsafe {
            // Input rows and columns past the plane are not read by any output.
            let (rows, cols) = (g.h.min(ph - g.pt), g.w.min(pw - g.pl));
            let zeros = |r: usize, c: std::ops::Range<usize>| {
                for c in c {
                    p.add(r * pw + c).write(zero);
                }
            };
            for r in (0..g.pt).chain(g.pt + rows..ph) {
                zeros(r, 0..pw);
            }
            for r in g.pt..g.pt + rows {
                zeros(r, 0..g.pl);
                zeros(r, g.pl + cols..pw);
            }
            // Element (iy, ix) of the flat run of input rows, kept by counting (a division
            // per element took an eighth of a stride-2 call).
            let (mut iy, mut ix) = (0, 0);
            for at in (0..rows * g.w).step_by(16) {
                let count = (rows * g.w - at).min(16);
                gather_block((x, x_ld, nc), (at, count), |_, v| {
                    if ix < cols {
                        p.add((iy + g.pt) * pw + ix + g.pl).write(v);
                    }
                    ix += 1;
                    if ix == g.w {
                        (iy, ix) = (iy + 1, 0);
                    }
                });
            }
        }
        let taps = g.kh * g.kw;
        let mut wv = MaybeUninit::<[__m512; DWC_MAX_TAPS]>::uninit();
        let w = wv.as_mut_ptr().cast::<__m512>();
        // SAFETY: taps <= DWC_MAX_TAPS; channel j < nc's taps.
        unsafe {
            for at in (0..taps).step_by(16) {
                let count = (taps - at).min(16);
                gather_block((wts, w_ld, nc), (at, count), |i, v| w.add(at + i).write(v));
            }
        }
        let b = if bias.is_null() {
            zero
        } else {
            // SAFETY: nc biases.
            unsafe { _mm512_maskz_loadu_ps(mask, bias) }
        };
        let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        // The outputs, position-major (every position written before the stores read it).
        let outs = g.oh * g.ow;
        let mut out = MaybeUninit::<[__m512; DWC_MAX_OUT]>::uninit();
        let o = out.as_mut_ptr().cast::<__m512>();
        for oy in 0..g.oh {
            let mut row = [zero; DWC_MAX_WIDTH];
            // SAFETY: the plane's rows oy·s .. oy·s + kh and the taps, written above.
            unsafe {
                let at = |r: usize| p.add((oy * g.s + r) * pw) as *const __m512;
                match g.ow {
                    4 => row[..4].copy_from_slice(&outputs::<4>(at, g, w, b)),
                    5 => row[..5].copy_from_slice(&outputs::<5>(at, g, w, b)),
                    6 => row[..6].copy_from_slice(&outputs::<6>(at, g, w, b)),
                    7 => row[..7].copy_from_slice(&outputs::<7>(at, g, w, b)),
                    _ => row.copy_from_slice(&outputs::<8>(at, g, w, b)),
                }
            }
            for (ox, &acc) in row.iter().enumerate().take(g.ow) {
                let mut v = acc;
                if flags & GEMM_CLAMP != 0 {
                    v = _mm512_min_ps(vhi, _mm512_max_ps(vlo, v));
                }
                if flags & GEMM_SILU != 0 {
                    v = silu16(v);
                }
                if flags & GEMM_HARDSWISH != 0 {
                    v = hard_swish16(v);
                }
                // SAFETY: outs <= DWC_MAX_OUT (`fits`).
                unsafe { o.add(oy * g.ow + ox).write(v) };
            }
        }
        // Transposed back, 16 positions at a time, into each channel's plane.
        for at in (0..outs).step_by(16) {
            let count = (outs - at).min(16);
            let mut t = [zero; 16];
            for (i, v) in t.iter_mut().enumerate().take(count) {
                // SAFETY: position at + i < outs, written above.
                *v = unsafe { o.add(at + i).read() };
            }
            transpose16(&mut t);
            for (j, &v) in t.iter().enumerate().take(nc) {
                // SAFETY: channel j < nc's outputs at .. at + count.
                unsafe { _mm512_mask_storeu_ps(y.add(j * y_ld + at), first(count), v) };
            }
        }
    }

    /// The `W` outputs of one row: `row(r)` is padded row `oy·s + r`; each output's chain over
    /// the taps in order, the `W` chains side by side.
    ///
    /// # Safety
    /// `row(r)` for `r < kh` holds the padded columns `0 .. (W − 1)·s + kw`; `w` holds
    /// `kh·kw` tap vectors.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn outputs<const W: usize>(
        row: impl Fn(usize) -> *const __m512,
        g: &DwcGeo,
        w: *const __m512,
        b: __m512,
    ) -> [__m512; W] {
        let mut acc = [b; W];
        for ky in 0..g.kh {
            let r = row(ky);
            for kx in 0..g.kw {
                // SAFETY: the caller's.
                unsafe {
                    let wv = *w.add(ky * g.kw + kx);
                    for (ox, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(*r.add(ox * g.s + kx), wv, *a);
                    }
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::{input_at, DwcF32Fn, DwcGeo, DWC_CHANNELS};
    use crate::rt::SplitMix;
    use crate::ukernel::{same_bits, variants, GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU};

    /// Every variant this CPU runs against the portable one, bit for bit (guards between the
    /// output planes), and the portable one against an f64 reference, over both strides,
    /// padding, every row width, partial blocks and the epilogues.
    #[test]
    fn variants_match_the_portable_kernel() {
        let mut rng = SplitMix(31);
        let kernels: Vec<(&str, DwcF32Fn)> = variants(|t| t.dwc_f32);
        // (h, w, kh, kw, s, pt, pl)
        let shapes = [
            (7usize, 7usize, 5usize, 5usize, 1usize, 2usize, 2usize),
            (7, 7, 3, 3, 1, 1, 1),
            (14, 14, 5, 5, 2, 2, 2),
            (14, 14, 3, 3, 2, 1, 1),
            (8, 8, 1, 1, 1, 0, 0),
            (5, 4, 3, 3, 1, 1, 1),
            (4, 8, 7, 7, 1, 3, 3),
            (9, 4, 3, 5, 1, 1, 2),
            (6, 6, 3, 3, 1, 0, 0),
        ];
        for (h, w, kh, kw, s, pt, pl) in shapes {
            let oh = (h + 2 * pt - kh) / s + 1;
            let ow = (w + 2 * pl - kw) / s + 1;
            let g = DwcGeo {
                h,
                w,
                oh,
                ow,
                kh,
                kw,
                s,
                pt,
                pl,
            };
            assert!(g.fits(), "{g:?}");
            for (nc, flags) in [
                (16, 0),
                (16, GEMM_CLAMP | GEMM_SILU),
                (5, GEMM_HARDSWISH),
                (1, GEMM_CLAMP),
                (16, GEMM_SILU),
            ] {
                let (x_ld, w_ld, y_ld) = (h * w + 3, kh * kw + 1, oh * ow + 2);
                let x: Vec<f32> = (0..DWC_CHANNELS * x_ld).map(|_| rng.normal()).collect();
                let wts: Vec<f32> = (0..DWC_CHANNELS * w_ld).map(|_| rng.normal()).collect();
                let bias: Vec<f32> = (0..DWC_CHANNELS).map(|_| rng.normal()).collect();
                for with_bias in [true, false] {
                    let b = if with_bias {
                        bias.as_ptr()
                    } else {
                        std::ptr::null()
                    };
                    let run = |f: DwcF32Fn| {
                        let mut y = vec![-7.25e30f32; DWC_CHANNELS * y_ld];
                        // SAFETY: nc planes of each at their strides.
                        unsafe {
                            f(
                                x.as_ptr(),
                                x_ld,
                                &g,
                                wts.as_ptr(),
                                w_ld,
                                b,
                                y.as_mut_ptr(),
                                y_ld,
                                nc,
                                flags,
                                -0.5,
                                0.75,
                            )
                        };
                        y
                    };
                    let want = run(super::dwc_generic);
                    for (e, &v) in want.iter().enumerate() {
                        let (j, i) = (e / y_ld, e % y_ld);
                        if j >= nc || i >= oh * ow {
                            assert_eq!(v, -7.25e30, "{g:?}: guard {e} written");
                            continue;
                        }
                        if flags != 0 {
                            continue;
                        }
                        let (oy, ox) = (i / ow, i % ow);
                        let mut r = if with_bias { f64::from(bias[j]) } else { 0.0 };
                        for ky in 0..kh {
                            for kx in 0..kw {
                                if let Some(at) = input_at(&g, (oy, ox), (ky, kx)) {
                                    r += f64::from(x[j * x_ld + at])
                                        * f64::from(wts[j * w_ld + ky * kw + kx]);
                                }
                            }
                        }
                        assert!((f64::from(v) - r).abs() < 1e-4, "{g:?} {e}: {v} vs {r}");
                    }
                    for (name, f) in &kernels {
                        let got = run(*f);
                        let same = same_bits(&got, &want);
                        assert!(same, "{name}: {g:?} nc {nc} flags {flags} bias {with_bias}");
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn transpose16_transposes() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let a: Vec<f32> = (0..256).map(|v| v as f32).collect();
        // SAFETY: AVX-512F is present; 16 rows of 16 floats.
        unsafe {
            let mut r: [__m512; 16] =
                std::array::from_fn(|i| _mm512_loadu_ps(a[16 * i..].as_ptr()));
            super::x86::transpose16(&mut r);
            for (j, v) in r.iter().enumerate() {
                let mut row = [0f32; 16];
                _mm512_storeu_ps(row.as_mut_ptr(), *v);
                for (i, &x) in row.iter().enumerate() {
                    assert_eq!(x, a[16 * i + j], "row {j} lane {i}");
                }
            }
        }
    }

    #[test]
    fn geometries_that_do_not_fit() {
        let g = DwcGeo {
            h: 7,
            w: 7,
            oh: 7,
            ow: 7,
            kh: 3,
            kw: 3,
            s: 1,
            pt: 1,
            pl: 1,
        };
        assert!(g.fits());
        assert!(!DwcGeo { ow: 9, w: 9, ..g }.fits());
        assert!(!DwcGeo { ow: 3, w: 3, ..g }.fits());
        assert!(!DwcGeo { s: 3, ..g }.fits());
        assert!(!DwcGeo { oh: 10, h: 10, ..g }.fits());
        assert!(!DwcGeo { kh: 9, kw: 9, ..g }.fits());
        assert!(!DwcGeo { pt: 3, ..g }.fits());
    }
}
