//! The GEMM convolution path, for `conv` and `dyn_conv` whose weights the memory plan packed
//! ([`crate::pack`]): per group, `Y[og × P] = W[og × K] · X̂[K × P]` computed by the GEMM tile
//! (`dync_runtime::ukernel`'s contract: [`M0`] channels × [`N0`] positions per call), which the
//! entry point provides — the runtime's AVX-512/AVX2 micro-kernel, or the Cranelift tile of
//! [`crate::tile`] (aarch64, `--no-ukernels`, no context).
//!
//! A tile is a run of at most `N0` consecutive output positions ([`Tiling`]). A 1×1 conv of
//! stride 1 without padding reads X̂ in place (the input, positions contiguous): its tiles are
//! the image's runs of `N0`, only the last one partial. Other convs pack X̂, so a tile may
//! cross output rows: when `lcm(ow, N0)` is at most [`MAX_SPAN`] positions, that many
//! positions (whole rows) are cut into full tiles of `N0` whose row segments are static (a
//! 28-wide map: 8 rows, 7 tiles, where one tile per row would leave 4 of 32 columns idle);
//! otherwise a tile is whole rows when they fit in `N0`, else a run of one row. The
//! reduction runs in chunks of whole input channels of at most `KC` steps (`KC / tiles` for a
//! whole-image task, whose tiles' panels share L1); chunks only block for the caches (the
//! tile's sums continue across chained calls, so results do not depend on them). For each
//! tile and chunk, X̂'s panel is packed into a stack buffer (im2col: `[chunk steps][N0]`,
//! zeros where a tap falls in the padding; row validity tested once per row, column ranges static; a conv
//! of stride 2 along the rows packs from a copy of its input split into even and odd columns,
//! made by the kernel's phase 0 in the scratch memory: [`splits`]), or —
//! for 1×1 convs of stride 1 without padding — read in place (`ldb` = H·W; from an input
//! larger than the caches, every call has the `GEMM_STREAM` hint, so that the micro-kernel
//! prefetches the next tile's columns: MobileNetV2's 32→16 1×1 conv over 112×112 at batch 8,
//! one thread, 1.32 → 0.67 ms). The panel then
//! stays in L1 while the tile runs it against every channel panel of the task; the first
//! chunk overwrites the output, later ones accumulate, the last adds the bias and applies the
//! fused clamp. A stride-1 conv whose output rows are as wide as its input's, or a stride-2
//! one with `⌈w/2⌉` output columns ([`reads_taps`]: ResNet's 3×3 convs, the stems, the stage
//! entries) packs nothing when the context has the in-place convolution tile
//! (`dync_runtime::ukernel::taps`): that tile reads each step's row from the input (the
//! phase planes of the split copy at stride 2) at the tap's offset, masked at the borders,
//! and runs a tile for all the task's channel panels and (packed weights) its whole
//! reduction in one call (the bits of chained calls: the tile contract's sums continue
//! across calls);
//! the weights are packed plain, which the packing path reads too. ResNet-18's 56×56 and
//! 28×28 3×3 convs at one thread 1.11 → 0.95 ms and 1.06 → 0.94 ms. A fused residual is
//! copied into the output tile before the first chunk, which then accumulates too (the tile
//! contract's conv + bias + residual); the in-place tile reads it in place instead, and when
//! the memory plan put the result in the residual's buffer (`MemoryPlan::in_place`) there is
//! nothing to copy. A fused SiLU or
//! HardSwish is the last call's epilogue (`GEMM_SILU`, `GEMM_HARDSWISH`) when the tile is the
//! runtime's micro-kernel; otherwise the activation runs over the output tile after the last
//! chunk ([`super::conv::act`]).
//!
//! Tasks: image × group × block of channel panels × tile (a run of tiles when the block's A
//! panels exceed L2, the whole image on 7×7 maps: [`Schedule`]), with as many panels per
//! block as leave [`MIN_TASKS`] tasks (each task packs X̂ once per tile and chunk for all its
//! panels). A `dyn_conv` runs in two phases (see [`super::phases`]): first one task per group
//! and channel panel mixes that panel's kernels for every image straight into the packed
//! layout in the scratch memory (W̃[n] = Σᵢ c[n,·,i] · bank[i], the bank read once per block
//! of [`MIX_STEPS`] steps for all images, [`IMAGES`] images per pass over a step), and the
//! mixed biases; then the convolution runs as a conv's, reading image n's kernels. Every output element is computed by the same
//! instructions whatever tasks run together, so results do not depend on the thread count.
//!
//! Requires: the weight (bank) operand packed with the packing of this convolution.

use super::conv::{act_region, load_x, over_tile, streams};
use super::kernel::{as_i64, BufId, Kernel, LResult, LANES};
use super::nest::{chunk_len, chunked};
use super::pool::axes;
use super::window::Axis;
use crate::abi::{taps_signature, tile_signature};
use crate::pack::Packing;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use dync_ir::ops::{Act, Clamp, Conv, DynConv};
use dync_ir::TensorType;
use dync_runtime::ukernel::taps::{TAPS_COLUMNS, TAPS_MAX, TAP_GEO_FIELDS};
use dync_runtime::ukernel::{
    GEMM_ACCUMULATE, GEMM_CLAMP, GEMM_F32_KC as KC, GEMM_F32_M0 as M0, GEMM_F32_N0 as N0,
    GEMM_HARDSWISH, GEMM_SIDE_FAST, GEMM_SILU, GEMM_STREAM, SIDE_LINES_PER_STEP,
};

/// Tasks the convolution phase is split into at least, when it has the work for them (for 2–8
/// threads with some load balance).
const MIN_TASKS: usize = 8;
/// The longest run of whole output rows a packed conv's tiling cuts into full tiles.
const MAX_SPAN: usize = 8 * N0;
/// Tiles of an image up to which one task covers them all (7×7 maps: two), so that each A
/// chunk is read (or mixed) once for all of them; their packed X̂ panels are on the stack
/// together.
const WHOLE_TILES: usize = 2;
/// Bytes of a task's A panels above which its tiles run in runs of [`RUN_TILES`] (see
/// [`Schedule`]): three quarters of a 2 MiB L2, leaving room for the C tiles and X̂'s panel.
const A_L2_BYTES: usize = 3 << 19;
/// Tiles per task when the A panels do not stay in L2 ([`Schedule`]).
const RUN_TILES: usize = 4;
/// Images mixed per pass over a step of the bank (2 accumulators each fit the 16 registers).
const IMAGES: usize = 4;
/// Steps of the bank mixed for all images before moving on (its panels stay in L1).
const MIX_STEPS: usize = 64;
/// Most images of a fused dyn_conv ([`fused`]): their mixed chunks (a `KC`-step chunk of one
/// panel each, 8 KB) are on the stack together. CondConv 8 experts' 7×7 pointwise dyn_convs
/// at batch 8, two threads, alternating runs, against mixing in phase 0: 0.73 → 0.70 ms (the
/// expansions) and 0.71 → 0.67 ms (the projections), the model 27.6 → 27.2 ms.
const FUSED_IMAGES: usize = 8;
/// Tiles of an image up to which a dyn_conv whose tiles read X̂ in place (1×1, or the in-place
/// convolution tile) fuses its mixing ([`fused`]), its tasks covering every tile of the image
/// (14×14 maps: seven), so that each mixed chunk serves them all. dy-resnet50's layer-3
/// dyn_convs at two threads, alternating runs on a quiet host: 1×1 0.096 → 0.084–0.092 ms,
/// 3×3 0.200–0.204 → 0.185–0.189 ms (with the tiles' prefetch paced: [`side_part`]).
const FUSED_TILES: usize = 8;
/// Channel panels of a fused dyn_conv's chunk mixed before one in-place tile call runs them
/// all (their mixed chunks, 32 KB at most, stay in L1): a call per panel paid its offsets,
/// masks and `B` rows for eight rows (dy-resnet50's 7×7 3×3 dyn_convs at two threads, in
/// alternating runs, 0.383–0.390 → 0.370–0.377 ms).
const MIXED_PANELS: usize = 4;

/// The static geometry of one GEMM convolution.
struct Gemm {
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    oh: usize,
    ow: usize,
    cg: usize,
    og: usize,
    kh: usize,
    kw: usize,
    ay: Axis,
    ax: Axis,
    /// Reduction steps per channel (C/G·kh·kw) and channel panels per group.
    k: usize,
    mblocks: usize,
    groups: usize,
    /// The tiling of the output positions.
    t: Tiling,
    /// A dyn_conv mixing its kernels chunk by chunk inside the convolution ([`fused`]): the
    /// bank is read once, while tiles run, and no mixed kernels go through memory.
    fused: bool,
    /// A task covers every tile of its image ([`Tiling::whole`], or fused).
    whole: bool,
    /// X̂ is the input itself (1×1, stride 1, no padding).
    direct: bool,
    /// X̂ is packed from the column-split copy of the input in the scratch memory ([`splits`]).
    split: bool,
    /// The tiles may read X̂ in place with the in-place convolution tile ([`reads_taps`]) when
    /// the context has one.
    taps: bool,
    /// The tile's flags for every call: `GEMM_STREAM` when X̂ is read in place from an input
    /// larger than the caches hold ([`super::conv::streams`]), else none.
    hint: u32,
    /// Input channels per reduction chunk, and chunks.
    cc: usize,
    chunks: usize,
}

impl Gemm {
    /// The geometry of a convolution of `x` into `y` with weights of shape `ws` (a dyn_conv's
    /// bank without its expert axis); `mixing` for a dyn_conv, whose mixing is then fused
    /// into the convolution when [`fused`] allows it.
    fn new(
        x: &[usize],
        y: &[usize],
        ws: &[usize],
        (strides, pads, dilations): ([usize; 2], [usize; 4], [usize; 2]),
        p: &Packing,
        mixing: bool,
    ) -> Gemm {
        let [ay, ax] = axes(x, y, [ws[2], ws[3]], strides, pads, dilations);
        let (oh, ow) = (y[2], y[3]);
        let taps = ws[2] * ws[3];
        let direct = is_direct(taps, strides, pads);
        let t = Tiling::new(oh, ow, direct);
        // A whole-image task of packed tiles keeps every tile's X̂ panel and the A chunk in L1
        // together.
        let steps = if t.whole() { KC / t.tiles().max(1) } else { KC };
        let cc = (steps / taps).clamp(1, ws[1].max(1));
        let in_place = reads_taps(x, y, ws, (strides, pads, dilations), p, !mixing);
        let mixed_in_place = mixing && fused(x[0], &t, direct, in_place);
        Gemm {
            batch: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            o: y[1],
            oh,
            ow,
            cg: ws[1],
            og: p.og,
            kh: ws[2],
            kw: ws[3],
            ay,
            ax,
            k: p.k,
            mblocks: p.mblocks(),
            groups: p.groups,
            fused: mixed_in_place,
            whole: mixed_in_place || t.whole(),
            t,
            direct,
            split: false,
            taps: in_place,
            hint: if direct && streams(x) { GEMM_STREAM } else { 0 },
            cc,
            chunks: ws[1].div_ceil(cc),
        }
    }

    fn positions(&self) -> usize {
        self.oh * self.ow
    }

    fn has_work(&self) -> bool {
        self.batch * self.o * self.positions() * self.cg > 0
    }

    /// The (chunk, run) a weight packed for this convolution is blocked in
    /// ([`Packing::offset`]): the steps of one reduction chunk and the panels of one task.
    fn blocked(&self) -> (usize, usize) {
        (self.cc * self.kh * self.kw, self.schedule().per)
    }

    /// The tasks of the convolution phase.
    fn schedule(&self) -> Schedule {
        Schedule::new(
            self.task_batch(),
            self.groups,
            (self.mblocks, self.k),
            &self.t,
            self.whole,
        )
    }

    /// Images a task of the convolution phase covers ([`Schedule`] counts tasks of the other
    /// images): all of them when the mixing is fused, else one.
    fn task_batch(&self) -> usize {
        if self.fused {
            1
        } else {
            self.batch
        }
    }

    /// Images each task of the convolution phase computes: all of them when the mixing is
    /// fused ([`Gemm::task_batch`]), else one.
    fn task_images(&self) -> usize {
        if self.fused {
            self.batch
        } else {
            1
        }
    }

    /// Floats between consecutive mixed chunks in a fused dyn_conv's stack buffer (a chunk
    /// of at most `KC` steps, or one tap's whole reduction): the images' chunks of one panel,
    /// or the in-place tile's panels.
    fn mixed_ld(&self) -> usize {
        KC.max(self.kh * self.kw) * M0
    }

    /// Bytes of the packed X̂ panel (0 when X̂ is read in place).
    fn panel_bytes(&self) -> usize {
        if self.direct {
            0
        } else {
            self.cc * self.kh * self.kw * N0 * 4
        }
    }

    /// f32 elements of one image's packed kernels in the dyn_conv scratch (none when the
    /// mixing is fused).
    fn image_elems(&self) -> usize {
        if self.fused {
            0
        } else {
            self.groups * self.mblocks * self.k * M0
        }
    }
}

/// Where the tile's `A` panels come from.
enum ASource<'a> {
    /// Packed panels in a buffer, `per_image` elements apart for consecutive images (0:
    /// shared by every image); `blocked` when laid out in the convolution's runs and chunks
    /// ([`blocking`]), else `[G][panel][K][M0]`.
    Packed {
        buf: BufId,
        per_image: i64,
        blocked: bool,
    },
    /// Mixed from the bank chunk by chunk into the stack buffer `abuf`, right before the tiles
    /// use them (a fused dyn_conv); `coefs` holds the panel's coefficients.
    Mixed {
        mix: &'a Mix<'a>,
        abuf: Value,
        coefs: Value,
    },
}

/// Where the tile's `A` panels and bias come from.
struct Weights<'a> {
    a: ASource<'a>,
    /// Bias buffer, its first element and elements between images.
    bias: Option<(BufId, i64, i64)>,
    /// The fused epilogue: the residual operand (copied into the output tile before the first
    /// chunk, unless `residual_in_place`), the clamp (applied by the last chunk's call), the
    /// activation (a pass over the tile after it).
    residual: Option<BufId>,
    /// The output's buffer is the residual's (the memory plan's `in_place`): the first chunk
    /// accumulates onto it where it lies.
    residual_in_place: bool,
    clamp: Option<Clamp>,
    act: Option<Act>,
}

pub(crate) fn conv_attrs(op: &Conv) -> ([usize; 2], [usize; 4], [usize; 2]) {
    (op.strides, op.pads, op.dilations)
}

/// X̂ is the input itself: a 1×1 conv of stride 1 without padding.
fn is_direct(taps: usize, strides: [usize; 2], pads: [usize; 4]) -> bool {
    taps == 1 && strides == [1, 1] && pads == [0; 4]
}

/// Whether the tiles of a convolution of `x` into `y` with weights of shape `ws` and packing
/// `p` can read X̂ in place with the runtime's in-place convolution tile
/// (`dync_runtime::ukernel::taps`): it packs X̂ (not [`is_direct`]), has at most `TAPS_MAX`
/// taps and weights over its whole group's channels, and either stride 1 and output rows as
/// wide as its input's (each tap then a constant shift of the positions), or — a conv, whose
/// phase 0 then splits its input into phase planes ([`split_copy`]), `phased` — stride 2
/// and `⌈w/2⌉` output columns.
pub(crate) fn reads_taps(
    x: &[usize],
    y: &[usize],
    ws: &[usize],
    (strides, pads, _): ([usize; 2], [usize; 4], [usize; 2]),
    p: &Packing,
    phased: bool,
) -> bool {
    let ([_, c, _, w], [_, _, _, ow], [_, cg, kh, kw]) = (x, y, ws) else {
        return false;
    };
    let taps = kh.saturating_mul(*kw);
    let rows = match strides {
        [1, 1] => ow == w,
        [2, 2] => phased && *ow == w.div_ceil(2),
        _ => false,
    };
    rows && !is_direct(taps, strides, pads)
        && taps <= TAPS_MAX
        && p.k == cg.saturating_mul(taps)
        && c.checked_div(p.groups) == Some(*cg)
}

/// How the output positions of a `[.., oh, ow]` result are tiled. The positions are cut into
/// tiling rows of `span` consecutive positions (`rows` whole output rows of a packed conv),
/// each into the same tiles `cols` (first position in the row, width ≤ `N0`). Only a prefix of
/// the tiles in row-major order holds positions (the last tiling row may extend past the
/// image, and its last non-empty tile is clipped at run time).
#[derive(Clone)]
struct Tiling {
    rows: usize,
    span: usize,
    cols: Vec<(usize, usize)>,
    row_blocks: usize,
    positions: usize,
}

impl Tiling {
    fn new(oh: usize, ow: usize, direct: bool) -> Tiling {
        let positions = oh * ow;
        let ow1 = ow.max(1);
        let lcm = ow1 / gcd(ow1, N0) * N0;
        let (rows, span) = if direct {
            (1, N0)
        } else if lcm <= MAX_SPAN {
            (lcm / ow1, lcm)
        } else if ow <= N0 {
            let rows = (N0 / ow1).clamp(1, oh.max(1));
            (rows, rows * ow)
        } else {
            (1, ow)
        };
        let cols = (0..span)
            .step_by(N0)
            .map(|c| (c, N0.min(span - c)))
            .collect();
        Tiling {
            rows,
            span,
            cols,
            row_blocks: positions.div_ceil(span.max(1)),
            positions,
        }
    }

    /// The first position of each non-empty tile of the image, in row-major order (tiling
    /// row, then column), with its tiling row and column.
    fn starts(&self) -> impl Iterator<Item = (usize, (usize, usize), usize)> + '_ {
        (0..self.row_blocks)
            .flat_map(move |rb| {
                self.cols
                    .iter()
                    .map(move |&col| (rb, col, rb * self.span + col.0))
            })
            .take_while(move |&(_, _, pos0)| pos0 < self.positions)
    }

    /// The in-place convolution tile's tiling: runs of `span` consecutive positions, one tile
    /// each, `span` the cheapest by [`taps_cost`] of `N0` and the wider tiles that tile takes
    /// (up to `TAPS_COLUMNS`), a wider one only when at least a fifth cheaper: a 7×7 map is
    /// one tile of 49 columns instead of 32 + 17 (64 computed; ResNet-18's 7×7 3×3 convs at
    /// one thread 91 → 109 GFLOP/s); a 14×14 map keeps seven tiles of `N0` (four of 49, 9 %
    /// cheaper by the estimate, ran 5 % slower), 28×28 and 56×56 maps too.
    fn taps(oh: usize, ow: usize) -> Tiling {
        let positions = oh * ow;
        let cost = |span: usize| -> usize {
            (0..positions)
                .step_by(span)
                .map(|p| taps_cost(span.min(positions - p)))
                .sum()
        };
        let narrow = cost(N0);
        let span = (N0 + 1..=TAPS_COLUMNS)
            .map(|s| (cost(s), s))
            .filter(|&(c, _)| 5 * c < 4 * narrow)
            .min()
            .map_or(N0, |(_, s)| s);
        Tiling {
            rows: 1,
            span,
            cols: vec![(0, span)],
            row_blocks: positions.div_ceil(span),
            positions,
        }
    }

    /// Tiles of the image that hold positions.
    fn tiles(&self) -> usize {
        self.starts().count()
    }

    /// Whether a task covers every tile of its image (at most [`WHOLE_TILES`] of them): each
    /// chunk of a channel panel's A then serves them all while it is in L1.
    fn whole(&self) -> bool {
        self.tiles() <= WHOLE_TILES
    }

    /// Whether the last tile is partial (its column count is computed at run time).
    fn clipped(&self) -> bool {
        self.row_blocks * self.span > self.positions
    }
}

/// The in-place convolution tile's cost of a tile of `n` columns, per reduction step and 24
/// rows, in instructions: its FMAs and the step's fixed work (the tap's offset and masks, the
/// `B` loads and the prefetches, about 20), which bounds that tile on a core that issues
/// about six instructions a cycle. From 17 to 32 columns it runs two tiles of 12 rows (two
/// vectors), otherwise three of 8 rows (one vector, or three and a FMA for the spare column).
fn taps_cost(n: usize) -> usize {
    const STEP: usize = 20;
    match n {
        0 => 0,
        1..=16 => 3 * (8 + STEP),
        17..=32 => 2 * (24 + STEP),
        _ => 3 * (8 * n.min(48).div_ceil(16) + n.saturating_sub(48) + STEP),
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Channel panels per task of the convolution: as many as leave at least [`MIN_TASKS`] tasks
/// (images × groups × tile runs × panel blocks), since every task packs X̂'s panels for its
/// tiles once and reuses them for all its channel panels.
fn panels_per_task(units: usize, mblocks: usize) -> usize {
    let blocks = MIN_TASKS.div_ceil(units.max(1)).clamp(1, mblocks.max(1));
    mblocks.div_ceil(blocks).max(1)
}

/// How the convolution phase is cut into tasks: image × group × block of `per` channel panels
/// × run of `run` consecutive tiles (`runs` of them per image).
///
/// A whole-image task ([`Tiling::whole`]) packs all its tiles' X̂ panels per chunk, so each A
/// chunk serves them all from L1. Otherwise a task runs its tiles one by one inside each
/// chunk: X̂'s panel stays in L1 for all the task's channel panels, whose A chunks come from
/// L2. When the A panels of a block exceed [`A_L2_BYTES`] (dilated ResNet-50's 3×3 2048→512
/// conv on 28×28: 37 MB), one tile per task would stream them from L3 or memory once per tile;
/// runs of [`RUN_TILES`] tiles read each A chunk once per run while it is in L2.
struct Schedule {
    per: usize,
    blocks: usize,
    run: usize,
    runs: usize,
}

impl Schedule {
    /// `whole`: one task takes every tile of its image ([`Gemm::whole`]).
    fn new(
        batch: usize,
        groups: usize,
        (mblocks, k): (usize, usize),
        t: &Tiling,
        whole: bool,
    ) -> Schedule {
        let tiles = t.tiles().max(1);
        let with_run = |run: usize| {
            let runs = tiles.div_ceil(run);
            let per = panels_per_task(batch * groups * runs, mblocks);
            Schedule {
                per,
                blocks: mblocks.div_ceil(per),
                run,
                runs,
            }
        };
        if whole {
            let s = with_run(tiles);
            // A fused dyn_conv's task over more than `WHOLE_TILES` tiles (14×14 at batch 1)
            // takes at least `MIXED_PANELS` panels: its first chunk is mixed with nothing
            // prefetching it, and the in-place tile runs that many panels a call.
            // dy-resnet50's layer-3 dyn_convs at two threads: 3×3 0.184 → 0.181 ms, 1×1
            // 0.089 → 0.086 ms (eight panels: 0.175 and 0.083 ms, but two tasks for its 16
            // panels, which more threads could not share).
            if tiles > WHOLE_TILES && s.per < MIXED_PANELS {
                let per = MIXED_PANELS.min(mblocks.max(1));
                return Schedule {
                    per,
                    blocks: mblocks.div_ceil(per),
                    ..s
                };
            }
            return s;
        }
        let each = with_run(1);
        if each.per * k * M0 * 4 > A_L2_BYTES {
            with_run(RUN_TILES.min(tiles))
        } else {
            each
        }
    }

    fn tasks(&self, batch: usize, groups: usize) -> usize {
        (batch * groups * self.blocks * self.runs).max(1)
    }
}

/// Whether the convolution of `x` with packing `p` reads X̂ in place (see [`is_direct`]).
fn direct_for(x: &TensorType, p: &Packing, strides: [usize; 2], pads: [usize; 4]) -> bool {
    let cg = x.shape.get(1).and_then(|c| c.checked_div(p.groups));
    let taps = cg.and_then(|cg| p.k.checked_div(cg)).unwrap_or(0);
    is_direct(taps, strides, pads)
}

/// Whether a conv of `x` with packing `p` packs X̂ (im2col) rather than reading it in place.
fn packs(x: &TensorType, p: &Packing, strides: [usize; 2], pads: [usize; 4]) -> bool {
    !direct_for(x, p, strides, pads)
}

/// Whether a conv of `x` with packing `p` packs X̂ from a column-split copy of its input
/// ([`split_copy`], the kernel's phase 0): stride 2 along the rows, where the packing would gather
/// every other column (two loads and a shuffle per four) at every tap of every tile, while the
/// copy gathers each input element once and the packing then copies contiguous runs.
/// ResNet's 7×7 stem, the 3×3 stems of the MobileNets and EfficientNets, the stride-2 convs
/// of ResNet's stages. (A dyn_conv's two phases are its mixing's and its convolution's.)
pub(crate) fn splits(op: &Conv, x: &TensorType, p: &Packing) -> bool {
    op.strides[1] == 2 && packs(x, p, op.strides, op.pads)
}

/// f32 elements of scratch memory of a conv that [`splits`]: the split copy of its input, in
/// either layout of [`split_copy`] (phase planes of `⌈h/2⌉ × ⌈w/2⌉`: up to a row and a
/// column more than the input).
pub(crate) fn split_scratch(x: &TensorType) -> usize {
    match x.shape[..] {
        [n, c, h, w] => [n, c, 2 * h.div_ceil(2), 2 * w.div_ceil(2)]
            .into_iter()
            .fold(1usize, |a, d| a.saturating_mul(d)),
        _ => usize::MAX,
    }
}

/// Where a split row's odd columns start: after its `⌈w/2⌉` even ones ([`split_copy`]).
fn split_half(w: usize) -> usize {
    w.div_ceil(2)
}

/// Planes (image × channel) per task of the split copy ([`split_copy`]).
fn split_chunk(xs: &[usize]) -> usize {
    chunk_len(xs[0].saturating_mul(xs[1]), xs[2].saturating_mul(xs[3]), 1)
}

/// Tasks of phase `phase` of a conv on the GEMM path: its split copy's ([`splits`]) and its
/// convolution's.
pub(crate) fn conv_phase_tasks(
    op: &Conv,
    x: &TensorType,
    y: &TensorType,
    p: &Packing,
    phase: usize,
) -> usize {
    if op.in_scale && phase == 0 {
        let panels = p.groups.saturating_mul(p.mblocks());
        return x.shape[0].saturating_mul(panels).max(1);
    }
    if splits(op, x, p) && phase == 0 {
        let xs = &x.shape;
        let planes = xs[0].saturating_mul(xs[1]);
        return planes.div_ceil(split_chunk(xs)).max(1);
    }
    conv_tasks(op, x, y, p)
}

/// Tasks of a conv on the GEMM path.
pub(crate) fn conv_tasks(op: &Conv, x: &TensorType, y: &TensorType, p: &Packing) -> usize {
    let direct = direct_for(x, p, op.strides, op.pads);
    let (batch, t) = (x.shape[0], Tiling::new(y.shape[2], y.shape[3], direct));
    Schedule::new(batch, p.groups, (p.mblocks(), p.k), &t, t.whole()).tasks(batch, p.groups)
}

/// Tasks of phase `phase` of a dyn_conv on the GEMM path: mixing (one task per group and
/// channel panel, all images), then the convolution.
pub(crate) fn dyn_tasks(
    op: &DynConv,
    (x, bank): (&TensorType, &TensorType),
    y: &TensorType,
    p: &Packing,
    phase: usize,
) -> usize {
    match (phase, dyn_gemm(op, &x.shape, &y.shape, &bank.shape, p)) {
        (0, _) | (_, None) => (p.groups * p.mblocks()).max(1),
        (_, Some(g)) => g.schedule().tasks(g.task_batch(), g.groups),
    }
}

/// The geometry of a dyn_conv of `x` into `y` with the bank `bank` (None unless both maps
/// have four axes and the bank five).
fn dyn_gemm(op: &DynConv, x: &[usize], y: &[usize], bank: &[usize], p: &Packing) -> Option<Gemm> {
    let ws = bank.get(1..).filter(|ws| ws.len() == 4)?;
    let attrs = (op.strides, op.pads, op.dilations);
    (x.len() == 4 && y.len() == 4).then(|| Gemm::new(x, y, ws, attrs, p, true))
}

/// Whether a dyn_conv mixes inside its convolution phase ([`Gemm::fused`]): its tasks can
/// cover whole images (its tiles are [`Tiling::whole`], or, at batch 1, at most
/// [`FUSED_TILES`] read X̂ in place: `direct`, or `taps` with the in-place convolution tile;
/// CondConv's 14×14 1×1 dyn_convs at batch 8 ran 0.66 → 0.85 ms fused), and it has one
/// image or up to [`FUSED_IMAGES`] of a 1×1 conv read in place, whose tasks then take every
/// image
/// ([`Gemm::task_batch`]): each chunk of the bank, read once, is mixed for all of them and
/// runs their tiles, while those tiles prefetch the next chunk. Otherwise phase 0 mixes
/// every image's kernels once, reading the bank once for all of them, before the
/// convolution, and the bank streams from memory with no tile running.
fn fused(batch: usize, t: &Tiling, direct: bool, taps: bool) -> bool {
    let whole = t.whole() || (batch == 1 && (direct || taps) && t.tiles() <= FUSED_TILES);
    whole && (batch == 1 || (direct && batch <= FUSED_IMAGES))
}

/// Scratch f32 elements of a dyn_conv on the GEMM path: every image's packed kernels (none
/// when fused), then the mixed biases [N, O].
pub(crate) fn dyn_scratch(
    op: &DynConv,
    (x, bank): (&TensorType, &TensorType),
    y: &TensorType,
    p: &Packing,
) -> usize {
    let n = x.shape.first().copied().unwrap_or(0);
    let kernels = match dyn_gemm(op, &x.shape, &y.shape, &bank.shape, p) {
        Some(g) if g.fused => Some(0),
        _ => p.expert_elems(),
    };
    kernels
        .and_then(|e| e.checked_add(p.groups.checked_mul(p.og)?))
        .and_then(|e| e.checked_mul(n))
        .unwrap_or(usize::MAX)
}

/// The blocking of a conv's packed weight: `p` (its packing in one chunk and one run) with the
/// chunks and runs of its convolution ([`Packing::offset`]), so that each task reads its A
/// panels in order.
pub(crate) fn blocking(
    op: &Conv,
    x: &TensorType,
    y: &TensorType,
    w: &TensorType,
    p: Packing,
) -> Packing {
    let g = Gemm::new(&x.shape, &y.shape, &w.shape, conv_attrs(op), &p, false);
    // Tiles that may read X̂ in place run each panel's whole reduction in one call; an
    // input-scaled conv's phase 0 reads the plain layout.
    let (chunk, run) = if g.taps || op.in_scale {
        (g.k, g.mblocks)
    } else {
        g.blocked()
    };
    Packing { chunk, run, ..p }
}

/// The blocking of a dyn_conv's packed bank ([`Mix`]): `p` with the convolution's chunks and
/// runs when the mixing is fused into it, else blocks of [`MIX_STEPS`] steps panel by panel.
pub(crate) fn dyn_blocking(
    op: &DynConv,
    x: &TensorType,
    y: &TensorType,
    bank: &TensorType,
    p: Packing,
) -> Packing {
    let (chunk, run) = dyn_layout(op, &x.shape, &y.shape, &bank.shape, &p);
    Packing { chunk, run, ..p }
}

/// The (chunk, run) of a dyn_conv's blocked bank; see [`dyn_blocking`].
fn dyn_layout(
    op: &DynConv,
    x: &[usize],
    y: &[usize],
    bank: &[usize],
    p: &Packing,
) -> (usize, usize) {
    match dyn_gemm(op, x, y, bank, p) {
        None => (p.chunk, p.run),
        Some(g) if g.fused => g.blocked(),
        Some(g) => (MIX_STEPS.min(g.k), 1),
    }
}

/// Scratch f32 elements of a conv with an input scale on the GEMM path: every image's scaled
/// weights, in the plain packed layout.
pub(crate) fn scale_scratch(x: &TensorType, p: &Packing) -> usize {
    p.expert_elems()
        .and_then(|e| e.checked_mul(*x.shape.first()?))
        .unwrap_or(usize::MAX)
}

/// Phase 0 of a conv with an input scale (`in_scale`): one task per image and channel panel
/// writes the panel's weights (packed plain) times the image's scale of each step's input
/// channel into the scratch memory, image after image; phase 1 convolves each image with its
/// own (the `se_fold` pass sees that these are fewer multiplies than the feature map's).
fn scale_weights(k: &mut Kernel, g: &Gemm, p: &Packing, scale: BufId) -> LResult {
    let panels = as_i64(p.groups * p.mblocks())?;
    let taps = as_i64(g.kh * g.kw)?;
    let per_image = as_i64(p.expert_elems().unwrap_or(usize::MAX))?;
    k.for_tasks(|k, t| {
        let n = k.b.ins().udiv_imm_u(t, panels);
        let pnl = k.b.ins().urem_imm_u(t, panels);
        let grp = k.b.ins().udiv_imm_u(pnl, as_i64(p.mblocks())?);
        // Scale element of the group's first input channel of image n.
        let s0 = k.b.ins().imul_imm_s(n, as_i64(g.c)?);
        let s0 = k.mul_add(s0, grp, as_i64(g.cg)?);
        let src0 = k.b.ins().imul_imm_s(pnl, as_i64(g.k * M0)?);
        let dst0 = k.mul_add(src0, n, per_image);
        let zero = k.iconst(0);
        let steps = k.iconst(as_i64(g.k)?);
        scale_steps(k, scale, s0, (zero, steps), taps, &mut |k, step, sc| {
            let src = k.mul_add(src0, step, as_i64(M0)?);
            let dst = k.mul_add(dst0, step, as_i64(M0)?);
            for l in (0..M0).step_by(LANES) {
                let v = k.load_off(BufId::In(1), types::F32X4, src, as_i64(l)?, false);
                let v = k.b.ins().fmul(v, sc);
                k.store_off(BufId::Scratch, dst, as_i64(l)?, v);
            }
            Ok(())
        })
    })
}

/// Runs `row(s, scale)` for each step `s` of `s0 .. s0 + steps` with the input scale of its
/// channel (`scale[base + s div taps]`, as a vector), for an input-scaled conv's or dyn_conv's
/// weights.
fn scale_steps(
    k: &mut Kernel,
    scale: BufId,
    base: Value,
    (s0, steps): (Value, Value),
    taps: i64,
    row: &mut dyn FnMut(&mut Kernel, Value, Value) -> LResult,
) -> LResult {
    let end = k.b.ins().iadd(s0, steps);
    k.loop_dyn(s0, end, |k, step| {
        let ci = k.b.ins().udiv_imm_u(step, taps);
        let si = k.b.ins().iadd(base, ci);
        let sc = k.load_f32(scale, si, LANES, false);
        row(k, step, sc)
    })
}

/// A conv's kernel: with a split copy ([`splits`]) phase 0 makes it and phase 1 convolves;
/// with an input scale phase 0 scales its weights per image ([`scale_weights`]) and phase 1
/// convolves with them; otherwise its one phase convolves.
pub(crate) fn lower_conv(k: &mut Kernel, op: &Conv, p: &Packing, phase: usize) -> LResult {
    let (xs, ys, ws) = (
        k.shape(BufId::In(0)),
        k.shape(BufId::Out),
        k.shape(BufId::In(1)),
    );
    let split = splits(op, &k.buf(BufId::In(0)).ty, p);
    let g = Gemm {
        split,
        ..Gemm::new(&xs, &ys, &ws, conv_attrs(op), p, false)
    };
    let scale = op.scale_index(k.n_inputs());
    if let Some(si) = scale {
        if split || (p.chunk, p.run) != (g.k, g.mblocks) {
            return Err(crate::error::CodegenError::cranelift(
                &k.name,
                format!(
                    "an input-scaled conv needs stride 1 and its weight packed plain, not {p:?}"
                ),
            ));
        }
        if phase == 0 {
            return scale_weights(k, &g, p, BufId::In(si));
        }
    }
    if split && phase == 0 {
        // Phase planes for the in-place tile when the context has it, else split rows.
        let taps = k.taps_fn().filter(|_| g.taps);
        return k.ukernel_or(taps, |k, _| split_copy(k, true), |k| split_copy(k, false));
    }
    let blocked = (p.chunk, p.run) == g.blocked();
    if !blocked && (p.chunk, p.run) != (g.k, g.mblocks) {
        return Err(crate::error::CodegenError::cranelift(
            &k.name,
            format!("the weight's packing {p:?} is neither this conv's blocking nor plain"),
        ));
    }
    let a = match scale {
        // Each image's weights, scaled by phase 0.
        Some(_) => ASource::Packed {
            buf: BufId::Scratch,
            per_image: as_i64(p.expert_elems().unwrap_or(usize::MAX))?,
            blocked: false,
        },
        None => ASource::Packed {
            buf: BufId::In(1),
            per_image: 0,
            blocked,
        },
    };
    let wts = Weights {
        a,
        bias: op.bias_index(k.n_inputs()).map(|i| (BufId::In(i), 0, 0)),
        residual: op.residual_index(k.n_inputs()).map(BufId::In),
        residual_in_place: k.residual_in_place,
        clamp: op.clamp,
        act: op.act,
    };
    convolve(k, &g, &wts)
}

/// Phase 0 of a dyn_conv mixes every image's kernels (and biases) into the scratch memory in
/// the packed layout; phase 1 convolves with them. Fused ([`Gemm::fused`]): phase 0 mixes the
/// biases only, phase 1 mixes each kernel chunk right before the tiles use it.
pub(crate) fn lower_dyn(k: &mut Kernel, op: &DynConv, p: &Packing, phase: usize) -> LResult {
    let (xs, ys, bank) = (
        k.shape(BufId::In(0)),
        k.shape(BufId::Out),
        k.shape(BufId::In(2)),
    );
    let g = Gemm::new(
        &xs,
        &ys,
        &bank[1..],
        (op.strides, op.pads, op.dilations),
        p,
        true,
    );
    let kernels = as_i64(g.batch * g.image_elems())?;
    if !g.has_work() {
        return Ok(());
    }
    if (p.chunk, p.run) != dyn_layout(op, &xs, &ys, &bank, p) {
        return Err(crate::error::CodegenError::cranelift(
            &k.name,
            format!("the bank's packing {p:?} is not this dyn_conv's blocking"),
        ));
    }
    let mix = Mix {
        op,
        g: &g,
        per_channel: k.shape(BufId::In(1)).len() == 3,
        experts: bank[0],
        kernels,
        scale: op.scale_index().map(BufId::In),
    };
    if phase == 1 {
        let has_bias = op.bias || op.bias_bank;
        let wts = Weights {
            a: if g.fused {
                ASource::Mixed {
                    mix: &mix,
                    abuf: k.stack_buffer(
                        g.mixed_ld()
                            * 4
                            * if g.taps {
                                MIXED_PANELS
                            } else {
                                g.task_images()
                            },
                    )?,
                    coefs: k.stack_buffer(g.task_images() * mix.experts * M0 * 4)?,
                }
            } else {
                ASource::Packed {
                    buf: BufId::Scratch,
                    per_image: as_i64(g.image_elems())?,
                    blocked: false,
                }
            },
            bias: has_bias.then_some((BufId::Scratch, kernels, as_i64(g.o)?)),
            residual: op.residual_index().map(BufId::In),
            residual_in_place: k.residual_in_place,
            clamp: op.clamp,
            act: op.act,
        };
        return convolve(k, &g, &wts);
    }
    let coefs = k.stack_buffer(IMAGES * mix.experts * M0 * 4)?;
    let mblocks = as_i64(g.mblocks)?;
    k.for_tasks(|k, t| {
        let grp = k.b.ins().udiv_imm_u(t, mblocks);
        let mb = k.b.ins().urem_imm_u(t, mblocks);
        mix.panel(k, grp, mb, coefs)
    })
}

/// The convolution phase, in the tasks of [`Schedule`].
fn convolve(k: &mut Kernel, g: &Gemm, wts: &Weights) -> LResult {
    if !g.has_work() {
        return Ok(());
    }
    let s = g.schedule();
    let per_group = as_i64(s.blocks * s.runs)?;
    let per_image = as_i64(g.groups)? * per_group;
    let runs = as_i64(s.runs)?;
    let panels = match g.panel_bytes() {
        0 => None,
        n => Some(k.stack_buffer(n * if g.whole { g.t.tiles() } else { 1 })?),
    };
    let taps = match k.taps_fn() {
        Some(f) if g.taps => Some((f, tap_geo(k, g)?)),
        _ => None,
    };
    // The in-place tile needs no packed panel in L1, so packed weights (in their plain
    // layout: [`blocking`]) run as one call per tile for all the task's panels and their
    // whole reduction (the bits of chained calls: the tile contract's sums continue across
    // calls); mixed ones keep the mixing's chunks. (Chunked calls for
    // tasks of several tiles, to keep each weight chunk in L2 across them, were slower.)
    // Its tiles are runs of consecutive positions, however the rows fall ([`Tiling::taps`]:
    // 14×14 is six full tiles and one of 4 columns, where the packing's two rows per tile
    // leave 4 of 32 columns idle in all seven; 7×7 one tile of 49); there are at most as
    // many, so the tasks' runs of the packing's tiles (the schedule) are clipped to them.
    let whole = g.whole;
    let (cc, chunks) = match wts.a {
        ASource::Packed { .. } => (g.cg, 1),
        ASource::Mixed { .. } => (g.cc, g.chunks),
    };
    let gt = &Gemm {
        cc,
        chunks,
        t: Tiling::taps(g.oh, g.ow),
        ..*g
    };
    k.for_tasks(|k, t| {
        let n = k.b.ins().udiv_imm_u(t, per_image);
        let r = k.b.ins().urem_imm_u(t, per_image);
        let grp = k.b.ins().udiv_imm_u(r, per_group);
        let r = k.b.ins().urem_imm_u(r, per_group);
        let blk = k.b.ins().udiv_imm_u(r, runs);
        let ri = k.b.ins().urem_imm_u(r, runs);
        let mbs = panel_range(k, g, blk, s.per)?;
        let task = Task {
            n,
            grp,
            mbs,
            panels,
            taps: None,
        };
        let lo = k.b.ins().imul_imm_s(ri, as_i64(s.run)?);
        let hi = k.add_imm(lo, as_i64(s.run)?);
        let body = |k: &mut Kernel, g: &Gemm, task: &Task| {
            if whole {
                let tiles = image_tiles(k, g)?;
                return k.loop_n(g.chunks, |k, ch| {
                    Chunk::new(k, g, wts, task, ch)?.run(k, g, wts, task, &tiles)
                });
            }
            let all = k.iconst(as_i64(g.t.tiles())?);
            let hi = k.b.ins().umin(hi, all);
            k.loop_n(g.chunks, |k, ch| {
                let c = Chunk::new(k, g, wts, task, ch)?;
                k.loop_dyn(lo, hi, |k, ti| c.tile(k, g, wts, task, ti))
            })
        };
        k.ukernel_or(
            taps.map(|(f, _)| f),
            |k, f| {
                let geo = taps.map(|(_, geo)| (f, geo));
                body(k, gt, &Task { taps: geo, ..task })
            },
            |k| body(k, g, &task),
        )
    })
}

/// The read-only table of the in-place convolution tile's geometry
/// (`dync_runtime::ukernel::taps::TapGeo`: `h, w, s, kh, kw, dh, dw, pt, pl`, pointer-sized).
fn tap_geo(k: &mut Kernel, g: &Gemm) -> LResult<Value> {
    let fields: [usize; TAP_GEO_FIELDS] = [
        g.h,
        g.w,
        g.ax.stride,
        g.kh,
        g.kw,
        g.ay.dilation,
        g.ax.dilation,
        g.ay.pad_begin,
        g.ax.pad_begin,
    ];
    k.usize_table(&fields)
}

/// One task's image, group, channel panels, and the stack buffer of its packed X̂ panels (one
/// per tile of a group).
#[derive(Clone, Copy)]
struct Task {
    n: Value,
    grp: Value,
    mbs: (Value, Value),
    panels: Option<Value>,
    /// The in-place convolution tile (not null) and the table of its geometry ([`tap_geo`])
    /// when the tiles read X̂ in place.
    taps: Option<(Value, Value)>,
}

/// An output tile: the first output row of its tiling row, its first position, its column
/// in the tiling row (first position in the row, width) and its run-time column count.
#[derive(Clone, Copy)]
struct TileAt {
    oy0: Value,
    pos0: Value,
    col: (usize, usize),
    ncols: Value,
}

/// How many columns a tile has: known at compile time, or its width clipped at the image's
/// end at run time when the tiling has a partial last tile.
enum Ncols {
    Static(usize),
    Clipped,
}

/// The tile of column `(c0, cw)` of tiling row `rb`.
fn tile_at(
    k: &mut Kernel,
    g: &Gemm,
    rb: Value,
    (c0, cw): (usize, usize),
    ncols: Ncols,
) -> LResult<TileAt> {
    let t = &g.t;
    let oy0 = k.b.ins().imul_imm_s(rb, as_i64(t.rows)?);
    let pos0 = k.b.ins().imul_imm_s(rb, as_i64(t.span)?);
    let pos0 = k.add_imm(pos0, as_i64(c0)?);
    let ncols = match ncols {
        Ncols::Static(n) => k.iconst(as_i64(n)?),
        // min(cw, P − pos0): tasks exist only for tiles that hold positions (pos0 < P).
        Ncols::Clipped if t.clipped() => {
            let left = k.iconst(as_i64(g.positions())?);
            let left = k.b.ins().isub(left, pos0);
            let cap = k.iconst(as_i64(cw)?);
            k.b.ins().umin(left, cap)
        }
        Ncols::Clipped => k.iconst(as_i64(cw)?),
    };
    Ok(TileAt {
        oy0,
        pos0,
        col: (c0, cw),
        ncols,
    })
}

/// Every non-empty tile of the image, with static positions (a whole-image task).
fn image_tiles(k: &mut Kernel, g: &Gemm) -> LResult<Vec<TileAt>> {
    let starts: Vec<_> = g.t.starts().collect();
    starts
        .into_iter()
        .map(|(rb, (c0, cw), pos0)| {
            let rb = k.iconst(as_i64(rb)?);
            let n = cw.min(g.positions() - pos0);
            tile_at(k, g, rb, (c0, cw), Ncols::Static(n))
        })
        .collect()
}

/// One reduction chunk of a task: input channels `ci0 .. ci0 + ci_n` of the group, `kc`
/// steps, and the flags of its tile calls.
struct Chunk {
    ci0: Value,
    ci_n: Value,
    kc: Value,
    /// The chunk's first channel, as an input channel of the task's image.
    chan: Value,
    first: Value,
    last: Value,
    flags: Value,
    /// Whether the fused activation runs as a pass over each tile after its call: the last
    /// chunk's, unless the call applied it.
    act_pass: Value,
}

impl Chunk {
    fn new(k: &mut Kernel, g: &Gemm, wts: &Weights, task: &Task, ch: Value) -> LResult<Chunk> {
        let ci0 = k.b.ins().imul_imm_s(ch, as_i64(g.cc)?);
        let ci_n = clipped(k, g.cc, g.cg, ci0)?;
        let kc = k.b.ins().imul_imm_s(ci_n, as_i64(g.kh * g.kw)?);
        let chan = k.b.ins().imul_imm_s(task.n, as_i64(g.c)?);
        let chan = k.mul_add(chan, task.grp, as_i64(g.cg)?);
        let chan = k.b.ins().iadd(chan, ci0);
        let first = k.b.ins().icmp_imm_s(IntCC::Equal, ch, 0);
        let acc =
            k.b.ins()
                .iconst(types::I32, i64::from(GEMM_ACCUMULATE | g.hint));
        let fresh = k.b.ins().iconst(types::I32, i64::from(g.hint));
        // With a residual, the first chunk accumulates onto it.
        let flags = match wts.residual {
            Some(_) => acc,
            None => k.b.ins().select(first, fresh, acc),
        };
        let last =
            k.b.ins()
                .icmp_imm_s(IntCC::Equal, ch, as_i64(g.chunks - 1)?);
        let flags = match wts.clamp {
            Some(_) => {
                let clamped = k.b.ins().bor_imm_u(flags, i64::from(GEMM_CLAMP));
                k.b.ins().select(last, clamped, flags)
            }
            None => flags,
        };
        // SiLU or HardSwish in the last call's epilogue when the tile is a runtime kernel (the
        // SiLU slot is then not null), else as a pass over each finished tile.
        let (flags, act_pass) = match (wts.act, k.silu_fn()) {
            (Some(a), Some(f)) => {
                let bit = match a {
                    Act::Silu => GEMM_SILU,
                    Act::HardSwish => GEMM_HARDSWISH,
                };
                let fused = k.b.ins().icmp_imm_s(IntCC::NotEqual, f, 0);
                let with = k.b.ins().bor_imm_u(flags, i64::from(bit));
                let in_call = k.b.ins().band(last, fused);
                let flags = k.b.ins().select(in_call, with, flags);
                let own = k.b.ins().bxor_imm_u(fused, 1);
                (flags, k.b.ins().band(last, own))
            }
            _ => (flags, last),
        };
        Ok(Chunk {
            ci0,
            ci_n,
            kc,
            chan,
            first,
            last,
            flags,
            act_pass,
        })
    }

    /// The chunk for tile `ti` of the image (row-major among the non-empty tiles): column
    /// `ti mod cols` of tiling row `ti / cols`, each column's packing static.
    fn tile(&self, k: &mut Kernel, g: &Gemm, wts: &Weights, task: &Task, ti: Value) -> LResult {
        let t = &g.t;
        let cols = as_i64(t.cols.len())?;
        let rb = k.b.ins().udiv_imm_u(ti, cols);
        if let [col] = t.cols[..] {
            let tile = tile_at(k, g, rb, col, Ncols::Clipped)?;
            return self.run(k, g, wts, task, &[tile]);
        }
        let ci = k.b.ins().urem_imm_u(ti, cols);
        for (i, &col) in t.cols.iter().enumerate() {
            let here = k.b.ins().icmp_imm_s(IntCC::Equal, ci, as_i64(i)?);
            k.when(here, |k| {
                let tile = tile_at(k, g, rb, col, Ncols::Clipped)?;
                self.run(k, g, wts, task, &[tile])
            })?;
        }
        Ok(())
    }

    /// The chunk for every output of the task's channel panels in `tiles`: X̂'s panel of each
    /// tile is packed (or addressed in place), then per channel panel the tile runs on each of
    /// them, so a panel's A chunk (mixed here for a fused dyn_conv) serves every tile from L1.
    /// With the in-place convolution tile ([`Task::taps`]) X̂ is read from the input,
    /// nothing is packed.
    fn run(
        &self,
        k: &mut Kernel,
        g: &Gemm,
        wts: &Weights,
        task: &Task,
        tiles: &[TileAt],
    ) -> LResult {
        let Task { n, grp, .. } = *task;
        let Chunk {
            ci0,
            ci_n,
            kc,
            chan,
            first,
            last,
            flags,
            act_pass,
        } = *self;
        let ptr = k.b.func.dfg.value_type(chan);
        let (callee, sig) = match task.taps {
            Some((f, geo)) => {
                let sig = k.b.import_signature(taps_signature(k.call_conv(), ptr));
                (Callee::Taps { f, geo }, sig)
            }
            None => {
                let tile = k.tile_fn()?;
                let ptr = k.b.func.dfg.value_type(tile);
                let sig = k.b.import_signature(tile_signature(k.call_conv(), ptr));
                (Callee::Tile(tile), sig)
            }
        };
        let p = as_i64(g.positions())?;
        let taps = as_i64(g.kh * g.kw)?;
        // Each tile's X̂ (address and row stride) for the input channels from `chan`.
        let b_ptrs = |k: &mut Kernel, chan: Value| -> LResult<Vec<(Value, i64)>> {
            let mut bs = Vec::with_capacity(tiles.len());
            for (i, at) in tiles.iter().enumerate() {
                bs.push(match (&callee, task.panels) {
                    (Callee::Taps { .. }, _) => {
                        // The input planes, or (stride 2) the split copy's phase planes.
                        let (src, plane) = match g.split {
                            true => (BufId::Scratch, 4 * g.h.div_ceil(2) * split_half(g.w)),
                            false => (BufId::In(0), g.h * g.w),
                        };
                        let idx = k.b.ins().imul_imm_s(chan, as_i64(plane)?);
                        let len = k.b.ins().imul_imm_s(ci_n, as_i64(plane)?);
                        (k.span_addr(src, idx, len), 0)
                    }
                    (Callee::Tile(_), None) => {
                        let idx = k.b.ins().imul_imm_s(chan, p);
                        let idx = k.b.ins().iadd(idx, at.pos0);
                        let len = k.b.ins().iadd_imm_s(kc, -1);
                        let len = k.b.ins().imul_imm_s(len, p);
                        let len = k.b.ins().iadd(len, at.ncols);
                        (k.span_addr(BufId::In(0), idx, len), p)
                    }
                    (Callee::Tile(_), Some(buf)) => {
                        let buf = k.add_imm(buf, as_i64(i * g.panel_bytes())?);
                        pack_panel(k, g, buf, chan, ci_n, at.oy0, at.col)?;
                        (buf, as_i64(N0)?)
                    }
                });
            }
            Ok(bs)
        };
        // The task's images (all of them for a fused dyn_conv), each with its X̂: the first
        // image's packed once here for all panels, the others' read in place.
        let images = g.task_images();
        let mut bs = vec![b_ptrs(k, chan)?];
        for i in 1..images {
            let chan = k.add_imm(chan, as_i64(i * g.c)?);
            bs.push(b_ptrs(k, chan)?);
        }
        let zero = k.iconst(0);
        let (lo_v, hi_v) = wts
            .clamp
            .map_or((f32::NEG_INFINITY, f32::INFINITY), |c| (c.lo, c.hi));
        let (lo, hi) = task.mbs;
        // The in-place tile takes all the task's channel panels in one call (panels `k·M0`
        // apart in the plain layout), mixed ones [`MIXED_PANELS`] at a time (mixed into the
        // stack buffer one after the other, `kc·M0` apart): they share its offsets, masks and
        // X̂ rows. The GEMM tile takes one panel per call.
        let all_panels = matches!(callee, Callee::Taps { .. });
        let mixed = matches!(wts.a, ASource::Mixed { .. });
        // The rows of panels `from .. to` that exist (the group's last panel may be partial).
        let rows = |k: &mut Kernel, from: Value, to: Value| -> LResult<Value> {
            let used = k.b.ins().imul_imm_s(from, as_i64(M0)?);
            let rows = k.b.ins().isub(to, from);
            let rows = k.b.ins().imul_imm_s(rows, as_i64(M0)?);
            let left = k.iconst(as_i64(g.og)?);
            let left = k.b.ins().isub(left, used);
            Ok(k.b.ins().umin(rows, left))
        };
        let panels =
            |k: &mut Kernel, body: &mut dyn FnMut(&mut Kernel, Value, Value) -> LResult| {
                if all_panels && mixed {
                    let span = k.b.ins().isub(hi, lo);
                    let span = k.add_imm(span, as_i64(MIXED_PANELS - 1)?);
                    let calls = k.b.ins().udiv_imm_u(span, as_i64(MIXED_PANELS)?);
                    let zero = k.iconst(0);
                    return k.loop_dyn(zero, calls, |k, q| {
                        let mb = k.mul_add(lo, q, as_i64(MIXED_PANELS)?);
                        let end = k.add_imm(mb, as_i64(MIXED_PANELS)?);
                        let end = k.b.ins().umin(end, hi);
                        let m = rows(k, mb, end)?;
                        body(k, mb, m)
                    });
                }
                if all_panels {
                    let m = rows(k, lo, hi)?;
                    return body(k, lo, m);
                }
                k.loop_dyn(lo, hi, |k, mb| {
                    let used = k.b.ins().imul_imm_s(mb, as_i64(M0)?);
                    let m = clipped(k, M0, g.og, used)?;
                    body(k, mb, m)
                })
            };
        panels(k, &mut |k, mb, m| {
            let used = k.b.ins().imul_imm_s(mb, as_i64(M0)?);
            // The bank blocks the tiles prefetch ([`Mix::chunk`]; see `side` below), and the
            // steps each tile call runs.
            let mut next = None;
            let mut steps = kc;
            // The chunk's steps of panel mb of group grp (of image n).
            let a_ptr = match wts.a {
                ASource::Mixed { mix, abuf, coefs } if all_panels => {
                    let s0 = k.b.ins().imul_imm_s(ci0, taps);
                    let np = k.add_imm(m, as_i64(M0 - 1)?);
                    let np = k.b.ins().udiv_imm_u(np, as_i64(M0)?);
                    let zero = k.iconst(0);
                    k.loop_dyn(zero, np, |k, q| {
                        let at = k.b.ins().imul(q, kc);
                        let at = k.b.ins().imul_imm_s(at, as_i64(M0 * 4)?);
                        let dst = k.b.ins().iadd(abuf, at);
                        let panel = k.b.ins().iadd(mb, q);
                        mix.chunk(k, (grp, panel, (lo, hi)), (s0, kc), dst, coefs)?;
                        Ok(())
                    })?;
                    next = Some(mix.group_side(k, (grp, mb, np, (lo, hi)), (s0, kc))?);
                    steps = k.b.ins().imul(kc, np);
                    abuf
                }
                ASource::Mixed { mix, abuf, coefs } => {
                    let s0 = k.b.ins().imul_imm_s(ci0, taps);
                    next = Some(mix.chunk(k, (grp, mb, (lo, hi)), (s0, kc), abuf, coefs)?);
                    abuf
                }
                ASource::Packed {
                    buf,
                    per_image,
                    blocked,
                } => {
                    let a_idx = k.b.ins().imul_imm_s(n, per_image);
                    let steps0 = k.b.ins().imul_imm_s(ci0, taps);
                    let a_idx = if blocked {
                        let at = block_at(k, g, 1, grp, (lo, hi, mb), (steps0, kc))?;
                        k.b.ins().iadd(a_idx, at)
                    } else {
                        let pnl = k.b.ins().imul_imm_s(grp, as_i64(g.mblocks)?);
                        let pnl = k.b.ins().iadd(pnl, mb);
                        let a_idx = k.mul_add(a_idx, pnl, as_i64(g.k * M0)?);
                        k.mul_add(a_idx, steps0, as_i64(M0)?)
                    };
                    let a_len = k.b.ins().imul_imm_s(kc, as_i64(M0)?);
                    let a_len = if all_panels {
                        // The task's other panels follow, `k·M0` apart.
                        let more = k.b.ins().isub(hi, mb);
                        let more = k.b.ins().iadd_imm_s(more, -1);
                        k.mul_add(a_len, more, as_i64(g.k * M0)?)
                    } else {
                        a_len
                    };
                    k.span_addr(buf, a_idx, a_len)
                }
            };
            // Output channel of the panel's first row.
            let oc = k.b.ins().imul_imm_s(grp, as_i64(g.og)?);
            let oc = k.b.ins().iadd(oc, used);
            let below = k.b.ins().f32const(lo_v);
            let above = k.b.ins().f32const(hi_v);
            // The task's images one after the other (a fused dyn_conv's all read the chunk
            // just mixed for them, `mixed_ld` floats apart); the tiles prefetch the bank's
            // stream as parts of it in this order.
            for (img, bs) in bs.iter().enumerate() {
                let n = k.add_imm(n, as_i64(img)?);
                let a_ptr = k.add_imm(a_ptr, as_i64(img * g.mixed_ld() * 4)?);
                let bias = match wts.bias {
                    Some((buf, off, per)) => {
                        let idx = k.mul_add(oc, n, per);
                        let idx = k.add_imm(idx, off);
                        let b = k.span_addr(buf, idx, m);
                        k.b.ins().select(last, b, zero)
                    }
                    None => zero,
                };
                for (i, (at, &(b_ptr, ldb))) in tiles.iter().zip(bs).enumerate() {
                    let i = img * tiles.len() + i;
                    let c_idx = k.b.ins().imul_imm_s(n, as_i64(g.o)?);
                    let c_idx = k.b.ins().iadd(c_idx, oc);
                    let c_idx = k.b.ins().imul_imm_s(c_idx, p);
                    let c_idx = k.b.ins().iadd(c_idx, at.pos0);
                    let c_len = k.b.ins().iadd_imm_s(m, -1);
                    let c_len = k.b.ins().imul_imm_s(c_len, p);
                    let c_len = k.b.ins().iadd(c_len, at.ncols);
                    let c_ptr = k.span_addr(BufId::Out, c_idx, c_len);
                    let c_tile = (c_idx, m, at.ncols, g.positions());
                    // The in-place tile reads the residual itself (its first chunk accumulates
                    // onto it); the GEMM tile accumulates onto a copy of it in C.
                    let res = match (wts.residual, callee) {
                        _ if wts.residual_in_place => zero,
                        (Some(r), Callee::Taps { .. }) => {
                            let r = k.span_addr(r, c_idx, c_len);
                            k.b.ins().select(first, r, zero)
                        }
                        _ => zero,
                    };
                    if let (Some(r), Callee::Tile(_), false) =
                        (wts.residual, callee, wts.residual_in_place)
                    {
                        k.when(first, |k| {
                            over_tile(k, c_tile, |k, idx, ty| {
                                let v = k.load(r, ty, idx);
                                k.store(BufId::Out, idx, v);
                                Ok(())
                            })
                        })?;
                    }
                    let ldc = k.iconst(p);
                    let (side, side_len, flags) = match next {
                        Some(next) => {
                            let paced = tiles.len() > WHOLE_TILES;
                            side_part(k, next, (i, bs.len() * tiles.len(), paced), steps, flags)?
                        }
                        None => (zero, zero, flags),
                    };
                    match callee {
                        Callee::Tile(tile) => {
                            let ldb = k.iconst(ldb);
                            let args = [
                                kc, a_ptr, b_ptr, ldb, c_ptr, ldc, m, at.ncols, bias, flags, below,
                                above, side, side_len,
                            ];
                            k.b.ins().call_indirect(sig, tile, &args)
                        }
                        Callee::Taps { f, geo } => {
                            let lda = match wts.a {
                                ASource::Mixed { .. } => k.b.ins().imul_imm_s(kc, as_i64(M0)?),
                                ASource::Packed { .. } => k.iconst(as_i64(g.k * M0)?),
                            };
                            let args = [
                                kc, a_ptr, lda, b_ptr, geo, at.pos0, c_ptr, ldc, res, m, at.ncols,
                                bias, flags, below, above, side, side_len,
                            ];
                            k.b.ins().call_indirect(sig, f, &args)
                        }
                    };
                    if let Some(a) = wts.act {
                        k.when(act_pass, |k| act_region(k, a, c_tile))?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// The address of the bank block after `(address, floats)`, were it as long (a hint only:
/// possibly past the bank's end).
fn block_after(k: &mut Kernel, (bank, len): (Value, Value)) -> Value {
    let bytes = k.b.ins().imul_imm_s(len, 4);
    k.b.ins().iadd(bank, bytes)
}

/// The part of the bank block `(next, len)` (address, floats; [`Mix::chunk`]'s, still to be
/// mixed) that the `i`-th of a chunk's `calls` tile calls of `steps` steps each prefetches
/// (the tile contract's `side` hint), and the call's `flags` with `GEMM_SIDE_FAST` added when
/// it takes two lines a step. `paced` (a chunk of more than [`WHOLE_TILES`] tiles): the
/// calls' parts in turn at one line a step, unless that would not cover the block; else two
/// lines a step from the call's part to the block's end, so that the stream runs as fast as
/// memory allows. The chunk's calls together stream the block while their FMAs run, and its
/// mixing then reads it from L2. (Layer 4 of dy-resnet50 and CondConv's 7×7 blocks are bound
/// by these streams; a 14×14 map's seven calls cover a block at one line a step, and two
/// slowed their own tiles.)
fn side_part(
    k: &mut Kernel,
    (next, len): (Value, Value),
    (i, calls, paced): (usize, usize, bool),
    steps: Value,
    flags: Value,
) -> LResult<(Value, Value, Value)> {
    let one = k.b.ins().imul_imm_s(steps, 16);
    let all = k.b.ins().imul_imm_s(one, as_i64(calls)?);
    let short = match paced {
        true => k.b.ins().icmp(IntCC::UnsignedGreaterThan, len, all),
        false => k.b.ins().iconst(types::I8, 1),
    };
    let fast = k.b.ins().imul_imm_s(one, as_i64(SIDE_LINES_PER_STEP)?);
    let share = k.b.ins().select(short, fast, one);
    let start = k.b.ins().imul_imm_s(share, as_i64(i)?);
    let start = k.b.ins().umin(start, len);
    let left = k.b.ins().isub(len, start);
    let part = k.b.ins().umin(left, share);
    let part = k.b.ins().select(short, left, part);
    let bytes = k.b.ins().imul_imm_s(start, 4);
    let with = k.b.ins().bor_imm_u(flags, i64::from(GEMM_SIDE_FAST));
    Ok((
        k.b.ins().iadd(next, bytes),
        part,
        k.b.ins().select(short, with, flags),
    ))
}

/// The function a chunk's tiles call: the GEMM tile, or the in-place convolution tile with the
/// table of its geometry (`dync_runtime::ukernel::taps::TapGeo`).
#[derive(Clone, Copy)]
enum Callee {
    Tile(Value),
    Taps { f: Value, geo: Value },
}

/// The element index in a blocked packing ([`Packing::offset`]) of `experts` experts where the
/// chunk of `kc` steps from step `s0` of panel `mb` of group `grp` starts, its run being the
/// panels `lo .. hi`: step s of expert e follows at `(s · experts + e) · M0`.
fn block_at(
    k: &mut Kernel,
    g: &Gemm,
    experts: usize,
    grp: Value,
    (lo, hi, mb): (Value, Value, Value),
    (s0, kc): (Value, Value),
) -> LResult<Value> {
    let e = as_i64(experts)?;
    let pnl = k.b.ins().imul_imm_s(grp, as_i64(g.mblocks)?);
    let pnl = k.b.ins().iadd(pnl, lo);
    let run = k.b.ins().imul_imm_s(pnl, as_i64(g.k * M0)? * e);
    let panels = k.b.ins().isub(hi, lo);
    let before = k.b.ins().imul(s0, panels);
    let at = k.mul_add(run, before, as_i64(M0)? * e);
    let bi = k.b.ins().isub(mb, lo);
    let skip = k.b.ins().imul(bi, kc);
    Ok(k.mul_add(at, skip, as_i64(M0)? * e))
}

/// Channel panels `blk·per .. min((blk + 1)·per, mblocks)`.
fn panel_range(k: &mut Kernel, g: &Gemm, blk: Value, per: usize) -> LResult<(Value, Value)> {
    let lo = k.b.ins().imul_imm_s(blk, as_i64(per)?);
    let hi = k.add_imm(lo, as_i64(per)?);
    let all = k.iconst(as_i64(g.mblocks)?);
    let hi = k.b.ins().umin(hi, all);
    Ok((lo, hi))
}

/// `min(cap, total − used)` as a run-time value, folded to `cap` when every block is full.
fn clipped(k: &mut Kernel, cap: usize, total: usize, used: Value) -> LResult<Value> {
    let c = k.iconst(as_i64(cap)?);
    if total.is_multiple_of(cap) {
        return Ok(c);
    }
    let t = k.iconst(as_i64(total)?);
    let left = k.b.ins().isub(t, used);
    Ok(k.b.ins().umin(c, left))
}

/// Phase 0 of a conv that [`splits`]: copies each input row into the scratch memory as its
/// even columns, then its odd ones, in tasks of planes. Without `phased`, in the same place
/// and layout: tap `kx` of output column `x` (input column `2x + kx·dx − pl`) then sits in
/// half `(kx·dx − pl) mod 2` at index `x + ⌊(kx·dx − pl) / 2⌋`, so consecutive outputs read
/// consecutive floats. With `phased` (stride 2 along both axes, for the in-place tile) into
/// the four phase planes of `⌈h/2⌉ × ⌈w/2⌉` of each input plane (`dync_runtime::ukernel::
/// taps`): row `y`'s even and odd columns become row `y/2` of the planes `(y mod 2, 0)` and
/// `(y mod 2, 1)` (a plane's cells past its share of the input are never read).
fn split_copy(k: &mut Kernel, phased: bool) -> LResult {
    let xs = k.shape(BufId::In(0));
    let (planes, h, w) = (xs[0] * xs[1], xs[2], xs[3]);
    let chunk = split_chunk(&xs);
    let half = split_half(w);
    let quarter = as_i64(h.div_ceil(2) * half)?;
    k.for_tasks(|k, t| {
        chunked(k, t, planes, chunk, |k, first, len| {
            k.loop_n(len, |k, pi| {
                let plane = k.b.ins().iadd(first, pi);
                let base = k.b.ins().imul_imm_s(plane, as_i64(h * w)?);
                let base4 = k.b.ins().imul_imm_s(plane, 4 * quarter);
                k.loop_n(h, |k, y| {
                    let row = k.mul_add(base, y, as_i64(w)?);
                    for (phase, count) in [(0, half), (1, w / 2)] {
                        let dst0 = if phased {
                            // Plane (y mod 2, phase), row y / 2.
                            let py = k.b.ins().band_imm_u(y, 1);
                            let ry = k.b.ins().ushr_imm_u(y, 1);
                            let at = k.mul_add(base4, py, 2 * quarter);
                            let at = k.add_imm(at, as_i64(phase)? * quarter);
                            k.mul_add(at, ry, as_i64(half)?)
                        } else {
                            k.add_imm(row, as_i64(phase * half)?)
                        };
                        // Four outputs from two loads spanning exactly their inputs.
                        let vecs = count / LANES * LANES;
                        k.loop_range(0, vecs, LANES, |k, i| {
                            let src = k.mul_add(row, i, 2);
                            let v = load_x(k, src, as_i64(phase)?, 2, false);
                            let dst = k.b.ins().iadd(dst0, i);
                            k.store(BufId::Scratch, dst, v);
                            Ok(())
                        })?;
                        for i in vecs..count {
                            let v = k.load_off(
                                BufId::In(0),
                                types::F32,
                                row,
                                as_i64(2 * i + phase)?,
                                false,
                            );
                            let dst = k.add_imm(dst0, as_i64(i)?);
                            k.store(BufId::Scratch, dst, v);
                        }
                    }
                    Ok(())
                })
            })
        })
    })
}

/// Packs X̂'s rows of input channels `chan .. chan + ci_n` (image-absolute) for the tile of
/// positions `c0 .. c0 + cw` of the tiling row whose first output row is `oy0` into `buf`
/// ([steps][N0]). The tile's positions fall into segments of output rows (static: a row
/// offset, its first output column, its length, its first panel column); each is copied with
/// one bounds test of its input row per tap row. Rows past the image (the last tiling row)
/// are packed like any other, from input rows inside the image or as zeros: their outputs
/// are never stored.
fn pack_panel(
    k: &mut Kernel,
    g: &Gemm,
    buf: Value,
    chan: Value,
    ci_n: Value,
    oy0: Value,
    (c0, cw): (usize, usize),
) -> LResult {
    let zero = k.iconst(0);
    let row_bytes = as_i64(N0 * 4)?;
    let taps = as_i64(g.kh * g.kw)?;
    let plane = as_i64(g.h * g.w)?;
    let store = MemFlagsData::new().with_notrap();
    let (sx, dx, pl) = (g.ax.stride, g.ax.dilation, g.ax.pad_begin);
    // Strides 2 and 3 gather 4 columns with two loads and a shuffle where shuffles are native.
    let vec_strided = sx <= 3 && k.has_shuffle();
    let half = split_half(g.w);
    let ow = g.ow.max(1);
    let segments: Vec<RowRun> = (c0..c0 + cw)
        .filter(|&q| q == c0 || q % ow == 0)
        .map(|q| {
            let (r, x0) = (q / ow, q % ow);
            let len = (ow - x0).min(c0 + cw - q);
            // Valid segment columns j (input column inside the image) for each kx.
            let valid = (0..g.kw)
                .map(|kx| {
                    let ok = |j: usize| {
                        let col = (x0 + j) * sx + kx * dx;
                        col >= pl && col - pl < g.w
                    };
                    let lo = (0..len).find(|&j| ok(j)).unwrap_or(len);
                    let hi = (lo..len).find(|&j| !ok(j)).unwrap_or(len);
                    (lo, hi.max(lo))
                })
                .collect();
            RowRun {
                r,
                x0,
                len,
                j0: q - c0,
                valid,
            }
        })
        .collect();
    k.loop_dyn(zero, ci_n, |k, ci| {
        let c = k.b.ins().iadd(chan, ci);
        let plane0 = k.b.ins().imul_imm_s(c, plane);
        let dst = k.b.ins().imul_imm_s(ci, taps * row_bytes);
        let dst = k.b.ins().iadd(buf, dst);
        for ky in 0..g.kh {
            for seg in &segments {
                let RowRun {
                    r,
                    x0,
                    len,
                    j0,
                    ref valid,
                } = *seg;
                let iy = k.add_imm(oy0, as_i64(r)?);
                let iy = k.b.ins().imul_imm_s(iy, as_i64(g.ay.stride)?);
                let shift = as_i64(ky * g.ay.dilation)? - as_i64(g.ay.pad_begin)?;
                let iy = k.add_imm(iy, shift);
                let inside =
                    k.b.ins()
                        .icmp_imm_s(IntCC::UnsignedLessThan, iy, as_i64(g.h)?);
                let (copy, blank, join) =
                    (k.b.create_block(), k.b.create_block(), k.b.create_block());
                k.b.ins().brif(inside, copy, &[], blank, &[]);
                let at = |kx: usize, j: usize| -> LResult<i32> {
                    let off = ((ky * g.kw + kx) * N0 + j0 + j) * 4;
                    i32::try_from(off).map_err(|_| {
                        crate::error::CodegenError::Overflow(format!("the panel offset {off}"))
                    })
                };
                k.b.switch_to_block(copy);
                let row = k.mul_add(plane0, iy, as_i64(g.w)?);
                for (kx, &(lo, hi)) in valid.iter().enumerate() {
                    fill_zero(k, dst, store, 0..lo, |j| at(kx, j))?;
                    let src0 = as_i64(x0 * sx + kx * dx)? - as_i64(pl)?;
                    let mut j = lo;
                    while j < hi {
                        let off = src0 + as_i64(j * sx)?;
                        // Not movable: the loads must stay behind the row's bounds check.
                        let (v, lanes) = if g.split {
                            // Column `off` (≥ 0 from `lo` on) in its half of the split row.
                            let at = off.rem_euclid(2) * as_i64(half)? + off.div_euclid(2);
                            let lanes = if hi - j >= LANES { LANES } else { 1 };
                            let ty = super::kernel::f32_type(lanes);
                            (k.load_off(BufId::Scratch, ty, row, at, false), lanes)
                        } else if hi - j >= LANES && (sx == 1 || vec_strided) {
                            (load_x(k, row, off, as_i64(sx)?, false), LANES)
                        } else {
                            (k.load_off(BufId::In(0), types::F32, row, off, false), 1)
                        };
                        k.b.ins().store(store, v, dst, at(kx, j)?);
                        j += lanes;
                    }
                    fill_zero(k, dst, store, hi..len, |j| at(kx, j))?;
                }
                k.b.ins().jump(join, &[]);
                k.b.switch_to_block(blank);
                for kx in 0..g.kw {
                    fill_zero(k, dst, store, 0..len, |j| at(kx, j))?;
                }
                k.b.ins().jump(join, &[]);
                k.b.switch_to_block(join);
            }
        }
        Ok(())
    })
}

/// The part of a tile's positions in one output row, for [`pack_panel`].
struct RowRun {
    /// The row, relative to the tiling row's first.
    r: usize,
    /// Its first output column and its length.
    x0: usize,
    len: usize,
    /// Its first column in the panel.
    j0: usize,
    /// For each kx, the run's columns whose input column is inside the image (lo..hi).
    valid: Vec<(usize, usize)>,
}

/// Stores zeros at columns `cols` of a panel row (`at(j)`: byte offset of column j from `dst`).
fn fill_zero(
    k: &mut Kernel,
    dst: Value,
    flags: MemFlagsData,
    cols: std::ops::Range<usize>,
    at: impl Fn(usize) -> LResult<i32>,
) -> LResult {
    let mut j = cols.start;
    while j < cols.end {
        let lanes = if cols.end - j >= LANES { LANES } else { 1 };
        let z = k.fconst(lanes, 0.0);
        k.b.ins().store(flags, z, dst, at(j)?);
        j += lanes;
    }
    Ok(())
}

/// The mixing of one dyn_conv's kernels into the packed layout. The bank is blocked
/// ([`Packing::offset`], experts inside each block) in the order the mixing reads it: fused,
/// in the convolution's chunks and runs ([`dyn_blocking`]); otherwise panel by panel in blocks
/// of [`MIX_STEPS`] steps, each phase-0 task streaming its panel's blocks in order.
struct Mix<'a> {
    op: &'a DynConv,
    g: &'a Gemm,
    per_channel: bool,
    experts: usize,
    /// Elements of all images' packed kernels.
    kernels: i64,
    /// The input scale operand (`in_scale`), applied to each mixed step.
    scale: Option<BufId>,
}

impl Mix<'_> {
    /// Multiplies the mixed rows of steps `s0 .. s0 + steps` of group `grp`, image `n` (row
    /// `s` of M0 floats at `row(s)`, see [`scale_steps`]) by the input scale, when the
    /// dyn_conv has one.
    fn scale_rows(
        &self,
        k: &mut Kernel,
        (n, grp): (Value, Value),
        (s0, steps): (Value, Value),
        row: &mut dyn FnMut(&mut Kernel, Value, Value) -> LResult,
    ) -> LResult {
        let Some(scale) = self.scale else {
            return Ok(());
        };
        let g = self.g;
        let base = k.b.ins().imul_imm_s(n, as_i64(g.c)?);
        let base = k.mul_add(base, grp, as_i64(g.cg)?);
        scale_steps(k, scale, base, (s0, steps), as_i64(g.kh * g.kw)?, row)
    }

    /// Mixes channel panel `mb` of group `grp` for every image: kernels into the packed
    /// layout (unless fused), biases into the bias rows. `coefs` holds [`IMAGES`] × experts ×
    /// M0 floats.
    fn panel(&self, k: &mut Kernel, grp: Value, mb: Value, coefs: Value) -> LResult {
        let g = self.g;
        let (used, oc0, base) = self.panel_start(k, grp, mb)?;
        let images = if g.fused { 0 } else { g.batch };
        let mb1 = k.b.ins().iadd_imm_s(mb, 1);
        for first in (0..images).step_by(IMAGES) {
            let imgs = IMAGES.min(g.batch - first);
            self.coefficients(k, oc0, first..first + imgs, coefs)?;
            k.loop_range(0, g.k, MIX_STEPS, |k, s0| {
                let end = k.add_imm(s0, as_i64(MIX_STEPS)?);
                let kk = k.iconst(as_i64(g.k)?);
                let end = k.b.ins().umin(end, kk);
                let steps = k.b.ins().isub(end, s0);
                // The block of this panel (a run of one) and these steps in the bank; the
                // same steps of image `first`'s plain packed panel in scratch.
                let at = block_at(k, g, self.experts, grp, (mb, mb1, mb), (s0, steps))?;
                let dst0 = k.mul_add(base, s0, as_i64(M0)?);
                let dst0 = k.add_imm(dst0, as_i64(first * g.image_elems())?);
                let f = k.mix_fn();
                let call = |k: &mut Kernel, f: Value| {
                    let len = k.b.ins().imul_imm_s(steps, as_i64(M0)?);
                    let len = k.add_imm(len, as_i64((imgs - 1) * g.image_elems())?);
                    let dst = k.span_addr(BufId::Scratch, dst0, len);
                    let bank = self.block(k, at, steps)?;
                    self.call_kernel(k, f, (bank, steps), (coefs, imgs), (dst, g.image_elems()))
                };
                let own = |k: &mut Kernel| {
                    let zero = k.iconst(0);
                    k.loop_dyn(zero, steps, |k, s| {
                        let src = k.mul_add(at, s, as_i64(self.experts * M0)?);
                        let dst = k.mul_add(dst0, s, as_i64(M0)?);
                        let accs = self.step(k, src, imgs, coefs)?;
                        for (i, acc) in accs.iter().enumerate() {
                            let img = as_i64(i)? * as_i64(g.image_elems())?;
                            for (h, &v) in acc.iter().enumerate() {
                                k.store_off(BufId::Scratch, dst, img + as_i64(h * LANES)?, v);
                            }
                        }
                        Ok(())
                    })
                };
                k.ukernel_or(f, call, own)?;
                for i in 0..imgs {
                    let n = k.iconst(as_i64(first + i)?);
                    let img = as_i64(i * g.image_elems())?;
                    self.scale_rows(k, (n, grp), (s0, steps), &mut |k, step, sc| {
                        let at = k.b.ins().isub(step, s0);
                        let at = k.mul_add(dst0, at, as_i64(M0)?);
                        for l in (0..M0).step_by(LANES) {
                            let off = img + as_i64(l)?;
                            let v = k.load_off(BufId::Scratch, types::F32X4, at, off, false);
                            let v = k.b.ins().fmul(v, sc);
                            k.store_off(BufId::Scratch, at, off, v);
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
        if self.op.bias || self.op.bias_bank {
            let m = clipped(k, M0, g.og, used)?;
            let zero = k.iconst(0);
            k.loop_dyn(zero, m, |k, i| {
                let oc = k.b.ins().iadd(oc0, i);
                for n in 0..g.batch {
                    self.bias(k, oc, n)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Mixes steps `s0 .. s0 + kc` of channel panel `mb` of group `grp` for each of the
    /// task's images ([`Gemm::task_images`]) into `abuf` (per image `kc` rows of M0 floats,
    /// the tile's A panel, images [`Gemm::mixed_ld`] floats apart), the task's panels being
    /// `panels.0 .. panels.1`; `coefs` holds images × experts × M0 floats. Returns the next
    /// bank block (its address and floats, as long as this one), which the tiles prefetch
    /// while they run (their `side` hint), so that memory streams it during their FMAs. (The
    /// mixing kernel used to prefetch the next block itself, and the tiles the one after: on
    /// this machine every batch-1 dynamic network ran 1–6 % faster without the kernel's
    /// prefetch, dy-resnet18 6.24 → 5.92 ms with the tiles then on the next block.)
    fn chunk(
        &self,
        k: &mut Kernel,
        (grp, mb, panels): (Value, Value, (Value, Value)),
        (s0, kc): (Value, Value),
        abuf: Value,
        coefs: Value,
    ) -> LResult<(Value, Value)> {
        let (imgs, ld) = (self.g.task_images(), self.g.mixed_ld());
        let (_, oc0, _) = self.panel_start(k, grp, mb)?;
        self.coefficients(k, oc0, 0..imgs, coefs)?;
        let (at, bank) = self.chunk_block(k, (grp, mb, panels), (s0, kc))?;
        let next = (block_after(k, bank), bank.1);
        let f = k.mix_fn();
        let call = |k: &mut Kernel, f: Value| {
            self.call_kernel(k, f, (bank, kc), (coefs, imgs), (abuf, ld))
        };
        let own = |k: &mut Kernel| {
            let flags = MemFlagsData::new().with_notrap();
            for first in (0..imgs).step_by(IMAGES) {
                let n = IMAGES.min(imgs - first);
                let coefs = k.add_imm(coefs, as_i64(first * self.experts * M0 * 4)?);
                let zero = k.iconst(0);
                k.loop_dyn(zero, kc, |k, s| {
                    let src = k.mul_add(at, s, as_i64(self.experts * M0)?);
                    let dst = k.b.ins().imul_imm_s(s, as_i64(M0 * 4)?);
                    let dst = k.b.ins().iadd(abuf, dst);
                    for (i, [lo, hi]) in self.step(k, src, n, coefs)?.into_iter().enumerate() {
                        let off = i32::try_from((first + i) * ld * 4).map_err(|_| {
                            crate::error::CodegenError::Overflow("the mixed chunks".into())
                        })?;
                        k.b.ins().store(flags, lo, dst, off);
                        k.b.ins().store(flags, hi, dst, off + 16);
                    }
                    Ok(())
                })?;
            }
            Ok(())
        };
        k.ukernel_or(f, call, own)?;
        for i in 0..imgs {
            let n = k.iconst(as_i64(i)?);
            let image = k.add_imm(abuf, as_i64(i * ld * 4)?);
            self.scale_rows(k, (n, grp), (s0, kc), &mut |k, step, sc| {
                let at = k.b.ins().isub(step, s0);
                let at = k.b.ins().imul_imm_s(at, as_i64(M0 * 4)?);
                let at = k.b.ins().iadd(image, at);
                let flags = MemFlagsData::new().with_notrap();
                for l in (0..M0).step_by(LANES) {
                    let a = k.add_imm(at, as_i64(l * 4)?);
                    let v = k.b.ins().load(types::F32X4, flags, a, 0);
                    let v = k.b.ins().fmul(v, sc);
                    k.b.ins().store(flags, v, a, 0);
                }
                Ok(())
            })?;
        }
        Ok(next)
    }

    /// The bank blocks the tiles of a call for `np` panels from `mb` prefetch, mixed by
    /// [`Mix::chunk`] one after the other: as many blocks as the call mixed, from the one
    /// after its last one.
    fn group_side(
        &self,
        k: &mut Kernel,
        (grp, mb, np, panels): (Value, Value, Value, (Value, Value)),
        (s0, kc): (Value, Value),
    ) -> LResult<(Value, Value)> {
        let last = k.b.ins().iadd(mb, np);
        let last = k.add_imm(last, -1);
        let (_, bank) = self.chunk_block(k, (grp, last, panels), (s0, kc))?;
        let len = k.b.ins().imul(bank.1, np);
        Ok((block_after(k, bank), len))
    }

    /// The element index and the bank block (address, floats) of steps `s0 .. s0 + kc` of
    /// channel panel `mb` of group `grp`, in the blocked bank of a task of `panels`.
    fn chunk_block(
        &self,
        k: &mut Kernel,
        (grp, mb, panels): (Value, Value, (Value, Value)),
        (s0, kc): (Value, Value),
    ) -> LResult<(Value, (Value, Value))> {
        let at = block_at(
            k,
            self.g,
            self.experts,
            grp,
            (panels.0, panels.1, mb),
            (s0, kc),
        )?;
        Ok((at, self.block(k, at, kc)?))
    }

    /// The bank block of `steps` steps at element `at`: its address and its length in floats.
    fn block(&self, k: &mut Kernel, at: Value, steps: Value) -> LResult<(Value, Value)> {
        let len = k.b.ins().imul_imm_s(steps, as_i64(self.experts * M0)?);
        Ok((k.span_addr(BufId::In(2), at, len), len))
    }

    /// Calls the mixing micro-kernel `f` (`dync_runtime::ukernel::mix`'s contract, the same
    /// bits as [`Mix::step`]) for the bank block `(address, floats)` of `steps` steps (each
    /// step's experts side by side, [`Mix::block`]), the first `images` images of the coefficient table
    /// `coefs`, into `dst` (image `i` at element `i · dst_ld`).
    fn call_kernel(
        &self,
        k: &mut Kernel,
        f: Value,
        (bank, steps): ((Value, Value), Value),
        (coefs, images): (Value, usize),
        (dst, dst_ld): (Value, usize),
    ) -> LResult {
        let bank = bank.0;
        let ptr = k.b.func.dfg.value_type(bank);
        let sig =
            k.b.import_signature(crate::abi::mix_signature(k.call_conv(), ptr));
        let args = [
            steps,
            bank,
            k.iconst(as_i64(M0)?),
            k.iconst(as_i64(self.experts * M0)?),
            k.iconst(as_i64(self.experts)?),
            coefs,
            k.iconst(as_i64(images)?),
            dst,
            k.iconst(as_i64(dst_ld)?),
        ];
        k.b.ins().call_indirect(sig, f, &args);
        Ok(())
    }

    /// Channel panel `mb` of group `grp`: its first row's offset in the group (used), its
    /// first output channel, and the element index of its first step in an image's plain
    /// packed kernels.
    fn panel_start(&self, k: &mut Kernel, grp: Value, mb: Value) -> LResult<(Value, Value, Value)> {
        let g = self.g;
        let used = k.b.ins().imul_imm_s(mb, as_i64(M0)?);
        let oc0 = k.b.ins().imul_imm_s(grp, as_i64(g.og)?);
        let oc0 = k.b.ins().iadd(oc0, used);
        let pnl = k.b.ins().imul_imm_s(grp, as_i64(g.mblocks)?);
        let pnl = k.b.ins().iadd(pnl, mb);
        let base = k.b.ins().imul_imm_s(pnl, as_i64(g.k * M0)?);
        Ok((used, oc0, base))
    }

    /// One mixed step (M0 lanes as two vectors) for each of the first `imgs` images of the
    /// coefficient table `coefs`: Σᵢ coefs[img][i] · bank[at + i·M0 ..] (the step's experts
    /// side by side), the bank's vectors loaded once for all images; the even and the odd
    /// experts summed in two chains, then added, as the mixing micro-kernel's contract
    /// (`dync_runtime::ukernel::mix`) orders them.
    fn step(
        &self,
        k: &mut Kernel,
        at: Value,
        imgs: usize,
        coefs: Value,
    ) -> LResult<Vec<[Value; 2]>> {
        let flags = MemFlagsData::new().with_notrap();
        let zero = k.fconst(LANES, 0.0);
        // Per image, the even and the odd experts' chains, each row as two 4-lane halves.
        let mut accs = vec![[[zero; 2]; 2]; imgs];
        for e in 0..self.experts {
            let eo = as_i64(e * M0)?;
            let b =
                [0, LANES].map(|h| k.load_off(BufId::In(2), types::F32X4, at, eo + h as i64, true));
            for (i, acc) in accs.iter_mut().enumerate() {
                for h in 0..2 {
                    let off = coef_offset(i, e, self.experts, h)?;
                    let c = k.b.ins().load(types::F32X4, flags, coefs, off);
                    acc[e % 2][h] = k.b.ins().fma(c, b[h], acc[e % 2][h]);
                }
            }
        }
        Ok(accs
            .into_iter()
            .map(|[even, odd]| [0, 1].map(|h| k.b.ins().fadd(even[h], odd[h])))
            .collect())
    }

    /// Fills `coefs[i][e][lane]` with c[first + i, oc0 + lane, e] (per channel, the channel
    /// clamped to the last one for the zero lanes past the group) or c[first + i, e].
    fn coefficients(
        &self,
        k: &mut Kernel,
        oc0: Value,
        images: std::ops::Range<usize>,
        coefs: Value,
    ) -> LResult {
        let g = self.g;
        let flags = MemFlagsData::new().with_notrap();
        let last = k.iconst(as_i64(g.o.saturating_sub(1))?);
        for (i, n) in images.enumerate() {
            for lane in 0..M0 {
                let oc = k.add_imm(oc0, as_i64(lane)?);
                let oc = k.b.ins().umin(oc, last);
                let idx = self.coefficient_row(k, oc, n)?;
                for e in 0..self.experts {
                    let c = k.load_off(BufId::In(1), types::F32, idx, as_i64(e)?, false);
                    let off =
                        i32::try_from(((i * self.experts + e) * M0 + lane) * 4).map_err(|_| {
                            crate::error::CodegenError::Overflow("the coefficient table".into())
                        })?;
                    k.b.ins().store(flags, c, coefs, off);
                }
            }
        }
        Ok(())
    }

    /// The element index of c[n, oc, 0] (per channel) or c[n, 0]: image `n`'s coefficients of
    /// channel `oc`.
    fn coefficient_row(&self, k: &mut Kernel, oc: Value, n: usize) -> LResult<Value> {
        let e_n = as_i64(self.experts)?;
        if self.per_channel {
            let r = k.b.ins().imul_imm_s(oc, e_n);
            Ok(k.add_imm(r, as_i64(n * self.g.o * self.experts)?))
        } else {
            Ok(k.iconst(as_i64(n * self.experts)?))
        }
    }

    /// The mixed bias of channel `oc`, image `n`: static bias + Σᵢ c[n, oc, i]·bias_bank[i, oc].
    fn bias(&self, k: &mut Kernel, oc: Value, n: usize) -> LResult {
        let g = self.g;
        let mut b = match self.op.bias_index() {
            Some(i) => k.load(BufId::In(i), types::F32, oc),
            None => k.fconst(1, 0.0),
        };
        if let Some(bb) = self.op.bias_bank_index() {
            let crow = self.coefficient_row(k, oc, n)?;
            for e in 0..self.experts {
                let c = k.load_off(BufId::In(1), types::F32, crow, as_i64(e)?, false);
                let v = k.load_off(BufId::In(bb), types::F32, oc, as_i64(e * g.o)?, true);
                b = k.b.ins().fma(c, v, b);
            }
        }
        k.store_off(BufId::Scratch, oc, self.kernels + as_i64(n * g.o)?, b);
        Ok(())
    }
}

/// Byte offset of `coefs[i][e][h·4 ..]` in a coefficient table of `experts` experts.
fn coef_offset(i: usize, e: usize, experts: usize, h: usize) -> LResult<i32> {
    i32::try_from(((i * experts + e) * M0 + h * LANES) * 4)
        .map_err(|_| crate::error::CodegenError::Overflow("the coefficient table".into()))
}
