//! Real PyTorch exports (torchvision and timm, legacy and dynamo exporters, batch 1 and 8; made
//! by `examples/pytorch/export_real.py`): every one passes `dync check`, and the reference
//! interpreter's outputs match onnxruntime's (atol 1e-4 + rtol 1e-3, same top-1).

use dync_onnx::import::{check, import, ImportOptions};
use dync_onnx::{load_model, Limits};
use dync_runtime::npy::read_npy;
use dync_tests::{assert_close, assert_same_top1, real_export_manifest};

fn check_export(model: &str, exporter: &str, batch: usize) {
    let entries = real_export_manifest();
    let Some(e) = entries
        .iter()
        .find(|e| e.model == model && e.exporter == exporter && e.batch == batch)
    else {
        panic!("no export of {model} ({exporter}, batch {batch}) in the manifest");
    };
    if let Some(err) = &e.error {
        panic!("{}: the export failed: {err}", e.name);
    }
    let m = load_model(&e.path, &Limits::default()).unwrap_or_else(|err| panic!("{err}"));
    let unsupported = check(&m, &ImportOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    assert!(
        unsupported.is_empty(),
        "{}: unsupported: {unsupported:?}",
        e.name
    );
    let imported = import(&m, &ImportOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    let g = &imported.graph;
    let inputs: Vec<dync_ir::Tensor> = g
        .inputs
        .iter()
        .map(|(name, _)| {
            let (_, file) = e
                .inputs
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{}: no input file for {name:?}", e.name));
            let arr = read_npy(file, 1 << 32).unwrap_or_else(|err| panic!("{err}"));
            let t = dync_ir::Tensor::from_f32(
                arr.shape.clone(),
                match arr.data {
                    dync_runtime::npy::NpyData::F32(v) => v,
                    _ => panic!("{}: input {name:?} is not f32", e.name),
                },
            );
            t.unwrap_or_else(|err| panic!("{err}"))
        })
        .collect();
    let outputs = dync_interp::run(g, &inputs).unwrap_or_else(|err| panic!("{}: {err}", e.name));
    assert_eq!(outputs.len(), e.outputs.len(), "{}: output count", e.name);
    for ((name, file), got) in e.outputs.iter().zip(&outputs) {
        let (shape, want) = dync_tests::read_npy_f32(file);
        assert_eq!(
            got.shape(),
            shape.as_slice(),
            "{}: output {name:?} shape",
            e.name
        );
        let got = got
            .as_f32()
            .unwrap_or_else(|| panic!("{}: output {name:?} is not f32", e.name));
        let what = format!("{} output {name:?} (interpreter vs onnxruntime)", e.name);
        assert_close(got, &want, 1e-4, 1e-3, &what);
        assert_same_top1(got, &want, &shape, 1e-4, 1e-3, &what);
    }
}

macro_rules! real_export_tests {
    ($($test:ident: $model:literal, $exporter:literal, $batch:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_export($model, $exporter, $batch);
            }
        )*
    };
}

real_export_tests! {
    resnet18_legacy_b1: "resnet18", "legacy", 1;
    resnet18_legacy_b8: "resnet18", "legacy", 8;
    resnet18_dynamo_b1: "resnet18", "dynamo", 1;
    resnet18_dynamo_b8: "resnet18", "dynamo", 8;
    resnet50_legacy_b1: "resnet50", "legacy", 1;
    resnet50_legacy_b8: "resnet50", "legacy", 8;
    resnet50_dynamo_b1: "resnet50", "dynamo", 1;
    resnet50_dynamo_b8: "resnet50", "dynamo", 8;
    mobilenet_v2_legacy_b1: "mobilenet_v2", "legacy", 1;
    mobilenet_v2_legacy_b8: "mobilenet_v2", "legacy", 8;
    mobilenet_v2_dynamo_b1: "mobilenet_v2", "dynamo", 1;
    mobilenet_v2_dynamo_b8: "mobilenet_v2", "dynamo", 8;
    mobilenet_v3_small_legacy_b1: "mobilenet_v3_small", "legacy", 1;
    mobilenet_v3_small_legacy_b8: "mobilenet_v3_small", "legacy", 8;
    mobilenet_v3_small_dynamo_b1: "mobilenet_v3_small", "dynamo", 1;
    mobilenet_v3_small_dynamo_b8: "mobilenet_v3_small", "dynamo", 8;
    mobilenet_v3_large_legacy_b1: "mobilenet_v3_large", "legacy", 1;
    mobilenet_v3_large_legacy_b8: "mobilenet_v3_large", "legacy", 8;
    mobilenet_v3_large_dynamo_b1: "mobilenet_v3_large", "dynamo", 1;
    mobilenet_v3_large_dynamo_b8: "mobilenet_v3_large", "dynamo", 8;
    shufflenet_v2_x1_0_legacy_b1: "shufflenet_v2_x1_0", "legacy", 1;
    shufflenet_v2_x1_0_legacy_b8: "shufflenet_v2_x1_0", "legacy", 8;
    shufflenet_v2_x1_0_dynamo_b1: "shufflenet_v2_x1_0", "dynamo", 1;
    shufflenet_v2_x1_0_dynamo_b8: "shufflenet_v2_x1_0", "dynamo", 8;
    efficientnet_cc_b0_4e_legacy_b1: "efficientnet_cc_b0_4e", "legacy", 1;
    efficientnet_cc_b0_4e_legacy_b8: "efficientnet_cc_b0_4e", "legacy", 8;
    efficientnet_cc_b0_4e_dynamo_b1: "efficientnet_cc_b0_4e", "dynamo", 1;
    efficientnet_cc_b0_4e_dynamo_b8: "efficientnet_cc_b0_4e", "dynamo", 8;
}
