//! Reshape (constant shape; 0 copies the input dim unless `allowzero`, one -1 is inferred),
//! Flatten, Squeeze and Unsqueeze (axes as attribute before opset 13, as a constant input from
//! 13) → IR `reshape`, or nothing when the shape does not change.

use crate::import::{Ctx, Operands};
use crate::node::{invalid, norm_axis, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::Reshape;
use dync_ir::tensor::numel;
use dync_ir::{NodeId, Op};

fn reshape_to(cx: &mut Ctx, x: NodeId, shape: Vec<usize>) -> Result<NodeId, NodeError> {
    if cx.ty(x).shape == shape {
        return Ok(x);
    }
    cx.add(Op::Reshape(Reshape { shape }), &[x])
}

/// Resolves an ONNX Reshape target against the input shape.
pub fn resolve_shape(
    input: &[usize],
    target: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>, NodeError> {
    let total = numel(input)?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 => {
                if infer_at.replace(i).is_some() {
                    invalid!("shape {target:?} has more than one -1");
                }
                out.push(1);
            }
            0 if !allowzero => match input.get(i) {
                Some(&d) => out.push(d),
                None => invalid!(
                    "shape {target:?} copies dim {i} (0), but the input has rank {}",
                    input.len()
                ),
            },
            t if t >= 0 => out.push(t as usize),
            t => invalid!("shape {target:?} has invalid entry {t}"),
        }
    }
    if let Some(i) = infer_at {
        let known = numel(&out)?;
        if known == 0 || total % known != 0 {
            invalid!("cannot infer -1 in shape {target:?} for input {input:?}");
        }
        out[i] = total / known;
    }
    if numel(&out)? != total {
        invalid!("cannot reshape {input:?} to {target:?}: element counts differ");
    }
    Ok(out)
}

pub fn import_reshape(
    cx: &mut Ctx,
    n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(2, 2)?;
    let x = ins.get(0)?;
    let target = ins.ints(cx, 1, "shape")?.unwrap_or_default();
    let allowzero = Attrs::new(n).flag("allowzero", false)?;
    let shape = resolve_shape(&cx.ty(x).shape, &target, allowzero)?;
    Ok(vec![reshape_to(cx, x, shape)?])
}

pub fn import_flatten(
    cx: &mut Ctx,
    n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let x = ins.get(0)?;
    let shape = cx.ty(x).shape.clone();
    let axis = Attrs::new(n).int_or("axis", 1)?;
    // Flatten's axis may equal the rank (everything in the first dim).
    let axis = if axis == shape.len() as i64 {
        shape.len()
    } else {
        norm_axis(axis, shape.len(), "axis")?
    };
    let out = vec![numel(&shape[..axis])?, numel(&shape[axis..])?];
    Ok(vec![reshape_to(cx, x, out)?])
}

fn axes(cx: &Ctx, n: &NodeProto, ins: &Operands) -> Result<Option<Vec<i64>>, NodeError> {
    if cx.opset >= 13 {
        ins.expect(1, 2)?;
        ins.ints(cx, 1, "axes")
    } else {
        ins.expect(1, 1)?;
        Attrs::new(n).ints("axes")
    }
}

pub fn import_squeeze(
    cx: &mut Ctx,
    n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    let x = ins.get(0)?;
    let shape = cx.ty(x).shape.clone();
    let drop: Vec<usize> = match axes(cx, n, ins)? {
        None => (0..shape.len()).filter(|&i| shape[i] == 1).collect(),
        Some(ax) => {
            let mut v = Vec::new();
            for a in ax {
                let a = norm_axis(a, shape.len(), "axes")?;
                if shape[a] != 1 {
                    invalid!("cannot squeeze axis {a} of extent {}", shape[a]);
                }
                v.push(a);
            }
            v
        }
    };
    let out = shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, &d)| d)
        .collect();
    Ok(vec![reshape_to(cx, x, out)?])
}

pub fn import_unsqueeze(
    cx: &mut Ctx,
    n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    let x = ins.get(0)?;
    let shape = cx.ty(x).shape.clone();
    let Some(ax) = axes(cx, n, ins)? else {
        invalid!("axes are required")
    };
    let rank = shape.len() + ax.len();
    let mut ones = ax
        .iter()
        .map(|&a| norm_axis(a, rank, "axes"))
        .collect::<Result<Vec<_>, _>>()?;
    ones.sort_unstable();
    if ones.windows(2).any(|w| w[0] == w[1]) {
        invalid!("axes {ax:?} repeat an axis");
    }
    let mut rest = shape.iter();
    let out = (0..rank)
        .map(|i| {
            if ones.contains(&i) {
                1
            } else {
                rest.next().copied().unwrap_or(1)
            }
        })
        .collect();
    Ok(vec![reshape_to(cx, x, out)?])
}
