//! `matmul`: numpy matmul (rank-1 promotion, broadcast batch dims), and the matrix-product
//! core shared with `gemm`.
//!
//! [`product`] computes C[m, n] = epilogue(Σ_k A[m, k]·B[k, n]) for strided A and B:
//! - B contiguous along n: register tiles of [`ROWS`] rows × 2 f32x4 vectors of columns
//!   (8 accumulators; per k step, ROWS broadcast loads of A and 2 vector loads of B), 1 row ×
//!   4 vectors for a single-row C, then one vector, then scalar columns; remaining rows the
//!   same with fewer rows;
//! - otherwise A and B contiguous along k (e.g. gemm with trans_b, the FC layer): 4 dot
//!   products at a time, 2 vector accumulators each along k, then a scalar tail, reduced
//!   horizontally;
//! - otherwise scalar.
//!
//! Large products are cut into tasks of blocks of C ([`Blocks`]): column blocks for wide C (a
//! GEMV, the batch-1 FC layer, has each task stream its own weight rows), row blocks for tall
//! C, one matrix of a batch per task.

use super::kernel::{as_i64, f32_type, BufId, Kernel, LResult, LANES};
use super::nest::{chunk_len, chunked, for_each, reduce_lanes, unflatten, View, TASK_WORK};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use cranelift_frontend::Variable;
use dync_ir::ops::{matmul_shape, MatMul};
use dync_ir::tensor::strides;
use dync_ir::TensorType;

/// Rows of A per register tile.
const ROWS: usize = 4;
/// Column vectors per register tile.
const VECS: usize = 2;
/// Vector accumulators per dot product (along k).
const DOT_VECS: usize = 2;

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

/// Where a block of C is computed and stored: rows `rows.0..rows.0 + rows.1` and columns
/// `cols.0..cols.0 + cols.1` of C (first index a run-time value, extent static), C row-major
/// with row stride `ldc` from `base` in buffer `buf` (the result, or scratch for an
/// intermediate product). Indices given to loads, stores and the epilogue are C's, not the
/// block's.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    pub rows: (Value, usize),
    pub cols: (Value, usize),
    pub base: Value,
    pub ldc: usize,
    pub buf: BufId,
}

impl Block {
    /// All of an m×n C from `base`.
    pub fn whole(k: &mut Kernel, m: usize, n: usize, base: Value) -> Block {
        let zero = k.iconst(0);
        Block {
            rows: (zero, m),
            cols: (zero, n),
            base,
            ldc: n,
            buf: BufId::Out,
        }
    }
}

/// How products are cut into tasks: each task computes one block of at most `mb` rows × `nb`
/// columns of one matrix of the batch (`rt` × `ct` blocks per matrix); one task computes
/// everything when the whole product is small. Blocks are aligned to the register tiles
/// ([`ROWS`] rows, `VECS·LANES` columns) so they only change where a tile starts; each element
/// of C is accumulated by the same instructions in any block (an fma chain over k, or the
/// lanes of a vector dot product then its tail), so results do not depend on the split.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocks {
    pub mb: usize,
    pub nb: usize,
    pub rt: usize,
    pub ct: usize,
    /// Total tasks (1: serial).
    pub tasks: usize,
}

impl Blocks {
    /// The split of `batch` products of [m×kk]·[kk×n]: columns are cut when C is at least as
    /// wide as tall (a GEMV: each task streams its own weight rows), rows otherwise.
    pub fn new(batch: usize, m: usize, kk: usize, n: usize) -> Blocks {
        let cost = kk.max(1);
        let total = batch
            .saturating_mul(m)
            .saturating_mul(n)
            .saturating_mul(cost);
        if total < 2 * TASK_WORK || m == 0 || n == 0 {
            return Blocks {
                mb: m,
                nb: n,
                rt: 1,
                ct: 1,
                tasks: 1,
            };
        }
        let (mb, nb) = if n >= m || m < 2 * ROWS {
            (m, chunk_len(n, m.saturating_mul(cost), VECS * LANES))
        } else {
            (chunk_len(m, n.saturating_mul(cost), ROWS), n)
        };
        let (rt, ct) = (m.div_ceil(mb), n.div_ceil(nb));
        Blocks {
            mb,
            nb,
            rt,
            ct,
            tasks: batch.saturating_mul(rt).saturating_mul(ct),
        }
    }

    /// Emits `body(k, block)` for block `t` (of `0..rt·ct`) of an m×n C from `base`.
    pub fn block(
        &self,
        k: &mut Kernel,
        t: Value,
        (m, n): (usize, usize),
        base: Value,
        body: &mut dyn FnMut(&mut Kernel, Block) -> LResult,
    ) -> LResult {
        let ct = as_i64(self.ct)?;
        let r = k.b.ins().udiv_imm_u(t, ct);
        let c = k.b.ins().urem_imm_u(t, ct);
        chunked(k, r, m, self.mb, |k, i0, rows| {
            chunked(k, c, n, self.nb, |k, j0, cols| {
                body(
                    k,
                    Block {
                        rows: (i0, rows),
                        cols: (j0, cols),
                        base,
                        ldc: n,
                        buf: BufId::Out,
                    },
                )
            })
        })
    }
}

/// Emits the block `c` of C = epilogue(A·B) for A [m×kk], B [kk×n].
pub(crate) fn product(
    k: &mut Kernel,
    a: Mat,
    b: Mat,
    kk: usize,
    c: Block,
    epi: &mut Epilogue,
) -> LResult {
    let ((r0, m), (c0, n)) = (c.rows, c.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if b.cs == 1 || n == 1 {
        let full = m / ROWS * ROWS;
        // One row (a GEMV) has registers for more column vectors: more independent chains.
        let vecs = if m == 1 { ROWS * VECS / 2 } else { VECS };
        let tile_w = vecs * LANES;
        let wide_end = n / tile_w * tile_w;
        let vec_end = wide_end + (n - wide_end) / LANES * LANES;
        let mut rows_block = |k: &mut Kernel, i0: Value, rows: usize| -> LResult {
            let i0 = k.b.ins().iadd(r0, i0);
            k.loop_range(0, wide_end, tile_w, |k, j| {
                let j = k.b.ins().iadd(c0, j);
                tile(k, a, b, kk, &c, i0, rows, j, LANES, vecs, epi)
            })?;
            k.loop_range(wide_end, vec_end, LANES, |k, j| {
                let j = k.b.ins().iadd(c0, j);
                tile(k, a, b, kk, &c, i0, rows, j, LANES, 1, epi)
            })?;
            k.loop_range(vec_end, n, 1, |k, j| {
                let j = k.b.ins().iadd(c0, j);
                tile(k, a, b, kk, &c, i0, rows, j, 1, 1, epi)
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
            let i = k.b.ins().iadd(r0, i);
            k.loop_range(0, full, LANES, |k, j| {
                let j = k.b.ins().iadd(c0, j);
                dots(k, a, b, kk, &c, i, j, LANES, epi)
            })?;
            k.loop_range(full, n, 1, |k, j| {
                let j = k.b.ins().iadd(c0, j);
                dots(k, a, b, kk, &c, i, j, 1, epi)
            })
        })
    } else {
        k.loop_n(m, |k, i| {
            let i = k.b.ins().iadd(r0, i);
            k.loop_n(n, |k, j| {
                let j = k.b.ins().iadd(c0, j);
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
                store(k, &c, i, j, s, 1, epi)
            })
        })
    }
}

fn store(
    k: &mut Kernel,
    c: &Block,
    i: Value,
    j: Value,
    acc: Value,
    lanes: usize,
    epi: &mut Epilogue,
) -> LResult {
    let y = epi(k, acc, i, j, lanes)?;
    let row = k.mul_add(c.base, i, as_i64(c.ldc)?);
    let idx = k.b.ins().iadd(row, j);
    k.store(c.buf, idx, y);
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
    c: &Block,
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
            store(k, c, i, j, s, lanes, epi)?;
        }
    }
    Ok(())
}

/// `cols` (4 or 1) dot products of row i of A with columns j.. of B, both contiguous along k:
/// [`DOT_VECS`] vector accumulators per column along k (independent fma chains; the loads of
/// one step share one address per operand, columns and vectors are displacements), a vector
/// step when k leaves one, the accumulators summed in order, reduced across lanes, then the
/// scalar tail. Each column's sum is the same whatever `cols` is.
#[allow(clippy::too_many_arguments)]
fn dots(
    k: &mut Kernel,
    a: Mat,
    b: Mat,
    kk: usize,
    out: &Block,
    i: Value,
    j0: Value,
    cols: usize,
    epi: &mut Epilogue,
) -> LResult {
    let ai = k.mul_add(a.base, i, a.rs);
    let b0 = k.mul_add(b.base, j0, b.cs);
    let vzero = k.fconst(LANES, 0.0);
    let vacc: Vec<Vec<Variable>> = (0..cols)
        .map(|_| (0..DOT_VECS).map(|_| k.var(types::F32X4, vzero)).collect())
        .collect();
    let step = |k: &mut Kernel, l: Value, vecs: usize| {
        let x = k.b.ins().iadd(ai, l);
        let y = k.b.ins().iadd(b0, l);
        let av: Vec<Value> = (0..vecs)
            .map(|u| k.load_off(a.buf, types::F32X4, x, (u * LANES) as i64, false))
            .collect();
        for (c, accs) in vacc.iter().enumerate() {
            for (u, &av) in av.iter().enumerate() {
                let off = c as i64 * b.cs + (u * LANES) as i64;
                let bv = k.load_off(b.buf, types::F32X4, y, off, false);
                let s = k.b.use_var(accs[u]);
                let s = k.b.ins().fma(av, bv, s);
                k.b.def_var(accs[u], s);
            }
        }
        Ok(())
    };
    let wide = DOT_VECS * LANES;
    let wide_end = kk / wide * wide;
    let full = kk / LANES * LANES;
    k.loop_range(0, wide_end, wide, |k, l| step(k, l, DOT_VECS))?;
    k.loop_range(wide_end, full, LANES, |k, l| step(k, l, 1))?;
    let bj: Vec<Value> = (0..cols).map(|c| k.add_imm(b0, c as i64 * b.cs)).collect();
    let vacc: Vec<Value> = vacc
        .iter()
        .map(|accs| {
            let first = k.b.use_var(accs[0]);
            accs[1..].iter().fold(first, |v, &acc| {
                let w = k.b.use_var(acc);
                k.b.ins().fadd(v, w)
            })
        })
        .collect();
    let mut sums = Vec::with_capacity(cols);
    for (&v, &b0) in vacc.iter().zip(&bj) {
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
    store(k, out, i, j0, acc, cols, epi)
}

/// Geometry of a matmul of operands shaped `sa` and `sb`: A's and B's shapes as matrices
/// (rank-1 operands promoted), batch dims, (m, k, n).
type Geometry = (Vec<usize>, Vec<usize>, Vec<usize>, (usize, usize, usize));

fn geometry(sa: &[usize], sb: &[usize]) -> LResult<Geometry> {
    let geo =
        matmul_shape(sa, sb).map_err(|e| crate::error::CodegenError::Overflow(e.to_string()))?;
    let pa: Vec<usize> = if sa.len() == 1 {
        vec![1, sa[0]]
    } else {
        sa.to_vec()
    };
    let pb: Vec<usize> = if sb.len() == 1 {
        vec![sb[0], 1]
    } else {
        sb.to_vec()
    };
    Ok((pa, pb, geo.batch, (geo.m, geo.k, geo.n)))
}

/// The kernel's tasks ([`Blocks`] of the batch of products).
pub(crate) fn tasks(a: &TensorType, b: &TensorType) -> usize {
    geometry(&a.shape, &b.shape).map_or(1, |(_, _, batch, (m, kk, n))| {
        Blocks::new(batch.iter().product(), m, kk, n).tasks
    })
}

pub(crate) fn lower(k: &mut Kernel, _: &MatMul) -> LResult {
    let (pa, pb, batch, (m, kk, n)) = geometry(&k.shape(BufId::In(0)), &k.shape(BufId::In(1)))?;
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
    let mats = |at: &[Value]| {
        let a = Mat {
            buf: BufId::In(0),
            base: at[0],
            rs: ka,
            cs: 1,
        };
        let b = Mat {
            buf: BufId::In(1),
            base: at[1],
            rs: nb,
            cs: 1,
        };
        (a, b)
    };
    let identity: &mut Epilogue = &mut |_, acc, _, _, _| Ok(acc);
    let blocks = Blocks::new(batch.iter().product(), m, kk, n);
    if blocks.tasks <= 1 {
        return for_each(k, &batch, &[va, vb, vc], false, |k, at, _| {
            let idx: Vec<Value> = at.iter().map(|a| a.idx).collect();
            let (a, b) = mats(&idx);
            let c = Block::whole(k, m, n, idx[2]);
            product(k, a, b, kk, c, identity)
        });
    }
    let per_matrix = as_i64(blocks.rt * blocks.ct)?;
    k.for_tasks(|k, t| {
        let bi = k.b.ins().udiv_imm_u(t, per_matrix);
        let r = k.b.ins().urem_imm_u(t, per_matrix);
        let at = unflatten(k, bi, &batch, &[va.clone(), vb.clone(), vc.clone()])?;
        let (a, b) = mats(&at);
        blocks.block(k, r, (m, n), at[2], &mut |k, c| {
            product(k, a, b, kk, c, identity)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemv_splits_columns_in_tile_aligned_blocks() {
        let b = Blocks::new(1, 1, 517, 1003);
        assert_eq!((b.mb, b.rt), (1, 1));
        assert!(b.ct > 1 && b.nb.is_multiple_of(VECS * LANES), "{b:?}");
        assert_eq!(b.tasks, b.ct);
        // Tall C: rows are cut instead, in multiples of the register tile.
        let b = Blocks::new(1, 130, 64, 9);
        assert_eq!((b.nb, b.ct), (9, 1));
        assert!(b.rt > 1 && b.mb.is_multiple_of(ROWS), "{b:?}");
        // A batch: one matrix per task at least.
        let b = Blocks::new(6, 45, 60, 51);
        assert_eq!(b.tasks, 6 * b.rt * b.ct);
        assert_eq!(
            Blocks::new(4, 8, 8, 8).tasks,
            1,
            "small products stay serial"
        );
    }
}
