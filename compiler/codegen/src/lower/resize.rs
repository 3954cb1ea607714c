//! `resize`: nearest or (multi)linear resampling of f32, scalar.
//!
//! At compile time, every resampled dim (one whose size or scale changes; the others are
//! copied through, as in the reference) gets a table of two taps per output coordinate —
//! (input element offset, weight) — computed in f64 exactly as the reference computes
//! coordinates (coordinate transform, nearest rounding, clamping to the border); a single-tap
//! coordinate has its second tap equal to the first with weight 0, and nearest uses only the
//! first tap. Each output element is the weighted sum over the taps of all resampled dims
//! (products of the per-dim weights). Rejects more than [`MAX_RESAMPLED`] resampled dims.

use super::kernel::{as_i64, BufId, Kernel, LResult};
use crate::error::{CodegenError, NodeRef};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use dync_ir::ops::{CoordMode, NearestMode, Resize, ResizeMode};
use dync_ir::tensor::strides;

/// Limit on resampled dims (an output element reads 2^dims taps in linear mode).
const MAX_RESAMPLED: usize = 6;

/// The input coordinate of output coordinate `y` (ONNX Resize coordinate transforms).
fn source_coord(coord: CoordMode, y: usize, n: usize, m: usize, s: f64) -> f64 {
    let (y, nf, mf) = (y as f64, n as f64, m as f64);
    let out_width = s * nf;
    match coord {
        CoordMode::HalfPixel => (y + 0.5) / s - 0.5,
        CoordMode::PytorchHalfPixel if m == 1 => 0.0,
        CoordMode::PytorchHalfPixel => (y + 0.5) / s - 0.5,
        CoordMode::AlignCorners if m == 1 => 0.0,
        CoordMode::AlignCorners => y * (nf - 1.0) / (out_width - 1.0),
        CoordMode::Asymmetric => y / s,
        CoordMode::HalfPixelSymmetric => nf / 2.0 * (1.0 - mf / out_width) + (y + 0.5) / s - 0.5,
    }
}

/// `i` clamped to [0, n − 1] (NaN clamps to 0).
fn clamp_index(i: f64, n: usize) -> usize {
    let top = (n - 1) as f64;
    if i >= top {
        n - 1
    } else if i > 0.0 {
        i as usize
    } else {
        0
    }
}

/// The two taps (index, weight) of input coordinate `x` in a dim of extent `n` (> 0).
fn taps(op: &Resize, x: f64, n: usize) -> [(usize, f64); 2] {
    let fl = x.floor();
    let frac = x - fl;
    match op.mode {
        ResizeMode::Nearest => {
            let up = frac > 0.0
                && match op.nearest {
                    NearestMode::RoundPreferFloor => frac > 0.5,
                    NearestMode::RoundPreferCeil => frac >= 0.5,
                    NearestMode::Floor => false,
                    NearestMode::Ceil => true,
                };
            let i = clamp_index(if up { fl + 1.0 } else { fl }, n);
            [(i, 1.0), (i, 0.0)]
        }
        ResizeMode::Linear if frac == 0.0 => {
            let i = clamp_index(fl, n);
            [(i, 1.0), (i, 0.0)]
        }
        ResizeMode::Linear => [
            (clamp_index(fl, n), 1.0 - frac),
            (clamp_index(fl + 1.0, n), frac),
        ],
    }
}

/// A resampled dim's tables: element offsets (i64 pairs) and weights (f32 pairs).
struct Tables {
    offsets: Value,
    weights: Value,
}

pub(crate) fn lower(k: &mut Kernel, op: &Resize, node: &NodeRef) -> LResult {
    let xs = k.shape(BufId::In(0));
    let ys = k.shape(BufId::Out);
    if ys.contains(&0) {
        return Ok(());
    }
    let own = strides(&xs);
    let mut tables: Vec<Option<Tables>> = Vec::with_capacity(xs.len());
    for d in 0..xs.len() {
        let (n, m, s) = (xs[d], ys[d], f64::from(op.scales[d]));
        if m == n && s == 1.0 {
            tables.push(None);
            continue;
        }
        let (mut offs, mut ws) = (Vec::new(), Vec::new());
        for y in 0..m {
            for (i, w) in taps(op, source_coord(op.coord, y, n, m, s), n) {
                offs.extend_from_slice(&as_i64(i * own[d])?.to_le_bytes());
                ws.extend_from_slice(&(w as f32).to_le_bytes());
            }
        }
        tables.push(Some(Tables {
            offsets: k.table(offs)?,
            weights: k.table(ws)?,
        }));
    }
    if tables.iter().flatten().count() > MAX_RESAMPLED {
        return Err(CodegenError::lower(
            node,
            format!("resize of more than {MAX_RESAMPLED} dims"),
        ));
    }
    let one = k.fconst(1, 1.0);
    let zero = k.iconst(0);
    let linear = op.mode == ResizeMode::Linear;
    let ctx = Ctx {
        ys: ys.clone(),
        own,
        tables,
        linear,
        ystrides: strides(&ys),
    };
    level(k, &ctx, 0, &[(zero, one)], zero)
}

struct Ctx {
    ys: Vec<usize>,
    own: Vec<usize>,
    tables: Vec<Option<Tables>>,
    linear: bool,
    ystrides: Vec<usize>,
}

/// Loops over output dim `d`, extending each partial tap (input offset, weight product).
fn level(k: &mut Kernel, c: &Ctx, d: usize, partial: &[(Value, Value)], y: Value) -> LResult {
    if d == c.ys.len() {
        let mut acc: Option<Value> = None;
        for &(off, w) in partial {
            let x = k.load(BufId::In(0), types::F32, off);
            acc = Some(match acc {
                None if !c.linear => x,
                None => k.b.ins().fmul(x, w),
                Some(a) => k.b.ins().fma(x, w, a),
            });
        }
        let v = acc.ok_or_else(|| CodegenError::cranelift(&k.name, "resize without taps"))?;
        k.store(BufId::Out, y, v);
        return Ok(());
    }
    k.loop_n(c.ys[d], |k, o| {
        let y2 = k.mul_add(y, o, as_i64(c.ystrides[d])?);
        let next: Vec<(Value, Value)> = match &c.tables[d] {
            None => partial
                .iter()
                .map(|&(off, w)| Ok((k.mul_add(off, o, as_i64(c.own[d])?), w)))
                .collect::<LResult<_>>()?,
            Some(t) => {
                let taps = if c.linear { 2 } else { 1 };
                let mut next = Vec::with_capacity(partial.len() * taps);
                for &(off, w) in partial {
                    for tap in 0..taps {
                        let i = k.b.ins().imul_imm_s(o, 2);
                        let i = k.add_imm(i, tap as i64);
                        let toff = k.table_load(t.offsets, types::I64, i);
                        let tw = k.table_load(t.weights, types::F32, i);
                        let off2 = k.b.ins().iadd(off, toff);
                        let w2 = if c.linear { k.b.ins().fmul(w, tw) } else { w };
                        next.push((off2, w2));
                    }
                }
                next
            }
        };
        level(k, c, d + 1, &next, y2)
    })
}
