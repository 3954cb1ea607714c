//! Cast → IR `cast` to f32, i64, i32 or bool; other target types are unsupported.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, unsupported, Attrs, NodeError};
use crate::proto::NodeProto;
use crate::tensor::{dtype_from_onnx, type_name};
use dync_ir::ops::Cast;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let Some(to) = Attrs::new(n).int("to")? else {
        invalid!("attribute `to` is required")
    };
    let code = i32::try_from(to)
        .map_err(|_| NodeError::Invalid(format!("`to` {to} is not a data type")))?;
    let Ok(to) = dtype_from_onnx(code) else {
        unsupported!("cast to {}", type_name(code))
    };
    let x = ins.get(0)?;
    if cx.ty(x).dtype == to {
        return Ok(vec![x]);
    }
    Ok(vec![cx.add(Op::Cast(Cast { to }), &[x])?])
}
