//! The verifier on graphs built through the API, including states the text form cannot express
//! (operand ports with gaps, signature entries naming non-input or missing nodes, types that
//! disagree with a const's or an input's own type), and where `print_with_errors` puts errors.

use dync_ir::ops::*;
use dync_ir::verify::SIGNATURE;
use dync_ir::{
    parse, print_with_errors, verify, Graph, NodeId, Op, Tensor, TensorType, VerifyError,
};
use std::sync::Arc;

fn errors(g: &Graph) -> Vec<VerifyError> {
    match verify(g) {
        Ok(()) => panic!("the verifier accepted the graph"),
        Err(e) => e,
    }
}

fn relu() -> Op {
    Op::Unary(Unary {
        kind: UnaryKind::Relu,
    })
}

fn input_graph() -> (Graph, NodeId) {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([2, 3]));
    (g, x)
}

#[test]
fn operand_ports_must_be_dense() {
    let (mut g, x) = input_graph();
    let y = g.add_typed(relu(), &[], TensorType::f32([2, 3]), Some("/Relu".into()));
    g.set_operand(y, 1, x);
    g.set_output("y", y);
    let e = errors(&g);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].value, e[0].op.as_str(), e[0].origin.as_deref()),
        (1, "unary", Some("/Relu"))
    );
    assert!(
        e[0].message.contains("ports [1] are not 0..1"),
        "{}",
        e[0].message
    );
    assert_eq!(
        e[0].to_string(),
        format!("%1 (unary from \"/Relu\"): {}", e[0].message)
    );
}

#[test]
fn arity_is_checked_before_inference() {
    let (mut g, x) = input_graph();
    let y = g.add_typed(Op::MatMul(MatMul), &[x], TensorType::f32([2, 3]), None);
    g.set_output("y", y);
    let e = errors(&g);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].message, "`matmul` takes 2 operands, got 1");
}

#[test]
fn signature_must_list_input_nodes_that_exist() {
    let (mut g, x) = input_graph();
    let c = g.add_const(Tensor::scalar_f32(1.0), None);
    g.inputs.push(("c".into(), c));
    g.inputs.push(("ghost".into(), NodeId::new(1000)));
    g.set_output("x", x);
    let e = errors(&g);
    let messages: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("input \"c\" is %1, a `const` node"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("input \"ghost\" refers to %2, which no node defines"),
        "{messages:?}"
    );
    assert!(e.iter().all(|e| e.op == SIGNATURE));
}

#[test]
fn declared_types_must_match_the_ops_own_types() {
    let (mut g, x) = input_graph();
    // An input whose node type was changed, and consts whose node or value type disagree.
    g.node_mut(x).ty = TensorType::f32([3, 2]);
    let c = g.add_const(Tensor::scalar_f32(1.0), None);
    g.node_mut(c).ty = TensorType::f32([1]);
    let bad_value = Const {
        ty: TensorType::f32([2]),
        value: Some(Arc::new(Tensor::scalar_f32(2.0))),
        blob_hash: None,
    };
    let v = g.add_typed(Op::Const(bad_value), &[], TensorType::f32([2]), None);
    g.set_output("x", x);
    g.set_output("c", c);
    g.set_output("v", v);
    let e = errors(&g);
    let messages: Vec<(usize, &str)> = e.iter().map(|e| (e.value, e.message.as_str())).collect();
    assert_eq!(
        messages,
        [
            (0, "declared type f32[3,2] but the operands give f32[2,3]"),
            (1, "declared type f32[1] but the operands give f32[]"),
            (2, "value has type f32[] but is declared f32[2]"),
        ]
    );
    // The input's error has no instruction line, so it goes under the header.
    let shown = print_with_errors(&g, &e);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].starts_with("graph(%0: f32[3,2] \"x\")"), "{shown}");
    assert_eq!(
        lines[1], "; error: declared type f32[3,2] but the operands give f32[2,3]",
        "{shown}"
    );
    assert_eq!(
        lines[3], "  ; error: declared type f32[1] but the operands give f32[]",
        "{shown}"
    );
}

#[test]
fn oversized_types_are_rejected() {
    let mut g = Graph::new();
    let huge = TensorType::f32([1 << 40, 1 << 40]);
    let x = g.add_input("x", huge.clone());
    let y = g.add_typed(relu(), &[x], huge, None);
    g.set_output("y", y);
    let e = errors(&g);
    assert_eq!(
        e.iter().map(|e| e.value).collect::<Vec<_>>(),
        [0, 1],
        "{e:?}"
    );
    assert!(e[0].message.contains("too large"), "{}", e[0].message);
}

#[test]
fn every_problem_is_reported_in_value_order() {
    let text = "graph(%0: f32[4] \"x\") -> (\"a\" = %4, \"a\" = %9) {\n  %1 = unary %0 {kind=relu} : f32[5]\n  %2 = binary %3, %0 {kind=add} : f32[4]\n  %3 = unary %2 {kind=neg} : f32[4]\n  %4 = softmax %0 {axis=2} : f32[4] loc(\"/Softmax\")\n}\n";
    let g = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let e = errors(&g);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.value, e.op.as_str())).collect();
    // Signature errors first (duplicate name, dangling output), then nodes by number.
    assert_eq!(
        got,
        [
            (5, "graph"),
            (5, "graph"),
            (1, "unary"),
            (2, "binary"),
            (4, "softmax")
        ]
    );
    assert_eq!(e[4].origin.as_deref(), Some("/Softmax"));
    assert!(
        e[3].message.contains("cycle through %2, %3"),
        "{}",
        e[3].message
    );
    let shown = print_with_errors(&g, &e);
    let expected_order = [
        "graph(",
        "; error: output name \"a\" is used twice",
        "; error: output \"a\" refers to %5",
        "  %1 = unary",
        "  ; error: declared type f32[5]",
        "  %2 = binary",
        "  ; error: lies on a cycle",
        "  %3 = unary",
        "  %4 = softmax",
        "  ; error: softmax axis 2 out of range",
        "}",
    ];
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), expected_order.len(), "{shown}");
    for (line, prefix) in lines.iter().zip(expected_order) {
        assert!(
            line.starts_with(prefix),
            "`{line}` should start with `{prefix}`:\n{shown}"
        );
    }
}

#[test]
fn a_node_downstream_of_a_cycle_is_not_on_it() {
    let (mut g, x) = input_graph();
    let t = TensorType::f32([2, 3]);
    let a = g.add_typed(relu(), &[], t.clone(), None);
    let b = g.add_typed(relu(), &[a], t.clone(), None);
    g.set_operand(a, 0, b);
    let after = g.add_typed(relu(), &[b], t.clone(), None);
    let self_loop = g.add_typed(
        Op::Binary(Binary {
            kind: BinaryKind::Add,
        }),
        &[x],
        t,
        None,
    );
    g.set_operand(self_loop, 1, self_loop);
    g.set_output("y", after);
    g.set_output("z", self_loop);
    assert!(g.topo_order().is_err());
    let e = errors(&g);
    let cycles: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        cycles,
        [
            "lies on a cycle through %1, %2",
            "lies on a cycle through %4"
        ]
    );
}

#[test]
fn a_long_cycle_does_not_overflow_the_stack() {
    let (mut g, x) = input_graph();
    let t = TensorType::f32([2, 3]);
    let first = g.add_typed(
        Op::Binary(Binary {
            kind: BinaryKind::Add,
        }),
        &[x],
        t.clone(),
        None,
    );
    let mut last = first;
    for _ in 0..30_000 {
        last = g.add_typed(relu(), &[last], t.clone(), None);
    }
    g.set_operand(first, 1, last);
    g.set_output("y", last);
    let e = errors(&g);
    assert_eq!(e.len(), 1);
    let shown = "lies on a cycle through %1, %2, %3, %4, %5, %6, %7, %8, and 29993 more";
    assert_eq!(e[0].message, shown);
    let text = dync_ir::print(&g);
    assert_eq!(
        dync_ir::parse(&text).map(|p| p.node_count()),
        Ok(g.node_count())
    );
}

#[test]
fn topo_order_names_a_node_on_the_cycle() {
    let (mut g, x) = input_graph();
    let t = TensorType::f32([2, 3]);
    // x -> p -> (q <-> r) -> s: the node reported must be q or r, not p or s.
    let p = g.add_typed(relu(), &[x], t.clone(), None);
    let q = g.add_typed(
        Op::Binary(Binary {
            kind: BinaryKind::Add,
        }),
        &[p],
        t.clone(),
        None,
    );
    let r = g.add_typed(relu(), &[q], t.clone(), None);
    g.set_operand(q, 1, r);
    let s = g.add_typed(relu(), &[r], t, None);
    g.set_output("s", s);
    match g.topo_order() {
        Ok(order) => panic!("no cycle found: {order:?}"),
        Err(n) => assert!(n == q || n == r, "{n:?} is not on the cycle"),
    }
}

#[test]
fn valid_graphs_pass() {
    let (mut g, x) = input_graph();
    let w = g.add_const(
        Tensor::from_f32([3, 4], vec![0.5; 12]).unwrap_or_else(|e| panic!("{e}")),
        None,
    );
    let y = g
        .add(Op::MatMul(MatMul), &[x, w], None)
        .unwrap_or_else(|e| panic!("{e}"));
    g.set_output("y", y);
    assert_eq!(verify(&g), Ok(()));
    assert_eq!(print_with_errors(&g, &[]), dync_ir::print(&g));
}
