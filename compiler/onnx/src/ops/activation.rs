//! Elementwise activations → IR `unary`: Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Clip,
//! Tanh, Exp, Log, Sqrt, Neg, Abs, Reciprocal, Erf. Clip (opset < 11: attributes; 11+: optional
//! `min`/`max` inputs, which must be constant scalars; absent bounds are ±inf).

use crate::import::{Ctx, Operands};
use crate::node::{invalid, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{Unary, UnaryKind};
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let a = Attrs::new(n);
    let kind = match n.op_type.as_str() {
        "Relu" => UnaryKind::Relu,
        "LeakyRelu" => UnaryKind::LeakyRelu {
            alpha: a.float_or("alpha", 0.01)?,
        },
        "Sigmoid" => UnaryKind::Sigmoid,
        "HardSigmoid" => UnaryKind::HardSigmoid {
            alpha: a.float_or("alpha", 0.2)?,
            beta: a.float_or("beta", 0.5)?,
        },
        "HardSwish" => UnaryKind::HardSwish,
        "Clip" => {
            ins.expect(1, 3)?;
            let bound = |i: usize, attr: &str, default: f32| -> Result<f32, NodeError> {
                if cx.opset < 11 {
                    return a.float_or(attr, default);
                }
                match ins.floats(cx, i, attr)? {
                    None => Ok(default),
                    Some(v) if v.len() == 1 => Ok(v[0]),
                    Some(v) => invalid!("`{attr}` must be a scalar, got {} values", v.len()),
                }
            };
            UnaryKind::Clip {
                min: bound(1, "min", f32::NEG_INFINITY)?,
                max: bound(2, "max", f32::INFINITY)?,
            }
        }
        "Tanh" => UnaryKind::Tanh,
        "Exp" => UnaryKind::Exp,
        "Log" => UnaryKind::Log,
        "Sqrt" => UnaryKind::Sqrt,
        "Neg" => UnaryKind::Neg,
        "Abs" => UnaryKind::Abs,
        "Reciprocal" => UnaryKind::Reciprocal,
        "Erf" => UnaryKind::Erf,
        other => invalid!("{other} is not an activation"),
    };
    if n.op_type != "Clip" {
        ins.expect(1, 1)?;
    }
    Ok(vec![cx.add(Op::Unary(Unary { kind }), &[ins.get(0)?])?])
}
