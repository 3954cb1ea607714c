//! `cast`: converts elements, scalar. f32→int truncates toward zero and saturates (NaN → 0),
//! as Rust's `as`; int→f32 rounds to nearest; i64→i32 keeps the low bits; anything→bool is
//! `!= 0` (NaN → true); bool→number is 0 or 1. Same-type casts copy. Tasks as a unary's
//! ([`super::unary::tasks`]).

use super::kernel::{clif_type, BufId, Kernel, LResult};
use super::nest::par_map;
use super::unary::views;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use dync_ir::ops::Cast;
use dync_ir::DType;

pub(crate) fn lower(k: &mut Kernel, op: &Cast) -> LResult {
    let shape = k.shape(BufId::Out);
    let from = k.dtype(BufId::In(0));
    let (ins, out) = views(&shape)?;
    let vector = from == DType::F32 && op.to == DType::F32;
    par_map(k, &shape, &ins, out, vector, |k, v, _| {
        Ok(convert(k, v[0], from, op.to))
    })
}

fn convert(k: &mut Kernel, x: Value, from: DType, to: DType) -> Value {
    let i = k.b.ins();
    match (from, to) {
        (a, b) if a == b => x,
        (DType::F32, DType::I64 | DType::I32) => i.fcvt_to_sint_sat(clif_type(to), x),
        (DType::F32, DType::Bool) => {
            let zero = i.f32const(0.0);
            k.b.ins().fcmp(FloatCC::NotEqual, x, zero)
        }
        (DType::I64 | DType::I32, DType::Bool) => i.icmp_imm_s(IntCC::NotEqual, x, 0),
        (DType::I64 | DType::I32, DType::F32) => i.fcvt_from_sint(types::F32, x),
        (DType::I64, DType::I32) => i.ireduce(types::I32, x),
        (DType::I32, DType::I64) => i.sextend(types::I64, x),
        (DType::Bool, DType::F32) => i.fcvt_from_uint(types::F32, x),
        (DType::Bool, DType::I64 | DType::I32) => i.uextend(clif_type(to), x),
        // Same-dtype pairs are handled by the first arm; the remaining pairs do not exist.
        (DType::F32, DType::F32)
        | (DType::I64, DType::I64)
        | (DType::I32, DType::I32)
        | (DType::Bool, DType::Bool) => x,
    }
}
