//! `predict`: the whole coefficient predictor in one kernel call, in phases (task functions
//! run one after the other):
//! 0. the global average of each channel of each sample ([`Run`]: 4-lane partial sums), tasks
//!    of consecutive (sample, channel) runs, into the pooled vectors [N, C] in scratch;
//! 1. one phase per layer, hidden layers first: the layer's outputs are cut into column
//!    blocks (of whole softmax runs for the last layer), one task per block for all samples,
//!    so that its weights stream on every thread, each block once for the whole batch
//!    (DyNet's ResNet-50 predicts 9216 coefficients from 256 hidden units, 9.4 MB, and its
//!    hidden layer reads 1 MB: a task per sample left one thread idle while the other read
//!    it). A hidden layer's epilogue is the bias and hidden activation (Relu, SiLU) into
//!    scratch; the last layer's is the bias, the scale and the sigmoid, straight into the
//!    result, a softmax then normalizing each run in place.
//!
//! The weights are [O, I], so every output is a contiguous dot product streaming its own
//! weight row — the matrix-vector micro-kernel when the context has one (one call per block
//! for all samples: dy-mobile's batch-8 predictors read their 3.7 MB rows once, not once per
//! sample), else the compiler's dot products (the same sums): [`gemv_or_product`].
//!
//! The pooled vector and the hidden layers never become graph tensors. Each output is
//! computed by the same instructions whatever the split, so results do not depend on the
//! thread count.

use super::gemm::gemv_or_product;
use super::kernel::{as_i64, BufId, Kernel, LResult, LANES};
use super::matmul::{Block, Epilogue, Mat};
use super::nest::{chunk_len, chunked};
use super::reduce::Run;
use super::softmax::contiguous_row;
use super::unary;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use dync_ir::ops::{Hidden, Predict, PredictAct, ReduceKind, UnaryKind};
use dync_ir::TensorType;

/// The kernel's shape and split, from its operand types (x, then weight and bias pairs).
struct Plan {
    n: usize,
    c: usize,
    hw: usize,
    /// Each layer's (outputs, inputs).
    layers: Vec<(usize, usize)>,
    /// (sample, channel) runs per pooling task.
    pool_chunk: usize,
    /// Each layer's outputs per task (its phase's column block).
    cols: Vec<usize>,
}

impl Plan {
    fn new(operands: &[&TensorType], act: PredictAct) -> Plan {
        let dim = |t: &TensorType, i: usize| t.shape.get(i).copied().unwrap_or(0);
        let x = operands[0];
        let (n, c, hw) = (dim(x, 0), dim(x, 1), dim(x, 2) * dim(x, 3));
        let layers: Vec<(usize, usize)> = operands[1..]
            .iter()
            .step_by(2)
            .map(|w| (dim(w, 0), dim(w, 1)))
            .collect();
        let last = layers.len().saturating_sub(1);
        let cols = layers
            .iter()
            .enumerate()
            .map(|(l, &(m, k))| {
                let align = match act {
                    PredictAct::Softmax { run } if l == last => run,
                    _ => LANES,
                };
                chunk_len(m, k, align)
            })
            .collect();
        Plan {
            n,
            c,
            hw,
            pool_chunk: chunk_len(n.saturating_mul(c), hw, 1),
            layers,
            cols,
        }
    }

    /// Scratch f32 elements per sample for the hidden layers' results.
    fn hidden(&self) -> usize {
        self.layers[..self.layers.len().saturating_sub(1)]
            .iter()
            .map(|l| l.0)
            .sum()
    }

    /// Scratch f32 elements: the pooled vectors [N, C], then per sample its hidden layers.
    fn scratch(&self) -> usize {
        self.n.saturating_mul(self.c.saturating_add(self.hidden()))
    }

    /// The phases: pooling, then one per layer (at least one).
    fn phases(&self) -> usize {
        1 + self.layers.len().max(1)
    }

    fn tasks(&self, phase: usize) -> usize {
        match phase {
            0 => (self.n * self.c).div_ceil(self.pool_chunk).max(1),
            p => match (self.layers.get(p - 1), self.cols.get(p - 1)) {
                (Some(&(m, _)), Some(&cols)) => m.div_ceil(cols).max(1),
                _ => 1,
            },
        }
    }

    /// Where sample 0's result of hidden layer `l` starts in scratch (after every pooled
    /// vector; each sample's hidden layers are `hidden()` apart).
    fn hidden_at(&self, l: usize) -> usize {
        self.n * self.c + self.layers[..l].iter().map(|l| l.0).sum::<usize>()
    }

    /// Where sample 0's input of layer `l` starts in scratch (the previous layer's result,
    /// or the pooled vector), and the stride from one sample's to the next's.
    fn input(&self, l: usize) -> LResult<(i64, i64)> {
        match l {
            0 => Ok((0, as_i64(self.c)?)),
            l => Ok((as_i64(self.hidden_at(l - 1))?, as_i64(self.hidden())?)),
        }
    }
}

pub(crate) fn scratch_elems(op: &Predict, operands: &[&TensorType]) -> usize {
    Plan::new(operands, op.act).scratch()
}

pub(crate) fn phases(op: &Predict, operands: &[&TensorType]) -> usize {
    Plan::new(operands, op.act).phases()
}

pub(crate) fn tasks(op: &Predict, operands: &[&TensorType], phase: usize) -> usize {
    Plan::new(operands, op.act).tasks(phase)
}

pub(crate) fn lower(k: &mut Kernel, op: &Predict, phase: usize) -> LResult {
    let types: Vec<TensorType> = (0..k.n_inputs())
        .map(|i| TensorType::f32(k.shape(BufId::In(i))))
        .collect();
    let refs: Vec<&TensorType> = types.iter().collect();
    let plan = Plan::new(&refs, op.act);
    if plan.n == 0 || plan.layers.is_empty() {
        return Ok(());
    }
    match phase {
        0 => pool(k, &plan),
        p => layer(k, op, &plan, p - 1),
    }
}

/// Phase 0: the mean of each (sample, channel) run of x into scratch [N, C].
fn pool(k: &mut Kernel, plan: &Plan) -> LResult {
    let hwi = as_i64(plan.hw)?;
    let inv = 1.0 / plan.hw as f32;
    k.for_tasks(|k, t| {
        chunked(k, t, plan.n * plan.c, plan.pool_chunk, |k, first, len| {
            k.loop_n(len, |k, j| {
                let nc = k.b.ins().iadd(first, j);
                let zero = k.fconst(1, 0.0);
                let acc = k.var(types::F32, zero);
                let run = Run::new(k, ReduceKind::Sum);
                let from = k.b.ins().imul_imm_s(nc, hwi);
                run.add(k, BufId::In(0), from, plan.hw, acc)?;
                run.finish(k, acc);
                let s = k.b.use_var(acc);
                let f = k.fconst(1, inv);
                let mean = k.b.ins().fmul(s, f);
                k.store(BufId::Scratch, nc, mean);
                Ok(())
            })
        })
    })
}

/// Layer `l`'s phase: task t is column block t for every sample.
fn layer(k: &mut Kernel, op: &Predict, plan: &Plan, l: usize) -> LResult {
    let (m, _) = plan.layers[l];
    let (first, ldx) = plan.input(l)?;
    let last = l + 1 == plan.layers.len();
    let (buf, dest, ldc) = if last {
        (BufId::Out, 0, m)
    } else {
        (BufId::Scratch, as_i64(plan.hidden_at(l))?, plan.hidden())
    };
    k.for_tasks(|k, t| {
        let input = k.iconst(first);
        let dest = k.iconst(dest);
        chunked(k, t, m, plan.cols[l], |k, j0, len| {
            fc(k, op, l, (input, ldx, plan.n), (buf, dest, ldc), (j0, len))?;
            if let (true, PredictAct::Softmax { run }) = (last, op.act) {
                // In place, as the `softmax` op computes a contiguous row.
                k.loop_n(plan.n, |k, s| {
                    let r0 = k.b.ins().imul_imm_s(s, as_i64(m)?);
                    let r0 = k.b.ins().iadd(r0, j0);
                    k.loop_range(0, len, run, |k, r| {
                        let r = k.b.ins().iadd(r0, r);
                        contiguous_row(k, (BufId::Out, r), r, run)
                    })
                })?;
            }
            Ok(())
        })
    })
}

/// Columns `cols` of layer `l` (weight [O, I]) on the `rows` vectors from `input` in scratch
/// (`ldx` apart), stored in rows from `dest` (`ldc` apart) with the layer's epilogue (the last
/// layer's when its bias is the kernel's last operand).
fn fc(
    k: &mut Kernel,
    op: &Predict,
    l: usize,
    (input, ldx, rows): (Value, i64, usize),
    (buf, dest, ldc): (BufId, Value, usize),
    cols: (Value, usize),
) -> LResult {
    let width = k.shape(BufId::In(1 + 2 * l))[1];
    let last = 3 + 2 * l == k.n_inputs();
    let zero = k.iconst(0);
    let a = Mat {
        buf: BufId::Scratch,
        base: input,
        rs: ldx,
        cs: 1,
    };
    let w = Mat {
        buf: BufId::In(1 + 2 * l),
        base: zero,
        rs: 1,
        cs: as_i64(width)?,
    };
    let block = Block {
        rows: (zero, rows),
        cols,
        base: dest,
        ldc,
        buf,
    };
    let bias = BufId::In(2 + 2 * l);
    let epi: &mut Epilogue = &mut |k, acc, _, j, lanes| {
        let b = k.load_f32(bias, j, lanes, true);
        let y = k.b.ins().fadd(acc, b);
        if !last {
            return match op.hidden {
                Hidden::Relu => unary::apply(k, UnaryKind::Relu, y, lanes),
                Hidden::Silu => {
                    let s = unary::apply(k, UnaryKind::Sigmoid, y, lanes)?;
                    Ok(k.b.ins().fmul(y, s))
                }
                Hidden::None => Ok(y),
            };
        }
        let y = if op.scale == 1.0 {
            y
        } else {
            let s = k.fconst(lanes, op.scale);
            k.b.ins().fmul(y, s)
        };
        match op.act {
            PredictAct::Sigmoid => unary::apply(k, UnaryKind::Sigmoid, y, lanes),
            PredictAct::Softmax { .. } => Ok(y),
        }
    };
    let f = k.gemv_fn();
    gemv_or_product(k, f, (a, w, width), block, epi, false)
}
