//! Micro-kernels: the f32 GEMM tile that generated code calls for the innermost tile of a conv
//! or GEMM (IREE's mmt4d ukernel contract), one variant per ISA, picked at load time.
//!
//! # The tile
//! One call computes, for `i < m`, `j < n` (`m <= M0`, `n <= N0`, see [`GEMM_F32_M0`] and
//! [`GEMM_F32_N0`]):
//!
//! ```text
//! s      = C[i·ldc + j] if flags & GEMM_ACCUMULATE, else +0.0
//! s      = s + A[p·M0 + i] · B[p·ldb + j]               for p = 0, 1, …, k − 1
//! s      = s + bias[i]                                  if bias is not null
//! s      = min(hi, max(lo, s))                          if flags & GEMM_CLAMP
//! s      = s · σ(s)   ([`silu::silu`], the same bits)    if flags & GEMM_SILU
//! s      = s · min(1, max(0, fma(s, 1/6, 1/2)))         if flags & GEMM_HARDSWISH
//! C[i·ldc + j] = s
//! ```
//!
//! - `A` is a packed panel of `k` rows of `M0` floats (row `p` holds `A[p][0..M0]`, e.g. the
//!   weights of `M0` output channels for reduction index `p`). Lanes `m..M0` of each row are
//!   read but do not affect any written element (zero them: denormals would only cost time).
//! - `B` is `k` rows of at least `n` floats at a row stride of `ldb` elements (e.g. `N0`
//!   spatial positions for reduction index `p`). A packed panel has `ldb == N0`; a 1×1 conv in
//!   NCHW can pass its input directly (`ldb = H·W`). Only `B[p·ldb + j]` for `j < n` is read.
//! - `C` is `m` rows of `n` floats at a row stride of `ldc` elements (e.g. output channels ×
//!   spatial positions in NCHW, `ldc = H·W`). Only those elements are read (accumulate) or
//!   written; everything else, including `C[i][n..N0]`, is left untouched.
//! - The epilogue covers conv + bias + residual (pre-fill C, accumulate) + ReLU (`lo = 0`,
//!   `hi = +inf`), ReLU6 / Clip (`lo`, `hi`). When a reduction is split into several calls
//!   (blocking over K), the first uses overwrite, later ones accumulate, and only the last
//!   passes the bias and the clamp. An accumulating call continues the sums stored by the
//!   call before (an f32 store and load are exact), so a reduction gives the same bits
//!   however it is split: the split ([`GEMM_F32_KC`]) is a choice of cache blocking only.
//! - `GEMM_SILU` applies SiLU to the accumulators before the store: a conv's SiLU epilogue
//!   then costs no pass that reloads the tile right after its stores (which, while the output
//!   lines are still being fetched for ownership, waits for memory). The compiler's Cranelift
//!   tile does not implement it: generated code passes it only to a runtime table's kernel and
//!   otherwise runs its own SiLU pass. `GEMM_HARDSWISH` likewise (MobileNetV3's stems and
//!   expansion convs), with the operations of the compiler's `hard_swish` (the clamp as
//!   `GEMM_CLAMP`'s, `1/6` rounded to f32), so the same bits.
//! - The clamp propagates NaN (a NaN sum stays NaN) and yields `hi` when `lo > hi`, in every
//!   variant.
//! - `k == 0` is valid (the sum is 0); `m == 0` or `n == 0` writes nothing.
//! - `side`, `side_len`: a hint, never dereferenced, no effect on results — `side_len`
//!   floats at `side` that the caller reads right after this call (a fused dyn_conv's next
//!   bank block, which its mixing then finds in L2). The AVX-512 tile prefetches them into
//!   L2 over its steps, one cache line a step ([`SIDE_LINES_PER_STEP`] with
//!   [`GEMM_SIDE_FAST`]), so the stream runs while the tile's FMAs do; the other variants
//!   ignore it. Null or 0 for none.
//!
//! Every variant uses the same `M0 × N0` tile, so panels packed at compile time (static
//! weights) are valid whichever variant the running CPU selects. Results of different variants
//! may differ by rounding (FMA or not, the same order of summation).
//!
//! The table also holds the SiLU activation kernel ([`silu`]), under the same rules: generated
//! code applies a conv's SiLU epilogue with it, 16 lanes at a time with AVX-512; and the
//! kernel-mixing kernel ([`mix`]), with which a dyn_conv mixes its bank into packed `A` panels;
//! the depthwise convolution kernels for one channel's plane ([`dw`], and [`dwp`] on a padded
//! copy of a small one) and for a block of channels of a 7×7-sized map ([`dwc`]); the
//! matrix-vector
//! kernel ([`gemv`]) of fully connected layers, which reads each weight row once for up to
//! eight samples; and the tile of stride-1 convolutions that reads `B` from the input in
//! place ([`taps`]).
//!
//! # Calling convention
//! The kernels are `extern "C"` functions ([`GemmF32Fn`]) called through the pointers of a
//! [`UkernelTable`]. They allocate nothing, use no global state, are reentrant and may run on
//! any number of threads at once (on disjoint `C`). No pointer needs any alignment beyond
//! `f32`'s (64-byte aligned panels are faster).
//!
//! # Selection
//! [`select`] (or the C symbol `dync_ukernels`) returns the best table for the running CPU:
//! AVX-512F, else AVX2 + FMA, else the portable [`generic`] kernel. [`table`] gives a named
//! variant when the CPU has it (tests, benches, `--no-ukernels`-style comparisons).

pub mod dw;
pub mod dwc;
pub mod dwp;
pub mod gemv;
mod generic;
pub mod mix;
pub mod silu;
pub mod taps;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use generic::gemm_f32_generic;

/// Rows of the GEMM tile (the `A` panel's width): output channels per tile.
pub const GEMM_F32_M0: usize = 8;
/// Columns of the GEMM tile (the `C` tile's width, the packed `B` panel's width): spatial
/// positions per tile.
pub const GEMM_F32_N0: usize = 32;

/// The longest reduction worth one call: a packed `B` panel of `KC × N0` floats (32 KiB) and
/// its `A` panel (8 KiB) stay in a 48 KiB L1 across calls that share them. Longer reductions
/// are split into calls of at most `KC` steps chained with [`GEMM_ACCUMULATE`] (which gives
/// the bits of one call).
pub const GEMM_F32_KC: usize = 256;

/// Flag: start the sums from the existing `C` instead of `+0.0`.
pub const GEMM_ACCUMULATE: u32 = 1;
/// Flag: clamp the result to `[lo, hi]` after the bias.
pub const GEMM_CLAMP: u32 = 2;
/// Flag: apply SiLU ([`silu::silu`]) after the clamp (runtime kernels only, see above).
pub const GEMM_SILU: u32 = 4;
/// Tile flag: apply HardSwish after the clamp (and after SiLU, should both be set).
pub const GEMM_HARDSWISH: u32 = 8;
/// Hint for the AVX-512 GEMM tile, no effect on results (the other variants ignore it): the
/// tile's `B`, read in place (`ldb != N0`), comes from memory, not from cache (the compiler
/// sets it for inputs larger than its `STREAM_BYTES`), so the tile also prefetches the `B`
/// columns of the next tile (`N0` on). Prefetching them from cache costs time (MobileNetV2 at
/// batch 1, two threads: 2.17 → 2.24 ms), so it is not the default. (The depthwise kernel
/// reads its plane row by row, which the hardware prefetchers follow.)
pub const GEMM_STREAM: u32 = 16;
/// Hint for the AVX-512 tiles, no effect on results: prefetch the `side` stream at
/// [`SIDE_LINES_PER_STEP`] lines a step instead of one (the compiler sets it when one line a
/// step of a chunk's calls would not cover the next bank block: dy-resnet50's and CondConv's
/// 7×7 dyn_convs, bound by that stream).
pub const GEMM_SIDE_FAST: u32 = 32;

/// Cache lines of the `side` stream the AVX-512 tiles prefetch per reduction step with
/// [`GEMM_SIDE_FAST`] (64 B each): 128 B per step of 8 cycles is more than one core's share of
/// memory bandwidth, so the stream is limited by memory, not by the hint. Without the flag,
/// one line a step: at two, a 14×14 dyn_conv's burst of prefetches slowed its own tiles
/// (dy-resnet50's layer-3 1×1 dyn_convs 0.093 → 0.083 ms at one).
pub const SIDE_LINES_PER_STEP: usize = 2;

/// The f32 GEMM tile; see the module documentation for the exact contract.
///
/// Arguments: `k`, `a`, `b`, `ldb`, `c`, `ldc`, `m`, `n`, `bias`, `flags`, `lo`, `hi`,
/// `side`, `side_len`.
///
/// # Safety
/// `m <= M0`, `n <= N0`, `ldb >= n` when `k > 1`; `a` is readable for `k·M0` floats; `b` for
/// the elements described above; `c` readable/writable for its `m × n` elements; `bias`
/// null or readable for `m` floats; `flags` holds only the bits defined here. A kernel from a
/// table may only run on a CPU for which [`select`] or [`table`] returned that table.
pub type GemmF32Fn = unsafe extern "C" fn(
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
);

/// The instruction set of a kernel table.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, any CPU.
    Generic = 0,
    /// x86-64 AVX2 + FMA (256-bit).
    Avx2 = 1,
    /// x86-64 AVX-512F (512-bit).
    Avx512 = 2,
}

impl Isa {
    /// Every variant, portable first.
    pub const ALL: [Isa; 3] = [Isa::Generic, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The micro-kernels of one ISA, as generated code sees them (`RtCtx::ukernels` points at
/// one; see [`crate::ctx`]). `m0`/`n0` repeat [`GEMM_F32_M0`]/[`GEMM_F32_N0`] so that code can check
/// the packing it was compiled for.
#[repr(C)]
#[derive(Debug)]
pub struct UkernelTable {
    pub gemm_f32: GemmF32Fn,
    pub gemm_f32_m0: usize,
    pub gemm_f32_n0: usize,
    pub isa: Isa,
    pub silu_f32: silu::SiluF32Fn,
    pub mix_f32: mix::MixF32Fn,
    /// Null where the ISA has no depthwise variant (AVX2: generated code keeps its own).
    pub dw_f32: Option<dw::DwF32Fn>,
    /// Null where the ISA has no small-map depthwise variant (AVX2).
    pub dwp_f32: Option<dwp::DwpF32Fn>,
    /// Null where the ISA has no channel-block depthwise variant (AVX2: generated code keeps
    /// its own per-channel code).
    pub dwc_f32: Option<dwc::DwcF32Fn>,
    /// Null where the ISA has no matrix-vector variant (AVX2).
    pub gemv_f32: Option<gemv::GemvF32Fn>,
    /// Null where the ISA has no in-place stride-1 convolution tile (AVX2: generated code
    /// packs `B` for the GEMM tile instead).
    pub taps_f32: Option<taps::TapsF32Fn>,
}

/// Byte offsets of [`UkernelTable`]'s fields, for generated code.
pub const UKERNELS_GEMM_F32: usize = std::mem::offset_of!(UkernelTable, gemm_f32);
pub const UKERNELS_GEMM_F32_M0: usize = std::mem::offset_of!(UkernelTable, gemm_f32_m0);
pub const UKERNELS_GEMM_F32_N0: usize = std::mem::offset_of!(UkernelTable, gemm_f32_n0);
pub const UKERNELS_ISA: usize = std::mem::offset_of!(UkernelTable, isa);
pub const UKERNELS_SILU_F32: usize = std::mem::offset_of!(UkernelTable, silu_f32);
pub const UKERNELS_MIX_F32: usize = std::mem::offset_of!(UkernelTable, mix_f32);
pub const UKERNELS_DW_F32: usize = std::mem::offset_of!(UkernelTable, dw_f32);
pub const UKERNELS_DWP_F32: usize = std::mem::offset_of!(UkernelTable, dwp_f32);
pub const UKERNELS_DWC_F32: usize = std::mem::offset_of!(UkernelTable, dwc_f32);
pub const UKERNELS_GEMV_F32: usize = std::mem::offset_of!(UkernelTable, gemv_f32);
pub const UKERNELS_TAPS_F32: usize = std::mem::offset_of!(UkernelTable, taps_f32);

static GENERIC: UkernelTable = UkernelTable {
    gemm_f32: generic::gemm_f32_tile,
    gemm_f32_m0: GEMM_F32_M0,
    gemm_f32_n0: GEMM_F32_N0,
    isa: Isa::Generic,
    silu_f32: silu::silu_generic,
    mix_f32: mix::mix_generic,
    dw_f32: Some(dw::dw_generic),
    dwp_f32: Some(dwp::dwp_generic),
    dwc_f32: Some(dwc::dwc_generic),
    gemv_f32: Some(gemv::gemv_generic),
    taps_f32: Some(taps::taps_generic),
};

/// The table of `isa` if this CPU can run it.
pub fn table(isa: Isa) -> Option<&'static UkernelTable> {
    match isa {
        Isa::Generic => Some(&GENERIC),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::avx2_table(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::avx512_table(),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => None,
    }
}

/// The kernel `slot` picks from every table this CPU runs that has one, with the table's ISA
/// name: the variants a kernel's test compares.
#[cfg(test)]
pub(crate) fn variants<F>(slot: impl Fn(&UkernelTable) -> Option<F>) -> Vec<(&'static str, F)> {
    Isa::ALL
        .into_iter()
        .filter_map(table)
        .filter_map(|t| slot(t).map(|f| (t.isa.name(), f)))
        .collect()
}

/// Whether `got` has `want`'s bits element by element (NaNs included), as far as both go:
/// the check of a variant against the portable kernel.
#[cfg(test)]
pub(crate) fn same_bits(got: &[f32], want: &[f32]) -> bool {
    got.iter()
        .zip(want)
        .all(|(a, b)| a.to_bits() == b.to_bits())
}

/// `p + off` elements, or null for a null `p`: an optional operand (a bias, a residual) from a
/// later row on.
fn offset_or_null(p: *const f32, off: usize) -> *const f32 {
    if p.is_null() {
        p
    } else {
        p.wrapping_add(off)
    }
}

/// The fastest table this CPU can run.
pub fn select() -> &'static UkernelTable {
    [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .find_map(table)
        .unwrap_or(&GENERIC)
}

/// [`select`] for C callers: never null, points at an immutable table valid for the whole
/// program.
#[no_mangle]
pub extern "C" fn dync_ukernels() -> *const UkernelTable {
    select()
}
