//! Einsum → IR `einsum` (equation kept verbatim; checked against the operand shapes).

use crate::import::{Ctx, Operands};
use crate::node::{invalid, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::Einsum;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let Some(equation) = Attrs::new(n).string("equation")? else {
        invalid!("attribute `equation` is required")
    };
    Ok(vec![
        cx.add(Op::Einsum(Einsum { equation }), &ins.present())?
    ])
}
