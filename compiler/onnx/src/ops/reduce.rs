//! ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd → IR `reduce`. Axes come from the
//! attribute (ReduceSum < 13, others < 18) or from a constant input (later opsets). No axes means
//! all axes, unless `noop_with_empty_axes=1` (then the op is the identity).

use crate::import::{Ctx, Operands};
use crate::node::{invalid, norm_axis, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{Reduce, ReduceKind};
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let a = Attrs::new(n);
    let (kind, axes_input_from) = match n.op_type.as_str() {
        "ReduceMean" => (ReduceKind::Mean, 18),
        "ReduceSum" => (ReduceKind::Sum, 13),
        "ReduceMax" => (ReduceKind::Max, 18),
        "ReduceMin" => (ReduceKind::Min, 18),
        "ReduceProd" => (ReduceKind::Prod, 18),
        other => invalid!("{other} is not a reduction"),
    };
    let x = ins.get(0)?;
    let rank = cx.ty(x).rank();
    let axes = if cx.opset >= axes_input_from {
        ins.expect(1, 2)?;
        ins.ints(cx, 1, "axes")?
    } else {
        ins.expect(1, 1)?;
        a.ints("axes")?
    };
    let axes = match axes {
        Some(v) if !v.is_empty() => v,
        _ if a.flag("noop_with_empty_axes", false)? => return Ok(vec![x]),
        _ => (0..rank as i64).collect(),
    };
    let mut norm = axes
        .iter()
        .map(|&ax| norm_axis(ax, rank, "axes"))
        .collect::<Result<Vec<_>, _>>()?;
    norm.sort_unstable();
    if norm.windows(2).any(|w| w[0] == w[1]) {
        invalid!("axes {axes:?} repeat an axis");
    }
    let op = Op::Reduce(Reduce {
        kind,
        axes: norm,
        keepdims: a.flag("keepdims", true)?,
    });
    Ok(vec![cx.add(op, &[x])?])
}
