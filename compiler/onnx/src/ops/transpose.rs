//! Transpose → IR `transpose` (default perm reverses the dims; identity perms vanish).

use crate::import::{Ctx, Operands};
use crate::node::{to_dims, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::Transpose;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let x = ins.get(0)?;
    let rank = cx.ty(x).rank();
    let perm = match Attrs::new(n).ints("perm")? {
        Some(p) => to_dims(&p, "perm")?,
        None => (0..rank).rev().collect(),
    };
    if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == rank {
        return Ok(vec![x]);
    }
    Ok(vec![cx.add(Op::Transpose(Transpose { perm }), &[x])?])
}
