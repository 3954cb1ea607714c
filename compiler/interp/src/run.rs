//! Graph execution: binds the graph inputs, evaluates the nodes the outputs depend on in
//! topological order with [`eval`], and frees each intermediate tensor as soon as its last
//! user has run (graph inputs and constants are borrowed, never copied).
//!
//! Rejects (as [`InterpError`]) a wrong number of inputs, an input whose dtype or shape differs
//! from the declared one, a `const` without data, cycles, outputs naming missing nodes, and
//! every evaluation error, naming the node.

use crate::error::{EvalError, InterpError};
use crate::eval;
use dync_ir::{Graph, NodeId, Op, Tensor};
use std::borrow::Cow;
use std::collections::HashSet;

/// Evaluates `g` on `inputs` (in `g.inputs` order); returns the outputs in `g.outputs` order.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    if inputs.len() != g.inputs.len() {
        return Err(InterpError::InputCount {
            expected: g.inputs.len(),
            got: inputs.len(),
        });
    }
    let bound = g.node_ids().map(|id| id.index() + 1).max().unwrap_or(0);
    let mut values: Vec<Option<Cow<'_, Tensor>>> = vec![None; bound];
    for ((name, id), t) in g.inputs.iter().zip(inputs) {
        if !g.contains(*id) {
            return Err(InterpError::Dangling {
                what: "input",
                name: name.clone(),
                value: id.index(),
            });
        }
        let declared = g.ty(*id);
        if t.dtype() != declared.dtype || t.shape() != declared.shape.as_slice() {
            return Err(InterpError::Input {
                name: name.clone(),
                message: format!("expected {declared}, got {}", t.ty()),
            });
        }
        values[id.index()] = Some(Cow::Borrowed(t));
    }
    for (name, id) in &g.outputs {
        if !g.contains(*id) {
            return Err(InterpError::Dangling {
                what: "output",
                name: name.clone(),
                value: id.index(),
            });
        }
    }
    let order = g.topo_order().map_err(|n| InterpError::Cycle(n.index()))?;
    let live = live_nodes(g);
    // Uses of each value still to come: by live nodes, plus one that never ends for outputs.
    let mut pending = vec![0usize; bound];
    for &id in &order {
        if live.contains(&id) {
            for operand in g.operands(id) {
                pending[operand.index()] += 1;
            }
        }
    }
    for (_, id) in &g.outputs {
        pending[id.index()] += 1;
    }
    for id in order.into_iter().filter(|id| live.contains(id)) {
        let node = g.node(id);
        let value = id.index();
        match &node.op {
            Op::Input(_) => {
                if values[value].is_none() {
                    return Err(InterpError::UndeclaredInput(value));
                }
            }
            Op::Const(c) => {
                let t = c.value.as_deref().ok_or_else(|| InterpError::MissingData {
                    value,
                    origin: node.origin.clone(),
                })?;
                if t.ty() != node.ty {
                    let source = EvalError::TypeMismatch {
                        inferred: t.ty(),
                        declared: node.ty.clone(),
                    };
                    return Err(node_error(g, id, source));
                }
                values[value] = Some(Cow::Borrowed(t));
            }
            op => {
                let operands = g.operands(id);
                let args = operands
                    .iter()
                    .enumerate()
                    .map(|(port, o)| {
                        values[o.index()]
                            .as_deref()
                            .ok_or(EvalError::MissingOperand(port))
                    })
                    .collect::<Result<Vec<&Tensor>, _>>()
                    .map_err(|e| node_error(g, id, e))?;
                let result = eval(op, &args, &node.ty).map_err(|e| node_error(g, id, e))?;
                values[value] = Some(Cow::Owned(result));
                for o in operands {
                    let p = &mut pending[o.index()];
                    *p -= 1;
                    if *p == 0 {
                        values[o.index()] = None;
                    }
                }
            }
        }
    }
    // Move each output out on its last mention, copying only outputs named twice.
    let mut outputs = Vec::with_capacity(g.outputs.len());
    for (i, (name, id)) in g.outputs.iter().enumerate() {
        let later = g.outputs[i + 1..].iter().any(|(_, o)| o == id);
        let slot = &mut values[id.index()];
        let t = if later { slot.clone() } else { slot.take() };
        let t = t.ok_or_else(|| InterpError::Dangling {
            what: "output",
            name: name.clone(),
            value: id.index(),
        })?;
        outputs.push(t.into_owned());
    }
    Ok(outputs)
}

fn node_error(g: &Graph, id: NodeId, source: EvalError) -> InterpError {
    let node = g.node(id);
    InterpError::Node {
        value: id.index(),
        op: node.op.name(),
        origin: node.origin.clone(),
        source,
    }
}

/// The nodes some graph output depends on.
fn live_nodes(g: &Graph) -> HashSet<NodeId> {
    let mut live = HashSet::new();
    let mut stack: Vec<NodeId> = g.outputs.iter().map(|(_, o)| *o).collect();
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(g.operands(n));
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use dync_ir::ops::Const;
    use dync_ir::ops::{Binary, BinaryKind, Gather, Reduce, ReduceKind, Unary, UnaryKind};
    use dync_ir::TensorType;

    fn op_add() -> Op {
        Op::Binary(Binary {
            kind: BinaryKind::Add,
        })
    }

    /// y = relu(x + b), z = sum(y) over axis 1; outputs (z, y).
    fn small_graph() -> Graph {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([2, 2]));
        let b = g.add_const(f32t(&[2], &[1., -10.]), Some("bias".into()));
        let s = g.add(op_add(), &[x, b], Some("add".into())).unwrap();
        let y = g
            .add(
                Op::Unary(Unary {
                    kind: UnaryKind::Relu,
                }),
                &[s],
                Some("relu".into()),
            )
            .unwrap();
        let z = g
            .add(
                Op::Reduce(Reduce {
                    kind: ReduceKind::Sum,
                    axes: vec![1],
                    keepdims: false,
                }),
                &[y],
                None,
            )
            .unwrap();
        g.set_output("z", z);
        g.set_output("y", y);
        g
    }

    #[test]
    fn evaluates_outputs_in_order() {
        let out = run(&small_graph(), &[f32t(&[2, 2], &[1., 20., -5., 3.])]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(f32s(&out[1]), [2., 10., 0., 0.]);
        assert_eq!(f32s(&out[0]), [12., 0.]);
    }

    #[test]
    fn rejects_wrong_inputs_by_name() {
        let g = small_graph();
        let err = run(&g, &[]).unwrap_err();
        assert_eq!(
            err,
            InterpError::InputCount {
                expected: 1,
                got: 0
            }
        );
        let err = run(&g, &[f32t(&[4], &[0.; 4])]).unwrap_err();
        assert_eq!(err.to_string(), "input `x`: expected f32[2,2], got f32[4]");
        let err = run(&g, &[i64t(&[2, 2], &[0; 4])]).unwrap_err();
        assert!(matches!(err, InterpError::Input { name, .. } if name == "x"));
    }

    #[test]
    fn evaluation_errors_name_the_node() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([3]));
        let idx = g.add_const(i64t(&[1], &[3]), None);
        let y = g
            .add(
                Op::Gather(Gather { axis: 0 }),
                &[x, idx],
                Some("pick".into()),
            )
            .unwrap();
        g.set_output("y", y);
        let err = run(&g, &[f32t(&[3], &[1., 2., 3.])]).unwrap_err();
        let InterpError::Node {
            value,
            op,
            origin,
            source,
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(
            (*value, *op, origin.as_deref()),
            (y.index(), "gather", Some("pick"))
        );
        assert_eq!(
            *source,
            EvalError::IndexOutOfRange {
                index: 3,
                axis: 0,
                extent: 3
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "%{} (gather from \"pick\"): index 3 is out of range for axis 0 of extent 3",
                y.index()
            )
        );
    }

    #[test]
    fn const_without_data_is_reported() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([2]));
        let w = g.add_const(f32t(&[2], &[1., 2.]), Some("w".into()));
        if let Op::Const(Const { value, .. }) = &mut g.node_mut(w).op {
            *value = None;
        }
        let y = g.add(op_add(), &[x, w], None).unwrap();
        g.set_output("y", y);
        let err = run(&g, &[f32t(&[2], &[0., 0.])]).unwrap_err();
        assert_eq!(
            err,
            InterpError::MissingData {
                value: w.index(),
                origin: Some("w".into())
            }
        );
    }

    #[test]
    fn declared_types_are_checked() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([2]));
        let y = g.add_typed(op_add(), &[x, x], TensorType::f32([3]), None);
        g.set_output("y", y);
        let err = run(&g, &[f32t(&[2], &[1., 2.])]).unwrap_err();
        assert!(
            matches!(
                err,
                InterpError::Node {
                    source: EvalError::TypeMismatch { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn dead_nodes_are_not_evaluated() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([3]));
        let idx = g.add_const(i64t(&[1], &[7]), None);
        // Out of range, but no output depends on it.
        g.add(Op::Gather(Gather { axis: 0 }), &[x, idx], None)
            .unwrap();
        g.set_output("x_again", x);
        let out = run(&g, &[f32t(&[3], &[1., 2., 3.])]).unwrap();
        assert_eq!(f32s(&out[0]), [1., 2., 3.]);
    }

    #[test]
    fn shared_values_and_repeated_outputs() {
        // d = (x + x) + (x + x) with the inner sum shared; d is output twice, c once.
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([2]));
        let c = g.add(op_add(), &[x, x], None).unwrap();
        let d = g.add(op_add(), &[c, c], None).unwrap();
        g.set_output("d1", d);
        g.set_output("c", c);
        g.set_output("d2", d);
        let out = run(&g, &[f32t(&[2], &[1., 2.])]).unwrap();
        assert_eq!(
            out.iter().map(f32s).collect::<Vec<_>>(),
            [vec![4., 8.], vec![2., 4.], vec![4., 8.]]
        );
    }
}
