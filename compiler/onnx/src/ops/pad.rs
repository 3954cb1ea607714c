//! Pad → IR `pad`. Opset < 11: `pads`/`value` attributes; 11+: `pads`, optional
//! `constant_value` and (18+) `axes` inputs, all constant. Modes constant, reflect, edge; wrap is
//! unsupported.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, norm_axis, unsupported, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{Pad, PadMode};
use dync_ir::{NodeId, Op, TensorData};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let a = Attrs::new(n);
    let x = ins.get(0)?;
    let rank = cx.ty(x).rank();
    let mode = match a.string_or("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        other => unsupported!("pad mode {other:?}"),
    };
    let (raw, value, axes) = if cx.opset < 11 {
        ins.expect(1, 1)?;
        let Some(p) = a.ints("pads")? else {
            invalid!("attribute `pads` is required")
        };
        (p, a.float_or("value", 0.0)?, None)
    } else {
        ins.expect(2, 4)?;
        let p = ins.ints(cx, 1, "pads")?.unwrap_or_default();
        let value = match ins.opt(2) {
            None => 0.0,
            Some(id) => match cx.const_of(id).map(|t| t.data()) {
                Some(TensorData::F32(v)) if v.len() == 1 => v[0],
                Some(TensorData::I64(v)) if v.len() == 1 => v[0] as f32,
                Some(_) => invalid!("constant_value must be a scalar of the input's type"),
                None => unsupported!("constant_value computed at run time"),
            },
        };
        (p, value, ins.ints(cx, 3, "axes")?)
    };
    let pads = match axes {
        None => raw,
        Some(axes) => {
            if raw.len() != 2 * axes.len() {
                invalid!("pads has {} entries for {} axes", raw.len(), axes.len());
            }
            let mut full = vec![0i64; 2 * rank];
            for (k, &ax) in axes.iter().enumerate() {
                let ax = norm_axis(ax, rank, "axes")?;
                full[ax] = raw[k];
                full[ax + rank] = raw[k + axes.len()];
            }
            full
        }
    };
    if pads.iter().all(|&p| p == 0) {
        return Ok(vec![x]);
    }
    Ok(vec![cx.add(Op::Pad(Pad { pads, mode, value }), &[x])?])
}
