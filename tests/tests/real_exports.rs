//! Real PyTorch exports (torchvision and timm, legacy and dynamo exporters, batch 1 and 8; made
//! by `examples/pytorch/export_real.py`): every one passes `dync check`, and dync matches
//! onnxruntime on it: the reference interpreter on the imported graph, and both compiled engines
//! on the optimized graph (the JIT of `dync run` and an executable from `dync compile`), each
//! against the interpreter and onnxruntime (atol 1e-4 + rtol 1e-3, same top-1;
//! `dync_tests::assert_outputs`).

use dync_onnx::import::{check, import, ImportOptions};
use dync_onnx::{load_model, Limits};
use dync_tests::{
    assert_engines_match, assert_outputs, interp_outputs, read_inputs, read_named, real_export,
    tempdir,
};

fn check_export(model: &str, exporter: &str, batch: usize) {
    let e = real_export(model, exporter, batch);
    let m = load_model(&e.path, &Limits::default()).unwrap_or_else(|err| panic!("{err}"));
    let unsupported = check(&m, &ImportOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    assert!(
        unsupported.is_empty(),
        "{}: unsupported: {unsupported:?}",
        e.name
    );
    let g = import(&m, &ImportOptions::default())
        .unwrap_or_else(|err| panic!("{err}"))
        .graph;
    let inputs = read_inputs(g.inputs.iter().map(|(n, _)| n.as_str()), &e.inputs, &e.name);
    let interp = interp_outputs(&g, &inputs, &e.name);
    let ort = read_named(&e.outputs);
    assert_outputs(
        &interp,
        &ort,
        &format!("{}: interpreter vs onnxruntime", e.name),
    );
    let dir = tempdir();
    assert_engines_match(&e.path, &e.inputs, &[], &interp, &ort, dir.path(), &e.name);
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
