//! Builders of ONNX models as prost messages, so that every field can be made wrong: value
//! infos, initializers, nodes, attributes, graphs and models, files, and a seeded generator.
//! Shared (included with `#[path]`) by the bad-input fixtures (`fixtures.rs` in this folder) and
//! the loader tests of dync-onnx (`compiler/onnx/tests/load_util`); nothing here checks
//! anything.

#![allow(dead_code)] // each includer uses a different subset

use dync_onnx::proto::{
    tensor_shape_proto, type_proto, AttributeProto, AttributeType, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use prost::Message;
use std::path::{Path, PathBuf};

// `TensorProto.DataType` values.
pub const FLOAT: i32 = 1;
pub const UINT8: i32 = 2;
pub const INT8: i32 = 3;
pub const UINT16: i32 = 4;
pub const INT16: i32 = 5;
pub const INT32: i32 = 6;
pub const INT64: i32 = 7;
pub const STRING: i32 = 8;
pub const BOOL: i32 = 9;
pub const FLOAT16: i32 = 10;
pub const DOUBLE: i32 = 11;
/// The opset [`model`] imports.
pub const OPSET: i64 = 17;

pub fn vi(name: &str, elem_type: i32, dims: &[i64]) -> ValueInfoProto {
    vi_dims(
        name,
        elem_type,
        dims.iter()
            .map(|&d| tensor_shape_proto::dimension::Value::DimValue(d))
            .collect(),
    )
}

pub fn vi_dims(
    name: &str,
    elem_type: i32,
    dims: Vec<tensor_shape_proto::dimension::Value>,
) -> ValueInfoProto {
    let dim = dims
        .into_iter()
        .map(|v| tensor_shape_proto::Dimension {
            value: Some(v),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A value declared with an element type but no shape.
pub fn vi_unshaped(name: &str, elem_type: i32) -> ValueInfoProto {
    let mut v = vi(name, elem_type, &[]);
    if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape = None;
    }
    v
}

pub fn f32_init(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub fn i64_init(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: INT64,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub fn node(
    name: &str,
    op_type: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op_type.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn attr(name: &str, t: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: t as i32,
        ..Default::default()
    }
}

pub fn a_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        i,
        ..attr(name, AttributeType::Int)
    }
}

pub fn a_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: ints.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

pub fn a_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        f,
        ..attr(name, AttributeType::Float)
    }
}

pub fn a_str(name: &str, s: &[u8]) -> AttributeProto {
    AttributeProto {
        s: s.to_vec(),
        ..attr(name, AttributeType::String)
    }
}

pub fn a_tensor(name: &str, t: Option<TensorProto>) -> AttributeProto {
    AttributeProto {
        t,
        ..attr(name, AttributeType::Tensor)
    }
}

pub fn a_graph(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        g: Some(g),
        ..attr(name, AttributeType::Graph)
    }
}

pub fn graph(
    node: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    input: Vec<ValueInfoProto>,
    output: Vec<ValueInfoProto>,
) -> GraphProto {
    GraphProto {
        name: "fixture".into(),
        node,
        initializer,
        input,
        output,
        ..Default::default()
    }
}

pub fn opset(domain: &str, version: i64) -> OperatorSetIdProto {
    OperatorSetIdProto {
        domain: domain.into(),
        version,
    }
}

pub fn model(g: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![opset("", OPSET)],
        producer_name: "dync bad-input fixtures".into(),
        graph: Some(g),
        metadata_props: vec![StringStringEntryProto {
            key: "fixture".into(),
            value: "bad-inputs".into(),
        }],
        ..Default::default()
    }
}

/// The graph of a model, for mutation (every model built here has one).
pub fn g(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.get_or_insert_with(GraphProto::default)
}

/// Appends `v` as a protobuf varint (for messages written as raw bytes).
pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn encode(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Err(e) = std::fs::write(&p, bytes) {
        panic!("cannot write test file {}: {e}", p.display());
    }
    p
}

pub fn write_model(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    write(dir, name, &encode(m))
}

/// SplitMix64: reproducible pseudo-random numbers without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}
