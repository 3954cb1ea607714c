//! Depthwise convolution (one input and one output channel per group) over a zero-padded copy
//! of the input plane: the `conv` and `dyn_conv` direct paths' block of one channel, when
//! [`applies`].
//!
//! Why: on small maps (EfficientNet's and ShuffleNet's 7×7 and 14×14) nearly every output
//! vector of the direct path is an edge vector, built from shuffled partial windows tap by
//! tap. Here the task first copies its input plane into a stack buffer with zero borders (the
//! padding, multiplied in like the direct path's edge vectors do), so every output vector reads
//! every tap with one unaligned load and no edge logic. A stride-2 plane is stored
//! deinterleaved (even padded columns, then odd ones, per row), so its taps are contiguous
//! loads too: tap kx of output column x reads phase kx mod 2 at index x + kx div 2.
//!
//! Output rows are cut into f32x4 vectors from column 0; when the row is not a multiple of 4
//! wide its last vector starts at ow − 4 and overlaps the one before (both store the same
//! values there), so every store is a whole vector. A step computes up to [`CHAINS`] vectors
//! (several rows of a narrow map) as independent FMA chains, over a loop of kernel rows. The
//! epilogue is the direct path's ([`super::conv::epilogue`]); SiLU runs as one pass over the
//! channel's finished plane (contiguous), not per row: on 7-wide rows the micro-kernel's call
//! per row cost more than the convolution.
//!
//! Rows of 9 to 32 outputs without a fused residual call the runtime's small-map depthwise
//! micro-kernel instead when the context has one (`dync_runtime::ukernel::dwp`: it pads its
//! own plane from the input, with AVX-512 permutes for stride 2; one masked 16-lane vector per
//! row of up to 16 outputs, the bias, clamp and activation in the call, the same FMA chains, so
//! the same bits). MobileNetV3-small at two threads 0.639 →
//! 0.577 ms, CondConv 4e 4.52 → 4.27 ms (interleaved runs). Rows of up to 8 keep the own code:
//! the micro-kernel (a 16-lane vector per 7-wide row, SiLU per row vector) ran EfficientNet's
//! 3×3 depthwise conv on 7×7 maps at 0.088 ms against 0.068 here, its 5×5 ones no faster.
//!
//! Applies to stride 1 or 2 in both dims, dilation 1, output rows 4 to [`MAX_WIDTH`] wide and
//! a padded plane of at most [`MAX_PLANE`] floats (the stack buffer); everything else keeps the
//! direct path.
//!
//! Maps of rows 4 to 8 wide that the channel-block micro-kernel takes (`dync_runtime::
//! ukernel::dwc`, [`block_geo`]: 7×7 maps, equal strides, no fused residual) run in blocks of
//! `DWC_CHANNELS` channels per task instead: one call when the context has the kernel (the
//! lanes are the block's channels, so no lane is idle and no per-channel copy or pass is
//! made; the same FMA chains, the same bits), else each channel as above. CondConv's 7×7
//! depthwise dyn_convs at batch 8, two threads: see docs/benchmarks.md.

use super::conv::{
    channel_params, depthwise_call, epilogue, separate_act, shuffle_f32, weights_at, Geo,
};
use super::kernel::{as_i64, BufId, Kernel, LResult, LANES};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::Variable;
use dync_ir::ops::Act;
use dync_runtime::ukernel::dwc::{DwcGeo, DWC_CHANNELS, DWC_GEO_FIELDS};
use dync_runtime::ukernel::dwp::DWP_MAX_PLANE;
use dync_runtime::ukernel::{GEMM_CLAMP, GEMM_HARDSWISH, GEMM_SILU};

/// Widest output rows that take this path: on wider ones the direct path has few edge vectors
/// and no copy to make, and measured as fast or faster (56 and 112 wide).
pub(crate) const MAX_WIDTH: usize = 32;
/// Largest padded plane (floats) held on the stack (32 KB, within L1), the micro-kernel's too.
const MAX_PLANE: usize = DWP_MAX_PLANE;
/// Output vectors (independent FMA chains) per step: rows are taken together until a step has
/// this many, longer rows are cut.
const CHAINS: usize = 8;

/// The padded plane's layout: rows × phases × `len` floats.
struct Plane {
    rows: usize,
    /// Stride of the columns (1 or 2): phase q holds padded columns q, q + s, ...
    phases: usize,
    /// Floats per phase row.
    len: usize,
}

impl Plane {
    fn new(g: &Geo) -> Plane {
        // Rows and columns some output reads (the padded extent may have more).
        let rows = (g.oh - 1) * g.ay.stride + g.kh;
        let cols = (g.ow - 1) * g.ax.stride + g.kw;
        Plane {
            rows,
            phases: g.ax.stride,
            len: cols.div_ceil(g.ax.stride),
        }
    }

    fn floats(&self) -> usize {
        self.rows * self.phases * self.len
    }

    /// Float offset of padded (row, col).
    fn at(&self, row: usize, col: usize) -> usize {
        (row * self.phases + col % self.phases) * self.len + col / self.phases
    }
}

/// Whether `g` is a depthwise conv (one input and one output channel per group) of stride 1
/// or 2 and dilation 1: the shapes this path and the depthwise micro-kernel handle.
pub(crate) fn plain_depthwise(g: &Geo) -> bool {
    g.cg == 1
        && g.og == 1
        && g.ax.dilation == 1
        && g.ay.dilation == 1
        && matches!(g.ax.stride, 1 | 2)
        && matches!(g.ay.stride, 1 | 2)
}

/// Whether the block of one channel of `g` takes this path.
pub(crate) fn applies(g: &Geo) -> bool {
    plain_depthwise(g)
        && g.ow >= LANES
        && g.oh >= 1
        && g.ow <= MAX_WIDTH
        && Plane::new(g).floats() <= MAX_PLANE
}

/// The channel-block micro-kernel's geometry for a depthwise conv (or dyn_conv) of `x`
/// [N, C, H, W] into `y` [N, O, OH, OW] with weights `ws` [O, C/G, kh, kw], when its channels
/// run in blocks of `DWC_CHANNELS` (see the module documentation): depthwise, dilation 1, equal
/// strides, no fused residual, output rows 4 to 8 wide and a geometry the kernel takes
/// (`DwcGeo::fits`). The task counts and the lowerings decide with this one function.
pub(crate) fn block_geo(
    x: &[usize],
    y: &[usize],
    ws: &[usize],
    (strides, pads, dilations): ([usize; 2], [usize; 4], [usize; 2]),
    group: usize,
    residual: bool,
) -> Option<DwcGeo> {
    let ([_, c, h, w], [_, o, oh, ow], [_, cg, kh, kw]) = (x, y, ws) else {
        return None;
    };
    let geo = DwcGeo {
        h: *h,
        w: *w,
        oh: *oh,
        ow: *ow,
        kh: *kh,
        kw: *kw,
        s: strides[1],
        pt: pads[0],
        pl: pads[1],
    };
    let depthwise = *c == group && *o == group && *cg == 1;
    (depthwise
        && strides[0] == strides[1]
        && dilations == [1, 1]
        && !residual
        && *ow >= LANES
        && geo.fits())
    .then_some(geo)
}

/// Channel blocks of `DWC_CHANNELS` of a conv with `group` (depthwise) channels.
pub(crate) fn channel_blocks(group: usize) -> usize {
    group.div_ceil(DWC_CHANNELS)
}

/// The channels `c0 .. end` of channel block `blk` of a depthwise conv with `group` channels:
/// `DWC_CHANNELS` of them, fewer in the last block.
pub(crate) fn block_channels(k: &mut Kernel, group: usize, blk: Value) -> LResult<(Value, Value)> {
    let c0 = k.b.ins().imul_imm_s(blk, as_i64(DWC_CHANNELS)?);
    let total = k.iconst(as_i64(group)?);
    let left = k.b.ins().isub(total, c0);
    let cap = k.iconst(as_i64(DWC_CHANNELS)?);
    let nc = k.b.ins().umin(left, cap);
    Ok((c0, k.b.ins().iadd(c0, nc)))
}

/// Channel block `blk` of image `n` (its channels `blk · DWC_CHANNELS ..`, at most
/// `DWC_CHANNELS`): one call of the channel-block micro-kernel (geometry `geo`, see
/// [`block_geo`]) when the context has one, else each channel by [`channel`], whose chains
/// the kernel's are.
pub(crate) fn channels(k: &mut Kernel, g: &Geo, geo: &DwcGeo, n: Value, blk: Value) -> LResult {
    if !applies(g) {
        return Err(crate::error::CodegenError::cranelift(
            &k.name,
            "a channel block outside the padded-plane path",
        ));
    }
    let (c0, end) = block_channels(k, g.group, blk)?;
    let nc = k.b.ins().isub(end, c0);
    let f = k.dwc_fn();
    k.ukernel_or(
        f,
        |k, f| block_call(k, g, geo, n, (c0, nc), f),
        |k| k.loop_dyn(c0, end, |k, c| channel(k, g, n, c)),
    )
}

/// Channels `c0 .. c0 + nc` of image `n` by the channel-block micro-kernel `f`, with the bias,
/// the clamp and the activation in the call.
fn block_call(
    k: &mut Kernel,
    g: &Geo,
    geo: &DwcGeo,
    n: Value,
    (c0, nc): (Value, Value),
    f: Value,
) -> LResult {
    let (plane_in, plane_out, taps) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    // Element `(n·chans + c0)·size` of `buf`, spanning `nc` planes of `size`.
    let planes = |k: &mut Kernel, buf: BufId, chans: usize, size: usize| -> LResult<Value> {
        let at = k.b.ins().imul_imm_s(n, as_i64(chans)?);
        let at = k.b.ins().iadd(at, c0);
        let at = k.b.ins().imul_imm_s(at, as_i64(size)?);
        let len = k.b.ins().imul_imm_s(nc, as_i64(size)?);
        Ok(k.span_addr(buf, at, len))
    };
    let xp = planes(k, BufId::In(0), g.c, plane_in)?;
    let yp = planes(k, BufId::Out, g.o, plane_out)?;
    let w = weights_at(k, g, n, c0)?;
    let len = k.b.ins().imul_imm_s(nc, as_i64(taps)?);
    let wp = k.span_addr(g.weights.0, w, len);
    let bias = match g.bias {
        Some((buf, off)) => {
            let at = k.mul_add(c0, n, g.per_image.1);
            let at = k.add_imm(at, off);
            k.span_addr(buf, at, nc)
        }
        None => k.iconst(0),
    };
    let fields: [usize; DWC_GEO_FIELDS] = [
        geo.h, geo.w, geo.oh, geo.ow, geo.kh, geo.kw, geo.s, geo.pt, geo.pl,
    ];
    let table = k.usize_table(&fields)?;
    let mut flags = 0;
    if g.clamp.is_some() {
        flags |= GEMM_CLAMP;
    }
    flags |= match g.act {
        Some(Act::Silu) => GEMM_SILU,
        Some(Act::HardSwish) => GEMM_HARDSWISH,
        None => 0,
    };
    let (lo, hi) = g.clamp.map_or((0.0, 0.0), |c| (c.lo, c.hi));
    let ptr = k.b.func.dfg.value_type(xp);
    let sig =
        k.b.import_signature(crate::abi::dwc_signature(k.call_conv(), ptr));
    let args = [
        xp,
        k.iconst(as_i64(plane_in)?),
        table,
        wp,
        k.iconst(as_i64(taps)?),
        bias,
        yp,
        k.iconst(as_i64(plane_out)?),
        nc,
        k.b.ins().iconst(types::I32, i64::from(flags)),
        k.fconst(1, lo),
        k.fconst(1, hi),
    ];
    k.b.ins().call_indirect(sig, f, &args);
    Ok(())
}

/// The first column of each output vector of a row: 0, 4, ... and ow − 4 when the row is not
/// a multiple of 4 wide.
fn vector_cols(ow: usize) -> Vec<usize> {
    let mut cols: Vec<usize> = (0..ow / LANES).map(|j| j * LANES).collect();
    if !ow.is_multiple_of(LANES) {
        cols.push(ow - LANES);
    }
    cols
}

/// All outputs of channel `oc` (= its group) of image `n`.
pub(crate) fn channel(k: &mut Kernel, g: &Geo, n: Value, oc: Value) -> LResult {
    let y_chan = k.b.ins().imul_imm_s(n, as_i64(g.o)?);
    let y_chan = k.b.ins().iadd(y_chan, oc);
    let y_chan = k.b.ins().imul_imm_s(y_chan, as_i64(g.oh * g.ow)?);
    // SiLU is a pass over the finished plane here, in the micro-kernel's epilogue there.
    let own = |k: &mut Kernel| {
        let plane = Plane::new(g);
        let buf = k.stack_buffer(plane.floats() * 4)?;
        fill(k, g, &plane, buf, n, oc)?;
        let (w, bias) = channel_params(k, g, n, oc)?;
        let cols = vector_cols(g.ow);
        let rows_per_step = (CHAINS / cols.len()).clamp(1, g.oh);
        let full = g.oh / rows_per_step * rows_per_step;
        k.loop_range(0, full, rows_per_step, |k, oy| {
            rows(
                k,
                g,
                &plane,
                (buf, w, bias),
                y_chan,
                oy,
                rows_per_step,
                &cols,
            )
        })?;
        if full < g.oh {
            let oy = k.iconst(as_i64(full)?);
            rows(k, g, &plane, (buf, w, bias), y_chan, oy, g.oh - full, &cols)?;
        }
        separate_act(k, g, y_chan, 1, None)
    };
    // The micro-kernel's epilogue has no residual: a fused one keeps the own code.
    let f = if g.residual.is_none() && g.ow > 8 {
        k.dwp_fn()
    } else {
        None
    };
    // The micro-kernel (`dync_runtime::ukernel::dwp`) pads the plane itself.
    let call = |k: &mut Kernel, f: Value| {
        let in_call: &[Act] = if in_call_silu(g) {
            &[Act::HardSwish, Act::Silu]
        } else {
            &[Act::HardSwish]
        };
        depthwise_call(k, g, n, (oc, None), f, in_call)?;
        if in_call_silu(g) {
            Ok(())
        } else {
            separate_act(k, g, y_chan, 1, None)
        }
    };
    k.ukernel_or(f, call, own)
}

/// Whether the micro-kernel applies SiLU to each row's vector rather than a pass over the
/// contiguous plane after it: on rows of 9 to 16 outputs at most 7 of the 16 lanes are idle,
/// and the pass costs a call, a load and a store per element (EfficientNet-B0's 28×28 5×5
/// depthwise conv, one thread: 0.131 → 0.106 ms with the kernel's bands below).
fn in_call_silu(g: &Geo) -> bool {
    g.ow > 8
}

/// Output rows oy .. oy + nrows of the channel whose outputs start at element `y_chan`, at most
/// [`CHAINS`] vectors at a time.
#[allow(clippy::too_many_arguments)]
fn rows(
    k: &mut Kernel,
    g: &Geo,
    plane: &Plane,
    params: (Value, Value, Option<Value>),
    y_chan: Value,
    oy: Value,
    nrows: usize,
    cols: &[usize],
) -> LResult {
    for part in cols.chunks(CHAINS.max(1)) {
        vectors(k, g, plane, params, y_chan, oy, nrows, part)?;
    }
    Ok(())
}

/// The vectors from columns `cols` of output rows oy .. oy + nrows (one accumulator each).
#[allow(clippy::too_many_arguments)]
fn vectors(
    k: &mut Kernel,
    g: &Geo,
    plane: &Plane,
    (buf, w, bias): (Value, Value, Option<Value>),
    y_chan: Value,
    oy: Value,
    nrows: usize,
    cols: &[usize],
) -> LResult {
    // The kernel rows are a loop, whose accumulators pass its back edge: each row's FMAs run
    // in its iteration. The plane loads are pure (readonly, movable) so that each is placed at
    // its FMA, keeping one loaded vector live instead of one per chain. Sound although the
    // task wrote the plane before and writes the next channel's after: every load's address
    // depends on the kernel-row counter, so it cannot leave that loop, which runs between the
    // fill and the next fill, and no two loads of one iteration share an address (so none is
    // merged with another). With one kernel row there is no loop (`loop_range` runs a single
    // iteration inline, the counter a constant): pure loads could then move above the fill or
    // merge with another channel's, so they are ordinary loads.
    let flags = if g.kh > 1 {
        MemFlagsData::new()
            .with_notrap()
            .with_readonly()
            .with_can_move()
    } else {
        MemFlagsData::new().with_notrap()
    };
    let init = match bias {
        Some(b) => k.splat(LANES, b),
        None => k.fconst(LANES, 0.0),
    };
    let accs: Vec<Variable> = (0..nrows * cols.len())
        .map(|_| k.var(types::F32X4, init))
        .collect();
    let row_bytes = as_i64(plane.at(1, 0) * 4)?;
    // Byte address of padded row oy·sy.
    let row0 = k.b.ins().imul_imm_s(oy, as_i64(g.ay.stride)? * row_bytes);
    let row0 = k.b.ins().iadd(buf, row0);
    k.loop_range(0, g.kh, 1, |k, ky| {
        let row = k.mul_add(row0, ky, row_bytes);
        let w_row = k.mul_add(w, ky, as_i64(g.kw)?);
        for kx in 0..g.kw {
            let wv = k.load_off(g.weights.0, types::F32, w_row, as_i64(kx)?, true);
            let wv = k.splat(LANES, wv);
            for r in 0..nrows {
                for (v, &x0) in cols.iter().enumerate() {
                    let off = plane.at(r * g.ay.stride, x0 * g.ax.stride + kx) * 4;
                    let disp = i32::try_from(off)
                        .map_err(|_| crate::error::CodegenError::Overflow("a plane".into()))?;
                    let x = k.b.ins().load(types::F32X4, flags, row, disp);
                    let var = accs[r * cols.len() + v];
                    let a = k.b.use_var(var);
                    let a = k.b.ins().fma(x, wv, a);
                    k.b.def_var(var, a);
                }
            }
        }
        Ok(())
    })?;
    for r in 0..nrows {
        let y_row = k.add_imm(oy, as_i64(r)?);
        let y_row = k.mul_add(y_chan, y_row, as_i64(g.ow)?);
        for (v, &x0) in cols.iter().enumerate() {
            let acc = k.b.use_var(accs[r * cols.len() + v]);
            let val = epilogue(k, g, acc, y_row, as_i64(x0)?, LANES)?;
            k.store_off(BufId::Out, y_row, as_i64(x0)?, val);
        }
    }
    Ok(())
}

/// Copies channel `c` of image `n` into the plane at `buf`, and zeroes the rest of the plane:
/// the rows above and below the input, the columns left and right of it.
fn fill(k: &mut Kernel, g: &Geo, plane: &Plane, buf: Value, n: Value, c: Value) -> LResult {
    let store = MemFlagsData::new().with_notrap();
    let (pt, pl) = (g.ay.pad_begin, g.ax.pad_begin);
    let padded_cols = plane.len * plane.phases;
    // Input rows iy < r_hi and columns < c_hi land in the plane (at iy + pt, c + pl).
    let r_hi = g.h.min(plane.rows.saturating_sub(pt));
    let c_hi = g.w.min(padded_cols.saturating_sub(pl));
    let zero = k.fconst(LANES, 0.0);
    let zs = k.fconst(1, 0.0);
    let row_floats = plane.at(1, 0);
    let overflow = || crate::error::CodegenError::Overflow("a plane".into());
    // Whole rows of zeros: above the input, and below it (all rows when nothing lands).
    let data_rows = if c_hi == 0 { 0 } else { r_hi };
    for (from, to) in [(0, pt.min(plane.rows)), (pt + data_rows, plane.rows)] {
        let (f0, f1) = (from * row_floats, to.max(from) * row_floats);
        let vecs = (f1 - f0) / LANES;
        k.loop_range(0, vecs, 1, |k, i| {
            let a = k.b.ins().imul_imm_s(i, (LANES * 4) as i64);
            let a = k.b.ins().iadd(buf, a);
            let off = i32::try_from(f0 * 4).map_err(|_| overflow())?;
            k.b.ins().store(store, zero, a, off);
            Ok(())
        })?;
        for f in f0 + vecs * LANES..f1 {
            let off = i32::try_from(f * 4).map_err(|_| overflow())?;
            k.b.ins().store(store, zs, buf, off);
        }
    }
    if data_rows == 0 {
        return Ok(());
    }
    let x_chan = k.b.ins().imul_imm_s(n, as_i64(g.c)?);
    let x_chan = k.b.ins().iadd(x_chan, c);
    let x_chan = k.b.ins().imul_imm_s(x_chan, as_i64(g.h * g.w)?);
    let deinterleave = plane.phases == 2 && k.has_shuffle();
    k.loop_range(0, r_hi, 1, |k, iy| {
        let src = k.mul_add(x_chan, iy, as_i64(g.w)?);
        // Byte address of padded row iy + pt.
        let dst = k.add_imm(iy, as_i64(pt)?);
        let dst = k.b.ins().imul_imm_s(dst, as_i64(plane.at(1, 0) * 4)?);
        let dst = k.b.ins().iadd(buf, dst);
        let put = |k: &mut Kernel, v: Value, col: usize| -> LResult {
            let off = i32::try_from(plane.at(0, col) * 4)
                .map_err(|_| crate::error::CodegenError::Overflow("a plane".into()))?;
            k.b.ins().store(store, v, dst, off);
            Ok(())
        };
        // The padding columns of the row.
        for col in (0..pl).chain(c_hi + pl..padded_cols) {
            put(k, zs, col)?;
        }
        let mut c0 = 0;
        if plane.phases == 1 {
            while c0 + LANES <= c_hi {
                let v = k.load_off(BufId::In(0), types::F32X4, src, as_i64(c0)?, true);
                put(k, v, c0 + pl)?;
                c0 += LANES;
            }
        } else if deinterleave {
            // Columns c0..c0+8: the even ones go to padded columns c0+pl, c0+pl+2, ... (one
            // phase, consecutive), the odd ones to the other phase.
            while c0 + 2 * LANES <= c_hi {
                let a = k.load_off(BufId::In(0), types::F32X4, src, as_i64(c0)?, true);
                let b = k.load_off(BufId::In(0), types::F32X4, src, as_i64(c0 + LANES)?, true);
                let even = shuffle_f32(k, a, b, [0, 2, 4, 6]);
                let odd = shuffle_f32(k, a, b, [1, 3, 5, 7]);
                put(k, even, c0 + pl)?;
                put(k, odd, c0 + 1 + pl)?;
                c0 += 2 * LANES;
            }
        }
        for c in c0..c_hi {
            let v = k.load_off(BufId::In(0), types::F32, src, as_i64(c)?, true);
            put(k, v, c + pl)?;
        }
        Ok(())
    })
}
