//! Split → one IR `slice` per output. Sizes from the `split` attribute (< 13) or a constant input
//! (13+); otherwise equal parts (opset 18 `num_outputs`: ceil-sized parts, the last smaller).

use crate::import::{Ctx, Operands};
use crate::node::{invalid, norm_axis, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::Slice;
use dync_ir::{NodeId, Op};

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    let a = Attrs::new(n);
    let x = ins.get(0)?;
    let shape = cx.ty(x).shape.clone();
    let axis = norm_axis(a.int_or("axis", 0)?, shape.len(), "axis")?;
    let dim = shape[axis];
    let outputs = n.output.len();
    if outputs == 0 {
        invalid!("has no outputs");
    }
    let sizes: Vec<usize> = match if cx.opset >= 13 {
        ins.expect(1, 2)?;
        ins.ints(cx, 1, "split")?
    } else {
        ins.expect(1, 1)?;
        a.ints("split")?
    } {
        Some(s) => crate::node::to_dims(&s, "split")?,
        None => {
            let parts = match a.int("num_outputs")? {
                Some(k) if k as usize != outputs => {
                    invalid!("num_outputs {k} but {outputs} outputs")
                }
                _ => outputs,
            };
            let chunk = dim.div_ceil(parts);
            (0..parts)
                .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                .collect()
        }
    };
    if sizes.len() != outputs || sizes.iter().sum::<usize>() != dim {
        invalid!("split sizes {sizes:?} do not partition extent {dim} into {outputs} outputs");
    }
    let mut out = Vec::with_capacity(outputs);
    let mut begin = 0usize;
    for s in sizes {
        let mut op = Slice {
            starts: vec![0; shape.len()],
            ends: shape.iter().map(|&d| d as i64).collect(),
            steps: vec![1; shape.len()],
        };
        op.starts[axis] = begin as i64;
        op.ends[axis] = (begin + s) as i64;
        out.push(cx.add(Op::Slice(op), &[x])?);
        begin += s;
    }
    Ok(out)
}
