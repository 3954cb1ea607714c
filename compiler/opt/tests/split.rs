//! `split_batch`: a batched graph's prefix run image by image computes, bit for bit, what the
//! batched graph computes (the interpreter on both), and only the prefix is split: the layer
//! whose weights outweigh its activations runs once for the batch.

mod common;

use common::inputs;
use dync_ir::ops::Const;
use dync_ir::{parse, Graph, Op, Tensor};
use dync_opt::{PassManager, PrintAfter};

/// Conv, Relu, a squeeze-excite scaling whose reshape spells the batch, a 3×3 stride-2 conv
/// with a fused residual-free bias, a global average, then a classifier.
const GRAPH: &str = r#"graph(%0: f32[3,3,16,16] "x") -> ("y" = %13) {
  %1 = const f32[8,3,3,3] blob(0000000000000001) loc("conv.weight")
  %2 = const f32[8] blob(0000000000000002) loc("conv.bias")
  %3 = conv %0, %1, %2 {strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1} : f32[3,8,16,16] loc("/conv/Conv")
  %4 = unary %3 {kind=relu} : f32[3,8,16,16] loc("/relu/Relu")
  %5 = reduce %4 {kind=mean, axes=[2, 3], keepdims=false} : f32[3,8] loc("/se/ReduceMean")
  %6 = reshape %5 {shape=[3, 8, 1, 1]} : f32[3,8,1,1] loc("/se/Reshape")
  %7 = unary %6 {kind=sigmoid} : f32[3,8,1,1] loc("/se/Sigmoid")
  %8 = binary %4, %7 {kind=mul} : f32[3,8,16,16] loc("/se/Mul")
  %9 = const f32[8,8,3,3] blob(0000000000000004) loc("down.weight")
  %10 = conv %8, %9 {strides=[2, 2], pads=[1, 1, 1, 1], dilations=[1, 1], group=1} : f32[3,8,8,8] loc("/down/Conv")
  %11 = reduce %10 {kind=mean, axes=[2, 3], keepdims=false} : f32[3,8] loc("/pool/ReduceMean")
  %12 = const f32[100,8] blob(0000000000000003) loc("fc.weight")
  %13 = gemm %11, %12 {alpha=1.0, beta=1.0, trans_a=false, trans_b=true} : f32[3,100] loc("/fc/Gemm")
}
"#;

/// `GRAPH` with seeded values in place of its data-less constants.
fn graph() -> Graph {
    let mut g = parse(GRAPH).unwrap_or_else(|e| panic!("{e}"));
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let consts: Vec<_> = g
        .node_ids()
        .filter(|&n| matches!(g.node(n).op, Op::Const(_)))
        .collect();
    for c in consts {
        let shape = g.ty(c).shape.clone();
        let v = (0..shape.iter().product::<usize>())
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let t = Tensor::from_f32(shape, v).unwrap_or_else(|e| panic!("{e}"));
        g.node_mut(c).op = Op::Const(Const::new(t));
    }
    g
}

fn count(g: &Graph, name: &str) -> usize {
    g.node_ids()
        .filter(|&n| g.node(n).op.name() == name)
        .count()
}

fn split(g: &mut Graph, min_bytes: usize) -> bool {
    let pass = dync_opt::lookup(&format!("split_batch={min_bytes}"))
        .unwrap_or_else(|| panic!("split_batch={min_bytes} is a pass"));
    PassManager::new(PrintAfter::None)
        .run(pass.as_ref(), g)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_prefix_runs_per_image_with_the_same_bits() {
    let g0 = graph();
    let mut g = g0.clone();
    assert!(
        split(&mut g, 4096),
        "the prefix (largest value 24 KB) splits"
    );
    // Three copies of both convs, one slice of the input per image, one concat of the pooled
    // vectors; the classifier stays one op for the batch.
    assert_eq!((count(&g, "conv"), count(&g, "slice")), (6, 3));
    assert_eq!((count(&g, "concat"), count(&g, "gemm")), (1, 1));
    let x = inputs(&g0, 7);
    let want = dync_interp::run(&g0, &x).unwrap_or_else(|e| panic!("{e}"));
    let got = dync_interp::run(&g, &x).unwrap_or_else(|e| panic!("{e}"));
    let bits = |t: &[Tensor]| -> Vec<Vec<u32>> {
        t.iter()
            .map(|t| {
                t.as_f32()
                    .unwrap_or_default()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            })
            .collect()
    };
    assert_eq!(bits(&got), bits(&want));
}

#[test]
fn small_batches_and_single_images_stay() {
    let mut g = graph();
    assert!(!split(&mut g, 64 << 10), "no value reaches 64 KB");
    let one = GRAPH
        .replace("f32[3,", "f32[1,")
        .replace("shape=[3,", "shape=[1,");
    let mut g = parse(&one).unwrap_or_else(|e| panic!("{e}"));
    assert!(!split(&mut g, 1), "batch 1 has nothing to split");
}
