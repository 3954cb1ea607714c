//! Softmax → IR `softmax`. Opset 13+ normalizes along `axis` (default -1). Before 13 (default
//! axis 1) the input is coerced to 2-D [prod(dims < axis), prod(dims >= axis)] and normalized
//! along the second dim: imported as reshape → softmax → reshape unless axis is the last dim.

use crate::import::{Ctx, Operands};
use crate::node::{norm_axis, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{Reshape, Softmax};
use dync_ir::tensor::numel;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let x = ins.get(0)?;
    let shape = cx.ty(x).shape.clone();
    let legacy = cx.opset < 13;
    let axis = Attrs::new(n).int_or("axis", if legacy { 1 } else { -1 })?;
    let axis = norm_axis(axis, shape.len(), "axis")?;
    if !legacy || axis + 1 == shape.len() {
        return Ok(vec![cx.add(Op::Softmax(Softmax { axis }), &[x])?]);
    }
    let flat = vec![numel(&shape[..axis])?, numel(&shape[axis..])?];
    let r = cx.add(Op::Reshape(Reshape { shape: flat }), &[x])?;
    let s = cx.add(Op::Softmax(Softmax { axis: 1 }), &[r])?;
    Ok(vec![cx.add(Op::Reshape(Reshape { shape }), &[s])?])
}
