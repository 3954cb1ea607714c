//! `simplify_reshapes`: removes layout no-ops, so that the batch-as-groups reshapes and
//! transposes left around a recognized `dyn_conv` vanish and a BatchNormalization after it reads
//! it directly (for `fold_bn`).
//!
//! Rewrites, repeated until none applies:
//! - a `transpose` that keeps the order of every dim of extent > 1 moves no data: it becomes a
//!   `reshape` to its result shape;
//! - a `reshape` of a `reshape` reads the inner one's operand;
//! - a `reshape` to its operand's own shape is replaced by the operand.
//!
//! Needs nothing before it; values keep their types, so the graph stays verified.

use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::Reshape;
use dync_ir::{Graph, NodeId, Op};

pub struct SimplifyReshapes;

/// Whether `perm` applied to `shape` keeps the dims of extent > 1 in order.
pub(super) fn moves_no_data(perm: &[usize], shape: &[usize]) -> bool {
    let moved: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
    moved.windows(2).all(|w| w[0] < w[1])
}

impl Pass for SimplifyReshapes {
    fn name(&self) -> &'static str {
        "simplify_reshapes"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        let mut changed = false;
        loop {
            let order = super::topo_order(g, "simplify_reshapes")?;
            let mut round = false;
            for n in order {
                round |= simplify(g, n)?;
            }
            if !round {
                return Ok(changed);
            }
            changed = true;
        }
    }
}

fn is_used(g: &Graph, n: NodeId) -> bool {
    !g.users(n).is_empty() || super::is_output(g, n)
}

fn simplify(g: &mut Graph, n: NodeId) -> Result<bool, PassError> {
    match g.node(n).op.clone() {
        Op::Transpose(t) => {
            let x = g.operands(n)[0];
            if !moves_no_data(&t.perm, &g.ty(x).shape) || !is_used(g, n) {
                return Ok(false);
            }
            let shape = g.ty(n).shape.clone();
            let origin = g.node(n).origin.clone();
            let r = g
                .add(Op::Reshape(Reshape { shape }), &[x], origin.clone())
                .map_err(|e| PassError::Rewrite {
                    pass: "simplify_reshapes",
                    origin: origin.unwrap_or_default(),
                    message: e.to_string(),
                })?;
            g.replace_uses(n, r);
            Ok(true)
        }
        Op::Reshape(_) => {
            let mut changed = false;
            let mut x = g.operands(n)[0];
            if let Op::Reshape(_) = g.node(x).op {
                x = g.operands(x)[0];
                g.set_operand(n, 0, x);
                changed = true;
            }
            // An output that would name a graph input directly stays a reshape.
            let input_as_output = matches!(g.node(x).op, Op::Input(_)) && super::is_output(g, n);
            if is_used(g, n) && !input_as_output && g.ty(x).shape == g.ty(n).shape {
                g.replace_uses(n, x);
                changed = true;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_of_unit_dims_move_no_data() {
        assert!(moves_no_data(&[1, 0, 2, 3], &[1, 8, 4, 4]));
        assert!(!moves_no_data(&[1, 0, 2, 3], &[2, 8, 4, 4]));
        assert!(moves_no_data(&[0, 2, 1], &[5, 1, 3]));
    }
}
