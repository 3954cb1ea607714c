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
/// Widest output rows (their positions are the vector variant's independent FMA chains).
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

    /// Whether calls take this geometry: stride 1 or 2, output rows of 1 to
    /// [`DWC_MAX_WIDTH`], at most [`DWC_MAX_OUT`] outputs, [`DWC_MAX_TAPS`] taps and
    /// [`DWC_MAX_PLANE`] padded positions, and the padding inside the kernel.
    pub fn fits(&self) -> bool {
        let (ph, pw) = self.padded();
        matches!(self.s, 1 | 2)
            && (1..=DWC_MAX_WIDTH).contains(&self.ow)
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
        // Gather and scatter offsets are 32-bit: planes further apart take the portable loop.
        let far = [x_ld, w_ld, y_ld]
            .iter()
            .any(|&ld| ld.saturating_mul(DWC_CHANNELS) > i32::MAX as usize);
        if !g.fits() || nc > DWC_CHANNELS || nc == 0 || far {
            // SAFETY: the same contract.
            unsafe {
                super::dwc_generic(x, x_ld, geo, wts, w_ld, bias, y, y_ld, nc, flags, lo, hi)
            };
            return;
        }
        let mask = if nc == DWC_CHANNELS {
            !0
        } else {
            (1u16 << nc) - 1
        };
        // SAFETY: the CPU has AVX-512F (the table holding this function exists only then);
        // the contract's channels are the mask's lanes.
        unsafe {
            run(
                (x, x_ld),
                &g,
                (wts, w_ld, bias),
                (y, y_ld),
                mask,
                (flags, lo, hi),
            )
        }
    }

    /// Lane j: `j · ld` (the element offset of channel j's plane).
    #[target_feature(enable = "avx512f")]
    fn lanes_at(ld: usize) -> __m512i {
        let j = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        _mm512_mullo_epi32(j, _mm512_set1_epi32(ld as i32))
    }

    /// The call on a geometry that fits, for the channels of `mask`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::type_complexity)] // the contract's operands, passed on unchanged
    unsafe fn run(
        (x, x_ld): (*const f32, usize),
        g: &DwcGeo,
        (wts, w_ld, bias): (*const f32, usize, *const f32),
        (y, y_ld): (*mut f32, usize),
        mask: __mmask16,
        (flags, lo, hi): (u32, f32, f32),
    ) {
        let zero = _mm512_setzero_ps();
        let (ph, pw) = g.padded();
        // The padded plane: position (r, c) of every channel at r·pw + c, zero outside the
        // input (written before it is read: the zeros, then the input over them).
        let mut plane = MaybeUninit::<[__m512; DWC_MAX_PLANE]>::uninit();
        let p = plane.as_mut_ptr().cast::<__m512>();
        let xi = lanes_at(x_ld);
        // SAFETY (all): ph·pw <= DWC_MAX_PLANE (`fits`); the gathers read channel j < nc's
        // input element (masked lanes are not read); the weights likewise.
        unsafe {
            for i in 0..ph * pw {
                p.add(i).write(zero);
            }
            for iy in 0..g.h.min(ph - g.pt) {
                for ix in 0..g.w.min(pw - g.pl) {
                    let v = _mm512_mask_i32gather_ps::<4>(zero, mask, xi, x.add(iy * g.w + ix));
                    p.add((iy + g.pt) * pw + ix + g.pl).write(v);
                }
            }
        }
        let taps = g.kh * g.kw;
        let mut wv = MaybeUninit::<[__m512; DWC_MAX_TAPS]>::uninit();
        let w = wv.as_mut_ptr().cast::<__m512>();
        let wi = lanes_at(w_ld);
        // SAFETY: taps <= DWC_MAX_TAPS; tap t of channel j < nc.
        unsafe {
            for t in 0..taps {
                w.add(t)
                    .write(_mm512_mask_i32gather_ps::<4>(zero, mask, wi, wts.add(t)));
            }
        }
        let b = if bias.is_null() {
            zero
        } else {
            // SAFETY: nc biases.
            unsafe { _mm512_maskz_loadu_ps(mask, bias) }
        };
        let yi = lanes_at(y_ld);
        let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        debug_assert!(g.oh * g.ow <= DWC_MAX_OUT);
        for oy in 0..g.oh {
            let mut row = [zero; DWC_MAX_WIDTH];
            // SAFETY: the plane's rows oy·s .. oy·s + kh and the taps, written above.
            unsafe {
                let at = |r: usize| p.add((oy * g.s + r) * pw) as *const __m512;
                match g.ow {
                    1 => row[..1].copy_from_slice(&outputs::<1>(at, g, w, b)),
                    2 => row[..2].copy_from_slice(&outputs::<2>(at, g, w, b)),
                    3 => row[..3].copy_from_slice(&outputs::<3>(at, g, w, b)),
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
                // SAFETY: output (oy, ox) of channel j < nc.
                unsafe { _mm512_mask_i32scatter_ps::<4>(y.add(oy * g.ow + ox), mask, yi, v) };
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
    use crate::ukernel::{table, Isa, GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU};

    /// Every variant this CPU runs against the portable one, bit for bit (guards between the
    /// output planes), and the portable one against an f64 reference, over both strides,
    /// padding, every row width, partial blocks and the epilogues.
    #[test]
    fn variants_match_the_portable_kernel() {
        let mut rng = SplitMix(31);
        let kernels: Vec<(&str, DwcF32Fn)> = Isa::ALL
            .into_iter()
            .filter_map(table)
            .filter_map(|t| t.dwc_f32.map(|f| (t.isa.name(), f)))
            .collect();
        // (h, w, kh, kw, s, pt, pl)
        let shapes = [
            (7usize, 7usize, 5usize, 5usize, 1usize, 2usize, 2usize),
            (7, 7, 3, 3, 1, 1, 1),
            (14, 14, 5, 5, 2, 2, 2),
            (14, 14, 3, 3, 2, 1, 1),
            (8, 8, 1, 1, 1, 0, 0),
            (5, 3, 3, 3, 1, 1, 1),
            (4, 8, 7, 7, 1, 3, 3),
            (9, 2, 3, 5, 1, 1, 2),
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
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{name}: {g:?} nc {nc} flags {flags} bias {with_bias}");
                    }
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
        assert!(!DwcGeo { s: 3, ..g }.fits());
        assert!(!DwcGeo { oh: 10, h: 10, ..g }.fits());
        assert!(!DwcGeo { kh: 9, kw: 9, ..g }.fits());
        assert!(!DwcGeo { pt: 3, ..g }.fits());
    }
}
