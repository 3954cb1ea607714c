//! Element tracing for the dynamic-convolution recognizers: writes one element of a value as a
//! sum of terms `factor · Π leaf elements`, by following, backwards, the operands of the ops that
//! are linear in their non-constant operands (data movement, sums, multiplications by constants,
//! and — when asked — products of two non-constant values).
//!
//! The tracer is exact and structural: a term is kept even when its factor is zero, so the set
//! of leaf elements an element depends on does not hinge on the values of a bank. It proves
//! nothing by itself about other elements; the recognizers use it to derive a hypothesis (which
//! coefficient feeds which kernel) and then verify that hypothesis numerically on whole tensors.
//!
//! Leaves: the nodes given as `forced`, graph inputs, and every node whose op is not traced
//! (`sigmoid`, `softmax`, `conv`, …; a product of two non-constant values unless `bilinear`).
//! Traced ops: `reshape`, `transpose`, `slice`, `expand`, `concat`, `gather` (constant
//! indices), `pad` (constant mode), `unary neg`, `binary add/sub/mul` and `div` by a constant,
//! `reduce sum/mean`, `matmul`, `gemm`, `einsum`. A constant contributes a term with no leaves.
//! Rejects (as `Err(reason)`) traces that exceed a step budget, non-f32 constants on the path and
//! division by a constant zero.

use dync_ir::ops::{BinaryKind, EinsumSpec, PadMode, ReduceKind, UnaryKind};
use dync_ir::{Graph, NodeId, Op, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// One element of a leaf node (flat row-major index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Leaf {
    pub node: NodeId,
    pub index: usize,
}

/// The largest constant multiplied into a term: one of its elements and its element count.
pub(crate) type Source = Option<(Leaf, usize)>;

/// `factor · Π leaves` (leaves sorted, possibly empty: a constant). `source` is the element of
/// the largest constant multiplied into `factor` (with that constant's element count): for a
/// kernel mixed from a bank, the bank element the term reads.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Term {
    pub factor: f64,
    pub leaves: Vec<Leaf>,
    pub source: Source,
}

/// The factor accumulated on the way down to an element, and its largest constant so far.
#[derive(Clone, Copy, Debug)]
struct Weight {
    f: f64,
    source: Source,
}

impl Weight {
    const ONE: Weight = Weight {
        f: 1.0,
        source: None,
    };

    fn scaled(self, x: f64) -> Weight {
        Weight {
            f: self.f * x,
            ..self
        }
    }

    /// Multiplied by element `index` (value `v`) of the constant `node` of `len` elements.
    fn times_const(self, node: NodeId, index: usize, v: f64, len: usize) -> Weight {
        let source = match self.source {
            Some((_, l)) if l >= len => self.source,
            _ => Some((Leaf { node, index }, len)),
        };
        Weight {
            f: self.f * v,
            source,
        }
    }

    fn term(self, leaves: Vec<Leaf>) -> Term {
        Term {
            factor: self.f,
            leaves,
            source: self.source,
        }
    }
}

/// Steps (visited elements) one `element` call may take; beyond it the structure is not the
/// small mixing the recognizers look for.
const MAX_STEPS: usize = 1 << 16;

pub(crate) struct Tracer<'g> {
    g: &'g Graph,
    forced: Vec<NodeId>,
    bilinear: bool,
    /// Resolved einsum equations by node (resolving one per element would dominate).
    einsums: RefCell<HashMap<NodeId, Rc<EinsumPlan>>>,
    operands: RefCell<HashMap<NodeId, Rc<[NodeId]>>>,
}

/// An einsum resolved for tracing, labels numbered in the spec's (sorted) order: each label's
/// extent, the output's labels, the summed labels, and each operand's dims as (label, extent).
struct EinsumPlan {
    sizes: Vec<usize>,
    output: Vec<usize>,
    summed: Vec<usize>,
    inputs: Vec<Vec<(usize, usize)>>,
}

impl EinsumPlan {
    fn new(spec: &EinsumSpec, shapes: &[&[usize]]) -> Self {
        let labels: Vec<char> = spec.sizes.keys().copied().collect();
        let pos = |l: char| labels.iter().position(|&x| x == l).unwrap_or(0);
        EinsumPlan {
            sizes: spec.sizes.values().copied().collect(),
            output: spec.output.iter().map(|&l| pos(l)).collect(),
            summed: (0..labels.len())
                .filter(|&i| !spec.output.contains(&labels[i]))
                .collect(),
            inputs: spec
                .inputs
                .iter()
                .zip(shapes)
                .map(|(ls, sh)| {
                    ls.iter()
                        .zip(sh.iter())
                        .map(|(&l, &d)| (pos(l), d))
                        .collect()
                })
                .collect(),
        }
    }
}

/// Row-major multi-index of flat index `idx` in `shape`.
pub(crate) fn unravel(mut idx: usize, shape: &[usize]) -> Vec<usize> {
    let mut m = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        let e = shape[d].max(1);
        m[d] = idx % e;
        idx /= e;
    }
    m
}

/// Flat index of multi-index `m` in `shape`.
pub(crate) fn ravel(m: &[usize], shape: &[usize]) -> usize {
    m.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// Flat index in `shape` of the element that numpy broadcasting maps to output position `out`
/// (dims aligned at the right; extent-1 dims read index 0).
fn bcast(out: &[usize], shape: &[usize]) -> usize {
    let off = out.len() - shape.len();
    shape.iter().enumerate().fold(0, |acc, (d, &e)| {
        acc * e + if e == 1 { 0 } else { out[off + d] }
    })
}

fn value(t: &Tensor, idx: usize) -> Result<f64, String> {
    t.as_f32()
        .and_then(|v| v.get(idx))
        .map(|&v| f64::from(v))
        .ok_or_else(|| format!("a {} constant lies on the traced path", t.dtype()))
}

impl<'g> Tracer<'g> {
    /// A tracer over `g` that stops at `forced` nodes (besides the untraced ops) and traces
    /// products of two non-constant values only when `bilinear`.
    pub fn new(g: &'g Graph, forced: Vec<NodeId>, bilinear: bool) -> Self {
        Tracer {
            g,
            forced,
            bilinear,
            einsums: RefCell::default(),
            operands: RefCell::default(),
        }
    }

    fn is_const(&self, n: NodeId) -> bool {
        matches!(self.g.node(n).op, Op::Const(_))
    }

    fn dynamic_count(&self, ops: &[NodeId]) -> usize {
        ops.iter().filter(|&&o| !self.is_const(o)).count()
    }

    /// Whether the tracer stops at `n` (see the module docs).
    pub fn is_leaf(&self, n: NodeId) -> bool {
        if self.forced.contains(&n) {
            return true;
        }
        let ops = self.operands(n);
        match &self.g.node(n).op {
            Op::Const(_) => false,
            Op::Reshape(_) | Op::Transpose(_) | Op::Slice(_) | Op::Expand(_) | Op::Concat(_) => {
                false
            }
            Op::Gather(_) => !self.is_const(ops[1]),
            Op::Pad(p) => p.mode != PadMode::Constant,
            Op::Unary(u) => u.kind != UnaryKind::Neg,
            Op::Binary(b) => match b.kind {
                BinaryKind::Add | BinaryKind::Sub => false,
                BinaryKind::Mul => !self.bilinear && self.dynamic_count(&ops) > 1,
                BinaryKind::Div => !self.is_const(ops[1]),
                BinaryKind::Pow | BinaryKind::Max | BinaryKind::Min => true,
            },
            Op::Reduce(r) => !matches!(r.kind, ReduceKind::Sum | ReduceKind::Mean),
            Op::MatMul(_) | Op::Einsum(_) => !self.bilinear && self.dynamic_count(&ops) > 1,
            Op::Gemm(_) => !self.bilinear && self.dynamic_count(&ops[..2]) > 1,
            _ => true,
        }
    }

    /// Element `index` of `node` as merged terms (equal leaf sets summed), sorted by leaves.
    pub fn element(&self, node: NodeId, index: usize) -> Result<Vec<Term>, String> {
        let mut out = Vec::new();
        let mut steps = 0;
        self.go(node, index, Weight::ONE, &mut out, &mut steps)?;
        out.sort_by(|a, b| a.leaves.cmp(&b.leaves));
        let mut merged: Vec<Term> = Vec::with_capacity(out.len());
        for t in out {
            match merged.last_mut() {
                Some(last) if last.leaves == t.leaves => {
                    last.factor += t.factor;
                    if last.source != t.source {
                        last.source = None;
                    }
                }
                _ => merged.push(t),
            }
        }
        Ok(merged)
    }

    fn shape(&self, n: NodeId) -> &'g [usize] {
        &self.g.ty(n).shape
    }

    /// The operands of `n` (cached: the same nodes are visited once per traced element).
    fn operands(&self, n: NodeId) -> Rc<[NodeId]> {
        if let Some(ops) = self.operands.borrow().get(&n) {
            return Rc::clone(ops);
        }
        let ops: Rc<[NodeId]> = self.g.operands(n).into();
        self.operands.borrow_mut().insert(n, Rc::clone(&ops));
        ops
    }

    fn go(
        &self,
        n: NodeId,
        idx: usize,
        w: Weight,
        out: &mut Vec<Term>,
        steps: &mut usize,
    ) -> Result<(), String> {
        *steps += 1;
        if *steps > MAX_STEPS {
            return Err(format!(
                "an element depends on more than {MAX_STEPS} values through linear ops"
            ));
        }
        if let Some(t) = self.g.const_value(n) {
            out.push(w.scaled(value(t, idx)?).term(Vec::new()));
            return Ok(());
        }
        if self.is_leaf(n) {
            out.push(w.term(vec![Leaf {
                node: n,
                index: idx,
            }]));
            return Ok(());
        }
        let ops = self.operands(n);
        let oshape = self.shape(n);
        match &self.g.node(n).op {
            Op::Reshape(_) => self.go(ops[0], idx, w, out, steps),
            Op::Transpose(t) => {
                let m = unravel(idx, oshape);
                let mut im = vec![0; m.len()];
                for (i, &p) in t.perm.iter().enumerate() {
                    im[p] = m[i];
                }
                self.go(ops[0], ravel(&im, self.shape(ops[0])), w, out, steps)
            }
            Op::Slice(s) => {
                let m = unravel(idx, oshape);
                let im: Vec<usize> = m
                    .iter()
                    .enumerate()
                    .map(|(d, &i)| (s.starts[d] + i as i64 * s.steps[d]) as usize)
                    .collect();
                self.go(ops[0], ravel(&im, self.shape(ops[0])), w, out, steps)
            }
            Op::Expand(_) => {
                let m = unravel(idx, oshape);
                self.go(ops[0], bcast(&m, self.shape(ops[0])), w, out, steps)
            }
            Op::Concat(c) => {
                let mut m = unravel(idx, oshape);
                for &o in ops.iter() {
                    let e = self.shape(o)[c.axis];
                    if m[c.axis] < e {
                        return self.go(o, ravel(&m, self.shape(o)), w, out, steps);
                    }
                    m[c.axis] -= e;
                }
                Err("concat index out of range".into())
            }
            Op::Gather(gt) => {
                let ishape = self.shape(ops[1]);
                let dshape = self.shape(ops[0]);
                let m = unravel(idx, oshape);
                let a = gt.axis;
                let pos = ravel(&m[a..a + ishape.len()], ishape);
                let raw = self
                    .g
                    .const_value(ops[1])
                    .and_then(Tensor::to_i64_vec)
                    .and_then(|v| v.get(pos).copied())
                    .ok_or("gather indices are not a constant")?;
                let v = if raw < 0 { raw + dshape[a] as i64 } else { raw };
                let mut dm = m[..a].to_vec();
                dm.push(v as usize);
                dm.extend_from_slice(&m[a + ishape.len()..]);
                self.go(ops[0], ravel(&dm, dshape), w, out, steps)
            }
            Op::Pad(p) => {
                let ishape = self.shape(ops[0]);
                let r = ishape.len();
                let m = unravel(idx, oshape);
                let mut im = Vec::with_capacity(r);
                for d in 0..r {
                    let i = m[d] as i64 - p.pads[d];
                    if i < 0 || i >= ishape[d] as i64 {
                        if p.value != 0.0 {
                            out.push(w.scaled(f64::from(p.value)).term(Vec::new()));
                        }
                        return Ok(());
                    }
                    im.push(i as usize);
                }
                self.go(ops[0], ravel(&im, ishape), w, out, steps)
            }
            Op::Unary(_) => self.go(ops[0], idx, w.scaled(-1.0), out, steps),
            Op::Binary(b) => {
                let m = unravel(idx, oshape);
                let ia = bcast(&m, self.shape(ops[0]));
                let ib = bcast(&m, self.shape(ops[1]));
                match b.kind {
                    BinaryKind::Add => {
                        self.go(ops[0], ia, w, out, steps)?;
                        self.go(ops[1], ib, w, out, steps)
                    }
                    BinaryKind::Sub => {
                        self.go(ops[0], ia, w, out, steps)?;
                        self.go(ops[1], ib, w.scaled(-1.0), out, steps)
                    }
                    BinaryKind::Mul => self.product(&[(ops[0], ia), (ops[1], ib)], w, out, steps),
                    _ => {
                        let d = self
                            .g
                            .const_value(ops[1])
                            .ok_or("division by a computed value")?;
                        let d = value(d, ib)?;
                        if d == 0.0 {
                            return Err("division by a constant zero".into());
                        }
                        self.go(ops[0], ia, w.scaled(1.0 / d), out, steps)
                    }
                }
            }
            Op::Reduce(r) => {
                let ishape = self.shape(ops[0]);
                let m = unravel(idx, oshape);
                let mut im = vec![0; ishape.len()];
                let mut k = 0;
                for (d, slot) in im.iter_mut().enumerate() {
                    if r.axes.contains(&d) {
                        if r.keepdims {
                            k += 1;
                        }
                    } else {
                        *slot = m[k];
                        k += 1;
                    }
                }
                let count: usize = r.axes.iter().map(|&a| ishape[a]).product();
                let w = if r.kind == ReduceKind::Mean {
                    w.scaled(1.0 / count.max(1) as f64)
                } else {
                    w
                };
                for j in 0..count {
                    let mut rem = j;
                    for &a in r.axes.iter().rev() {
                        im[a] = rem % ishape[a];
                        rem /= ishape[a];
                    }
                    self.go(ops[0], ravel(&im, ishape), w, out, steps)?;
                }
                Ok(())
            }
            Op::MatMul(_) => {
                let (sa, sb) = (self.shape(ops[0]), self.shape(ops[1]));
                let m = unravel(idx, oshape);
                let pa: Vec<usize> = if sa.len() == 1 {
                    vec![1, sa[0]]
                } else {
                    sa.to_vec()
                };
                let pb: Vec<usize> = if sb.len() == 1 {
                    vec![sb[0], 1]
                } else {
                    sb.to_vec()
                };
                let nb = pa.len().max(pb.len()) - 2;
                let batch = &m[..nb];
                let mut rest = nb;
                let mi = if sa.len() > 1 {
                    rest += 1;
                    m[rest - 1]
                } else {
                    0
                };
                let ni = if sb.len() > 1 { m[rest] } else { 0 };
                let k = pa[pa.len() - 1];
                let index_in = |p: &[usize], row: usize, col: usize| {
                    let mut full = batch.to_vec();
                    full.push(row);
                    full.push(col);
                    bcast(&full, p)
                };
                for kk in 0..k {
                    let ia = index_in(&pa, mi, kk);
                    let ib = index_in(&pb, kk, ni);
                    self.product(&[(ops[0], ia), (ops[1], ib)], w, out, steps)?;
                }
                Ok(())
            }
            Op::Gemm(gm) => {
                let (sa, sb) = (self.shape(ops[0]), self.shape(ops[1]));
                let (_, k, _) = gm.mkn(sa, sb);
                let (mi, ni) = (idx / oshape[1], idx % oshape[1]);
                for kk in 0..k {
                    let ia = if gm.trans_a {
                        kk * sa[1] + mi
                    } else {
                        mi * sa[1] + kk
                    };
                    let ib = if gm.trans_b {
                        ni * sb[1] + kk
                    } else {
                        kk * sb[1] + ni
                    };
                    let wa = w.scaled(f64::from(gm.alpha));
                    self.product(&[(ops[0], ia), (ops[1], ib)], wa, out, steps)?;
                }
                if let Some(&c) = ops.get(2) {
                    let ic = bcast(&[mi, ni], self.shape(c));
                    self.go(c, ic, w.scaled(f64::from(gm.beta)), out, steps)?;
                }
                Ok(())
            }
            Op::Einsum(e) => {
                let cached = self.einsums.borrow().get(&n).cloned();
                let plan = match cached {
                    Some(p) => p,
                    None => {
                        let shapes: Vec<&[usize]> = ops.iter().map(|&o| self.shape(o)).collect();
                        let spec =
                            EinsumSpec::new(&e.equation, &shapes).map_err(|e| e.to_string())?;
                        let p = Rc::new(EinsumPlan::new(&spec, &shapes));
                        self.einsums.borrow_mut().insert(n, Rc::clone(&p));
                        p
                    }
                };
                let mut val = vec![0usize; plan.sizes.len()];
                for (&l, i) in plan.output.iter().zip(unravel(idx, oshape)) {
                    val[l] = i;
                }
                let count: usize = plan.summed.iter().map(|&l| plan.sizes[l]).product();
                let mut parts: Vec<(NodeId, usize)> = Vec::with_capacity(ops.len());
                for j in 0..count {
                    let mut rem = j;
                    for &l in plan.summed.iter().rev() {
                        let e = plan.sizes[l];
                        val[l] = rem % e;
                        rem /= e;
                    }
                    parts.clear();
                    parts.extend(ops.iter().zip(&plan.inputs).map(|(&o, dims)| {
                        let flat = dims
                            .iter()
                            .fold(0, |acc, &(l, d)| acc * d + if d == 1 { 0 } else { val[l] });
                        (o, flat)
                    }));
                    self.product(&parts, w, out, steps)?;
                }
                Ok(())
            }
            other => Err(format!("`{}` is not traced", other.name())),
        }
    }

    /// Pushes the terms of `w · Π parts` (each part an element of a node).
    fn product(
        &self,
        parts: &[(NodeId, usize)],
        w: Weight,
        out: &mut Vec<Term>,
        steps: &mut usize,
    ) -> Result<(), String> {
        let mut w = w;
        let mut dynamic = Vec::new();
        for &(n, i) in parts {
            match self.g.const_value(n) {
                Some(t) => w = w.times_const(n, i, value(t, i)?, t.len()),
                None => dynamic.push((n, i)),
            }
        }
        let Some((&(first, fi), rest)) = dynamic.split_first() else {
            out.push(w.term(Vec::new()));
            return Ok(());
        };
        if rest.is_empty() {
            return self.go(first, fi, w, out, steps);
        }
        let mut acc = Vec::new();
        self.go(first, fi, w, &mut acc, steps)?;
        for &(n, i) in rest {
            let mut sub = Vec::new();
            self.go(n, i, Weight::ONE, &mut sub, steps)?;
            let mut next = Vec::with_capacity(acc.len() * sub.len());
            for a in &acc {
                for b in &sub {
                    *steps += 1;
                    let mut leaves = a.leaves.clone();
                    leaves.extend_from_slice(&b.leaves);
                    leaves.sort_unstable();
                    let source = match (a.source, b.source) {
                        (Some(x), Some(y)) => Some(if y.1 > x.1 { y } else { x }),
                        (x, y) => x.or(y),
                    };
                    next.push(Term {
                        factor: a.factor * b.factor,
                        leaves,
                        source,
                    });
                }
            }
            if *steps > MAX_STEPS {
                return Err(format!(
                    "an element depends on more than {MAX_STEPS} products through linear ops"
                ));
            }
            acc = next;
        }
        out.extend(acc);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dync_ir::ops::{Binary, MatMul, Reduce, Reshape, Transpose, Unary};
    use dync_ir::TensorType;

    fn f32t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape, v).expect("test tensor")
    }

    #[test]
    fn index_helpers_round_trip() {
        let shape = [2, 3, 4];
        for i in 0..24 {
            assert_eq!(ravel(&unravel(i, &shape), &shape), i);
        }
        assert_eq!(bcast(&[1, 2, 3], &[3, 1]), 2);
        assert_eq!(bcast(&[1, 2, 3], &[4]), 3);
    }

    /// sigmoid(x)[2,3] @ bank[3,4] → transpose → each element is Σₖ s[i,k]·bank[k,j].
    #[test]
    fn traces_matmul_through_transpose() {
        let mut g = Graph::new();
        let x = g.add_input("x", TensorType::f32([2, 3]));
        let s = g
            .add(
                Op::Unary(Unary {
                    kind: UnaryKind::Sigmoid,
                }),
                &[x],
                None,
            )
            .expect("sigmoid");
        let bank: Vec<f32> = (0..12).map(|i| i as f32 + 1.0).collect();
        let b = g.add_const(f32t(&[3, 4], bank.clone()), None);
        let m = g.add(Op::MatMul(MatMul), &[s, b], None).expect("matmul");
        let t = g
            .add(Op::Transpose(Transpose { perm: vec![1, 0] }), &[m], None)
            .expect("transpose");
        let tr = Tracer::new(&g, vec![], false);
        assert!(tr.is_leaf(s) && !tr.is_leaf(m));
        // t[j=2, i=1] = Σₖ s[1,k]·bank[k,2]
        let terms = tr.element(t, 2 * 2 + 1).expect("trace");
        let want: Vec<Term> = (0..3)
            .map(|k| Term {
                factor: f64::from(bank[k * 4 + 2]),
                leaves: vec![Leaf {
                    node: s,
                    index: 3 + k,
                }],
                source: Some((
                    Leaf {
                        node: b,
                        index: k * 4 + 2,
                    },
                    12,
                )),
            })
            .collect();
        assert_eq!(terms, want);
    }

    /// reduce sum over axis 1 of (a · b) with both computed: bilinear terms only when asked.
    #[test]
    fn products_of_computed_values_are_leaves_unless_bilinear() {
        let mut g = Graph::new();
        let a = g.add_input("a", TensorType::f32([2, 3]));
        let c = g.add_input("c", TensorType::f32([2, 1]));
        let p = g
            .add(
                Op::Binary(Binary {
                    kind: BinaryKind::Mul,
                }),
                &[a, c],
                None,
            )
            .expect("mul");
        let r = g
            .add(
                Op::Reduce(Reduce {
                    kind: ReduceKind::Sum,
                    axes: vec![1],
                    keepdims: false,
                }),
                &[p],
                None,
            )
            .expect("sum");
        let y = g
            .add(Op::Reshape(Reshape { shape: vec![2] }), &[r], None)
            .expect("reshape");
        let linear = Tracer::new(&g, vec![], false);
        let terms = linear.element(y, 1).expect("trace");
        assert_eq!(terms.len(), 3);
        assert!(terms
            .iter()
            .all(|t| t.leaves.len() == 1 && t.leaves[0].node == p));
        let bilinear = Tracer::new(&g, vec![], true);
        let terms = bilinear.element(y, 1).expect("trace");
        let want: Vec<Vec<Leaf>> = (0..3)
            .map(|k| {
                vec![
                    Leaf {
                        node: a,
                        index: 3 + k,
                    },
                    Leaf { node: c, index: 1 },
                ]
            })
            .collect();
        assert_eq!(
            terms.iter().map(|t| t.leaves.clone()).collect::<Vec<_>>(),
            want
        );
        assert!(terms.iter().all(|t| t.factor == 1.0));
    }
}
