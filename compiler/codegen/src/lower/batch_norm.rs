//! `batch_norm` (inference): per channel c, s = scale[c] / sqrt(var[c] + eps), then every
//! element of the channel's planes becomes (x − mean[c])·s + bias[c], 4 lanes at a time.

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{for_each_from, View};
use cranelift_codegen::ir::{types, InstBuilder};
use dync_ir::ops::BatchNorm;

pub(crate) fn lower(k: &mut Kernel, op: &BatchNorm) -> LResult {
    let shape = k.shape(BufId::Out);
    let (n, c) = (shape[0], shape[1]);
    let plane: usize = shape[2..].iter().product();
    let views = [
        View {
            buf: BufId::In(0),
            offset: 0,
            strides: vec![1],
        },
        View {
            buf: BufId::Out,
            offset: 0,
            strides: vec![1],
        },
    ];
    k.loop_n(n, |k, ni| {
        k.loop_n(c, |k, ci| {
            let scale = k.load(BufId::In(1), types::F32, ci);
            let bias = k.load(BufId::In(2), types::F32, ci);
            let mean = k.load(BufId::In(3), types::F32, ci);
            let var = k.load(BufId::In(4), types::F32, ci);
            let eps = k.fconst(1, op.epsilon);
            let v = k.b.ins().fadd(var, eps);
            let sd = k.b.ins().sqrt(v);
            let s = k.b.ins().fdiv(scale, sd);
            let base = k.b.ins().imul_imm_s(ni, as_i64(c * plane)?);
            let base = k.mul_add(base, ci, as_i64(plane)?);
            for_each_from(k, &[plane], &views, &[base, base], true, |k, at, lanes| {
                let x = k.load_f32(BufId::In(0), at[0].idx, lanes, lanes > 1);
                let m = k.splat(lanes, mean);
                let sv = k.splat(lanes, s);
                let bv = k.splat(lanes, bias);
                let d = k.b.ins().fsub(x, m);
                let y = k.b.ins().fma(d, sv, bv);
                k.store(BufId::Out, at[1].idx, y);
                Ok(())
            })
        })
    })
}
