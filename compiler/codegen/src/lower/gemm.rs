//! `gemm`: Y = alpha·op(A)·op(B) + beta·C through the matrix-product core of
//! [`super::matmul`] (transposes are strides, never copies); the epilogue scales by alpha and
//! adds beta·C, C read through its broadcast strides (skipped when beta is 0, as the reference
//! does). Large products run in tasks of blocks of Y ([`Blocks`]). A product with B transposed
//! ([`gemv`]: the FC layer, at any batch) calls the matrix-vector micro-kernel
//! (`dync_runtime::ukernel::gemv`) once per block when the context has one — each weight row
//! read once for up to eight rows of A — then applies the epilogue over the block.

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

/// The product of `a` (rows contiguous along k, `a.rs` apart) with `b` transposed (rows
/// contiguous: [`gemv`]'s shape) over `kk` steps into block `blk`, with the epilogue `epi`:
/// through the matrix-vector micro-kernel `f` when it is given and not null at run time (all
/// the block's rows in one call, `epi` then a pass over the block's outputs, none when
/// `identity`), else [`product`]'s dot products (the same sums, `epi` in registers). Both
/// paths are emitted.
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
        let ((i0, rows), (j0, cols)) = (blk.rows, blk.cols);
        let w0 = k.mul_add(b.base, j0, as_i64(kk)?);
        let x0 = k.mul_add(a.base, i0, a.rs);
        let row0 = k.mul_add(blk.base, i0, as_i64(blk.ldc)?);
        let y0 = k.b.ins().iadd(row0, j0);
        let mv = Gemv {
            x: (a.buf, x0, a.rs),
            w: (b.buf, w0),
            y: (blk.buf, y0, blk.ldc),
            kk,
            rows,
            cols,
        };
        let mut epi = epi.borrow_mut();
        call_gemv(k, f, mv, (!identity).then_some(((i0, row0), &mut **epi)))
    };
    k.ukernel_or(f, call, |k| product(k, a, b, kk, blk, *epi.borrow_mut()))
}

/// The products for [`call_gemv`]: `rows` × `cols` outputs from element `y.1` of buffer `y.0`
/// (rows `y.2` apart), output (i, j) the dot product of the `kk` floats of vector i (from
/// element `x.1 + i·x.2` of `x.0`) with row j of the weights (`kk` floats each, rows
/// consecutive from element `w.1` of `w.0`).
struct Gemv {
    x: (BufId, Value, i64),
    w: (BufId, Value),
    y: (BufId, Value, usize),
    kk: usize,
    rows: usize,
    cols: usize,
}

/// Calls the matrix-vector micro-kernel `f` (`dync_runtime::ukernel::gemv`'s contract: the
/// same sums as [`product`]'s dot products) for `mv`, then, when `epi` is given as `((i0,
/// row0), epi)`, applies `epi` to each output in place: the outputs of row i are row i0 + i
/// of the epilogue's C, whose row i0 starts at element `row0` (columns: offsets from there).
fn call_gemv(
    k: &mut Kernel,
    f: Value,
    mv: Gemv,
    epi: Option<((Value, Value), &mut Epilogue)>,
) -> LResult {
    let span = |rows: usize, ld: i64, len: usize| -> LResult<i64> {
        let before = as_i64(rows.saturating_sub(1))?
            .checked_mul(ld)
            .ok_or_else(|| crate::error::CodegenError::Overflow("a product's operand".into()))?;
        Ok(before + as_i64(len)?)
    };
    let x_len = k.iconst(span(mv.rows, mv.x.2, mv.kk)?);
    let x = k.span_addr(mv.x.0, mv.x.1, x_len);
    let w_len = k.iconst(span(mv.cols, as_i64(mv.kk)?, mv.kk)?);
    let w = k.span_addr(mv.w.0, mv.w.1, w_len);
    let ldy = as_i64(mv.y.2)?;
    let y_len = k.iconst(span(mv.rows, ldy, mv.cols)?);
    let y = k.span_addr(mv.y.0, mv.y.1, y_len);
    let ptr = k.b.func.dfg.value_type(y);
    let sig =
        k.b.import_signature(crate::abi::gemv_signature(k.call_conv(), ptr));
    let [kk, ldx, m, ldw, ldy_v, n] = [
        as_i64(mv.kk)?,
        mv.x.2,
        as_i64(mv.rows)?,
        as_i64(mv.kk)?,
        ldy,
        as_i64(mv.cols)?,
    ]
    .map(|v| k.iconst(v));
    let args = [kk, x, ldx, m, w, ldw, y, ldy_v, n];
    k.b.ins().call_indirect(sig, f, &args);
    let Some(((i0, row0), epi)) = epi else {
        return Ok(());
    };
    let zero = k.iconst(0);
    k.loop_dyn(zero, m, |k, r| {
        let i = k.b.ins().iadd(i0, r);
        let start = k.mul_add(row0, r, ldy);
        let first = k.mul_add(mv.y.1, r, ldy);
        let one = k.iconst(1);
        over_tile(k, (first, one, n, mv.cols), |k, idx, ty| {
            let lanes = if ty == types::F32 {
                1
            } else {
                super::kernel::LANES
            };
            let acc = k.load(mv.y.0, ty, idx);
            let j = k.b.ins().isub(idx, start);
            let v = epi(k, acc, i, j, lanes)?;
            k.store(mv.y.0, idx, v);
            Ok(())
        })
    })
}

/// Whether a `gemm` of operands shaped `a` and `b` is a matrix-vector product with contiguous
/// rows: rows of A (not transposed) against B transposed ([N, K], row-major).
pub(crate) fn gemv(op: &Gemm, a: &[usize], b: &[usize]) -> bool {
    !op.trans_a && op.trans_b && a.len() == 2 && b.len() == 2
}

/// The kernel's tasks ([`Blocks`] of the product).
pub(crate) fn tasks(op: &Gemm, a: &TensorType, b: &TensorType) -> usize {
    let (m, kk, n) = op.mkn(&a.shape, &b.shape);
    Blocks::new(1, m, kk, n).tasks
}
