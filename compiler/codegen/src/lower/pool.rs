//! `avg_pool` and `max_pool` over NCHW f32. Per (image, channel) plane, output rows and columns
//! split into runs with one static tap range each ([`super::window`]); inside a run, 4
//! adjacent outputs per vector (their taps contiguous at stride 1, gathered by two loads and a
//! shuffle at strides 2 and 3 where shuffles are native), other strides one output at a time.
//! max_pool skips NaN inputs, gives NaN for a window of NaN cells only (as the interpreter and
//! onnxruntime do) and never lets padding win: a fast fold of one compare-and-select (`maxps`)
//! per tap from −∞, and an exact fold for the cells it leaves at −∞ (see [`Fold`]); avg_pool
//! divides the sum by the number of input
//! cells in the window, or with `count_include_pad` by the cells inside the padded extent.
//! Planes are cut into tasks of equal chunks ([`tasks`]), each plane computed whole by one.

use super::conv::load_x;
use super::kernel::{as_i64, f32_type, BufId, Kernel, LResult, LANES};
use super::math::select_cmp;
use super::nest::chunk_len;
use super::window::{Axis, Segment};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value};
use dync_ir::ops::{AvgPool, MaxPool};
use dync_ir::TensorType;

#[derive(Clone, Copy)]
enum Kind {
    Max,
    Avg { count_include_pad: bool },
}

pub(crate) fn lower_avg(k: &mut Kernel, op: &AvgPool) -> LResult {
    let kind = Kind::Avg {
        count_include_pad: op.count_include_pad,
    };
    pool(k, kind, op.kernel, op.strides, op.pads, [1, 1])
}

pub(crate) fn lower_max(k: &mut Kernel, op: &MaxPool) -> LResult {
    pool(k, Kind::Max, op.kernel, op.strides, op.pads, op.dilations)
}

/// The two spatial axes of a windowed NCHW op.
pub(crate) fn axes(
    input: &[usize],
    output: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
) -> [Axis; 2] {
    [0, 1].map(|i| Axis {
        input: input[2 + i],
        output: output[2 + i],
        pad_begin: pads[i],
        pad_end: pads[2 + i],
        kernel: kernel[i],
        stride: strides[i],
        dilation: dilations[i],
    })
}

fn pool(
    k: &mut Kernel,
    kind: Kind,
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
) -> LResult {
    let xs = k.shape(BufId::In(0));
    let ys = k.shape(BufId::Out);
    let [ay, ax] = axes(&xs, &ys, kernel, strides, pads, dilations);
    let (rows, cols) = (ay.segments(), ax.segments());
    let (h, w, oh, ow) = (xs[2], xs[3], ys[2], ys[3]);
    let planes = ys[0] * ys[1];
    let chunk = plane_chunk(&ys, kernel);
    // 4 adjacent outputs per vector: their taps are contiguous at stride 1, and gathered by
    // two loads and a shuffle at strides 2 and 3 ([`load_x`]).
    let vectors = ax.stride == 1 || (ax.stride <= 3 && k.has_shuffle());
    k.for_tasks(|k, t| {
        // Planes first..min(first + chunk, planes): one loop whatever the chunk's length.
        let first = k.b.ins().imul_imm_s(t, as_i64(chunk)?);
        let end = k.add_imm(first, as_i64(chunk)?);
        let all = k.iconst(as_i64(planes)?);
        let end = k.b.ins().smin(end, all);
        k.loop_dyn(first, end, |k, plane| {
            let xb = k.b.ins().imul_imm_s(plane, as_i64(h * w)?);
            let yb = k.b.ins().imul_imm_s(plane, as_i64(oh * ow)?);
            for rs in &rows {
                k.loop_range(rs.start, rs.end, 1, |k, oy| {
                    for cs in &cols {
                        let vec_end = if vectors {
                            cs.start + (cs.end - cs.start) / LANES * LANES
                        } else {
                            cs.start
                        };
                        let cell = |k: &mut Kernel, ox: Value, lanes: usize| {
                            let at = Cell {
                                xb,
                                yb,
                                oy,
                                ox,
                                lanes,
                            };
                            emit_cell(k, kind, &ay, &ax, rs, cs, (w, ow), at)
                        };
                        k.loop_range(cs.start, vec_end, LANES, |k, ox| cell(k, ox, LANES))?;
                        k.loop_range(vec_end, cs.end, 1, |k, ox| cell(k, ox, 1))?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
    })
}

/// Planes (image × channel) per task of a pool of window `kernel` giving `ys`.
fn plane_chunk(ys: &[usize], kernel: [usize; 2]) -> usize {
    let cost = ys[2..]
        .iter()
        .chain(&kernel)
        .fold(1usize, |a, &d| a.saturating_mul(d));
    chunk_len(ys[0].saturating_mul(ys[1]), cost, 1)
}

/// The kernel's tasks: chunks of planes.
pub(crate) fn tasks(result: &TensorType, kernel: [usize; 2]) -> usize {
    let ys = &result.shape;
    if ys.len() != 4 {
        return 1;
    }
    let planes = ys[0].saturating_mul(ys[1]);
    planes.div_ceil(plane_chunk(ys, kernel)).max(1)
}

/// Position of one (vector of) output(s).
struct Cell {
    xb: Value,
    yb: Value,
    oy: Value,
    ox: Value,
    lanes: usize,
}

/// How a window's taps are combined.
#[derive(Clone, Copy)]
enum Fold {
    /// From −∞, `m = v` when `m < v`: one `maxps` per tap on x86; a NaN input never wins, so
    /// a window without NaN, or with a finite maximum, gets the exact result. −∞ is also what
    /// a window of NaN cells gives, hence [`Fold::MaxExact`] for those lanes.
    MaxFast,
    /// From NaN, `m = v` when `v > m` or `m` is NaN: NaN only for a window of NaN cells.
    MaxExact,
    Sum,
}

#[allow(clippy::too_many_arguments)]
fn emit_cell(
    k: &mut Kernel,
    kind: Kind,
    ay: &Axis,
    ax: &Axis,
    rs: &Segment,
    cs: &Segment,
    (w, ow): (usize, usize),
    at: Cell,
) -> LResult {
    let lanes = at.lanes;
    let window = |k: &mut Kernel, fold: Fold| fold_window(k, fold, ay, ax, rs, cs, w, &at);
    let y = match kind {
        Kind::Max => {
            // The exact fold, on the rare cells whose fast maximum is −∞ (all NaN, or all
            // −∞, or −∞ and NaN: only the exact fold tells these apart).
            let fast = window(k, Fold::MaxFast)?;
            let ninf = k.fconst(lanes, f32::NEG_INFINITY);
            let low = k.b.ins().fcmp(FloatCC::Equal, fast, ninf);
            let low = if lanes == 1 {
                low
            } else {
                k.b.ins().vany_true(low)
            };
            let (exact, join) = (k.b.create_block(), k.b.create_block());
            let y = k.b.append_block_param(join, f32_type(lanes));
            k.b.ins().brif(low, exact, &[], join, &[fast.into()]);
            k.b.set_cold_block(exact);
            k.b.switch_to_block(exact);
            let e = window(k, Fold::MaxExact)?;
            k.b.ins().jump(join, &[e.into()]);
            k.b.switch_to_block(join);
            y
        }
        Kind::Avg { count_include_pad } => {
            let sum = window(k, Fold::Sum)?;
            let count = if count_include_pad {
                rs.padded_cells * cs.padded_cells
            } else {
                (rs.k_hi - rs.k_lo) * (cs.k_hi - cs.k_lo)
            };
            let c = k.fconst(lanes, count as f32);
            k.b.ins().fdiv(sum, c)
        }
    };
    let yi = k.b.ins().imul_imm_s(at.oy, as_i64(ow)?);
    let yi = k.b.ins().iadd(yi, at.yb);
    let yi = k.b.ins().iadd(yi, at.ox);
    k.store(BufId::Out, yi, y);
    Ok(())
}

/// Folds the taps of one (vector of) output(s) inside the input (padding never takes part).
#[allow(clippy::too_many_arguments)]
fn fold_window(
    k: &mut Kernel,
    fold: Fold,
    ay: &Axis,
    ax: &Axis,
    rs: &Segment,
    cs: &Segment,
    w: usize,
    at: &Cell,
) -> LResult<Value> {
    let lanes = at.lanes;
    let init = match fold {
        Fold::MaxFast => f32::NEG_INFINITY,
        Fold::MaxExact => f32::NAN,
        Fold::Sum => 0.0,
    };
    let init = k.fconst(lanes, init);
    let acc = k.var(f32_type(lanes), init);
    // Column of tap 0: ox·sx − pad_left, plus kx·dx per tap.
    let col0 = k.b.ins().imul_imm_s(at.ox, as_i64(ax.stride)?);
    let col0 = k.add_imm(col0, -as_i64(ax.pad_begin)?);
    k.repeat(rs.k_lo, rs.k_hi, 3, |k, ky| {
        let r = k.b.ins().imul_imm_s(at.oy, as_i64(ay.stride)?);
        let r = k.mul_add(r, ky, as_i64(ay.dilation)?);
        let r = k.add_imm(r, -as_i64(ay.pad_begin)?);
        let row = k.b.ins().imul_imm_s(r, as_i64(w)?);
        let row = k.b.ins().iadd(row, at.xb);
        let base = k.b.ins().iadd(row, col0);
        for kx in cs.k_lo..cs.k_hi {
            let idx = k.add_imm(base, as_i64(kx * ax.dilation)?);
            let v = if lanes == 1 {
                k.load_f32(BufId::In(0), idx, 1, true)
            } else {
                load_x(k, idx, 0, as_i64(ax.stride)?, false)
            };
            let m = k.b.use_var(acc);
            let next = match fold {
                Fold::MaxFast => select_cmp(k, lanes, FloatCC::LessThan, m, v, v, m),
                Fold::MaxExact => {
                    let larger = select_cmp(k, lanes, FloatCC::GreaterThan, v, m, v, m);
                    select_cmp(k, lanes, FloatCC::Unordered, m, m, v, larger)
                }
                Fold::Sum => k.b.ins().fadd(m, v),
            };
            k.b.def_var(acc, next);
        }
        Ok(())
    })?;
    Ok(k.b.use_var(acc))
}
