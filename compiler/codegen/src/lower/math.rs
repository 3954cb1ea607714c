//! Inline f32 math shared by the lowerings, for scalars and f32x4 alike: lane-wise selects and
//! a polynomial `exp` (Cephes' expf: range reduction by ln 2 split in two parts, a degree-6
//! polynomial, scaling by 2^n built from exponent bits; about 1 ulp in [-87.3, 88.7]).
//! Edge cases match the reference: exp(NaN) = NaN, exp(x > 88.72) = +inf; below -87.3 the
//! result is the smallest normal f32 (1.2e-38) instead of a subnormal or 0. The sigmoid's
//! `exp_saturating` clamps its argument to ±87.3, which spares the two-factor scaling and the
//! overflow select.

use super::kernel::Kernel;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Value};
// The exp polynomial's constants, shared with the runtime's SiLU kernel (same bits).
use dync_runtime::ukernel::silu::{C1, C2, LO, POLY};

/// Lane-wise `if a cc b { t } else { e }` on f32 values of `lanes` lanes.
pub(crate) fn select_cmp(
    k: &mut Kernel,
    lanes: usize,
    cc: FloatCC,
    a: Value,
    b: Value,
    t: Value,
    e: Value,
) -> Value {
    let c = k.b.ins().fcmp(cc, a, b);
    if lanes == 1 {
        k.b.ins().select(c, t, e)
    } else {
        let mask = k.b.ins().bitcast(types::F32X4, little(), c);
        k.b.ins().bitselect(mask, t, e)
    }
}

/// `min(hi, max(lo, x))` keeping NaN (ONNX Clip), as the compare-and-select patterns
/// Cranelift lowers to `maxps`/`minps` on x86 (its `fmax`/`fmin` order zeros and NaNs at
/// several instructions each).
pub(crate) fn clamp(k: &mut Kernel, lanes: usize, lo: f32, hi: f32, x: Value) -> Value {
    let (lo, hi) = (k.fconst(lanes, lo), k.fconst(lanes, hi));
    let y = select_cmp(k, lanes, FloatCC::LessThan, x, lo, lo, x);
    select_cmp(k, lanes, FloatCC::LessThan, hi, y, hi, y)
}

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// 2^n for integer-valued f32 `n` in [-126, 127], built from exponent bits.
fn pow2(k: &mut Kernel, lanes: usize, n: Value) -> Value {
    let (ity, fty) = if lanes == 1 {
        (types::I32, types::F32)
    } else {
        (types::I32X4, types::F32X4)
    };
    let ni = k.b.ins().fcvt_to_sint_sat(ity, n);
    let biased = if lanes == 1 {
        k.b.ins().iadd_imm_s(ni, 127)
    } else {
        let c = k.b.ins().iconst(types::I32, 127);
        let c = k.b.ins().splat(types::I32X4, c);
        k.b.ins().iadd(ni, c)
    };
    let bits = k.b.ins().ishl_imm_s(biased, 23);
    k.b.ins().bitcast(fty, little(), bits)
}

/// e^x.
pub(crate) fn exp(k: &mut Kernel, lanes: usize, x: Value) -> Value {
    let xc = clamp(k, lanes, LO, HI, x);
    let (y, n) = exp_reduced(k, lanes, xc);
    // 2^n = 2^h · 2^(n-h) with h = trunc(n/2): both factors stay normal for n in [-126, 128].
    let half = k.fconst(lanes, 0.5);
    let h = k.b.ins().fmul(n, half);
    let h = k.b.ins().trunc(h);
    let rest = k.b.ins().fsub(n, h);
    let s1 = pow2(k, lanes, h);
    let s2 = pow2(k, lanes, rest);
    let y = k.b.ins().fmul(y, s1);
    let y = k.b.ins().fmul(y, s2);
    let inf = k.fconst(lanes, f32::INFINITY);
    let hi = k.fconst(lanes, HI);
    select_cmp(k, lanes, FloatCC::GreaterThan, x, hi, inf, y)
}

/// e^x with x clamped to [-87.3, 87.3] (2^n then needs one factor and nothing overflows), for
/// the sigmoid: 1/(1 + e^-x) is already 0 or 1 to f32 precision outside that range (within
/// 1.2e-38 of the exact value), and NaN stays NaN.
pub(crate) fn exp_saturating(k: &mut Kernel, lanes: usize, x: Value) -> Value {
    let xc = clamp(k, lanes, LO, -LO, x);
    let (y, n) = exp_reduced(k, lanes, xc);
    let s = pow2(k, lanes, n);
    k.b.ins().fmul(y, s)
}

/// Upper end of exp's argument range (the lower one, `LO`, is the runtime SiLU kernel's).
const HI: f32 = 88.722_83;

/// For `xc` in [LO, HI]: (e^r, n) with e^xc = e^r · 2^n, n = round(xc / ln 2).
fn exp_reduced(k: &mut Kernel, lanes: usize, xc: Value) -> (Value, Value) {
    let log2e = k.fconst(lanes, std::f32::consts::LOG2_E);
    let n = k.b.ins().fmul(xc, log2e);
    let n = k.b.ins().nearest(n);
    // r = x - n·ln2, with ln2 = C1 + C2 (C1 exact in few bits).
    let c1 = k.fconst(lanes, C1);
    let c2 = k.fconst(lanes, C2);
    let r = k.b.ins().fma(n, c1, xc);
    let r = k.b.ins().fma(n, c2, r);
    let mut p = k.fconst(lanes, POLY[0]);
    for &c in &POLY[1..] {
        let cv = k.fconst(lanes, c);
        p = k.b.ins().fma(p, r, cv);
    }
    let r2 = k.b.ins().fmul(r, r);
    let one = k.fconst(lanes, 1.0);
    let r1 = k.b.ins().fadd(r, one);
    (k.b.ins().fma(p, r2, r1), n)
}
