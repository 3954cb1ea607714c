//! `gather`: y[a.., i.., b..] = data[a.., indices[i..], b..]. Every index is first checked
//! (negative ones count from the end; outside [−extent, extent) stops the kernel with
//! `IndexOutOfRange`, even when the result is empty, as the reference does); then each
//! selected row of `inner` elements is copied (4 lanes at a time for f32).

use super::kernel::{as_i64, clif_type, BufId, Kernel, LResult};
use super::nest::{for_each_from, View};
use crate::abi::Fault;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use dync_ir::ops::Gather;
use dync_ir::DType;

pub(crate) fn lower(k: &mut Kernel, op: &Gather) -> LResult {
    let xs = k.shape(BufId::In(0));
    let extent = xs[op.axis];
    let outer: usize = xs[..op.axis].iter().product();
    let inner: usize = xs[op.axis + 1..].iter().product();
    let n_idx: usize = k.shape(BufId::In(1)).iter().product();
    let ext = as_i64(extent)?;
    let idx_ty = clif_type(k.dtype(BufId::In(1)));
    // The normalized, range-checked index at position i of `indices`.
    let index = |k: &mut Kernel, i: Value| -> Value {
        let raw = k.load(BufId::In(1), idx_ty, i);
        let raw = if idx_ty == types::I64 {
            raw
        } else {
            k.b.ins().sextend(types::I64, raw)
        };
        let neg = k.b.ins().icmp_imm_s(IntCC::SignedLessThan, raw, 0);
        let wrapped = k.b.ins().iadd_imm_s(raw, ext);
        let j = k.b.ins().select(neg, wrapped, raw);
        // Unsigned compare: catches j < 0 (still negative after wrapping) and j >= extent.
        let bad =
            k.b.ins()
                .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, j, ext);
        k.fail_if(bad, Fault::IndexOutOfRange);
        j
    };
    k.loop_n(n_idx, |k, i| {
        index(k, i);
        Ok(())
    })?;
    if outer == 0 || inner == 0 {
        return Ok(());
    }
    let rows = [
        View {
            buf: BufId::In(0),
            offset: 0,
            strides: vec![1],
        },
        View {
            buf: BufId::Out,
            offset: 0,
            strides: vec![1],
        },
    ];
    let vector = k.dtype(BufId::Out) == DType::F32;
    let inner_i = as_i64(inner)?;
    k.loop_n(outer, |k, o| {
        k.loop_n(n_idx, |k, i| {
            let j = index(k, i);
            let src = k.b.ins().imul_imm_s(o, ext);
            let src = k.b.ins().iadd(src, j);
            let src = k.b.ins().imul_imm_s(src, inner_i);
            let dst = k.b.ins().imul_imm_s(o, as_i64(n_idx)?);
            let dst = k.b.ins().iadd(dst, i);
            let dst = k.b.ins().imul_imm_s(dst, inner_i);
            for_each_from(k, &[inner], &rows, &[src, dst], vector, |k, at, lanes| {
                let v = if lanes > 1 {
                    k.load_f32(BufId::In(0), at[0].idx, lanes, true)
                } else {
                    let ty = clif_type(k.dtype(BufId::In(0)));
                    k.load(BufId::In(0), ty, at[0].idx)
                };
                k.store(BufId::Out, at[1].idx, v);
                Ok(())
            })
        })
    })
}
