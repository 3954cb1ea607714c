//! `softmax` along one axis: viewing the tensor as [outer, len, inner], each of the
//! outer·inner rows (4 adjacent rows per vector when inner >= 4) takes its maximum, stores
//! exp(x − max) (inline polynomial exp) while summing it, then scales the row by 1/sum. NaN or
//! +inf in a row make it NaN, as in the reference.

use super::kernel::{as_i64, f32_type, BufId, Kernel, LResult};
use super::math::exp;
use super::nest::{for_each, View};
use cranelift_codegen::ir::InstBuilder;
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
