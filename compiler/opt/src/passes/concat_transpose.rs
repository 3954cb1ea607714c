//! `concat_transpose`: a `transpose` of a `concat` becomes a `concat` in the transposed order,
//! when transposing each operand moves no data. The transpose's copy of the whole tensor goes;
//! the concat writes every operand straight to its place in the transposed result.
//!
//! This is ShuffleNet's channel shuffle: `concat(a, b)` along the channels, a `reshape` that
//! splits the channels into (2, C), a `transpose` that swaps those two dims, a `reshape` back.
//! It becomes a `concat` of `a` and `b` (each viewed as [N, C, 1, H, W]) along the new unit
//! dim, interleaving their channels, then the same final `reshape`.
//!
//! Matches `transpose(x, perm)` where x is either
//! - `concat(x_1..x_n, axis a)`: part i is x_i;
//! - or a `reshape` of such a concat that splits dim a into (n, m), every x_i having extent m
//!   along a: part i is x_i viewed with that dim split into (1, m);
//!
//! and every part, transposed by `perm`, keeps its dims of extent > 1 in order (it moves no
//! data, so it is a `reshape`). The concat (and the reshape) must have no other use and not be
//! graph outputs, so no copy is added. The result is `concat` along perm⁻¹(a) (the position of
//! the split-off dim) of the parts reshaped to the transposed shape. Exact: the same elements
//! land at the same places. Needs nothing before it; leaves the old nodes dead for DCE.

use super::simplify_reshapes::moves_no_data;
use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::{Concat, Reshape};
use dync_ir::{Graph, NodeId, Op};

pub struct ConcatTranspose;

const NAME: &str = "concat_transpose";

impl Pass for ConcatTranspose {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        let mut changed = false;
        for n in super::topo_order(g, NAME)? {
            changed |= rewrite(g, n)?;
        }
        Ok(changed)
    }
}

/// Whether `n` is read only by `user` (once) and is not a graph output.
fn private_to(g: &Graph, n: NodeId, user: NodeId) -> bool {
    matches!(g.users(n).as_slice(), [(u, _)] if *u == user) && !super::is_output(g, n)
}

/// The concat that `x` is (or that `x` reshapes with its axis split into (operands, extent)),
/// its axis in `x`'s shape, and each operand's shape as a part of `x`.
fn parts(g: &Graph, x: NodeId) -> Option<(NodeId, usize, Vec<Vec<usize>>)> {
    if let Op::Concat(c) = g.node(x).op {
        let shapes = g
            .operands(x)
            .iter()
            .map(|&o| g.ty(o).shape.clone())
            .collect();
        return Some((x, c.axis, shapes));
    }
    let Op::Reshape(_) = g.node(x).op else {
        return None;
    };
    let cat = g.operands(x)[0];
    let Op::Concat(c) = g.node(cat).op else {
        return None;
    };
    if !private_to(g, cat, x) {
        return None;
    }
    let ops = g.operands(cat);
    let m = g.ty(ops[0]).shape[c.axis];
    if ops.iter().any(|&o| g.ty(o).shape[c.axis] != m) {
        return None;
    }
    let cs = &g.ty(cat).shape;
    let split: Vec<usize> = [&cs[..c.axis], &[ops.len(), m], &cs[c.axis + 1..]].concat();
    if g.ty(x).shape != split {
        return None;
    }
    let part: Vec<usize> = [&cs[..c.axis], &[1, m], &cs[c.axis + 1..]].concat();
    Some((cat, c.axis, vec![part; ops.len()]))
}

fn rewrite(g: &mut Graph, n: NodeId) -> Result<bool, PassError> {
    let Op::Transpose(t) = &g.node(n).op else {
        return Ok(false);
    };
    let perm = t.perm.clone();
    let x = g.operands(n)[0];
    if !private_to(g, x, n) {
        return Ok(false);
    }
    let Some((cat, axis, shapes)) = parts(g, x) else {
        return Ok(false);
    };
    if !shapes.iter().all(|s| moves_no_data(&perm, s)) {
        return Ok(false);
    }
    let Some(new_axis) = perm.iter().position(|&p| p == axis) else {
        return Ok(false);
    };
    let origin = g.node(n).origin.clone();
    let err = |e: dync_ir::ShapeError| PassError::Rewrite {
        pass: NAME,
        origin: origin.clone().unwrap_or_default(),
        message: e.to_string(),
    };
    let mut views = Vec::with_capacity(shapes.len());
    for (o, s) in g.operands(cat).into_iter().zip(&shapes) {
        let shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
        views.push(
            g.add(Op::Reshape(Reshape { shape }), &[o], origin.clone())
                .map_err(err)?,
        );
    }
    let joined = g
        .add(
            Op::Concat(Concat { axis: new_axis }),
            &views,
            origin.clone(),
        )
        .map_err(err)?;
    g.replace_uses(n, joined);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dync_interp::run;
    use dync_ir::ops::Transpose;
    use dync_ir::{Tensor, TensorType};

    /// concat(a, b) along `axis` of [1, 4, 3, 2] operands, reshaped to `split` (if any), then
    /// transposed by `perm`; returns the graph and its output before the rewrite.
    fn shuffle(axis: usize, split: Option<Vec<usize>>, perm: Vec<usize>) -> Graph {
        let mut g = Graph::new();
        let a = g.add_input("a", TensorType::f32(vec![1, 4, 3, 2]));
        let b = g.add_input("b", TensorType::f32(vec![1, 4, 3, 2]));
        let mut x = g.add(Op::Concat(Concat { axis }), &[a, b], None).unwrap();
        if let Some(shape) = split {
            x = g.add(Op::Reshape(Reshape { shape }), &[x], None).unwrap();
        }
        let t = g
            .add(Op::Transpose(Transpose { perm }), &[x], None)
            .unwrap();
        g.set_output("y", t);
        g
    }

    fn inputs() -> Vec<Tensor> {
        let iota = |k: f32| {
            let v: Vec<f32> = (0..24).map(|i| i as f32 * 1.5 + k).collect();
            Tensor::from_f32(vec![1, 4, 3, 2], v).unwrap()
        };
        vec![iota(0.0), iota(100.0)]
    }

    fn rewritten(mut g: Graph) -> (bool, Graph, Graph) {
        let before = g.clone();
        let mut cx = PassCx::default();
        let changed = ConcatTranspose.run(&mut g, &mut cx).unwrap();
        g.remove_dead();
        dync_ir::verify(&g).unwrap();
        (changed, before, g)
    }

    fn same_results(before: &Graph, after: &Graph) {
        let x = inputs();
        assert_eq!(run(before, &x).unwrap(), run(after, &x).unwrap());
    }

    #[test]
    fn channel_shuffle_becomes_an_interleaving_concat() {
        let (changed, before, after) =
            rewritten(shuffle(1, Some(vec![1, 2, 4, 3, 2]), vec![0, 2, 1, 3, 4]));
        assert!(changed);
        assert!(!after
            .node_ids()
            .any(|n| matches!(after.node(n).op, Op::Transpose(_))));
        same_results(&before, &after);
    }

    #[test]
    fn transpose_moving_unit_dims_of_the_parts_folds() {
        // [1, 8, 3, 2] → [8, 1, 3, 2]: each part's move is of the unit batch dim only.
        let (changed, before, after) = rewritten(shuffle(1, None, vec![1, 0, 2, 3]));
        assert!(changed);
        same_results(&before, &after);
    }

    #[test]
    fn transposes_that_move_data_stay() {
        let (changed, ..) = rewritten(shuffle(1, None, vec![0, 2, 1, 3]));
        assert!(!changed);
        let (changed, ..) = rewritten(shuffle(1, Some(vec![1, 2, 4, 3, 2]), vec![0, 2, 1, 4, 3]));
        assert!(!changed);
    }

    #[test]
    fn shared_concat_stays() {
        let mut g = shuffle(1, Some(vec![1, 2, 4, 3, 2]), vec![0, 2, 1, 3, 4]);
        let cat = g
            .node_ids()
            .find(|&n| matches!(g.node(n).op, Op::Concat(_)))
            .unwrap();
        g.set_output("cat", cat);
        let (changed, ..) = rewritten(g);
        assert!(!changed);
    }
}
