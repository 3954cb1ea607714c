//! The text form round-trips: `print(parse(print(g))) == print(g)`, and `parse(print(g))` is `g`
//! up to node ids and const data above the inline limit; for hand-built graphs, graphs inserted
//! out of order, invalid graphs (cycles, dangling outputs), and random valid graphs.

mod common;

use common::{add_const, assert_same_graph, assert_verifies, random_graph, Chooser};
use dync_ir::ops::*;
use dync_ir::{parse, print, verify, DType, Graph, Op, Tensor, TensorType};
use proptest::prelude::*;

/// Checks both round-trip properties and returns the printed text.
fn round_trip(g: &Graph) -> String {
    let text = print(g);
    let parsed = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(print(&parsed), text);
    assert_same_graph(g, &parsed);
    text
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn hand_built_block_round_trips() {
    let mut g = Graph::new();
    let x = g.add_input("input \"0\"", TensorType::f32([1, 4, 8, 8]));
    let w = ok(Tensor::from_f32(
        [4, 1, 3, 3],
        (0..36).map(|i| i as f32 * 0.5 - 3.0).collect(),
    ));
    let w = g.add_const(w, Some("dw.weight".into()));
    let b = g.add_const(
        ok(Tensor::from_f32([4], vec![0.1, f32::NAN, -0.0, 1e-30])),
        Some("☃".into()),
    );
    let conv = Conv {
        strides: [2, 1],
        pads: [1, 0, 1, 2],
        dilations: [1, 2],
        group: 4,
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    };
    let y = ok(g.add(Op::Conv(conv), &[x, w, b], Some("/dw/Conv".into())));
    let clip = Unary {
        kind: UnaryKind::Clip { min: 0.0, max: 6.0 },
    };
    let y = ok(g.add(Op::Unary(clip), &[y], None));
    let mean = Reduce {
        kind: ReduceKind::Mean,
        axes: vec![2, 3],
        keepdims: false,
    };
    let pooled = ok(g.add(Op::Reduce(mean), &[y], Some("gap\n".into())));
    g.set_output("features", y);
    g.set_output("pooled", pooled);
    assert_verifies(&g);
    let text = round_trip(&g);
    // conv rows: (8 + 1 + 1 - 3) / 2 + 1 = 4; columns: (8 + 0 + 2 - 5) / 1 + 1 = 6.
    assert!(text.contains(": f32[1,4,4,6]"), "{text}");
    assert!(
        text.contains("blob("),
        "36 weights exceed the inline limit:\n{text}"
    );
    assert!(text.contains("[0.1, NaN, -0.0, 1e-30]"), "{text}");
}

#[test]
fn large_consts_print_their_content_hash_and_parse_without_data() {
    let mut g = Graph::new();
    let small = ok(Tensor::from_i64(
        [INLINE_LIMIT],
        (0..INLINE_LIMIT as i64).collect(),
    ));
    let big = ok(Tensor::from_i64(
        [INLINE_LIMIT + 1],
        (0..=INLINE_LIMIT as i64).collect(),
    ));
    let hash = big.content_hash();
    let s = g.add_const(small, None);
    let b = g.add_const(big, None);
    g.set_output("s", s);
    g.set_output("b", b);
    let text = round_trip(&g);
    assert!(text.contains(&format!("blob({hash:016x})")), "{text}");
    let parsed = ok(parse(&text));
    let ids: Vec<_> = parsed.outputs.iter().map(|(_, id)| *id).collect();
    assert!(
        parsed.const_value(ids[0]).is_some(),
        "the inline const keeps its data"
    );
    match &parsed.node(ids[1]).op {
        Op::Const(c) => {
            assert!(c.value.is_none());
            assert_eq!(c.blob_hash, Some(hash));
        }
        other => panic!("expected a const, got {other:?}"),
    }
    // A data-less const passes the verifier (it has a type) and prints its hash again.
    assert_verifies(&parsed);
}

#[test]
fn content_hash_depends_on_data_shape_and_dtype() {
    let a = ok(Tensor::from_f32([2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    let hashes = [
        a.content_hash(),
        ok(Tensor::from_f32([4], vec![1.0, 2.0, 3.0, 4.0])).content_hash(),
        ok(Tensor::from_f32([2, 2], vec![1.0, 2.0, 3.0, 5.0])).content_hash(),
        ok(Tensor::from_i64([2, 2], vec![1, 2, 3, 4])).content_hash(),
    ];
    for i in 0..hashes.len() {
        for j in 0..i {
            assert_ne!(hashes[i], hashes[j], "tensors {i} and {j}");
        }
    }
    assert_eq!(a.content_hash(), a.clone().content_hash());
}

#[test]
fn out_of_order_insertion_prints_topologically_and_stably() {
    // Nodes inserted users-first: the printer numbers them in dependency order, ties broken by
    // insertion order, and the parsed graph (inserted in print order) prints the same.
    let mut g = Graph::new();
    let t = TensorType::f32([3]);
    let relu = Op::Unary(Unary {
        kind: UnaryKind::Relu,
    });
    let neg = Op::Unary(Unary {
        kind: UnaryKind::Neg,
    });
    let add = Op::Binary(Binary {
        kind: BinaryKind::Add,
    });
    let sum = g.add_typed(add, &[], t.clone(), None);
    let b = g.add_typed(neg, &[], t.clone(), Some("b".into()));
    let a = g.add_typed(relu, &[], t.clone(), Some("a".into()));
    let x = g.add_input("x", t.clone());
    g.set_operand(a, 0, x);
    g.set_operand(b, 0, x);
    g.set_operand(sum, 0, a);
    g.set_operand(sum, 1, b);
    g.set_output("y", sum);
    assert_verifies(&g);
    let text = round_trip(&g);
    let expected = "graph(%0: f32[3] \"x\") -> (\"y\" = %3) {\n  %1 = unary %0 {kind=neg} : f32[3] loc(\"b\")\n  %2 = unary %0 {kind=relu} : f32[3] loc(\"a\")\n  %3 = binary %2, %1 {kind=add} : f32[3]\n}\n";
    assert_eq!(text, expected);
}

#[test]
fn topo_order_of_a_graph_inserted_in_order_is_insertion_order() {
    let mut c_bits = Vec::new();
    for i in 0..200u32 {
        c_bits.push(i.wrapping_mul(2654435761));
    }
    let g = random_graph(&c_bits);
    let parsed = ok(parse(&print(&g)));
    let order = parsed
        .topo_order()
        .unwrap_or_else(|n| panic!("cycle at {n:?}"));
    let inserted: Vec<_> = parsed.node_ids().collect();
    assert_eq!(order, inserted);
}

#[test]
fn invalid_graphs_round_trip_too() {
    // A cycle, a self-loop, an unlisted input node, a dangling output: the verifier rejects
    // them, but the text still shows and preserves them.
    let text = "graph(%0: f32[2] \"x\", %0: f32[2] \"x again\") -> (\"y\" = %1, \"gone\" = %9, \"gone2\" = %9) {\n  %1 = binary %0, %2 {kind=add} : f32[2]\n  %2 = unary %1 {kind=relu} : f32[2]\n  %3 = unary %3 {kind=neg} : f32[2]\n  %4 = input : f32[2]\n  %5 = const f32[3] [1.0, 2.0] loc(\"short\")\n}\n";
    let g = ok(parse(text));
    let errors = verify(&g).expect_err("the graph is invalid");
    assert!(errors.len() >= 6, "{errors:?}");
    let printed = print(&g);
    assert_eq!(printed.replace("%9", "%6"), text.replace("%9", "%6"));
    assert_eq!(print(&ok(parse(&printed))), printed);
}

#[test]
fn every_op_round_trips_with_odd_attribute_values() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([1, 2, 3, 3]));
    let mut c_bits: Vec<u32> = (0..64).collect();
    c_bits.reverse();
    let mut c = Chooser::new(&c_bits);
    let ops: Vec<(Op, Vec<_>)> = vec![
        (
            Op::Unary(Unary {
                kind: UnaryKind::HardSigmoid {
                    alpha: 1e-38,
                    beta: -0.0,
                },
            }),
            vec![x],
        ),
        (
            Op::Unary(Unary {
                kind: UnaryKind::LeakyRelu {
                    alpha: f32::MIN_POSITIVE,
                },
            }),
            vec![x],
        ),
        (
            Op::Pad(Pad {
                pads: vec![0, 0, -1, 2, 0, 0, 0, -2],
                mode: PadMode::Constant,
                value: f32::NEG_INFINITY,
            }),
            vec![x],
        ),
        (
            Op::Einsum(Einsum {
                equation: "n c h w -> n (c) \"hw\"".into(),
            }),
            vec![x],
        ),
        (Op::Cast(Cast { to: DType::Bool }), vec![x]),
        (
            Op::Resize(Resize {
                mode: ResizeMode::Linear,
                coord: CoordMode::HalfPixelSymmetric,
                nearest: NearestMode::Ceil,
                sizes: vec![1, 2, 7, 1],
                scales: vec![1.0, 1.0, 2.3333333, 0.33333334],
            }),
            vec![x],
        ),
    ];
    for (op, operands) in ops {
        // Add with declared types: an einsum with a malformed equation still round-trips.
        let ty = g.ty(x).clone();
        let id = g.add_typed(op, &operands, ty, c.origin());
        g.set_output(format!("o{}", g.outputs.len()), id);
    }
    let w = add_const(&mut g, &mut c, TensorType::new(DType::I32, [2, 2]));
    g.set_output("w", w);
    round_trip(&g);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random valid graphs verify, and print → parse → print is the identity.
    #[test]
    fn random_graphs_round_trip(bits in prop::collection::vec(any::<u32>(), 0..160)) {
        let g = random_graph(&bits);
        assert_verifies(&g);
        let text = round_trip(&g);
        assert_verifies(&ok(parse(&text)));
    }
}

#[test]
fn random_graphs_cover_every_op() {
    // The generator must reach every op, or the property above tests less than it claims.
    let mut seen = std::collections::BTreeSet::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        let bits: Vec<u32> = (0..160)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u32
            })
            .collect();
        let g = random_graph(&bits);
        for id in g.node_ids() {
            seen.insert(g.node(id).op.name());
        }
    }
    let missing: Vec<_> = Op::NAMES.iter().filter(|n| !seen.contains(*n)).collect();
    assert!(missing.is_empty(), "ops never generated: {missing:?}");
}
