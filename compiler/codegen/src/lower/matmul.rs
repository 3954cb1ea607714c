//! `matmul`: numpy matmul (rank-1 promotion, broadcast batch dims), and the matrix-product
//! core shared with `gemm`.
//!
//! [`product`] computes C[m, n] = epilogue(Σ_k A[m, k]·B[k, n]) for strided A and B:
//! - B contiguous along n: register tiles of [`ROWS`] rows × 2 f32x4 vectors of columns
//!   (8 accumulators; per k step, ROWS broadcast loads of A and 2 vector loads of B), then one
//!   vector, then scalar columns; remaining rows the same with fewer rows;
//! - otherwise A and B contiguous along k (e.g. gemm with trans_b, the FC layer): 4 dot
//!   products at a time, vectorized along k with a scalar tail, reduced horizontally;
//! - otherwise scalar.

use super::kernel::{as_i64, f32_type, BufId, Kernel, LResult, LANES};
use super::nest::{for_each, reduce_lanes, View};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::Variable;
use dync_ir::ops::{matmul_shape, MatMul};
use dync_ir::tensor::strides;

/// Rows of A per register tile.
const ROWS: usize = 4;
/// Column vectors per register tile.
const VECS: usize = 2;

/// A strided matrix operand: element (i, j) at `base + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub buf: BufId,
    pub base: Value,
    pub rs: i64,
    pub cs: i64,
}

/// Epilogue: the final value of C[m, n..n+lanes] from its accumulated sum.
pub(crate) type Epilogue<'e> =
    dyn FnMut(&mut Kernel, Value, Value, Value, usize) -> LResult<Value> + 'e;

/// Emits C = epilogue(A·B) for A [m×kk], B [kk×n]; C is row-major (row stride n) from
/// `c_base` in the result buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product(
    k: &mut Kernel,
    a: Mat,
    b: Mat,
    (m, kk, n): (usize, usize, usize),
    c_base: Value,
    epi: &mut Epilogue,
) -> LResult {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if b.cs == 1 || n == 1 {
        let full = m / ROWS * ROWS;
        let tile_w = VECS * LANES;
        let wide_end = n / tile_w * tile_w;
        let vec_end = wide_end + (n - wide_end) / LANES * LANES;
        let mut rows_block = |k: &mut Kernel, i0: Value, rows: usize| -> LResult {
            k.loop_range(0, wide_end, tile_w, |k, j| {
                tile(k, a, b, kk, n, c_base, i0, rows, j, LANES, VECS, epi)
            })?;
            k.loop_range(wide_end, vec_end, LANES, |k, j| {
                tile(k, a, b, kk, n, c_base, i0, rows, j, LANES, 1, epi)
            })?;
            k.loop_range(vec_end, n, 1, |k, j| {
                tile(k, a, b, kk, n, c_base, i0, rows, j, 1, 1, epi)
            })
        };
        k.loop_range(0, full, ROWS, |k, i0| rows_block(k, i0, ROWS))?;
        if m > full {
            let i0 = k.iconst(as_i64(full)?);
            rows_block(k, i0, m - full)?;
        }
        Ok(())
    } else if a.cs == 1 && b.rs == 1 {
        let full = n / LANES * LANES;
        k.loop_n(m, |k, i| {
            k.loop_range(0, full, LANES, |k, j| {
                dots(k, a, b, kk, n, c_base, i, j, LANES, epi)
            })?;
            k.loop_range(full, n, 1, |k, j| {
                dots(k, a, b, kk, n, c_base, i, j, 1, epi)
            })
        })
    } else {
        k.loop_n(m, |k, i| {
            k.loop_n(n, |k, j| {
                let zero = k.fconst(1, 0.0);
                let acc = k.var(types::F32, zero);
                let ai = k.mul_add(a.base, i, a.rs);
                let bj = k.mul_add(b.base, j, b.cs);
                k.loop_n(kk, |k, l| {
                    let x = k.mul_add(ai, l, a.cs);
                    let x = k.load(a.buf, types::F32, x);
                    let y = k.mul_add(bj, l, b.rs);
                    let y = k.load(b.buf, types::F32, y);
                    let s = k.b.use_var(acc);
                    let s = k.b.ins().fma(x, y, s);
                    k.b.def_var(acc, s);
                    Ok(())
                })?;
                let s = k.b.use_var(acc);
                store(k, c_base, n, i, j, s, 1, epi)
            })
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn store(
    k: &mut Kernel,
    c_base: Value,
    n: usize,
    i: Value,
    j: Value,
    acc: Value,
    lanes: usize,
    epi: &mut Epilogue,
) -> LResult {
    let y = epi(k, acc, i, j, lanes)?;
    let row = k.mul_add(c_base, i, as_i64(n)?);
    let idx = k.b.ins().iadd(row, j);
    k.store(BufId::Out, idx, y);
    Ok(())
}

/// Tile of `rows` rows from `i0` × `vecs` vectors of `lanes` columns from `j0` (B contiguous
/// along n).
#[allow(clippy::too_many_arguments)]
fn tile(
    k: &mut Kernel,
    a: Mat,
    b: Mat,
    kk: usize,
    n: usize,
    c_base: Value,
    i0: Value,
    rows: usize,
    j0: Value,
    lanes: usize,
    vecs: usize,
    epi: &mut Epilogue,
) -> LResult {
    let ty = f32_type(lanes);
    let zero = k.fconst(lanes, 0.0);
    let accs: Vec<Vec<Variable>> = (0..rows)
        .map(|_| (0..vecs).map(|_| k.var(ty, zero)).collect())
        .collect();
    let a_rows: Vec<Value> = (0..rows)
        .map(|r| {
            let i = k.add_imm(i0, r as i64);
            k.mul_add(a.base, i, a.rs)
        })
        .collect();
    let b_col = k.mul_add(b.base, j0, b.cs);
    k.loop_n(kk, |k, l| {
        let b_row = k.mul_add(b_col, l, b.rs);
        let bv: Vec<Value> = (0..vecs)
            .map(|v| {
                let idx = k.add_imm(b_row, (v * LANES) as i64 * b.cs);
                k.load_f32(b.buf, idx, lanes, true)
            })
            .collect();
        for (r, &ar) in a_rows.iter().enumerate() {
            let idx = k.mul_add(ar, l, a.cs);
            let av = k.load(a.buf, types::F32, idx);
            let av = k.splat(lanes, av);
            for (v, &x) in bv.iter().enumerate() {
                let s = k.b.use_var(accs[r][v]);
                let s = k.b.ins().fma(av, x, s);
                k.b.def_var(accs[r][v], s);
            }
        }
        Ok(())
    })?;
    for (r, row) in accs.iter().enumerate() {
        let i = k.add_imm(i0, r as i64);
        for (v, &var) in row.iter().enumerate() {
            let j = k.add_imm(j0, (v * LANES) as i64);
            let s = k.b.use_var(var);
            store(k, c_base, n, i, j, s, lanes, epi)?;
        }
    }
    Ok(())
}

/// `cols` (4 or 1) dot products of row i of A with columns j.. of B, both contiguous along k.
#[allow(clippy::too_many_arguments)]
fn dots(
    k: &mut Kernel,
    a: Mat,
    b: Mat,
    kk: usize,
    n: usize,
    c_base: Value,
    i: Value,
    j0: Value,
    cols: usize,
    epi: &mut Epilogue,
) -> LResult {
    let ai = k.mul_add(a.base, i, a.rs);
    let bj: Vec<Value> = (0..cols)
        .map(|c| {
            let j = k.add_imm(j0, c as i64);
            k.mul_add(b.base, j, b.cs)
        })
        .collect();
    let vzero = k.fconst(LANES, 0.0);
    let vacc: Vec<Variable> = (0..cols).map(|_| k.var(types::F32X4, vzero)).collect();
    let full = kk / LANES * LANES;
    k.loop_range(0, full, LANES, |k, l| {
        let x = k.b.ins().iadd(ai, l);
        let av = k.load(a.buf, types::F32X4, x);
        for (c, &b0) in bj.iter().enumerate() {
            let y = k.b.ins().iadd(b0, l);
            let bv = k.load(b.buf, types::F32X4, y);
            let s = k.b.use_var(vacc[c]);
            let s = k.b.ins().fma(av, bv, s);
            k.b.def_var(vacc[c], s);
        }
        Ok(())
    })?;
    let mut sums = Vec::with_capacity(cols);
    for (c, &b0) in bj.iter().enumerate() {
        let v = k.b.use_var(vacc[c]);
        let mut s = reduce_lanes(k, v, |k, x, y| k.b.ins().fadd(x, y));
        for l in full..kk {
            let x = k.add_imm(ai, l as i64);
            let x = k.load(a.buf, types::F32, x);
            let y = k.add_imm(b0, l as i64);
            let y = k.load(b.buf, types::F32, y);
            s = k.b.ins().fma(x, y, s);
        }
        sums.push(s);
    }
    let acc = if cols == 1 {
        sums[0]
    } else {
        let mut v = k.b.ins().splat(types::F32X4, sums[0]);
        for (c, &s) in sums.iter().enumerate().skip(1) {
            v = k.b.ins().insertlane(v, s, c as u8);
        }
        v
    };
    store(k, c_base, n, i, j0, acc, cols, epi)
}

pub(crate) fn lower(k: &mut Kernel, _: &MatMul) -> LResult {
    let (sa, sb) = (k.shape(BufId::In(0)), k.shape(BufId::In(1)));
    let geo =
        matmul_shape(&sa, &sb).map_err(|e| crate::error::CodegenError::Overflow(e.to_string()))?;
    let pa: Vec<usize> = if sa.len() == 1 {
        vec![1, sa[0]]
    } else {
        sa.clone()
    };
    let pb: Vec<usize> = if sb.len() == 1 {
        vec![sb[0], 1]
    } else {
        sb.clone()
    };
    let (m, kk, n) = (geo.m, geo.k, geo.n);
    let batch = geo.batch.clone();
    let view = |buf: BufId, p: &[usize]| -> LResult<View> {
        let own = strides(p);
        let lead = batch.len() - (p.len() - 2);
        let strides = (0..batch.len())
            .map(|i| {
                if i < lead || p[i - lead] == 1 {
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
    };
    let va = view(BufId::In(0), &pa)?;
    let vb = view(BufId::In(1), &pb)?;
    let mut batch_out = vec![m * n; batch.len()];
    let bs = strides(&batch);
    for (o, s) in batch_out.iter_mut().zip(bs) {
        *o *= s;
    }
    let vc = View {
        buf: BufId::Out,
        offset: 0,
        strides: batch_out.into_iter().map(as_i64).collect::<LResult<_>>()?,
    };
    let (ka, nb) = (as_i64(kk)?, as_i64(n)?);
    for_each(k, &batch, &[va, vb, vc], false, |k, at, _| {
        let a = Mat {
            buf: BufId::In(0),
            base: at[0].idx,
            rs: ka,
            cs: 1,
        };
        let b = Mat {
            buf: BufId::In(1),
            base: at[1].idx,
            rs: nb,
            cs: 1,
        };
        product(k, a, b, (m, kk, n), at[2].idx, &mut |_, acc, _, _, _| {
            Ok(acc)
        })
    })
}
