//! `gemm`: Y = alpha·op(A)·op(B) + beta·C through the matrix-product core of
//! [`super::matmul`] (transposes are strides, never copies); the epilogue scales by alpha and
//! adds beta·C, C read through its broadcast strides (skipped when beta is 0, as the reference
//! does). Large products run in tasks of blocks of Y ([`Blocks`]).

use super::kernel::{BufId, Kernel, LResult};
use super::matmul::{product, Block, Blocks, Mat};
use super::nest::View;
use cranelift_codegen::ir::InstBuilder;
use dync_ir::ops::Gemm;
use dync_ir::TensorType;

pub(crate) fn lower(k: &mut Kernel, op: &Gemm) -> LResult {
    let (sa, sb) = (k.shape(BufId::In(0)), k.shape(BufId::In(1)));
    let (m, kk, n) = op.mkn(&sa, &sb);
    let dim = |d: usize| super::kernel::as_i64(d);
    let (ra, ca) = if op.trans_a {
        (1, dim(sa[1])?)
    } else {
        (dim(sa[1])?, 1)
    };
    let (rb, cb) = if op.trans_b {
        (1, dim(sb[1])?)
    } else {
        (dim(sb[1])?, 1)
    };
    let zero = k.iconst(0);
    let a = Mat {
        buf: BufId::In(0),
        base: zero,
        rs: ra,
        cs: ca,
    };
    let b = Mat {
        buf: BufId::In(1),
        base: zero,
        rs: rb,
        cs: cb,
    };
    let c = if k.n_inputs() == 3 && op.beta != 0.0 {
        Some(View::broadcast(
            BufId::In(2),
            &k.shape(BufId::In(2)),
            &[m, n],
        )?)
    } else {
        None
    };
    let (alpha, beta) = (op.alpha, op.beta);
    let epi: &mut super::matmul::Epilogue = &mut |k, acc, i, j, lanes| {
        let mut y = acc;
        if alpha != 1.0 {
            let av = k.fconst(lanes, alpha);
            y = k.b.ins().fmul(y, av);
        }
        if let Some(c) = &c {
            let ci = k.iconst(0);
            let ci = k.mul_add(ci, i, c.strides[0]);
            let ci = k.mul_add(ci, j, c.strides[1]);
            let cv = k.load_f32(BufId::In(2), ci, lanes, c.strides[1] == 1);
            let bv = k.fconst(lanes, beta);
            y = k.b.ins().fma(cv, bv, y);
        }
        Ok(y)
    };
    let blocks = Blocks::new(1, m, kk, n);
    if blocks.tasks <= 1 {
        let c = Block::whole(k, m, n, zero);
        return product(k, a, b, kk, c, epi);
    }
    k.for_tasks(|k, t| blocks.block(k, t, (m, n), zero, &mut |k, c| product(k, a, b, kk, c, epi)))
}

/// The kernel's tasks ([`Blocks`] of the product).
pub(crate) fn tasks(op: &Gemm, a: &TensorType, b: &TensorType) -> usize {
    let (m, kk, n) = op.mkn(&a.shape, &b.shape);
    Blocks::new(1, m, kk, n).tasks
}
