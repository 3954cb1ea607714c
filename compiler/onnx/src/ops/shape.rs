//! Shape (with opset-15 `start`/`end`) → an i64 constant: every shape in the IR is static.

use crate::import::{Ctx, Operands};
use crate::node::{Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::{NodeId, Tensor};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let shape = cx.ty(ins.get(0)?).shape.clone();
    let a = Attrs::new(n);
    let r = shape.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(a.int_or("start", 0)?);
    let end = clamp(a.int_or("end", r)?);
    let dims: Vec<i64> = shape[start..end.max(start)]
        .iter()
        .map(|&d| d as i64)
        .collect();
    Ok(vec![cx.constant(Tensor::from_i64([dims.len()], dims)?)])
}
