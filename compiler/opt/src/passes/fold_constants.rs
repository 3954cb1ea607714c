//! `fold_constants`: evaluates every op whose operands are all constants with the reference
//! interpreter and replaces it by a `const`. Graph outputs that become constants stay outputs.
//! Rejects nothing; an evaluation error (e.g. an out-of-range constant gather index) is reported
//! at the node, since the graph would fail at run time anyway.

use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::{Graph, Op, Tensor};

pub struct FoldConstants;

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "fold_constants"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        let order = super::topo_order(g, "fold_constants")?;
        let mut changed = false;
        for id in order {
            if matches!(g.node(id).op, Op::Input(_) | Op::Const(_)) {
                continue;
            }
            let operands = g.operands(id);
            if operands.is_empty() {
                continue;
            }
            let values: Option<Vec<&Tensor>> = operands.iter().map(|&o| g.const_value(o)).collect();
            let Some(values) = values else { continue };
            let node = g.node(id);
            let value =
                dync_interp::eval(&node.op, &values, &node.ty).map_err(|e| PassError::Rewrite {
                    pass: "fold_constants",
                    origin: node.origin.clone().unwrap_or_default(),
                    message: e.to_string(),
                })?;
            let origin = node.origin.clone();
            let c = g.add_const(value, origin);
            g.replace_uses(id, c);
            changed = true;
        }
        Ok(changed)
    }
}
