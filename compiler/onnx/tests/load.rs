//! Model-level loading: non-ONNX files, truncation, deep nesting, graph and opset checks, limits,
//! and error messages that start with the file.

mod load_util;

use dync_onnx::load::{load_model, load_model_bytes, MAX_OPSET, MIN_OPSET};
use dync_onnx::proto::{AttributeProto, GraphProto, ModelProto};
use dync_onnx::tensor::{tensor_from_proto, value_info_type, TensorCtx};
use dync_onnx::{ErrorKind, ImportError, Limits};
use load_util::*;
use std::path::Path;

fn not_onnx_reason(e: &ImportError) -> &str {
    match e.kind() {
        ErrorKind::NotOnnx { reason } => reason,
        other => panic!("expected NotOnnx, got {other:?}"),
    }
}

fn load_file(
    bytes: &[u8],
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Result<(), ImportError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "model.onnx", bytes);
    let r = load_model(&path, &Limits::default()).map(|_| ());
    (dir, path, r)
}

#[test]
fn valid_model_loads_with_opset_graph_and_canonical_folder() {
    let (dir, path, _) = load_file(&encode(&tiny_model()));
    let m = load_model(&path, &Limits::default()).unwrap();
    assert_eq!(m.opset, 17);
    assert_eq!(m.graph, tiny_graph());
    assert!(m.model.graph.is_none());
    assert_eq!(m.path.as_deref(), Some(path.as_path()));
    assert_eq!(m.base_dir, Some(dir.path().canonicalize().unwrap()));
    assert_eq!(m.opset_version("ai.onnx"), Some(17));
    assert_eq!(m.opset_version("com.microsoft"), None);
}

#[test]
fn empty_file_is_not_onnx_and_the_message_names_the_file() {
    let (_dir, path, r) = load_file(b"");
    let e = r.unwrap_err();
    assert!(not_onnx_reason(&e).contains("empty"));
    assert_eq!(e.path(), Some(path.as_path()));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}: not an ONNX model", path.display())),
        "{msg}"
    );
}

#[test]
fn other_formats_are_recognized() {
    let mut npy =
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }".to_vec();
    npy.extend_from_slice(&[b' '; 8]);
    npy.extend_from_slice(&1f32.to_le_bytes());
    let cases: &[(&[u8], &str)] = &[
        (&npy, ".npy"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl", "zip"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip"),
        (b"\x89HDF\r\n\x1a\n\x00\x00", "HDF5"),
        (b"\x80\x02}q\x00.", "pickle"),
        (b"ir_version: 8\ngraph {\n  node { op_type: \"Relu\" }\n}\n", "text"),
        ("<\n  ir_version: 8,\n  opset_import: [\"\" : 17]\n>\nagraph (float[N] X) => (float[N] Y) {\n  Y = Relu(X)\n}\n".as_bytes(), "text"),
    ];
    for (bytes, want) in cases {
        let (_dir, _path, r) = load_file(bytes);
        let e = r.unwrap_err();
        let reason = not_onnx_reason(&e);
        assert!(reason.contains(want), "{want}: {reason}");
    }
}

#[test]
fn random_bytes_never_load_and_never_panic() {
    let mut rng = Rng(7);
    for i in 0..2000 {
        let len = 1 + (rng.next_u64() % 300) as usize;
        let bytes = rng.bytes(len);
        let r = load_model_bytes(&bytes, None, &Limits::default());
        // A random buffer that happens to decode still lacks ir_version, graph or opset.
        assert!(r.is_err(), "random buffer {i} loaded: {bytes:?}");
    }
}

/// Decodes `bytes` and, when that succeeds, materializes every initializer and declared type:
/// nothing on the way may panic.
fn load_everything(bytes: &[u8]) -> Result<(), ImportError> {
    let limits = Limits::default();
    let m = load_model_bytes(bytes, None, &limits)?;
    let ctx = TensorCtx::new(None, &limits);
    for t in &m.graph.initializer {
        tensor_from_proto(t, &ctx)?;
    }
    for v in m
        .graph
        .input
        .iter()
        .chain(&m.graph.output)
        .chain(&m.graph.value_info)
    {
        value_info_type(v, &limits)?;
    }
    Ok(())
}

#[test]
fn mutated_models_give_results_not_panics() {
    let good = encode(&tiny_model());
    assert!(load_everything(&good).is_ok());
    let mut rng = Rng(11);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..5000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let i = (rng.next_u64() % b.len() as u64) as usize;
            b[i] = rng.next_u64() as u8;
        }
        match load_everything(&b) {
            Ok(()) => ok += 1,
            Err(_) => err += 1,
        }
    }
    // Mutating a byte inside a name or a float keeps the model valid; most mutations break it.
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}

/// The model in the field order exporters write (graph, then opset_import), which prost's
/// derived encoder does not produce on its own: concatenated protobuf messages merge.
fn exporter_order_bytes() -> Vec<u8> {
    let mut without_opset = tiny_model();
    let opsets = std::mem::take(&mut without_opset.opset_import);
    let mut b = encode(&without_opset);
    b.extend(encode(&ModelProto {
        opset_import: opsets,
        ..Default::default()
    }));
    b
}

#[test]
fn truncation_at_every_offset_is_a_clean_error() {
    for bytes in [encode(&tiny_model()), exporter_order_bytes()] {
        assert!(load_everything(&bytes).is_ok());
        for cut in 0..bytes.len() {
            let e = load_model_bytes(&bytes[..cut], None, &Limits::default())
                .map(|_| ())
                .expect_err(&format!("model cut at {cut} of {} loaded", bytes.len()));
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::NotOnnx { .. } | ErrorKind::MissingGraph | ErrorKind::MissingOpset
                ),
                "cut at {cut}: {e}"
            );
        }
    }
}

#[test]
fn a_cut_after_the_graph_is_reported_as_a_missing_opset() {
    let bytes = exporter_order_bytes();
    let graph_only = encode(&ModelProto {
        opset_import: vec![],
        ..tiny_model()
    });
    let e = load_model_bytes(&bytes[..graph_only.len()], None, &Limits::default()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::MissingOpset), "{e}");
}

fn varint_len(v: u64) -> u64 {
    let mut b = Vec::new();
    varint(v, &mut b);
    b.len() as u64
}

/// A ModelProto whose graph holds a node whose attribute holds a graph ... `depth` times,
/// written as raw bytes: building it as prost values would itself recurse `depth` deep.
fn nested_graphs(depth: usize) -> Vec<u8> {
    // Lengths of graph/node/attribute payloads, innermost (an empty graph) first.
    let mut graph = vec![0u64];
    let mut node = vec![0u64];
    let mut attr = vec![0u64];
    for k in 1..=depth {
        let g = graph[k - 1];
        let a = 1 + varint_len(g) + g;
        let n = 1 + varint_len(a) + a;
        attr.push(a);
        node.push(n);
        graph.push(1 + varint_len(n) + n);
    }
    let mut out = vec![0x08, 8]; // ir_version = 8
    out.push(0x3a); // ModelProto.graph
    varint(graph[depth], &mut out);
    for k in (1..=depth).rev() {
        out.push(0x0a); // GraphProto.node
        varint(node[k], &mut out);
        out.push(0x2a); // NodeProto.attribute
        varint(attr[k], &mut out);
        out.push(0x32); // AttributeProto.g
        varint(graph[k - 1], &mut out);
    }
    out.extend([0x42, 0x02, 0x10, 17]); // opset_import { version: 17 }
    out
}

#[test]
fn deeply_nested_graphs_are_an_error_not_a_stack_overflow() {
    let e = load_model_bytes(&nested_graphs(10_000), None, &Limits::default()).unwrap_err();
    assert!(not_onnx_reason(&e).contains("recursion limit"), "{e}");
}

#[test]
fn deeply_nested_groups_are_an_error_not_a_stack_overflow() {
    // Unknown field 100 as nested groups (the wire type of RUSTSEC-2024-0437).
    let mut b = vec![0x08, 8];
    for _ in 0..10_000 {
        b.extend([0xa3, 0x06]); // start group, field 100
    }
    for _ in 0..10_000 {
        b.extend([0xa4, 0x06]); // end group, field 100
    }
    let e = load_model_bytes(&b, None, &Limits::default()).unwrap_err();
    assert!(not_onnx_reason(&e).contains("recursion limit"), "{e}");
}

#[test]
fn moderate_nesting_loads_and_counts_nested_nodes() {
    let bytes = nested_graphs(20);
    let m = load_model_bytes(&bytes, None, &Limits::default()).unwrap();
    assert_eq!(m.opset, 17);
    let limits = Limits {
        max_nodes: 19,
        ..Limits::default()
    };
    let e = load_model_bytes(&bytes, None, &limits).unwrap_err();
    match e.kind() {
        ErrorKind::Limit { value, limit, .. } => assert_eq!((*value, *limit), (20, 19)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn node_limit_counts_the_main_graph() {
    let mut g = tiny_graph();
    let node = g.node[0].clone();
    g.node = vec![node; 5];
    let bytes = encode(&model(g));
    let at = |max_nodes| {
        load_model_bytes(
            &bytes,
            None,
            &Limits {
                max_nodes,
                ..Limits::default()
            },
        )
        .map(|_| ())
    };
    assert!(at(5).is_ok());
    assert!(matches!(
        at(4).unwrap_err().kind(),
        ErrorKind::Limit {
            value: 5,
            limit: 4,
            ..
        }
    ));
}

#[test]
fn subgraphs_in_graphs_attributes_are_counted() {
    let inner = tiny_graph();
    let mut g = tiny_graph();
    g.node[0].attribute.push(AttributeProto {
        name: "branches".into(),
        graphs: vec![inner.clone(), inner],
        ..Default::default()
    });
    let bytes = encode(&model(g));
    let limits = Limits {
        max_nodes: 2,
        ..Limits::default()
    };
    let e = load_model_bytes(&bytes, None, &limits).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Limit { value: 3, .. }), "{e}");
}

#[test]
fn file_size_limit_is_checked_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = encode(&tiny_model());
    let path = write(dir.path(), "m.onnx", &bytes);
    let limits = Limits {
        max_file_bytes: bytes.len() as u64 - 1,
        ..Limits::default()
    };
    let e = load_model(&path, &limits).unwrap_err();
    match e.kind() {
        ErrorKind::Limit { value, limit, .. } => {
            assert_eq!(
                (*value, *limit),
                (bytes.len() as u64, bytes.len() as u64 - 1)
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with(&path.display().to_string()));
    let e = load_model_bytes(&bytes, None, &limits).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Limit { .. }));
}

#[test]
fn missing_graph() {
    let m = ModelProto {
        graph: None,
        ..tiny_model()
    };
    let e = load_model_bytes(&encode(&m), None, &Limits::default()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::MissingGraph), "{e}");
}

#[test]
fn missing_ir_version_is_not_onnx() {
    let m = ModelProto {
        ir_version: 0,
        ..tiny_model()
    };
    let e = load_model_bytes(&encode(&m), None, &Limits::default()).unwrap_err();
    assert!(not_onnx_reason(&e).contains("ir_version"));
}

fn with_opsets(opsets: Vec<dync_onnx::proto::OperatorSetIdProto>) -> Result<i64, ImportError> {
    let m = ModelProto {
        opset_import: opsets,
        ..tiny_model()
    };
    load_model_bytes(&encode(&m), None, &Limits::default()).map(|m| m.opset)
}

#[test]
fn opset_of_the_default_domain_is_required_and_in_range() {
    assert!(matches!(
        with_opsets(vec![]).unwrap_err().kind(),
        ErrorKind::MissingOpset
    ));
    assert!(matches!(
        with_opsets(vec![opset("com.microsoft", 1)])
            .unwrap_err()
            .kind(),
        ErrorKind::MissingOpset
    ));
    for v in [MIN_OPSET - 1, MAX_OPSET + 1, -1, i64::MAX] {
        let e = with_opsets(vec![opset("", v)]).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::UnsupportedOpset { version, .. } if *version == v),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("opset {v} of domain ai.onnx")),
            "{e}"
        );
    }
    for v in MIN_OPSET..=MAX_OPSET {
        assert_eq!(with_opsets(vec![opset("", v)]).unwrap(), v);
    }
    assert_eq!(with_opsets(vec![opset("ai.onnx", 13)]).unwrap(), 13);
}

#[test]
fn other_domains_are_accepted_at_load_whatever_their_version() {
    let m = ModelProto {
        opset_import: vec![opset("", 18), opset("com.microsoft", 999)],
        ..tiny_model()
    };
    let m = load_model_bytes(&encode(&m), None, &Limits::default()).unwrap();
    assert_eq!(m.opset, 18);
    assert_eq!(m.opset_version("com.microsoft"), Some(999));
}

#[test]
fn duplicated_domains_are_rejected() {
    let e = with_opsets(vec![opset("", 17), opset("ai.onnx", 17)]).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::DuplicateOpset { domain } if domain.is_empty()));
    let e = with_opsets(vec![opset("", 17), opset("x", 1), opset("x", 2)]).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::DuplicateOpset { domain } if domain == "x"));
}

#[test]
fn directories_fifos_and_missing_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_model(dir.path(), &Limits::default()).unwrap_err();
    assert!(not_onnx_reason(&e).contains("directory"));

    let missing = dir.path().join("nope.onnx");
    let e = load_model(&missing, &Limits::default()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Io { .. }));
    assert!(e.to_string().starts_with(&missing.display().to_string()));

    // A FIFO without a writer: opening must not block, and it is not a regular file.
    let fifo = dir.path().join("fifo.onnx");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let e = load_model(&fifo, &Limits::default()).unwrap_err();
    assert!(not_onnx_reason(&e).contains("not a regular file"));
}

#[test]
fn model_in_the_current_folder_gets_a_folder() {
    // A bare file name has an empty parent; the model's folder is then "." (tests run in the
    // crate's folder, whose Cargo.toml is a text file).
    let e = load_model(Path::new("Cargo.toml"), &Limits::default()).unwrap_err();
    assert!(not_onnx_reason(&e).contains("text"), "{e}");
}

#[test]
fn errors_attached_by_the_importer_name_the_file_once() {
    let (_dir, path, _) = load_file(&encode(&tiny_model()));
    let m = load_model(&path, &Limits::default()).unwrap();
    let e = m.error(ErrorKind::node("/layer1/Conv", "Conv", "group 0"));
    assert_eq!(
        e.to_string(),
        format!("{}: node \"/layer1/Conv\" (Conv): group 0", path.display())
    );
    // The first file attached wins.
    assert_eq!(e.with_path("other.onnx").path(), Some(path.as_path()));
}

#[test]
fn unsupported_lists_every_entry() {
    let e = ImportError::from(ErrorKind::Unsupported(vec![
        dync_onnx::error::Unsupported {
            node: "a".into(),
            op_type: "Loop".into(),
            what: "op type Loop".into(),
        },
        dync_onnx::error::Unsupported {
            node: "b".into(),
            op_type: "Conv".into(),
            what: "attribute auto_pad=VALID".into(),
        },
    ]))
    .with_path("m.onnx");
    assert_eq!(
        e.to_string(),
        "m.onnx: 2 unsupported ops or attributes:\n  node \"a\" (Loop): unsupported op type Loop\n  \
         node \"b\" (Conv): unsupported attribute auto_pad=VALID"
    );
}

#[test]
fn hostile_names_are_escaped_in_messages() {
    let e = ImportError::from(ErrorKind::node("a\u{1b}[2J\0", "Conv", "bad"));
    assert_eq!(e.to_string(), "node \"a\\u{1b}[2J\\0\" (Conv): bad");
}

#[test]
fn graph_without_nodes_loads() {
    // Structure is the importer's business; loading only needs a graph.
    let m = model(GraphProto::default());
    assert!(load_model_bytes(&encode(&m), None, &Limits::default()).is_ok());
}
