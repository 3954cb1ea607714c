//! Expand → IR `expand`. The shape input must be constant; ONNX's bidirectional rule (a 1 in
//! `shape` keeps the input's dim) is resolved here.

use crate::import::{Ctx, Operands};
use crate::node::{to_dims, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{broadcast_shapes, Expand};
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, _n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(2, 2)?;
    let x = ins.get(0)?;
    let shape = to_dims(&ins.ints(cx, 1, "shape")?.unwrap_or_default(), "shape")?;
    let out = broadcast_shapes(&cx.ty(x).shape, &shape)?;
    if out == cx.ty(x).shape {
        return Ok(vec![x]);
    }
    Ok(vec![cx.add(Op::Expand(Expand { shape: out }), &[x])?])
}
