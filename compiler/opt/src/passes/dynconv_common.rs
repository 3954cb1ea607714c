//! What the dynamic-convolution recognizers share: evaluating the cone of a value with chosen
//! values bound at some nodes (the numerical proof of a rewrite), seeded pseudo-random tensors,
//! the closeness test of that proof, the coefficient layout of a `dyn_conv` and the ops that
//! build its coefficient operand from the predictor's output (reusing equal existing ops, so
//! that convs sharing a predictor read one coefficient node).
//!
//! [`traced_cone`] is the linearity check both recognizers make before their numerical proof.
//!
//! Contract: nothing here mutates the graph except [`coefficient_operand`] and [`cse_add`], which
//! only add ops (or reuse equal ones); evaluation errors are returned as reasons, never panics.

use super::dynconv_trace::Tracer;
use crate::error::PassError;
use dync_ir::ops::{Gather, Reshape, Slice, Transpose};
use dync_ir::{Graph, NodeId, Op, Tensor};
use std::collections::{HashMap, HashSet};

/// Relative tolerance of the numerical proof, against the sum of the magnitudes of the terms
/// (robust to cancellation; the interpreter rounds each op's result to f32 once).
pub(crate) const REL_TOL: f64 = 1e-5;

/// The nodes `root` depends on without going through `bound` nodes or constants, in an order
/// that evaluates operands first (`root` last). Errors name a graph input the cone reaches.
pub(crate) fn cone(g: &Graph, root: NodeId, bound: &[NodeId]) -> Result<Vec<NodeId>, String> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // (node, operands pushed?)
    let mut stack = vec![(root, false)];
    while let Some((n, expanded)) = stack.pop() {
        if expanded {
            order.push(n);
            continue;
        }
        if bound.contains(&n) || matches!(g.node(n).op, Op::Const(_)) || !seen.insert(n) {
            continue;
        }
        if matches!(g.node(n).op, Op::Input(_)) {
            let name = g
                .inputs
                .iter()
                .find(|(_, i)| *i == n)
                .map_or("?", |(s, _)| s.as_str());
            return Err(format!("it also depends on the graph input `{name}`"));
        }
        stack.push((n, true));
        for o in g.operands(n) {
            stack.push((o, false));
        }
    }
    Ok(order)
}

/// [`cone`] of `root` without `stops`, when `tracer` follows every op in it (so the cone is a
/// polynomial in the stops and the numerical check of a rewrite at a random point is a proof);
/// otherwise the error `untraced(n)` for the first op `n` it does not follow.
pub(crate) fn traced_cone(
    g: &Graph,
    tracer: &Tracer,
    root: NodeId,
    stops: &[NodeId],
    untraced: impl Fn(NodeId) -> String,
) -> Result<Vec<NodeId>, String> {
    let nodes = cone(g, root, stops)?;
    match nodes.iter().find(|&&n| tracer.is_leaf(n)) {
        Some(&n) => Err(untraced(n)),
        None => Ok(nodes),
    }
}

/// Evaluates `root` with the reference interpreter, `bound` nodes taking the given values.
/// A value is dropped after its last use in the cone, and a reshape that is the last use of a
/// computed value takes that value's data instead of copying it (a reshape only relabels the
/// row-major data; its type was checked when the node was added).
pub(crate) fn eval_with(
    g: &Graph,
    root: NodeId,
    bound: &[(NodeId, &Tensor)],
) -> Result<Tensor, String> {
    if let Some((_, t)) = bound.iter().find(|(n, _)| *n == root) {
        return Ok((*t).clone());
    }
    if let Some(t) = g.const_value(root) {
        return Ok(t.clone());
    }
    let stops: Vec<NodeId> = bound.iter().map(|(n, _)| *n).collect();
    let order = cone(g, root, &stops)?;
    // Uses of each computed value by the cone's nodes still to be evaluated.
    let mut uses: HashMap<NodeId, usize> = HashMap::new();
    for &n in &order {
        for o in g.operands(n) {
            *uses.entry(o).or_default() += 1;
        }
    }
    let mut values: HashMap<NodeId, Tensor> = HashMap::new();
    for &n in &order {
        let operands = g.operands(n);
        let node = g.node(n);
        let last_use = |o: NodeId| values.contains_key(&o) && uses.get(&o) == Some(&1);
        let v = match (&node.op, operands.as_slice()) {
            (Op::Reshape(_), &[o]) if last_use(o) => values
                .remove(&o)
                .ok_or_else(|| format!("operand %{} has no value", o.index()))?
                .reshaped(node.ty.shape.clone())
                .map_err(|e| format!("evaluating %{} (reshape): {e}", n.index()))?,
            _ => {
                let args = operands
                    .iter()
                    .map(|o| {
                        bound
                            .iter()
                            .find(|(b, _)| b == o)
                            .map(|(_, t)| *t)
                            .or_else(|| g.const_value(*o))
                            .or_else(|| values.get(o))
                            .ok_or_else(|| format!("operand %{} has no value", o.index()))
                    })
                    .collect::<Result<Vec<&Tensor>, String>>()?;
                dync_interp::eval(&node.op, &args, &node.ty)
                    .map_err(|e| format!("evaluating %{} ({}): {e}", n.index(), node.op.name()))?
            }
        };
        for o in &operands {
            if let Some(u) = uses.get_mut(o) {
                *u -= 1;
                if *u == 0 {
                    values.remove(o);
                }
            }
        }
        values.insert(n, v);
    }
    values
        .remove(&root)
        .ok_or_else(|| "the evaluated value is missing".to_string())
}

pub(crate) fn random_tensor(shape: &[usize], seed: u64) -> Result<Tensor, String> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let n = n.ok_or("tensor size overflows")?;
    let mut s = seed ^ 0x9e37_79b9_7f4a_7c15;
    let v = (0..n)
        .map(|_| {
            // splitmix64
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_f32(shape, v).map_err(|e| e.to_string())
}

/// Whether `got` (computed by the original graph) equals `want` (the rewrite's formula) up to
/// rounding, `magnitude` being the sum of the absolute values of the terms of `want`.
pub(crate) fn close(got: f32, want: f64, magnitude: f64) -> bool {
    (f64::from(got) - want).abs() <= REL_TOL * magnitude + f64::from(f32::MIN_POSITIVE)
}

/// Which elements of the coefficient source feed a `dyn_conv`, as flat indices within one
/// sample's part of the source (sample b reads `b·per_sample + index`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One coefficient per expert, shared by every output channel: coeff `[N, g]`.
    PerExpert(Vec<usize>),
    /// One coefficient per output channel and kernel: coeff `[N, O, g]`, `[o][i]`.
    PerChannel(Vec<Vec<usize>>),
}

impl Layout {
    /// The layout with `slots[o]` the source indices of output channel `o`: per expert when
    /// every channel reads the same ones.
    pub fn from_slots(slots: Vec<Vec<usize>>) -> Layout {
        match slots.first() {
            Some(first) if slots.iter().all(|s| s == first) => Layout::PerExpert(first.clone()),
            _ => Layout::PerChannel(slots),
        }
    }

    /// Kernels per output channel.
    pub fn g(&self) -> usize {
        match self {
            Layout::PerExpert(v) => v.len(),
            Layout::PerChannel(v) => v.first().map_or(0, Vec::len),
        }
    }

    /// Source index (within a sample) of coefficient `i` of output channel `o`.
    pub fn index(&self, o: usize, i: usize) -> usize {
        match self {
            Layout::PerExpert(v) => v[i],
            Layout::PerChannel(v) => v[o][i],
        }
    }
}

/// Adds `op` on `operands`, or returns an existing node with the same op on the same operands
/// (constant operands compared by value).
pub(crate) fn cse_add(
    g: &mut Graph,
    op: Op,
    operands: &[NodeId],
    origin: Option<String>,
) -> Result<NodeId, PassError> {
    if let Some(&first) = operands.first() {
        let same = |a: NodeId, b: NodeId| {
            a == b || matches!((g.const_value(a), g.const_value(b)), (Some(x), Some(y)) if x == y)
        };
        for (u, _) in g.users(first) {
            let uops = g.operands(u);
            if g.node(u).op == op
                && uops.len() == operands.len()
                && uops.iter().zip(operands).all(|(&a, &b)| same(a, b))
            {
                return Ok(u);
            }
        }
    }
    g.add(op, operands, origin.clone())
        .map_err(|e| PassError::Rewrite {
            pass: "dynconv",
            origin: origin.unwrap_or_default(),
            message: e.to_string(),
        })
}

fn slice_cols(b: usize, start: usize, end: usize) -> Op {
    Op::Slice(Slice {
        starts: vec![0, start as i64],
        ends: vec![b as i64, end as i64],
        steps: vec![1, 1],
    })
}

/// Builds (or finds) the coefficient operand of a `dyn_conv` from `source`, whose `b` samples
/// hold `per_sample` values each: `[b, g]` for a per-expert layout, `[b, O, g]` per channel.
/// Contiguous selections become a slice and a reshape (with a transpose for an expert-major
/// source); any other selection a gather with constant indices.
pub(crate) fn coefficient_operand(
    g: &mut Graph,
    source: NodeId,
    b: usize,
    per_sample: usize,
    layout: &Layout,
) -> Result<NodeId, PassError> {
    let origin = g.node(source).origin.clone();
    let flat = if g.ty(source).shape == [b, per_sample] {
        source
    } else {
        let op = Op::Reshape(Reshape {
            shape: vec![b, per_sample],
        });
        cse_add(g, op, &[source], origin.clone())?
    };
    let select = |g: &mut Graph, idx: &[usize]| -> Result<NodeId, PassError> {
        let n = idx.len();
        let s = idx.first().copied().unwrap_or(0);
        if idx.iter().enumerate().all(|(j, &k)| k == s + j) {
            if s == 0 && n == per_sample {
                return Ok(flat);
            }
            return cse_add(g, slice_cols(b, s, s + n), &[flat], origin.clone());
        }
        let t = Tensor::from_i64([n], idx.iter().map(|&k| k as i64).collect());
        let t = t.map_err(|e| PassError::Rewrite {
            pass: "dynconv",
            origin: origin.clone().unwrap_or_default(),
            message: e.to_string(),
        })?;
        let c = g.add_const(t, origin.clone());
        cse_add(
            g,
            Op::Gather(Gather { axis: 1 }),
            &[flat, c],
            origin.clone(),
        )
    };
    match layout {
        Layout::PerExpert(idx) => select(g, idx),
        Layout::PerChannel(rows) => {
            let o = rows.len();
            let gk = layout.g();
            let s = rows.first().and_then(|r| r.first()).copied().unwrap_or(0);
            let expert_major = (0..o).all(|oc| (0..gk).all(|i| rows[oc][i] == s + i * o + oc));
            let order: Vec<usize> = if expert_major {
                (0..gk)
                    .flat_map(|i| (0..o).map(move |oc| (i, oc)))
                    .map(|(i, oc)| rows[oc][i])
                    .collect()
            } else {
                rows.iter().flatten().copied().collect()
            };
            let sel = select(g, &order)?;
            if expert_major {
                let r = Op::Reshape(Reshape {
                    shape: vec![b, gk, o],
                });
                let r = cse_add(g, r, &[sel], origin.clone())?;
                let t = Op::Transpose(Transpose {
                    perm: vec![0, 2, 1],
                });
                cse_add(g, t, &[r], origin)
            } else {
                let r = Op::Reshape(Reshape {
                    shape: vec![b, o, gk],
                });
                cse_add(g, r, &[sel], origin)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dync_ir::ops::{Unary, UnaryKind};
    use dync_ir::TensorType;

    #[test]
    fn random_tensors_are_seeded_and_in_range() {
        let a = random_tensor(&[3, 5], 7).expect("random");
        let b = random_tensor(&[3, 5], 7).expect("random");
        let c = random_tensor(&[3, 5], 8).expect("random");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let v = a.as_f32().expect("f32");
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
    }

    /// Per-channel, channel-major selections become slice + reshape, shared between calls.
    #[test]
    fn coefficient_operands_are_shared() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([2, 12]));
        let s = g
            .add(
                Op::Unary(Unary {
                    kind: UnaryKind::Sigmoid,
                }),
                &[x],
                None,
            )
            .expect("sigmoid");
        let rows: Vec<Vec<usize>> = (0..2)
            .map(|o| (0..3).map(|i| 6 + o * 3 + i).collect())
            .collect();
        let layout = Layout::PerChannel(rows);
        let a = coefficient_operand(&mut g, s, 2, 12, &layout).expect("coeff");
        let b = coefficient_operand(&mut g, s, 2, 12, &layout).expect("coeff");
        assert_eq!(a, b);
        assert_eq!(g.ty(a).shape, [2, 2, 3]);
        let xv = random_tensor(&[2, 12], 1).expect("random");
        let sv = eval_with(&g, s, &[(x, &xv)]).expect("eval");
        let av = eval_with(&g, a, &[(s, &sv)]).expect("eval");
        let (sv, av) = (sv.as_f32().expect("f32"), av.as_f32().expect("f32"));
        for bi in 0..2 {
            for o in 0..2 {
                for i in 0..3 {
                    assert_eq!(av[(bi * 2 + o) * 3 + i], sv[bi * 12 + layout.index(o, i)]);
                }
            }
        }
        // Expert-major: reshape [b, g, O] then transpose.
        let rows: Vec<Vec<usize>> = (0..2)
            .map(|o| (0..3).map(|i| i * 2 + o).collect())
            .collect();
        let layout = Layout::PerChannel(rows);
        let t = coefficient_operand(&mut g, s, 2, 12, &layout).expect("coeff");
        assert!(matches!(g.node(t).op, Op::Transpose(_)));
        let tv = eval_with(&g, t, &[(s, &random_tensor(&[2, 12], 3).expect("r"))]);
        assert_eq!(tv.expect("eval").shape(), [2, 2, 3]);
    }
}
