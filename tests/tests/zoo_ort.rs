//! Every zoo network, in every export form and exporter style, is valid ONNX that onnxruntime
//! runs, and onnxruntime's outputs match dync's reference interpreter (atol 1e-4 + rtol 1e-3).
//! Small images (64×64; the FCNs 64×128) keep the matrix fast; batch 2 for the fixed-batch
//! forms and a symbolic batch (fed 2 images) for the train form.

use dync::zoo::{self, Batch, Exporter, Form, Options};
use dync_ir::Tensor;
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model, Limits};
use dync_tests::{assert_close, ort_run, read_npy_f32, write_npy};

const BATCH: usize = 2;

fn check_network(name: &str) {
    let net = zoo::find(name).unwrap_or_else(|e| panic!("{e}"));
    let (height, width) = if name.contains("fcn") {
        (64, 128)
    } else {
        (64, 64)
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for form in [Form::Mix, Form::Train] {
        if !net.dynamic && form == Form::Train {
            continue;
        }
        for exporter in [Exporter::Legacy, Exporter::Dynamo] {
            let batch = if form == Form::Train {
                Batch::Dynamic
            } else {
                Batch::Fixed(BATCH)
            };
            let o = Options {
                batch,
                form,
                exporter,
                height,
                width,
                ..Default::default()
            };
            let what = format!("{name} {form} {exporter}");
            let path = dir.path().join(format!("{name}-{form}-{exporter}.onnx"));
            std::fs::write(
                &path,
                zoo::export(name, &o).unwrap_or_else(|e| panic!("{what}: {e}")),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let shape = [BATCH, 3, height, width];
            let x: Vec<f32> = (0..shape.iter().product::<usize>())
                .map(|i| ((i * 7919 % 2000) as f32 / 1000.0) - 1.0)
                .collect();
            let m = load_model(&path, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
            let input_name = m.graph.input[0].name.clone();
            let npy = dir.path().join("x.npy");
            write_npy(&npy, &shape, &x);
            let ort = ort_run(&path, &[(input_name.clone(), npy)]);
            let mut opts = ImportOptions::default();
            opts.input_shapes.insert(input_name, shape.to_vec());
            let g = import(&m, &opts)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .graph;
            let input = Tensor::from_f32(shape.to_vec(), x).unwrap_or_else(|e| panic!("{e}"));
            let got = dync_interp::run(&g, &[input]).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.len(), ort.outputs.len(), "{what}: output count");
            for (t, (out, file)) in got.iter().zip(&ort.outputs) {
                let (want_shape, want) = read_npy_f32(file);
                assert_eq!(
                    t.shape(),
                    want_shape.as_slice(),
                    "{what}: output {out:?} shape"
                );
                let got = t
                    .as_f32()
                    .unwrap_or_else(|| panic!("{what}: output is not f32"));
                assert_close(
                    got,
                    &want,
                    1e-4,
                    1e-3,
                    &format!("{what}: output {out:?} (interpreter vs onnxruntime)"),
                );
            }
        }
    }
}

macro_rules! zoo_ort_tests {
    ($($test:ident: $name:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_network($name);
            }
        )*

        #[test]
        fn every_network_is_covered() {
            let covered = [$($name),*];
            for n in zoo::networks() {
                assert!(covered.contains(&n.name), "{} has no onnxruntime test", n.name);
            }
        }
    };
}

zoo_ort_tests! {
    dy_mobile: "dy-mobile";
    mobilenetv2: "mobilenetv2";
    dy_shuffle: "dy-shuffle";
    shufflenetv2: "shufflenetv2";
    dy_resnet18: "dy-resnet18";
    resnet18: "resnet18";
    dy_resnet50: "dy-resnet50";
    resnet50: "resnet50";
    dy_mobilenetv3_small: "dy-mobilenetv3-small";
    mobilenetv3_small: "mobilenetv3-small";
    dy_mobilenetv3_large: "dy-mobilenetv3-large";
    mobilenetv3_large: "mobilenetv3-large";
    dy_fcn_resnet50: "dy-fcn-resnet50";
    fcn_resnet50: "fcn-resnet50";
}
