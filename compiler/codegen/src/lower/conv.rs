//! `conv`: direct 2-D convolution over NCHW f32 (weights [O, C/G, kh, kw], optional bias),
//! for any groups, strides, dilations and pads.
//!
//! Structure: one task per image, group and block of up to [`OC_BLOCK`] output channels (the
//! kernel's parallel tasks, see [`crate::abi`]; a task's instructions do not depend on which
//! other tasks run with it); output rows and columns split into runs with one static tap range
//! each ([`super::window`]), so padding is never tested at run time. A register tile holds OC_BLOCK channels × [`VECS`] f32x4
//! vectors of adjacent output columns (8 accumulators): per tap, the input vectors are loaded
//! once (contiguous for stride 1, gathered lane by lane otherwise) and each channel's weight is
//! broadcast and FMA'd into them. Column remainders use one vector, then scalar columns.
//! The fused clamp (`Conv::clamp`) is applied to the accumulators before the store.
//! Weights are read in their IR layout, so run-time (dynamic) weights work the same as
//! constant ones; loads of constant weights may be hoisted. `dyn_conv` reuses this per block
//! ([`conv_block`]) with the kernels it mixed into scratch memory, one set per image
//! ([`Geo::per_image`]).

use super::kernel::{as_i64, f32_type, BufId, Kernel, LResult, LANES};
use super::pool::axes;
use super::window::{Axis, Segment};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::Variable;
use dync_ir::ops::{Clamp, Conv};
use dync_ir::TensorType;

/// Output channels per register tile.
pub(crate) const OC_BLOCK: usize = 4;
/// f32x4 vectors of output columns per register tile.
const VECS: usize = 2;

/// Vectors of output columns per tile for `nb` channels: 8 accumulators in all, so one or two
/// channels (depthwise and small-group convs) get wider tiles.
fn vecs(nb: usize) -> usize {
    (OC_BLOCK * VECS / nb.max(1)).clamp(1, 2 * VECS)
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
    /// The fused epilogue clamp, applied before the store.
    clamp: Option<Clamp>,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    cg: usize,
    og: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    ay: Axis,
    ax: Axis,
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
            clamp: op.clamp,
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

/// The tasks of a convolution of `x` [N, C, H, W] into `y` [N, O, OH, OW] with `group` groups
/// (one per image, group and block of output channels; 1 when there is nothing to compute).
pub(crate) fn tasks(x: &TensorType, y: &TensorType, group: usize) -> usize {
    let og = y.shape[1].checked_div(group).unwrap_or(0);
    (x.shape[0] * group * blocks(og)).max(1)
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
    let bias = (k.n_inputs() == 3).then_some((BufId::In(2), 0));
    let g = Geo::new(k, op, &k.shape(BufId::In(1)), (BufId::In(1), 0), bias);
    if !has_outputs(&g) || k.shape(BufId::In(0))[0] == 0 {
        return Ok(());
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
        conv_channels(k, g, n, grp, oc0, nb)
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

/// All outputs of the `nb` channels from `oc0` (of group `grp`) of image `n`.
pub(crate) fn conv_channels(
    k: &mut Kernel,
    g: &Geo,
    n: Value,
    grp: Value,
    oc0: Value,
    nb: usize,
) -> LResult {
    let (rows, cols) = (g.ay.segments(), g.ax.segments());
    block(k, g, &rows, &cols, n, grp, oc0, nb)
}

/// All outputs of `nb` channels starting at `oc0` of image `n`, group `grp`.
#[allow(clippy::too_many_arguments)]
fn block(
    k: &mut Kernel,
    g: &Geo,
    rows: &[Segment],
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
    let zero = k.iconst(0);
    let wn = k.mul_add(zero, n, g.per_image.0);
    let bn = k.mul_add(zero, n, g.per_image.1);
    let vecs = vecs(nb);
    let tile_w = vecs * LANES;
    for rs in rows {
        k.loop_range(rs.start, rs.end, 1, |k, oy| {
            for cs in cols {
                let len = cs.end - cs.start;
                let wide_end = cs.start + len / tile_w * tile_w;
                let vec_end = wide_end + (cs.end - wide_end) / LANES * LANES;
                let t = TileAt {
                    xg,
                    yn,
                    wn,
                    bn,
                    oc0,
                    oy,
                };
                k.loop_range(cs.start, wide_end, tile_w, |k, ox| {
                    tile(k, g, rs, cs, &t, ox, nb, LANES, vecs)
                })?;
                k.loop_range(wide_end, vec_end, LANES, |k, ox| {
                    tile(k, g, rs, cs, &t, ox, nb, LANES, 1)
                })?;
                k.loop_range(vec_end, cs.end, 1, |k, ox| {
                    tile(k, g, rs, cs, &t, ox, nb, 1, 1)
                })?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

struct TileAt {
    xg: Value,
    yn: Value,
    /// Offsets of the image's weights and bias.
    wn: Value,
    bn: Value,
    oc0: Value,
    oy: Value,
}

/// One register tile: `nb` channels × `vecs` vectors of `lanes` columns from column `ox`.
#[allow(clippy::too_many_arguments)]
fn tile(
    k: &mut Kernel,
    g: &Geo,
    rs: &Segment,
    cs: &Segment,
    t: &TileAt,
    ox: Value,
    nb: usize,
    lanes: usize,
    vecs: usize,
) -> LResult {
    let ty = f32_type(lanes);
    let taps = as_i64(g.kh * g.kw)?;
    let mut accs: Vec<Vec<Variable>> = Vec::with_capacity(nb);
    let mut w_base = Vec::with_capacity(nb);
    for j in 0..nb {
        let oc = k.add_imm(t.oc0, as_i64(j)?);
        let init = match g.bias {
            Some((buf, off)) => {
                let at = k.b.ins().iadd(oc, t.bn);
                let b = k.load_off(buf, types::F32, at, off, true);
                k.splat(lanes, b)
            }
            None => k.fconst(lanes, 0.0),
        };
        accs.push((0..vecs).map(|_| k.var(ty, init)).collect());
        let wb = k.b.ins().imul_imm_s(oc, as_i64(g.cg)? * taps);
        let wb = k.b.ins().iadd(wb, t.wn);
        w_base.push(k.add_imm(wb, g.weights.1));
    }
    // Column of tap 0 of the tile's first output: ox·sx − pad_left.
    let col0 = k.b.ins().imul_imm_s(ox, as_i64(g.ax.stride)?);
    let col0 = k.add_imm(col0, -as_i64(g.ax.pad_begin)?);
    let (sx, dx) = (as_i64(g.ax.stride)?, as_i64(g.ax.dilation)?);
    k.loop_n(g.cg, |k, ci| {
        let plane = k.mul_add(t.xg, ci, as_i64(g.h * g.w)?);
        let w_c: Vec<Value> = w_base.iter().map(|&b| k.mul_add(b, ci, taps)).collect();
        // Kernel rows stay a loop: Cranelift places pure instructions at their uses, so an
        // unrolled window would keep every row's input vectors live at once (spills).
        k.repeat(rs.k_lo, rs.k_hi, 1, |k, ky| {
            let r = k.b.ins().imul_imm_s(t.oy, as_i64(g.ay.stride)?);
            let r = k.mul_add(r, ky, as_i64(g.ay.dilation)?);
            let r = k.add_imm(r, -as_i64(g.ay.pad_begin)?);
            let row = k.mul_add(plane, r, as_i64(g.w)?);
            let base = k.b.ins().iadd(row, col0);
            let kw = as_i64(g.kw)?;
            let w_row: Vec<Value> = w_c.iter().map(|&b| k.mul_add(b, ky, kw)).collect();
            for kx in cs.k_lo..cs.k_hi {
                let kxo = as_i64(kx)? * dx;
                let xv: Vec<Value> = (0..vecs)
                    .map(|v| Ok(load_x(k, base, as_i64(v * LANES)? * sx + kxo, lanes, sx)))
                    .collect::<LResult<_>>()?;
                for (j, &wr) in w_row.iter().enumerate() {
                    let wv = k.load_off(g.weights.0, types::F32, wr, as_i64(kx)?, true);
                    let wv = k.splat(lanes, wv);
                    for (v, &x) in xv.iter().enumerate() {
                        let a = k.b.use_var(accs[j][v]);
                        let a = k.b.ins().fma(wv, x, a);
                        k.b.def_var(accs[j][v], a);
                    }
                }
            }
            Ok(())
        })
    })?;
    let y_row = k.b.ins().imul_imm_s(t.oy, as_i64(g.ow)?);
    let y_row = k.b.ins().iadd(y_row, ox);
    for (j, acc) in accs.iter().enumerate() {
        let oc = k.add_imm(t.oc0, as_i64(j)?);
        let yc = k.b.ins().imul_imm_s(oc, as_i64(g.oh * g.ow)?);
        let yc = k.b.ins().iadd(yc, t.yn);
        let yc = k.b.ins().iadd(yc, y_row);
        for (v, &var) in acc.iter().enumerate() {
            let val = k.b.use_var(var);
            let val = match g.clamp {
                Some(c) => {
                    let (lo, hi) = (k.fconst(lanes, c.lo), k.fconst(lanes, c.hi));
                    let v = k.b.ins().fmax(lo, val);
                    k.b.ins().fmin(hi, v)
                }
                None => val,
            };
            k.store_off(BufId::Out, yc, as_i64(v * LANES)?, val);
        }
    }
    Ok(())
}

/// `lanes` input values at elements idx + off, idx + off + sx, ...: one vector load for
/// stride 1, lane by lane otherwise.
fn load_x(k: &mut Kernel, idx: Value, off: i64, lanes: usize, sx: i64) -> Value {
    if lanes == 1 || sx == 1 {
        return k.load_off(BufId::In(0), f32_type(lanes), idx, off, false);
    }
    let first = k.load_off(BufId::In(0), types::F32, idx, off, false);
    let mut v = k.b.ins().splat(types::F32X4, first);
    for l in 1..LANES {
        let s = k.load_off(BufId::In(0), types::F32, idx, off + l as i64 * sx, false);
        v = k.b.ins().insertlane(v, s, l as u8);
    }
    v
}
