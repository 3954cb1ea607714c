//! `pad`: pads or crops every dim (constant, edge or reflect mode).
//!
//! At compile time, each dim's result coordinates map to input indices exactly as the
//! reference defines (negative amounts crop first to an extent m; constant mode reads `value`
//! outside the cropped input, edge the nearest border element, reflect the mirror image
//! without repeating the border); the map is split into runs whose source index moves by a
//! constant step (−1, 0 or +1), or that read the constant — at most three per dim. The result
//! is the union of boxes (one run per dim): boxes touching a constant run are filled with the
//! value, the others are strided copies (4 lanes at a time for f32 where contiguous).
//! Rejects, like onnxruntime and the reference, reflect padding not smaller than m and edge
//! padding of a dim cropped to nothing.

use super::kernel::{as_i64, clif_type, BufId, Kernel, LResult};
use super::nest::{map, View};
use crate::error::{CodegenError, NodeRef};
use cranelift_codegen::ir::InstBuilder;
use dync_ir::ops::{Pad, PadMode};
use dync_ir::tensor::strides;
use dync_ir::DType;

/// A run of result coordinates [start, start+len) reading input start index `src` + i·step,
/// or the constant when `src` is `None`.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: usize,
    len: usize,
    src: Option<(usize, i64)>,
}

pub(crate) fn lower(k: &mut Kernel, op: &Pad, node: &NodeRef) -> LResult {
    let xs = k.shape(BufId::In(0));
    let ys = k.shape(BufId::Out);
    let r = xs.len();
    let mut runs: Vec<Vec<Run>> = Vec::with_capacity(r);
    for d in 0..r {
        let map = source_map(op, xs[d], op.pads[d], op.pads[d + r], ys[d]).ok_or_else(|| {
            CodegenError::lower(
                node,
                format!(
                    "{} padding of dim {d} needs more than its extent after cropping",
                    op.mode.name()
                ),
            )
        })?;
        runs.push(split(&map));
    }
    if ys.contains(&0) {
        return Ok(());
    }
    let in_strides = strides(&xs);
    let out_strides = strides(&ys);
    let dtype = k.dtype(BufId::Out);
    let vector = dtype == DType::F32;
    let mut choice = vec![0usize; r];
    loop {
        let sel: Vec<Run> = (0..r).map(|d| runs[d][choice[d]]).collect();
        let dims: Vec<usize> = sel.iter().map(|s| s.len).collect();
        let mut out = View {
            buf: BufId::Out,
            offset: 0,
            strides: Vec::with_capacity(r),
        };
        for (d, s) in sel.iter().enumerate() {
            out.offset += as_i64(s.start * out_strides[d])?;
            out.strides.push(as_i64(out_strides[d])?);
        }
        if sel.iter().all(|s| s.src.is_some()) {
            let mut src = View {
                buf: BufId::In(0),
                offset: 0,
                strides: Vec::with_capacity(r),
            };
            for (d, s) in sel.iter().enumerate() {
                if let Some((start, step)) = s.src {
                    let st = as_i64(in_strides[d])?;
                    src.offset += as_i64(start)? * st;
                    src.strides.push(step * st);
                }
            }
            map(k, &dims, &[src], out, vector, |_, v, _| Ok(v[0]))?;
        } else {
            let value = op.value;
            map(k, &dims, &[], out, vector, |k, _, lanes| {
                Ok(match dtype {
                    DType::F32 => k.fconst(lanes, value),
                    DType::I64 | DType::I32 => k.b.ins().iconst(clif_type(dtype), value as i64),
                    DType::Bool => k.b.ins().iconst(clif_type(dtype), i64::from(value != 0.0)),
                })
            })?;
        }
        // Next box (odometer over the runs of every dim).
        let mut d = r;
        loop {
            if d == 0 {
                return Ok(());
            }
            d -= 1;
            choice[d] += 1;
            if choice[d] < runs[d].len() {
                break;
            }
            choice[d] = 0;
        }
    }
}

/// Source index of each result coordinate of one dim (`None`: the constant), or `None` when
/// the padding does not fit the cropped extent m (reflect: pad >= m; edge: m = 0).
fn source_map(
    op: &Pad,
    d: usize,
    begin: i64,
    end: i64,
    out_len: usize,
) -> Option<Vec<Option<usize>>> {
    let (d, b, e) = (d as i128, i128::from(begin), i128::from(end));
    let lo = (-b).max(0);
    let m = d - lo - (-e).max(0);
    let fits = |pad: i128| match op.mode {
        PadMode::Constant => true,
        PadMode::Edge => pad <= 0 || m > 0,
        PadMode::Reflect => pad <= 0 || pad < m,
    };
    if !fits(b) || !fits(e) {
        return None;
    }
    (0..out_len)
        .map(|o| {
            let j = o as i128 - b.max(0);
            let src = if (0..m).contains(&j) {
                j
            } else {
                match op.mode {
                    PadMode::Constant => return Some(None),
                    PadMode::Edge => j.clamp(0, m - 1),
                    PadMode::Reflect if j < 0 => -j,
                    PadMode::Reflect => 2 * (m - 1) - j,
                }
            };
            usize::try_from(lo + src).ok().map(Some)
        })
        .collect()
}

/// Splits a source map into maximal runs of constant step.
fn split(map: &[Option<usize>]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (o, &s) in map.iter().enumerate() {
        if let Some(last) = runs.last_mut() {
            let extends = match (last.src, s) {
                (None, None) => true,
                (Some((start, step)), Some(s)) => {
                    let prev = start as i64 + step * (last.len as i64 - 1);
                    let d = s as i64 - prev;
                    if last.len == 1 && (-1..=1).contains(&d) {
                        last.src = Some((start, d));
                        true
                    } else {
                        last.len > 1 && d == step
                    }
                }
                _ => false,
            };
            if extends {
                last.len += 1;
                continue;
            }
        }
        runs.push(Run {
            start: o,
            len: 1,
            src: s.map(|s| (s, 1)),
        });
    }
    runs
}
