//! `dyn_conv`: per image, the kernel W̃[o] = Σᵢ c[o,i]·bank[i,o] and the bias
//! (static bias + Σᵢ c[o,i]·bias_bank[i,o]) are mixed into the kernel's scratch memory — the
//! bank rows 4 lanes at a time, the image's coefficients of a channel loaded once — and the
//! image is then convolved with them by the `conv` lowering ([`super::conv::conv_image`]).
//! Coefficients are per output channel ([N,O,g]) or per expert ([N,g]).

use super::conv::{conv_image, Geo};
use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::nest::{for_each_from, View};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use dync_ir::ops::{Conv, DynConv};
use dync_ir::TensorType;

/// Scratch f32 elements: the mixed kernel [O, C/G, kh, kw], then the mixed bias [O].
pub(crate) fn scratch_elems(bank: &TensorType) -> usize {
    let s = &bank.shape;
    let o = s.get(1).copied().unwrap_or(0);
    s[1..].iter().product::<usize>().saturating_add(o)
}

pub(crate) fn lower(k: &mut Kernel, op: &DynConv) -> LResult {
    let bank = k.shape(BufId::In(2));
    let (gk, o) = (bank[0], bank[1]);
    let e: usize = bank[2..].iter().product();
    let per_channel = k.shape(BufId::In(1)).len() == 3;
    let conv = Conv {
        strides: op.strides,
        pads: op.pads,
        dilations: op.dilations,
        group: op.group,
    };
    let (ei, oi, gi) = (as_i64(e)?, as_i64(o)?, as_i64(gk)?);
    let geo = Geo::new(
        k,
        &conv,
        &bank[1..],
        (BufId::Scratch, 0),
        Some((BufId::Scratch, oi * ei)),
    );
    let rows = [
        View {
            buf: BufId::In(2),
            offset: 0,
            strides: vec![1],
        },
        View {
            buf: BufId::Scratch,
            offset: 0,
            strides: vec![1],
        },
    ];
    k.loop_n(k.shape(BufId::In(0))[0], |k, n| {
        k.loop_n(o, |k, oc| {
            let cbase = if per_channel {
                let t = k.b.ins().imul_imm_s(n, oi);
                let t = k.b.ins().iadd(t, oc);
                k.b.ins().imul_imm_s(t, gi)
            } else {
                k.b.ins().imul_imm_s(n, gi)
            };
            let coeffs: Vec<Value> = (0..gk)
                .map(|i| Ok(k.load_off(BufId::In(1), types::F32, cbase, as_i64(i)?, false)))
                .collect::<LResult<_>>()?;
            let row = k.b.ins().imul_imm_s(oc, ei);
            for_each_from(k, &[e], &rows, &[row, row], true, |k, at, lanes| {
                let mut acc = k.fconst(lanes, 0.0);
                for (i, &c) in coeffs.iter().enumerate() {
                    let ty = super::kernel::f32_type(lanes);
                    let b = k.load_off(BufId::In(2), ty, at[0].idx, as_i64(i)? * oi * ei, true);
                    let cv = k.splat(lanes, c);
                    acc = k.b.ins().fma(cv, b, acc);
                }
                k.store(BufId::Scratch, at[1].idx, acc);
                Ok(())
            })?;
            let mut b = match op.bias_index() {
                Some(i) => k.load(BufId::In(i), types::F32, oc),
                None => k.fconst(1, 0.0),
            };
            if let Some(bb) = op.bias_bank_index() {
                for (i, &c) in coeffs.iter().enumerate() {
                    let v = k.load_off(BufId::In(bb), types::F32, oc, as_i64(i)? * oi, true);
                    b = k.b.ins().fma(c, v, b);
                }
            }
            k.store_off(BufId::Scratch, oc, oi * ei, b);
            Ok(())
        })?;
        conv_image(k, &geo, n)
    })
}
