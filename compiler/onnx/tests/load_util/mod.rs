//! Helpers of the `load*` tests: the ONNX model builders shared with the bad-input fixtures
//! (`tests/bad-inputs/onnx_builders.rs`), plus the small model these tests start from and the
//! `external_data` entries of a tensor.

#![allow(dead_code)] // each test binary uses a different subset

#[path = "../../../../tests/bad-inputs/onnx_builders.rs"]
mod onnx_builders;
pub use onnx_builders::*;

use dync_onnx::proto::{GraphProto, ModelProto, StringStringEntryProto};

/// y = x + w with x: f32[2,3] input and w: f32[2,3] initializer, opset 17.
pub fn tiny_graph() -> GraphProto {
    GraphProto {
        name: "tiny".into(),
        ..graph(
            vec![node("add", "Add", &["x", "w"], &["y"], vec![])],
            vec![f32_init("w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
            vec![vi("x", FLOAT, &[2, 3])],
            vec![vi("y", FLOAT, &[2, 3])],
        )
    }
}

/// [`tiny_graph`] in a model without metadata, so that every top-level field is required.
pub fn tiny_model() -> ModelProto {
    ModelProto {
        metadata_props: vec![],
        ..model(tiny_graph())
    }
}

/// The `external_data` entries of a tensor.
pub fn entries(kv: &[(&str, &str)]) -> Vec<StringStringEntryProto> {
    kv.iter()
        .map(|(k, v)| StringStringEntryProto {
            key: (*k).into(),
            value: (*v).into(),
        })
        .collect()
}
