//! Fuzz target, structure-aware: libFuzzer's bytes choose a small random CNN
//! (`tests/tests/random_cnn`: convs with groups, dilations, pads and strides, activations,
//! pools, BatchNormalization, residual adds, dynamic convolutions), written as ONNX. It is
//! imported, verified, optimized by the full pipeline, verified again, compiled by the JIT in
//! checked mode (every load and store bounds-checked) and run; the result must match the
//! interpreter on the unoptimized graph within atol 1e-4 + rtol 1e-3.
//!
//! Every step must succeed: the generator only writes valid models, so any error (not just a
//! panic) is a bug and fails the run with the network's description.

#![no_main]

#[path = "../../tests/tests/random_cnn/mod.rs"]
mod random_cnn;

use arbitrary::Unstructured;
use dync_codegen::{CodegenOptions, JitModel};
use dync_ir::Tensor;
use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model_bytes, Limits};
use libfuzzer_sys::fuzz_target;
use random_cnn::Choose;

/// Choices from libFuzzer's bytes; `lo` once they run out.
struct Bytes<'a>(Unstructured<'a>);

impl Choose for Bytes<'_> {
    fn pick(&mut self, lo: usize, hi: usize) -> usize {
        self.0.int_in_range(lo..=hi).unwrap_or(lo)
    }
}

fuzz_target!(|data: &[u8]| {
    let m = random_cnn::build(&mut Bytes(Unstructured::new(data)));
    let what = m.layers.join("; ");
    let fail = |stage: &str, e: &dyn std::fmt::Display| -> ! { panic!("{what}: {stage}: {e}") };
    let loaded =
        load_model_bytes(&m.bytes, None, &Limits::default()).unwrap_or_else(|e| fail("load", &e));
    let g0 = import(&loaded, &ImportOptions::default())
        .unwrap_or_else(|e| fail("import", &e))
        .graph;
    if let Err(e) = dync_ir::verify(&g0) {
        fail("verify", &dync_ir::print_with_errors(&g0, &e));
    }
    let x = Tensor::from_f32(m.input, random_cnn::input_values(&m))
        .unwrap_or_else(|e| fail("input", &e));
    let inputs = [x];
    let want = dync_interp::run(&g0, &inputs).unwrap_or_else(|e| fail("interpreter", &e));
    let mut g = g0;
    dync_opt::optimize(&mut g, &dync_opt::Options::default())
        .unwrap_or_else(|e| fail("optimize", &e));
    if let Err(e) = dync_ir::verify(&g) {
        fail("verify after optimize", &dync_ir::print_with_errors(&g, &e));
    }
    let opts = CodegenOptions {
        checked: true,
        ..Default::default()
    };
    let got = JitModel::compile(&g, &opts)
        .and_then(|j| j.run(&inputs))
        .unwrap_or_else(|e| fail("jit", &e));
    assert_eq!(got.len(), want.len(), "{what}: output count");
    let (a, b) = (got[0].as_f32(), want[0].as_f32());
    let (Some(a), Some(b)) = (a, b) else {
        panic!("{what}: outputs are not f32");
    };
    assert_eq!(got[0].shape(), m.output, "{what}: jit output shape");
    assert_eq!(
        want[0].shape(),
        m.output,
        "{what}: interpreter output shape"
    );
    for (i, (&p, &q)) in a.iter().zip(b).enumerate() {
        assert!(
            (p - q).abs() <= 1e-4 + 1e-3 * q.abs(),
            "{what}: element {i}: jit {p}, interpreter {q}"
        );
    }
});
