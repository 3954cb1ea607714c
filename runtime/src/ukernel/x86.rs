//! The x86-64 GEMM tiles of [`super`]'s contract in `std::arch`: AVX-512F and AVX2 + FMA.
//!
//! AVX-512 holds the whole 8 × 32 tile in registers: 16 zmm accumulators (8 rows × two
//! 16-lane vectors), two B loads and eight broadcast FMAs per reduction step (16 FMAs against
//! 10 loads, enough independent chains to cover the FMA latency on two ports). Edge columns
//! use masked loads and stores (masked-out lanes are neither read nor written, without fault).
//! A tile of at most 16 columns runs one column vector, half the FMAs (the last tile of a
//! 14×14 map has 4 columns; each output element sees the same FMAs in the same order).
//!
//! AVX2 has only 16 ymm registers, so it covers the tile in four 4 × 16 passes (8
//! accumulators, two B loads, four broadcasts per step); passes wholly outside `m × n` are
//! skipped, partial column groups use `vmaskmovps`. Only the passes over rows 0..4 prefetch:
//! those over rows 4..8 read the same A lines and B rows right after them.
//!
//! Both prefetch A 4 KiB ahead (the panels of large layers stream from L3 or memory, one
//! row per step) and, when B is read in place (`ldb != N0`: an NCHW input whose rows are a
//! plane apart, beyond the hardware prefetchers, which stay within a page), B's row eight
//! steps ahead. Both also prefetch for writing the C tile `N0` columns on, the
//! one its caller stores next in these rows: a large output written once (a 1×1 conv with a
//! short reduction over 112×112) otherwise waits for each line's ownership at the store
//! (MobileNetV3's 16→64 1×1 conv over 112×112: 1.1 → 0.75 ms, medians of six interleaved
//! runs). The AVX-512 tile also streams the caller's `side` hint into L2 over its steps
//! ([`Side`]; the AVX2 tile ignores it). Prefetches are hints: past the end of a buffer they
//! neither fault nor read.
//!
//! The functions (and the SiLU, mixing, depthwise, matrix-vector and in-place convolution
//! variants of [`super::silu`], [`super::mix`], [`super::dw`], [`super::gemv`] and
//! [`super::taps`]) are only reachable through
//! [`avx512_table`]/[`avx2_table`], which check the CPU features first.

use super::silu::x86::{silu16, silu8};
use super::{
    Isa, UkernelTable, GEMM_ACCUMULATE, GEMM_CLAMP, GEMM_F32_M0, GEMM_F32_N0, GEMM_HARDSWISH,
    GEMM_SIDE_FAST, GEMM_SILU, GEMM_STREAM, SIDE_LINES_PER_STEP,
};
use std::arch::x86_64::*;

const M0: usize = GEMM_F32_M0;
const N0: usize = GEMM_F32_N0;
/// Floats of A prefetched ahead of the current step's row (4 KiB: 128 steps, about the
/// latency of memory at a step's 8 cycles; 1 KiB left resnet18 5 % slower, 8 KiB no faster).
pub(super) const A_AHEAD: usize = 1024;
/// Steps ahead whose B row is prefetched when B is read in place.
const B_AHEAD: usize = 8;

/// Prefetches for writing the `m` rows of the C tile that follows this one (`N0` columns on):
/// callers walk a row of tiles along the positions, so its lines, which a large output has
/// out of cache, are owned by the time that tile is stored.
#[inline(always)]
pub(super) fn prefetch_next_tile(c: *mut f32, ldc: usize, m: usize) {
    for i in 0..m {
        let row = c.wrapping_add(i * ldc + N0);
        // SAFETY: prefetches never fault, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_ET0>(row.cast());
            _mm_prefetch::<_MM_HINT_ET0>(row.wrapping_add(16).cast());
        }
    }
}

/// Prefetches for one reduction step whose A row is at `ap` and B row at `bp`: A's row
/// [`A_AHEAD`] floats on; when `strided`, the first and last of the `cols` floats of B's
/// row [`B_AHEAD`] steps on; when `next` ([`GEMM_STREAM`] on a strided B), this row's `N0`
/// columns of the next tile, which its caller runs next along the positions.
#[inline(always)]
fn prefetch_step(
    ap: *const f32,
    bp: *const f32,
    ldb: usize,
    cols: usize,
    (strided, next): (bool, bool),
) {
    // SAFETY: prefetches never fault, whatever the address.
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(A_AHEAD).cast());
        if strided {
            let row = bp.wrapping_add(B_AHEAD * ldb);
            _mm_prefetch::<_MM_HINT_T0>(row.cast());
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(cols - 1).cast());
        }
        if next {
            let row = bp.wrapping_add(N0);
            _mm_prefetch::<_MM_HINT_T0>(row.cast());
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(N0 - 1).cast());
        }
    }
}

/// The rest of a tile call's `side` hint ([`super`]'s contract): the next line to prefetch,
/// the end of the stream, and the lines each step prefetches.
#[derive(Clone, Copy)]
pub(super) struct Side {
    at: *const u8,
    end: *const u8,
    lines: usize,
}

impl Side {
    /// `len` floats at `p` (none when null), one line a step, or [`SIDE_LINES_PER_STEP`] with
    /// [`GEMM_SIDE_FAST`] in `flags`.
    pub(super) fn new(p: *const f32, len: usize, flags: u32) -> Side {
        let at = p.cast::<u8>();
        let len = if p.is_null() { 0 } else { len * 4 };
        Side {
            at,
            end: at.wrapping_add(len),
            lines: if flags & GEMM_SIDE_FAST != 0 {
                SIDE_LINES_PER_STEP
            } else {
                1
            },
        }
    }

    /// Part `index` of the stream cut into parts of `steps` reduction steps each (a call that
    /// runs several tiles gives each the part its steps prefetch).
    pub(super) fn part(self, index: usize, steps: usize) -> Side {
        let skip = index.saturating_mul(steps).saturating_mul(64 * self.lines);
        let left = (self.end as usize).saturating_sub(self.at as usize);
        Side {
            at: self.at.wrapping_add(skip.min(left)),
            ..self
        }
    }

    /// The stream at `factor` times the lines a step (a tile of the rows of several parts'
    /// tiles, at most two).
    pub(super) fn times(self, factor: usize) -> Side {
        Side {
            lines: self.lines * factor,
            ..self
        }
    }

    /// One reduction step's share: its lines into L2, while any are left.
    #[inline(always)]
    pub(super) fn step(&mut self) {
        if self.at < self.end {
            for i in 0..2 * SIDE_LINES_PER_STEP {
                if i < self.lines {
                    // SAFETY: prefetches never fault, whatever the address.
                    unsafe { _mm_prefetch::<_MM_HINT_T1>(self.at.wrapping_add(64 * i).cast()) };
                }
            }
            self.at = self.at.wrapping_add(64 * self.lines);
        }
    }

    /// The next line, the stream's end and the bytes a step prefetches, for a loop that
    /// streams it itself ([`Side::step`]'s lines).
    pub(super) fn raw(&self) -> (*const u8, *const u8, usize) {
        (self.at, self.end, 64 * self.lines)
    }

    /// Whether nothing is left to prefetch.
    pub(super) fn is_empty(&self) -> bool {
        self.at >= self.end
    }

    /// Bytes not yet prefetched.
    #[cfg(test)]
    pub(super) fn left(&self) -> usize {
        (self.end as usize).saturating_sub(self.at as usize)
    }
}

static AVX512: UkernelTable = UkernelTable {
    gemm_f32: gemm_f32_avx512,
    gemm_f32_m0: M0,
    gemm_f32_n0: N0,
    isa: Isa::Avx512,
    silu_f32: super::silu::x86::silu_avx512,
    mix_f32: super::mix::x86::mix_avx512,
    dw_f32: Some(super::dw::x86::dw_avx512),
    dwp_f32: Some(super::dwp::x86::dwp_avx512),
    dwc_f32: Some(super::dwc::x86::dwc_avx512),
    gemv_f32: Some(super::gemv::x86::gemv_avx512),
    taps_f32: Some(super::taps::x86::taps_avx512),
};

static AVX2: UkernelTable = UkernelTable {
    gemm_f32: gemm_f32_avx2,
    gemm_f32_m0: M0,
    gemm_f32_n0: N0,
    isa: Isa::Avx2,
    silu_f32: super::silu::x86::silu_avx2,
    mix_f32: super::mix::x86::mix_avx2,
    dw_f32: None,
    dwp_f32: None,
    dwc_f32: None,
    gemv_f32: None,
    taps_f32: None,
};

pub(super) fn avx512_table() -> Option<&'static UkernelTable> {
    is_x86_feature_detected!("avx512f").then_some(&AVX512)
}

pub(super) fn avx2_table() -> Option<&'static UkernelTable> {
    (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(&AVX2)
}

/// # Safety
/// As [`super::GemmF32Fn`], on a CPU with AVX-512F.
unsafe extern "C" fn gemm_f32_avx512(
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
    side: *const f32,
    side_len: usize,
) {
    let side = Side::new(side, side_len, flags);
    // SAFETY: the same contract; the table holding this function exists only with AVX-512F.
    unsafe { avx512(k, a, b, ldb, c, ldc, m, n, bias, flags, lo, hi, side) }
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)] // the C signature of the contract
unsafe fn avx512(
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
    side: Side,
) {
    let (m, n) = (m.min(M0), n.min(N0));
    if m == 0 || n == 0 {
        return;
    }
    prefetch_next_tile(c, ldc, m);
    let args = (k, a, b, ldb, c, ldc, m, n, side);
    let ep = Epilogue {
        bias,
        flags,
        lo,
        hi,
    };
    // SAFETY (all): the same contract. Column vectors of 16 cover the columns, except that up
    // to 4 columns past the last full vector (past 0 or 16) run as row vectors: a 7×7
    // map's second tile (17 columns) costs 9 FMAs a step instead of 16, the 4-column last
    // tile of a 14×14 map 4 instead of 8.
    unsafe {
        match n {
            1 => avx512_tile::<0, 1, false>(args, ep),
            2 => avx512_tile::<0, 2, false>(args, ep),
            3 => avx512_tile::<0, 3, false>(args, ep),
            4 => avx512_tile::<0, 4, false>(args, ep),
            17 => avx512_tile::<1, 1, false>(args, ep),
            18 => avx512_tile::<1, 2, false>(args, ep),
            19 => avx512_tile::<1, 3, false>(args, ep),
            20 => avx512_tile::<1, 4, false>(args, ep),
            5..=16 => avx512_tile::<1, 0, false>(args, ep),
            _ if ep.flags & GEMM_STREAM != 0 => avx512_tile::<2, 0, true>(args, ep),
            _ => avx512_tile::<2, 0, false>(args, ep),
        }
    }
}

/// The AVX-512 tile's rows `0..m` and columns `0..n` (`n <= 16·V + R`, `R <= 4`): `V`
/// column vectors of 16 lanes (the columns `0..min(n, 16·V)`), then `R` columns `16·V ..`
/// each held as one vector over the rows (lane i: row i), which a step updates with the A
/// row times B's broadcast element. Either way each element's sum is the same chain of FMAs
/// in the same order. `STREAM`: a full tile with the [`GEMM_STREAM`] hint, which prefetches
/// the next tile's B columns (a type parameter: a run-time test in the step loop cost
/// ResNet-50 at batch 1 about 1.5 %).
#[target_feature(enable = "avx512f")]
#[allow(clippy::type_complexity)] // the contract's operands, passed on unchanged
unsafe fn avx512_tile<const V: usize, const R: usize, const STREAM: bool>(
    (k, a, b, ldb, c, ldc, m, n, mut side): (
        usize,
        *const f32,
        *const f32,
        usize,
        *mut f32,
        usize,
        usize,
        usize,
        Side,
    ),
    ep: Epilogue,
) {
    // Lane j of the column group g is valid when 16·g + j < n.
    let mask: [__mmask16; V] = std::array::from_fn(|g| {
        let valid = n.saturating_sub(16 * g).min(16);
        if valid == 16 {
            !0
        } else {
            (1u16 << valid) - 1
        }
    });
    // SAFETY: the contract's C rows.
    let (mut acc, mut spare) = unsafe { avx512_start::<V, R, M0>((c, ldc, m), mask, ep.flags) };
    let (mut ap, mut bp) = (a, b);
    let strided = (ldb != N0, STREAM && ldb != N0);
    // SAFETY (both loops): masked-out lanes are not accessed; the rest is B's row and A's
    // packed row (all M0 floats of which are readable). Full tiles avoid masked loads (an
    // extra ALU uop each on some cores).
    if n == 16 * V {
        for _ in 0..k {
            unsafe {
                prefetch_step(ap, bp, ldb, n, strided);
                side.step();
                let bv = std::array::from_fn(|g| _mm512_loadu_ps(bp.wrapping_add(16 * g)));
                avx512_step::<V, M0, M0>(&mut acc, (ap, ap), bv);
                ap = ap.add(M0);
                bp = bp.wrapping_add(ldb);
            }
        }
    } else {
        for _ in 0..k {
            unsafe {
                prefetch_step(ap, bp, ldb, n, strided);
                side.step();
                let bv = std::array::from_fn(|g| {
                    _mm512_maskz_loadu_ps(mask[g], bp.wrapping_add(16 * g))
                });
                avx512_step::<V, M0, M0>(&mut acc, (ap, ap), bv);
                if R > 0 {
                    let arow = _mm512_maskz_loadu_ps(0xff, ap);
                    for (j, s) in spare.iter_mut().enumerate() {
                        let bj = _mm512_set1_ps(*bp.add(16 * V + j));
                        *s = _mm512_fmadd_ps(arow, bj, *s);
                    }
                }
                ap = ap.add(M0);
                bp = bp.wrapping_add(ldb);
            }
        }
    }
    // SAFETY: the same contract.
    unsafe { avx512_store(acc, spare, (c, ldc, m), mask, ep) }
}

/// The AVX-512 tile's starting sums: `C`'s rows `0..m` (`V` column vectors masked by `mask`,
/// then `R` spare columns each held over the rows, lane i: row i) with [`GEMM_ACCUMULATE`],
/// else zeros (as every row `>= m`).
///
/// # Safety
/// With [`GEMM_ACCUMULATE`], `C`'s rows `i < m` hold the masks' columns and the spare ones
/// (readable at stride `ldc`).
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn avx512_start<const V: usize, const R: usize, const ROWS: usize>(
    (c, ldc, m): (*const f32, usize, usize),
    mask: [__mmask16; V],
    flags: u32,
) -> ([[__m512; V]; ROWS], [__m512; R]) {
    // Masked loads of every row (static trip counts, which unroll), no lane of rows `>= m`
    // or without GEMM_ACCUMULATE (neither read nor faulted).
    let rows = if flags & GEMM_ACCUMULATE != 0 { m } else { 0 };
    let acc = std::array::from_fn(|i| {
        std::array::from_fn(|g| {
            let lanes = if i < rows { mask[g] } else { 0 };
            // SAFETY: C's row i < m has the mask's columns.
            unsafe { _mm512_maskz_loadu_ps(lanes, c.wrapping_add(i * ldc + 16 * g)) }
        })
    });
    let spare = std::array::from_fn(|j| {
        let mut t = [0f32; 16];
        for (i, x) in t.iter_mut().enumerate().take(rows) {
            // SAFETY: rows i < m of column 16·V + j are C's elements.
            *x = unsafe { *c.add(i * ldc + 16 * V + j) };
        }
        // SAFETY: a stack row of 16 floats.
        unsafe { _mm512_loadu_ps(t.as_ptr()) }
    });
    (acc, spare)
}

/// The AVX-512 tile's epilogue: the sums of rows `0..m` (`acc`: `V` column vectors masked by
/// `mask`, then `R` spare columns each held over the rows) into `C` as the contract says.
/// The sums come by value: LLVM need not inline this, and sums passed by reference to a call
/// stay in memory through the tile's step loop, a store per FMA (108 → 43 GFLOP/s in the
/// `gemm_f32_tile` bench).
///
/// # Safety
/// `C`'s rows `i < m` hold the masks' columns and the spare ones (readable and writable at
/// stride `ldc`); `ep.bias` null or readable for `m` floats.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn avx512_store<const V: usize, const R: usize, const ROWS: usize>(
    acc: [[__m512; V]; ROWS],
    spare: [__m512; R],
    (c, ldc, m): (*mut f32, usize, usize),
    mask: [__mmask16; V],
    ep: Epilogue,
) {
    let rows: __mmask16 = (1u16 << m) - 1;
    let (vlo, vhi) = (_mm512_set1_ps(ep.lo), _mm512_set1_ps(ep.hi));
    let epilogue = |mut s: __m512, bias: Option<__m512>| {
        if let Some(b) = bias {
            s = _mm512_add_ps(s, b);
        }
        if ep.flags & GEMM_CLAMP != 0 {
            s = _mm512_min_ps(vhi, _mm512_max_ps(vlo, s));
        }
        if ep.flags & GEMM_SILU != 0 {
            s = silu16(s);
        }
        if ep.flags & GEMM_HARDSWISH != 0 {
            s = hard_swish16(s);
        }
        s
    };
    // A constant trip count with an early exit (not `take(m)`): the loop unrolls and the
    // accumulators stay in registers instead of going through the stack.
    for (i, row) in acc.iter().enumerate() {
        if i >= m {
            break;
        }
        // SAFETY: C's row i has n valid elements (only those lanes are accessed); bias[i] is
        // readable when bias is not null.
        unsafe {
            let crow = c.add(i * ldc);
            let bi = (!ep.bias.is_null()).then(|| _mm512_set1_ps(*ep.bias.add(i)));
            for (g, &v) in row.iter().enumerate() {
                _mm512_mask_storeu_ps(crow.wrapping_add(16 * g), mask[g], epilogue(v, bi));
            }
        }
    }
    // The spare columns, lane i holding row i: through a stack row for C's strided column.
    for (j, &s) in spare.iter().enumerate() {
        let col = c.wrapping_add(16 * V + j);
        let mut t = [0f32; 16];
        // SAFETY: rows i < m of column 16·V + j are C's elements; bias has m readable floats.
        unsafe {
            let bi = (!ep.bias.is_null()).then(|| _mm512_maskz_loadu_ps(rows, ep.bias));
            _mm512_storeu_ps(t.as_mut_ptr(), epilogue(s, bi));
            for (i, x) in t.iter().enumerate().take(m) {
                *col.add(i * ldc) = *x;
            }
        }
    }
}

/// One reduction step of the `ROWS` × 16·V tile: `acc[i] += A[i] · b`, rows `i < SPLIT` from
/// `a0`'s row, the rest from `a1`'s (the GEMM tile: `M0` rows of one packed row; the in-place
/// tile's 12-row tiles: rows of two panels).
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn avx512_step<const V: usize, const ROWS: usize, const SPLIT: usize>(
    acc: &mut [[__m512; V]; ROWS],
    (a0, a1): (*const f32, *const f32),
    b: [__m512; V],
) {
    for (i, row) in acc.iter_mut().enumerate() {
        // SAFETY: the caller's A rows hold the rows read.
        let ai = unsafe {
            _mm512_set1_ps(if i < SPLIT {
                *a0.add(i)
            } else {
                *a1.add(i - SPLIT)
            })
        };
        for (r, bv) in row.iter_mut().zip(b) {
            *r = _mm512_fmadd_ps(ai, bv, *r);
        }
    }
}

/// # Safety
/// As [`super::GemmF32Fn`], on a CPU with AVX2 and FMA.
unsafe extern "C" fn gemm_f32_avx2(
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
    let (m, n) = (m.min(M0), n.min(N0));
    prefetch_next_tile(c, ldc, m);
    let ep = Epilogue {
        bias,
        flags,
        lo,
        hi,
    };
    // Column groups outside: the second row pass reuses the first one's B columns from L1.
    for c0 in (0..n).step_by(16) {
        for r0 in (0..m).step_by(4) {
            // SAFETY: the same contract restricted to rows r0.. and columns c0..; the table
            // holding this function exists only with AVX2 and FMA.
            unsafe {
                avx2_4x16(
                    k,
                    a.add(r0),
                    b.add(c0),
                    ldb,
                    c.add(r0 * ldc + c0),
                    ldc,
                    (m - r0).min(4),
                    (n - c0).min(16),
                    ep.rows_from(r0),
                    r0 == 0,
                )
            };
        }
    }
}

/// The epilogue arguments of a call, `bias` already offset to the pass's first row.
#[derive(Clone, Copy)]
pub(super) struct Epilogue {
    pub(super) bias: *const f32,
    pub(super) flags: u32,
    pub(super) lo: f32,
    pub(super) hi: f32,
}

impl Epilogue {
    /// The epilogue of the rows from `r0` on.
    pub(super) fn rows_from(self, r0: usize) -> Epilogue {
        Epilogue {
            bias: super::offset_or_null(self.bias, r0),
            ..self
        }
    }
}

/// A 4 × 16 pass: rows `0..m` (`m <= 4`) of the packed A panel (row stride `M0`), columns
/// `0..n` (`1 <= n <= 16`) of B and C; `prefetch`: whether its steps prefetch.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)] // the C signature of the contract
unsafe fn avx2_4x16(
    k: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    m: usize,
    n: usize,
    ep: Epilogue,
    prefetch: bool,
) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // Lane j of the column group g is valid when 8·g + j < n (vmaskmovps reads the sign bit).
    let n32 = n as i32; // n <= 16
    let mask = [
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n32), lane),
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n32 - 8), lane),
    ];
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    if ep.flags & GEMM_ACCUMULATE != 0 {
        // Every row (a static trip count, which unrolls), no lane of rows `>= m`.
        for (i, row) in acc.iter_mut().enumerate() {
            let lanes = if i < m {
                mask
            } else {
                [_mm256_setzero_si256(); 2]
            };
            // SAFETY: C's row i < m has n valid elements; only those lanes are accessed.
            unsafe {
                let crow = c.wrapping_add(i * ldc);
                *row = [
                    _mm256_maskload_ps(crow, lanes[0]),
                    _mm256_maskload_ps(crow.wrapping_add(8), lanes[1]),
                ];
            }
        }
    }
    let (mut ap, mut bp) = (a, b);
    // The GEMM_STREAM hint is the AVX-512 tile's only: a test of it in the step loop would
    // cost every call (see `avx512_tile`'s `STREAM`).
    let strided = (ldb != N0, false);
    // SAFETY (both loops): masked-out lanes are not accessed; the rest is B's row and the
    // pass's part of A's packed row (rows m..4 of the pass are still within the panel).
    if n == 16 {
        for _ in 0..k {
            unsafe {
                if prefetch {
                    prefetch_step(ap, bp, ldb, 16, strided);
                }
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.wrapping_add(8));
                avx2_step(&mut acc, ap, b0, b1);
                ap = ap.add(M0);
                bp = bp.wrapping_add(ldb);
            }
        }
    } else {
        for _ in 0..k {
            unsafe {
                if prefetch {
                    prefetch_step(ap, bp, ldb, n, strided);
                }
                let b0 = _mm256_maskload_ps(bp, mask[0]);
                let b1 = _mm256_maskload_ps(bp.wrapping_add(8), mask[1]);
                avx2_step(&mut acc, ap, b0, b1);
                ap = ap.add(M0);
                bp = bp.wrapping_add(ldb);
            }
        }
    }
    let (vlo, vhi) = (_mm256_set1_ps(ep.lo), _mm256_set1_ps(ep.hi));
    // Unrolled with an early exit, as in the AVX-512 tile: no accumulator on the stack.
    for (i, row) in acc.iter().enumerate() {
        if i >= m {
            break;
        }
        // SAFETY: C's row i has n valid elements (only those lanes are accessed); bias[i] is
        // readable when bias is not null.
        unsafe {
            let crow = c.add(i * ldc);
            let mut s = *row;
            if !ep.bias.is_null() {
                let bi = _mm256_set1_ps(*ep.bias.add(i));
                s = s.map(|v| _mm256_add_ps(v, bi));
            }
            if ep.flags & GEMM_CLAMP != 0 {
                s = s.map(|v| _mm256_min_ps(vhi, _mm256_max_ps(vlo, v)));
            }
            if ep.flags & GEMM_SILU != 0 {
                s = s.map(|v| silu8(v));
            }
            if ep.flags & GEMM_HARDSWISH != 0 {
                s = s.map(|v| hard_swish8(v));
            }
            _mm256_maskstore_ps(crow, mask[0], s[0]);
            _mm256_maskstore_ps(crow.wrapping_add(8), mask[1], s[1]);
        }
    }
}

/// s · min(1, max(0, fma(s, 1/6, 1/2))) on 16 lanes, as the compiler's `hard_swish` (the
/// `GEMM_HARDSWISH` epilogue of the tile and of the small-map depthwise kernel).
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn hard_swish16(s: __m512) -> __m512 {
    let t = _mm512_fmadd_ps(s, _mm512_set1_ps(1.0 / 6.0), _mm512_set1_ps(0.5));
    let t = _mm512_min_ps(_mm512_set1_ps(1.0), _mm512_max_ps(_mm512_setzero_ps(), t));
    _mm512_mul_ps(s, t)
}

/// [`hard_swish16`] on 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn hard_swish8(s: __m256) -> __m256 {
    let t = _mm256_fmadd_ps(s, _mm256_set1_ps(1.0 / 6.0), _mm256_set1_ps(0.5));
    let t = _mm256_min_ps(_mm256_set1_ps(1.0), _mm256_max_ps(_mm256_setzero_ps(), t));
    _mm256_mul_ps(s, t)
}

/// One reduction step of a 4 × 16 pass: `acc[i] += a[i] · (b0, b1)`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn avx2_step(acc: &mut [[__m256; 2]; 4], a: *const f32, b0: __m256, b1: __m256) {
    for (i, row) in acc.iter_mut().enumerate() {
        // SAFETY: the caller's A row has 4 readable floats.
        let ai = _mm256_set1_ps(unsafe { *a.add(i) });
        row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
        row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
    }
}
