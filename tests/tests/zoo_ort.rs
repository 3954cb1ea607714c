//! Every zoo network, in every export form and exporter style, is valid ONNX that onnxruntime
//! runs, and dync matches onnxruntime on it: the reference interpreter on the imported graph,
//! and both compiled engines on the optimized graph (the JIT of `dync run` and an executable
//! from `dync compile`), each against the interpreter and onnxruntime (atol 1e-4 + rtol 1e-3,
//! same top-1; `dync_tests::assert_outputs`).
//! Small images (64×64; the FCNs 64×128) keep the matrix fast; batch 2 for the fixed-batch
//! forms and a symbolic batch (fed 2 images, `--input-shape` for dync's engines) for the train
//! form.

use dync::zoo::{self, Batch, Exporter, Form, Options};
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model, Limits};
use dync_tests::{
    assert_engines_match, assert_outputs, interp_outputs, ort_run, read_named, write_npy, Named,
};

const BATCH: usize = 2;

fn check_network(name: &str) {
    let net = zoo::find(name).unwrap_or_else(|e| panic!("{e}"));
    let (height, width) = if net.task == zoo::Task::Segmentation {
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
            let inputs = [(input_name.clone(), npy)];
            let ort = read_named(&ort_run(&path, &inputs).outputs);
            let mut opts = ImportOptions::default();
            opts.input_shapes.insert(input_name.clone(), shape.to_vec());
            let g = import(&m, &opts)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .graph;
            let x = Named {
                name: input_name.clone(),
                shape: shape.to_vec(),
                data: x,
            };
            let interp = interp_outputs(&g, &[x], &what);
            assert_outputs(
                &interp,
                &ort,
                &format!("{what}: interpreter vs onnxruntime"),
            );
            let dims = shape.map(|d| d.to_string()).join("x");
            assert_engines_match(
                &path,
                &inputs,
                &[format!("{input_name}={dims}")],
                &interp,
                &ort,
                dir.path(),
                &what,
            );
        }
    }
}

dync_tests::zoo_network_tests!(check_network);
