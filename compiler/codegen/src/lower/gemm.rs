//! `gemm`: Y = alpha·op(A)·op(B) + beta·C through the matrix-product core of
//! [`super::matmul`] (transposes are strides, never copies); the epilogue scales by alpha and
//! adds beta·C, C read through its broadcast strides (skipped when beta is 0, as the reference
//! does). Large products run in tasks of blocks of Y ([`Blocks`]). A matrix-vector product
//! ([`gemv`]: one row of A, B transposed — the batch-1 FC layer) calls the matrix-vector
//! micro-kernel (`dync_runtime::ukernel::gemv`) per block of columns when the context has one,
//! then applies the epilogue over the block.

use super::conv::over_tile;
use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::matmul::{product, Block, Blocks, Epilogue, Mat};
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
    let body = &mut |k: &mut Kernel, blk: Block| {
        gemv_or_product(k, f, (a, b, kk), blk, &mut *epi, identity)
    };
    let blocks = Blocks::new(1, m, kk, n);
    if blocks.tasks <= 1 {
        let c = Block::whole(k, m, n, zero);
        return body(k, c);
    }
    k.for_tasks(|k, t| blocks.block(k, t, (m, n), zero, body))
}

/// The one-row product of `a` (one row, contiguous) with `b` transposed (rows contiguous:
/// [`gemv`]'s shape) over `kk` steps into block `blk`, with the epilogue `epi`: through the
/// matrix-vector micro-kernel `f` when it is given and not null at run time (`epi` then a pass
/// over the block's outputs, none when `identity`), else [`product`]'s dot products (the same
/// sums, `epi` in registers). Both paths are emitted.
pub(crate) fn gemv_or_product(
    k: &mut Kernel,
    f: Option<Value>,
    (a, b, kk): (Mat, Mat, usize),
    blk: Block,
    epi: &mut Epilogue,
    identity: bool,
) -> LResult {
    let epi = std::cell::RefCell::new(epi);
    let call = |k: &mut Kernel, f: Value| {
        let (j0, cols) = blk.cols;
        let w0 = k.mul_add(b.base, j0, as_i64(kk)?);
        let y0 = k.b.ins().iadd(blk.base, j0);
        let mv = Gemv {
            x: (a.buf, a.base),
            w: (b.buf, w0),
            y: (blk.buf, y0),
            kk,
            cols,
        };
        let mut epi = epi.borrow_mut();
        call_gemv(k, f, mv, (!identity).then_some((blk.base, &mut **epi)))
    };
    k.ukernel_or(f, call, |k| product(k, a, b, kk, blk, *epi.borrow_mut()))
}

/// One matrix-vector product for [`call_gemv`]: `cols` outputs from element `y.1` of buffer
/// `y.0`, each the dot product of the `kk` floats from `x.1` of `x.0` with its own row of
/// the weights (`kk` floats each, rows consecutive from element `w.1` of `w.0`).
struct Gemv {
    x: (BufId, Value),
    w: (BufId, Value),
    y: (BufId, Value),
    kk: usize,
    cols: usize,
}

/// Calls the matrix-vector micro-kernel `f` (`dync_runtime::ukernel::gemv`'s contract: the
/// same sums as [`product`]'s dot products) for `mv`, then, when `epi` is given as `(origin,
/// epi)`, applies `epi` to each output in place (row 0, column its index minus `origin`).
fn call_gemv(k: &mut Kernel, f: Value, mv: Gemv, epi: Option<(Value, &mut Epilogue)>) -> LResult {
    let x_len = k.iconst(as_i64(mv.kk)?);
    let x = k.span_addr(mv.x.0, mv.x.1, x_len);
    let w_len = k.iconst(as_i64(mv.cols.saturating_mul(mv.kk))?);
    let w = k.span_addr(mv.w.0, mv.w.1, w_len);
    let y_len = k.iconst(as_i64(mv.cols)?);
    let y = k.span_addr(mv.y.0, mv.y.1, y_len);
    let ptr = k.b.func.dfg.value_type(y);
    let sig =
        k.b.import_signature(crate::abi::gemv_signature(k.call_conv(), ptr));
    let args = [x_len, x, w, x_len, y, y_len];
    k.b.ins().call_indirect(sig, f, &args);
    let Some((origin, epi)) = epi else {
        return Ok(());
    };
    let (zero, one) = (k.iconst(0), k.iconst(1));
    over_tile(k, (mv.y.1, one, y_len, mv.cols), |k, idx, ty| {
        let lanes = if ty == types::F32 {
            1
        } else {
            super::kernel::LANES
        };
        let acc = k.load(mv.y.0, ty, idx);
        let j = k.b.ins().isub(idx, origin);
        let v = epi(k, acc, zero, j, lanes)?;
        k.store(mv.y.0, idx, v);
        Ok(())
    })
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
