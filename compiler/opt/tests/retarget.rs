//! `retarget_batch` (`--batch N`): per-sample graphs re-targeted from batch 2 to 1, 3 and 5
//! compute, per sample, what the original graph computes for that sample (the interpreter on
//! the original, fed the samples in groups of 2); graphs with an op that mixes samples are
//! rejected with an error naming the value, op and ONNX node; every zoo dynamic network (both
//! forms, both exporter styles) exported at batch 2 re-targets to 5 after recognition, and the
//! literal pipeline's batch-as-groups reshape is named instead.

mod common;

use common::{assert_close, import_bytes, inputs};
use dync::zoo::{self, Batch, Exporter, Form};
use dync_ir::{parse, Graph, Tensor};
use dync_opt::{PassError, PassManager, PrintAfter};

/// Sample `i` of `t` along axis 0.
fn sample(t: &Tensor, i: usize) -> Tensor {
    let b = t.shape()[0];
    let per = t.len() / b;
    let v = t.as_f32().unwrap_or_else(|| panic!("inputs are f32"));
    let mut shape = t.shape().to_vec();
    shape[0] = 1;
    Tensor::from_f32(shape, v[i * per..(i + 1) * per].to_vec()).unwrap_or_else(|e| panic!("{e}"))
}

/// Samples concatenated along axis 0.
fn stack(ts: &[Tensor]) -> Tensor {
    let mut shape = ts[0].shape().to_vec();
    shape[0] = ts.iter().map(|t| t.shape()[0]).sum();
    let v: Vec<f32> = ts
        .iter()
        .flat_map(|t| {
            t.as_f32()
                .unwrap_or_else(|| panic!("outputs are f32"))
                .to_vec()
        })
        .collect();
    Tensor::from_f32(shape, v).unwrap_or_else(|e| panic!("{e}"))
}

/// The original graph `g0` (batch `b`) run on consecutive groups of `b` samples of `x` (the
/// last group padded with its last sample), each output cut back to the samples: the
/// per-sample reference for `x`'s batch.
fn per_sample_reference(g0: &Graph, x: &[Tensor], what: &str) -> Vec<Tensor> {
    let b = g0.ty(g0.inputs[0].1).shape[0];
    let n = x[0].shape()[0];
    let mut rows: Vec<Vec<Tensor>> = Vec::new();
    for start in (0..n).step_by(b) {
        let group: Vec<usize> = (start..start + b).map(|i| i.min(n - 1)).collect();
        let xg: Vec<Tensor> = x
            .iter()
            .map(|t| stack(&group.iter().map(|&i| sample(t, i)).collect::<Vec<_>>()))
            .collect();
        let out = dync_interp::run(g0, &xg).unwrap_or_else(|e| panic!("{what}: original: {e}"));
        for (k, t) in out.iter().enumerate() {
            if rows.len() <= k {
                rows.push(Vec::new());
            }
            rows[k].extend((0..(n - start).min(b)).map(|i| sample(t, i)));
        }
    }
    rows.iter().map(|r| stack(r)).collect()
}

/// Runs `retarget_batch=n` on `g` (through the manager, so that folding and DCE follow).
fn retarget(g: &mut Graph, n: usize) -> Result<(), PassError> {
    let pass = dync_opt::lookup(&format!("retarget_batch={n}"))
        .unwrap_or_else(|| panic!("retarget_batch={n} is a pass"));
    PassManager::new(PrintAfter::None).run(pass.as_ref(), g)?;
    Ok(())
}

/// Every rule that keeps samples apart, on batch-2 graphs whose outputs carry the samples on
/// axis 0 (after the transposes some of them make).
const PER_SAMPLE: &[(&str, &str)] = &[
    (
        "conv, pooling, flatten, classifier",
        r#"graph(%0: f32[2,2,5,5] "x") -> ("y" = %9, "p" = %11) {
  %1 = const f32[3,2,3,3] [0.1, -0.2, 0.3, 0.0, 0.5, -0.6, 0.7, 0.1, -0.1, 0.2, 0.2, -0.3, 0.4, 0.0, 0.1, -0.5, 0.3, 0.2, 0.1, 0.1, 0.2, -0.2, 0.3, 0.3, -0.4, 0.4, 0.5, 0.0, -0.1, 0.1, 0.2, 0.6, -0.2, 0.1, 0.0, 0.3, -0.3, 0.2, 0.1, 0.4, 0.1, -0.1, 0.2, 0.3, 0.1, 0.0, -0.2, 0.5, 0.1, 0.2, 0.3, -0.4, 0.1, 0.2]
  %2 = const f32[3] [0.1, -0.1, 0.2]
  %3 = conv %0, %1, %2 {strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1} : f32[2,3,5,5]
  %4 = unary %3 {kind=relu} : f32[2,3,5,5]
  %5 = reduce %4 {kind=mean, axes=[2, 3], keepdims=true} : f32[2,3,1,1]
  %6 = reshape %5 {shape=[2, 3]} : f32[2,3]
  %7 = const f32[4,3] [1.0, 0.5, -0.5, 0.2, 0.1, 0.3, -1.0, 0.0, 0.4, 0.6, -0.2, 0.1]
  %8 = const f32[4] [0.0, 0.1, 0.2, 0.3]
  %9 = gemm %6, %7, %8 {alpha=1.0, beta=1.0, trans_a=false, trans_b=true} : f32[2,4]
  %10 = max_pool %4 {kernel=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1], ceil_mode=false} : f32[2,3,2,2]
  %11 = avg_pool %10 {kernel=[2, 2], strides=[1, 1], pads=[1, 1, 1, 1], ceil_mode=false, count_include_pad=false} : f32[2,3,3,3]
}"#,
    ),
    (
        "broadcast constants, one repeating its slice per sample",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %5) {
  %1 = const f32[2,4] [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]
  %2 = binary %0, %1 {kind=mul} : f32[2,4]
  %3 = const f32[4] [0.5, -0.5, 0.25, 0.0]
  %4 = binary %3, %2 {kind=add} : f32[2,4]
  %5 = unary %4 {kind=sigmoid} : f32[2,4]
}"#,
    ),
    (
        "samples on axis 1: softmax and reduce over the other axes",
        r#"graph(%0: f32[2,3,4] "x") -> ("y" = %5) {
  %1 = transpose %0 {perm=[1, 0, 2]} : f32[3,2,4]
  %2 = softmax %1 {axis=2} : f32[3,2,4]
  %3 = reduce %2 {kind=sum, axes=[0], keepdims=false} : f32[2,4]
  %4 = reshape %1 {shape=[3, 2, 2, 2]} : f32[3,2,2,2]
  %5 = reduce %4 {kind=max, axes=[0, 3], keepdims=false} : f32[2,2]
}"#,
    ),
    (
        "matmul: batch dim, rows of a, columns of b; einsum",
        r#"graph(%0: f32[2,3,4] "x", %1: f32[2,4] "v") -> ("a" = %3, "b" = %5, "c" = %9, "d" = %10, "e" = %11) {
  %2 = const f32[4,2] [1.0, 0.0, 0.5, -1.0, 0.25, 2.0, -0.5, 1.0]
  %3 = matmul %0, %2 : f32[2,3,2]
  %4 = const f32[1,4,2] [1.0, 0.0, 0.5, -1.0, 0.25, 2.0, -0.5, 1.0]
  %5 = matmul %1, %2 : f32[2,2]
  %6 = const f32[3,4] [1.0, 2.0, 0.0, -1.0, 0.5, 0.5, 0.5, 0.5, -1.0, 0.0, 1.0, 0.0]
  %7 = transpose %1 {perm=[1, 0]} : f32[4,2]
  %8 = matmul %6, %7 : f32[3,2]
  %9 = transpose %8 {perm=[1, 0]} : f32[2,3]
  %10 = matmul %0, %4 : f32[2,3,2]
  %11 = einsum %0, %6 {equation="bij,kj->bik"} : f32[2,3,3]
}"#,
    ),
    (
        "dyn_conv with coefficients from a softmax over experts",
        r#"graph(%0: f32[2,1,4,4] "x") -> ("y" = %12) {
  %1 = reduce %0 {kind=mean, axes=[2, 3], keepdims=false} : f32[2,1]
  %2 = const f32[1,3] [1.0, -1.0, 0.5]
  %3 = matmul %1, %2 : f32[2,3]
  %4 = softmax %3 {axis=1} : f32[2,3]
  %5 = const f32[3,2,1,3,3] [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, -0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8, -0.9, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, -0.5, -0.5, -0.5, 0.3, 0.0, 0.3, 0.0, 0.3, 0.0, 0.3, 0.0, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
  %6 = const f32[3,2] [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
  %7 = dyn_conv %0, %4, %5, %6 {strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1, bias=false, bias_bank=true} : f32[2,2,4,4]
  %8 = const f32[2] [1.0, 0.5]
  %9 = const f32[2] [0.0, 0.1]
  %10 = const f32[2] [0.25, -0.25]
  %11 = const f32[2] [1.0, 2.0]
  %12 = batch_norm %7, %8, %9, %10, %11 {epsilon=1e-5} : f32[2,2,4,4]
}"#,
    ),
    (
        "concat with a repeated constant, slices, gather, pad, resize, expand, cast",
        r#"graph(%0: f32[2,3,4] "x") -> ("c" = %2, "s" = %3, "g" = %5, "p" = %6, "r" = %7, "e" = %9, "i" = %11) {
  %1 = const f32[2,1,4] [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]
  %2 = concat %0, %1 {axis=1} : f32[2,4,4]
  %3 = slice %0 {starts=[0, 1, 3], ends=[2, 3, 0], steps=[1, 1, -2]} : f32[2,2,2]
  %4 = const i64[2] [2, 0]
  %5 = gather %0, %4 {axis=2} : f32[2,3,2]
  %6 = pad %0 {pads=[0, 1, 0, 0, 0, 2], mode=reflect, value=0.0} : f32[2,4,6]
  %7 = resize %0 {mode=nearest, coord=asymmetric, nearest=floor, sizes=[2, 6, 8], scales=[1.0, 2.0, 2.0]} : f32[2,6,8]
  %8 = reshape %0 {shape=[2, 1, 12]} : f32[2,1,12]
  %9 = expand %8 {shape=[2, 3, 12]} : f32[2,3,12]
  %10 = cast %0 {to=i64} : i64[2,3,4]
  %11 = cast %10 {to=f32} : f32[2,3,4]
}"#,
    ),
];

#[test]
fn per_sample_graphs_retarget() {
    for &(what, text) in PER_SAMPLE {
        let g0 = parse(text).unwrap_or_else(|e| panic!("{what}: {e}"));
        dync_ir::verify(&g0).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        for n in [1, 3, 5] {
            let what = format!("{what}, batch {n}");
            let mut g = g0.clone();
            retarget(&mut g, n).unwrap_or_else(|e| panic!("{what}: {e}"));
            for (name, id) in &g.inputs {
                assert_eq!(g.ty(*id).shape[0], n, "{what}: input {name}");
            }
            let x = inputs(&g, 7);
            let got = dync_interp::run(&g, &x).unwrap_or_else(|e| panic!("{what}: {e}"));
            let want = per_sample_reference(&g0, &x, &what);
            assert_close(&got, &want, 1e-5, 1e-5, &what);
        }
    }
}

/// Graphs with one op that mixes samples: (what, text, `%k` named, op named, reason fragment).
const MIXING: &[(&str, &str, &str, &str, &str)] = &[
    (
        "softmax over the batch",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %1) {
  %1 = softmax %0 {axis=0} : f32[2,4] loc("/Softmax")
}"#,
        "%1",
        "softmax",
        "normalizes across samples",
    ),
    (
        "mean over the batch",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %2) {
  %1 = unary %0 {kind=relu} : f32[2,4]
  %2 = reduce %1 {kind=mean, axes=[0, 1], keepdims=true} : f32[1,1] loc("/ReduceMean")
}"#,
        "%2",
        "reduce",
        "reduces (mean) across the samples",
    ),
    (
        "batch-as-groups reshape",
        r#"graph(%0: f32[2,3,4,4] "x") -> ("y" = %1) {
  %1 = reshape %0 {shape=[1, 6, 4, 4]} : f32[1,6,4,4] loc("/Reshape")
}"#,
        "%1",
        "reshape",
        "merges the sample axis",
    ),
    (
        "concat along the batch",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %1) {
  %1 = concat %0, %0 {axis=0} : f32[4,4] loc("/Concat")
}"#,
        "%1",
        "concat",
        "concatenates along the sample axis",
    ),
    (
        "first sample sliced out",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %1) {
  %1 = slice %0 {starts=[0, 0], ends=[1, 4], steps=[1, 1]} : f32[1,4] loc("/Slice")
}"#,
        "%1",
        "slice",
        "slices samples 0..1",
    ),
    (
        "gather of samples",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %2) {
  %1 = const i64[2] [1, 0]
  %2 = gather %0, %1 {axis=0} : f32[2,4] loc("/Gather")
}"#,
        "%2",
        "gather",
        "selects samples by index",
    ),
    (
        "matmul contracting the batch",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %2) {
  %1 = const f32[3,2] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
  %2 = matmul %1, %0 : f32[3,4] loc("/MatMul")
}"#,
        "%2",
        "matmul",
        "sums over the sample axis of operand 1",
    ),
    (
        "every sample times every other",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %2) {
  %1 = transpose %0 {perm=[1, 0]} : f32[4,2]
  %2 = matmul %0, %1 : f32[2,2] loc("/Gram")
}"#,
        "%2",
        "matmul",
        "different axes",
    ),
    (
        "einsum summing over the batch",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %1) {
  %1 = einsum %0, %0 {equation="bi,bj->ij"} : f32[4,4] loc("/Einsum")
}"#,
        "%1",
        "einsum",
        "sums over the sample axis",
    ),
    (
        "per-sample constant",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %2) {
  %1 = const f32[2,1] [1.0, 2.0]
  %2 = binary %0, %1 {kind=mul} : f32[2,4] loc("/Mul")
}"#,
        "%2",
        "binary",
        "slices along the sample axis 0 differ",
    ),
    (
        "batch norm over samples as channels",
        r#"graph(%0: f32[2,3] "x") -> ("y" = %6) {
  %1 = transpose %0 {perm=[1, 0]} : f32[3,2]
  %2 = const f32[2] [1.0, 0.5]
  %3 = const f32[2] [0.0, 0.1]
  %4 = const f32[2] [0.25, -0.25]
  %5 = const f32[2] [1.0, 2.0]
  %6 = batch_norm %1, %2, %3, %4, %5 {epsilon=1e-5} : f32[3,2] loc("/BN")
}"#,
        "%6",
        "batch_norm",
        "channels are the samples",
    ),
    (
        "conv with a kernel computed per sample",
        r#"graph(%0: f32[2,1,3,3] "x") -> ("y" = %2) {
  %1 = reshape %0 {shape=[2, 1, 3, 3]} : f32[2,1,3,3]
  %2 = conv %0, %1 {strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1} : f32[2,2,1,1] loc("/Conv")
}"#,
        "%2",
        "conv",
        "dynamic conv dync did not recognize",
    ),
    (
        "padding the batch",
        r#"graph(%0: f32[2,4] "x") -> ("y" = %1) {
  %1 = pad %0 {pads=[0, 0, 1, 0], mode=constant, value=0.0} : f32[3,4] loc("/Pad")
}"#,
        "%1",
        "pad",
        "pads the sample axis",
    ),
];

#[test]
fn sample_mixing_ops_are_named() {
    for &(what, text, value, op, reason) in MIXING {
        let g0 = parse(text).unwrap_or_else(|e| panic!("{what}: {e}"));
        dync_ir::verify(&g0).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let mut g = g0.clone();
        let err = retarget(&mut g, 3).expect_err(what);
        let msg = err.to_string();
        match &err {
            PassError::Retarget {
                batch,
                value: v,
                op: o,
                origin,
                reason: r,
            } => {
                assert_eq!((*batch, v.as_str(), *o), (3, value, op), "{what}: {msg}");
                assert!(origin.starts_with('/'), "{what}: origin {origin:?}");
                assert!(r.contains(reason), "{what}: {msg}");
            }
            other => panic!("{what}: unexpected error {other}"),
        }
        assert_eq!(
            dync_ir::print(&g),
            dync_ir::print(&g0),
            "{what}: a rejected re-target leaves the graph unchanged"
        );
    }
}

#[test]
fn graph_level_errors() {
    let two_batches = parse(
        r#"graph(%0: f32[2,4] "x", %1: f32[3,4] "z") -> ("y" = %0) {
}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (g, n, fragment) in [
        (&two_batches, 5, r#"input "z" has type f32[3,4]"#),
        (&two_batches, 0, "the batch must be at least 1"),
    ] {
        let mut g = g.clone();
        match retarget(&mut g, n) {
            Err(e @ PassError::Batch { .. }) => {
                assert!(e.to_string().contains(fragment), "{e}")
            }
            other => panic!("expected a graph-level error, got {other:?}"),
        }
    }
}

/// `--batch` equal to the graph's batch changes nothing, even where samples mix.
#[test]
fn same_batch_is_a_no_op() {
    let text = MIXING[0].1;
    let mut g = parse(text).unwrap_or_else(|e| panic!("{e}"));
    retarget(&mut g, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        dync_ir::print(&g),
        dync_ir::print(&parse(text).unwrap_or_default())
    );
}

const SIDE: usize = 16;

fn zoo_model(name: &str, form: Form, exporter: Exporter) -> Vec<u8> {
    let opts = zoo::Options {
        batch: Batch::Fixed(2),
        form,
        exporter,
        height: SIDE,
        width: SIDE,
        ..Default::default()
    };
    let built = zoo::build(name, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    prost::Message::encode_to_vec(&built.model)
}

/// A zoo dynamic network at batch 2, re-targeted to 5 by the pipeline, equals the original
/// graph per sample, in both forms and exporter styles.
fn check_zoo_retarget(name: &str) {
    for form in [Form::Mix, Form::Train] {
        for exporter in [Exporter::Legacy, Exporter::Dynamo] {
            let what = format!("{name} {form} {exporter}");
            let g0 = import_bytes(&zoo_model(name, form, exporter), &[]);
            let mut g = g0.clone();
            let opts = dync_opt::Options {
                batch: Some(5),
                ..Default::default()
            };
            dync_opt::optimize(&mut g, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
            let x = inputs(&g, 11);
            assert_eq!(x[0].shape()[0], 5, "{what}");
            let got = dync_interp::run(&g, &x).unwrap_or_else(|e| panic!("{what}: {e}"));
            let want = per_sample_reference(&g0, &x, &what);
            assert_close(&got, &want, 1e-4, 1e-3, &what);
        }
    }
}

macro_rules! zoo_networks {
    ($($test:ident: $name:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_zoo_retarget($name);
            }
        )*
    };
}

zoo_networks! {
    zoo_dy_mobile: "dy-mobile";
    zoo_dy_shuffle: "dy-shuffle";
    zoo_dy_resnet18: "dy-resnet18";
    zoo_dy_resnet50: "dy-resnet50";
    zoo_dy_mobilenetv3_small: "dy-mobilenetv3-small";
    zoo_dy_mobilenetv3_large: "dy-mobilenetv3-large";
    zoo_dy_fcn_resnet50: "dy-fcn-resnet50";
}

/// Without recognition, the batch-as-groups reshape of a dynamic conv ties the graph to its
/// batch: the error names it.
#[test]
fn literal_pipeline_names_the_batch_as_groups_reshape() {
    let mut g = import_bytes(&zoo_model("dy-resnet18", Form::Mix, Exporter::Legacy), &[]);
    let opts = dync_opt::Options {
        literal: true,
        batch: Some(5),
        ..Default::default()
    };
    match dync_opt::optimize(&mut g, &opts) {
        Err(PassError::Retarget { op, reason, .. }) => {
            assert_eq!(op, "reshape");
            assert!(reason.contains("merges the sample axis"), "{reason}");
        }
        other => panic!("expected a re-target error, got {:?}", other.map(|_| ())),
    }
}
