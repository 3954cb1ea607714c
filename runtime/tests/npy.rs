//! `.npy` reader and writer: round trips, the written layout, and every rejection the reader
//! promises (each asserting the error kind and that the message names the file).

use std::fs;
use std::path::Path;

use dync_runtime::npy::{
    read_npy, read_npy_bytes, sanitize_name, write_npy, write_npy_bytes, NpyArray, NpyDType,
    NpyData, NpyError, NpyErrorKind, MAX_HEADER_LEN, MAX_NESTING, MAX_RANK,
};

const NO_LIMIT: u64 = u64::MAX;

/// A `.npy` file with the given version, raw header text (unpadded) and data bytes.
fn raw(version: (u8, u8), header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version.0, version.1]);
    if version.0 == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn header(descr: &str, fortran: bool, shape: &str) -> String {
    let fortran = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n")
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn read_err(bytes: &[u8]) -> NpyErrorKind {
    match read_npy_bytes(bytes, NO_LIMIT) {
        Ok(arr) => panic!("expected an error, read {arr:?}"),
        Err(e) => {
            assert!(e.to_string().starts_with("<bytes>: "), "{e}");
            e.kind
        }
    }
}

/// An array of `dtype` and `shape` whose elements are distinct functions of their index
/// (bools alternate in a pattern of period 3), including negative values.
fn sample(dtype: NpyDType, shape: &[usize]) -> NpyArray {
    let n: usize = shape.iter().product();
    let data = match dtype {
        NpyDType::F32 => NpyData::F32((0..n).map(|i| i as f32 * 0.25 - 3.5).collect()),
        NpyDType::I64 => NpyData::I64((0..n).map(|i| (i as i64 - 7) * 1_000_000_007).collect()),
        NpyDType::I32 => NpyData::I32((0..n).map(|i| i as i32 * -3 + 11).collect()),
        NpyDType::Bool => NpyData::Bool((0..n).map(|i| i % 3 == 1).collect()),
    };
    NpyArray {
        shape: shape.to_vec(),
        data,
    }
}

const DTYPES: [NpyDType; 4] = [NpyDType::F32, NpyDType::I64, NpyDType::I32, NpyDType::Bool];
const SHAPES: &[&[usize]] = &[
    &[],
    &[0],
    &[5],
    &[2, 3],
    &[3, 0],
    &[2, 0, 3],
    &[2, 3, 4],
    &[1, 2, 3, 4],
    &[2, 3, 0, 4],
];

#[test]
fn round_trip_every_dtype_and_rank_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in DTYPES {
        for shape in SHAPES {
            let arr = sample(dtype, shape);
            let bytes = write_npy_bytes(&arr).unwrap();
            assert_eq!(
                read_npy_bytes(&bytes, NO_LIMIT).unwrap(),
                arr,
                "{dtype} {shape:?}"
            );

            let path = dir.path().join(format!("{dtype}_{}.npy", shape.len()));
            write_npy(&path, &arr).unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "file and in-memory bytes differ"
            );
            assert_eq!(read_npy(&path, NO_LIMIT).unwrap(), arr, "{dtype} {shape:?}");
        }
    }
}

#[test]
fn special_floats_round_trip_bit_exactly() {
    let values = [
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::MIN_POSITIVE / 2.0,
        f32::MAX,
    ];
    let arr = NpyArray {
        shape: vec![values.len()],
        data: NpyData::F32(values.to_vec()),
    };
    let back = read_npy_bytes(&write_npy_bytes(&arr).unwrap(), NO_LIMIT).unwrap();
    let NpyData::F32(back) = back.data else {
        panic!("dtype changed");
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&values));
}

#[test]
fn written_layout_is_numpy_format_1_0_aligned_and_deterministic() {
    for dtype in DTYPES {
        for shape in SHAPES {
            let arr = sample(dtype, shape);
            let bytes = write_npy_bytes(&arr).unwrap();
            assert_eq!(bytes, write_npy_bytes(&arr.clone()).unwrap());
            assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            let data_offset = 10 + hlen;
            assert_eq!(data_offset % 64, 0, "data must start 64-byte aligned");
            let text = std::str::from_utf8(&bytes[10..data_offset]).unwrap();
            assert!(text.ends_with('\n'));
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let tuple = match dims.len() {
                1 => format!("({},)", dims[0]),
                _ => format!("({})", dims.join(", ")),
            };
            assert_eq!(
                text.trim_end(),
                header(dtype.descr(), false, &tuple).trim_end()
            );
            assert_eq!(bytes.len() - data_offset, arr.len() * dtype.itemsize());
        }
    }
}

#[test]
fn writing_rejects_a_shape_that_does_not_match_the_data() {
    let arr = NpyArray {
        shape: vec![2, 3],
        data: NpyData::F32(vec![0.0; 5]),
    };
    let e = write_npy_bytes(&arr).unwrap_err();
    assert!(matches!(
        e.kind,
        NpyErrorKind::ShapeMismatch { actual: 5, .. }
    ));
    assert_eq!(
        e.to_string(),
        "<bytes>: shape 2x3 does not match the data's 5 elements"
    );
    let overflowing = NpyArray {
        shape: vec![usize::MAX, 2],
        data: NpyData::Bool(vec![]),
    };
    assert!(matches!(
        write_npy_bytes(&overflowing).unwrap_err().kind,
        NpyErrorKind::ShapeMismatch { .. }
    ));
    let too_deep = NpyArray {
        shape: vec![1; MAX_RANK + 1],
        data: NpyData::I32(vec![7]),
    };
    assert!(matches!(
        write_npy_bytes(&too_deep).unwrap_err().kind,
        NpyErrorKind::RankTooLarge { .. }
    ));
}

#[test]
fn write_is_atomic_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    fs::write(&path, b"old contents").unwrap();
    let arr = sample(NpyDType::F32, &[4, 4]);
    write_npy(&path, &arr).unwrap();
    assert_eq!(read_npy(&path, NO_LIMIT).unwrap(), arr);

    // A failing write (shape mismatch) leaves the previous file untouched.
    let bad = NpyArray {
        shape: vec![3],
        data: NpyData::F32(vec![1.0]),
    };
    write_npy(&path, &bad).unwrap_err();
    assert_eq!(read_npy(&path, NO_LIMIT).unwrap(), arr);

    // The destination is a directory: the rename fails and the temporary file is removed.
    let sub = dir.path().join("taken");
    fs::create_dir(&sub).unwrap();
    let e = write_npy(&sub, &arr).unwrap_err();
    assert!(matches!(e.kind, NpyErrorKind::Io { .. }), "{e}");
    assert!(e.to_string().starts_with(&sub.display().to_string()), "{e}");

    // A missing directory is an I/O error naming the destination.
    let missing = dir.path().join("no/such/dir/out.npy");
    let e = write_npy(&missing, &arr).unwrap_err();
    assert!(matches!(e.kind, NpyErrorKind::Io { .. }), "{e}");

    let e = write_npy(Path::new(".."), &arr).unwrap_err();
    assert!(matches!(e.kind, NpyErrorKind::NoFileName), "{e}");

    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["out.npy", "taken"]);
}

#[test]
fn sanitize_name_maps_unsafe_characters_and_special_names() {
    let cases = [
        ("output", "output"),
        ("logits:0", "logits_0"),
        ("a/b\\c", "a_b_c"),
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("x.y-z_1", "x.y-z_1"),
        ("", "_"),
        (".", "_"),
        ("..", "__"),
        ("...", "..."),
        ("sp ace", "sp_ace"),
        ("ünï", "_n_"),
        ("nul\0byte", "nul_byte"),
    ];
    for (name, want) in cases {
        let got = sanitize_name(name);
        assert_eq!(got, want, "sanitize_name({name:?})");
        assert!(!got.is_empty() && got != "." && got != ".." && !got.contains('/'));
    }
}

#[test]
fn fortran_order_is_transposed_into_c_order() {
    // C-order reference: element (i, j, k) = 100 i + 10 j + k. In Fortran order it is stored at
    // i + j·d0 + k·d0·d1.
    let (d0, d1, d2) = (2usize, 3usize, 4usize);
    let mut fortran = vec![0f32; d0 * d1 * d2];
    let mut c_order = Vec::new();
    for i in 0..d0 {
        for j in 0..d1 {
            for k in 0..d2 {
                let v = (100 * i + 10 * j + k) as f32;
                fortran[i + j * d0 + k * d0 * d1] = v;
                c_order.push(v);
            }
        }
    }
    let bytes = raw(
        (1, 0),
        &header("<f4", true, "(2, 3, 4)"),
        &f32_bytes(&fortran),
    );
    let arr = read_npy_bytes(&bytes, NO_LIMIT).unwrap();
    assert_eq!(arr.shape, [2, 3, 4]);
    assert_eq!(arr.data, NpyData::F32(c_order));

    // Rank 1 and zero-size arrays are the same in both orders.
    let bytes = raw(
        (1, 0),
        &header("<i4", true, "(3,)"),
        &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0],
    );
    assert_eq!(
        read_npy_bytes(&bytes, NO_LIMIT).unwrap().data,
        NpyData::I32(vec![1, 2, 3])
    );
    let bytes = raw((1, 0), &header("|b1", true, "(0, 3)"), &[]);
    assert_eq!(read_npy_bytes(&bytes, NO_LIMIT).unwrap().shape, [0, 3]);
}

#[test]
fn big_endian_data_is_byte_swapped() {
    let bytes = raw(
        (1, 0),
        &header(">f4", false, "(2,)"),
        &[1.5f32.to_be_bytes(), (-2.25f32).to_be_bytes()].concat(),
    );
    assert_eq!(
        read_npy_bytes(&bytes, NO_LIMIT).unwrap().data,
        NpyData::F32(vec![1.5, -2.25])
    );
    let bytes = raw(
        (1, 0),
        &header(">i8", false, "(1,)"),
        &(-5i64).to_be_bytes(),
    );
    assert_eq!(
        read_npy_bytes(&bytes, NO_LIMIT).unwrap().data,
        NpyData::I64(vec![-5])
    );
    let bytes = raw((1, 0), &header(">i4", false, "()"), &70000i32.to_be_bytes());
    let arr = read_npy_bytes(&bytes, NO_LIMIT).unwrap();
    assert_eq!((arr.shape.len(), arr.data), (0, NpyData::I32(vec![70000])));
}

#[test]
fn versions_2_and_3_are_read_and_others_rejected() {
    let data = f32_bytes(&[1.0, 2.0]);
    for version in [(2, 0), (3, 0)] {
        let bytes = raw(version, &header("<f4", false, "(2,)"), &data);
        assert_eq!(
            read_npy_bytes(&bytes, NO_LIMIT).unwrap().data,
            NpyData::F32(vec![1.0, 2.0])
        );
    }
    // Version 3.0 headers are UTF-8 (here in an ignored position: whitespace is not allowed to
    // hold it, so put it in a key, which is then rejected as unexpected).
    let utf8 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'é': 1}";
    match read_err(&raw((3, 0), utf8, &data)) {
        NpyErrorKind::HeaderKeys(msg) => assert!(msg.contains("'é'"), "{msg}"),
        other => panic!("{other}"),
    }
    let mut bad_utf8 = raw((3, 0), &header("<f4", false, "(2,)"), &data);
    bad_utf8[12] = 0xff;
    assert!(matches!(
        read_err(&bad_utf8),
        NpyErrorKind::HeaderSyntax { offset: 0, .. }
    ));
    for version in [(0, 0), (1, 1), (4, 0), (255, 255)] {
        let bytes = raw(version, &header("<f4", false, "(2,)"), &data);
        assert!(matches!(
            read_err(&bytes),
            NpyErrorKind::UnsupportedVersion { major, minor } if (major, minor) == version
        ));
    }
}

#[test]
fn bad_magic_and_non_npy_files_are_rejected() {
    for bytes in [
        &b"\x93NUMPX\x01\x00\x10\x00"[..],
        b"PK\x03\x04 a zip or .npz or .pt file",
        b"\x08\x07\x12\x04onnx",
        b"hello world, this is text",
        b"\x93",
    ] {
        let kind = read_err(bytes);
        if bytes == b"\x93" {
            assert!(matches!(
                kind,
                NpyErrorKind::TruncatedPreamble { len: 1, .. }
            ));
        } else {
            assert!(matches!(kind, NpyErrorKind::BadMagic { .. }), "{kind}");
        }
    }
    assert!(matches!(
        read_err(b""),
        NpyErrorKind::TruncatedPreamble { len: 0, .. }
    ));
}

#[test]
fn header_length_is_bounded_and_within_the_file() {
    // A version 2.0 header length of 2 MiB is refused before anything is read or allocated.
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&(2u32 << 20).to_le_bytes());
    bytes.extend_from_slice(b"{}");
    assert!(matches!(
        read_err(&bytes),
        NpyErrorKind::HeaderTooLarge { len, max: MAX_HEADER_LEN } if len == 2 << 20
    ));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&200u16.to_le_bytes());
    bytes.extend_from_slice(b"{'descr': '<f4'");
    assert!(matches!(
        read_err(&bytes),
        NpyErrorKind::TruncatedHeader {
            len: 200,
            available: 15
        }
    ));
}

/// Header texts that are not a valid header dict, with the error each must give.
#[test]
fn malformed_headers_are_rejected_with_specific_errors() {
    let syntax = |k: &NpyErrorKind| matches!(k, NpyErrorKind::HeaderSyntax { .. });
    let keys = |k: &NpyErrorKind| matches!(k, NpyErrorKind::HeaderKeys(_));
    let value = |k: &NpyErrorKind| matches!(k, NpyErrorKind::HeaderValue { .. });
    type Check = fn(&NpyErrorKind) -> bool;
    let cases: Vec<(String, Check)> = vec![
        ("".into(), syntax),
        ("   \n".into(), syntax),
        ("[1, 2]".into(), syntax),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)".into(),
            syntax,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} extra".into(),
            syntax,
        ),
        (
            "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}".into(),
            syntax,
        ),
        (
            "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}".into(),
            syntax,
        ),
        (
            "{descr: '<f4', 'fortran_order': False, 'shape': (2,)}".into(),
            syntax,
        ),
        (
            "{1: '<f4', 'fortran_order': False, 'shape': (2,)}".into(),
            syntax,
        ),
        (
            "{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}".into(),
            syntax,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}".into(),
            syntax,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (0x10,)}".into(),
            syntax,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': {'a': 1}}".into(),
            syntax,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,)}".into(),
            syntax,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-,)}".into(),
            syntax,
        ),
        ("{'descr': '<f4', 'fortran_order': False}".into(), keys),
        ("{'descr': '<f4', 'shape': (2,)}".into(), keys),
        ("{'fortran_order': False, 'shape': (2,)}".into(), keys),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}".into(),
            keys,
        ),
        (
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}".into(),
            keys,
        ),
        (
            "{'descr': 4, 'fortran_order': False, 'shape': (2,)}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': None, 'shape': (2,)}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': 2}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2)}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, - 3)}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': ('2',)}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': ((2,),)}".into(),
            value,
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,)}".into(),
            value,
        ),
    ];
    for (text, check) in cases {
        let kind = read_err(&raw((1, 0), &text, &[]));
        assert!(check(&kind), "{text:?} gave {kind}");
    }
}

#[test]
fn python_spellings_numpy_accepts_are_accepted() {
    for text in [
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,)}",
        "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}",
        "{ 'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , ) , }   \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (+2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': ((2),)}",
    ] {
        let arr = read_npy_bytes(&raw((1, 0), text, &f32_bytes(&[1.0, 2.0])), NO_LIMIT);
        assert_eq!(arr.unwrap().data, NpyData::F32(vec![1.0, 2.0]), "{text}");
    }
    // -0 is zero, not negative.
    let arr = read_npy_bytes(&raw((1, 0), &header("<i4", false, "(-0,)"), &[]), NO_LIMIT);
    assert_eq!(arr.unwrap().shape, [0]);
}

#[test]
fn hostile_headers_fail_fast() {
    // Deep nesting: bounded recursion, not a stack overflow.
    let deep = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}{}}}",
        "(".repeat(200_000),
        ")".repeat(200_000)
    );
    match read_err(&raw((2, 0), &deep, &[])) {
        NpyErrorKind::HeaderSyntax { msg, .. } => {
            assert!(msg.contains(&format!("deeper than {MAX_NESTING}")), "{msg}")
        }
        other => panic!("{other}"),
    }
    // MAX_NESTING brackets are fine syntax (then rejected as a shape that is not integers);
    // one more is not.
    let nested = |lists: usize| {
        let text = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}1{},)}}",
            "[".repeat(lists),
            "]".repeat(lists)
        );
        read_err(&raw((1, 0), &text, &[]))
    };
    assert!(matches!(
        nested(MAX_NESTING - 1),
        NpyErrorKind::HeaderValue { .. }
    ));
    assert!(matches!(
        nested(MAX_NESTING),
        NpyErrorKind::HeaderSyntax { .. }
    ));

    // A 900 000-digit integer: linear scan, immediate "exceeds 2^64".
    let start = std::time::Instant::now();
    let huge = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},)}}",
        "9".repeat(900_000)
    );
    assert!(matches!(
        read_err(&raw((2, 0), &huge, &[])),
        NpyErrorKind::HeaderValue { .. }
    ));
    assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());

    // Rank over the limit.
    let ranks = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({})}}",
        "1, ".repeat(MAX_RANK + 1)
    );
    assert!(matches!(
        read_err(&raw((1, 0), &ranks, &f32_bytes(&[0.5]))),
        NpyErrorKind::RankTooLarge { rank, max: MAX_RANK } if rank == MAX_RANK + 1
    ));
    // A long unexpected key is quoted, not echoed in full.
    let long_key = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': (), '{}': 1}}",
        "k".repeat(10_000)
    );
    let e = read_npy_bytes(&raw((2, 0), &long_key, &[]), NO_LIMIT).unwrap_err();
    assert!(e.to_string().len() < 300, "{e}");
}

#[test]
fn dtypes_other_than_the_four_are_rejected_by_name() {
    for descr in [
        "<f8", "<f2", "|u1", "|i1", "<u4", "<i2", "<c8", "<U5", "|S3", "<M8[ns]", "|V4",
    ] {
        match read_err(&raw((1, 0), &header(descr, false, "(1,)"), &[0; 8])) {
            NpyErrorKind::UnsupportedDType { descr: d } => assert_eq!(d, descr),
            other => panic!("{descr}: {other}"),
        }
    }
    for descr in ["f4", "=f4", "|f4", "<f4 ", "", "<b2", "float32"] {
        assert!(
            matches!(
                read_err(&raw((1, 0), &header(descr, false, "(1,)"), &[0; 4])),
                NpyErrorKind::UnsupportedDType { .. }
            ),
            "{descr}"
        );
    }
    let e = read_npy_bytes(
        &raw((1, 0), &header("<f8", false, "(1,)"), &[0; 8]),
        NO_LIMIT,
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "<bytes>: unsupported dtype '<f8' (supported: <f4, <i8, <i4, |b1 and big-endian >f4, >i8, >i4)"
    );
    assert!(matches!(
        read_err(&raw((1, 0), &header("|O", false, "(1,)"), &[0x80, 0x02])),
        NpyErrorKind::Pickle { .. }
    ));
    let structured =
        "{'descr': [('a', '<f4'), ('b', '<i4', (2,))], 'fortran_order': False, 'shape': (1,)}";
    assert!(matches!(
        read_err(&raw((1, 0), structured, &[0; 12])),
        NpyErrorKind::Structured
    ));
    // bool with an explicit byte order is still one byte per element.
    let arr = read_npy_bytes(
        &raw((1, 0), &header("<b1", false, "(2,)"), &[1, 0]),
        NO_LIMIT,
    );
    assert_eq!(arr.unwrap().data, NpyData::Bool(vec![true, false]));
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.npy");
    for dtype in DTYPES {
        let arr = sample(dtype, &[2, 3]);
        let bytes = write_npy_bytes(&arr).unwrap();
        let data_offset = bytes.len() - arr.len() * dtype.itemsize();
        for cut in 0..bytes.len() {
            let kind = read_err(&bytes[..cut]);
            let region_ok = match cut {
                0..10 => matches!(kind, NpyErrorKind::TruncatedPreamble { len, .. } if len == cut),
                _ if cut < data_offset => matches!(kind, NpyErrorKind::TruncatedHeader { .. }),
                _ => matches!(
                    kind,
                    NpyErrorKind::Truncated { expected, actual, .. }
                        if expected == (bytes.len() - data_offset) as u64
                            && actual == (cut - data_offset) as u64
                ),
            };
            assert!(region_ok, "{dtype} cut at {cut}: {kind}");
            // The file reader agrees with the in-memory reader.
            fs::write(&path, &bytes[..cut]).unwrap();
            let e = read_npy(&path, NO_LIMIT).unwrap_err();
            assert_eq!(e.kind.to_string(), kind.to_string(), "file cut at {cut}");
        }
    }
}

#[test]
fn trailing_garbage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.npy");
    let bytes = write_npy_bytes(&sample(NpyDType::I32, &[2, 2])).unwrap();
    for extra in [&[0u8][..], b"\n", b"garbage!", &[0; 4096]] {
        let long = [&bytes[..], extra].concat();
        let kind = read_err(&long);
        assert!(
            matches!(kind, NpyErrorKind::TrailingData { expected: 16, actual, .. }
                if actual == 16 + extra.len() as u64),
            "{kind}"
        );
        fs::write(&path, &long).unwrap();
        assert!(matches!(
            read_npy(&path, NO_LIMIT).unwrap_err().kind,
            NpyErrorKind::TrailingData { .. }
        ));
    }
}

#[test]
fn shapes_whose_size_overflows_are_rejected() {
    for (descr, shape) in [
        ("<f4", "(4294967296, 4294967296, 16)"),
        ("<f4", "(4611686018427387904,)"),
        ("<i8", "(2305843009213693952,)"),
        ("|b1", "(18446744073709551615, 2)"),
        ("|b1", "(9223372036854775808,)"),
        // Empty, but numpy refuses it too: the nonzero dims must still fit in isize.
        ("|b1", "(0, 18446744073709551615, 2)"),
    ] {
        let kind = read_err(&raw((1, 0), &header(descr, false, shape), &[]));
        assert!(
            matches!(kind, NpyErrorKind::ShapeOverflow { .. }),
            "{shape}: {kind}"
        );
    }
    // Large but representable: the data length check catches it, nothing is allocated.
    let kind = read_err(&raw(
        (1, 0),
        &header("|b1", false, "(9223372036854775807,)"),
        &[1],
    ));
    assert!(
        matches!(kind, NpyErrorKind::Truncated { actual: 1, .. }),
        "{kind}"
    );
}

#[test]
fn max_bytes_is_enforced_before_allocating() {
    let arr = sample(NpyDType::F32, &[10, 100]);
    let bytes = write_npy_bytes(&arr).unwrap();
    assert_eq!(read_npy_bytes(&bytes, 4000).unwrap(), arr);
    let e = read_npy_bytes(&bytes, 3999).unwrap_err();
    assert!(matches!(
        e.kind,
        NpyErrorKind::TooLarge {
            bytes: 4000,
            max: 3999
        }
    ));
    assert_eq!(
        e.to_string(),
        "<bytes>: data is 4000 bytes, more than the limit of 3999 bytes"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.npy");
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        read_npy(&path, 0).unwrap_err().kind,
        NpyErrorKind::TooLarge { .. }
    ));
    // Zero-size arrays fit any limit.
    let empty = write_npy_bytes(&sample(NpyDType::I64, &[0, 7])).unwrap();
    assert_eq!(read_npy_bytes(&empty, 0).unwrap().shape, [0, 7]);
}

#[test]
fn bool_bytes_other_than_0_and_1_are_rejected_with_their_index() {
    let kind = read_err(&raw((1, 0), &header("|b1", false, "(4,)"), &[0, 1, 2, 1]));
    assert!(
        matches!(kind, NpyErrorKind::InvalidBool { index: 2, byte: 2 }),
        "{kind}"
    );
    // Through the file reader, past its first read buffer (64 KiB).
    let n = 200_000;
    let mut data = vec![1u8; n];
    data[n - 3] = 0xff;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.npy");
    fs::write(
        &path,
        raw((1, 0), &header("|b1", false, &format!("({n},)")), &data),
    )
    .unwrap();
    let e = read_npy(&path, NO_LIMIT).unwrap_err();
    assert!(
        matches!(e.kind, NpyErrorKind::InvalidBool { index, byte: 0xff } if index == n - 3),
        "{e}"
    );
}

#[test]
fn large_arrays_round_trip_through_the_chunked_file_reader() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, shape) in [
        (NpyDType::F32, vec![3, 70_001]),
        (NpyDType::I64, vec![50_003]),
        (NpyDType::Bool, vec![131_073]),
    ] {
        let arr = sample(dtype, &shape);
        let path = dir.path().join("large.npy");
        write_npy(&path, &arr).unwrap();
        assert_eq!(read_npy(&path, NO_LIMIT).unwrap(), arr);
    }
    // Fortran order through the file reader.
    let fortran: Vec<i32> = (0..6).collect();
    let path = dir.path().join("f.npy");
    let data: Vec<u8> = fortran.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(&path, raw((2, 0), &header("<i4", true, "(2, 3)"), &data)).unwrap();
    assert_eq!(
        read_npy(&path, NO_LIMIT).unwrap().data,
        NpyData::I32(vec![0, 2, 4, 1, 3, 5])
    );
}

#[test]
fn error_messages_name_the_file_and_the_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.npy");
    fs::write(
        &path,
        raw((1, 0), &header("<f4", false, "(3, 224, 224)"), &[0; 1000]),
    )
    .unwrap();
    let e: NpyError = read_npy(&path, NO_LIMIT).unwrap_err();
    assert_eq!(e.path, path);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: truncated: header says 3x224x224 f32 (602112 bytes), file has 1000 data bytes",
            path.display()
        )
    );
    let missing = dir.path().join("missing.npy");
    let e = read_npy(&missing, NO_LIMIT).unwrap_err();
    assert!(
        matches!(&e.kind, NpyErrorKind::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot stat", missing.display())),
        "{e}"
    );
    let e = read_npy(dir.path(), NO_LIMIT).unwrap_err();
    assert!(matches!(e.kind, NpyErrorKind::NotRegularFile), "{e}");
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.npy");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo failed");
    let e = read_npy(&fifo, NO_LIMIT).unwrap_err();
    assert!(matches!(e.kind, NpyErrorKind::NotRegularFile), "{e}");
    let e = read_npy(Path::new("/dev/zero"), NO_LIMIT).unwrap_err();
    assert!(matches!(e.kind, NpyErrorKind::NotRegularFile), "{e}");
}

#[test]
fn npy_array_accessors() {
    let arr = sample(NpyDType::I32, &[2, 0]);
    assert_eq!(
        (arr.dtype(), arr.len(), arr.is_empty()),
        (NpyDType::I32, 0, true)
    );
    let arr = sample(NpyDType::Bool, &[]);
    assert_eq!(
        (arr.dtype(), arr.len(), arr.is_empty()),
        (NpyDType::Bool, 1, false)
    );
    assert_eq!(
        DTYPES.map(|d| (d.descr(), d.itemsize(), d.to_string())),
        [
            ("<f4", 4, "f32".to_string()),
            ("<i8", 8, "i64".to_string()),
            ("<i4", 4, "i32".to_string()),
            ("|b1", 1, "bool".to_string()),
        ]
    );
}
