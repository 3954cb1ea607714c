//! Helpers shared by the recognition tests: import ONNX bytes, run the pipeline, count what the
//! recognizers produced and compare the optimized graph with the interpreter on the original.

#![allow(dead_code)]

use dync_ir::{Graph, Op, Tensor};
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model_bytes, Limits};
use std::collections::BTreeMap;

/// Imports ONNX `bytes`, fixing the graph inputs' shapes when `shapes` names them.
pub fn import_bytes(bytes: &[u8], shapes: &[(&str, Vec<usize>)]) -> Graph {
    let m = load_model_bytes(bytes, None, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let opts = ImportOptions {
        input_shapes: shapes
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    import(&m, &opts).unwrap_or_else(|e| panic!("{e}")).graph
}

/// Seeded inputs uniform in [-1, 1) for every graph input.
pub fn inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    g.inputs
        .iter()
        .map(|(_, id)| {
            let shape = g.ty(*id).shape.clone();
            let n: usize = shape.iter().product();
            let v = (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect();
            Tensor::from_f32(shape, v).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// Number of `dyn_conv` ops.
pub fn dyn_convs(g: &Graph) -> usize {
    g.node_ids()
        .filter(|&n| matches!(g.node(n).op, Op::DynConv(_)))
        .count()
}

/// Number of `conv` ops whose weight is computed (dynamic convs left as generic ops).
pub fn computed_weight_convs(g: &Graph) -> usize {
    g.node_ids()
        .filter(|&n| {
            matches!(g.node(n).op, Op::Conv(_)) && g.const_value(g.operands(n)[1]).is_none()
        })
        .count()
}

/// Runs the pipeline; returns the remarks as text.
pub fn optimize(g: &mut Graph) -> Vec<String> {
    let pm = dync_opt::optimize(g, &dync_opt::Options::default()).unwrap_or_else(|e| panic!("{e}"));
    pm.cx.remarks.iter().map(|r| r.to_string()).collect()
}

/// Asserts |got − want| ≤ atol + rtol·|want| elementwise.
pub fn assert_close(got: &[Tensor], want: &[Tensor], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.shape(), b.shape(), "{what}: output {k} shape");
        let (a, b) = (
            a.as_f32()
                .unwrap_or_else(|| panic!("{what}: output {k} is not f32")),
            b.as_f32()
                .unwrap_or_else(|| panic!("{what}: output {k} is not f32")),
        );
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= atol + rtol * y.abs(),
                "{what}: output {k} element {i}: optimized {x}, original {y}"
            );
        }
    }
}

/// Imports, optimizes and checks: the optimized outputs equal the interpreter on the original
/// graph. Returns (optimized graph, remarks).
pub fn optimize_and_compare(
    bytes: &[u8],
    shapes: &[(&str, Vec<usize>)],
    what: &str,
) -> (Graph, Vec<String>) {
    let g0 = import_bytes(bytes, shapes);
    let x = inputs(&g0, 42);
    let want = dync_interp::run(&g0, &x).unwrap_or_else(|e| panic!("{what}: original: {e}"));
    let mut g = g0;
    let remarks = optimize(&mut g);
    let got = dync_interp::run(&g, &x).unwrap_or_else(|e| panic!("{what}: optimized: {e}"));
    assert_close(&got, &want, 1e-4, 1e-3, what);
    (g, remarks)
}
