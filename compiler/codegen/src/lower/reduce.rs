//! `reduce`: a strided nest over the kept dims (the result is dense in that order whatever
//! `keepdims` says); each result element accumulates over the reduced dims in nested loops.
//! f32 is vectorized two ways: 4 adjacent results per vector when the innermost input dim is
//! kept, or [`RUN_VECS`] 4-lane partial accumulators along the innermost input dim when it is
//! reduced (combined in order, then lane by lane, then with the scalar tail). Max and min
//! propagate NaN; mean divides by the reduced element count (0/0 = NaN for an empty
//! reduction), and empty reductions give the reference's identities. i64/i32 are scalar, with overflow checks on
//! sum and prod. Results are cut into tasks of chunks of the outermost kept dims ([`Split`]),
//! each result reduced whole in one task.

use super::kernel::{as_i64, clif_type, BufId, Kernel, LResult, LANES};
use super::nest::{for_each_split, reduce_lanes, Split, View};
use crate::abi::Fault;
use cranelift_codegen::ir::{types, InstBuilder, Type, Value};
use cranelift_frontend::Variable;
use dync_ir::ops::{Reduce, ReduceKind};
use dync_ir::tensor::strides;
use dync_ir::{DType, TensorType};

/// Vector accumulators of a contiguous reduced run (independent chains hide the latency of
/// the combining instruction).
const RUN_VECS: usize = 4;

/// The nest over the kept dims of an input shaped `xs`: its views (input, result) and the
/// number of input elements reduced into each result.
fn kept_nest(xs: &[usize], op: &Reduce) -> LResult<Split> {
    let own = strides(xs);
    let kept: Vec<usize> = (0..xs.len()).filter(|d| !op.axes.contains(d)).collect();
    let kept_dims: Vec<usize> = kept.iter().map(|&d| xs[d]).collect();
    let count: usize = op.axes.iter().map(|&d| xs[d]).product();
    let views = [
        View {
            buf: BufId::In(0),
            offset: 0,
            strides: kept
                .iter()
                .map(|&d| as_i64(own[d]))
                .collect::<LResult<_>>()?,
        },
        View::dense(BufId::Out, &kept_dims)?,
    ];
    Ok(Split::new(&kept_dims, &views, count))
}

/// The kernel's tasks (chunks of the result, see [`Split`]).
pub(crate) fn tasks(x: &TensorType, op: &Reduce) -> usize {
    kept_nest(&x.shape, op).map_or(1, |s| s.tasks)
}

pub(crate) fn lower(k: &mut Kernel, op: &Reduce) -> LResult {
    let xs = k.shape(BufId::In(0));
    let own = strides(&xs);
    let dtype = k.dtype(BufId::In(0));
    // Reduced dims (extent, stride), innermost last, without extent-1 dims and with
    // neighbours that are contiguous together merged (a global pool reduces one run).
    let mut red: Vec<(usize, i64)> = Vec::new();
    for &d in op.axes.iter().filter(|&&d| xs[d] != 1) {
        let s = as_i64(own[d])?;
        match red.last_mut() {
            Some((n, ps)) if *ps == s * as_i64(xs[d])? => {
                *n *= xs[d];
                *ps = s;
            }
            _ => red.push((xs[d], s)),
        }
    }
    let count: usize = op.axes.iter().map(|&d| xs[d]).product();
    let split = kept_nest(&xs, op)?;
    let f32 = dtype == DType::F32;
    for_each_split(k, &split, f32, |k, at, lanes| {
        let ty = if f32 {
            super::kernel::f32_type(lanes)
        } else {
            clif_type(dtype)
        };
        let init = identity(k, op.kind, ty, lanes);
        let acc = k.var(ty, init);
        let inner_run = red
            .last()
            .filter(|&&(n, s)| f32 && lanes == 1 && s == 1 && n >= LANES)
            .copied();
        match inner_run {
            Some((n, _)) => {
                let run = Run::new(k, op.kind);
                nest(k, &red[..red.len() - 1], at[0].idx, &mut |k, base| {
                    run.add(k, BufId::In(0), base, n, acc)
                })?;
                run.finish(k, acc);
            }
            None => nest(k, &red, at[0].idx, &mut |k, idx| {
                let v = if f32 {
                    k.load_f32(BufId::In(0), idx, lanes, lanes > 1)
                } else {
                    k.load(BufId::In(0), ty, idx)
                };
                let a = k.b.use_var(acc);
                let a = if f32 {
                    combine(k, op.kind, a, v)
                } else {
                    int_step(k, op.kind, a, v)
                };
                k.b.def_var(acc, a);
                Ok(())
            })?,
        }
        let mut y = k.b.use_var(acc);
        if op.kind == ReduceKind::Mean {
            let c = k.fconst(lanes, count as f32);
            y = k.b.ins().fdiv(y, c);
        }
        k.store(BufId::Out, at[1].idx, y);
        Ok(())
    })
}

/// Accumulation of contiguous f32 runs: [`RUN_VECS`] vector partial accumulators (independent
/// chains) along the run, then one vector at a time, then scalars into the caller's scalar
/// accumulator; [`Run::finish`] combines the vectors in order, then lane by lane, into it.
pub(crate) struct Run {
    kind: ReduceKind,
    vacc: Vec<Variable>,
}

impl Run {
    pub fn new(k: &mut Kernel, kind: ReduceKind) -> Run {
        let vinit = identity(k, kind, types::F32X4, LANES);
        let vacc = (0..RUN_VECS).map(|_| k.var(types::F32X4, vinit)).collect();
        Run { kind, vacc }
    }

    /// Combines the `n` elements of `buf` from `base` (scalar tail into `acc`).
    pub fn add(&self, k: &mut Kernel, buf: BufId, base: Value, n: usize, acc: Variable) -> LResult {
        let wide = RUN_VECS * LANES;
        let wide_end = n / wide * wide;
        let full = n / LANES * LANES;
        let step = |k: &mut Kernel, i: Value, vecs: usize| {
            let idx = k.b.ins().iadd(base, i);
            for (u, &v_acc) in self.vacc.iter().take(vecs).enumerate() {
                let v = k.load_off(buf, types::F32X4, idx, (u * LANES) as i64, false);
                let a = k.b.use_var(v_acc);
                let a = combine(k, self.kind, a, v);
                k.b.def_var(v_acc, a);
            }
            Ok(())
        };
        k.loop_range(0, wide_end, wide, |k, i| step(k, i, RUN_VECS))?;
        k.loop_range(wide_end, full, LANES, |k, i| step(k, i, 1))?;
        k.loop_range(full, n, 1, |k, i| {
            let idx = k.b.ins().iadd(base, i);
            let v = k.load(buf, types::F32, idx);
            let a = k.b.use_var(acc);
            let a = combine(k, self.kind, a, v);
            k.b.def_var(acc, a);
            Ok(())
        })
    }

    /// Folds the vector accumulators into `acc`.
    pub fn finish(&self, k: &mut Kernel, acc: Variable) {
        let first = k.b.use_var(self.vacc[0]);
        let v = self.vacc[1..].iter().fold(first, |v, &a| {
            let w = k.b.use_var(a);
            combine(k, self.kind, v, w)
        });
        let s = reduce_lanes(k, v, |k, a, b| combine(k, self.kind, a, b));
        let a = k.b.use_var(acc);
        let a = combine(k, self.kind, s, a);
        k.b.def_var(acc, a);
    }
}

/// Loops over `dims` (extent, stride) from `base`, calling `body` with each element index.
fn nest(
    k: &mut Kernel,
    dims: &[(usize, i64)],
    base: Value,
    body: &mut dyn FnMut(&mut Kernel, Value) -> LResult,
) -> LResult {
    match dims.split_first() {
        None => body(k, base),
        Some((&(n, s), rest)) => k.loop_n(n, |k, i| {
            let b = k.mul_add(base, i, s);
            nest(k, rest, b, body)
        }),
    }
}

fn identity(k: &mut Kernel, kind: ReduceKind, ty: Type, lanes: usize) -> Value {
    if ty.is_float() || ty.is_vector() {
        let v = match kind {
            ReduceKind::Mean | ReduceKind::Sum => 0.0,
            ReduceKind::Prod => 1.0,
            ReduceKind::Max => f32::NEG_INFINITY,
            ReduceKind::Min => f32::INFINITY,
        };
        return k.fconst(lanes, v);
    }
    let (min, max) = if ty == types::I32 {
        (i64::from(i32::MIN), i64::from(i32::MAX))
    } else {
        (i64::MIN, i64::MAX)
    };
    let v = match kind {
        ReduceKind::Mean | ReduceKind::Sum => 0,
        ReduceKind::Prod => 1,
        ReduceKind::Max => min,
        ReduceKind::Min => max,
    };
    k.b.ins().iconst(ty, v)
}

/// Combines two f32 partial results.
fn combine(k: &mut Kernel, kind: ReduceKind, a: Value, b: Value) -> Value {
    match kind {
        ReduceKind::Mean | ReduceKind::Sum => k.b.ins().fadd(a, b),
        ReduceKind::Prod => k.b.ins().fmul(a, b),
        ReduceKind::Max => k.b.ins().fmax(a, b),
        ReduceKind::Min => k.b.ins().fmin(a, b),
    }
}

fn int_step(k: &mut Kernel, kind: ReduceKind, a: Value, v: Value) -> Value {
    match kind {
        ReduceKind::Mean | ReduceKind::Sum => {
            let (r, o) = k.b.ins().sadd_overflow(a, v);
            k.fail_if(o, Fault::IntegerOverflow);
            r
        }
        ReduceKind::Prod => {
            let (r, o) = k.b.ins().smul_overflow(a, v);
            k.fail_if(o, Fault::IntegerOverflow);
            r
        }
        ReduceKind::Max => k.b.ins().smax(a, v),
        ReduceKind::Min => k.b.ins().smin(a, v),
    }
}
