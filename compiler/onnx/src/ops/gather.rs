//! Gather → IR `gather` (negative axis normalized; indices may be computed at run time).

use crate::import::{Ctx, Operands};
use crate::node::{norm_axis, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::Gather;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(2, 2)?;
    let (x, idx) = (ins.get(0)?, ins.get(1)?);
    let axis = norm_axis(Attrs::new(n).int_or("axis", 0)?, cx.ty(x).rank(), "axis")?;
    Ok(vec![cx.add(Op::Gather(Gather { axis }), &[x, idx])?])
}
