//! MatMul → IR `matmul`; Gemm → IR `gemm` (opset < 11 requires C; 11+ makes it optional).

use crate::import::{Ctx, Operands};
use crate::node::{Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{Gemm, MatMul};
use dync_ir::{NodeId, Op};

pub fn import_matmul(
    cx: &mut Ctx,
    _n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(2, 2)?;
    Ok(vec![
        cx.add(Op::MatMul(MatMul), &[ins.get(0)?, ins.get(1)?])?
    ])
}

pub fn import_gemm(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(if cx.opset < 11 { 3 } else { 2 }, 3)?;
    let a = Attrs::new(n);
    let op = Op::Gemm(Gemm {
        alpha: a.float_or("alpha", 1.0)?,
        beta: a.float_or("beta", 1.0)?,
        trans_a: a.flag("transA", false)?,
        trans_b: a.flag("transB", false)?,
    });
    Ok(vec![cx.add(op, &ins.present())?])
}
