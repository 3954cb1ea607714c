//! `--batch N` (`dync_opt::Options::batch`) on real exports: timm `efficientnet_cc_b0_4e`
//! exported at batch 8 (legacy and dynamo exporters, `examples/pytorch/export_real.py`),
//! re-targeted by the pipeline to batch 1 and 3, keeps its 24 `dyn_conv`s and computes for each
//! of its images what the interpreter on the original batch-8 graph computes for that image
//! (atol 1e-4 + rtol 1e-3), and the literal pipeline (no recognition) names the
//! batch-as-groups reshape that ties the export to batch 8.

use dync_ir::{Graph, Op, Tensor};
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model, Limits};
use dync_opt::PassError;
use dync_tests::{assert_close, read_npy_f32, real_export_manifest, RealExport};

const MODEL: &str = "efficientnet_cc_b0_4e";

fn export(exporter: &str) -> RealExport {
    let e = real_export_manifest()
        .into_iter()
        .find(|e| e.model == MODEL && e.exporter == exporter && e.batch == 8)
        .unwrap_or_else(|| panic!("the real-export manifest has no {MODEL} {exporter} batch 8"));
    if let Some(err) = &e.error {
        panic!("{}: the export failed: {err}", e.name);
    }
    e
}

fn load(e: &RealExport) -> Graph {
    let m = load_model(&e.path, &Limits::default()).unwrap_or_else(|err| panic!("{err}"));
    import(&m, &ImportOptions::default())
        .unwrap_or_else(|err| panic!("{}: {err}", e.name))
        .graph
}

/// The first `n` images of `t` (axis 0).
fn first(t: &Tensor, n: usize) -> Tensor {
    let per = t.len() / t.shape()[0];
    let mut shape = t.shape().to_vec();
    shape[0] = n;
    let v = t.as_f32().unwrap_or_else(|| panic!("f32 tensors"));
    Tensor::from_f32(shape, v[..n * per].to_vec()).unwrap_or_else(|err| panic!("{err}"))
}

fn check(exporter: &str) {
    let e = export(exporter);
    let original = load(&e);
    let (shape, data) = read_npy_f32(&e.inputs[0].1);
    let x = Tensor::from_f32(shape, data).unwrap_or_else(|err| panic!("{err}"));
    let want = dync_interp::run(&original, std::slice::from_ref(&x))
        .unwrap_or_else(|err| panic!("{}: {err}", e.name));
    for n in [1, 3] {
        let what = format!("{} re-targeted to batch {n}", e.name);
        let mut g = original.clone();
        let opts = dync_opt::Options {
            batch: Some(n),
            ..Default::default()
        };
        dync_opt::optimize(&mut g, &opts).unwrap_or_else(|err| panic!("{what}: {err}"));
        let dyn_convs = g
            .node_ids()
            .filter(|&id| matches!(g.node(id).op, Op::DynConv(_)))
            .count();
        assert_eq!(dyn_convs, 24, "{what}");
        let got =
            dync_interp::run(&g, &[first(&x, n)]).unwrap_or_else(|err| panic!("{what}: {err}"));
        assert_eq!(got.len(), want.len(), "{what}: outputs");
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            let b = first(b, n);
            assert_eq!(a.shape(), b.shape(), "{what}: output {k}");
            let (a, b) = (a.as_f32(), b.as_f32());
            let (Some(a), Some(b)) = (a, b) else {
                panic!("{what}: output {k} is not f32")
            };
            assert_close(a, b, 1e-4, 1e-3, &format!("{what}: output {k}"));
        }
    }
    let mut g = original;
    let literal = dync_opt::Options {
        literal: true,
        batch: Some(3),
        ..Default::default()
    };
    match dync_opt::optimize(&mut g, &literal) {
        Err(PassError::Retarget { op, reason, .. }) => {
            assert_eq!(op, "reshape", "{}: {reason}", e.name);
            assert!(reason.contains("merges the sample axis"), "{reason}");
        }
        other => panic!(
            "{}: literal pipeline with --batch 3: expected a re-target error, got {:?}",
            e.name,
            other.map(|_| ())
        ),
    }
}

#[test]
fn condconv_legacy_batch8_to_1_and_3() {
    check("legacy");
}

#[test]
fn condconv_dynamo_batch8_to_1_and_3() {
    check("dynamo");
}
