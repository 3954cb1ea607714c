//! External tensor data: a valid layout end to end through `load_model`, and every way a
//! `location`, the file it names, or its offset/length can be unsafe or inconsistent.

mod load_util;

use dync_onnx::proto::TensorProto;
use dync_onnx::tensor::{tensor_from_proto, TensorCtx};
use dync_onnx::{load_model, load_model_bytes, ErrorKind, ImportError, Limits};
use load_util::*;
use std::path::Path;

/// A FLOAT tensor of `dims` whose data is external, with the given `external_data` entries.
fn ext(name: &str, dims: &[i64], kv: &[(&str, &str)]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        data_location: 1,
        external_data: entries(kv),
        ..Default::default()
    }
}

fn le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read_in(dir: &Path, t: &TensorProto) -> Result<dync_ir::Tensor, ImportError> {
    let limits = Limits::default();
    tensor_from_proto(t, &TensorCtx::new(Some(dir), &limits))
}

/// The message of an `ExternalData` error, after checking it names the tensor and location.
fn ext_err(dir: &Path, t: &TensorProto) -> String {
    let e = read_in(dir, t).unwrap_err();
    match e.kind() {
        ErrorKind::ExternalData {
            tensor,
            path,
            message,
        } => {
            assert_eq!(tensor, &t.name);
            let loc = t
                .external_data
                .iter()
                .find(|e| e.key == "location")
                .map(|e| e.value.as_str());
            assert_eq!(path, loc.unwrap_or(""));
            message.clone()
        }
        other => panic!("expected an ExternalData error, got {other:?}"),
    }
}

#[test]
fn valid_external_data_loads_through_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(5);
    let a: Vec<f32> = (0..6).map(|_| rng.f32()).collect();
    let b: Vec<f32> = (0..4).map(|_| rng.f32()).collect();
    // Layout: 16 bytes of padding, a, then b (b without an explicit length).
    let mut file = vec![0xee; 16];
    file.extend(le(&a));
    file.extend(le(&b));
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    write(dir.path(), "weights/data.bin", &file);
    let mut g = tiny_graph();
    g.initializer = vec![
        ext(
            "a",
            &[2, 3],
            &[
                ("location", "weights/data.bin"),
                ("offset", "16"),
                ("length", "24"),
                ("checksum", "x"),
            ],
        ),
        ext(
            "b",
            &[4],
            &[("location", "weights/data.bin"), ("offset", "40")],
        ),
    ];
    let path = write(dir.path(), "model.onnx", &encode(&model(g)));
    let limits = Limits::default();
    let m = load_model(&path, &limits).unwrap();
    let ctx = m.tensor_ctx(&limits);
    let ta = tensor_from_proto(&m.graph.initializer[0], &ctx).unwrap();
    let tb = tensor_from_proto(&m.graph.initializer[1], &ctx).unwrap();
    assert_eq!(
        (ta.shape(), ta.as_f32().unwrap()),
        (&[2, 3][..], a.as_slice())
    );
    assert_eq!((tb.shape(), tb.as_f32().unwrap()), (&[4][..], b.as_slice()));
    assert_eq!(ctx.total_bytes(), 40);
}

#[test]
fn offset_defaults_to_zero_and_narrow_types_widen() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "u8.bin", &[200, 7, 0]);
    let t = TensorProto {
        data_type: UINT8,
        ..ext("u", &[3], &[("location", "u8.bin")])
    };
    assert_eq!(
        read_in(dir.path(), &t).unwrap().data(),
        &dync_ir::TensorData::I32(vec![200, 7, 0])
    );
}

#[test]
fn in_memory_models_reject_external_data_unless_given_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.bin", &le(&[1.0, 2.0]));
    let mut g = tiny_graph();
    g.initializer = vec![ext("w", &[2], &[("location", "w.bin")])];
    let bytes = encode(&model(g));
    let limits = Limits::default();

    let m = load_model_bytes(&bytes, None, &limits).unwrap();
    let e = tensor_from_proto(&m.graph.initializer[0], &m.tensor_ctx(&limits)).unwrap_err();
    assert!(
        e.to_string()
            .contains("not allowed for a model without a folder"),
        "{e}"
    );

    let m = load_model_bytes(&bytes, Some(dir.path()), &limits).unwrap();
    let t = tensor_from_proto(&m.graph.initializer[0], &m.tensor_ctx(&limits)).unwrap();
    assert_eq!(t.as_f32().unwrap(), &[1.0, 2.0]);
}

#[test]
fn parent_components_cannot_escape() {
    let root = tempfile::tempdir().unwrap();
    let model_dir = root.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    write(root.path(), "escape", &le(&[1.0]));
    write(&model_dir, "inside", &le(&[1.0]));
    for loc in ["../escape", "sub/../../escape", "sub/../inside"] {
        let msg = ext_err(&model_dir, &ext("w", &[1], &[("location", loc)]));
        assert_eq!(msg, "the location contains `..`", "{loc}");
    }
}

#[test]
fn absolute_empty_dot_and_nul_locations_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let abs = write(dir.path(), "w.bin", &le(&[1.0]));
    let abs = abs.to_str().unwrap();
    for (loc, want) in [
        (abs, "the location is absolute"),
        ("/etc/passwd", "the location is absolute"),
        ("", "the location is empty"),
        ("./w.bin", "the location contains `.`"),
        ("w.bin\0", "the location contains a NUL byte"),
        ("w\0/../../etc/passwd", "the location contains a NUL byte"),
    ] {
        let msg = ext_err(dir.path(), &ext("w", &[1], &[("location", loc)]));
        assert!(msg.starts_with(want), "{loc:?}: {msg}");
    }
}

#[test]
fn symlinks_are_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let model_dir = root.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    write(&model_dir, "real.bin", &le(&[1.0]));
    write(root.path(), "outside.bin", &le(&[1.0]));
    // A link to a file inside the folder: refused by O_NOFOLLOW.
    std::os::unix::fs::symlink("real.bin", model_dir.join("link.bin")).unwrap();
    let msg = ext_err(&model_dir, &ext("w", &[1], &[("location", "link.bin")]));
    assert_eq!(msg, "is a symbolic link, which is not followed");
    // A link leaving the folder: refused by the containment check already.
    std::os::unix::fs::symlink("../outside.bin", model_dir.join("out.bin")).unwrap();
    let msg = ext_err(&model_dir, &ext("w", &[1], &[("location", "out.bin")]));
    assert_eq!(msg, "resolves to a path outside the model's folder");
    // A linked directory leaving the folder.
    std::os::unix::fs::symlink(root.path(), model_dir.join("up")).unwrap();
    let msg = ext_err(
        &model_dir,
        &ext("w", &[1], &[("location", "up/outside.bin")]),
    );
    assert_eq!(msg, "resolves to a path outside the model's folder");
}

#[test]
fn a_linked_directory_inside_the_folder_is_allowed() {
    // O_NOFOLLOW guards the last component; directories are checked by canonical containment.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    write(&dir.path().join("real"), "w.bin", &le(&[3.0]));
    std::os::unix::fs::symlink("real", dir.path().join("alias")).unwrap();
    let t = read_in(dir.path(), &ext("w", &[1], &[("location", "alias/w.bin")])).unwrap();
    assert_eq!(t.as_f32().unwrap(), &[3.0]);
}

#[test]
fn hard_linked_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "w.bin", &le(&[1.0]));
    std::fs::hard_link(&p, dir.path().join("w2.bin")).unwrap();
    let msg = ext_err(dir.path(), &ext("w", &[1], &[("location", "w.bin")]));
    assert_eq!(
        msg,
        "has 2 hard links; only files with exactly one link are read"
    );
}

#[test]
fn directories_fifos_and_missing_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    let msg = ext_err(dir.path(), &ext("w", &[1], &[("location", "d")]));
    assert_eq!(msg, "is not a regular file");
    // Opening a FIFO without a writer must not block.
    let st = std::process::Command::new("mkfifo")
        .arg(dir.path().join("f"))
        .status()
        .unwrap();
    assert!(st.success());
    let msg = ext_err(dir.path(), &ext("w", &[1], &[("location", "f")]));
    assert_eq!(msg, "is not a regular file");
    let msg = ext_err(dir.path(), &ext("w", &[1], &[("location", "missing.bin")]));
    assert!(msg.starts_with("cannot be resolved"), "{msg}");
}

#[test]
fn ranges_past_the_end_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.bin", &le(&[1.0, 2.0, 3.0]));
    let cases = [
        (
            vec![("offset", "4"), ("length", "12")],
            "bytes 4..16 are past the end of the file (12 bytes)",
        ),
        (
            vec![("offset", "12")],
            "bytes 12..24 are past the end of the file (12 bytes)",
        ),
        (
            vec![("offset", "18446744073709551615")],
            "offset 18446744073709551615 plus 12 bytes overflows",
        ),
        (
            vec![("offset", "18446744073709551604")],
            "offset 18446744073709551604 plus 12 bytes overflows",
        ),
        (
            vec![("offset", "18446744073709551603")],
            "bytes 18446744073709551603..18446744073709551615 are past",
        ),
    ];
    for (kv, want) in cases {
        let mut all = vec![("location", "w.bin")];
        all.extend(kv);
        let msg = ext_err(dir.path(), &ext("w", &[3], &all));
        assert!(msg.starts_with(want), "{want}: {msg}");
    }
    // A tensor shorter than the file is fine, at any offset that fits.
    let t = read_in(
        dir.path(),
        &ext("w", &[2], &[("location", "w.bin"), ("offset", "4")]),
    )
    .unwrap();
    assert_eq!(t.as_f32().unwrap(), &[2.0, 3.0]);
}

#[test]
fn length_must_match_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.bin", &le(&[1.0; 8]));
    for len in ["8", "16", "0", "18446744073709551615"] {
        let msg = ext_err(
            dir.path(),
            &ext("w", &[3], &[("location", "w.bin"), ("length", len)]),
        );
        assert_eq!(
            msg,
            format!("length is {len} bytes, but the tensor's shape and type need 12")
        );
    }
}

#[test]
fn malformed_entries() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.bin", &le(&[1.0]));
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("offset", "0")], "no location is given"),
        (
            &[("location", "w.bin"), ("offset", "-1")],
            "offset \"-1\" is not an integer",
        ),
        (
            &[("location", "w.bin"), ("offset", "0x10")],
            "offset \"0x10\" is not an integer",
        ),
        (
            &[("location", "w.bin"), ("length", "18446744073709551616")],
            "length \"18446744073709551616\" is not",
        ),
        (
            &[("location", "w.bin"), ("location", "w.bin")],
            "key \"location\" is given more than once",
        ),
        (
            &[("location", "w.bin"), ("path", "x")],
            "unknown key \"path\"",
        ),
    ];
    for (kv, want) in cases {
        let msg = ext_err(dir.path(), &ext("w", &[1], kv));
        assert!(msg.starts_with(want), "{want}: {msg}");
    }
}

#[test]
fn external_data_and_raw_data_together_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "w.bin", &le(&[1.0]));
    let t = TensorProto {
        raw_data: le(&[1.0]),
        ..ext("w", &[1], &[("location", "w.bin")])
    };
    let e = read_in(dir.path(), &t).unwrap_err();
    assert!(
        e.to_string().contains("both raw_data and external data"),
        "{e}"
    );
}

#[test]
fn limits_apply_before_the_file_is_opened() {
    // The tensor claims 4 TiB; the limit stops it before any file access (the file is absent).
    let dir = tempfile::tempdir().unwrap();
    let e = read_in(
        dir.path(),
        &ext("w", &[1 << 20, 1 << 20], &[("location", "absent.bin")]),
    )
    .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Limit { .. }), "{e}");
}

#[test]
fn errors_from_the_model_name_the_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = tiny_graph();
    g.initializer = vec![ext("w", &[2, 3], &[("location", "../../etc/passwd")])];
    let path = write(dir.path(), "model.onnx", &encode(&model(g)));
    let limits = Limits::default();
    let m = load_model(&path, &limits).unwrap();
    let e = tensor_from_proto(&m.graph.initializer[0], &m.tensor_ctx(&limits)).unwrap_err();
    assert_eq!(
        m.error(e).to_string(),
        format!(
            "{}: tensor \"w\": external data \"../../etc/passwd\": the location contains `..`",
            path.display()
        )
    );
}
