//! Concat → IR `concat` (negative axis normalized). Zero-sized operands are kept (they add
//! nothing), since IR concat accepts them.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, norm_axis, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::Concat;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let all = ins.present();
    let Some(&first) = all.first() else {
        invalid!("needs at least one input")
    };
    let Some(axis) = Attrs::new(n).int("axis")? else {
        invalid!("attribute `axis` is required")
    };
    let axis = norm_axis(axis, cx.ty(first).rank(), "axis")?;
    if all.len() == 1 {
        return Ok(vec![first]);
    }
    Ok(vec![cx.add(Op::Concat(Concat { axis }), &all)?])
}
