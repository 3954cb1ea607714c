//! The GEMM tile of a convolution reading its `B` rows in place: the tile contract of
//! [`super`] where `B` is not a packed im2col panel but the convolution's input, each
//! reduction step one tap shifted across the input plane.
//!
//! For a stride-1 convolution whose output rows are as wide as its input rows (3×3 with
//! padding 1, dilated 3×3 with padding = dilation), output positions that are consecutive in
//! the output plane read, at each tap, input elements that are consecutive in the input plane
//! — shifted by the tap's offset, with the elements that fall in the padding (or wrap into
//! the row before or after) replaced by zeros. So a tile of `n` consecutive positions reads
//! each step's `B` row with one masked load per 16 columns from the input itself: the
//! compiler's im2col packing, which copied every step's row into a panel first (about 15 %
//! of ResNet-18's 3×3 convs at one thread), is not needed. A convolution of stride `s` reads
//! the same way from its input split into `s × s` phase planes (rows and columns of each
//! residue mod `s`), whose rows are as wide as the output's when the output has
//! `⌈w / s⌉` columns (ResNet's 7×7 stem, its stride-2 3×3 and 1×1 convs). The masks and
//! offsets are computed once per call, per tap.
//!
//! # Contract
//! `taps_f32(k, a, lda, x, geo, pos0, c, ldc, res, m, n, bias, flags, lo, hi, side,
//! side_len)` ([`TapsF32Fn`],
//! a field of [`super::UkernelTable`], null where an ISA has no variant) computes, for each
//! panel of `M0` rows of the `m` (any number), the tile of [`super`]'s contract (the same
//! `C`, `bias`, `flags`, `lo`, `hi`, and the `side` prefetch hint, which the panels' tiles
//! share in order; `n` up to [`TAPS_COLUMNS`] rather than `N0`; panel `q` holds rows `q·M0 ..`
//! and reads its packed
//! `A` at `a + q·lda`: one call for all the channel panels of an output tile, which share
//! the offsets, masks and `B` rows) with
//!
//! ```text
//! taps = kh · kw,  ph = ⌈h / s⌉,  pw = ⌈w / s⌉
//! B[p][j] = x[ci·s²·ph·pw + (py·s + px)·ph·pw + (oy + ry)·pw + ox + rx]
//!                                        if 0 <= iy < h and 0 <= ix < w, else 0
//!   where ci = p div taps, ky = (p mod taps) div kw, kx = p mod kw,
//!         oy = (pos0 + j) div pw, ox = (pos0 + j) mod pw,
//!         iy = s·oy + ky·dh − pt = s·(oy + ry) + py   (0 <= py < s),
//!         ix = s·ox + kx·dw − pl = s·(ox + rx) + px   (0 <= px < s)
//! ```
//!
//! (`x` holds the call's input channels one after the other, each as `s × s` phase planes of
//! `ph × pw` floats, phase `(py, px)` holding the input's element `(s·r + py, s·c + px)` at
//! `r·pw + c` — for `s = 1` the plane itself; `pos0` is the tile's first output position in an
//! output plane of row width `pw`.) Each element gets the bits of the same ISA's GEMM tile
//! called on that `B`, packed, in one call or chained calls of any reduction chunks (the
//! contract's sums continue across them) — what generated code does without this kernel, so
//! one call replaces a call per chunk without changing any result. `res` (null: none) is a
//! residual laid out as `C`: the sums start from it instead of from `C` (as from a `C` the
//! caller had filled with it), so a residual costs no copy.
//! `geo.w == 0`, `geo.s == 0` or more than [`TAPS_MAX`] taps write nothing. Only the input
//! elements above are read. Reentrant, no allocation, no global state.

use super::{offset_or_null, GEMM_ACCUMULATE, GEMM_F32_M0};

/// The most taps (`kh · kw`) a call may have.
pub const TAPS_MAX: usize = 64;

/// The most columns (output positions) a call may have: three 16-lane vectors and a spare
/// column, so that a 7×7 map is one tile of 49 columns (two of the GEMM tile's `N0` would
/// compute 64, of which 49 are used). (More spare columns cost an instantiation of the
/// tile each, and the runtime must add under 1 MB to an executable.)
pub const TAPS_COLUMNS: usize = 49;

/// The geometry of the convolution a call belongs to (see the module documentation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapGeo {
    /// Input plane height and width.
    pub h: usize,
    pub w: usize,
    /// The stride along both axes (the input is split into `s × s` phase planes).
    pub s: usize,
    /// Kernel height and width.
    pub kh: usize,
    pub kw: usize,
    /// Dilations along the rows and columns.
    pub dh: usize,
    pub dw: usize,
    /// Padding before the first row and column.
    pub pt: usize,
    pub pl: usize,
}

/// Fields of [`TapGeo`], each pointer-sized, in order: what generated code stores.
pub const TAP_GEO_FIELDS: usize = 9;

/// The kernel's type; see the module documentation.
///
/// # Safety
/// As [`super::GemmF32Fn`] for `c`, `n` (up to [`TAPS_COLUMNS`]), `bias` and `flags`, with
/// any `m` and `A`'s panel
/// `q` readable for `k·M0` floats at `a + q·lda`; `geo` readable; `x`
/// readable at every input element of the steps `0..k` that a column `j < n` reads; `res`
/// null or readable as `C`'s `m × n` elements.
pub type TapsF32Fn = unsafe extern "C" fn(
    k: usize,
    a: *const f32,
    lda: usize,
    x: *const f32,
    geo: *const TapGeo,
    pos0: usize,
    c: *mut f32,
    ldc: usize,
    res: *const f32,
    m: usize,
    n: usize,
    bias: *const f32,
    flags: u32,
    lo: f32,
    hi: f32,
    side: *const f32,
    side_len: usize,
);

/// Each tap's offset from an output position to the input element it reads, and which of
/// the tile's columns (bit `j`, `j <` [`TAPS_COLUMNS`]) read inside the input at that tap.
struct Taps {
    count: usize,
    /// The tile's columns (`n`, at most [`TAPS_COLUMNS`]).
    columns: usize,
    offset: [isize; TAPS_MAX],
    valid: [u64; TAPS_MAX],
    /// All ones where the tap's last column (the spare one of a tile of three column
    /// vectors) is valid, else none: the `asm!` steps' mask of that column's broadcast.
    spare: [u16; TAPS_MAX],
}

impl Taps {
    /// The taps of a tile of `n` columns from `pos0`, or `None` when `g` has no taps or too
    /// many, or no row width. (One division per call and none per tap: calls run hundreds of
    /// steps, and this runs for each.)
    #[inline(always)]
    fn new(g: &TapGeo, pos0: usize, n: usize) -> Option<Taps> {
        let count = g.kh.checked_mul(g.kw)?;
        if count == 0 || count > TAPS_MAX || g.w == 0 || g.s == 0 {
            return None;
        }
        let (ph, pw) = (div_ceil(g.h, g.s), div_ceil(g.w, g.s));
        // Columns j whose input row at tap row ky is inside the plane, and whose input column
        // at tap column kx is, from the runs of columns on one output row.
        let (mut rows, mut cols) = ([0u64; TAPS_MAX], [0u64; TAPS_MAX]);
        let n = n.min(TAPS_COLUMNS);
        // The call's one division.
        let (mut oy, mut ox) = (pos0 / pw, pos0 % pw);
        let mut j = 0;
        while j < n {
            let len = (pw - ox).min(n - j);
            let run = ((1u64 << len) - 1) << j;
            for (ky, r) in rows.iter_mut().enumerate().take(g.kh) {
                let iy = (oy * g.s + ky * g.dh).wrapping_sub(g.pt);
                if iy < g.h {
                    *r |= run;
                }
            }
            for (kx, cm) in cols.iter_mut().enumerate().take(g.kw) {
                // Output columns ox..ox+len read input columns s·ox + kx·dw − pl: inside for
                // ⌈(pl − kx·dw) / s⌉ <= ox < ⌈(w + pl − kx·dw) / s⌉.
                let shift = kx * g.dw;
                let lo = div_ceil(g.pl.saturating_sub(shift), g.s).max(ox);
                let hi = div_ceil((g.w + g.pl).saturating_sub(shift), g.s).min(ox + len);
                if lo < hi {
                    *cm |= ((1u64 << (hi - lo)) - 1) << (j + lo - ox);
                }
            }
            j += len;
            (oy, ox) = (oy + 1, 0);
        }
        let mut taps = Taps {
            count,
            columns: n,
            offset: [0; TAPS_MAX],
            valid: [0; TAPS_MAX],
            spare: [0; TAPS_MAX],
        };
        // The phase plane and shift of a tap's rows or columns: d = s·r + p, 0 <= p < s.
        let s = g.s as isize;
        let split = |d: isize| match s {
            1 => (0, d),
            2 => (d & 1, d >> 1),
            _ => (d.rem_euclid(s), d.div_euclid(s)),
        };
        let (plane, pw) = ((ph * pw) as isize, pw as isize);
        // Each tap column's offset within its phase row, for all tap rows.
        let mut col_at = [0isize; TAPS_MAX];
        for (kx, at) in col_at.iter_mut().enumerate().take(g.kw) {
            let (px, rx) = split((kx * g.dw) as isize - g.pl as isize);
            *at = px * plane + rx;
        }
        let mut t = 0;
        for (ky, &r) in rows.iter().enumerate().take(g.kh) {
            let (py, ry) = split((ky * g.dh) as isize - g.pt as isize);
            let row_at = py * s * plane + ry * pw;
            for (&cm, &at) in cols.iter().zip(&col_at).take(g.kw) {
                taps.offset[t] = row_at + at;
                taps.valid[t] = r & cm;
                taps.spare[t] = if taps.valid[t] >> (TAPS_COLUMNS - 1) & 1 != 0 {
                    !0
                } else {
                    0
                };
                t += 1;
            }
        }
        Some(taps)
    }

    /// Floats between consecutive input channels: `s²` phase planes.
    #[inline(always)]
    fn channel(g: &TapGeo) -> usize {
        g.s * g.s * div_ceil(g.h, g.s.max(1)) * div_ceil(g.w, g.s.max(1))
    }
}

/// `⌈x / s⌉` without a division for the strides convolutions have.
#[inline(always)]
fn div_ceil(x: usize, s: usize) -> usize {
    match s {
        1 => x,
        2 => x.div_ceil(2),
        _ => x.div_ceil(s),
    }
}

/// The portable variant: builds each step's `B` row and accumulates as
/// [`super::gemm_f32_generic`] does (the same bits as packing and calling it).
///
/// # Safety
/// As [`TapsF32Fn`].
#[allow(clippy::too_many_arguments)] // the C signature of the contract
pub unsafe extern "C" fn taps_generic(
    k: usize,
    a: *const f32,
    lda: usize,
    x: *const f32,
    geo: *const TapGeo,
    pos0: usize,
    c: *mut f32,
    ldc: usize,
    res: *const f32,
    m: usize,
    n: usize,
    bias: *const f32,
    flags: u32,
    lo: f32,
    hi: f32,
    _side: *const f32,
    _side_len: usize,
) {
    // SAFETY: `geo` is readable.
    let g = unsafe { *geo };
    let Some(taps) = Taps::new(&g, pos0, n) else {
        return;
    };
    for (q, r0) in (0..m).step_by(GEMM_F32_M0).enumerate() {
        // SAFETY: the contract, for panel q's rows.
        unsafe {
            generic_panel(
                (k, a.wrapping_add(q * lda), x, &g, &taps, pos0),
                (c.wrapping_add(r0 * ldc), ldc, offset_or_null(res, r0 * ldc)),
                ((m - r0).min(GEMM_F32_M0), n),
                (offset_or_null(bias, r0), flags, lo, hi),
            )
        };
    }
}

/// Where a call's sums start, and its flags: from the residual `res` when there is one (as
/// from a `C` the caller had filled with it, so with [`GEMM_ACCUMULATE`]), else from `c` as
/// `flags` say.
fn sums_from(c: *mut f32, res: *const f32, flags: u32) -> (*const f32, u32) {
    if res.is_null() {
        (c.cast_const(), flags)
    } else {
        (res, flags | GEMM_ACCUMULATE)
    }
}

/// One panel of [`taps_generic`].
///
/// # Safety
/// As [`TapsF32Fn`] for one panel of `m <= M0` rows.
#[allow(clippy::type_complexity)] // the contract's operands, passed on unchanged
unsafe fn generic_panel(
    (k, a, x, g, taps, pos0): (usize, *const f32, *const f32, &TapGeo, &Taps, usize),
    (c, ldc, res): (*mut f32, usize, *const f32),
    (m, n): (usize, usize),
    (bias, flags, lo, hi): (*const f32, u32, f32, f32),
) {
    const M0: usize = GEMM_F32_M0;
    const N: usize = TAPS_COLUMNS;
    if m == 0 || n == 0 {
        return;
    }
    let plane = Taps::channel(g);
    let n = n.min(N);
    let mut panel = [0f32; N];
    let (from, flags) = sums_from(c, res, flags);
    // SAFETY: with GEMM_ACCUMULATE, `from` holds rows i < m of n floats at stride ldc.
    let mut acc = unsafe { super::generic::start::<M0, N>(from, ldc, m, n, flags) };
    for p in 0..k {
        let (ci, t) = (p / taps.count, p % taps.count);
        for (j, b) in panel.iter_mut().enumerate().take(n) {
            *b = if taps.valid[t] & (1 << j) != 0 {
                let at = (ci * plane + pos0 + j) as isize + taps.offset[t];
                // SAFETY: the contract makes every valid column's element readable.
                unsafe { *x.offset(at) }
            } else {
                0.0
            };
        }
        // SAFETY: row `p` of the packed A panel is readable.
        let ap = unsafe { std::slice::from_raw_parts(a.add(p * M0), m.min(M0)) };
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (s, &bj) in row.iter_mut().zip(&panel[..n]) {
                *s += ai * bj;
            }
        }
    }
    // SAFETY: as the contract.
    unsafe { super::generic::store(&acc, c, ldc, m, n, bias, flags, lo, hi) }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::super::x86::{
        avx512_start, avx512_step, avx512_store, prefetch_next_tile, Epilogue, Side, A_AHEAD,
    };
    use super::{TapGeo, Taps, GEMM_F32_M0 as M0, TAPS_COLUMNS};
    use std::arch::x86_64::*;

    /// # Safety
    /// As [`super::TapsF32Fn`], on a CPU with AVX-512F.
    #[allow(clippy::too_many_arguments)] // the C signature of the contract
    pub(in crate::ukernel) unsafe extern "C" fn taps_avx512(
        k: usize,
        a: *const f32,
        lda: usize,
        x: *const f32,
        geo: *const TapGeo,
        pos0: usize,
        c: *mut f32,
        ldc: usize,
        res: *const f32,
        m: usize,
        n: usize,
        bias: *const f32,
        flags: u32,
        lo: f32,
        hi: f32,
        side: *const f32,
        side_len: usize,
    ) {
        let n = n.min(TAPS_COLUMNS);
        let side = Side::new(side, side_len, flags);
        // SAFETY: `geo` is readable.
        let g = unsafe { *geo };
        let Some(taps) = Taps::new(&g, pos0, n) else {
            return;
        };
        if n == 0 {
            return;
        }
        let (x, plane) = (x.wrapping_add(pos0), Taps::channel(&g));
        let ep = Epilogue {
            bias,
            flags,
            lo,
            hi,
        };
        // Three full panels run as two tiles of 12 rows (24 FMAs a step instead of 16 for
        // the step's fixed work: its tap's offset and masks, the `B` loads, the prefetches),
        // the rest panel by panel; more than 32 columns (three vectors and a spare column, 24
        // or 25 FMAs a step) or at most 16 (a map's last tile) panel by panel. Each
        // element's sums are the same chains of FMAs.
        let full = if n > 32 || n <= 16 { 0 } else { m / M0 };
        // A 3×3 kernel in whole channels whose tile reads inside the input at every tap row
        // (each tap's masks are its column's) and whose tap offsets are a row's plus a
        // column's (true of every stride and dilation: `Taps::new` builds them so).
        let offset = |t: usize| taps.offset[t];
        let whole3x3 = g.kh == 3
            && g.kw == 3
            && k.is_multiple_of(9)
            && (0..9).all(|t| {
                let (ky, kx) = (t / 3, t % 3);
                taps.valid[t] == taps.valid[kx]
                    && offset(t) == offset(3 * ky) + offset(kx) - offset(0)
            });
        let mut r0 = 0;
        while r0 < m {
            let q = r0 / M0;
            // (A tile of 12 rows from a panel's start leaves the next one at its row 4.)
            let (rows, split) = if r0 % M0 == 4 {
                (12, 4)
            } else if q + 3 <= full {
                (12, 8)
            } else {
                (M0, M0)
            };
            let rows = rows.min(m - r0);
            let cq = c.wrapping_add(r0 * ldc);
            // As the GEMM tile: the next tile along the positions is stored next.
            prefetch_next_tile(cq, ldc, rows.min(M0));
            if rows > M0 {
                prefetch_next_tile(cq.wrapping_add(M0 * ldc), ldc, rows - M0);
            }
            let ep = ep.rows_from(r0);
            let res = super::offset_or_null(res, r0 * ldc);
            // The tile's rows from its first panel (`split` of them, from row `8 − split`),
            // then from the next one; the side stream's parts of the panels starting in it.
            let a0 = a.wrapping_add(q * lda + (M0 - split));
            let a1 = a.wrapping_add((q + 1) * lda);
            let side = if split == M0 && rows == 12 {
                side.part(q, k).times(2)
            } else if split == 4 {
                side.part(q + 1, k)
            } else {
                side.part(q, k)
            };
            let args = (k, (a0, a1), x, plane, (cq, ldc, rows), res, side);
            // SAFETY (all): the contract, for the tile's rows; the table holding this
            // function exists only with AVX-512F.
            unsafe {
                match (n, rows > M0, split) {
                    (49.., ..) => tile::<3, 1, 8, 8>(args, (&taps, whole3x3), ep),
                    (33.., ..) => tile::<3, 0, 8, 8>(args, (&taps, whole3x3), ep),
                    (..=16, ..) => tile::<1, 0, 8, 8>(args, (&taps, whole3x3), ep),
                    (_, false, _) => tile::<2, 0, 8, 8>(args, (&taps, whole3x3), ep),
                    (_, true, 8) => tile::<2, 0, 12, 8>(args, (&taps, whole3x3), ep),
                    (_, true, _) => tile::<2, 0, 12, 4>(args, (&taps, whole3x3), ep),
                }
            }
            r0 += rows;
        }
    }

    /// One tap of [`nine_taps`]: the tap's two masked `B` loads at `{p}` plus its column's
    /// offset `$col` (masks `$ma`, `$mb`), the prefetch of A's rows [`A_AHEAD`] floats on
    /// (`$pf`: the second panel's, or an assembler comment), then for each row (`{$base}` + 4·`$i`
    /// in step `t`'s 32 bytes of A, accumulators `$z0`, `$z1`) a broadcast and two FMAs.
    macro_rules! nine_step {
        ($t:literal, $col:literal, $ma:literal, $mb:literal, $pf:literal,
         [$(($base:literal, $i:literal, $z0:literal, $z1:literal, $k:tt)),*]) => {
            concat!(
                "vmovups zmm24{{{", $ma, "}}}{{z}}, [{p}", $col, "]\n",
                "vmovups zmm25{{{", $mb, "}}}{{z}}, [{p}", $col, " + 64]\n",
                "prefetcht0 [{b0} + {a_ahead} + 32*", $t, "]\n",
                $pf, $t, "]\n",
                $(
                    "vbroadcastss zmm26, dword ptr [{", $base, "} + 32*", $t, " + 4*", $i, "]\n",
                    "vfmadd231ps ", $z0, ", zmm26, zmm24\n",
                    "vfmadd231ps ", $z1, ", zmm26, zmm25\n",
                )*
            )
        };
    }

    /// One tap row of [`nine_taps`]: `{p}` at its first tap, the lines the next channel's
    /// three taps of the row read prefetched, then the three taps.
    macro_rules! nine_row {
        ($r:literal, $t0:literal, $t1:literal, $t2:literal, $pf:literal, $rows:tt) => {
            concat!(
                "lea {p}, [{x} + {",
                $r,
                "}]\n",
                "add {p}, {pl}\n",
                "prefetcht0 [{p}]\n",
                "prefetcht0 [{p} + 127]\n",
                "prefetcht0 [{p} + {c1}]\n",
                "prefetcht0 [{p} + {c1} + 127]\n",
                "prefetcht0 [{p} + {c2}]\n",
                "prefetcht0 [{p} + {c2} + 127]\n",
                "sub {p}, {pl}\n",
                nine_step!($t0, "", "m0", "m1", $pf, $rows),
                nine_step!($t1, " + {c1}", "m2", "m3", $pf, $rows),
                nine_step!($t2, " + {c2}", "m4", "m5", $pf, $rows),
            )
        };
    }

    /// The channel loop of [`nine_taps`] over the rows `$rows` (each: the base register of its
    /// `A`, its index there, its two accumulator registers, its index in `$acc`).
    macro_rules! nine_loop {
        ($acc:ident, $xp:ident, $b:ident, $geo:ident, $masks:ident, $n:ident, $pf:literal,
         [$(($base:literal, $i:literal, $z0:tt, $z1:tt, $k:tt)),*]) => {
            std::arch::asm!(
                "2:",
                nine_row!("r0", 0, 1, 2, $pf, [$(($base, $i, $z0, $z1, $k)),*]),
                nine_row!("r1", 3, 4, 5, $pf, [$(($base, $i, $z0, $z1, $k)),*]),
                nine_row!("r2", 6, 7, 8, $pf, [$(($base, $i, $z0, $z1, $k)),*]),
                "add {x}, {pl}",
                "add {b0}, 288",
                "add {b1}, 288",
                "add {b2}, 288",
                "dec {n}",
                "jnz 2b",
                x = inout(reg) $xp => _,
                b0 = inout(reg) $b[0] => _,
                b1 = inout(reg) $b[1] => _,
                b2 = inout(reg) $b[2] => _,
                n = inout(reg) $n => _,
                p = out(reg) _,
                r0 = in(reg) $geo.0[0],
                r1 = in(reg) $geo.0[1],
                r2 = in(reg) $geo.0[2],
                pl = in(reg) $geo.2,
                c1 = in(reg) $geo.1[0],
                c2 = in(reg) $geo.1[1],
                m0 = in(kreg) $masks[0][0],
                m1 = in(kreg) $masks[0][1],
                m2 = in(kreg) $masks[1][0],
                m3 = in(kreg) $masks[1][1],
                m4 = in(kreg) $masks[2][0],
                m5 = in(kreg) $masks[2][1],
                a_ahead = const 4 * A_AHEAD,
                $(inout($z0) $acc[$k][0], inout($z1) $acc[$k][1],)*
                out("zmm24") _,
                out("zmm25") _,
                out("zmm26") _,
                options(nostack, readonly),
            )
        };
    }

    /// `channels` (at least one) whole channels of a 3×3 kernel on a tile of two column
    /// vectors and `ROWS` rows (12 or 8; `b`: the A rows of rows 0–3, 4–7 and 8–11, four
    /// floats each; for 8 rows `b[2]` is the next panel's, which is not prefetched), in the order
    /// and with the FMAs of [`tile`]'s steps, when every tap's offset is its row's first tap's
    /// plus its column's shift (`geo.0[ky]`: the row's offset in bytes; `geo.1`: the shifts of
    /// columns 1 and 2, in bytes) and its masks are its column's (`masks[kx]`): no table read,
    /// tap counter or mask move a step, which the compiler's code of an unrolled channel did
    /// not manage either (it kept the sums in memory). `geo.2`: the bytes between channels.
    ///
    /// # Safety
    /// `acc` points at `ROWS` rows of two vectors; the rows' `A` (`9·channels` steps of `M0`
    /// floats) and the masked input elements are readable; AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn nine_taps<const ROWS: usize>(
        acc: *mut [__m512; 2],
        b: [*const f32; 3],
        x: *const f32,
        geo: ([isize; 3], [isize; 2], usize),
        masks: [[__mmask16; 2]; 3],
        channels: usize,
    ) {
        let n = channels;
        // SAFETY: the caller's contract (all three).
        unsafe {
            if ROWS == 12 {
                let acc = &mut *acc.cast::<[[__m512; 2]; 12]>();
                nine_loop!(
                    acc,
                    x,
                    b,
                    geo,
                    masks,
                    n,
                    "prefetcht0 [{b2} + {a_ahead} + 32*",
                    [
                        ("b0", 0, "zmm0", "zmm1", 0),
                        ("b0", 1, "zmm2", "zmm3", 1),
                        ("b0", 2, "zmm4", "zmm5", 2),
                        ("b0", 3, "zmm6", "zmm7", 3),
                        ("b1", 0, "zmm8", "zmm9", 4),
                        ("b1", 1, "zmm10", "zmm11", 5),
                        ("b1", 2, "zmm12", "zmm13", 6),
                        ("b1", 3, "zmm14", "zmm15", 7),
                        ("b2", 0, "zmm16", "zmm17", 8),
                        ("b2", 1, "zmm18", "zmm19", 9),
                        ("b2", 2, "zmm20", "zmm21", 10),
                        ("b2", 3, "zmm22", "zmm23", 11)
                    ]
                )
            } else {
                let acc = &mut *acc.cast::<[[__m512; 2]; 8]>();
                nine_loop!(
                    acc,
                    x,
                    b,
                    geo,
                    masks,
                    n,
                    "# one panel: ",
                    [
                        ("b0", 0, "zmm0", "zmm1", 0),
                        ("b0", 1, "zmm2", "zmm3", 1),
                        ("b0", 2, "zmm4", "zmm5", 2),
                        ("b0", 3, "zmm6", "zmm7", 3),
                        ("b1", 0, "zmm8", "zmm9", 4),
                        ("b1", 1, "zmm10", "zmm11", 5),
                        ("b1", 2, "zmm12", "zmm13", 6),
                        ("b1", 3, "zmm14", "zmm15", 7)
                    ]
                )
            }
        }
    }

    /// One row of [`wide_steps`]: the broadcast of its `A` element (`$i`: its index in the
    /// step's row of `A`) and its three FMAs onto its accumulators.
    macro_rules! wide_row {
        ($i:literal, $z0:literal, $z1:literal, $z2:literal) => {
            concat!(
                "vbroadcastss zmm27, dword ptr [{ap} + 4*",
                $i,
                "]\n",
                "vfmadd231ps ",
                $z0,
                ", zmm27, zmm24\n",
                "vfmadd231ps ",
                $z1,
                ", zmm27, zmm25\n",
                "vfmadd231ps ",
                $z2,
                ", zmm27, zmm26\n",
            )
        };
    }

    /// The step loop of [`wide_steps`], with `$side` (the side stream's prefetches and
    /// advance, or nothing) after the step's own prefetches.
    macro_rules! wide_loop {
        ($acc:ident, $spare:ident, $s:ident, $side:literal) => {
            std::arch::asm!(
                "2:",
                "mov {p}, qword ptr [{tb} + 8*{t} + {offset}]",
                "lea {p}, [{xp} + 4*{p}]",
                "kmovw k1, word ptr [{tb} + 8*{t} + {valid}]",
                "kmovw k2, word ptr [{tb} + 8*{t} + {valid} + 2]",
                "kmovw k3, word ptr [{tb} + 8*{t} + {valid} + 4]",
                "kmovw k4, word ptr [{tb} + 2*{t} + {spare}]",
                "prefetcht0 [{ap} + {a_ahead}]",
                "prefetcht0 [{p} + {ahead}]",
                "prefetcht0 [{p} + {ahead} + {last}]",
                $side,
                "vmovups zmm24{{k1}}{{z}}, [{p}]",
                "vmovups zmm25{{k2}}{{z}}, [{p} + 64]",
                "vmovups zmm26{{k3}}{{z}}, [{p} + 128]",
                wide_row!(0, "zmm0", "zmm1", "zmm2"),
                wide_row!(1, "zmm3", "zmm4", "zmm5"),
                wide_row!(2, "zmm6", "zmm7", "zmm8"),
                wide_row!(3, "zmm9", "zmm10", "zmm11"),
                wide_row!(4, "zmm12", "zmm13", "zmm14"),
                wide_row!(5, "zmm15", "zmm16", "zmm17"),
                wide_row!(6, "zmm18", "zmm19", "zmm20"),
                wide_row!(7, "zmm21", "zmm22", "zmm23"),
                // The spare column: the step's A row (8 floats, the upper lanes zero) times
                // its element, or zero where the tap is outside.
                "vmovups ymm30, ymmword ptr [{ap}]",
                "vbroadcastss zmm29{{k4}}{{z}}, dword ptr [{p} + {spare_at}]",
                "vfmadd231ps zmm28, zmm30, zmm29",
                "add {ap}, 32",
                "inc {t}",
                "cmp {t}, qword ptr [{tb} + {count}]",
                "jne 3f",
                "xor {t:e}, {t:e}",
                "add {xp}, {plane}",
                "3:",
                "dec {n}",
                "jnz 2b",
                tb = in(reg) $s.taps,
                t = inout(reg) $s.t => _,
                ap = inout(reg) $s.ap => _,
                xp = inout(reg) $s.xp => _,
                n = inout(reg) $s.steps => _,
                p = out(reg) _,
                plane = in(reg) $s.plane,
                ahead = in(reg) $s.ahead,
                sat = inout(reg) $s.side.0 => _,
                send = in(reg) $s.side.1,
                sstep = in(reg) $s.side.2,
                offset = const std::mem::offset_of!(Taps, offset),
                valid = const std::mem::offset_of!(Taps, valid),
                spare = const std::mem::offset_of!(Taps, spare),
                count = const std::mem::offset_of!(Taps, count),
                a_ahead = const 4 * A_AHEAD,
                // The last of the three vectors' columns, and the spare column.
                last = const 4 * (TAPS_COLUMNS - 2),
                spare_at = const 4 * (TAPS_COLUMNS - 1),
                inout("zmm0") $acc[0][0], inout("zmm1") $acc[0][1], inout("zmm2") $acc[0][2],
                inout("zmm3") $acc[1][0], inout("zmm4") $acc[1][1], inout("zmm5") $acc[1][2],
                inout("zmm6") $acc[2][0], inout("zmm7") $acc[2][1], inout("zmm8") $acc[2][2],
                inout("zmm9") $acc[3][0], inout("zmm10") $acc[3][1], inout("zmm11") $acc[3][2],
                inout("zmm12") $acc[4][0], inout("zmm13") $acc[4][1], inout("zmm14") $acc[4][2],
                inout("zmm15") $acc[5][0], inout("zmm16") $acc[5][1], inout("zmm17") $acc[5][2],
                inout("zmm18") $acc[6][0], inout("zmm19") $acc[6][1], inout("zmm20") $acc[6][2],
                inout("zmm21") $acc[7][0], inout("zmm22") $acc[7][1], inout("zmm23") $acc[7][2],
                inout("zmm28") $spare[0],
                out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _,
                out("zmm29") _, out("zmm30") _,
                out("k1") _, out("k2") _, out("k3") _, out("k4") _,
                options(nostack, readonly),
            )
        };
    }

    /// Where the steps of [`wide_steps`] start and what they read: the table, the tap, the
    /// `A` row, the input channel, the steps, the bytes between channels and to the
    /// prefetched input, and the side stream's next line, end and bytes a step.
    struct Wide {
        taps: *const Taps,
        t: usize,
        ap: *const f32,
        xp: *const f32,
        steps: usize,
        plane: usize,
        ahead: usize,
        side: (*const u8, *const u8, usize),
    }

    /// `steps` (at least one) of [`tile`]'s steps on a tile of three column vectors and a
    /// spare column over one panel's 8 rows (7×7 maps), with the same loads, prefetches and
    /// FMAs in the same order, in `asm!`: the compiler's code kept the spare column's sum in
    /// memory, a store and a load in every step's chain, and moved each mask through a
    /// general register on the port the FMAs need. With `SIDE`, each step prefetches the side
    /// stream's lines, at most two (the first and last of the step's), until its end;
    /// without, the stream is empty.
    ///
    /// # Safety
    /// As [`tile`]'s steps: the table's taps, `A`'s `steps` rows and the input elements the
    /// masks keep are readable; AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn wide_steps<const SIDE: bool>(
        acc: &mut [[__m512; 3]; 8],
        spare: &mut [__m512; 1],
        s: Wide,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            if SIDE {
                wide_loop!(
                    acc,
                    spare,
                    s,
                    "prefetcht1 [{sat}]
                     prefetcht1 [{sat} + {sstep} - 64]
                     add {sat}, {sstep}
                     cmp {sat}, {send}
                     cmova {sat}, {send}"
                )
            } else {
                wide_loop!(acc, spare, s, "# no side stream: {sat} {send} {sstep}")
            }
        }
    }

    /// The tile over `V` column vectors: the sums started as the GEMM tile starts them, then
    /// per input channel, per tap, a masked load of each vector at the tap's offset
    /// (masked-out lanes are neither read nor faulted) and the GEMM tile's step, then its
    /// epilogue and store. Two column vectors of a `whole3x3` call without a side stream run
    /// their channels in [`nine_taps`] instead (the same FMAs in the same order): ResNet's
    /// 3×3 convs outside their maps' first and last rows, 117 → 134 GFLOP/s in the `taps_f32`
    /// bench, resnet18 15.2 → 14.3 ms. Three vectors and the spare column (7×7 maps) run
    /// their steps in [`wide_steps`] (the same loads and FMAs in the same order): on a 7×7
    /// map 123 → 133 GFLOP/s in that bench, resnet18 12.67 → 12.41 ms at two threads.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::type_complexity)] // the contract's operands, passed on unchanged
    unsafe fn tile<const V: usize, const R: usize, const ROWS: usize, const SPLIT: usize>(
        (k, (a0, a1), x, plane, out, res, mut side): (
            usize,
            (*const f32, *const f32),
            *const f32,
            usize,
            (*mut f32, usize, usize),
            *const f32,
            Side,
        ),
        (taps, whole3x3): (&Taps, bool),
        ep: Epilogue,
    ) {
        // Lanes j < n of the tile: the columns a step's valid mask already limits.
        let half = |v: u64, g: usize| (v >> (16 * g)) as __mmask16;
        let n = taps.columns;
        let mask = std::array::from_fn(|g| {
            let valid = n.saturating_sub(16 * g).min(16);
            ((1u32 << valid) - 1) as __mmask16
        });
        let ahead = plane * (8 / taps.count).max(1);
        let (mut ap, mut bp, mut xp, mut t) = (a0, a1, x, 0);
        let (c, ldc, m) = out;
        let (from, flags) = super::sums_from(c, res, ep.flags);
        // SAFETY: with GEMM_ACCUMULATE, `from` holds the contract's C rows.
        let (mut acc, mut spare) =
            unsafe { avx512_start::<V, R, ROWS>((from, ldc, m), mask, flags) };
        // `whole3x3` (see `taps_avx512`) on two column vectors, without a side stream:
        // [`nine_taps`], with its tap rows' and columns' offsets (bytes) and its columns'
        // masks.
        let nine = (whole3x3 && V == 2 && R == 0 && (ROWS == 12 || ROWS == 8) && side.is_empty())
            .then(|| {
                let offset = |t: usize| 4 * taps.offset[t];
                let rows_at = [0, 3, 6].map(offset);
                let cols_at = [1, 2].map(|kx| offset(kx) - offset(0));
                let cols: [[__mmask16; 2]; 3] =
                    std::array::from_fn(|kx| std::array::from_fn(|g| half(taps.valid[kx], g)));
                ((rows_at, cols_at, plane * 4), cols)
            });
        // Three column vectors and the spare column over one panel: [`wide_steps`].
        let wide = V == 3 && R == 1 && ROWS == 8 && SPLIT == 8;
        // (Both asm loops run at least one step.)
        if let Some((geo, cols)) = nine.filter(|_| k > 0) {
            // Rows `i < SPLIT` read `ap`'s row, the rest `bp`'s.
            let b = match SPLIT {
                4 => [ap, bp, bp.wrapping_add(4)],
                _ => [ap, ap.wrapping_add(4), bp],
            };
            // SAFETY: `acc` is ROWS rows of two vectors (V == 2); the steps' A rows and input
            // elements are the contract's.
            unsafe { nine_taps::<ROWS>(acc.as_mut_ptr().cast(), b, xp, geo, cols, k / 9) };
        } else if wide && k > 0 {
            let (acc, spare) = (acc.as_mut_ptr().cast(), spare.as_mut_ptr().cast());
            let ws = Wide {
                taps,
                t,
                ap,
                xp,
                steps: k,
                plane: plane * 4,
                ahead: ahead * 4,
                side: side.raw(),
            };
            // SAFETY: `acc` and `spare` are 8 rows of three vectors and one vector (the tile's
            // V, R and ROWS); the steps' taps, A rows and input elements are the contract's;
            // a tile of 8 rows takes at most two lines a step of the stream.
            unsafe {
                match side.is_empty() {
                    true => wide_steps::<false>(&mut *acc, &mut *spare, ws),
                    false => wide_steps::<true>(&mut *acc, &mut *spare, ws),
                }
            };
        } else {
            for _ in 0..k {
                // SAFETY: t < count <= TAPS_MAX.
                let (off, valid) =
                    unsafe { (*taps.offset.get_unchecked(t), *taps.valid.get_unchecked(t)) };
                let p = xp.wrapping_offset(off);
                // SAFETY: valid lanes are the contract's readable input elements; the A row
                // has M0 readable floats; prefetches never fault.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(A_AHEAD).cast());
                    if SPLIT < ROWS {
                        _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(A_AHEAD).cast());
                    }
                    // The same tap of a channel at least 8 steps on: the tile's first call
                    // for these positions brings the input from L2 or memory, and the
                    // hardware prefetchers do not follow a stride of a plane.
                    let next = p.wrapping_add(ahead);
                    _mm_prefetch::<_MM_HINT_T0>(next.cast());
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(16 * V - 1).cast());
                    side.step();
                    let bv = std::array::from_fn(|g| {
                        _mm512_maskz_loadu_ps(half(valid, g), p.wrapping_add(16 * g))
                    });
                    avx512_step::<V, ROWS, SPLIT>(&mut acc, (ap, bp), bv);
                    if R > 0 {
                        // Spare column j (lane i: row i), as the GEMM tile's: the A row
                        // times the column's element (0 where the tap is outside).
                        let arow = _mm512_maskz_loadu_ps(0xff, ap);
                        for (j, s) in spare.iter_mut().enumerate() {
                            let bit = (valid >> (16 * V + j)) as __mmask8 & 1;
                            let e = _mm_maskz_load_ss(bit, p.wrapping_add(16 * V + j));
                            *s = _mm512_fmadd_ps(arow, _mm512_broadcastss_ps(e), *s);
                        }
                    }
                    ap = ap.wrapping_add(M0);
                    bp = bp.wrapping_add(M0);
                }
                t += 1;
                if t == taps.count {
                    (t, xp) = (0, xp.wrapping_add(plane));
                }
            }
        }
        // SAFETY: the contract's C rows and bias.
        unsafe { avx512_store::<V, R, ROWS>(acc, spare, out, mask, ep) }
    }
}

#[cfg(test)]
mod tests {
    use super::{TapGeo, TapsF32Fn, TAPS_COLUMNS, TAPS_MAX};
    use crate::rt::SplitMix;
    use crate::ukernel::{
        table, Isa, GEMM_ACCUMULATE, GEMM_CLAMP, GEMM_F32_M0 as M0, GEMM_F32_N0 as N0, GEMM_SILU,
    };

    /// The im2col panel of the contract's `B`, `[k][N0]`, straight from its formula.
    fn im2col(x: &[f32], g: &TapGeo, k: usize, pos0: usize, n: usize) -> Vec<f32> {
        let taps = g.kh * g.kw;
        let ow = g.w.div_ceil(g.s);
        let mut b = vec![0f32; k * N0];
        for p in 0..k {
            let (ci, ky, kx) = (p / taps, p % taps / g.kw, p % g.kw);
            for j in 0..n {
                let (oy, ox) = ((pos0 + j) / ow, (pos0 + j) % ow);
                let (iy, ix) = (
                    (g.s * oy + ky * g.dh) as isize - g.pt as isize,
                    (g.s * ox + kx * g.dw) as isize - g.pl as isize,
                );
                if (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix) {
                    b[p * N0 + j] = x[ci * g.h * g.w + iy as usize * g.w + ix as usize];
                }
            }
        }
        b
    }

    /// The kernel's input: each channel of `x` as its `s × s` phase planes (NaN where a plane
    /// is larger than its share of the input: never read).
    fn phases(x: &[f32], g: &TapGeo, chans: usize) -> Vec<f32> {
        let (ph, pw) = (g.h.div_ceil(g.s), g.w.div_ceil(g.s));
        let mut out = vec![f32::NAN; chans * g.s * g.s * ph * pw];
        for ci in 0..chans {
            for iy in 0..g.h {
                for ix in 0..g.w {
                    let (py, px) = (iy % g.s, ix % g.s);
                    let at = ((ci * g.s + py) * g.s + px) * ph * pw + iy / g.s * pw + ix / g.s;
                    out[at] = x[(ci * g.h + iy) * g.w + ix];
                }
            }
        }
        out
    }

    /// Every variant against the same table's GEMM tile on the packed `B`, bit for bit (guards
    /// around C), over kernels, dilations, paddings, tiles crossing rows and the plane's end,
    /// partial tiles, partial channel counts and the epilogue's flags.
    #[test]
    fn variants_match_their_tile_on_the_packed_panel() {
        // C's row stride: the widest tile and a guard.
        const LDC: usize = TAPS_COLUMNS + 8;
        let mut rng = SplitMix(41);
        // (h, w, s, kh, kw, dh, dw, pt, pl)
        let geos = [
            (9, 11, 1, 3, 3, 1, 1, 1, 1),
            (14, 14, 1, 3, 3, 1, 1, 1, 1),
            (7, 7, 1, 3, 3, 1, 1, 1, 1),
            (12, 40, 1, 3, 3, 1, 1, 1, 1),
            (10, 10, 1, 3, 3, 2, 2, 2, 2),
            (8, 9, 1, 5, 5, 1, 1, 2, 2),
            (6, 20, 1, 1, 3, 1, 1, 0, 1),
            (11, 5, 1, 3, 1, 1, 1, 1, 0),
            (9, 9, 1, 7, 7, 1, 1, 3, 3),
            (5, 13, 1, 3, 3, 1, 1, 0, 0),
            // Stride 2: a stem, 3×3 and 1×1 convs, odd sizes (phase planes of unequal shares).
            (14, 14, 2, 7, 7, 1, 1, 3, 3),
            (13, 11, 2, 7, 7, 1, 1, 3, 3),
            (12, 12, 2, 3, 3, 1, 1, 1, 1),
            (9, 15, 2, 3, 3, 1, 1, 1, 1),
            (10, 7, 2, 1, 1, 1, 1, 0, 0),
        ];
        let mut tested = 0;
        for t in Isa::ALL.into_iter().filter_map(table) {
            let Some(taps) = t.taps_f32 else { continue };
            for (i, (h, w, s, kh, kw, dh, dw, pt, pl)) in geos.into_iter().enumerate() {
                // The reference's calls of the GEMM tile: one chunk, chunks of whole channels,
                // chunks cutting channels (the sums continue across them: the same bits).
                let chunk = [0, 2 * kh * kw, 7][i % 3];
                let g = TapGeo {
                    h,
                    w,
                    s,
                    kh,
                    kw,
                    dh,
                    dw,
                    pt,
                    pl,
                };
                assert!(kh * kw <= TAPS_MAX);
                let chans = 3;
                let x: Vec<f32> = (0..chans * h * w).map(|_| rng.normal()).collect();
                let split = phases(&x, &g, chans);
                let ow = w.div_ceil(s);
                let positions = h.div_ceil(s) * ow;
                for (pos0, n) in [
                    (0, N0),
                    (ow - 1, N0),
                    (positions - 5, 5),
                    (ow + 2, 17),
                    (1, 16),
                    // Wider than the GEMM tile: three vectors and 0 or 1 spare column.
                    (0, 49),
                    (ow - 1, TAPS_COLUMNS),
                    (2, 40),
                    (1, 48),
                ] {
                    let n = n.min(positions - pos0);
                    // Rows of several panels (13: a full one and 5), A panels `lda` apart.
                    for (case, (k, m, flags, residual)) in [
                        (chans * kh * kw, M0, 0, false),
                        (2 * kh * kw + 1, 5, GEMM_ACCUMULATE | GEMM_CLAMP, false),
                        (kh * kw, 3, GEMM_SILU, false),
                        (chans * kh * kw, 7, GEMM_CLAMP, true),
                        (chans * kh * kw, 13, GEMM_CLAMP, true),
                        (kh * kw + 2, 16, 0, false),
                        (chans * kh * kw, 16, GEMM_CLAMP, false),
                        // Three full panels and more (the AVX-512 tile's 12-row tiles).
                        (chans * kh * kw, 24, GEMM_CLAMP, true),
                        (2 * kh * kw + 1, 27, GEMM_ACCUMULATE, false),
                        (chans * kh * kw, 53, GEMM_SILU, true),
                        // No step: the starting sums through the epilogue.
                        (0, 8, GEMM_ACCUMULATE | GEMM_CLAMP, false),
                        (0, 8, GEMM_CLAMP, true),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        let side = (i + case) % 2 == 0;
                        let (panels, lda) = (m.div_ceil(M0), k * M0 + 8);
                        let a: Vec<f32> = (0..panels * lda).map(|_| rng.normal()).collect();
                        let bias: Vec<f32> = (0..m).map(|_| rng.normal()).collect();
                        let c0: Vec<f32> = (0..m * LDC).map(|_| rng.normal()).collect();
                        let res: Vec<f32> = (0..m * LDC).map(|_| rng.normal()).collect();
                        let mut want = c0.clone();
                        let mut got = c0.clone();
                        // The GEMM tile chunk by chunk, as generated code calls it, panel by
                        // panel and `N0` columns at a time, onto the residual copied into C
                        // first.
                        if residual {
                            for i in 0..m {
                                want[i * LDC..i * LDC + n]
                                    .copy_from_slice(&res[i * LDC..i * LDC + n]);
                            }
                        }
                        let step = if chunk == 0 { k.max(1) } else { chunk };
                        for (q, j0) in
                            (0..panels).flat_map(|q| (0..n).step_by(N0).map(move |j| (q, j)))
                        {
                            let nb = (n - j0).min(N0);
                            let b = im2col(&x, &g, k, pos0 + j0, nb);
                            let mut done = 0;
                            let mut more = if residual {
                                GEMM_ACCUMULATE
                            } else {
                                flags & GEMM_ACCUMULATE
                            };
                            loop {
                                let steps = step.min(k - done);
                                let last = done + steps == k;
                                // SAFETY: the chunk's rows of both panels, C (m rows of LDC ≥
                                // n), m biases.
                                unsafe {
                                    (t.gemm_f32)(
                                        steps,
                                        a[q * lda + done * M0..].as_ptr(),
                                        b[done * N0..].as_ptr(),
                                        N0,
                                        want[q * M0 * LDC + j0..].as_mut_ptr(),
                                        LDC,
                                        (m - q * M0).min(M0),
                                        nb,
                                        if last {
                                            bias[q * M0..].as_ptr()
                                        } else {
                                            std::ptr::null()
                                        },
                                        if last { flags | more } else { more },
                                        -0.5,
                                        0.75,
                                        std::ptr::null(),
                                        0,
                                    )
                                };
                                done += steps;
                                more = GEMM_ACCUMULATE;
                                if last {
                                    break;
                                }
                            }
                        }
                        // SAFETY: C (m rows of LDC ≥ n) holds what the call writes; the input
                        // planes hold every valid tap's element; the A panels and biases.
                        unsafe {
                            (taps as TapsF32Fn)(
                                k,
                                a.as_ptr(),
                                lda,
                                split.as_ptr(),
                                &g,
                                pos0,
                                got.as_mut_ptr(),
                                LDC,
                                if residual {
                                    res.as_ptr()
                                } else {
                                    std::ptr::null()
                                },
                                m,
                                n,
                                bias.as_ptr(),
                                flags,
                                -0.5,
                                0.75,
                                // A side hint (the GEMM tile's calls above have none)
                                // every other case: the AVX-512 tile's whole 3×3 channels
                                // run without one.
                                if side { x.as_ptr() } else { std::ptr::null() },
                                x.len(),
                            );
                        }
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(p, q)| p.to_bits() == q.to_bits());
                        assert!(
                            same,
                            "{}: {g:?} pos0 {pos0} n {n} k {k} m {m} flags {flags} res {residual} side {side}",
                            t.isa.name()
                        );
                        tested += 1;
                    }
                }
            }
        }
        assert!(tested > 0, "no variant to test");
    }
}
