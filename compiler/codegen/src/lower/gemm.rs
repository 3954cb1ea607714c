//! `gemm`: Y = alpha·op(A)·op(B) + beta·C through the matrix-product core of
//! [`super::matmul`] (transposes are strides, never copies); the epilogue scales by alpha and
//! adds beta·C, C read through its broadcast strides (skipped when beta is 0, as the reference
//! does). Large products run in tasks of blocks of Y ([`Blocks`]). A matrix-vector product
//! ([`gemv`]: one row of A, B transposed — the batch-1 FC layer) calls the matrix-vector
//! micro-kernel (`dync_runtime::ukernel::gemv`) per block of columns when the context has one,
//! then applies the epilogue over the block.

use super::conv::over_tile;
use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::matmul::{product, Block, Blocks, Mat};
use super::nest::View;
use cranelift_codegen::ir::{types, InstBuilder, Value};
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
    let identity = alpha == 1.0 && c.is_none();
    let f = if gemv(op, &sa, &sb) {
        k.gemv_fn()
    } else {
        None
    };
    // Both of a block's paths are emitted, each using the epilogue.
    let epi = std::cell::RefCell::new(epi);
    let body = &mut |k: &mut Kernel, blk: Block| {
        let call = |k: &mut Kernel, f: Value| {
            let (j0, cols) = blk.cols;
            let x_len = k.iconst(as_i64(kk)?);
            let x = k.span_addr(BufId::In(0), zero, x_len);
            let w0 = k.b.ins().imul_imm_s(j0, as_i64(kk)?);
            let w_len = k.iconst(as_i64(cols * kk)?);
            let w = k.span_addr(BufId::In(1), w0, w_len);
            let y0 = k.b.ins().iadd(blk.base, j0);
            let y_len = k.iconst(as_i64(cols)?);
            let y = k.span_addr(BufId::Out, y0, y_len);
            let ptr = k.b.func.dfg.value_type(y);
            let sig =
                k.b.import_signature(crate::abi::gemv_signature(k.call_conv(), ptr));
            let args = [x_len, x, w, x_len, y, y_len];
            k.b.ins().call_indirect(sig, f, &args);
            if identity {
                return Ok(());
            }
            let one = k.iconst(1);
            over_tile(k, (y0, one, y_len, cols), |k, idx, ty| {
                let lanes = if ty == types::F32 {
                    1
                } else {
                    super::kernel::LANES
                };
                let acc = k.load(BufId::Out, ty, idx);
                let j = k.b.ins().isub(idx, blk.base);
                let v = (*epi.borrow_mut())(k, acc, zero, j, lanes)?;
                k.store(BufId::Out, idx, v);
                Ok(())
            })
        };
        k.ukernel_or(f, call, |k| product(k, a, b, kk, blk, *epi.borrow_mut()))
    };
    let blocks = Blocks::new(1, m, kk, n);
    if blocks.tasks <= 1 {
        let c = Block::whole(k, m, n, zero);
        return body(k, c);
    }
    k.for_tasks(|k, t| blocks.block(k, t, (m, n), zero, body))
}

/// Whether a `gemm` of operands shaped `a` and `b` is a matrix-vector product with contiguous
/// rows: one row of A (not transposed) against B transposed ([N, K], row-major).
pub(crate) fn gemv(op: &Gemm, a: &[usize], b: &[usize]) -> bool {
    !op.trans_a && op.trans_b && a.first() == Some(&1) && b.len() == 2
}

/// The kernel's tasks ([`Blocks`] of the product).
pub(crate) fn tasks(op: &Gemm, a: &TensorType, b: &TensorType) -> usize {
    let (m, kk, n) = op.mkn(&a.shape, &b.shape);
    Blocks::new(1, m, kk, n).tasks
}
