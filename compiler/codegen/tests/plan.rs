//! The memory planner on random graphs (unary, binary, reshape views, concat, constants,
//! outputs that are inputs, constants, views or repeated): buffers that are live at the same
//! kernel step never overlap (liveness recomputed here from the graph), placements are
//! aligned and inside the arena, and every output is either computed in place or copied from
//! a non-arena source. A smaller sample also runs through the JIT against the interpreter,
//! which exercises the aliasing end to end.

mod common;

use common::*;
use dync_codegen::abi::ALIGN;
use dync_codegen::plan::{plan, Storage};
use dync_ir::ops::*;
use dync_ir::{Graph, NodeId, Op, Tensor};
use proptest::prelude::*;
use rand::Rng;
use std::collections::HashMap;

/// A random verified graph and inputs for it.
fn random_graph(seed: u64) -> (Graph, Vec<Tensor>) {
    let mut r = rng(seed);
    let mut g = Graph::new();
    let mut vals: Vec<NodeId> = Vec::new();
    let mut inputs = Vec::new();
    let shapes: [&[usize]; 3] = [&[2, 3], &[6], &[3, 2]];
    for i in 0..r.random_range(1..3) {
        let shape = shapes[r.random_range(0..3)];
        let t = rand_f32(&mut r, shape);
        vals.push(g.add_input(format!("x{i}"), t.ty()));
        inputs.push(t);
    }
    for _ in 0..r.random_range(1..14) {
        let a = vals[r.random_range(0..vals.len())];
        let sa = g.ty(a).shape.clone();
        let node = match r.random_range(0..6) {
            0 => g.add(
                Op::Unary(Unary {
                    kind: UnaryKind::Relu,
                }),
                &[a],
                None,
            ),
            1 => {
                let same: Vec<NodeId> = vals
                    .iter()
                    .copied()
                    .filter(|&v| g.ty(v).shape == sa)
                    .collect();
                let b = same[r.random_range(0..same.len())];
                g.add(
                    Op::Binary(Binary {
                        kind: BinaryKind::Add,
                    }),
                    &[a, b],
                    None,
                )
            }
            2 => {
                let to = shapes[r.random_range(0..3)].to_vec();
                let to = if to.iter().product::<usize>() == sa.iter().product::<usize>() {
                    to
                } else {
                    vec![sa.iter().product()]
                };
                g.add(Op::Reshape(Reshape { shape: to }), &[a], None)
            }
            3 => Ok(g.add_const(rand_f32(&mut r, &sa), None)),
            4 => {
                // The second half of [a; a]: a again, through a buffer twice its size.
                let c = g
                    .add(Op::Concat(Concat { axis: 0 }), &[a, a], None)
                    .expect("concat");
                let mut starts = vec![0i64; sa.len()];
                let mut ends: Vec<i64> = sa.iter().map(|&d| d as i64).collect();
                starts[0] = sa[0] as i64;
                ends[0] = 2 * sa[0] as i64;
                g.add(
                    Op::Slice(Slice {
                        starts,
                        ends,
                        steps: vec![1; sa.len()],
                    }),
                    &[c],
                    None,
                )
            }
            _ => g.add(
                Op::Unary(Unary {
                    kind: UnaryKind::Neg,
                }),
                &[a],
                None,
            ),
        }
        .expect("valid random node");
        vals.push(node);
    }
    let n_out = r.random_range(1..4);
    for j in 0..n_out {
        let v = vals[r.random_range(0..vals.len())];
        g.set_output(format!("y{j}"), v);
    }
    (g, inputs)
}

fn check_plan(g: &Graph) {
    let p = plan(g).expect("plan");
    let step: HashMap<NodeId, usize> = p.kernels.iter().enumerate().map(|(s, &n)| (n, s)).collect();
    // Live interval of every kernel-defined root, recomputed from the graph.
    let mut live: HashMap<NodeId, (usize, usize)> = p
        .kernels
        .iter()
        .map(|&n| (n, (step[&n], step[&n])))
        .collect();
    for (s, &k) in p.kernels.iter().enumerate() {
        for o in g.operands(k) {
            if let Some(iv) = live.get_mut(&p.root(o)) {
                iv.1 = iv.1.max(s);
            }
        }
    }
    let mut arena: Vec<(NodeId, usize, usize, (usize, usize))> = p
        .kernels
        .iter()
        .filter_map(|&n| match p.storage.get(&n) {
            Some(Storage::Arena(off)) => Some((n, *off, g.ty(n).bytes().unwrap(), live[&n])),
            _ => None,
        })
        .collect();
    // Scratch memory is live only while its kernel runs.
    for b in p.buffers.iter().filter(|b| b.scratch) {
        assert_eq!(Some(&b.offset), p.scratch.get(&b.root));
        arena.push((b.root, b.offset, b.bytes, (step[&b.root], step[&b.root])));
    }
    for &(n, off, bytes, _) in &arena {
        assert_eq!(off % ALIGN, 0, "{n:?} misaligned");
        assert!(off + bytes <= p.arena_bytes, "{n:?} outside the arena");
    }
    for (i, a) in arena.iter().enumerate() {
        for b in &arena[i + 1..] {
            let overlap_time = a.3 .0 <= b.3 .1 && b.3 .0 <= a.3 .1;
            let overlap_mem = a.1 < b.1 + b.2 && b.1 < a.1 + a.2 && a.2 > 0 && b.2 > 0;
            // A result written into its residual's buffer, at the residual's last use.
            let reused = |x: NodeId, y: NodeId| {
                p.in_place.get(&x) == Some(&y) && step[&x] == live[&y].1 && a.1 == b.1
            };
            assert!(
                !(overlap_time && overlap_mem) || reused(a.0, b.0) || reused(b.0, a.0),
                "{:?} and {:?} overlap while both live",
                a,
                b
            );
        }
    }
    // A view lies inside its root's storage.
    for &v in p.views.keys() {
        let r = p.root(v);
        if let (Some(Storage::Arena(off)), Some(Storage::Arena(base))) =
            (p.storage.get(&v), p.storage.get(&r))
        {
            let end = off + g.ty(v).bytes().unwrap();
            assert!(
                *base <= *off && end <= base + g.ty(r).bytes().unwrap(),
                "view {v:?} outside its root {r:?}"
            );
        } else {
            assert!(
                !matches!(g.node(v).op, Op::Slice(_)),
                "slice view {v:?} of a non-arena root"
            );
        }
    }
    for (j, (_, out)) in g.outputs.iter().enumerate() {
        let st = p.storage[&p.root(*out)];
        if st != Storage::Output(j) {
            assert!(
                p.copies.contains(&(j, *out)),
                "output {j} neither in place nor copied"
            );
            assert!(
                !matches!(st, Storage::Arena(_)),
                "output {j} copied from the arena"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn simultaneously_live_buffers_never_overlap(seed in any::<u64>()) {
        let (g, _) = random_graph(seed);
        check_plan(&g);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_graphs_run_like_the_interpreter(seed in any::<u64>()) {
        let (g, inputs) = random_graph(seed);
        check_graph(&g, &inputs, &format!("random graph {seed}"));
    }
}

#[test]
fn buffers_are_reused_along_a_chain() {
    let mut g = Graph::new();
    let mut v = g.add_input("x", dync_ir::TensorType::f32([64, 64]));
    for _ in 0..10 {
        v = g
            .add(
                Op::Unary(Unary {
                    kind: UnaryKind::Relu,
                }),
                &[v],
                None,
            )
            .unwrap();
    }
    g.set_output("y", v);
    let p = plan(&g).unwrap();
    // Ten kernels, the last writes the output: the other nine alternate between two buffers.
    assert_eq!(p.kernels.len(), 10);
    assert_eq!(p.arena_bytes, 2 * 64 * 64 * 4);
    check_plan(&g);
}

/// Two dynamic convolutions with a residual add: their scratch buffers (mixed kernels) must
/// not overlap the activations live around them.
#[test]
fn dyn_conv_scratch_is_planned_apart_from_live_buffers() {
    let mut r = rng(3);
    let mut g = Graph::new();
    let x = g.add_input("x", dync_ir::TensorType::f32([2, 4, 6, 6]));
    let coeff = g.add_input("coeff", dync_ir::TensorType::f32([2, 3]));
    let op = DynConv {
        strides: [1, 1],
        pads: [1; 4],
        dilations: [1, 1],
        group: 1,
        bias: false,
        bias_bank: false,
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    };
    let bank1 = g.add_const(rand_f32(&mut r, &[3, 4, 4, 3, 3]), None);
    let y1 = g
        .add(Op::DynConv(op.clone()), &[x, coeff, bank1], None)
        .unwrap();
    let a1 = g
        .add(
            Op::Unary(Unary {
                kind: UnaryKind::Relu,
            }),
            &[y1],
            None,
        )
        .unwrap();
    let bank2 = g.add_const(rand_f32(&mut r, &[3, 4, 4, 3, 3]), None);
    let y2 = g.add(Op::DynConv(op), &[a1, coeff, bank2], None).unwrap();
    let s = g
        .add(
            Op::Binary(Binary {
                kind: BinaryKind::Add,
            }),
            &[y2, x],
            None,
        )
        .unwrap();
    let z = g
        .add(
            Op::Unary(Unary {
                kind: UnaryKind::Relu,
            }),
            &[s],
            None,
        )
        .unwrap();
    g.set_output("z", z);
    let p = plan(&g).unwrap();
    assert_eq!(p.scratch.len(), 2);
    check_plan(&g);
    let inputs = [rand_f32(&mut r, &[2, 4, 6, 6]), rand_f32(&mut r, &[2, 3])];
    check_graph(&g, &inputs, "dyn_conv chain");
}

/// A bottleneck's expansion: a 1×1 conv on the GEMM path whose fused residual is the block's
/// input, computed by an earlier kernel and last used here, writes into the residual's buffer
/// (and a 3×3 one likewise, the in-place convolution tile's path); a residual still read
/// after the conv, or that is also the conv's input, keeps its own; the next block's expansion
/// writes into the same buffer again. Every variant runs like
/// the interpreter, bit for bit with and without the micro-kernels.
#[test]
fn a_residual_conv_writes_into_its_residual() {
    let mut r = rng(5);
    let relu = Op::Unary(Unary {
        kind: UnaryKind::Relu,
    });
    for (k, pads, later, itself) in [
        (1, 0, false, false),
        (3, 1, false, false),
        (1, 0, true, false),
        (1, 0, false, true),
    ] {
        let mut g = Graph::new();
        let x = g.add_input("x", dync_ir::TensorType::f32([2, 16, 10, 10]));
        let block = g.add(relu.clone(), &[x], None).unwrap();
        let h = g.add(relu.clone(), &[block], None).unwrap();
        let w = g.add_const(rand_f32(&mut r, &[16, 16, k, k]), None);
        let b = g.add_const(rand_f32(&mut r, &[16]), None);
        let conv = Op::Conv(Conv {
            strides: [1, 1],
            pads: [pads; 4],
            dilations: [1, 1],
            group: 1,
            clamp: None,
            residual: true,
            act: None,
            in_scale: false,
        });
        let input = if itself { block } else { h };
        let y = g.add(conv.clone(), &[input, w, b, block], None).unwrap();
        // The next block: its expansion's residual is `y`, itself written in place.
        let h2 = g.add(relu.clone(), &[y], None).unwrap();
        let y2 = g.add(conv, &[h2, w, b, y], None).unwrap();
        let z = g.add(relu.clone(), &[y2], None).unwrap();
        g.set_output("z", z);
        if later {
            let again = g.add(relu.clone(), &[block], None).unwrap();
            g.set_output("again", again);
        }
        let p = plan(&g).unwrap();
        let what = format!("k{k} later={later} itself={itself}");
        assert_eq!(
            p.in_place.get(&y),
            (!later && !itself).then_some(&block),
            "{what}"
        );
        if p.in_place.contains_key(&y) {
            assert_eq!(p.storage[&y], p.storage[&block], "{what}");
        }
        assert_eq!(p.in_place.get(&y2), Some(&y), "{what}");
        assert_eq!(p.storage[&y2], p.storage[&y], "{what}");
        check_plan(&g);
        let inputs = [rand_f32(&mut r, &[2, 16, 10, 10])];
        check_graph(&g, &inputs, &what);
    }
}
