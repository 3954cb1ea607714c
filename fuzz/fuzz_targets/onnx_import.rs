//! Fuzz target: arbitrary bytes as an ONNX model through loading (format sniffing, protobuf
//! decoding, model-level checks), import (every node's attribute and operand checks, shape
//! inference, constant folding) and the IR verifier. Any `ImportError` is fine; a panic, abort,
//! hang or an allocation beyond the limits is a bug, and so is an imported graph the verifier
//! rejects (the importer promises a well-typed graph).
//!
//! External data is rejected (no base folder): the containment checks have their own fixtures.

#![no_main]

use dync_onnx::import::{import, ImportOptions};
use dync_onnx::{load_model_bytes, Limits};
use libfuzzer_sys::fuzz_target;

/// Limits far below libFuzzer's default RSS limit (2 GB), so that a model that asks for more
/// is rejected by dync's checks rather than killing the fuzzer.
fn limits() -> Limits {
    Limits {
        max_file_bytes: 1 << 20,
        max_tensor_bytes: 1 << 24,
        max_total_weight_bytes: 1 << 26,
        max_nodes: 10_000,
        ..Limits::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    let Ok(m) = load_model_bytes(data, None, &limits) else {
        return;
    };
    let opts = ImportOptions {
        limits,
        ..Default::default()
    };
    let Ok(imported) = import(&m, &opts) else {
        return;
    };
    if let Err(errors) = dync_ir::verify(&imported.graph) {
        panic!(
            "imported graph fails verification: {errors:?}\n{}",
            dync_ir::print_with_errors(&imported.graph, &errors)
        );
    }
});
