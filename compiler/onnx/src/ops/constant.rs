//! Constant (every `value*` form except strings and sparse tensors) and ConstantOfShape (shape
//! input must be constant; `value` defaults to f32 0) → IR constants.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, unsupported, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::{NodeId, Tensor, TensorData};

pub fn import_constant(
    cx: &mut Ctx,
    n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(0, 0)?;
    let a = Attrs::new(n);
    if n.attribute.len() != 1 {
        invalid!(
            "needs exactly one value attribute, got {}",
            n.attribute.len()
        );
    }
    let t = if let Some(t) = a.tensor("value")? {
        cx.tensor(t)?
    } else if let Some(v) = a.float("value_float")? {
        Tensor::scalar_f32(v)
    } else if let Some(v) = a.floats("value_floats")? {
        Tensor::from_f32([v.len()], v)?
    } else if let Some(v) = a.int("value_int")? {
        Tensor::from_i64(Vec::<usize>::new(), vec![v])?
    } else if let Some(v) = a.ints("value_ints")? {
        Tensor::from_i64([v.len()], v)?
    } else {
        unsupported!(
            "Constant attribute `{}` (string or sparse constants)",
            n.attribute[0].name
        )
    };
    Ok(vec![cx.constant(t)])
}

pub fn import_constant_of_shape(
    cx: &mut Ctx,
    n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let dims = ins.ints(cx, 0, "shape")?.unwrap_or_default();
    let shape = crate::node::to_dims(&dims, "shape")?;
    let fill = match Attrs::new(n).tensor("value")? {
        Some(t) => cx.tensor(t)?,
        None => Tensor::scalar_f32(0.0),
    };
    if fill.len() != 1 {
        invalid!("`value` must hold one element, got {}", fill.len());
    }
    let n_el = dync_ir::tensor::numel(&shape)?;
    cx.check_alloc(n_el, fill.dtype())?;
    let data = match fill.data() {
        TensorData::F32(v) => TensorData::F32(vec![v[0]; n_el]),
        TensorData::I64(v) => TensorData::I64(vec![v[0]; n_el]),
        TensorData::I32(v) => TensorData::I32(vec![v[0]; n_el]),
        TensorData::Bool(v) => TensorData::Bool(vec![v[0]; n_el]),
    };
    Ok(vec![cx.constant(Tensor::new(shape, data)?)])
}
