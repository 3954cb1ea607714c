//! Slice → IR `slice`. Opset < 10: `starts`/`ends`/`axes` attributes; 10+: constant `starts`,
//! `ends`, optional `axes` and `steps` inputs. Indices are clamped per the ONNX spec here, so the
//! IR op holds only in-range values.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, norm_axis, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::Slice;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let x = ins.get(0)?;
    let shape = cx.ty(x).shape.clone();
    let rank = shape.len();
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        ins.expect(1, 1)?;
        let a = Attrs::new(n);
        let (Some(s), Some(e)) = (a.ints("starts")?, a.ints("ends")?) else {
            invalid!("attributes `starts` and `ends` are required")
        };
        (s, e, a.ints("axes")?, None)
    } else {
        ins.expect(3, 5)?;
        (
            ins.ints(cx, 1, "starts")?.unwrap_or_default(),
            ins.ints(cx, 2, "ends")?.unwrap_or_default(),
            ins.ints(cx, 3, "axes")?,
            ins.ints(cx, 4, "steps")?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        invalid!("starts, ends, axes and steps must have equal lengths");
    }
    let mut op = Slice {
        starts: vec![0; rank],
        ends: shape.iter().map(|&d| d as i64).collect(),
        steps: vec![1; rank],
    };
    let mut seen = vec![false; rank];
    for k in 0..starts.len() {
        let ax = norm_axis(axes[k], rank, "axes")?;
        if std::mem::replace(&mut seen[ax], true) {
            invalid!("axes {axes:?} repeat axis {ax}");
        }
        let (s, e) = Slice::clamp(starts[k], ends[k], steps[k], shape[ax])?;
        op.starts[ax] = s;
        op.ends[ax] = e;
        op.steps[ax] = steps[k];
    }
    if (0..rank).all(|i| op.starts[i] == 0 && op.steps[i] == 1 && op.ends[i] == shape[i] as i64) {
        return Ok(vec![x]);
    }
    Ok(vec![cx.add(Op::Slice(op), &[x])?])
}
