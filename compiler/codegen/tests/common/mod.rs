//! Helpers of the backend's integration tests: seeded random tensors, one-node graphs, and the
//! comparison of JIT results (checked and unchecked mode) against the reference interpreter.
#![allow(dead_code)]

use dync_codegen::{CodegenOptions, JitModel};
use dync_ir::{DType, Graph, NodeId, Op, Tensor, TensorData, TensorType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform f32 in [-2, 2).
pub fn rand_f32(r: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(
        shape,
        (0..n).map(|_| r.random_range(-2.0f32..2.0)).collect(),
    )
    .unwrap()
}

/// Random tensor of `dtype`: f32 in [-2, 2), ints in [-9, 9], bools.
pub fn rand_tensor(r: &mut ChaCha8Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data = match dtype {
        DType::F32 => return rand_f32(r, shape),
        DType::I64 => TensorData::I64((0..n).map(|_| r.random_range(-9..=9)).collect()),
        DType::I32 => TensorData::I32((0..n).map(|_| r.random_range(-9..=9)).collect()),
        DType::Bool => TensorData::Bool((0..n).map(|_| r.random_bool(0.5)).collect()),
    };
    Tensor::new(shape, data).unwrap()
}

/// An operand of a one-node test graph: a graph input or a constant.
pub enum Arg {
    In(Tensor),
    Const(Tensor),
}

/// A graph computing `op` on `args`, with its output named "y"; returns it with the values of
/// its inputs.
pub fn one_node(op: Op, args: Vec<Arg>) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new();
    let mut ids: Vec<NodeId> = Vec::new();
    let mut inputs = Vec::new();
    for (i, a) in args.into_iter().enumerate() {
        ids.push(match a {
            Arg::In(t) => {
                let id = g.add_input(format!("x{i}"), t.ty());
                inputs.push(t);
                id
            }
            Arg::Const(t) => g.add_const(t, None),
        });
    }
    let y = g
        .add(op, &ids, Some("test_node".into()))
        .expect("valid test node");
    g.set_output("y", y);
    (g, inputs)
}

/// The absolute part of [`assert_close`]'s f32 tolerance for outputs that sum at most about a
/// thousand products.
pub const ATOL: f32 = 1e-5;

/// The absolute tolerance for outputs that each sum `k` products of values of magnitude
/// about 1: the rounding error of an f32 running sum grows as √k (a random walk of roundings
/// of at most half an ulp of the running sum), so [`ATOL`] is scaled by √(k / 1024).
pub fn atol_for_sums_of(k: usize) -> f32 {
    ATOL * (k as f32 / 1024.0).sqrt().max(1.0)
}

/// |got − want| <= atol + 1e-4·|want| for f32 (NaNs and infinities must match), exact for
/// integers and bools.
pub fn assert_close(got: &Tensor, want: &Tensor, atol: f32, what: &str) {
    assert_eq!(got.ty(), want.ty(), "{what}: types differ");
    match (got.data(), want.data()) {
        (TensorData::F32(a), TensorData::F32(b)) => {
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                let ok =
                    (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= atol + 1e-4 * y.abs();
                assert!(
                    ok,
                    "{what}: element {i}: jit {x}, interp {y} (shape {:?})",
                    got.shape()
                );
            }
        }
        (a, b) => assert_eq!(a, b, "{what}"),
    }
}

/// Runs `g` with the JIT (unchecked with the runtime's micro-kernels, unchecked on the pure
/// Cranelift path, checked) and the interpreter, and compares every output; the micro-kernel
/// and pure Cranelift runs must agree bit for bit (every micro-kernel computes its Cranelift
/// counterpart's operations in the same order, so that a compiled model gives the same
/// results with and without the runtime); on a CPU with AVX2, also with the AVX2 table (the
/// best table of a CPU without AVX-512, which lacks some kernels). Returns the JIT outputs.
pub fn check_graph(g: &Graph, inputs: &[Tensor], what: &str) -> Vec<Tensor> {
    check_graph_within(g, inputs, ATOL, what)
}

/// [`check_graph`] with the absolute tolerance `atol` (see [`atol_for_sums_of`]).
pub fn check_graph_within(g: &Graph, inputs: &[Tensor], atol: f32, what: &str) -> Vec<Tensor> {
    let want = dync_interp::run(g, inputs).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let mut last: Vec<Tensor> = Vec::new();
    for (checked, no_ukernels) in [(false, false), (false, true), (true, false)] {
        let opts = CodegenOptions {
            checked,
            no_ukernels,
            ..Default::default()
        };
        let how = format!("checked={checked}, no_ukernels={no_ukernels}");
        let m =
            JitModel::compile(g, &opts).unwrap_or_else(|e| panic!("{what}: compile ({how}): {e}"));
        let got = m
            .run(inputs)
            .unwrap_or_else(|e| panic!("{what}: run ({how}): {e}"));
        assert_eq!(got.len(), want.len());
        for (gt, wt) in got.iter().zip(&want) {
            assert_close(gt, wt, atol, &format!("{what} ({how})"));
        }
        if no_ukernels {
            for (pure, micro) in got.iter().zip(&last) {
                let same = match (pure.as_f32(), micro.as_f32()) {
                    (Some(a), Some(b)) => a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    _ => pure == micro,
                };
                assert!(
                    same,
                    "{what}: the micro-kernels' bits differ from pure Cranelift's"
                );
            }
        }
        last = got;
    }
    // The AVX2 table where the CPU has it, whatever the best one is: its GEMM tile, and the
    // compiler's own code where it has no kernel (the in-place convolution tile, the
    // depthwise and matrix-vector kernels).
    if let Some(avx2) = dync_runtime::ukernel::table(dync_runtime::ukernel::Isa::Avx2) {
        let mut m = JitModel::compile(g, &CodegenOptions::default())
            .unwrap_or_else(|e| panic!("{what}: compile (AVX2 table): {e}"));
        m.ctx_mut().ukernels = avx2;
        let got = m
            .run(inputs)
            .unwrap_or_else(|e| panic!("{what}: run (AVX2 table): {e}"));
        for (gt, wt) in got.iter().zip(&want) {
            assert_close(gt, wt, atol, &format!("{what} (AVX2 table)"));
        }
    }
    last
}

/// [`check_graph`] of a one-node graph.
pub fn check_op(op: Op, args: Vec<Arg>, what: &str) {
    check_op_within(op, args, ATOL, what);
}

/// [`check_op`] with the absolute tolerance `atol` (see [`atol_for_sums_of`]).
pub fn check_op_within(op: Op, args: Vec<Arg>, atol: f32, what: &str) {
    let (g, inputs) = one_node(op, args);
    check_graph_within(&g, &inputs, atol, what);
}

/// The type of `t`, for building graphs.
pub fn ty(t: &Tensor) -> TensorType {
    t.ty()
}
