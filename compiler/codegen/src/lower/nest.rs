//! Strided loop nests: the shared skeleton of elementwise, broadcasting, layout and
//! reduction kernels.
//!
//! A nest walks an index space `dims`; each [`View`] maps an index to an element of a buffer
//! through an offset and one stride per dim (0 for broadcast dims, negative for reversed
//! slices). [`for_each`] first drops extent-1 dims and merges neighbouring dims that every view
//! walks contiguously, then vectorizes the innermost dim 4-wide (with a scalar tail) when it is
//! allowed and every view has stride 0 or 1 there (a vector view must have stride 1).
//! An index space with an empty dim emits nothing.
//!
//! Parallel nests ([`Split`], [`for_each_split`]) cut the outermost simplified dim into chunks
//! of equal static length (the last one shorter), one task each. A chunk only moves where an
//! element's code starts: the inner dims are walked whole, and when the outermost dim is also
//! the vectorized one the chunk length is a multiple of the vector width, so the scalar tail
//! holds the same elements as in one task. Every element is thus computed by the same
//! instructions whatever the split, and the task count depends on shapes only ([`Split::new`]
//! is what both `lower::tasks` and the lowering call).

use super::kernel::{as_i64, BufId, Kernel, LResult, LANES};
use cranelift_codegen::ir::condcodes::IntCC;
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
        // Four vectors per iteration: independent loads and stores, a quarter of the loop
        // overhead.
        let wide = n / (UNROLL * LANES) * (UNROLL * LANES);
        k.loop_range(0, wide, UNROLL * LANES, |k, i| {
            for u in 0..UNROLL {
                let iu = k.add_imm(i, (u * LANES) as i64);
                emit(k, iu, LANES, body)?;
            }
            Ok(())
        })?;
        k.loop_range(wide, full, LANES, |k, i| emit(k, i, LANES, body))?;
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

/// Vectors per iteration of a vectorized innermost loop.
const UNROLL: usize = 4;

/// Work units (elements, or multiply-adds) a task should have at least: below that, waking a
/// second thread costs more than it saves.
pub(crate) const TASK_WORK: usize = 16 * 1024;
/// The most tasks a kernel is cut into (the pool groups tasks into chunks per thread anyway).
pub(crate) const MAX_TASKS: usize = 64;

/// The chunk length that cuts `n` items of `cost` work units each into tasks of at least
/// [`TASK_WORK`] units and at most [`MAX_TASKS`] tasks, a multiple of `align` (> 0) unless it
/// is all of `n`; `n` when one task is enough.
pub(crate) fn chunk_len(n: usize, cost: usize, align: usize) -> usize {
    let cost = cost.max(1);
    if n.saturating_mul(cost) < 2 * TASK_WORK {
        return n.max(1);
    }
    let want = TASK_WORK
        .div_ceil(cost)
        .max(n.div_ceil(MAX_TASKS))
        .next_multiple_of(align.max(1));
    want.min(n).max(1)
}

/// Emits `body(k, first, len)` for the chunk of task `t` of `n` items cut into chunks of
/// `chunk` (static `len`: `chunk`, or the remainder for the last chunk, behind a branch on t);
/// nothing when `n` is 0.
pub(crate) fn chunked(
    k: &mut Kernel,
    t: Value,
    n: usize,
    chunk: usize,
    mut body: impl FnMut(&mut Kernel, Value, usize) -> LResult,
) -> LResult {
    if n == 0 || chunk == 0 {
        return Ok(());
    }
    let first = k.b.ins().imul_imm_s(t, as_i64(chunk)?);
    let (full, rem) = (n / chunk, n % chunk);
    if rem == 0 {
        return body(k, first, chunk);
    }
    if full == 0 {
        return body(k, first, rem);
    }
    let whole = k.b.create_block();
    let last = k.b.create_block();
    let join = k.b.create_block();
    let is_whole =
        k.b.ins()
            .icmp_imm_s(IntCC::UnsignedLessThan, t, as_i64(full)?);
    k.b.ins().brif(is_whole, whole, &[], last, &[]);
    k.b.switch_to_block(whole);
    body(k, first, chunk)?;
    k.b.ins().jump(join, &[]);
    k.b.switch_to_block(last);
    body(k, first, rem)?;
    k.b.ins().jump(join, &[]);
    k.b.switch_to_block(join);
    Ok(())
}

/// A nest cut into tasks along its outermost simplified dim.
pub(crate) struct Split {
    dims: Vec<usize>,
    views: Vec<View>,
    /// Chunk length along `dims[0]`.
    chunk: usize,
    pub tasks: usize,
}

impl Split {
    /// The split of the nest over `dims` whose elements cost `cost` work units each.
    pub fn new(dims: &[usize], views: &[View], cost: usize) -> Split {
        let (dims, views) = simplify(dims, views);
        let (chunk, tasks) = match dims.split_first() {
            Some((&d0, rest)) if !dims.contains(&0) => {
                let inner = rest.iter().fold(cost.max(1), |a, &d| a.saturating_mul(d));
                let align = if rest.is_empty() { LANES } else { 1 };
                let c = chunk_len(d0, inner, align);
                (c, d0.div_ceil(c))
            }
            _ => (1, 1),
        };
        Split {
            dims,
            views,
            chunk,
            tasks,
        }
    }

    /// The nest in one task.
    pub fn serial(dims: &[usize], views: &[View]) -> Split {
        Split {
            dims: dims.to_vec(),
            views: views.to_vec(),
            chunk: dims.first().copied().unwrap_or(1),
            tasks: 1,
        }
    }
}

/// [`for_each`] of a [`Split`] nest in a kernel of `split.tasks` tasks: each task walks its
/// chunk of the outermost dim.
pub(crate) fn for_each_split(
    k: &mut Kernel,
    split: &Split,
    vector: bool,
    mut body: impl FnMut(&mut Kernel, &[At], usize) -> LResult,
) -> LResult {
    if split.tasks <= 1 {
        return for_each(k, &split.dims, &split.views, vector, body);
    }
    k.for_tasks(|k, t| split_task(k, split, t, vector, &mut body))
}

/// [`for_each_split`] of several nests in one kernel of the sum of their tasks, numbered one
/// nest after the other: task t runs the chunk of the nest whose numbers hold t. `body` also
/// gets the nest's index.
pub(crate) fn for_each_splits(
    k: &mut Kernel,
    splits: &[Split],
    vector: bool,
    mut body: impl FnMut(&mut Kernel, usize, &[At], usize) -> LResult,
) -> LResult {
    k.for_tasks(|k, t| {
        let mut first = 0i64;
        for (i, split) in splits.iter().enumerate() {
            let end = first + as_i64(split.tasks)?;
            let from = k.iconst(first);
            let after =
                k.b.ins()
                    .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, t, first);
            let before = k.b.ins().icmp_imm_s(IntCC::UnsignedLessThan, t, end);
            let mine = k.b.ins().band(after, before);
            k.when(mine, |k| {
                let local = k.b.ins().isub(t, from);
                split_task(
                    k,
                    split,
                    local,
                    vector,
                    &mut |k: &mut Kernel, at: &[At], l| body(k, i, at, l),
                )
            })?;
            first = end;
        }
        Ok(())
    })
}

/// Task `t` (of `split.tasks`) of a split nest: its chunk, or the whole nest for one task.
fn split_task(
    k: &mut Kernel,
    split: &Split,
    t: Value,
    vector: bool,
    body: &mut impl FnMut(&mut Kernel, &[At], usize) -> LResult,
) -> LResult {
    if split.tasks <= 1 {
        return for_each(k, &split.dims, &split.views, vector, body);
    }
    chunked(k, t, split.dims[0], split.chunk, |k, first, len| {
        let bases: Vec<Value> = split
            .views
            .iter()
            .map(|v| k.b.ins().imul_imm_s(first, v.strides[0]))
            .collect();
        let mut dims = split.dims.clone();
        dims[0] = len;
        for_each_from(k, &dims, &split.views, &bases, vector, &mut *body)
    })
}

/// The element offsets of the views at flat (row-major) index `idx` of `dims` (run-time
/// division by each extent, innermost first).
pub(crate) fn unflatten(
    k: &mut Kernel,
    idx: Value,
    dims: &[usize],
    views: &[View],
) -> LResult<Vec<Value>> {
    let mut bases: Vec<Value> = views.iter().map(|v| k.iconst(v.offset)).collect();
    let mut rest = idx;
    for (d, &n) in dims.iter().enumerate().rev() {
        let n = as_i64(n)?;
        let q = k.b.ins().udiv_imm_u(rest, n);
        let i = k.b.ins().urem_imm_u(rest, n);
        for (b, v) in bases.iter_mut().zip(views) {
            *b = k.mul_add(*b, i, v.strides[d]);
        }
        rest = q;
    }
    Ok(bases)
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

/// One elementwise map: `out[view] = f(loaded operands)` over `dims`. Operands and result are
/// loaded and stored with their buffers' element types; `vector` (where the maps are run)
/// allows 4-lane f32 code (then `f` receives f32x4 values and must return one).
#[derive(Clone, Debug)]
pub(crate) struct MapNest {
    pub dims: Vec<usize>,
    pub ins: Vec<View>,
    pub out: View,
}

impl MapNest {
    fn split(&self, parallel: bool) -> Split {
        let mut views = self.ins.clone();
        views.push(self.out.clone());
        if parallel {
            Split::new(&self.dims, &views, 1)
        } else {
            Split::serial(&self.dims, &views)
        }
    }
}

/// The splits of [`par_maps`]: each nest cut into tasks, or all in one task when every nest
/// fits one (a few small copies are not worth waking a thread for each).
fn map_splits(nests: &[MapNest]) -> Vec<Split> {
    let splits: Vec<Split> = nests.iter().map(|n| n.split(true)).collect();
    if splits.iter().all(|s| s.tasks <= 1) {
        return nests.iter().map(|n| n.split(false)).collect();
    }
    splits
}

/// Loads the operands at `at`, applies `f` and stores the result (the last position).
fn map_element(
    k: &mut Kernel,
    nest: &MapNest,
    at: &[At],
    lanes: usize,
    f: &mut impl FnMut(&mut Kernel, &[Value], usize) -> LResult<Value>,
) -> LResult {
    let (out_at, in_at) = at
        .split_last()
        .ok_or_else(|| crate::error::CodegenError::cranelift(&k.name, "map without result"))?;
    let mut vals = Vec::with_capacity(in_at.len());
    for (a, v) in in_at.iter().zip(&nest.ins) {
        let x = if lanes > 1 {
            k.load_f32(v.buf, a.idx, lanes, a.contiguous)
        } else {
            let ty = super::kernel::clif_type(k.dtype(v.buf));
            k.load(v.buf, ty, a.idx)
        };
        vals.push(x);
    }
    let y = f(k, &vals, lanes)?;
    k.store(nest.out.buf, out_at.idx, y);
    Ok(())
}

/// An elementwise map ([`MapNest`]) in one task.
pub(crate) fn map(
    k: &mut Kernel,
    dims: &[usize],
    ins: &[View],
    out: View,
    vector: bool,
    mut f: impl FnMut(&mut Kernel, &[Value], usize) -> LResult<Value>,
) -> LResult {
    let nest = MapNest {
        dims: dims.to_vec(),
        ins: ins.to_vec(),
        out,
    };
    for_each_split(k, &nest.split(false), vector, |k, at, lanes| {
        map_element(k, &nest, at, lanes, &mut f)
    })
}

/// [`map`] in a kernel of [`map_tasks`] tasks (of the same dims and views).
pub(crate) fn par_map(
    k: &mut Kernel,
    dims: &[usize],
    ins: &[View],
    out: View,
    vector: bool,
    mut f: impl FnMut(&mut Kernel, &[Value], usize) -> LResult<Value>,
) -> LResult {
    let nest = MapNest {
        dims: dims.to_vec(),
        ins: ins.to_vec(),
        out,
    };
    par_maps(k, &[nest], vector, |k, _, v, lanes| f(k, v, lanes))
}

/// The tasks of [`par_map`] over `dims` with these operand views and result view.
pub(crate) fn map_tasks(dims: &[usize], ins: &[View], out: View) -> usize {
    let nest = MapNest {
        dims: dims.to_vec(),
        ins: ins.to_vec(),
        out,
    };
    maps_tasks(&[nest])
}

/// Several maps in one kernel of [`maps_tasks`] tasks ([`for_each_splits`]); `f` also gets
/// the nest's index. Each element is computed by the same instructions whatever the split.
pub(crate) fn par_maps(
    k: &mut Kernel,
    nests: &[MapNest],
    vector: bool,
    mut f: impl FnMut(&mut Kernel, usize, &[Value], usize) -> LResult<Value>,
) -> LResult {
    let splits = map_splits(nests);
    match splits.as_slice() {
        [split] => for_each_split(k, split, vector, |k, at, lanes| {
            map_element(k, &nests[0], at, lanes, &mut |k, v, l| f(k, 0, v, l))
        }),
        _ if splits.iter().all(|s| s.tasks <= 1) => {
            for (i, (split, nest)) in splits.iter().zip(nests).enumerate() {
                for_each_split(k, split, vector, |k, at, lanes| {
                    map_element(k, nest, at, lanes, &mut |k, v, l| f(k, i, v, l))
                })?;
            }
            Ok(())
        }
        _ => for_each_splits(k, &splits, vector, |k, i, at, lanes| {
            map_element(k, &nests[i], at, lanes, &mut |k, v, l| f(k, i, v, l))
        }),
    }
}

/// The tasks of [`par_maps`] over these nests.
pub(crate) fn maps_tasks(nests: &[MapNest]) -> usize {
    let splits = map_splits(nests);
    if splits.iter().all(|s| s.tasks <= 1) {
        return 1;
    }
    splits.iter().map(|s| s.tasks).sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_aligned_bounded_and_cover_the_extent() {
        for (n, cost, align) in [
            (70_003, 1, 4),
            (401_408, 1, 4),
            (97, 707, 1),
            (5, 1_000_000, 1),
        ] {
            let c = chunk_len(n, cost, align);
            let tasks = n.div_ceil(c);
            assert!(tasks > 1 && tasks <= MAX_TASKS, "{n} {cost}: {tasks} tasks");
            assert!(c.is_multiple_of(align) || c == n, "{n}: chunk {c}");
            assert!(c * cost >= TASK_WORK, "{n}: chunk {c} too small");
        }
        assert_eq!(chunk_len(1000, 16, 4), 1000, "small work stays in one task");
        assert_eq!(chunk_len(0, 5, 4), 1);
    }

    #[test]
    fn a_split_cuts_the_outermost_simplified_dim() {
        let dims = [1, 7, 97, 101];
        let views = [
            View::dense(BufId::In(0), &dims).unwrap(),
            View::dense(BufId::Out, &dims).unwrap(),
        ];
        let s = Split::new(&dims, &views, 1);
        assert_eq!(s.dims, vec![7 * 97 * 101], "dense views merge into one dim");
        assert!(s.tasks > 1 && s.chunk.is_multiple_of(LANES));
        // A per-channel operand keeps [C, HW]: chunks of whole channel rows.
        let views = [
            View::broadcast(BufId::In(0), &[1, 7, 1, 1], &dims).unwrap(),
            View::dense(BufId::Out, &dims).unwrap(),
        ];
        let s = Split::new(&dims, &views, 1);
        assert_eq!(s.dims, vec![7, 97 * 101]);
        assert_eq!((s.chunk, s.tasks), (2, 4));
        assert_eq!(Split::new(&[3, 0, 5], &views[..0], 1).tasks, 1);
    }
}
