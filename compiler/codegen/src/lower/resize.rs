//! `resize`: nearest or (multi)linear resampling of f32, scalar.
//!
//! At compile time, every resampled dim (one whose size or scale changes; the others are
//! copied through, as in the reference) gets a table of two taps per output coordinate —
//! (input element offset, weight) — computed in f64 exactly as the reference computes
//! coordinates (coordinate transform, nearest rounding, clamping to the border); a single-tap
//! coordinate has its second tap equal to the first with weight 0, and nearest uses only the
//! first tap. Each output element is the weighted sum over the taps of all resampled dims
//! (products of the per-dim weights). Rejects more than [`MAX_RESAMPLED`] resampled dims.
//! Tasks: chunks of the outermost output dim longer than 1 ([`Split`]), e.g. the classes of
//! FCN's upsampling; every element is computed by the same instructions whatever the split.

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{chunk_len, chunked};
use crate::error::{CodegenError, NodeRef};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use dync_ir::ops::{Resize, ResizeMode};
use dync_ir::tensor::strides;
use dync_ir::TensorType;

/// Limit on resampled dims (an output element reads 2^dims taps in linear mode).
const MAX_RESAMPLED: usize = 6;

/// A resampled dim's tables: element offsets (i64 pairs) and weights (f32 pairs).
struct Tables {
    offsets: Value,
    weights: Value,
}

/// The output dim cut into task chunks (the first longer than 1) and the chunk length.
struct Split {
    dim: usize,
    chunk: usize,
}

impl Split {
    fn new(op: &Resize, xs: &[usize], ys: &[usize]) -> Option<Split> {
        let dim = ys.iter().position(|&e| e > 1)?;
        let resampled = (0..xs.len()).filter(|&d| op.resamples(d, xs[d])).count();
        let taps = if op.mode == ResizeMode::Linear {
            1usize << resampled.min(MAX_RESAMPLED)
        } else {
            1
        };
        let inner = ys[dim + 1..].iter().fold(taps, |a, &e| a.saturating_mul(e));
        Some(Split {
            dim,
            chunk: chunk_len(ys[dim], inner, 1),
        })
    }

    fn tasks(&self, ys: &[usize]) -> usize {
        ys[self.dim].div_ceil(self.chunk).max(1)
    }
}

/// The kernel's tasks (see [`Split`]).
pub(crate) fn tasks(op: &Resize, x: &TensorType, y: &TensorType) -> usize {
    if y.shape.contains(&0) {
        return 1;
    }
    Split::new(op, &x.shape, &y.shape).map_or(1, |s| s.tasks(&y.shape))
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
        let (n, m) = (xs[d], ys[d]);
        if !op.resamples(d, n) {
            tables.push(None);
            continue;
        }
        let (mut offs, mut ws) = (Vec::new(), Vec::new());
        for y in 0..m {
            for (i, w) in op.taps(d, y, n) {
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
    let split = Split::new(op, &xs, &ys);
    let ctx = Ctx {
        ys: ys.clone(),
        own,
        tables,
        linear,
        ystrides: strides(&ys),
        split,
    };
    k.for_tasks(|k, t| level(k, &ctx, 0, &[(zero, one)], zero, t))
}

struct Ctx {
    split: Option<Split>,
    ys: Vec<usize>,
    own: Vec<usize>,
    tables: Vec<Option<Tables>>,
    linear: bool,
    ystrides: Vec<usize>,
}

/// Loops over output dim `d` (task `t`'s chunk of it when it is the split dim), extending
/// each partial tap (input offset, weight product).
fn level(
    k: &mut Kernel,
    c: &Ctx,
    d: usize,
    partial: &[(Value, Value)],
    y: Value,
    t: Value,
) -> LResult {
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
    let body = |k: &mut Kernel, o: Value| {
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
        level(k, c, d + 1, &next, y2, t)
    };
    match &c.split {
        Some(s) if s.dim == d => chunked(k, t, c.ys[d], s.chunk, |k, first, len| {
            k.loop_range(0, len, 1, |k, o| {
                let o = k.b.ins().iadd(first, o);
                body(k, o)
            })
        }),
        _ => k.loop_n(c.ys[d], body),
    }
}
