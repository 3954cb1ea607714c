//! Add, Sub, Mul, Div, Pow (two operands, numpy broadcasting) and variadic Max, Min → IR
//! `binary`. Pow with an integer exponent tensor on a float base is cast to f32 first; other
//! mixed dtypes are rejected.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{Binary, BinaryKind, Cast};
use dync_ir::{DType, NodeId, Op};

fn kind(op_type: &str) -> Result<BinaryKind, NodeError> {
    Ok(match op_type {
        "Add" => BinaryKind::Add,
        "Sub" => BinaryKind::Sub,
        "Mul" => BinaryKind::Mul,
        "Div" => BinaryKind::Div,
        "Pow" => BinaryKind::Pow,
        "Max" => BinaryKind::Max,
        "Min" => BinaryKind::Min,
        other => invalid!("{other} is not a binary op"),
    })
}

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(2, 2)?;
    let k = kind(&n.op_type)?;
    let (a, mut b) = (ins.get(0)?, ins.get(1)?);
    if k == BinaryKind::Pow && cx.ty(a).dtype == DType::F32 && cx.ty(b).dtype.is_int() {
        b = cx.add(Op::Cast(Cast { to: DType::F32 }), &[b])?;
    }
    Ok(vec![cx.add(Op::Binary(Binary { kind: k }), &[a, b])?])
}

/// Max and Min take one or more operands; fold them pairwise left to right.
pub fn import_variadic(
    cx: &mut Ctx,
    n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    let k = kind(&n.op_type)?;
    let all = ins.present();
    let Some((&first, rest)) = all.split_first() else {
        invalid!("needs at least one input")
    };
    let mut acc = first;
    for &x in rest {
        acc = cx.add(Op::Binary(Binary { kind: k }), &[acc, x])?;
    }
    Ok(vec![acc])
}
