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
//! the same bits. The flags are [`super::GEMM_CLAMP`] and [`super::GEMM_SILU`] (others are
//! ignored); the clamp propagates NaN as the GEMM tile's does. Nothing outside `y`'s `oh × ow`
//! elements is written, nothing outside `x`'s plane and the kernel is read. Reentrant, no
//! allocation, no global state; the AVX-512 variant uses 32 KB of stack.
//!
//! # The AVX-512 variant
//! Unaligned 16-float loads at every tap split a cache line each, and masked edge vectors
//! cost as much as interior ones: a kernel built that way ran a 112×112 plane at about 15
//! cycles per output vector, three times its FMA bound. This one copies each input row once
//! into a zero-padded row of a ring on the stack (at stride 2 split into its even and odd
//! columns), so that tap `kx` of output vector `v` is the aligned block `v` of phase `kx mod
//! s`, shifted left by `kx div s` lanes with the next block (one `valignd`). Output rows go
//! in bands of four: the band's input rows are read once per vector and each shifted block
//! feeds every output row that uses it. MobileNetV2's 56-wide stride-1 layer, one thread:
//! 0.222 → 0.129 ms; its 112 → 56 stride-2 layer 0.30 → 0.21 ms. Kernels other than 3×3,
//! 5×5 and 7×7, 7×7 at stride 2 (no known network has one; its vector code, 14 KB, kept the
//! runtime over its size limit), unequal strides, and rows too wide for the ring (about 2,700
//! floats at 3×3) take the portable loop; [`vector_shape`] tells the compiler which shapes those are, and it
//! keeps its own 4-lane code for them.

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
    // Output 4g + j reads column base + sx·j; j0 is the first j whose column is not left of
    // the row (constant time: the AVX-512 variant asks this for every tap of its edge vectors).
    let lanes = ow.saturating_sub(4 * g).min(4);
    let base = (4 * g * sx + kx) as isize - pl as isize;
    let j0 = if base < 0 {
        base.unsigned_abs().div_ceil(sx)
    } else {
        0
    };
    j0 < lanes && base + ((sx * j0) as isize) < w as isize
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

/// Output rows the AVX-512 variant computes together: their vectors are independent FMA
/// chains, and they share each input row's shifted blocks. A caller that cuts a plane into
/// bands of rows (one call each) keeps them multiples of this: the rows left over run one by
/// one, at up to twice the cost a row.
pub const BAND: usize = 4;
/// Most edge vectors (a store or a column group crossing a row's end) the AVX-512 variant holds
/// masks for.
const MAX_EDGES: usize = 8;
/// Floats of the AVX-512 variant's ring of padded input rows (32 KB on the stack, within L1):
/// 3×3 kernels take rows up to about 2,700 wide, larger kernels fewer.
const RING: usize = 8 * 1024;

/// The lanes of the 16-output vector from output `x0` whose 4-column group uses tap column `kx`
/// ([`group_uses`]); `geo` = (stride, left padding, input row width, output row width).
fn uses_lanes(kx: usize, geo: (usize, usize, usize, usize), x0: usize) -> u16 {
    (0..4).fold(0u16, |acc, g| {
        if group_uses(x0 / 4 + g, kx, geo) {
            acc | (0xf << (4 * g))
        } else {
            acc
        }
    })
}

/// How the AVX-512 variant lays out a plane: padded rows of `len` floats per phase, `slots`
/// of them in its ring, the interior output vectors (the others are edge vectors).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Layout {
    len: usize,
    slots: usize,
    interior: std::ops::Range<usize>,
}

impl Layout {
    /// The layout of a plane of rows `w` wide (`ow` outputs per row, left padding `pl`) for a
    /// `kh × kw` kernel at strides `(sy, sx)`; None when the AVX-512 variant leaves it to the
    /// portable loop: kernels other than 3×3, 5×5 and 7×7 (at stride 1), unequal strides, rows too wide
    /// for the ring even in a band of one row, more than [`MAX_EDGES`] edge vectors, rows
    /// narrower than 2.
    fn of(
        (kh, kw, sy, sx): (usize, usize, usize, usize),
        w: usize,
        pl: usize,
        ow: usize,
    ) -> Option<Layout> {
        let s = sx;
        if kh != kw || !matches!((kw, s), (3 | 5, 1 | 2) | (7, 1)) || sy != sx || w < 2 {
            return None;
        }
        let vecs = ow.div_ceil(16);
        // Padded column c + pl holds input column c; output vector v's tap kx reads phase
        // kx mod s at blocks v and v + 1 (shifted by kx div s).
        let copied = if s == 1 {
            pl + 16 * w.div_ceil(16)
        } else {
            pl.div_ceil(2) + 16 * w.div_ceil(32)
        };
        let len = (16 * (vecs + 1)).max(copied).checked_next_multiple_of(16)?;
        // The input rows a band of r output rows reads.
        let reads = |r: usize| (r - 1) * s + kh;
        let fits = |r: usize| reads(r).checked_mul(s * len).is_some_and(|f| f <= RING);
        let slots = [BAND, 1].into_iter().find(|&r| fits(r)).map(reads)?;
        // Edge vectors sit at the ends of a row (the column groups' first and last input
        // columns grow with the vector, and a row of w ≥ 2 holds a column between them), so
        // the interior ones are the run [a, b).
        let interior = |v: usize| {
            16 * v + 16 <= ow && (0..kw).all(|kx| uses_lanes(kx, (s, pl, w, ow), 16 * v) == !0)
        };
        let a = (0..vecs)
            .take(MAX_EDGES + 1)
            .find(|&v| interior(v))
            .unwrap_or(vecs);
        let b = (a..vecs)
            .rev()
            .take(MAX_EDGES + 1)
            .find(|&v| interior(v))
            .map_or(a, |v| v + 1);
        (a + (vecs - b) <= MAX_EDGES).then_some(Layout {
            len,
            slots,
            interior: a..b,
        })
    }
}

/// Whether the AVX-512 variant computes this plane with its vector code rather than the
/// portable loop (see [`Layout::of`]); the compiler calls the micro-kernel only then, and keeps
/// its own 4-lane code for the other shapes. Arguments: the kernel's `(kh, kw)`, the strides
/// `(sy, sx)`, the input row width `w`, the left padding `pl` and the output row width `ow`.
pub fn vector_shape(k: (usize, usize), s: (usize, usize), w: usize, pl: usize, ow: usize) -> bool {
    Layout::of((k.0, k.1, s.0, s.1), w, pl, ow).is_some()
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::super::silu::x86::silu16;
    use super::{uses_lanes, Layout, BAND, GEMM_CLAMP, GEMM_SILU, MAX_EDGES, RING};
    use std::arch::x86_64::*;

    /// Most input rows a band reads: 4 output rows of a 5×5 kernel at stride 2 (a 7×7 one at
    /// stride 1 reads 10).
    const MAX_READS: usize = (BAND - 1) * 2 + 5;

    /// The ring's storage, aligned so that every 16-float block of a padded row is one cache
    /// line.
    #[repr(C, align(64))]
    struct Ring([f32; RING]);

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
        // SAFETY: the same contract; only reachable when the CPU has AVX-512F. Kernels other
        // than 3×3, 5×5 and 7×7 (at stride 1) and unequal strides (rare in depthwise layers)
        // take the portable loop.
        let done = unsafe {
            match (kh, kw, sy, sx) {
                (3, 3, 1, 1) => rows::<3, 3, 1>(&p, &o),
                (3, 3, 2, 2) => rows::<3, 3, 2>(&p, &o),
                (5, 5, 1, 1) => rows::<5, 5, 1>(&p, &o),
                (5, 5, 2, 2) => rows::<5, 5, 2>(&p, &o),
                (7, 7, 1, 1) => rows::<7, 7, 1>(&p, &o),
                _ => false,
            }
        };
        if !done {
            // SAFETY: the same contract.
            unsafe {
                super::dw_generic(
                    x, h, w, wts, kh, kw, sy, sx, pt, pl, y, oh, ow, bias, flags, lo, hi,
                )
            };
        }
    }

    /// The input side of a call (the kernel's size and the stride are type parameters).
    struct Plane {
        x: *const f32,
        h: usize,
        w: usize,
        wts: *const f32,
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

    /// Bits `j` of a 16-lane mask for which `0 <= c + j < w`.
    pub(in crate::ukernel) fn valid(c: isize, w: usize) -> __mmask16 {
        let lo = (-c).clamp(0, 16);
        let hi = (w as isize - c).clamp(0, 16);
        if hi <= lo {
            return 0;
        }
        let upto = |n: isize| if n >= 16 { !0u16 } else { (1u16 << n) - 1 };
        upto(hi) & !upto(lo)
    }

    /// An output vector's masks: per tap column, the lanes whose column group uses the tap;
    /// the lanes it stores. An interior vector's are all ones.
    #[derive(Clone, Copy)]
    struct Masks<const KW: usize> {
        uses: [__mmask16; KW],
        store: __mmask16,
    }

    impl<const KW: usize> Masks<KW> {
        fn of<const S: usize>(p: &Plane, o: &Out, x0: usize) -> Masks<KW> {
            let geo = (S, p.pl, p.w, o.ow);
            Masks {
                uses: std::array::from_fn(|kx| uses_lanes(kx, geo, x0)),
                store: valid(x0 as isize, o.ow),
            }
        }
    }

    /// Output rows in bands of [`BAND`] (then one by one), each band from a ring of the input
    /// rows it reads, each copied once per call into a zero-padded row (`S` phases of `len`
    /// floats: at stride 2 the even padded columns, then the odd ones). Every tap of an output
    /// vector is then one aligned block, or two shifted together, with no masked loads and no
    /// split cache lines, and a band's output rows share each input row's shifted blocks. The
    /// edge vectors (some column group skipping a tap, or a partial store) take their masks,
    /// computed once per call. Returns false, writing nothing, when even a band of one row
    /// overflows the ring or the edges overflow their list.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const KH: usize, const KW: usize, const S: usize>(p: &Plane, o: &Out) -> bool {
        let Some(Layout {
            len,
            slots,
            interior,
        }) = Layout::of((KH, KW, S, S), p.w, p.pl, o.ow)
        else {
            return false;
        };
        let (vecs, a, b) = (o.ow.div_ceil(16), interior.start, interior.end);
        let masks = |v: usize| Masks::<KW>::of::<S>(p, o, 16 * v);
        let mut edges = [Masks {
            uses: [0; KW],
            store: 0,
        }; MAX_EDGES];
        for (e, v) in edges.iter_mut().zip((0..a).chain(b..vecs)) {
            *e = masks(v);
        }
        let mut ring = std::mem::MaybeUninit::<Ring>::uninit();
        let r = Rows {
            ring: ring.as_mut_ptr().cast::<f32>(),
            slots,
            len,
            vecs,
            interior,
            edges,
        };
        // SAFETY: the slots used, inside the ring (checked above).
        unsafe { r.ring.write_bytes(0, slots * S * len) };
        let mut copied = 0;
        let mut oy = 0;
        while oy < o.oh {
            // SAFETY: the ring holds `slots` padded rows; a band reads at most that many.
            unsafe {
                if slots == (BAND - 1) * S + KH && oy + BAND <= o.oh {
                    band::<BAND, KH, KW, S>(p, o, &r, &mut copied, oy);
                    oy += BAND;
                } else {
                    band::<1, KH, KW, S>(p, o, &r, &mut copied, oy);
                    oy += 1;
                }
            }
        }
        true
    }

    /// The padded input rows of a call and its vectors' masks.
    struct Rows<const KW: usize> {
        /// `slots` padded rows of `S · len` floats: input row `iy` in slot `iy mod slots`.
        ring: *mut f32,
        slots: usize,
        len: usize,
        vecs: usize,
        /// The interior vectors; the others' masks are `edges`, in order.
        interior: std::ops::Range<usize>,
        edges: [Masks<KW>; MAX_EDGES],
    }

    /// Output rows `oy .. oy + R`: copies the input rows they read that are not in the ring
    /// yet (in order: the rows a band reads are consecutive, so they sit in distinct slots),
    /// then every vector of the band.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn band<const R: usize, const KH: usize, const KW: usize, const S: usize>(
        p: &Plane,
        o: &Out,
        r: &Rows<KW>,
        copied: &mut usize,
        oy: usize,
    ) {
        let row_floats = S * r.len;
        let mut rows = [None; MAX_READS];
        for (i, slot) in rows.iter_mut().enumerate().take((R - 1) * S + KH) {
            let Some(iy) = (oy * S + i).checked_sub(p.pt).filter(|&iy| iy < p.h) else {
                continue;
            };
            for c in *copied..=iy {
                let at = r.ring.wrapping_add((c % r.slots) * row_floats);
                // SAFETY: an input row; a slot of the ring.
                unsafe { copy_row::<S>(p.x.wrapping_add(c * p.w), p.w, p.pl, at, r.len) };
            }
            *copied = (*copied).max(iy + 1);
            *slot = Some(
                r.ring
                    .wrapping_add((iy % r.slots) * row_floats)
                    .cast_const(),
            );
        }
        let outs: [*mut f32; R] = std::array::from_fn(|i| o.y.wrapping_add((oy + i) * o.ow));
        let full = Masks::<KW> {
            uses: [!0; KW],
            store: !0,
        };
        let left = r.interior.start;
        for v in 0..r.vecs {
            // SAFETY: the rows hold every block the vector reads; the stores are its lanes
            // inside the output rows.
            unsafe {
                if r.interior.contains(&v) {
                    vector::<R, KH, KW, S, false>(p, o, &rows, r.len, &outs, v, &full);
                } else {
                    let e = if v < left {
                        v
                    } else {
                        left + v - r.interior.end
                    };
                    vector::<R, KH, KW, S, true>(p, o, &rows, r.len, &outs, v, &r.edges[e]);
                }
            }
        }
    }

    /// Copies input row `x` (`w` floats) into a ring slot: padded column `c + pl` of phase
    /// `(c + pl) mod SX` at index `(c + pl) div SX`. The slot was zeroed once; the copy writes
    /// zeros past the row's end, inside the slot's `len` floats per phase.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn copy_row<const SX: usize>(
        x: *const f32,
        w: usize,
        pl: usize,
        slot: *mut f32,
        len: usize,
    ) {
        // SAFETY (every access): loads masked to the row, stores inside the slot (`len` covers
        // the copied blocks).
        unsafe {
            if SX == 1 {
                let whole = w / 16;
                for t in 0..whole {
                    _mm512_storeu_ps(slot.add(pl + 16 * t), _mm512_loadu_ps(x.add(16 * t)));
                }
                if !w.is_multiple_of(16) {
                    let c = 16 * whole;
                    let v = _mm512_maskz_loadu_ps(valid(c as isize, w), x.add(c));
                    _mm512_storeu_ps(slot.add(pl + c), v);
                }
            } else {
                let evens =
                    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                let odds =
                    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                // Input column 2j + q goes to phase (q + pl) mod 2 at index j + (q + pl) div 2.
                let even_at = slot.add((pl % 2) * len + pl / 2);
                let odd_at = slot.add(((pl + 1) % 2) * len + pl.div_ceil(2));
                let pair = |t: usize, a0: __m512, a1: __m512| {
                    _mm512_storeu_ps(even_at.add(16 * t), _mm512_permutex2var_ps(a0, evens, a1));
                    _mm512_storeu_ps(odd_at.add(16 * t), _mm512_permutex2var_ps(a0, odds, a1));
                };
                let whole = w / 32;
                for t in 0..whole {
                    pair(
                        t,
                        _mm512_loadu_ps(x.add(32 * t)),
                        _mm512_loadu_ps(x.add(32 * t + 16)),
                    );
                }
                if !w.is_multiple_of(32) {
                    let c = 32 * whole;
                    let a0 = _mm512_maskz_loadu_ps(valid(c as isize, w), x.add(c));
                    let a1 = _mm512_maskz_loadu_ps(valid((c + 16) as isize, w), x.add(c + 16));
                    pair(whole, a0, a1);
                }
            }
        }
    }

    /// Lanes `s .. s + 16` of the concatenation `lo ++ hi` (`s` < 16, known after unrolling).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn shifted(lo: __m512, hi: __m512, s: usize) -> __m512 {
        let (l, h) = (_mm512_castps_si512(lo), _mm512_castps_si512(hi));
        _mm512_castsi512_ps(match s {
            0 => l,
            1 => _mm512_alignr_epi32::<1>(h, l),
            2 => _mm512_alignr_epi32::<2>(h, l),
            3 => _mm512_alignr_epi32::<3>(h, l),
            4 => _mm512_alignr_epi32::<4>(h, l),
            5 => _mm512_alignr_epi32::<5>(h, l),
            _ => _mm512_alignr_epi32::<6>(h, l),
        })
    }

    /// Output vector `v` of rows `outs`. Each sum is the contract's: chain `ky mod 3` takes
    /// kernel row `ky`'s taps in turn (`MASKED`: only in the lanes whose column group uses the
    /// tap), then `(c₀ + c₁) + c₂` and the epilogue. Input row `i` of the band is kernel row
    /// `i − S·j` of output row `j`: the rows go in order, so each chain keeps its order.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)] // one band's state, passed down unchanged
    unsafe fn vector<
        const R: usize,
        const KH: usize,
        const KW: usize,
        const S: usize,
        const MASKED: bool,
    >(
        p: &Plane,
        o: &Out,
        rows: &[Option<*const f32>; MAX_READS],
        len: usize,
        outs: &[*mut f32; R],
        v: usize,
        m: &Masks<KW>,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 3]; R];
        for a in &mut acc {
            a[0] = _mm512_set1_ps(o.bias);
        }
        for (i, row) in rows.iter().enumerate().take((R - 1) * S + KH) {
            let Some(row) = *row else {
                continue;
            };
            for kx in 0..KW {
                let at = row.wrapping_add((kx % S) * len + 16 * v);
                // SAFETY: blocks v and v + 1 are inside the slot (`len` ≥ 16·(vecs + 1)) and
                // aligned.
                let xin = unsafe {
                    let cur = _mm512_load_ps(at);
                    if kx / S == 0 {
                        cur
                    } else {
                        shifted(cur, _mm512_load_ps(at.add(16)), kx / S)
                    }
                };
                for (j, a) in acc.iter_mut().enumerate() {
                    let Some(ky) = i.checked_sub(S * j).filter(|&ky| ky < KH) else {
                        continue;
                    };
                    // SAFETY: a tap of the kernel.
                    let wv = _mm512_set1_ps(unsafe { *p.wts.add(ky * KW + kx) });
                    let c = &mut a[ky % 3];
                    *c = if MASKED {
                        _mm512_mask3_fmadd_ps(xin, wv, *c, m.uses[kx])
                    } else {
                        _mm512_fmadd_ps(xin, wv, *c)
                    };
                }
            }
        }
        for (a, out) in acc.iter().zip(outs) {
            let mut s = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), a[2]);
            if o.flags & GEMM_CLAMP != 0 {
                s = _mm512_min_ps(_mm512_set1_ps(o.hi), _mm512_max_ps(_mm512_set1_ps(o.lo), s));
            }
            if o.flags & GEMM_SILU != 0 {
                s = silu16(s);
            }
            // SAFETY: the vector's lanes inside the output row (`m.store`).
            unsafe { _mm512_mask_storeu_ps(out.wrapping_add(16 * v), m.store, s) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DwF32Fn;
    use crate::rt::SplitMix;
    use crate::ukernel::{same_bits, variants, GEMM_CLAMP, GEMM_SILU, GEMM_STREAM};

    /// The shapes the AVX-512 variant takes with its vector code (the compiler asks before it
    /// calls the kernel).
    #[test]
    fn vector_shapes() {
        use super::vector_shape;
        assert!(vector_shape((3, 3), (1, 1), 112, 1, 112));
        assert!(vector_shape((3, 3), (2, 2), 112, 1, 56));
        assert!(vector_shape((7, 7), (1, 1), 1000, 3, 1000));
        assert!(!vector_shape((7, 7), (2, 2), 1000, 3, 500));
        // Other kernels and strides, rows too wide for the ring, rows of one column.
        assert!(!vector_shape((3, 5), (1, 1), 112, 1, 110));
        assert!(!vector_shape((9, 9), (1, 1), 112, 4, 112));
        assert!(!vector_shape((3, 3), (1, 2), 112, 1, 56));
        assert!(!vector_shape((3, 3), (1, 1), 3000, 1, 3000));
        assert!(!vector_shape((3, 3), (1, 1), 1, 1, 1));
    }

    /// The constant-time `group_uses` against its definition: some output of the group below
    /// `ow` reads a column inside the row.
    #[test]
    fn group_uses_matches_its_definition() {
        for (sx, pl, w, ow, kx) in grid() {
            for g in 0..ow.div_ceil(4) + 1 {
                let want = (4 * g..(4 * g + 4).min(ow))
                    .any(|ox| (ox * sx + kx).checked_sub(pl).is_some_and(|ix| ix < w));
                assert_eq!(
                    super::group_uses(g, kx, (sx, pl, w, ow)),
                    want,
                    "{g} {kx} {sx} {pl} {w} {ow}"
                );
            }
        }
    }

    /// Strides 1 and 2, pads 0 to 5, rows 1 to 12 wide, 1 to 13 outputs, taps 0 to 7.
    fn grid() -> impl Iterator<Item = (usize, usize, usize, usize, usize)> {
        (1..=2).flat_map(|sx| {
            (0..6).flat_map(move |pl| {
                (1..13).flat_map(move |w| {
                    (1..14).flat_map(move |ow| (0..8).map(move |kx| (sx, pl, w, ow, kx)))
                })
            })
        })
    }

    /// Every variant this CPU runs against the portable one, bit for bit (guards around the
    /// output), and the portable one against an f64 reference, over strides, pads, kernel
    /// sizes, widths around the vector groups, and each epilogue.
    #[test]
    fn variants_match_the_portable_kernel() {
        let mut rng = SplitMix(11);
        let kernels: Vec<(&str, DwF32Fn)> = variants(|t| t.dw_f32);
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
            // Bands of rows and a remainder; the right edge skipping a tap (ow ≡ 1 mod 4).
            (14, 113, 3, 3, 1, 1),
            (11, 57, 7, 7, 2, 3),
            (21, 64, 5, 5, 1, 2),
            // Rows too wide for the AVX-512 variant's ring: the portable loop.
            (5, 3000, 3, 3, 1, 1),
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
                    let same = same_bits(&got, &want);
                    assert!(same, "{name}: {h}x{w} k{kh}x{kw} s{s} p{pad} flags {flags}");
                }
            }
        }
    }
}
