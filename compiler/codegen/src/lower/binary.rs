//! `binary`: elementwise arithmetic with numpy broadcasting, as a strided nest (broadcast
//! operands have stride 0, so a per-channel operand becomes a splat inside the vector loop).
//! f32 is vectorized (pow calls the math library lane by lane; max/min propagate NaN). i64 and
//! i32 are scalar and checked like the reference: overflow of add/sub/mul/div/pow stops with
//! `IntegerOverflow`, division by zero with `DivisionByZero`, a negative exponent with
//! `NegativeExponent`; division truncates toward zero. Large results are cut into tasks of
//! chunks of the outermost dims ([`super::nest::par_map`]); a fault stops the task that meets
//! it, and the kernel reports the first faulting task's code.

use super::kernel::{BufId, Kernel, LResult};
use super::nest::{map_tasks, par_map, View};
use crate::abi::Fault;
use crate::libcalls::MathFn;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, BlockArg, InstBuilder, Type, Value};
use dync_ir::ops::{Binary, BinaryKind};
use dync_ir::{DType, TensorType};

pub(crate) fn lower(k: &mut Kernel, op: &Binary) -> LResult {
    let shape = k.shape(BufId::Out);
    let (ins, out) = views(&k.shape(BufId::In(0)), &k.shape(BufId::In(1)), &shape)?;
    let dtype = k.dtype(BufId::Out);
    par_map(k, &shape, &ins, out, dtype == DType::F32, |k, v, lanes| {
        if dtype == DType::F32 {
            float(k, op.kind, v[0], v[1], lanes)
        } else {
            Ok(int(k, op.kind, v[0], v[1]))
        }
    })
}

fn views(a: &[usize], b: &[usize], shape: &[usize]) -> LResult<([View; 2], View)> {
    Ok((
        [
            View::broadcast(BufId::In(0), a, shape)?,
            View::broadcast(BufId::In(1), b, shape)?,
        ],
        View::dense(BufId::Out, shape)?,
    ))
}

/// The kernel's tasks (see [`par_map`]).
pub(crate) fn tasks(a: &TensorType, b: &TensorType, result: &TensorType) -> usize {
    views(&a.shape, &b.shape, &result.shape)
        .map_or(1, |(ins, out)| map_tasks(&result.shape, &ins, out))
}

fn float(k: &mut Kernel, kind: BinaryKind, a: Value, b: Value, lanes: usize) -> LResult<Value> {
    let i = k.b.ins();
    Ok(match kind {
        BinaryKind::Add => i.fadd(a, b),
        BinaryKind::Sub => i.fsub(a, b),
        BinaryKind::Mul => i.fmul(a, b),
        BinaryKind::Div => i.fdiv(a, b),
        BinaryKind::Max => i.fmax(a, b),
        BinaryKind::Min => i.fmin(a, b),
        BinaryKind::Pow => k.call_math_lanes(MathFn::Pow, &[a, b], lanes)?,
    })
}

/// Checked integer arithmetic on scalars of the operands' type.
fn int(k: &mut Kernel, kind: BinaryKind, a: Value, b: Value) -> Value {
    let ty = k.b.func.dfg.value_type(a);
    match kind {
        BinaryKind::Add => {
            let (r, o) = k.b.ins().sadd_overflow(a, b);
            k.fail_if(o, Fault::IntegerOverflow);
            r
        }
        BinaryKind::Sub => {
            let (r, o) = k.b.ins().ssub_overflow(a, b);
            k.fail_if(o, Fault::IntegerOverflow);
            r
        }
        BinaryKind::Mul => {
            let (r, o) = k.b.ins().smul_overflow(a, b);
            k.fail_if(o, Fault::IntegerOverflow);
            r
        }
        BinaryKind::Div => {
            let zero = k.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
            k.fail_if(zero, Fault::DivisionByZero);
            let min = k.b.ins().icmp_imm_s(IntCC::Equal, a, int_min(ty));
            let neg1 = k.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
            let o = k.b.ins().band(min, neg1);
            k.fail_if(o, Fault::IntegerOverflow);
            k.b.ins().sdiv(a, b)
        }
        BinaryKind::Max => k.b.ins().smax(a, b),
        BinaryKind::Min => k.b.ins().smin(a, b),
        BinaryKind::Pow => int_pow(k, ty, a, b),
    }
}

fn int_min(ty: Type) -> i64 {
    if ty == types::I32 {
        i64::from(i32::MIN)
    } else {
        i64::MIN
    }
}

/// a^b by binary exponentiation with overflow checks: squaring the base overflows only when
/// bits of the exponent remain, and then the result overflows too (|base| >= 2), so this
/// stops exactly when the true result does not fit.
fn int_pow(k: &mut Kernel, ty: Type, a: Value, b: Value) -> Value {
    let neg = k.b.ins().icmp_imm_s(IntCC::SignedLessThan, b, 0);
    k.fail_if(neg, Fault::NegativeExponent);
    let header = k.b.create_block();
    let body = k.b.create_block();
    let exit = k.b.create_block();
    let acc = k.b.append_block_param(header, ty);
    let base = k.b.append_block_param(header, ty);
    let e = k.b.append_block_param(header, ty);
    let result = k.b.append_block_param(exit, ty);
    let one = k.b.ins().iconst(ty, 1);
    k.b.ins().jump(
        header,
        &[BlockArg::Value(one), BlockArg::Value(a), BlockArg::Value(b)],
    );
    k.b.switch_to_block(header);
    let done = k.b.ins().icmp_imm_s(IntCC::Equal, e, 0);
    k.b.ins()
        .brif(done, exit, &[BlockArg::Value(acc)], body, &[]);
    k.b.switch_to_block(body);
    // acc *= base when the low bit is set (select keeps the checked product or acc).
    let (prod, o) = k.b.ins().smul_overflow(acc, base);
    let bit = k.b.ins().band_imm_s(e, 1);
    let odd = k.b.ins().icmp_imm_s(IntCC::NotEqual, bit, 0);
    let bad = k.b.ins().band(odd, o);
    k.fail_if(bad, Fault::IntegerOverflow);
    let acc2 = k.b.ins().select(odd, prod, acc);
    let e2 = k.b.ins().ushr_imm_s(e, 1);
    let (sq, o2) = k.b.ins().smul_overflow(base, base);
    let more = k.b.ins().icmp_imm_s(IntCC::NotEqual, e2, 0);
    let bad2 = k.b.ins().band(more, o2);
    k.fail_if(bad2, Fault::IntegerOverflow);
    k.b.ins().jump(
        header,
        &[
            BlockArg::Value(acc2),
            BlockArg::Value(sq),
            BlockArg::Value(e2),
        ],
    );
    k.b.switch_to_block(exit);
    result
}
