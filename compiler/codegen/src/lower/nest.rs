//! Strided loop nests: the shared skeleton of elementwise, broadcasting, layout and
//! reduction kernels.
//!
//! A nest walks an index space `dims`; each [`View`] maps an index to an element of a buffer
//! through an offset and one stride per dim (0 for broadcast dims, negative for reversed
//! slices). [`for_each`] first drops extent-1 dims and merges neighbouring dims that every view
//! walks contiguously, then vectorizes the innermost dim 4-wide (with a scalar tail) when it is
//! allowed and every view has stride 0 or 1 there (a vector view must have stride 1).
//! An index space with an empty dim emits nothing.

use super::kernel::{as_i64, BufId, Kernel, LResult, LANES};
use cranelift_codegen::ir::{InstBuilder, Value};
use dync_ir::tensor::strides;

/// How a buffer is indexed by a nest.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub buf: BufId,
    /// Element offset of index 0.
    pub offset: i64,
    /// Element stride per nest dim.
    pub strides: Vec<i64>,
}

impl View {
    /// The row-major view of a whole buffer of `shape`.
    pub fn dense(buf: BufId, shape: &[usize]) -> LResult<View> {
        Ok(View {
            buf,
            offset: 0,
            strides: strides(shape)
                .into_iter()
                .map(as_i64)
                .collect::<LResult<_>>()?,
        })
    }

    /// A buffer of shape `src` read as broadcast (numpy rules, trailing alignment) to `dst`.
    pub fn broadcast(buf: BufId, src: &[usize], dst: &[usize]) -> LResult<View> {
        let own = strides(src);
        let lead = dst.len() - src.len();
        let strides = (0..dst.len())
            .map(|i| {
                if i < lead || src[i - lead] == 1 {
                    Ok(0)
                } else {
                    as_i64(own[i - lead])
                }
            })
            .collect::<LResult<_>>()?;
        Ok(View {
            buf,
            offset: 0,
            strides,
        })
    }
}

/// Where a view stands at the current index: its element offset and whether the current
/// lanes are contiguous there (false: one element broadcast to all lanes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct At {
    pub idx: Value,
    pub contiguous: bool,
}

/// Emits `body(k, positions, lanes)` for every index of `dims`, `lanes` (4 or 1) consecutive
/// innermost indices at a time. `vector` allows 4 lanes: they are used when every view has
/// stride 0 or 1 on the (simplified) innermost dim and the last view (the one written) has 1.
pub(crate) fn for_each(
    k: &mut Kernel,
    dims: &[usize],
    views: &[View],
    vector: bool,
    body: impl FnMut(&mut Kernel, &[At], usize) -> LResult,
) -> LResult {
    let zero = k.iconst(0);
    let bases = vec![zero; views.len()];
    for_each_from(k, dims, views, &bases, vector, body)
}

/// [`for_each`] with run-time base offsets: view i starts at element `bases[i] + offset`.
pub(crate) fn for_each_from(
    k: &mut Kernel,
    dims: &[usize],
    views: &[View],
    bases: &[Value],
    vector: bool,
    mut body: impl FnMut(&mut Kernel, &[At], usize) -> LResult,
) -> LResult {
    if dims.contains(&0) {
        return Ok(());
    }
    let (dims, views) = simplify(dims, views);
    let inner_ok = |v: &View| matches!(v.strides.last(), Some(0) | Some(1));
    let vec_ok = vector
        && dims.last().is_some_and(|&n| n >= LANES)
        && views.iter().all(inner_ok)
        && views.last().is_some_and(|v| v.strides.last() == Some(&1));
    let bases: Vec<Value> = views
        .iter()
        .zip(bases)
        .map(|(v, &b)| k.add_imm(b, v.offset))
        .collect();
    level(k, &dims, &views, 0, &bases, vec_ok, &mut body)
}

fn level(
    k: &mut Kernel,
    dims: &[usize],
    views: &[View],
    d: usize,
    bases: &[Value],
    vec_ok: bool,
    body: &mut impl FnMut(&mut Kernel, &[At], usize) -> LResult,
) -> LResult {
    if d == dims.len() {
        let at: Vec<At> = bases
            .iter()
            .map(|&idx| At {
                idx,
                contiguous: false,
            })
            .collect();
        return body(k, &at, 1);
    }
    let last = d + 1 == dims.len();
    let n = dims[d];
    if last && vec_ok {
        let full = n / LANES * LANES;
        let emit = |k: &mut Kernel,
                    i: Value,
                    lanes: usize,
                    body: &mut dyn FnMut(&mut Kernel, &[At], usize) -> LResult| {
            let at: Vec<At> = views
                .iter()
                .zip(bases)
                .map(|(v, &b)| At {
                    idx: k.mul_add(b, i, v.strides[d]),
                    contiguous: lanes > 1 && v.strides[d] == 1,
                })
                .collect();
            body(k, &at, lanes)
        };
        k.loop_range(0, full, LANES, |k, i| emit(k, i, LANES, body))?;
        return k.loop_range(full, n, 1, |k, i| emit(k, i, 1, body));
    }
    k.loop_n(n, |k, i| {
        let next: Vec<Value> = views
            .iter()
            .zip(bases)
            .map(|(v, &b)| k.mul_add(b, i, v.strides[d]))
            .collect();
        level(k, dims, views, d + 1, &next, vec_ok, body)
    })
}

/// Drops extent-1 dims and merges dim i into i+1 when every view has
/// stride[i] == stride[i+1]·dims[i+1].
fn simplify(dims: &[usize], views: &[View]) -> (Vec<usize>, Vec<View>) {
    let keep: Vec<usize> = (0..dims.len()).filter(|&i| dims[i] != 1).collect();
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out_views: Vec<View> = views
        .iter()
        .map(|v| View {
            buf: v.buf,
            offset: v.offset,
            strides: Vec::new(),
        })
        .collect();
    for &i in &keep {
        let mergeable = !out_dims.is_empty()
            && views.iter().zip(&out_views).all(|(v, o)| {
                let prev = o.strides.last().copied().unwrap_or(0);
                (dims[i] as i64).checked_mul(v.strides[i]) == Some(prev)
            });
        if mergeable {
            let n = out_dims.len() - 1;
            out_dims[n] *= dims[i];
            for (o, v) in out_views.iter_mut().zip(views) {
                let n = o.strides.len() - 1;
                o.strides[n] = v.strides[i];
            }
        } else {
            out_dims.push(dims[i]);
            for (o, v) in out_views.iter_mut().zip(views) {
                o.strides.push(v.strides[i]);
            }
        }
    }
    (out_dims, out_views)
}

/// Elementwise map: `out[view] = f(loaded operands)` over `dims`. Operands and result are
/// loaded and stored with their buffers' element types; `vector` allows 4-lane f32 code (then
/// `f` receives f32x4 values and must return one).
pub(crate) fn map(
    k: &mut Kernel,
    dims: &[usize],
    ins: &[View],
    out: View,
    vector: bool,
    mut f: impl FnMut(&mut Kernel, &[Value], usize) -> LResult<Value>,
) -> LResult {
    let mut views = ins.to_vec();
    views.push(out);
    let bufs: Vec<BufId> = views.iter().map(|v| v.buf).collect();
    for_each(k, dims, &views, vector, |k, at, lanes| {
        let (out_at, in_at) = at
            .split_last()
            .ok_or_else(|| crate::error::CodegenError::cranelift(&k.name, "map without result"))?;
        let mut vals = Vec::with_capacity(in_at.len());
        for (a, &buf) in in_at.iter().zip(&bufs) {
            let v = if lanes > 1 {
                k.load_f32(buf, a.idx, lanes, a.contiguous)
            } else {
                let ty = super::kernel::clif_type(k.dtype(buf));
                k.load(buf, ty, a.idx)
            };
            vals.push(v);
        }
        let y = f(k, &vals, lanes)?;
        k.store(BufId::Out, out_at.idx, y);
        Ok(())
    })
}

/// Horizontal combination of the 4 lanes of `v` with `op` (lane order 0, 1, 2, 3).
pub(crate) fn reduce_lanes(
    k: &mut Kernel,
    v: Value,
    mut op: impl FnMut(&mut Kernel, Value, Value) -> Value,
) -> Value {
    let mut acc = k.b.ins().extractlane(v, 0u8);
    for l in 1..LANES as u8 {
        let x = k.b.ins().extractlane(v, l);
        acc = op(k, acc, x);
    }
    acc
}
