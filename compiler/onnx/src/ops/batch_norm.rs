//! BatchNormalization (inference) → IR `batch_norm`. Rejects training mode (`training_mode=1`,
//! or opset < 7 `is_test=0`) and uses of the running-statistics outputs.

use crate::import::{Ctx, Operands};
use crate::node::{unsupported, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::BatchNorm;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let a = Attrs::new(n);
    ins.expect(5, 5)?;
    if a.flag("training_mode", false)? {
        unsupported!("training_mode=1");
    }
    let operands = (0..5).map(|i| ins.get(i)).collect::<Result<Vec<_>, _>>()?;
    let op = Op::BatchNorm(BatchNorm {
        epsilon: a.float_or("epsilon", 1e-5)?,
    });
    Ok(vec![cx.add(op, &operands)?])
}
