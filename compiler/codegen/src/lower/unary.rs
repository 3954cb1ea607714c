//! `unary`: elementwise f32 functions, 4 lanes at a time with a scalar tail. exp (and
//! sigmoid) use the inline polynomial of [`super::math`]; log, tanh and erf call the math
//! library lane by lane; the rest are a few native instructions. NaN propagates as in the
//! reference (relu, clip and hard_* keep NaN; leaky_relu passes it through). Large tensors are
//! cut into tasks of contiguous chunks ([`super::nest::par_map`]).

use super::kernel::{BufId, Kernel, LResult};
use super::math::{clamp, exp, exp_saturating, select_cmp};
use super::nest::{map_tasks, par_map, View};
use crate::libcalls::MathFn;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value};
use dync_ir::ops::{Unary, UnaryKind};
use dync_ir::TensorType;

pub(crate) fn lower(k: &mut Kernel, op: &Unary) -> LResult {
    let shape = k.shape(BufId::Out);
    let (ins, out) = views(&shape)?;
    par_map(k, &shape, &ins, out, true, |k, v, lanes| {
        apply(k, op.kind, v[0], lanes)
    })
}

/// Operand and result views of a unary (or any same-shape one-operand map) over `shape`.
pub(crate) fn views(shape: &[usize]) -> LResult<([View; 1], View)> {
    Ok((
        [View::dense(BufId::In(0), shape)?],
        View::dense(BufId::Out, shape)?,
    ))
}

/// The kernel's tasks (see [`par_map`]).
pub(crate) fn tasks(result: &TensorType) -> usize {
    views(&result.shape).map_or(1, |(ins, out)| map_tasks(&result.shape, &ins, out))
}

/// `kind` applied to `x` (f32 of `lanes` lanes).
pub(crate) fn apply(k: &mut Kernel, kind: UnaryKind, x: Value, lanes: usize) -> LResult<Value> {
    Ok(match kind {
        UnaryKind::Relu => {
            let zero = k.fconst(lanes, 0.0);
            k.b.ins().fmax(x, zero)
        }
        UnaryKind::LeakyRelu { alpha } => {
            let a = k.fconst(lanes, alpha);
            let ax = k.b.ins().fmul(x, a);
            let zero = k.fconst(lanes, 0.0);
            select_cmp(k, lanes, FloatCC::LessThan, x, zero, ax, x)
        }
        UnaryKind::Sigmoid => {
            let nx = k.b.ins().fneg(x);
            let e = exp_saturating(k, lanes, nx);
            let one = k.fconst(lanes, 1.0);
            let d = k.b.ins().fadd(one, e);
            k.b.ins().fdiv(one, d)
        }
        UnaryKind::HardSigmoid { alpha, beta } => {
            let a = k.fconst(lanes, alpha);
            let bb = k.fconst(lanes, beta);
            let y = k.b.ins().fma(x, a, bb);
            clamp(k, lanes, 0.0, 1.0, y)
        }
        UnaryKind::HardSwish => {
            let a = k.fconst(lanes, 1.0 / 6.0);
            let half = k.fconst(lanes, 0.5);
            let y = k.b.ins().fma(x, a, half);
            let y = clamp(k, lanes, 0.0, 1.0, y);
            k.b.ins().fmul(x, y)
        }
        UnaryKind::Clip { min, max } => clamp(k, lanes, min, max, x),
        UnaryKind::Tanh => k.call_math_lanes(MathFn::Tanh, &[x], lanes)?,
        UnaryKind::Exp => exp(k, lanes, x),
        UnaryKind::Log => k.call_math_lanes(MathFn::Log, &[x], lanes)?,
        UnaryKind::Sqrt => k.b.ins().sqrt(x),
        UnaryKind::Neg => k.b.ins().fneg(x),
        UnaryKind::Abs => k.b.ins().fabs(x),
        UnaryKind::Reciprocal => {
            let one = k.fconst(lanes, 1.0);
            k.b.ins().fdiv(one, x)
        }
        UnaryKind::Erf => k.call_math_lanes(MathFn::Erf, &[x], lanes)?,
    })
}
