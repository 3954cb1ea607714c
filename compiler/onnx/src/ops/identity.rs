//! Identity and Dropout (inference: identity) map their output to their input. Dropout's mask
//! output is not provided; training mode (a constant true `training_mode`) is unsupported.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, unsupported, NodeError};
use crate::proto::NodeProto;
use dync_ir::{NodeId, TensorData};

pub fn import(_cx: &mut Ctx, _n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    Ok(vec![ins.get(0)?])
}

pub fn import_dropout(
    cx: &mut Ctx,
    _n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 3)?;
    if let Some(id) = ins.opt(2) {
        match cx.const_of(id).map(|t| t.data()) {
            Some(TensorData::Bool(v)) if v.len() == 1 && !v[0] => {}
            Some(TensorData::Bool(v)) if v.len() == 1 => unsupported!("Dropout in training mode"),
            Some(_) => invalid!("training_mode must be a bool scalar"),
            None => unsupported!("Dropout with a training_mode computed at run time"),
        }
    }
    Ok(vec![ins.get(0)?])
}
