//! The JIT's contract around the generated code: inputs are validated against the graph
//! (count, dtype, shape) with errors naming the input, graphs that do not verify or hold
//! constants without data are rejected at compile time naming the node, outputs that are
//! inputs or constants are copied, and the plan's sizes are reported.

mod common;

use common::*;
use dync_codegen::{CodegenError, CodegenOptions, JitModel};
use dync_ir::ops::*;
use dync_ir::{Graph, Op, Tensor, TensorType};

fn relu_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([2, 3]));
    let y = g
        .add(
            Op::Unary(Unary {
                kind: UnaryKind::Relu,
            }),
            &[x],
            None,
        )
        .unwrap();
    g.set_output("y", y);
    g
}

#[test]
fn inputs_are_validated() {
    let m = JitModel::compile(&relu_graph(), &CodegenOptions::default()).unwrap();
    let good = Tensor::from_f32([2, 3], vec![1.0; 6]).unwrap();
    assert!(matches!(
        m.run(&[]),
        Err(CodegenError::InputCount {
            expected: 1,
            got: 0
        })
    ));
    assert!(matches!(
        m.run(&[good.clone(), good.clone()]),
        Err(CodegenError::InputCount { .. })
    ));
    let shape = Tensor::from_f32([3, 2], vec![1.0; 6]).unwrap();
    let e = m.run(&[shape]).unwrap_err().to_string();
    assert!(
        e.contains("input `x`") && e.contains("f32[2,3]") && e.contains("f32[3,2]"),
        "{e}"
    );
    let dtype = Tensor::from_i64([2, 3], vec![1; 6]).unwrap();
    assert!(matches!(m.run(&[dtype]), Err(CodegenError::Input { .. })));
    assert_eq!(m.run(&[good]).unwrap()[0].as_f32().unwrap(), &[1.0; 6]);
}

#[test]
fn constants_without_data_are_named() {
    // As parsed from IR text whose weights were elided (`blob(...)`).
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([3]));
    let w = g.add_const(
        Tensor::from_f32([3], vec![0.0; 3]).unwrap(),
        Some("weights".into()),
    );
    if let Op::Const(c) = &mut g.node_mut(w).op {
        c.blob_hash = c.value.take().map(|v| v.content_hash());
    }
    let y = g
        .add(
            Op::Binary(Binary {
                kind: BinaryKind::Add,
            }),
            &[x, w],
            None,
        )
        .unwrap();
    g.set_output("y", y);
    let e = JitModel::compile(&g, &CodegenOptions::default())
        .err()
        .expect("rejected")
        .to_string();
    assert!(e.contains("no data") && e.contains("weights"), "{e}");
}

#[test]
fn outputs_that_are_inputs_or_constants_are_copied() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::f32([3]));
    let c = g.add_const(Tensor::from_f32([3], vec![7.0, 8.0, 9.0]).unwrap(), None);
    let y = g
        .add(
            Op::Binary(Binary {
                kind: BinaryKind::Add,
            }),
            &[x, c],
            None,
        )
        .unwrap();
    let v = g
        .add(Op::Reshape(Reshape { shape: vec![1, 3] }), &[y], None)
        .unwrap();
    g.set_output("same_as_input", x);
    g.set_output("constant", c);
    g.set_output("sum", y);
    g.set_output("sum_view", v);
    g.set_output("sum_again", y);
    let input = Tensor::from_f32([3], vec![1.0, 2.0, 3.0]).unwrap();
    let out = check_graph(&g, &[input], "copied outputs");
    assert_eq!(out[2].as_f32().unwrap(), &[8.0, 10.0, 12.0]);
    let m = JitModel::compile(&g, &CodegenOptions::default()).unwrap();
    assert_eq!(
        m.arena_bytes(),
        0,
        "every computed value lives in an output buffer"
    );
    assert_eq!(m.weight_bytes(), 64);
}

#[test]
fn graphs_that_do_not_verify_are_rejected() {
    let mut g = relu_graph();
    let x = g.inputs[0].1;
    g.node_mut(x).ty = TensorType::f32([5]);
    assert!(matches!(
        JitModel::compile(&g, &CodegenOptions::default()),
        Err(CodegenError::Verify(_))
    ));
}
