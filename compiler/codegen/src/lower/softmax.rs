//! `softmax` along one axis: viewing the tensor as [outer, len, inner], each of the
//! outer·inner rows takes its maximum, stores exp(x − max) (inline polynomial exp) while summing
//! it, then scales the row by 1/sum. Vectorized across 4 adjacent rows when inner >= 4, or
//! along the row when it is contiguous (inner = 1, the classifier case: 4-lane partial max and
//! sum, combined lane by lane, scalar tail). NaN or +inf in a row make it NaN, as in the
//! reference.

use super::kernel::{as_i64, f32_type, BufId, Kernel, LResult, LANES};
use super::math::exp;
use super::nest::{for_each, reduce_lanes, View};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use dync_ir::ops::Softmax;

pub(crate) fn lower(k: &mut Kernel, op: &Softmax) -> LResult {
    let shape = k.shape(BufId::Out);
    let len = shape[op.axis];
    let inner: usize = shape[op.axis + 1..].iter().product();
    let outer: usize = shape[..op.axis].iter().product();
    let row = as_i64(inner)?;
    let strides = vec![as_i64(len * inner)?, 1];
    let views = [
        View {
            buf: BufId::In(0),
            offset: 0,
            strides: strides.clone(),
        },
        View {
            buf: BufId::Out,
            offset: 0,
            strides,
        },
    ];
    if len == 0 {
        return Ok(());
    }
    if inner == 1 && len >= LANES {
        return for_each(k, &[outer, 1], &views, false, |k, at, _| {
            contiguous_row(k, (BufId::In(0), at[0].idx), at[1].idx, len)
        });
    }
    for_each(k, &[outer, inner], &views, true, |k, at, lanes| {
        let (x0, y0) = (at[0].idx, at[1].idx);
        let ninf = k.fconst(lanes, f32::NEG_INFINITY);
        let max = k.var(f32_type(lanes), ninf);
        k.loop_n(len, |k, j| {
            let i = k.mul_add(x0, j, row);
            let v = k.load_f32(BufId::In(0), i, lanes, lanes > 1);
            let m = k.b.use_var(max);
            let m = k.b.ins().fmax(m, v);
            k.b.def_var(max, m);
            Ok(())
        })?;
        let m = k.b.use_var(max);
        let zero = k.fconst(lanes, 0.0);
        let sum = k.var(f32_type(lanes), zero);
        k.loop_n(len, |k, j| {
            let i = k.mul_add(x0, j, row);
            let v = k.load_f32(BufId::In(0), i, lanes, lanes > 1);
            let d = k.b.ins().fsub(v, m);
            let e = exp(k, lanes, d);
            let o = k.mul_add(y0, j, row);
            k.store(BufId::Out, o, e);
            let s = k.b.use_var(sum);
            let s = k.b.ins().fadd(s, e);
            k.b.def_var(sum, s);
            Ok(())
        })?;
        let s = k.b.use_var(sum);
        let one = k.fconst(lanes, 1.0);
        let r = k.b.ins().fdiv(one, s);
        k.loop_n(len, |k, j| {
            let o = k.mul_add(y0, j, row);
            let e = k.load_f32(BufId::Out, o, lanes, lanes > 1);
            let y = k.b.ins().fmul(e, r);
            k.store(BufId::Out, o, y);
            Ok(())
        })
    })
}

/// One contiguous row of `len` elements from `x0` of buffer `src` into `y0` of the result
/// (vectors while 4 lanes remain, then scalars). `src` may be the result itself with `x0 =
/// y0`: each element is read before it is overwritten.
pub(crate) fn contiguous_row(
    k: &mut Kernel,
    (src, x0): (BufId, Value),
    y0: Value,
    len: usize,
) -> LResult {
    let full = len / LANES * LANES;
    // Runs `step(k, idx, lanes)` over the row: full vectors, then the scalar tail.
    let pass =
        |k: &mut Kernel, step: &mut dyn FnMut(&mut Kernel, Value, usize) -> LResult| -> LResult {
            k.loop_range(0, full, LANES, |k, j| step(k, j, LANES))?;
            k.loop_range(full, len, 1, |k, j| step(k, j, 1))
        };
    let ninf = k.fconst(LANES, f32::NEG_INFINITY);
    let vmax = k.var(types::F32X4, ninf);
    let ninf1 = k.fconst(1, f32::NEG_INFINITY);
    let smax = k.var(types::F32, ninf1);
    pass(k, &mut |k, j, lanes| {
        let i = k.b.ins().iadd(x0, j);
        let v = k.load_f32(src, i, lanes, true);
        let var = if lanes == 1 { smax } else { vmax };
        let m = k.b.use_var(var);
        let m = k.b.ins().fmax(m, v);
        k.b.def_var(var, m);
        Ok(())
    })?;
    let v = k.b.use_var(vmax);
    let m = reduce_lanes(k, v, |k, a, b| k.b.ins().fmax(a, b));
    let s = k.b.use_var(smax);
    let m = k.b.ins().fmax(m, s);
    let zero = k.fconst(LANES, 0.0);
    let vsum = k.var(types::F32X4, zero);
    let zero1 = k.fconst(1, 0.0);
    let ssum = k.var(types::F32, zero1);
    pass(k, &mut |k, j, lanes| {
        let i = k.b.ins().iadd(x0, j);
        let v = k.load_f32(src, i, lanes, true);
        let mv = k.splat(lanes, m);
        let d = k.b.ins().fsub(v, mv);
        let e = exp(k, lanes, d);
        let o = k.b.ins().iadd(y0, j);
        k.store(BufId::Out, o, e);
        let var = if lanes == 1 { ssum } else { vsum };
        let acc = k.b.use_var(var);
        let acc = k.b.ins().fadd(acc, e);
        k.b.def_var(var, acc);
        Ok(())
    })?;
    let v = k.b.use_var(vsum);
    let total = reduce_lanes(k, v, |k, a, b| k.b.ins().fadd(a, b));
    let s = k.b.use_var(ssum);
    let total = k.b.ins().fadd(total, s);
    let one = k.fconst(1, 1.0);
    let r = k.b.ins().fdiv(one, total);
    pass(k, &mut |k, j, lanes| {
        let o = k.b.ins().iadd(y0, j);
        let e = k.load_f32(BufId::Out, o, lanes, true);
        let rv = k.splat(lanes, r);
        let y = k.b.ins().fmul(e, rv);
        k.store(BufId::Out, o, y);
        Ok(())
    })
}
