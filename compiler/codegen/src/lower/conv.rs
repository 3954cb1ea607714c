//! `conv`: direct 2-D convolution over NCHW f32 (weights [O, C/G, kh, kw], optional bias),
//! for any groups, strides, dilations and pads.
//!
//! Structure: one task per image, group and block of up to [`OC_BLOCK`] output channels (the
//! kernel's parallel tasks, see [`crate::abi`]; a task's instructions do not depend on which other
//! tasks run with it); a depthwise conv on rows wider than 32 has one per image, band of output
//! rows and channel instead ([`row_bands`]). Output rows split into runs with one static kernel-row
//! range ([`super::window`]); each output row is cut into f32x4 vectors of 4 adjacent columns from
//! column 0. Interior vectors (every tap of every lane inside the input) run in loops, in register
//! tiles of the block's channels × [`vecs`] vectors; the other vectors (at most a few per row: the
//! padding and the row end) are edge vectors at static columns, whose input vectors come from
//! in-bounds windows of the input row shuffled into place with zeros in the padding lanes (the zero
//! padding itself, multiplied in: only an infinite or NaN weight makes that differ from skipping
//! the tap), and which store only the lanes inside the row. So padding is never tested at run time
//! and no access leaves its row.
//!
//! Input vectors: one load for stride 1; for strides 2 and 3 two loads spanning exactly the
//! first to the last element read and one shuffle; lane by lane beyond. Per tap each channel's
//! weight is broadcast and FMA'd into the tile's input vectors. Input loads may move to their
//! uses, so each accumulator's taps become a chain of loads and FMAs (see [`tile`]). A block of
//! one output channel (depthwise) unrolls the kernel rows and splits each output vector's taps
//! into [`SPLIT`] chains by kernel row (row ky into chain ky mod 3, the bias starting chain 0),
//! summed in order at the end, the order the depthwise micro-kernel
//! (`dync_runtime::ukernel::dw`) follows, so both give the same bits; with one input channel it also holds its kernel's
//! weights in registers. The fused epilogue is applied to the accumulators before the store,
//! in the op's order: + the residual (its lanes at the output's position; an edge vector loads
//! only the lanes it stores), the clamp (`Conv::clamp`, as `maxps`/`minps`, NaN kept), the
//! activation ([`act`]); SiLU instead runs as one pass over the block's finished planes
//! ([`separate_pass`]). Depthwise blocks whose rows are at most 32 wide take
//! [`super::conv_dw`] (a zero-padded copy of the plane, no edge vectors).
//!
//! Weights are read in their IR layout, so run-time (dynamic) weights work the same as
//! constant ones; loads of constant weights may be hoisted. `dyn_conv` reuses this per block
//! ([`conv_channels`]) with the kernels it mixed into scratch memory, one set per image
//! ([`Geo::per_image`]).

use super::kernel::{as_i64, BufId, Kernel, LResult, LANES};
use super::pool::axes;
use super::window::{Axis, Segment};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::Variable;
use dync_ir::ops::{Act, Clamp, Conv, UnaryKind};
use dync_ir::TensorType;
use dync_runtime::ukernel::dw::BAND as DW_BAND;

/// Output channels per register tile.
pub(crate) const OC_BLOCK: usize = 4;
/// f32x4 vectors of output columns per register tile.
const VECS: usize = 2;
/// Accumulator chains per output vector of a one-channel tile: kernel row ky's taps go to chain
/// ky mod SPLIT (summed in order at the end), so a 3×3 kernel runs three FMA chains of a third
/// of the latency side by side (measured faster than one or two for depthwise 3×3). The
/// depthwise micro-kernel splits its taps the same way (`dync_runtime::ukernel::dw`).
const SPLIT: usize = 3;
/// Kernel taps up to which a depthwise block holds its weights in registers (3×3 and 3×5).
const HELD_TAPS: usize = 15;

/// Vectors of output columns per tile for `nb` channels: one channel (whose accumulators are
/// computed one after the other, see [`tile`]) gets a wider tile; several keep their
/// accumulators and one kernel row of input vectors live at once.
fn vecs(nb: usize) -> usize {
    if nb == 1 {
        2 * VECS
    } else {
        VECS
    }
}

/// Static geometry of a convolution, and where its weights and bias are.
pub(crate) struct Geo {
    /// Weights [O, C/G, kh, kw] from this element of this buffer.
    pub weights: (BufId, i64),
    /// Bias [O] from this element of this buffer.
    pub bias: Option<(BufId, i64)>,
    /// Elements between the weights, and between the biases, of consecutive images (0: shared
    /// by all images).
    pub per_image: (i64, i64),
    pub group: usize,
    /// The fused epilogue, applied before the store: the residual operand (the result's
    /// layout), the clamp, the activation.
    pub residual: Option<BufId>,
    pub clamp: Option<Clamp>,
    pub act: Option<Act>,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub cg: usize,
    pub og: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub ay: Axis,
    pub ax: Axis,
}

impl Geo {
    /// The geometry of a convolution of operand 0 into the result with `op`'s attributes and
    /// weights shaped `ws` [O, C/G, kh, kw].
    pub fn new(
        k: &Kernel,
        op: &Conv,
        ws: &[usize],
        w: (BufId, i64),
        bias: Option<(BufId, i64)>,
    ) -> Geo {
        let xs = k.shape(BufId::In(0));
        let ys = k.shape(BufId::Out);
        let [ay, ax] = axes(&xs, &ys, [ws[2], ws[3]], op.strides, op.pads, op.dilations);
        Geo {
            weights: w,
            bias,
            per_image: (0, 0),
            group: op.group,
            residual: op
                .residual
                .then(|| BufId::In(k.n_inputs().saturating_sub(1))),
            clamp: op.clamp,
            act: op.act,
            c: xs[1],
            h: xs[2],
            w: xs[3],
            o: ys[1],
            cg: ws[1],
            og: ys[1] / op.group,
            kh: ws[2],
            kw: ws[3],
            oh: ys[2],
            ow: ys[3],
            ay,
            ax,
        }
    }
}

/// Blocks of output channels per group.
fn blocks(og: usize) -> usize {
    og.div_ceil(OC_BLOCK)
}

/// The tasks of `op`'s convolution of `x` [N, C, H, W] into `y` [N, O, OH, OW] with weights
/// `w` (one per image, group, block of output channels and band of rows ([`row_bands`]), or
/// per image and block of channels of a depthwise conv in channel blocks,
/// [`super::conv_dw::block_geo`]; 1 when there is nothing to compute).
pub(crate) fn tasks(op: &Conv, x: &TensorType, w: &TensorType, y: &TensorType) -> usize {
    let og = y.shape[1].checked_div(op.group).unwrap_or(0);
    let attrs = (op.strides, op.pads, op.dilations);
    let per_image =
        match super::conv_dw::block_geo(&x.shape, &y.shape, &w.shape, attrs, op.group, op.residual)
        {
            Some(_) => super::conv_dw::channel_blocks(op.group),
            None => op.group * blocks(og) * row_bands(op, &w.shape, &y.shape),
        };
    (x.shape[0] * per_image).max(1)
}

/// Output rows per band of a depthwise conv cut into row bands ([`row_bands`]) at least.
const BAND_ROWS: usize = 16;
/// The most row bands of a depthwise conv.
const MAX_BANDS: usize = 8;

/// The row bands each channel of a depthwise conv (weights `ws`, result `ys` [N, O, OH, OW])
/// is cut into, one task each: the most, up to [`MAX_BANDS`] and a power of two, whose bands
/// have the same rows, a multiple of the depthwise micro-kernel's band of rows
/// (`dync_runtime::ukernel::dw::BAND`, whose leftover rows run one by one at up to twice the
/// cost a row) and at least [`BAND_ROWS`]; 1 for other convs and for maps that
/// [`super::conv_dw`] takes (rows of at most 32), whose planes it copies whole.
///
/// Why: the convs around a depthwise one (MobileNetV2's expansion and projection) split their
/// tasks by positions, so under the pool's home ranges each thread writes and reads one band
/// of rows of every channel; tasks of whole channels read half of each plane from the other
/// core's cache, and the projection after them half of its input. Tasks are band-major
/// (band, then channel), so that a thread's home range is the same rows of all channels.
fn row_bands(op: &Conv, ws: &[usize], ys: &[usize]) -> usize {
    let ([_, o, oh, ow], [_, 1, _, _]) = (ys, ws) else {
        return 1;
    };
    if *o != op.group || op.dilations != [1, 1] || *ow <= super::conv_dw::MAX_WIDTH {
        return 1;
    }
    let fits = |b: usize| oh % (b * DW_BAND) == 0 && oh / b >= BAND_ROWS;
    (1..=MAX_BANDS.ilog2())
        .rev()
        .map(|e| 1 << e)
        .find(|&b| fits(b))
        .unwrap_or(1)
}

/// Output rows `r0 .. r1` of band `band` of `bands` ([`row_bands`], which divides `oh`).
fn band_rows(k: &mut Kernel, g: &Geo, band: Value, bands: usize) -> LResult<Rows> {
    let per = as_i64(g.oh / bands)?;
    let r0 = k.b.ins().imul_imm_s(band, per);
    let r1 = k.add_imm(r0, per);
    Ok(Rows { r0, r1 })
}

/// A band of output rows `r0 .. r1` (I64 values) that a depthwise task computes.
#[derive(Clone, Copy)]
pub(crate) struct Rows {
    r0: Value,
    r1: Value,
}

impl Rows {
    /// `band`, or every output row.
    fn or_all(band: Option<Rows>, k: &mut Kernel, g: &Geo) -> LResult<Rows> {
        match band {
            Some(b) => Ok(b),
            None => Ok(Rows {
                r0: k.iconst(0),
                r1: k.iconst(as_i64(g.oh)?),
            }),
        }
    }
}

/// Blocks of output channels of all groups: the tasks of one image.
pub(crate) fn blocks_per_image(g: &Geo) -> usize {
    g.group * blocks(g.og)
}

/// Whether the convolution has outputs at all.
pub(crate) fn has_outputs(g: &Geo) -> bool {
    g.o * g.oh * g.ow > 0
}

pub(crate) fn lower(k: &mut Kernel, op: &Conv) -> LResult {
    let bias = op.bias_index(k.n_inputs()).map(|i| (BufId::In(i), 0));
    let g = Geo::new(k, op, &k.shape(BufId::In(1)), (BufId::In(1), 0), bias);
    if !has_outputs(&g) || k.shape(BufId::In(0))[0] == 0 {
        return Ok(());
    }
    let attrs = (op.strides, op.pads, op.dilations);
    let (x, y, w) = (
        k.shape(BufId::In(0)),
        k.shape(BufId::Out),
        k.shape(BufId::In(1)),
    );
    if let Some(geo) = super::conv_dw::block_geo(&x, &y, &w, attrs, op.group, op.residual) {
        let per_image = as_i64(super::conv_dw::channel_blocks(op.group))?;
        return k.for_tasks(|k, t| {
            let n = k.b.ins().udiv_imm_u(t, per_image);
            let blk = k.b.ins().urem_imm_u(t, per_image);
            super::conv_dw::channels(k, &g, &geo, n, blk)
        });
    }
    let bands = row_bands(op, &w, &y);
    if bands > 1 {
        // Depthwise: block r of an image is channel r mod O of band r div O.
        let per_image = as_i64(bands * g.o)?;
        return k.for_tasks(|k, t| {
            let n = k.b.ins().udiv_imm_u(t, per_image);
            let r = k.b.ins().urem_imm_u(t, per_image);
            let band = k.b.ins().udiv_imm_u(r, as_i64(g.o)?);
            let oc = k.b.ins().urem_imm_u(r, as_i64(g.o)?);
            let rows = band_rows(k, &g, band, bands)?;
            conv_channels(k, &g, n, (oc, oc), 1, Some(rows))
        });
    }
    let per_image = as_i64(blocks_per_image(&g))?;
    k.for_tasks(|k, t| {
        let n = k.b.ins().udiv_imm_u(t, per_image);
        let r = k.b.ins().urem_imm_u(t, per_image);
        conv_block(k, &g, n, r)
    })
}

/// All outputs of block `r` (of [`blocks_per_image`], group-major) of image `n`.
fn conv_block(k: &mut Kernel, g: &Geo, n: Value, r: Value) -> LResult {
    for_block(k, g, r, &mut |k, grp, oc0, nb| {
        conv_channels(k, g, n, (grp, oc0), nb, None)
    })
}

/// Emits `body(grp, oc0, nb)` for block `r` (of [`blocks_per_image`], group-major): its group,
/// first output channel and (static) channel count, branching between full blocks and the
/// group's last, partial one.
pub(crate) fn for_block(
    k: &mut Kernel,
    g: &Geo,
    r: Value,
    body: &mut dyn FnMut(&mut Kernel, Value, Value, usize) -> LResult,
) -> LResult {
    let nblk = as_i64(blocks(g.og))?;
    let full = g.og / OC_BLOCK;
    let rem = g.og % OC_BLOCK;
    let grp = k.b.ins().udiv_imm_u(r, nblk);
    let blk = k.b.ins().urem_imm_u(r, nblk);
    let oc0 = k.b.ins().imul_imm_s(grp, as_i64(g.og)?);
    let oc0 = k.mul_add(oc0, blk, as_i64(OC_BLOCK)?);
    match (full, rem) {
        (_, 0) => body(k, grp, oc0, OC_BLOCK),
        (0, _) => body(k, grp, oc0, rem),
        _ => {
            let is_full =
                k.b.ins()
                    .icmp_imm_s(IntCC::UnsignedLessThan, blk, as_i64(full)?);
            let (whole, part, join) = (k.b.create_block(), k.b.create_block(), k.b.create_block());
            k.b.ins().brif(is_full, whole, &[], part, &[]);
            k.b.switch_to_block(whole);
            body(k, grp, oc0, OC_BLOCK)?;
            k.b.ins().jump(join, &[]);
            k.b.switch_to_block(part);
            body(k, grp, oc0, rem)?;
            k.b.ins().jump(join, &[]);
            k.b.switch_to_block(join);
            Ok(())
        }
    }
}

/// The outputs of the `nb` channels from `oc0` (of group `grp`) of image `n`: all of them, or
/// the rows `band` of a depthwise channel ([`row_bands`]; not a map that
/// [`super::conv_dw`] takes).
pub(crate) fn conv_channels(
    k: &mut Kernel,
    g: &Geo,
    n: Value,
    (grp, oc0): (Value, Value),
    nb: usize,
    band: Option<Rows>,
) -> LResult {
    let own = |k: &mut Kernel| {
        if nb == 1 && super::conv_dw::applies(g) {
            if band.is_some() {
                return Err(crate::error::CodegenError::cranelift(
                    &k.name,
                    "a row band of a map the padded-plane path takes",
                ));
            }
            return super::conv_dw::channel(k, g, n, oc0);
        }
        let (rows, cols) = (g.ay.segments(), g.ax.segments());
        block(k, g, (&rows, band), &cols, n, grp, oc0, nb)
    };
    let f = if nb == 1 && dw_kernel_applies(g) {
        k.dw_fn()
    } else {
        None
    };
    k.ukernel_or(f, |k, f| dw_kernel_call(k, g, n, (oc0, band), f), own)
}

/// Whether a depthwise block of one channel calls the depthwise micro-kernel
/// (`dync_runtime::ukernel::dw`) when the context has one: dilation 1, no fused residual, rows
/// too wide for [`super::conv_dw`] (whose padded plane serves 4- to 32-wide rows, where the
/// kernel's 16-lane vectors would be mostly idle), and a shape its AVX-512 code takes
/// (`dw::vector_shape`: 3×3, 5×5 or 7×7, equal strides of 1 or 2, rows that fit its ring);
/// it would run any other in its portable scalar loop, slower than this path's 4-lane code.
pub(crate) fn dw_kernel_applies(g: &Geo) -> bool {
    super::conv_dw::plain_depthwise(g)
        && g.residual.is_none()
        && !super::conv_dw::applies(g)
        && dync_runtime::ukernel::dw::vector_shape(
            (g.kh, g.kw),
            (g.ay.stride, g.ax.stride),
            g.w,
            g.ax.pad_begin,
            g.ow,
        )
}

/// Channel `oc` of image `n` by the depthwise micro-kernel `f`: the plane with the bias, the
/// clamp and SiLU in the call; HardSwish as a pass over the plane after it.
fn dw_kernel_call(
    k: &mut Kernel,
    g: &Geo,
    n: Value,
    (oc, band): (Value, Option<Rows>),
    f: Value,
) -> LResult {
    let (yi, len) = depthwise_call(k, g, n, (oc, band), f, &[Act::Silu])?;
    match g.act {
        Some(a @ Act::HardSwish) => {
            let rows = k.iconst(1);
            act_region(k, a, (yi, rows, len, g.oh * g.ow))
        }
        Some(Act::Silu) | None => Ok(()),
    }
}

/// Channel `oc` of image `n` by a depthwise micro-kernel `f` with the arguments of
/// [`crate::abi::dw_signature`] (`dync_runtime::ukernel::dw`'s or `dwp`'s), the bias, the clamp
/// and the activations of `in_call` applied by the call; returns the first output element and
/// the number written, for a pass over them.
///
/// A band of output rows `r0 .. r1` ([`row_bands`]) is the kernel's plane of its own: the input
/// rows its windows reach (`r0·sy − pt ..`, clipped to the plane) with the top padding that is
/// left, so that each output sums the same taps in the same chains and gets the same bits.
pub(crate) fn depthwise_call(
    k: &mut Kernel,
    g: &Geo,
    n: Value,
    (oc, band): (Value, Option<Rows>),
    f: Value,
    in_call: &[Act],
) -> LResult<(Value, Value)> {
    let (w, bias) = channel_params(k, g, n, oc)?;
    let taps = k.iconst(as_i64(g.kh * g.kw)?);
    let wp = k.span_addr(g.weights.0, w, taps);
    // One input channel per group: the input plane of channel `oc`.
    let plane = |k: &mut Kernel, chans: usize, size: usize| -> LResult<Value> {
        let at = k.b.ins().imul_imm_s(n, as_i64(chans)?);
        let at = k.b.ins().iadd(at, oc);
        Ok(k.b.ins().imul_imm_s(at, as_i64(size)?))
    };
    let (sy, pt) = (as_i64(g.ay.stride)?, as_i64(g.ay.pad_begin)?);
    let Rows { r0, r1 } = Rows::or_all(band, k, g)?;
    // Input rows `lo .. hi` and the top padding left. First row read: r0·sy − pt (signed), at
    // least 0; one past the last: (r1 − 1)·sy − pt + kh, at most h (the rows past it are
    // never read). Shape inference bounds both by the padded extent.
    let first = k.b.ins().imul_imm_s(r0, sy);
    let first = k.add_imm(first, -pt);
    let zero = k.iconst(0);
    let lo = k.b.ins().smax(first, zero);
    let pad = k.b.ins().isub(lo, first);
    let end = k.b.ins().imul_imm_s(r1, sy);
    let end = k.add_imm(end, as_i64(g.kh)? - sy - pt);
    let h = k.iconst(as_i64(g.h)?);
    let hi = k.b.ins().smin(end, h);
    let h = k.b.ins().isub(hi, lo);
    let oh = k.b.ins().isub(r1, r0);
    let xi = plane(k, g.c, g.h * g.w)?;
    let xi = k.mul_add(xi, lo, as_i64(g.w)?);
    let len = k.b.ins().imul_imm_s(h, as_i64(g.w)?);
    let xp = k.span_addr(BufId::In(0), xi, len);
    let yi = plane(k, g.o, g.oh * g.ow)?;
    let yi = k.mul_add(yi, r0, as_i64(g.ow)?);
    let len = k.b.ins().imul_imm_s(oh, as_i64(g.ow)?);
    let yp = k.span_addr(BufId::Out, yi, len);
    let ptr = k.b.func.dfg.value_type(xp);
    let sig =
        k.b.import_signature(crate::abi::dw_signature(k.call_conv(), ptr));
    let width = k.iconst(as_i64(g.w)?);
    let mut args = vec![xp, h, width, wp];
    for d in [g.kh, g.kw, g.ay.stride, g.ax.stride] {
        args.push(k.iconst(as_i64(d)?));
    }
    args.push(pad);
    args.push(k.iconst(as_i64(g.ax.pad_begin)?));
    args.push(yp);
    dw_out_args(k, g, oh, bias, in_call, &mut args)?;
    k.b.ins().call_indirect(sig, f, &args);
    Ok((yi, len))
}

/// The last arguments of a depthwise micro-kernel call ([`depthwise_call`]), pushed onto
/// `args`: `oh, ow`, the bias (0 without one), the flags (the clamp, and the conv's activation
/// when it is one of `in_call`, those the kernel applies), the clamp's bounds.
fn dw_out_args(
    k: &mut Kernel,
    g: &Geo,
    oh: Value,
    bias: Option<Value>,
    in_call: &[Act],
    args: &mut Vec<Value>,
) -> LResult {
    let mut flags = 0;
    args.push(oh);
    args.push(k.iconst(as_i64(g.ow)?));
    if g.clamp.is_some() {
        flags |= dync_runtime::ukernel::GEMM_CLAMP;
    }
    if let Some(a) = g.act.filter(|a| in_call.contains(a)) {
        flags |= match a {
            Act::Silu => dync_runtime::ukernel::GEMM_SILU,
            Act::HardSwish => dync_runtime::ukernel::GEMM_HARDSWISH,
        };
    }
    let (lo, hi) = g.clamp.map_or((0.0, 0.0), |c| (c.lo, c.hi));
    args.push(bias.unwrap_or_else(|| k.fconst(1, 0.0)));
    args.push(k.b.ins().iconst(types::I32, i64::from(flags)));
    args.push(k.fconst(1, lo));
    args.push(k.fconst(1, hi));
    Ok(())
}

/// Output channel `oc`'s weights of image `n` (the element of `g.weights`' buffer where its
/// [C/G, kh, kw] start) and its bias, loaded (None without one).
pub(crate) fn channel_params(
    k: &mut Kernel,
    g: &Geo,
    n: Value,
    oc: Value,
) -> LResult<(Value, Option<Value>)> {
    let bias = match g.bias {
        Some((buf, off)) => {
            let at = k.mul_add(oc, n, g.per_image.1);
            Some(k.load_off(buf, types::F32, at, off, true))
        }
        None => None,
    };
    Ok((weights_at(k, g, n, oc)?, bias))
}

/// The element of `g.weights`' buffer where output channel `oc`'s weights of image `n` start.
pub(crate) fn weights_at(k: &mut Kernel, g: &Geo, n: Value, oc: Value) -> LResult<Value> {
    let wb = k.b.ins().imul_imm_s(oc, as_i64(g.cg * g.kh * g.kw)?);
    let wb = k.mul_add(wb, n, g.per_image.0);
    Ok(k.add_imm(wb, g.weights.1))
}

/// The outputs of `nb` channels starting at `oc0` of image `n`, group `grp`: all rows, or those
/// of `band` (each row segment's loop clipped to it).
#[allow(clippy::too_many_arguments)]
fn block(
    k: &mut Kernel,
    g: &Geo,
    (rows, band): (&[Segment], Option<Rows>),
    cols: &[Segment],
    n: Value,
    grp: Value,
    oc0: Value,
    nb: usize,
) -> LResult {
    // Element offset of the group's first input channel of image n.
    let xn = k.b.ins().imul_imm_s(n, as_i64(g.c * g.h * g.w)?);
    let xg = k.b.ins().imul_imm_s(grp, as_i64(g.cg * g.h * g.w)?);
    let xg = k.b.ins().iadd(xn, xg);
    let yn = k.b.ins().imul_imm_s(n, as_i64(g.o * g.oh * g.ow)?);
    let taps = g.kh * g.kw;
    let mut bias = Vec::with_capacity(nb);
    let mut w_base = Vec::with_capacity(nb);
    for j in 0..nb {
        let oc = k.add_imm(oc0, as_i64(j)?);
        let (w, b) = channel_params(k, g, n, oc)?;
        w_base.push(w);
        bias.push(b);
    }
    // A single input channel's weights of one output channel stay in registers for the block.
    let weights = if nb == 1 && g.cg == 1 && taps <= HELD_TAPS {
        let held = (0..as_i64(taps)?)
            .map(|i| k.load_off(g.weights.0, types::F32, w_base[0], i, true))
            .collect();
        Weights::Held(held)
    } else {
        Weights::Load(w_base)
    };
    let vecs = vecs(nb);
    // Vectors of outputs at columns 4j..4j+4: interior ones (every tap of every lane inside
    // the input) ja..jb run in loops, the others are edge vectors at static columns.
    let nvec = g.ow.div_ceil(LANES);
    let (ja, jb) = match cols.iter().find(|c| c.k_lo == 0 && c.k_hi == g.kw) {
        Some(c) if c.start.div_ceil(LANES) < c.end / LANES => {
            (c.start.div_ceil(LANES), c.end / LANES)
        }
        _ => (0, 0),
    };
    let wide_end = ja + (jb - ja) / vecs * vecs;
    for rs in rows {
        let row = |k: &mut Kernel, oy: Value| {
            let t = TileAt {
                xg,
                yn,
                bias: &bias,
                weights: &weights,
                oc0,
                oy,
            };
            for j in 0..ja {
                tile(k, g, rs, &t, Cols::Edge(j * LANES), nb, 1)?;
            }
            k.loop_range(ja * LANES, wide_end * LANES, vecs * LANES, |k, ox| {
                tile(k, g, rs, &t, Cols::Interior(ox), nb, vecs)
            })?;
            k.loop_range(wide_end * LANES, jb * LANES, LANES, |k, ox| {
                tile(k, g, rs, &t, Cols::Interior(ox), nb, 1)
            })?;
            for j in jb.max(ja)..nvec {
                tile(k, g, rs, &t, Cols::Edge(j * LANES), nb, 1)?;
            }
            Ok(())
        };
        match band {
            None => k.loop_range(rs.start, rs.end, 1, row)?,
            Some(Rows { r0, r1 }) => {
                let start = k.iconst(as_i64(rs.start)?);
                let end = k.iconst(as_i64(rs.end)?);
                let lo = k.b.ins().umax(r0, start);
                let hi = k.b.ins().umin(r1, end);
                k.loop_dyn(lo, hi, row)?;
            }
        }
    }
    let at = k.b.ins().imul_imm_s(oc0, as_i64(g.oh * g.ow)?);
    let at = k.b.ins().iadd(at, yn);
    separate_act(k, g, at, nb, band)
}

/// The activation's separate pass ([`separate_pass`]), if it has one, over the `nb` finished
/// output planes from element `at` (their rows `band`, or all): one pass, in L1 or L2 (a pass
/// per output row cost a micro-kernel call per row, on depthwise 56-wide rows most of the
/// SiLU's time).
pub(crate) fn separate_act(
    k: &mut Kernel,
    g: &Geo,
    at: Value,
    nb: usize,
    band: Option<Rows>,
) -> LResult {
    if let Some(a) = g.act.filter(|&a| separate_pass(a)) {
        let plane = g.oh * g.ow;
        let Rows { r0, r1 } = Rows::or_all(band, k, g)?;
        let at = k.mul_add(at, r0, as_i64(g.ow)?);
        let rows = k.b.ins().isub(r1, r0);
        let cols = k.b.ins().imul_imm_s(rows, as_i64(g.ow)?);
        let planes = k.iconst(as_i64(nb)?);
        act_region(k, a, (at, planes, cols, plane))?;
    }
    Ok(())
}

/// Whether activation `a` runs as a pass over the block's finished output ([`act_region`])
/// instead of on each vector before its store: SiLU, whose polynomial is long enough that one
/// dependent chain per vector leaves the core idle, and which the SiLU micro-kernel computes
/// 16 lanes wide when the kernel has one.
pub(crate) fn separate_pass(a: Act) -> bool {
    matches!(a, Act::Silu)
}

/// The output columns of a tile.
#[derive(Clone, Copy)]
enum Cols {
    /// Vectors from this column on, every tap of every lane inside the input.
    Interior(Value),
    /// One vector from this column, whose lanes read zeros for taps outside the input (the
    /// padding) and whose lanes past the row are not stored.
    Edge(usize),
}

struct TileAt<'a> {
    xg: Value,
    yn: Value,
    /// The block's channels' biases.
    bias: &'a [Option<Value>],
    weights: &'a Weights,
    oc0: Value,
    oy: Value,
}

/// Where a tile's weights come from.
enum Weights {
    /// Loaded per tap from the weight buffer.
    Load(Vec<Value>),
    /// The scalars of every tap of the block's single output and input channel, loaded once
    /// before its loops: `[ky·kw + kx]` (kernel rows are then unrolled).
    Held(Vec<Value>),
}

/// One register tile: `nb` channels × `vecs` vectors of output columns.
fn tile(
    k: &mut Kernel,
    g: &Geo,
    rs: &Segment,
    t: &TileAt,
    cols: Cols,
    nb: usize,
    vecs: usize,
) -> LResult {
    let ty = types::F32X4;
    let lanes = LANES;
    let taps = as_i64(g.kh * g.kw)?;
    let chains = if nb == 1 { SPLIT } else { 1 };
    // accs[j][v·chains + c]: chain c of vector v of channel j (the bias starts chain 0).
    let mut accs: Vec<Vec<Variable>> = Vec::with_capacity(nb);
    for &b in t.bias {
        let init = match b {
            Some(b) => k.splat(lanes, b),
            None => k.fconst(lanes, 0.0),
        };
        let zero = k.fconst(lanes, 0.0);
        accs.push(
            (0..vecs * chains)
                .map(|i| k.var(ty, if i % chains == 0 { init } else { zero }))
                .collect(),
        );
    }
    let (sx, dx) = (as_i64(g.ax.stride)?, as_i64(g.ax.dilation)?);
    let pad = as_i64(g.ax.pad_begin)?;
    let (ox, kx_range) = match cols {
        Cols::Interior(ox) => (ox, 0..g.kw),
        Cols::Edge(c) => {
            let ox = k.iconst(as_i64(c)?);
            let mut range = g.kw..0;
            for kx in 0..g.kw {
                if edge_cols(g, c, kx).iter().any(Option::is_some) {
                    range = range.start.min(kx)..range.end.max(kx + 1);
                }
            }
            (ox, range)
        }
    };
    // Column of tap 0 of the tile's first output: ox·sx − pad_left.
    let col0 = k.b.ins().imul_imm_s(ox, sx);
    let col0 = k.add_imm(col0, -pad);
    // Input loads may move to their uses, and Cranelift places pure instructions at their uses,
    // so it emits each accumulator's taps as one chain of loads and FMAs. With one output
    // channel each input vector feeds one FMA and the kernel rows are unrolled; several
    // channels share each input vector, which stays live across their chains, so rows stay a
    // loop (an unrolled window would keep every row's input vectors live at once: spills).
    let single = nb == 1;
    k.loop_n(g.cg, |k, ci| {
        let plane = k.mul_add(t.xg, ci, as_i64(g.h * g.w)?);
        let w_c: Vec<Value> = match t.weights {
            Weights::Load(base) => base.iter().map(|&b| k.mul_add(b, ci, taps)).collect(),
            Weights::Held(_) => Vec::new(),
        };
        // Taps of kernel row `ky` (`fixed` when it is the constant ky).
        let kernel_row = |k: &mut Kernel, ky: Value, fixed: Option<usize>| -> LResult {
            let r = k.b.ins().imul_imm_s(t.oy, as_i64(g.ay.stride)?);
            let r = k.mul_add(r, ky, as_i64(g.ay.dilation)?);
            let r = k.add_imm(r, -as_i64(g.ay.pad_begin)?);
            let row = k.mul_add(plane, r, as_i64(g.w)?);
            let base = k.b.ins().iadd(row, col0);
            let kw = as_i64(g.kw)?;
            let w_row: Vec<Value> = w_c.iter().map(|&b| k.mul_add(b, ky, kw)).collect();
            for kx in kx_range.clone() {
                let kxo = as_i64(kx)? * dx;
                let xv: Vec<Value> = match cols {
                    Cols::Interior(_) => (0..vecs)
                        .map(|v| Ok(load_x(k, base, as_i64(v * LANES)? * sx + kxo, sx, true)))
                        .collect::<LResult<_>>()?,
                    Cols::Edge(c) => vec![edge_x(k, g, row, &edge_cols(g, c, kx))],
                };
                for j in 0..nb {
                    let wv = match (t.weights, fixed) {
                        (Weights::Held(ws), Some(ky)) => ws[ky * g.kw + kx],
                        _ => k.load_off(g.weights.0, types::F32, w_row[j], as_i64(kx)?, true),
                    };
                    let wv = k.splat(lanes, wv);
                    // One channel: its rows are unrolled (`fixed`), row ky into chain ky mod
                    // SPLIT; several channels keep one chain.
                    let c = fixed.map_or(0, |ky| ky % chains);
                    for (v, &x) in xv.iter().enumerate() {
                        let var = accs[j][v * chains + c];
                        let a = k.b.use_var(var);
                        let a = k.b.ins().fma(x, wv, a);
                        k.b.def_var(var, a);
                    }
                }
            }
            Ok(())
        };
        if single || rs.k_hi - rs.k_lo <= 1 {
            for ky in rs.k_lo..rs.k_hi {
                let v = k.iconst(as_i64(ky)?);
                kernel_row(k, v, Some(ky))?;
            }
            Ok(())
        } else {
            k.loop_range(rs.k_lo, rs.k_hi, 1, |k, ky| kernel_row(k, ky, None))
        }
    })?;
    let stored = match cols {
        Cols::Interior(_) => LANES,
        Cols::Edge(c) => (g.ow - c).min(LANES),
    };
    let y_row = k.b.ins().imul_imm_s(t.oy, as_i64(g.ow)?);
    let y_row = k.b.ins().iadd(y_row, ox);
    for (j, acc) in accs.iter().enumerate() {
        let oc = k.add_imm(t.oc0, as_i64(j)?);
        let yc = k.b.ins().imul_imm_s(oc, as_i64(g.oh * g.ow)?);
        let yc = k.b.ins().iadd(yc, t.yn);
        let yc = k.b.ins().iadd(yc, y_row);
        for (v, vars) in acc.chunks(chains).enumerate() {
            let mut val = k.b.use_var(vars[0]);
            for &var in &vars[1..] {
                let part = k.b.use_var(var);
                val = k.b.ins().fadd(val, part);
            }
            let off = as_i64(v * LANES)?;
            let val = epilogue(k, g, val, yc, off, stored)?;
            store_lanes(k, yc, off, val, stored);
        }
    }
    Ok(())
}

/// The fused epilogue of the f32x4 `val` of outputs from element `yc + off` (the first
/// `stored` lanes are outputs): + the residual there, the clamp, the activation unless it is a
/// separate pass ([`separate_pass`]).
pub(crate) fn epilogue(
    k: &mut Kernel,
    g: &Geo,
    val: Value,
    yc: Value,
    off: i64,
    stored: usize,
) -> LResult<Value> {
    let val = match g.residual {
        Some(r) => {
            let rv = load_lanes(k, r, yc, off, stored);
            k.b.ins().fadd(val, rv)
        }
        None => val,
    };
    let val = match g.clamp {
        Some(c) => super::math::clamp(k, LANES, c.lo, c.hi, val),
        None => val,
    };
    Ok(match g.act {
        Some(a) if !separate_pass(a) => act(k, LANES, a, val)?,
        _ => val,
    })
}

/// The input column tap `kx` of each lane of the edge vector of outputs from column `c` reads,
/// or None where that is padding or the lane is past the row.
fn edge_cols(g: &Geo, c: usize, kx: usize) -> [Option<usize>; LANES] {
    let mut out = [None; LANES];
    for (l, o) in out.iter_mut().enumerate() {
        let ox = c + l;
        if ox >= g.ow {
            continue;
        }
        // Shape inference bounds every padded coordinate, so this does not overflow.
        let p = ox * g.ax.stride + kx * g.ax.dilation;
        if p >= g.ax.pad_begin && p - g.ax.pad_begin < g.w {
            *o = Some(p - g.ax.pad_begin);
        }
    }
    out
}

/// The f32x4 of input row `row` (element index of its column 0) with lane l = column
/// `cols[l]`, or 0 where that is None: one or two in-bounds vector loads of the row and one
/// shuffle (zeroing lanes with a mask when both loads are used), lane by lane when the row is
/// narrower than a vector, the columns are spread wider than two vectors or the target has no
/// native shuffle ([`Kernel::has_shuffle`]).
fn edge_x(k: &mut Kernel, g: &Geo, row: Value, cols: &[Option<usize>; LANES]) -> Value {
    let little = MemFlagsData::new().with_endianness(Endianness::Little);
    let zero = k.fconst(LANES, 0.0);
    let valid: Vec<usize> = cols.iter().flatten().copied().collect();
    // Windows of 4 columns inside the row covering every column read.
    let mut windows: Vec<usize> = Vec::new();
    if g.w >= LANES {
        for &c in &valid {
            if !windows.iter().any(|&p| (p..p + LANES).contains(&c)) {
                windows.push(c.min(g.w - LANES));
            }
        }
    }
    if valid.is_empty() || g.w < LANES || windows.len() > 2 || !k.has_shuffle() {
        let mut v = zero;
        for (l, c) in cols.iter().enumerate() {
            if let Some(c) = c {
                let s = load_in(k, types::F32, row, *c as i64);
                v = k.b.ins().insertlane(v, s, l as u8);
            }
        }
        return v;
    }
    let a = load_in(k, types::F32X4, row, windows[0] as i64);
    let b = match windows.get(1) {
        Some(&p) => load_in(k, types::F32X4, row, p as i64),
        None => zero,
    };
    let mut lanes = [LANES; LANES];
    for (l, c) in cols.iter().enumerate() {
        if let Some(c) = *c {
            lanes[l] = match windows.iter().position(|&p| (p..p + LANES).contains(&c)) {
                Some(0) => c - windows[0],
                _ => LANES + c - windows[1],
            };
        }
    }
    let v = shuffle_f32(k, a, b, lanes);
    if windows.len() == 1 || cols.iter().all(Option::is_some) {
        return v;
    }
    let mask: Vec<u8> = cols
        .iter()
        .flat_map(|c| [if c.is_some() { 0xff } else { 0 }; 4])
        .collect();
    let mask = k.b.func.dfg.constants.insert(mask.into());
    let mask = k.b.ins().vconst(types::I8X16, mask);
    let v = k.b.ins().bitcast(types::I8X16, little, v);
    let v = k.b.ins().band(v, mask);
    k.b.ins().bitcast(types::F32X4, little, v)
}

/// Stores the first `n` (1 to 4) lanes of `v` at element `idx + off` of the result.
fn store_lanes(k: &mut Kernel, idx: Value, off: i64, v: Value, n: usize) {
    if n >= LANES {
        return k.store_off(BufId::Out, idx, off, v);
    }
    let mut l = 0;
    if n >= 2 {
        let little = MemFlagsData::new().with_endianness(Endianness::Little);
        let d = k.b.ins().bitcast(types::F64X2, little, v);
        let d = k.b.ins().extractlane(d, 0);
        k.store_off(BufId::Out, idx, off, d);
        l = 2;
    }
    if n % 2 == 1 {
        let s = k.b.ins().extractlane(v, l as u8);
        k.store_off(BufId::Out, idx, off + l, s);
    }
}

/// The first `n` (1 to 4) lanes of the f32x4 at element `idx + off` of operand `r`, the others
/// 0 (only those lanes are read).
fn load_lanes(k: &mut Kernel, r: BufId, idx: Value, off: i64, n: usize) -> Value {
    if n >= LANES {
        return k.load_off(r, types::F32X4, idx, off, false);
    }
    let mut v = k.fconst(LANES, 0.0);
    for l in 0..n {
        let s = k.load_off(r, types::F32, idx, off + l as i64, false);
        v = k.b.ins().insertlane(v, s, l as u8);
    }
    v
}

/// The fused activation `a` of `x` (f32 of `lanes` lanes), with the `unary` lowering's
/// functions: SiLU as x·sigmoid(x), HardSwish as `unary hard_swish`.
pub(crate) fn act(k: &mut Kernel, lanes: usize, a: Act, x: Value) -> LResult<Value> {
    match a {
        Act::Silu => {
            let s = super::unary::apply(k, UnaryKind::Sigmoid, x, lanes)?;
            Ok(k.b.ins().fmul(x, s))
        }
        Act::HardSwish => super::unary::apply(k, UnaryKind::HardSwish, x, lanes),
    }
}

/// Applies activation `a` in place over the output region of `rows` × `cols` elements from
/// element `c0` at a row stride of `ld` (run-time `c0`, `rows` ≥ 1 and `cols`): SiLU through
/// the kernel's SiLU micro-kernel when its slot holds one (x86-64 with the context's table; the
/// same bits as the Cranelift code), otherwise f32x4 vectors of the Cranelift [`act`] over each
/// row, whose iterations are independent.
pub(crate) fn act_region(
    k: &mut Kernel,
    a: Act,
    (c0, rows, cols, ld): (Value, Value, Value, usize),
) -> LResult {
    let own = |k: &mut Kernel| {
        over_tile(k, (c0, rows, cols, ld), |k, idx, ty| {
            let v = k.load(BufId::Out, ty, idx);
            let lanes = if ty == types::F32 { 1 } else { LANES };
            let v = act(k, lanes, a, v)?;
            k.store(BufId::Out, idx, v);
            Ok(())
        })
    };
    let f = match a {
        Act::Silu => k.silu_fn(),
        _ => None,
    };
    let call = |k: &mut Kernel, f: Value| {
        let len = k.b.ins().iadd_imm_s(rows, -1);
        let len = k.b.ins().imul_imm_s(len, as_i64(ld)?);
        let len = k.b.ins().iadd(len, cols);
        let ptr = k.span_addr(BufId::Out, c0, len);
        let ptr_ty = k.b.func.dfg.value_type(ptr);
        let sig =
            k.b.import_signature(crate::abi::silu_signature(k.call_conv(), ptr_ty));
        let ld = k.iconst(as_i64(ld)?);
        k.b.ins().call_indirect(sig, f, &[ptr, rows, cols, ld]);
        Ok(())
    };
    k.ukernel_or(f, call, own)
}

/// Emits `body(idx, ty)` over the output tile of `m` rows × `n` columns from element `c0` at a
/// row stride of `ldc` elements (run-time `c0`, `m`, `n`): f32x4 vectors from each row's start,
/// then scalars for the row's last `n mod 4` columns (`ty` F32X4 or F32; `idx` the element).
pub(crate) fn over_tile(
    k: &mut Kernel,
    (c0, m, n, ldc): (Value, Value, Value, usize),
    mut body: impl FnMut(&mut Kernel, Value, Type) -> LResult,
) -> LResult {
    let zero = k.iconst(0);
    let vecs = k.b.ins().ushr_imm_s(n, 2);
    let tail = k.b.ins().imul_imm_s(vecs, as_i64(LANES)?);
    k.loop_dyn(zero, m, |k, i| {
        let row = k.mul_add(c0, i, as_i64(ldc)?);
        k.loop_dyn(zero, vecs, |k, v| {
            let idx = k.mul_add(row, v, as_i64(LANES)?);
            body(k, idx, types::F32X4)
        })?;
        k.loop_dyn(tail, n, |k, j| {
            let idx = k.b.ins().iadd(row, j);
            body(k, idx, types::F32)
        })
    })
}

/// Bytes of a kernel's input (operand 0) above which it is taken to come from memory, not
/// from cache, and the micro-kernels reading it in place are given the
/// `dync_runtime::ukernel::GEMM_STREAM` hint: a quarter of this machine's 32 MiB L3, which
/// the activations of batch-1 CNNs fit in (MobileNetV2's largest: 4.8 MB) and those of batch 8
/// do not (38.5 MB).
const STREAM_BYTES: usize = 8 << 20;

/// Whether an f32 input of this shape is larger than [`STREAM_BYTES`].
pub(crate) fn streams(shape: &[usize]) -> bool {
    let elems = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    elems.is_none_or(|e| e.saturating_mul(4) > STREAM_BYTES)
}

/// Loads a `ty` value at element `idx + off` of the input, movable (placed at its use, see
/// [`Kernel::load_off`]). Sound here: every address depends on the task's channel block, so no
/// load leaves the branch of its block size ([`for_block`]), and each runs once its loop runs.
fn load_in(k: &mut Kernel, ty: Type, idx: Value, off: i64) -> Value {
    k.load_off(BufId::In(0), ty, idx, off, true)
}

/// The input vector of elements idx + off, idx + off + sx, ...: one vector load for
/// stride 1; for strides 2 and 3 two vector loads spanning exactly the first to the last
/// element (so they are in bounds whenever the elements are) and one shuffle; lane by lane
/// otherwise, and without a native shuffle ([`Kernel::has_shuffle`]). `movable` as in
/// [`Kernel::load_off`].
pub(crate) fn load_x(k: &mut Kernel, idx: Value, off: i64, sx: i64, movable: bool) -> Value {
    let load = |k: &mut Kernel, ty: Type, off: i64| k.load_off(BufId::In(0), ty, idx, off, movable);
    if sx == 1 {
        return load(k, types::F32X4, off);
    }
    if sx <= 3 && k.has_shuffle() {
        // p holds elements off .. off+3 (lanes 0 and sx), q off+3sx−3 .. off+3sx (lanes
        // 3−sx and 3 are elements off+2sx and off+3sx).
        let p = load(k, types::F32X4, off);
        let q = load(k, types::F32X4, off + 3 * sx - 3);
        let s = sx as usize;
        return shuffle_f32(k, p, q, [0, s, 4 + 3 - s, 7]);
    }
    let first = load(k, types::F32, off);
    let mut v = k.b.ins().splat(types::F32X4, first);
    for l in 1..LANES {
        let s = load(k, types::F32, off + l as i64 * sx);
        v = k.b.ins().insertlane(v, s, l as u8);
    }
    v
}

/// The f32x4 whose lane i is lane `lanes[i]` of the concatenation of `a` (0..4) and `b` (4..8).
pub(crate) fn shuffle_f32(k: &mut Kernel, a: Value, b: Value, lanes: [usize; 4]) -> Value {
    let little = MemFlagsData::new().with_endianness(Endianness::Little);
    let a = k.b.ins().bitcast(types::I8X16, little, a);
    let b = k.b.ins().bitcast(types::I8X16, little, b);
    let mask: Vec<u8> = lanes
        .iter()
        .flat_map(|&l| (0..4).map(move |i| (4 * l + i) as u8))
        .collect();
    let imm = k.b.func.dfg.immediates.push(mask.into());
    let s = k.b.ins().shuffle(a, b, imm);
    k.b.ins().bitcast(types::F32X4, little, s)
}
