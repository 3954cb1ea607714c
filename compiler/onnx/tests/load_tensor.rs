//! `tensor_from_proto`, `value_info_type` and the dtype maps: every data source, widening,
//! malformed shapes and lengths, limits, and unsupported types.

mod load_util;

use dync_ir::{DType, TensorData};
use dync_onnx::proto::{tensor_proto, type_proto, TensorProto, TypeProto, ValueInfoProto};
use dync_onnx::tensor::{
    dtype_from_onnx, onnx_from_dtype, tensor_from_proto, value_info_type, Dim, TensorCtx, ValueType,
};
use dync_onnx::{ErrorKind, ImportError, Limits};
use load_util::*;

fn convert(t: &TensorProto) -> Result<dync_ir::Tensor, ImportError> {
    let limits = Limits::default();
    tensor_from_proto(t, &TensorCtx::new(None, &limits))
}

/// The message of a `Tensor` error, after checking it names `t`.
fn tensor_err(t: &TensorProto) -> String {
    let e = convert(t).unwrap_err();
    match e.kind() {
        ErrorKind::Tensor { name, message } => {
            assert_eq!(name, &t.name);
            assert!(e.to_string().starts_with(&format!("tensor {:?}: ", t.name)));
            message.clone()
        }
        other => panic!("expected a Tensor error, got {other:?}"),
    }
}

fn limit_err(e: ImportError) -> (String, u64, u64) {
    match e.into_kind() {
        ErrorKind::Limit { what, value, limit } => (what, value, limit),
        other => panic!("expected a Limit error, got {other:?}"),
    }
}

fn typed(name: &str, data_type: i32, dims: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type,
        dims: dims.to_vec(),
        ..Default::default()
    }
}

#[test]
fn f32_raw_data_round_trips() {
    let mut rng = Rng(3);
    let v: Vec<f32> = (0..24).map(|_| rng.f32()).collect();
    let t = convert(&f32_init("w", &[2, 3, 4], &v)).unwrap();
    assert_eq!(t.shape(), &[2, 3, 4]);
    assert_eq!(t.as_f32().unwrap(), v.as_slice());
}

#[test]
fn raw_data_of_every_integer_type_is_little_endian_and_widened() {
    let cases: Vec<(i32, Vec<u8>, TensorData)> = vec![
        (
            INT64,
            [-2i64, 1 << 40]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            TensorData::I64(vec![-2, 1 << 40]),
        ),
        (
            INT32,
            [-7i32, 70000]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            TensorData::I32(vec![-7, 70000]),
        ),
        (
            INT16,
            [-300i16, 300]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            TensorData::I32(vec![-300, 300]),
        ),
        (
            UINT16,
            [65535u16, 1].iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(vec![65535, 1]),
        ),
        (INT8, vec![0xff, 0x7f], TensorData::I32(vec![-1, 127])),
        (UINT8, vec![0xff, 0x7f], TensorData::I32(vec![255, 127])),
        (BOOL, vec![1, 0], TensorData::Bool(vec![true, false])),
    ];
    for (data_type, raw, want) in cases {
        let t = TensorProto {
            raw_data: raw,
            ..typed("t", data_type, &[2])
        };
        assert_eq!(convert(&t).unwrap().data(), &want, "data type {data_type}");
    }
}

#[test]
fn large_raw_data_is_read_across_chunks() {
    // More than one 64 KiB read chunk, with a length that is not a multiple of it.
    let n = 50_001usize;
    let v: Vec<i64> = (0..n as i64).map(|i| i * 7 - 3).collect();
    let t = TensorProto {
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..typed("big", INT64, &[n as i64])
    };
    assert_eq!(convert(&t).unwrap().as_i64().unwrap(), v.as_slice());
}

#[test]
fn typed_fields_are_read() {
    let t = TensorProto {
        float_data: vec![1.5, -2.0],
        ..typed("f", FLOAT, &[2, 1])
    };
    assert_eq!(convert(&t).unwrap().as_f32().unwrap(), &[1.5, -2.0]);
    let t = TensorProto {
        int64_data: vec![i64::MIN, 5],
        ..typed("l", INT64, &[2])
    };
    assert_eq!(convert(&t).unwrap().as_i64().unwrap(), &[i64::MIN, 5]);
    for (data_type, vals) in [
        (INT32, vec![i32::MIN, i32::MAX]),
        (INT16, vec![-32768, 32767]),
        (UINT16, vec![0, 65535]),
        (INT8, vec![-128, 127]),
        (UINT8, vec![0, 255]),
    ] {
        let t = TensorProto {
            int32_data: vals.clone(),
            ..typed("i", data_type, &[2])
        };
        assert_eq!(convert(&t).unwrap().data(), &TensorData::I32(vals));
    }
    let t = TensorProto {
        int32_data: vec![0, 1, 1],
        ..typed("b", BOOL, &[3])
    };
    assert_eq!(
        convert(&t).unwrap().data(),
        &TensorData::Bool(vec![false, true, true])
    );
}

#[test]
fn scalars_and_empty_tensors() {
    let t = convert(&f32_init("s", &[], &[4.0])).unwrap();
    assert_eq!((t.shape(), t.as_f32().unwrap()), (&[][..], &[4.0][..]));
    // A tensor with a zero dim needs no data at all.
    let t = convert(&typed("e", INT64, &[0, 3])).unwrap();
    assert_eq!((t.shape(), t.len()), (&[0, 3][..], 0));
}

#[test]
fn typed_values_out_of_range_are_rejected() {
    for (data_type, bad) in [
        (UINT8, 256),
        (UINT8, -1),
        (INT8, 128),
        (INT16, -32769),
        (UINT16, 65536),
    ] {
        let t = TensorProto {
            int32_data: vec![0, bad],
            ..typed("i", data_type, &[2])
        };
        assert!(tensor_err(&t).contains(&format!("value {bad} is out of range")));
    }
    let t = TensorProto {
        int32_data: vec![2],
        ..typed("b", BOOL, &[1])
    };
    assert!(tensor_err(&t).contains("not a boolean"));
    let t = TensorProto {
        raw_data: vec![1, 2],
        ..typed("b", BOOL, &[2])
    };
    assert!(tensor_err(&t).contains("byte 2 is not a boolean"));
}

#[test]
fn raw_data_of_the_wrong_length() {
    let mut t = f32_init("w", &[2, 3], &[0.0; 6]);
    t.raw_data.pop();
    assert_eq!(
        tensor_err(&t),
        "raw_data has 23 bytes, but shape [2, 3] of FLOAT needs 24"
    );
    t.raw_data.extend([0, 0]);
    assert!(tensor_err(&t).contains("raw_data has 25 bytes"));
}

#[test]
fn typed_field_of_the_wrong_length() {
    let t = TensorProto {
        float_data: vec![1.0; 5],
        ..typed("w", FLOAT, &[2, 3])
    };
    assert_eq!(
        tensor_err(&t),
        "float_data has 5 values, but the shape needs 6"
    );
    let t = TensorProto {
        int64_data: vec![1; 7],
        ..typed("s", INT64, &[2, 3])
    };
    assert!(tensor_err(&t).contains("int64_data has 7 values"));
}

#[test]
fn negative_dims() {
    let t = f32_init("w", &[2, -3], &[]);
    assert_eq!(tensor_err(&t), "dimension 1 is -3, which is negative");
}

#[test]
fn overflowing_dims_are_rejected_before_allocating() {
    let t = f32_init("w", &[1 << 62, 1 << 62], &[]);
    assert!(tensor_err(&t).contains("element count of shape"));
    // The element count fits but the bytes do not.
    let t = f32_init("w", &[1 << 62, 2], &[]);
    assert!(tensor_err(&t).contains("byte size"));
    // Fits in usize but is far over the tensor limit: a Limit error, not an allocation.
    let e = convert(&f32_init("w", &[1 << 20, 1 << 20], &[])).unwrap_err();
    let (what, value, limit) = limit_err(e);
    assert!(what.contains("\"w\""), "{what}");
    assert_eq!(
        (value, limit),
        (4 << 40, Limits::default().max_tensor_bytes)
    );
}

#[test]
fn rank_limit() {
    let t = f32_init("w", &[1; 9], &[0.0]);
    let (what, value, limit) = limit_err(convert(&t).unwrap_err());
    assert!(what.contains("rank"));
    assert_eq!((value, limit), (9, 8));
    assert!(convert(&f32_init("w", &[1; 8], &[0.0])).is_ok());
}

#[test]
fn tensor_limit_counts_widened_bytes() {
    // 8 UINT8 values are 8 bytes in the file but 32 bytes as i32.
    let limits = Limits {
        max_tensor_bytes: 31,
        ..Limits::default()
    };
    let t = TensorProto {
        raw_data: vec![1; 8],
        ..typed("u", UINT8, &[8])
    };
    let e = tensor_from_proto(&t, &TensorCtx::new(None, &limits)).unwrap_err();
    assert_eq!(limit_err(e).1, 32);
}

#[test]
fn total_weight_limit_spans_tensors_of_one_context() {
    let limits = Limits {
        max_total_weight_bytes: 40,
        ..Limits::default()
    };
    let ctx = TensorCtx::new(None, &limits);
    let t = f32_init("w", &[4], &[1.0; 4]);
    tensor_from_proto(&t, &ctx).unwrap();
    tensor_from_proto(&t, &ctx).unwrap();
    assert_eq!(ctx.total_bytes(), 32);
    let (_, value, limit) = limit_err(tensor_from_proto(&t, &ctx).unwrap_err());
    assert_eq!((value, limit), (48, 40));
}

#[test]
fn exactly_one_data_source() {
    let t = TensorProto {
        float_data: vec![1.0; 6],
        ..f32_init("w", &[2, 3], &[0.0; 6])
    };
    assert_eq!(
        tensor_err(&t),
        "has data in both raw_data and float_data; exactly one data source is allowed"
    );
    let t = typed("w", FLOAT, &[2, 3]);
    assert_eq!(
        tensor_err(&t),
        "has no data, but shape [2, 3] needs 6 elements"
    );
}

#[test]
fn a_field_that_cannot_hold_the_type() {
    let cases = [
        (
            FLOAT,
            "int64_data",
            TensorProto {
                int64_data: vec![1],
                ..Default::default()
            },
        ),
        (
            INT64,
            "int32_data",
            TensorProto {
                int32_data: vec![1],
                ..Default::default()
            },
        ),
        (
            INT32,
            "float_data",
            TensorProto {
                float_data: vec![1.0],
                ..Default::default()
            },
        ),
        (
            FLOAT,
            "double_data",
            TensorProto {
                double_data: vec![1.0],
                ..Default::default()
            },
        ),
        (
            INT64,
            "uint64_data",
            TensorProto {
                uint64_data: vec![1],
                ..Default::default()
            },
        ),
        (
            INT32,
            "string_data",
            TensorProto {
                string_data: vec![b"x".to_vec()],
                ..Default::default()
            },
        ),
    ];
    for (data_type, field, t) in cases {
        let t = TensorProto {
            name: "t".into(),
            data_type,
            dims: vec![1],
            ..t
        };
        let msg = tensor_err(&t);
        assert!(msg.starts_with(&format!("{field} cannot hold")), "{msg}");
    }
}

#[test]
fn unsupported_data_types_are_named() {
    for (data_type, want) in [
        (FLOAT16, "unsupported data type FLOAT16"),
        (DOUBLE, "unsupported data type DOUBLE"),
        (STRING, "unsupported data type STRING"),
        (0, "unsupported data type UNDEFINED"),
        (99, "unknown data type 99"),
        (-1, "unknown data type -1"),
    ] {
        let t = TensorProto {
            raw_data: vec![0; 8],
            ..typed("h", data_type, &[1])
        };
        assert_eq!(tensor_err(&t), want);
    }
}

#[test]
fn segments_and_bad_locations_are_rejected() {
    let t = TensorProto {
        segment: Some(tensor_proto::Segment { begin: 0, end: 1 }),
        ..f32_init("w", &[1], &[1.0])
    };
    assert!(tensor_err(&t).contains("segmented"));
    let t = TensorProto {
        data_location: 7,
        ..f32_init("w", &[1], &[1.0])
    };
    assert_eq!(tensor_err(&t), "unknown data_location 7");
    let t = TensorProto {
        external_data: entries(&[("location", "w.bin")]),
        ..f32_init("w", &[1], &[1.0])
    };
    assert!(tensor_err(&t).contains("data_location is not EXTERNAL"));
}

#[test]
fn dtype_maps_round_trip_and_do_not_widen() {
    for d in [DType::F32, DType::I64, DType::I32, DType::Bool] {
        assert_eq!(dtype_from_onnx(onnx_from_dtype(d)).unwrap(), d);
    }
    for code in [
        0, UINT8, INT8, UINT16, INT16, STRING, FLOAT16, DOUBLE, 12, 13, 16, 23, 24, -5,
    ] {
        assert!(dtype_from_onnx(code).is_err(), "{code}");
    }
    assert_eq!(
        dtype_from_onnx(UINT8).unwrap_err().to_string(),
        "unsupported data type UINT8"
    );
}

fn shaped(name: &str, elem_type: i32, dims: Vec<Option<Result<i64, &str>>>) -> ValueInfoProto {
    use dync_onnx::proto::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .into_iter()
        .map(|d| Dimension {
            value: d.map(|d| match d {
                Ok(v) => Value::DimValue(v),
                Err(p) => Value::DimParam(p.into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(dync_onnx::proto::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn value_err(v: &ValueInfoProto) -> String {
    match value_info_type(v, &Limits::default())
        .unwrap_err()
        .into_kind()
    {
        ErrorKind::Value { name, message } => {
            assert_eq!(name, v.name);
            message
        }
        other => panic!("expected a Value error, got {other:?}"),
    }
}

#[test]
fn value_info_dims_known_symbolic_and_unknown() {
    let v = shaped(
        "x",
        FLOAT,
        vec![
            Some(Err("batch")),
            Some(Ok(3)),
            Some(Err("")),
            None,
            Some(Ok(0)),
        ],
    );
    assert_eq!(
        value_info_type(&v, &Limits::default()).unwrap(),
        ValueType {
            dtype: DType::F32,
            shape: Some(vec![
                Dim::Symbolic("batch".into()),
                Dim::Known(3),
                Dim::Unknown,
                Dim::Unknown,
                Dim::Known(0)
            ]),
        }
    );
    let v = ValueInfoProto {
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: INT64,
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        value_info_type(&v, &Limits::default()).unwrap(),
        ValueType {
            dtype: DType::I64,
            shape: None
        }
    );
}

#[test]
fn value_info_rejections() {
    assert_eq!(
        value_err(&shaped("x", FLOAT, vec![Some(Ok(1)), Some(Ok(-2))])),
        "dimension 1 is -2, which is negative"
    );
    assert_eq!(
        value_err(&shaped("x", FLOAT16, vec![])),
        "unsupported data type FLOAT16"
    );
    assert_eq!(
        value_err(&shaped("x", UINT8, vec![])),
        "unsupported data type UINT8"
    );
    assert_eq!(
        value_err(&ValueInfoProto {
            name: "x".into(),
            ..Default::default()
        }),
        "has no type"
    );
    let seq = ValueInfoProto {
        name: "s".into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::SequenceType(Box::default())),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        value_err(&seq),
        "is a sequence; only dense tensors are supported"
    );
    let e = value_info_type(
        &shaped("x", FLOAT, vec![Some(Ok(1)); 9]),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(limit_err(e).1, 9);
}
