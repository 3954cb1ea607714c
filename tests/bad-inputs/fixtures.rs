//! The bad-input fixture suite: hostile or broken models and `.npy` inputs, generated into a
//! folder, each with the error dync must give.
//!
//! Shared by two runners (included with `#[path]`): `tests/tests/bad_inputs.rs` runs every case
//! through the library (load, check, import, verify, interpret) under `catch_unwind` with a
//! timeout and checks the error's kind; `compiler/tests/cli.rs` runs every case through the
//! `dync` binary and checks the exit code. Both check that the message names the file and every
//! entry of [`Expect::Err::names`] (node names, op types, tensor names), and that nothing panics.
//!
//! Contract of a fixture: [`Fixture::make`] writes its files under an empty folder and returns
//! one or more [`Case`]s; generation is deterministic (fixed seeds); the expected outcome is
//! computed independently of dync (e.g. the truncation oracle parses the protobuf framing
//! itself). `README.md` in this folder lists the fixtures; `bad_inputs.rs` checks that it is up
//! to date (`DYNC_BLESS=1` rewrites it).

#![allow(dead_code)] // each runner uses a different subset

use dync_onnx::proto::{
    tensor_shape_proto, type_proto, AttributeProto, ModelProto, NodeProto, StringStringEntryProto,
    TensorProto, TypeProto,
};
use prost::Message;
use std::path::{Path, PathBuf};

#[path = "onnx_builders.rs"]
mod onnx_builders;
pub use onnx_builders::*;

/// What a case must give.
#[derive(Clone, Debug)]
pub enum Expect {
    /// An error of one of `kinds` whose message names the case's file and each of `names`.
    /// Kinds: the `dync_onnx::ErrorKind` variant (`"Node"`, `"Tensor"`, ...), `"Npy/<variant>"`
    /// for an `NpyErrorKind`, `"Input"` for an input file that does not fit the model, `"Eval"`
    /// for an interpreter error.
    Err {
        kinds: Vec<&'static str>,
        names: Vec<String>,
    },
    /// Loads, imports, verifies and (when the case has inputs) runs.
    Ok,
    /// Runs; the outputs must hold NaN/Inf exactly where onnxruntime's do, and match elsewhere.
    Nonfinite,
    /// Runs; the outputs must equal those of the same model on these inputs instead.
    SameAs(Vec<(String, PathBuf)>),
}

/// One model (and its inputs) with the outcome it must have.
#[derive(Clone, Debug)]
pub struct Case {
    /// `fixture` or `fixture@detail` (e.g. the truncation offset).
    pub label: String,
    pub model: PathBuf,
    /// `--input-shape NAME=DIMS` arguments.
    pub input_shapes: Vec<(String, Vec<usize>)>,
    /// `.npy` inputs by graph input name (`dync run --input NAME=FILE`); random inputs otherwise.
    pub inputs: Vec<(String, PathBuf)>,
    /// The file the error message must name (the model, or a bad input file).
    pub blame: PathBuf,
    pub expect: Expect,
    /// Whether the CLI runner runs it (the library runner runs every case; the CLI skips some
    /// of the many truncation offsets to keep the subprocess count down).
    pub cli: bool,
}

impl Case {
    pub fn new(label: impl Into<String>, model: PathBuf, expect: Expect) -> Case {
        Case {
            label: label.into(),
            blame: model.clone(),
            model,
            input_shapes: Vec::new(),
            inputs: Vec::new(),
            expect,
            cli: true,
        }
    }

    fn input(mut self, name: &str, file: PathBuf) -> Case {
        self.inputs.push((name.to_string(), file));
        self
    }

    fn blame(mut self, file: PathBuf) -> Case {
        self.blame = file;
        self
    }

    fn shape(mut self, name: &str, dims: &[usize]) -> Case {
        self.input_shapes.push((name.to_string(), dims.to_vec()));
        self
    }
}

/// Writes a fixture's files into the given (empty) folder and returns its cases.
pub type Make = Box<dyn Fn(&Path) -> Vec<Case> + Send + Sync>;

/// A named fixture: what it is, what it asserts (for the README), and its generator.
pub struct Fixture {
    pub name: &'static str,
    pub asserts: &'static str,
    pub make: Make,
}

pub fn err(kinds: &[&'static str], names: &[&str]) -> Expect {
    Expect::Err {
        kinds: kinds.to_vec(),
        names: names.iter().map(|s| s.to_string()).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Models (built with the shared builders of `onnx_builders.rs`).

/// `n` deterministic values in [-1, 1].
pub fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.731 + seed).sin()).collect()
}

/// x f32[1,2,5,5] → Conv "conv0" (w f32[2,1,3,3], b f32[2]; group 2, pads 1) → Relu "relu0" → y.
pub fn conv_model() -> ModelProto {
    conv_model_with(
        &[1, 2, 5, 5],
        &[2, 1, 3, 3],
        vec![
            a_int("group", 2),
            a_ints("pads", &[1, 1, 1, 1]),
            a_ints("kernel_shape", &[3, 3]),
        ],
    )
}

/// The conv model with another input shape, weight shape and Conv attributes; `y`'s shape is
/// not declared (so that only the Conv rule under test can fail).
pub fn conv_model_with(x: &[i64], w: &[i64], attrs: Vec<AttributeProto>) -> ModelProto {
    let wn = w.iter().product::<i64>().max(0) as usize;
    let o = w.first().copied().unwrap_or(1);
    model(graph(
        vec![
            node("conv0", "Conv", &["x", "w", "b"], &["c"], attrs),
            node("relu0", "Relu", &["c"], &["y"], vec![]),
        ],
        vec![
            f32_init("w", w, &values(wn, 0.3)),
            f32_init("b", &[o], &values(o.max(0) as usize, 1.7)),
        ],
        vec![vi("x", FLOAT, x)],
        vec![vi_unshaped("y", FLOAT)],
    ))
}

/// A one-node model: `op_type` named `name` on f32 inputs of the given shapes (graph inputs
/// `a`, `b`, ...) and extra initializers, output `y` of unknown shape.
pub fn op_model(
    name: &str,
    op_type: &str,
    inputs: &[(&str, &[i64])],
    inits: Vec<TensorProto>,
    attrs: Vec<AttributeProto>,
) -> ModelProto {
    let mut ins: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    ins.extend(inits.iter().map(|t| t.name.as_str()));
    let n = node(name, op_type, &ins, &["y"], attrs);
    model(graph(
        vec![n],
        inits,
        inputs.iter().map(|(n, d)| vi(n, FLOAT, d)).collect(),
        vec![vi_unshaped("y", FLOAT)],
    ))
}

fn mkdir(p: &Path) -> PathBuf {
    if let Err(e) = std::fs::create_dir_all(p) {
        panic!("cannot create {}: {e}", p.display());
    }
    p.to_path_buf()
}

fn symlink(target: &Path, link: &Path) {
    if let Err(e) = std::os::unix::fs::symlink(target, link) {
        panic!("cannot symlink {}: {e}", link.display());
    }
}

/// A fixture whose model is `m` and whose outcome is `expect`.
fn one(dir: &Path, m: &ModelProto, expect: Expect) -> Vec<Case> {
    vec![Case::new("", write_model(dir, "model.onnx", m), expect)]
}

// ---------------------------------------------------------------------------------------------
// Raw protobuf framing: for nesting deeper than prost would let us build comfortably, and for
// the truncation oracle.

/// Field `field` of wire type 2 (length-delimited) holding `payload`.
fn ld(field: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(field << 3 | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// Field `field` of wire type 0 (varint).
fn vf(field: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(field << 3, &mut out);
    varint(v, &mut out);
    out
}

fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The fields of one message as (field number, start of payload, end of field); `None` unless
/// `b` is a complete sequence of fields of wire types 0, 1, 2 and 5.
fn fields(b: &[u8]) -> Option<Vec<(u64, usize, usize)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let key = read_varint(b, &mut pos)?;
        let start = pos;
        match key & 7 {
            0 => {
                read_varint(b, &mut pos)?;
            }
            1 => pos = pos.checked_add(8)?,
            2 => {
                let len = usize::try_from(read_varint(b, &mut pos)?).ok()?;
                pos = pos.checked_add(len)?;
            }
            5 => pos = pos.checked_add(4)?,
            _ => return None,
        }
        if pos > b.len() || key >> 3 == 0 {
            return None;
        }
        out.push((key >> 3, start, pos));
    }
    Some(out)
}

/// Every offset at which a field ends, at any nesting depth (a length-delimited payload that
/// parses as fields is treated as a message; a string that happens to parse only adds offsets).
fn field_ends(b: &[u8], base: usize, out: &mut Vec<usize>) {
    let Some(fs) = fields(b) else { return };
    for (_, start, end) in fs {
        out.push(base + end);
        let payload = &b[start..end];
        let mut p = 0;
        if read_varint(payload, &mut p).is_some() && !payload.is_empty() {
            // Only length-delimited payloads can be messages; their length prefix is `p` bytes.
            let inner = &payload[p..];
            if inner.len() + p == payload.len() && !inner.is_empty() {
                field_ends(inner, base + start + p, out);
            }
        }
    }
}

/// What loading the first `k` bytes of the model `full` must give, from its top-level framing:
/// empty → not ONNX; a cut inside a field → not ONNX (truncated protobuf); a cut at a top-level
/// field boundary → whatever is missing of ir_version (1), graph (7) and opset_import (8), in
/// the order dync checks them; nothing missing → it loads (only metadata was cut).
fn truncation_oracle(full: &[u8], k: usize) -> Expect {
    if k == 0 {
        return err(&["NotOnnx"], &["empty"]);
    }
    let Some(top) = fields(full) else {
        panic!("the truncation fixture's model does not parse")
    };
    if !top.iter().any(|&(_, _, end)| end == k) {
        return err(&["NotOnnx"], &["truncated"]);
    }
    let has = |f: u64| top.iter().any(|&(n, _, end)| n == f && end <= k);
    if !has(1) {
        err(&["NotOnnx"], &["ir_version"])
    } else if !has(7) {
        err(&["MissingGraph"], &[])
    } else if !has(8) {
        err(&["MissingOpset"], &[])
    } else {
        Expect::Ok
    }
}

/// The conv model with its top-level fields in field-number order, as the `onnx` package writes
/// them (ir_version, producer, graph, opset_import, metadata_props), so that a cut can lose the
/// opset while keeping the graph.
fn exporter_order_bytes() -> Vec<u8> {
    let m = conv_model();
    let part = |f: &dyn Fn(&mut ModelProto)| {
        let mut p = ModelProto::default();
        f(&mut p);
        p.encode_to_vec()
    };
    [
        part(&|p| {
            p.ir_version = m.ir_version;
            p.producer_name = m.producer_name.clone();
        }),
        part(&|p| p.graph = m.graph.clone()),
        part(&|p| p.opset_import = m.opset_import.clone()),
        part(&|p| p.metadata_props = m.metadata_props.clone()),
    ]
    .concat()
}

/// A model whose graph nests `depth` If-node subgraphs (built as bytes: prost would recurse
/// `depth` deep to build or drop it).
fn nested_graph_bytes(depth: usize) -> Vec<u8> {
    let mut g = ld(2, b"leaf"); // GraphProto.name
    for _ in 0..depth {
        let attr = [ld(1, b"then_branch"), vf(20, 5), ld(6, &g)].concat(); // name, GRAPH, g
        let node = [ld(4, b"If"), ld(5, &attr)].concat(); // op_type, attribute
        g = ld(1, &node); // GraphProto.node
    }
    [vf(1, 8), ld(8, &[vf(2, OPSET as u64)].concat()), ld(7, &g)].concat()
}

/// A model whose first field is `depth` nested unknown groups (wire types 3/4).
fn nested_group_bytes(depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..depth {
        varint(100 << 3 | 3, &mut out);
    }
    for _ in 0..depth {
        varint(100 << 3 | 4, &mut out);
    }
    out.extend(vf(1, 8));
    out
}

// ---------------------------------------------------------------------------------------------
// Other formats.

/// CRC-32 (IEEE), for a well-formed zip.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A stored (uncompressed) zip with one entry, laid out like a PyTorch `.pt` checkpoint.
fn zip_bytes(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data).to_le_bytes();
    let size = (data.len() as u32).to_le_bytes();
    let name_len = (name.len() as u16).to_le_bytes();
    let mut out = Vec::new();
    out.extend(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    out.extend(crc);
    out.extend(size);
    out.extend(size);
    out.extend(name_len);
    out.extend([0, 0]);
    out.extend(name.as_bytes());
    out.extend(data);
    let central = out.len() as u32;
    out.extend(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    out.extend(crc);
    out.extend(size);
    out.extend(size);
    out.extend(name_len);
    out.extend([0; 12]); // extra, comment, disk, internal attrs, external attrs (4)
    out.extend(0u32.to_le_bytes()); // local header offset
    out.extend(name.as_bytes());
    let central_len = out.len() as u32 - central;
    out.extend(b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00");
    out.extend(central_len.to_le_bytes());
    out.extend(central.to_le_bytes());
    out.extend([0, 0]);
    out
}

/// A `.npy` file (format 1.0) with the given header fields and data bytes.
pub fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    npy_header(
        &format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}"),
        data,
    )
}

/// A `.npy` file (format 1.0) with a raw header dict text, padded as numpy pads it.
pub fn npy_header(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut h = dict.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out.extend(data);
    out
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// External data.

/// The conv model in `dir/model/` with `w` stored as external data at `location` (offset and
/// length as written in the model); `w.bin` in the model folder holds the weights at offset 0.
fn external_model(dir: &Path, location: &str, offset: Option<&str>, length: Option<&str>) -> Case {
    let folder = mkdir(&dir.join("model"));
    let mut m = conv_model();
    let w = &mut g(&mut m).initializer[0];
    write(&folder, "w.bin", &w.raw_data);
    write(dir, "outside.bin", &w.raw_data);
    w.raw_data.clear();
    w.data_location = 1;
    let mut entries = vec![("location", location)];
    entries.extend(offset.map(|o| ("offset", o)));
    entries.extend(length.map(|l| ("length", l)));
    w.external_data = entries
        .into_iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.into(),
            value: v.into(),
        })
        .collect();
    Case::new("", write_model(&folder, "model.onnx", &m), Expect::Ok)
}

fn external(
    dir: &Path,
    location: &str,
    offset: Option<&str>,
    length: Option<&str>,
    message: &str,
) -> Vec<Case> {
    let mut c = external_model(dir, location, offset, length);
    c.expect = err(&["ExternalData"], &["\"w\"", location, message]);
    vec![c]
}

// ---------------------------------------------------------------------------------------------
// The fixtures.

fn fx(
    name: &'static str,
    asserts: &'static str,
    make: impl Fn(&Path) -> Vec<Case> + Send + Sync + 'static,
) -> Fixture {
    Fixture {
        name,
        asserts,
        make: Box::new(make),
    }
}

/// Every fixture, in README order.
pub fn all() -> Vec<Fixture> {
    let mut v = Vec::new();
    v.extend(not_onnx());
    v.extend(framing());
    v.extend(model_level());
    v.extend(types_and_attributes());
    v.extend(structure());
    v.extend(dims_and_data());
    v.extend(conv_attributes());
    v.extend(op_rules());
    v.extend(external_data());
    v.extend(input_shapes());
    v.extend(npy_inputs());
    v
}

fn not_onnx() -> Vec<Fixture> {
    vec![
        fx("empty-file", "NotOnnx: \"the file is empty\"", |d| {
            vec![Case::new("", write(d, "model.onnx", b""), err(&["NotOnnx"], &["empty"]))]
        }),
        fx("npy-as-model", "NotOnnx: recognized as a NumPy file", |d| {
            let b = npy("<f4", false, "(2,)", &f32_bytes(&[1.0, 2.0]));
            vec![Case::new("", write(d, "model.onnx", &b), err(&["NotOnnx"], &["NumPy"]))]
        }),
        fx(
            "pt-zip-as-model",
            "NotOnnx: a PyTorch-style zip (archive/data.pkl) is recognized as a zip/.pt checkpoint",
            |d| {
                let b = zip_bytes("archive/data.pkl", b"\x80\x02}q\x00.");
                vec![Case::new("", write(d, "model.pt", &b), err(&["NotOnnx"], &["zip", ".pt"]))]
            },
        ),
        fx("pickle-as-model", "NotOnnx: recognized as a Python pickle", |d| {
            let b = b"\x80\x02}q\x00(X\x05\x00\x00\x00modelq\x01K\x01u.";
            vec![Case::new("", write(d, "model.pth", b), err(&["NotOnnx"], &["pickle"]))]
        }),
        fx(
            "text-as-model",
            "NotOnnx: ONNX text format (or any text) is reported as a text file",
            |d| {
                let b = b"ir_version: 8\ngraph {\n  node { op_type: \"Relu\" input: \"x\" output: \"y\" }\n}\n";
                vec![Case::new("", write(d, "model.onnx", b), err(&["NotOnnx"], &["text"]))]
            },
        ),
        fx(
            "random-bytes",
            "32 seeded random files of 1..4096 bytes: each NotOnnx (or, if it happens to decode, MissingGraph/MissingOpset); never a panic",
            |d| {
                let mut rng = Rng(0xbad1_0bad);
                (0..32)
                    .map(|i| {
                        let len = 1 + (rng.next_u64() % 4096) as usize;
                        let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                        // Keep clear of the recognized magics (npy, zip, gzip, pickle, HDF5).
                        if matches!(b[0], 0x93 | b'P' | 0x1f | 0x80 | 0x89) {
                            b[0] = 0x0a;
                        }
                        Case::new(
                            format!("seed{i}"),
                            write(d, &format!("random{i}.onnx"), &b),
                            err(&["NotOnnx", "MissingGraph", "MissingOpset"], &[]),
                        )
                    })
                    .collect()
            },
        ),
        fx("directory-as-model", "NotOnnx: \"it is a directory\"", |d| {
            let p = mkdir(&d.join("model.onnx"));
            vec![Case::new("", p, err(&["NotOnnx"], &["directory"]))]
        }),
        fx("missing-file", "Io: the missing path is named", |d| {
            vec![Case::new("", d.join("nope.onnx"), err(&["Io"], &["cannot read"]))]
        }),
    ]
}

fn framing() -> Vec<Fixture> {
    vec![
        fx(
            "truncated-every-offset",
            "the conv model (exporter field order) cut at every offset 0..len: the outcome predicted from the protobuf framing — NotOnnx (empty / cut inside a field / no ir_version), MissingGraph, MissingOpset, or a successful import when only metadata_props was cut",
            |d| {
                let full = exporter_order_bytes();
                (0..=full.len())
                    .map(|k| {
                        let mut c = Case::new(
                            format!("{k}"),
                            write(d, &format!("cut{k}.onnx"), &full[..k]),
                            truncation_oracle(&full, k),
                        );
                        c.cli = k % 16 == 0 || k == full.len();
                        c
                    })
                    .collect()
            },
        ),
        fx(
            "truncated-field-boundaries",
            "the same model cut exactly where a field ends, at every nesting depth (protobuf accepts such a cut): only cuts after opset_import succeed; a cut after the graph is MissingOpset; a nested cut is NotOnnx",
            |d| {
                let full = exporter_order_bytes();
                let mut ends = Vec::new();
                field_ends(&full, 0, &mut ends);
                ends.sort_unstable();
                ends.dedup();
                ends.into_iter()
                    .map(|k| {
                        Case::new(
                            format!("{k}"),
                            write(d, &format!("cut{k}.onnx"), &full[..k]),
                            truncation_oracle(&full, k),
                        )
                    })
                    .collect()
            },
        ),
        fx(
            "deeply-nested-graphs",
            "NotOnnx: 10000 nested If subgraphs exceed the decoder's recursion limit (no stack overflow); the field path in the message is shortened",
            |d| {
                vec![Case::new(
                    "",
                    write(d, "model.onnx", &nested_graph_bytes(10_000)),
                    err(&["NotOnnx"], &["recursion limit", "more fields"]),
                )]
            },
        ),
        fx(
            "deeply-nested-groups",
            "NotOnnx: 100000 nested unknown protobuf groups (no stack overflow)",
            |d| {
                vec![Case::new(
                    "",
                    write(d, "model.onnx", &nested_group_bytes(100_000)),
                    err(&["NotOnnx"], &["recursion limit"]),
                )]
            },
        ),
        fx(
            "nested-subgraphs-unsupported",
            "Unsupported: an If node with 20 levels of nested subgraphs (within the decoder's limit) is reported as op If, naming the node",
            |d| {
                let mut inner = graph(vec![], vec![], vec![], vec![]);
                for i in 0..20 {
                    let n = node(&format!("if{i}"), "If", &["cond"], &["r"], vec![
                        a_graph("then_branch", inner),
                        a_graph("else_branch", graph(vec![], vec![], vec![], vec![])),
                    ]);
                    inner = graph(vec![n], vec![], vec![], vec![]);
                }
                let mut n = inner.node.remove(0);
                n.name = "outer_if".into();
                n.output = vec!["y".into()];
                let m = model(graph(
                    vec![n],
                    vec![],
                    vec![vi("cond", 9, &[])],
                    vec![vi_unshaped("y", FLOAT)],
                ));
                one(d, &m, err(&["Unsupported"], &["outer_if", "If"]))
            },
        ),
        fx(
            "invalid-utf8-node-name",
            "NotOnnx: a node name that is not UTF-8 fails to decode, and the message says so",
            |d| {
                let mut m = conv_model();
                g(&mut m).node[0].name = "@@@@".into();
                let mut b = m.encode_to_vec();
                let at = b.windows(4).position(|w| w == b"@@@@");
                let at = at.unwrap_or_else(|| panic!("marker not found"));
                b[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
                vec![Case::new("", write(d, "model.onnx", &b), err(&["NotOnnx"], &["UTF-8"]))]
            },
        ),
        fx(
            "control-characters-in-names",
            "Node: a node name with ESC and NUL bytes (and group 0) is printed escaped, never raw",
            |d| {
                let mut m = conv_model();
                let n = &mut g(&mut m).node[0];
                n.name = "evil\u{1b}[2J\0name".into();
                n.attribute[0] = a_int("group", 0);
                one(d, &m, err(&["Node"], &["evil\\u{1b}[2J\\0name", "Conv", "group"]))
            },
        ),
    ]
}

fn model_level() -> Vec<Fixture> {
    vec![
        fx("missing-graph", "MissingGraph", |d| {
            let mut m = conv_model();
            m.graph = None;
            one(d, &m, err(&["MissingGraph"], &["no graph"]))
        }),
        fx(
            "missing-opset",
            "MissingOpset: no opset of the default domain",
            |d| {
                let mut m = conv_model();
                m.opset_import = vec![opset("com.example", 1)];
                one(d, &m, err(&["MissingOpset"], &["opset"]))
            },
        ),
        fx(
            "unsupported-opset",
            "UnsupportedOpset: opset 3 and opset 1000",
            |d| {
                [3, 1000]
                    .into_iter()
                    .map(|v| {
                        let mut m = conv_model();
                        m.opset_import = vec![opset("", v)];
                        Case::new(
                            format!("{v}"),
                            write_model(d, &format!("opset{v}.onnx"), &m),
                            err(&["UnsupportedOpset"], &[&format!("opset {v}")]),
                        )
                    })
                    .collect()
            },
        ),
        fx(
            "duplicate-opset",
            "DuplicateOpset: \"\" and \"ai.onnx\" both listed",
            |d| {
                let mut m = conv_model();
                m.opset_import.push(opset("ai.onnx", 13));
                one(d, &m, err(&["DuplicateOpset"], &["more than once"]))
            },
        ),
    ]
}

fn types_and_attributes() -> Vec<Fixture> {
    vec![
        fx(
            "unknown-data-type",
            "Tensor: initializer \"w\" with data_type 999 is an unknown data type",
            |d| {
                let mut m = conv_model();
                g(&mut m).initializer[0].data_type = 999;
                one(d, &m, err(&["Tensor"], &["\"w\"", "unknown data type 999"]))
            },
        ),
        fx(
            "unsupported-data-type",
            "Tensor: a DOUBLE initializer is rejected by name (never converted lossily)",
            |d| {
                let mut m = conv_model();
                let w = &mut g(&mut m).initializer[0];
                w.data_type = DOUBLE;
                w.raw_data = w.raw_data.iter().flat_map(|&b| [b, 0]).collect();
                one(d, &m, err(&["Tensor"], &["\"w\"", "DOUBLE"]))
            },
        ),
        fx(
            "unknown-input-elem-type",
            "Value: graph input \"x\" with elem_type 77",
            |d| {
                let mut m = conv_model();
                g(&mut m).input[0] = vi("x", 77, &[1, 2, 5, 5]);
                one(d, &m, err(&["Value"], &["\"x\"", "unknown data type 77"]))
            },
        ),
        fx(
            "sequence-input",
            "Value: a graph input of sequence type is not a dense tensor",
            |d| {
                let mut m = conv_model();
                g(&mut m).input[0].r#type = Some(TypeProto {
                    value: Some(type_proto::Value::SequenceType(Box::new(
                        type_proto::Sequence { elem_type: None },
                    ))),
                    ..Default::default()
                });
                one(d, &m, err(&["Value"], &["\"x\"", "sequence"]))
            },
        ),
        fx(
            "unknown-attribute-type",
            "Node: Conv's `group` with attribute type code 99 names the node, the attribute and the code",
            |d| {
                let mut m = conv_model();
                g(&mut m).node[0].attribute[0].r#type = 99;
                one(d, &m, err(&["Node"], &["conv0", "Conv", "group", "99"]))
            },
        ),
        fx(
            "attribute-wrong-type",
            "Node: Conv `strides` given as FLOAT",
            |d| {
                let mut m = conv_model();
                g(&mut m).node[0].attribute.push(a_float("strides", 1.0));
                one(d, &m, err(&["Node"], &["conv0", "Conv", "strides", "Ints", "Float"]))
            },
        ),
        fx(
            "tensor-attribute-without-tensor",
            "Node: a Constant whose TENSOR attribute `value` has no tensor",
            |d| {
                let mut m = conv_model();
                let gr = g(&mut m);
                gr.initializer.remove(1);
                gr.node.insert(0, node("const_b", "Constant", &[], &["b"], vec![a_tensor("value", None)]));
                one(d, &m, err(&["Node"], &["const_b", "Constant", "no tensor"]))
            },
        ),
        fx(
            "attribute-without-type",
            "Node: a Constant `value_float` attribute whose type is UNDEFINED (no payload kind)",
            |d| {
                let mut m = conv_model();
                let gr = g(&mut m);
                gr.node.insert(
                    0,
                    node("const_s", "Constant", &[], &["s"], vec![AttributeProto {
                        name: "value_float".into(),
                        ..Default::default()
                    }]),
                );
                one(d, &m, err(&["Node"], &["const_s", "Constant", "value_float"]))
            },
        ),
        fx(
            "invalid-utf8-string-attribute",
            "Node: Conv `auto_pad` whose bytes are not UTF-8",
            |d| {
                let mut m = conv_model();
                g(&mut m).node[0].attribute[1] = a_str("auto_pad", &[0xff, 0x53]);
                one(d, &m, err(&["Node"], &["conv0", "Conv", "auto_pad", "UTF-8"]))
            },
        ),
        fx(
            "duplicate-attribute",
            "Node: Conv `group` given twice",
            |d| {
                let mut m = conv_model();
                g(&mut m).node[0].attribute.push(a_int("group", 2));
                one(d, &m, err(&["Node"], &["conv0", "Conv", "group", "twice"]))
            },
        ),
        fx(
            "unsupported-ops-listed-at-once",
            "Unsupported: Loop, NonMaxSuppression, an op of domain com.example and an unknown Conv attribute are all listed in one error (dync check: exit 1, every one printed)",
            |d| {
                let body = graph(vec![], vec![], vec![], vec![]);
                let m = model(graph(
                    vec![
                        node("loop0", "Loop", &["", ""], &["l"], vec![a_graph("body", body)]),
                        node("nms0", "NonMaxSuppression", &["x", "x"], &["n"], vec![]),
                        NodeProto {
                            domain: "com.example".into(),
                            ..node("custom0", "FancyOp", &["x"], &["f"], vec![])
                        },
                        node("conv0", "Conv", &["x", "w"], &["y"], vec![a_int("bogus_attr", 1)]),
                    ],
                    vec![f32_init("w", &[1, 1, 1, 1], &[1.0])],
                    vec![vi("x", FLOAT, &[1, 1, 4, 4])],
                    vec![vi_unshaped("y", FLOAT)],
                ));
                one(
                    d,
                    &m,
                    err(
                        &["Unsupported"],
                        &[
                            "loop0", "Loop", "nms0", "NonMaxSuppression", "custom0", "FancyOp",
                            "com.example", "conv0", "bogus_attr",
                        ],
                    ),
                )
            },
        ),
    ]
}

fn structure() -> Vec<Fixture> {
    vec![
        fx("cycle", "Graph: a two-node cycle names a node on it", |d| {
            let m = model(graph(
                vec![
                    node("relu_a", "Relu", &["q"], &["p"], vec![]),
                    node("relu_b", "Relu", &["p"], &["q"], vec![]),
                    node("add0", "Add", &["x", "p"], &["y"], vec![]),
                ],
                vec![],
                vec![vi("x", FLOAT, &[2])],
                vec![vi_unshaped("y", FLOAT)],
            ));
            one(d, &m, err(&["Graph"], &["cycle", "relu_a", "Relu"]))
        }),
        fx("self-loop", "Graph: a node reading its own output", |d| {
            let m = model(graph(
                vec![node("add_self", "Add", &["x", "y"], &["y"], vec![])],
                vec![],
                vec![vi("x", FLOAT, &[2])],
                vec![vi_unshaped("y", FLOAT)],
            ));
            one(d, &m, err(&["Graph"], &["cycle", "add_self", "Add"]))
        }),
        fx("dangling-input", "Node: an input nobody produces is named with its node", |d| {
            let mut m = conv_model();
            g(&mut m).node[1].input[0] = "nowhere".into();
            one(d, &m, err(&["Node"], &["relu0", "Relu", "nowhere"]))
        }),
        fx(
            "duplicate-node-outputs",
            "Node: two nodes writing the same value",
            |d| {
                let mut m = conv_model();
                let gr = g(&mut m);
                gr.node.push(node("relu_dup", "Relu", &["c"], &["y"], vec![]));
                one(d, &m, err(&["Node"], &["relu_dup", "Relu", "\"y\"", "already defined"]))
            },
        ),
        fx(
            "output-shadows-initializer",
            "Node: a node output named like an initializer",
            |d| {
                let mut m = conv_model();
                g(&mut m).node[1].output[0] = "w".into();
                one(d, &m, err(&["Node"], &["relu0", "Relu", "\"w\"", "already defined"]))
            },
        ),
        fx("duplicate-graph-outputs", "Graph: a graph output listed twice", |d| {
            let mut m = conv_model();
            let gr = g(&mut m);
            let o = gr.output[0].clone();
            gr.output.push(o);
            one(d, &m, err(&["Graph"], &["\"y\"", "twice"]))
        }),
        fx("output-never-produced", "Graph: a graph output no node produces", |d| {
            let mut m = conv_model();
            g(&mut m).output.push(vi_unshaped("ghost", FLOAT));
            one(d, &m, err(&["Graph"], &["\"ghost\"", "no node"]))
        }),
        fx("duplicate-initializer", "Graph: two initializers of one name", |d| {
            let mut m = conv_model();
            let gr = g(&mut m);
            let w = gr.initializer[0].clone();
            gr.initializer.push(w);
            one(d, &m, err(&["Graph"], &["\"w\"", "twice"]))
        }),
        fx("duplicate-graph-input", "Graph: a graph input declared twice", |d| {
            let mut m = conv_model();
            let gr = g(&mut m);
            let x = gr.input[0].clone();
            gr.input.push(x);
            one(d, &m, err(&["Graph"], &["\"x\"", "twice"]))
        }),
        fx("too-few-inputs", "Node: Conv with only one input", |d| {
            let mut m = conv_model();
            g(&mut m).node[0].input.truncate(1);
            one(d, &m, err(&["Node"], &["conv0", "Conv", "got 1"]))
        }),
        fx("too-many-inputs", "Node: Relu with three inputs", |d| {
            let mut m = conv_model();
            g(&mut m).node[1].input = vec!["c".into(), "c".into(), "c".into()];
            one(d, &m, err(&["Node"], &["relu0", "Relu", "got 3"]))
        }),
        fx(
            "too-many-outputs",
            "Node or Graph: Relu declaring two outputs, the second used as a graph output, names the node",
            |d| {
                let mut m = conv_model();
                let gr = g(&mut m);
                gr.node[1].output.push("y2".into());
                gr.output.push(vi_unshaped("y2", FLOAT));
                one(d, &m, err(&["Node", "Graph"], &["relu0", "Relu", "y2"]))
            },
        ),
        fx(
            "declared-output-type-mismatch",
            "Value: y declared f32[1,3,5,5] but computed f32[1,2,5,5]",
            |d| {
                let mut m = conv_model();
                g(&mut m).output[0] = vi("y", FLOAT, &[1, 3, 5, 5]);
                one(d, &m, err(&["Value"], &["\"y\"", "declared"]))
            },
        ),
        fx(
            "unnamed-initializer",
            "Tensor: an initializer without a name",
            |d| {
                let mut m = conv_model();
                g(&mut m).initializer.push(f32_init("", &[1], &[0.0]));
                one(d, &m, err(&["Tensor"], &["no name"]))
            },
        ),
    ]
}

fn dims_and_data() -> Vec<Fixture> {
    let input_dims = |dims: &'static [i64], kinds: &'static [&'static str], msg: &'static str| {
        move |d: &Path| {
            let mut m = conv_model();
            g(&mut m).input[0] = vi("x", FLOAT, dims);
            one(d, &m, err(kinds, &["\"x\"", msg]))
        }
    };
    let init_dims = |dims: &'static [i64], kinds: &'static [&'static str], msg: &'static str| {
        move |d: &Path| {
            let mut m = conv_model();
            let w = &mut g(&mut m).initializer[0];
            w.dims = dims.to_vec();
            w.raw_data.clear();
            one(d, &m, err(kinds, &["\"w\"", msg]))
        }
    };
    vec![
        fx(
            "negative-dim-initializer",
            "Tensor: initializer dims [2,-1,3,3]",
            init_dims(&[2, -1, 3, 3], &["Tensor"], "negative"),
        ),
        fx(
            "negative-dim-input",
            "Value: graph input dims [1,-2,5,5]",
            input_dims(&[1, -2, 5, 5], &["Value"], "negative"),
        ),
        fx(
            "huge-dim-initializer",
            "Limit: initializer dims [2^40,2^20,1,1] (no data) is over the tensor-size limit before anything is allocated",
            init_dims(&[1 << 40, 1 << 20, 1, 1], &["Limit"], "size in bytes"),
        ),
        fx(
            "overflowing-dims-initializer",
            "Tensor: initializer dims [2^62,2^62,4,4] overflow the element count",
            init_dims(&[1 << 62, 1 << 62, 4, 4], &["Tensor"], "overflows"),
        ),
        fx(
            "huge-dim-input",
            "Limit: graph input [1,2,2^20,2^20] (4 TiB) is over the tensor-size limit at import, so `dync run` never allocates it",
            input_dims(&[1, 2, 1 << 20, 1 << 20], &["Limit"], "size in bytes"),
        ),
        fx(
            "overflowing-dims-input",
            "Value: graph input [2^62,2^62,5,5] overflows",
            input_dims(&[1 << 62, 1 << 62, 5, 5], &["Value"], "overflow"),
        ),
        fx(
            "zero-batch-input",
            "Ok: a graph input with batch 0 imports and runs (empty output)",
            |d| {
                let mut m = conv_model();
                g(&mut m).input[0] = vi("x", FLOAT, &[0, 2, 5, 5]);
                one(d, &m, Expect::Ok)
            },
        ),
        fx(
            "zero-dim-initializer",
            "Ok: an empty initializer (dims [0], no data) concatenated to an input imports and runs",
            |d| {
                let m = model(graph(
                    vec![node("concat0", "Concat", &["a", "e"], &["y"], vec![a_int("axis", 0)])],
                    vec![f32_init("e", &[0], &[])],
                    vec![vi("a", FLOAT, &[3])],
                    vec![vi("y", FLOAT, &[3])],
                ));
                one(d, &m, Expect::Ok)
            },
        ),
        fx(
            "zero-output-channels",
            "Ok: a Conv whose weight has 0 output channels (f32[0,2,3,3]) gives an empty output",
            |d| {
                let m = conv_model_with(
                    &[1, 2, 5, 5],
                    &[0, 2, 3, 3],
                    vec![a_ints("pads", &[1, 1, 1, 1])],
                );
                one(d, &m, Expect::Ok)
            },
        ),
        fx(
            "zero-spatial-input",
            "Shape: a 0x0 image under a 3x3 kernel with pads 1 (kernel larger than the padded input)",
            |d| {
                let mut m = conv_model();
                g(&mut m).input[0] = vi("x", FLOAT, &[1, 2, 0, 0]);
                one(d, &m, err(&["Shape"], &["conv0", "Conv", "exceeds"]))
            },
        ),
        fx(
            "huge-computed-tensor",
            "Node: Expand of a run-time input to [2^20,2^20] is over the tensor-size limit at import",
            |d| {
                let m = op_model(
                    "expand0",
                    "Expand",
                    &[("a", &[1])],
                    vec![i64_init("shape", &[2], &[1 << 20, 1 << 20])],
                    vec![],
                );
                one(d, &m, err(&["Node"], &["expand0", "Expand", "limit"]))
            },
        ),
        fx(
            "raw-data-too-short",
            "Tensor: raw_data of w one float short",
            |d| {
                let mut m = conv_model();
                g(&mut m).initializer[0].raw_data.truncate(17 * 4);
                one(d, &m, err(&["Tensor"], &["\"w\"", "raw_data has 68 bytes", "72"]))
            },
        ),
        fx(
            "raw-data-too-long",
            "Tensor: raw_data of w with 3 bytes too many",
            |d| {
                let mut m = conv_model();
                g(&mut m).initializer[0].raw_data.extend([0, 0, 0]);
                one(d, &m, err(&["Tensor"], &["\"w\"", "raw_data has 75 bytes"]))
            },
        ),
        fx(
            "typed-data-wrong-count",
            "Tensor: float_data with 17 values for 18 elements",
            |d| {
                let mut m = conv_model();
                let w = &mut g(&mut m).initializer[0];
                w.raw_data.clear();
                w.float_data = values(17, 0.0);
                one(d, &m, err(&["Tensor"], &["\"w\"", "float_data has 17 values"]))
            },
        ),
        fx(
            "two-data-sources",
            "Tensor: raw_data and float_data both set",
            |d| {
                let mut m = conv_model();
                g(&mut m).initializer[0].float_data = values(18, 0.0);
                one(d, &m, err(&["Tensor"], &["\"w\"", "raw_data", "float_data"]))
            },
        ),
        fx(
            "nan-inf-weights",
            "Ok: NaN, +Inf and -Inf weights (Conv → Relu, BatchNorm, Add → MaxPool over an all-NaN channel, Gemm → Softmax) give NaN/Inf exactly where onnxruntime does, and match it elsewhere; `dync run --compare` accepts equal infinities",
            nan_inf_weights,
        ),
    ]
}

/// NaN and ±Inf weights through Conv (no padding) → Relu, BatchNormalization, Gemm → Softmax,
/// and a MaxPool over a NaN channel (every window NaN) and a channel with ±Inf. Inputs include
/// zeros, so that Inf·0 = NaN arises next to ±Inf.
///
/// Left out on purpose, because onnxruntime's result there is an artifact of its kernels: an Inf
/// weight meeting zero padding (its NCHWc conv kernels, used at the default optimization level,
/// skip padding and give a number; its plain kernels multiply 0·Inf and give NaN, as dync
/// does); a max window mixing NaN with numbers (its MLAS pooling keeps a NaN only when it is the
/// window's last cell; dync skips NaN cells, as the ONNX reference does); and an infinite
/// BatchNormalization scale (it computes x·a + (B − mean·a) with a = scale/sqrt(var + eps), so
/// mean·a is NaN or ±Inf; dync computes the ONNX formula (x − mean)/sqrt(var + eps)·scale + B).
fn nan_inf_weights(d: &Path) -> Vec<Case> {
    // Out channel 0, in channel 0, centre tap: NaN, so channel 0 is all NaN. Out channel 1, in
    // channel 0, first tap: +Inf, so ±Inf, or NaN where that tap meets a 0 of x.
    let mut w = values(2 * 2 * 3 * 3, 0.5);
    w[4] = f32::NAN;
    w[9 + 9] = f32::INFINITY;

    // Row 0, column 2: -Inf in g[0, 2], NaN in g[1, 2] (v's row 1 is zeros).
    let mut fc = values(4 * 3, 0.1);
    fc[2] = f32::NEG_INFINITY;

    // Added to x before MaxPool: channel 0 all NaN; in channel 1, +Inf in the first 2x2 window,
    // -Inf filling the second, numbers elsewhere.
    let mut t = vec![0.0f32; 32];
    t[..16].fill(f32::NAN);
    t[16] = f32::INFINITY;
    for i in [18, 19, 22, 23] {
        t[i] = f32::NEG_INFINITY;
    }
    let m = model(graph(
        vec![
            node("conv0", "Conv", &["x", "w"], &["c"], vec![]),
            node("relu0", "Relu", &["c"], &["r"], vec![]),
            node(
                "bn0",
                "BatchNormalization",
                &["x", "scale", "bias", "mean", "var"],
                &["n"],
                vec![],
            ),
            node("add0", "Add", &["x", "t"], &["q"], vec![]),
            node(
                "pool0",
                "MaxPool",
                &["q"],
                &["p"],
                vec![a_ints("kernel_shape", &[2, 2]), a_ints("strides", &[2, 2])],
            ),
            node("gemm0", "Gemm", &["v", "fc"], &["g"], vec![]),
            node(
                "softmax0",
                "Softmax",
                &["g"],
                &["s"],
                vec![a_int("axis", 1)],
            ),
        ],
        vec![
            f32_init("w", &[2, 2, 3, 3], &w),
            f32_init("scale", &[2], &[1.5, 1.0]),
            f32_init("bias", &[2], &[f32::INFINITY, f32::NAN]),
            f32_init("mean", &[2], &[0.0, 0.0]),
            f32_init("var", &[2], &[1.0, 1.0]),
            f32_init("t", &[1, 2, 4, 4], &t),
            f32_init("fc", &[4, 3], &fc),
        ],
        vec![vi("x", FLOAT, &[1, 2, 4, 4]), vi("v", FLOAT, &[2, 4])],
        vec![
            vi_unshaped("c", FLOAT),
            vi_unshaped("r", FLOAT),
            vi_unshaped("n", FLOAT),
            vi_unshaped("p", FLOAT),
            vi_unshaped("s", FLOAT),
        ],
    ));
    let mut x = values(32, 2.0);
    for i in (0..32).step_by(5) {
        x[i] = 0.0;
    }
    let v = [1.0, 0.0, -2.0, 0.5, 0.0, 0.0, 0.0, 0.0];
    let xf = write(
        d,
        "x.npy",
        &npy("<f4", false, "(1, 2, 4, 4)", &f32_bytes(&x)),
    );
    let vf = write(d, "v.npy", &npy("<f4", false, "(2, 4)", &f32_bytes(&v)));
    vec![
        Case::new("", write_model(d, "model.onnx", &m), Expect::Nonfinite)
            .input("x", xf)
            .input("v", vf),
    ]
}

fn conv_attributes() -> Vec<Fixture> {
    let conv = |attrs: fn() -> Vec<AttributeProto>,
                kinds: &'static [&'static str],
                names: &'static [&'static str]| {
        move |d: &Path| {
            let mut m = conv_model();
            let n = &mut g(&mut m).node[0];
            for a in attrs() {
                n.attribute.retain(|b| b.name != a.name);
                n.attribute.push(a);
            }
            let mut all = vec!["conv0", "Conv"];
            all.extend(names);
            one(d, &m, err(kinds, &all))
        }
    };
    vec![
        fx(
            "conv-group-zero",
            "Node: group 0",
            conv(|| vec![a_int("group", 0)], &["Node"], &["group", "positive"]),
        ),
        fx(
            "conv-group-negative",
            "Node: group -2",
            conv(|| vec![a_int("group", -2)], &["Node"], &["group", "-2"]),
        ),
        fx(
            "conv-group-not-dividing",
            "Shape: group 3 does not divide 2 input channels",
            conv(|| vec![a_int("group", 3)], &["Shape"], &["group 3", "divide"]),
        ),
        fx(
            "conv-weight-channels-mismatch",
            "Shape: group 1 with a weight of 1 input channel for a 2-channel input",
            conv(|| vec![a_int("group", 1)], &["Shape"], &["input channels"]),
        ),
        fx(
            "conv-stride-zero",
            "Node: strides [0,1]",
            conv(|| vec![a_ints("strides", &[0, 1])], &["Node"], &["strides"]),
        ),
        fx(
            "conv-stride-negative",
            "Node: strides [-1,-1]",
            conv(|| vec![a_ints("strides", &[-1, -1])], &["Node"], &["strides"]),
        ),
        fx(
            "conv-dilation-zero",
            "Node: dilations [1,0]",
            conv(|| vec![a_ints("dilations", &[1, 0])], &["Node"], &["dilations"]),
        ),
        fx(
            "conv-dilation-negative",
            "Node: dilations [-3,1]",
            conv(|| vec![a_ints("dilations", &[-3, 1])], &["Node"], &["dilations"]),
        ),
        fx(
            "conv-negative-pads",
            "Node: pads [1,-1,1,1]",
            conv(|| vec![a_ints("pads", &[1, -1, 1, 1])], &["Node"], &["negative pads"]),
        ),
        fx(
            "conv-kernel-larger-than-input",
            "Shape: dilations [4,4] make the 3x3 kernel 9 wide, over the padded 5+2 input",
            conv(|| vec![a_ints("dilations", &[4, 4])], &["Shape"], &["exceeds"]),
        ),
        fx(
            "conv-huge-dilation-same-pad",
            "Node: auto_pad SAME_UPPER with dilations [2^63-1,1] (the padding arithmetic overflows; checked)",
            conv(
                || {
                    vec![
                        a_str("auto_pad", b"SAME_UPPER"),
                        a_ints("pads", &[]),
                        a_ints("dilations", &[i64::MAX, 1]),
                    ]
                },
                &["Node"],
                &["SAME_UPPER", "overflows"],
            ),
        ),
        fx(
            "conv-huge-pads",
            "Shape: pads [2^62,...] overflow the padded extent (checked)",
            conv(
                || vec![a_ints("pads", &[i64::MAX, 1, i64::MAX, 1])],
                &["Shape"],
                &["overflow"],
            ),
        ),
        fx(
            "conv-kernel-shape-mismatch",
            "Node: kernel_shape [5,5] for a 3x3 weight",
            conv(|| vec![a_ints("kernel_shape", &[5, 5])], &["Node"], &["kernel_shape"]),
        ),
        fx(
            "conv-unknown-auto-pad",
            "Node: auto_pad \"SOMETIMES\"",
            conv(|| vec![a_str("auto_pad", b"SOMETIMES")], &["Node"], &["SOMETIMES"]),
        ),
        fx(
            "maxpool-huge-dilation-same-pad",
            "Node: MaxPool auto_pad SAME_LOWER with dilations [2^63-1,1] (checked)",
            |d| {
                let m = op_model(
                    "pool0",
                    "MaxPool",
                    &[("a", &[1, 1, 4, 4])],
                    vec![],
                    vec![
                        a_ints("kernel_shape", &[3, 3]),
                        a_str("auto_pad", b"SAME_LOWER"),
                        a_ints("dilations", &[i64::MAX, 1]),
                    ],
                );
                one(d, &m, err(&["Node"], &["pool0", "MaxPool", "overflows"]))
            },
        ),
        fx(
            "maxpool-kernel-zero",
            "Node: MaxPool kernel_shape [0,2]",
            |d| {
                let m = op_model(
                    "pool0",
                    "MaxPool",
                    &[("a", &[1, 1, 4, 4])],
                    vec![],
                    vec![a_ints("kernel_shape", &[0, 2])],
                );
                one(d, &m, err(&["Node"], &["pool0", "MaxPool", "kernel_shape"]))
            },
        ),
    ]
}

fn op_rules() -> Vec<Fixture> {
    vec![
        fx("bad-broadcast", "Shape: Add of [2,3] and [4,3]", |d| {
            let m = op_model("add0", "Add", &[("a", &[2, 3]), ("b", &[4, 3])], vec![], vec![]);
            one(d, &m, err(&["Shape"], &["add0", "Add"]))
        }),
        fx("matmul-mismatch", "Shape: MatMul of [2,3] and [4,5]", |d| {
            let m = op_model("mm0", "MatMul", &[("a", &[2, 3]), ("b", &[4, 5])], vec![], vec![]);
            one(d, &m, err(&["Shape"], &["mm0", "MatMul"]))
        }),
        fx("reshape-count-mismatch", "Node: Reshape [2,3] to [4,4]", |d| {
            let m = op_model(
                "reshape0",
                "Reshape",
                &[("a", &[2, 3])],
                vec![i64_init("shape", &[2], &[4, 4])],
                vec![],
            );
            one(d, &m, err(&["Node"], &["reshape0", "Reshape", "element counts differ"]))
        }),
        fx("reshape-two-minus-ones", "Node: Reshape to [-1,-1]", |d| {
            let m = op_model(
                "reshape0",
                "Reshape",
                &[("a", &[2, 3])],
                vec![i64_init("shape", &[2], &[-1, -1])],
                vec![],
            );
            one(d, &m, err(&["Node"], &["reshape0", "Reshape", "more than one -1"]))
        }),
        fx(
            "reshape-minus-one-with-zero",
            "Node: Reshape [2,3] to [-1,0] with allowzero=1 (no division by zero)",
            |d| {
                let m = op_model(
                    "reshape0",
                    "Reshape",
                    &[("a", &[2, 3])],
                    vec![i64_init("shape", &[2], &[-1, 0])],
                    vec![a_int("allowzero", 1)],
                );
                one(d, &m, err(&["Node"], &["reshape0", "Reshape", "-1"]))
            },
        ),
        fx(
            "reshape-runtime-shape",
            "Unsupported: Reshape whose shape is a run-time input",
            |d| {
                let mut m = op_model("reshape0", "Reshape", &[("a", &[2, 3])], vec![], vec![]);
                let gr = g(&mut m);
                gr.node[0].input.push("shape".into());
                gr.input.push(vi("shape", INT64, &[2]));
                one(d, &m, err(&["Unsupported"], &["reshape0", "Reshape", "run time"]))
            },
        ),
        fx(
            "transpose-bad-perm",
            "Node or Shape: Transpose with perm [0,0]",
            |d| {
                let m = op_model(
                    "transpose0",
                    "Transpose",
                    &[("a", &[2, 3])],
                    vec![],
                    vec![a_ints("perm", &[0, 0])],
                );
                one(d, &m, err(&["Node", "Shape"], &["transpose0", "Transpose"]))
            },
        ),
        fx(
            "concat-axis-out-of-range",
            "Node or Shape: Concat on axis 5 of rank-2 inputs",
            |d| {
                let m = op_model(
                    "concat0",
                    "Concat",
                    &[("a", &[2, 3]), ("b", &[2, 3])],
                    vec![],
                    vec![a_int("axis", 5)],
                );
                one(d, &m, err(&["Node", "Shape"], &["concat0", "Concat", "5"]))
            },
        ),
        fx(
            "split-sizes-do-not-sum",
            "Node or Shape: Split of 6 into [2,2]",
            |d| {
                let mut m = op_model(
                    "split0",
                    "Split",
                    &[("a", &[6])],
                    vec![i64_init("split", &[2], &[2, 2])],
                    vec![],
                );
                let gr = g(&mut m);
                gr.node[0].output = vec!["y".into(), "z".into()];
                one(d, &m, err(&["Node", "Shape"], &["split0", "Split"]))
            },
        ),
        fx(
            "gather-constant-index-out-of-range",
            "Node: Gather of constant data at constant index 7 of 3 fails constant folding, naming the node",
            |d| {
                let m = model(graph(
                    vec![
                        node("gather0", "Gather", &["data", "idx"], &["t"], vec![]),
                        node("add0", "Add", &["a", "t"], &["y"], vec![]),
                    ],
                    vec![f32_init("data", &[3], &[1.0, 2.0, 3.0]), i64_init("idx", &[1], &[7])],
                    vec![vi("a", FLOAT, &[1])],
                    vec![vi_unshaped("y", FLOAT)],
                ));
                one(d, &m, err(&["Node"], &["gather0", "Gather", "7"]))
            },
        ),
        fx(
            "gather-runtime-index-out-of-range",
            "Eval (interp) / error (jit): Gather with a run-time index 7 into 3 rows, given by an .npy input",
            |d| {
                let m = model(graph(
                    vec![node("gather0", "Gather", &["data", "idx"], &["y"], vec![])],
                    vec![f32_init("data", &[3, 2], &values(6, 0.0))],
                    vec![vi("idx", INT64, &[2])],
                    vec![vi_unshaped("y", FLOAT)],
                ));
                let idx = write(d, "idx.npy", &npy("<i8", false, "(2,)", &[0i64, 7]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>()));
                vec![Case::new("", write_model(d, "model.onnx", &m), err(&["Eval"], &["gather0", "out of range"]))
                    .input("idx", idx)]
            },
        ),
        fx(
            "resize-huge-scale",
            "Node: Resize with scale 1e30 (too large) and NaN",
            |d| {
                [("big", 1e30f32), ("nan", f32::NAN)]
                    .into_iter()
                    .map(|(label, s)| {
                        let mut m = op_model(
                            "resize0",
                            "Resize",
                            &[("a", &[1, 1, 2, 2])],
                            vec![f32_init("scales", &[4], &[1.0, 1.0, s, s])],
                            vec![],
                        );
                        g(&mut m).node[0].input = vec!["a".into(), "".into(), "scales".into()];
                        Case::new(
                            label,
                            write_model(d, &format!("{label}.onnx"), &m),
                            err(&["Node"], &["resize0", "Resize", "scale"]),
                        )
                    })
                    .collect()
            },
        ),
        fx(
            "pad-huge",
            "Node or Shape: Pad by 2^62 (overflow or over the tensor-size limit)",
            |d| {
                let m = op_model(
                    "pad0",
                    "Pad",
                    &[("a", &[1, 4])],
                    vec![i64_init("pads", &[4], &[0, 1 << 62, 0, 1 << 62])],
                    vec![],
                );
                one(d, &m, err(&["Node", "Shape"], &["pad0", "Pad"]))
            },
        ),
        fx(
            "constant-of-shape-huge",
            "Node: ConstantOfShape [2^20,2^20] is over the tensor-size limit, [2^31,2^31] f32 overflows the byte count (both before allocating)",
            |d| {
                [("limit", 1i64 << 20, "limit"), ("overflow", 1 << 31, "overflows")]
                    .into_iter()
                    .map(|(label, side, msg)| {
                        let m = model(graph(
                            vec![
                                node("cos0", "ConstantOfShape", &["shape"], &["t"], vec![]),
                                node("add0", "Add", &["a", "t"], &["y"], vec![]),
                            ],
                            vec![i64_init("shape", &[2], &[side, side])],
                            vec![vi("a", FLOAT, &[1])],
                            vec![vi_unshaped("y", FLOAT)],
                        ));
                        Case::new(
                            label,
                            write_model(d, &format!("{label}.onnx"), &m),
                            err(&["Node"], &["cos0", "ConstantOfShape", msg]),
                        )
                    })
                    .collect()
            },
        ),
        fx("softmax-axis-out-of-range", "Node: Softmax axis 3 of a rank-2 input", |d| {
            let m = op_model("softmax0", "Softmax", &[("a", &[2, 3])], vec![], vec![a_int("axis", 3)]);
            one(d, &m, err(&["Node", "Shape"], &["softmax0", "Softmax", "3"]))
        }),
        fx("einsum-malformed", "Node or Shape: Einsum equation \"ij,jk->q\"", |d| {
            let m = op_model(
                "einsum0",
                "Einsum",
                &[("a", &[2, 3]), ("b", &[3, 4])],
                vec![],
                vec![a_str("equation", b"ij,jk->q")],
            );
            one(d, &m, err(&["Node", "Shape", "Unsupported"], &["einsum0", "Einsum"]))
        }),
    ]
}

fn external_data() -> Vec<Fixture> {
    vec![
        fx(
            "external-valid",
            "Ok: weights in model/w.bin (offset 0, exact length) load",
            |d| vec![external_model(d, "w.bin", Some("0"), Some("72"))],
        ),
        fx(
            "external-parent-dir",
            "ExternalData: location ../outside.bin",
            |d| external(d, "../outside.bin", None, None, "`..`"),
        ),
        fx(
            "external-absolute",
            "ExternalData: an absolute location",
            |d| {
                let abs = d.join("outside.bin");
                let abs = abs.to_string_lossy().into_owned();
                let mut c = external_model(d, &abs, None, None);
                c.expect = err(&["ExternalData"], &["\"w\"", "absolute"]);
                vec![c]
            },
        ),
        fx(
            "external-symlink-outside",
            "ExternalData: model/link.bin → ../outside.bin resolves outside the folder",
            |d| {
                let c = external(d, "link.bin", None, None, "outside the model's folder");
                symlink(&d.join("outside.bin"), &d.join("model/link.bin"));
                c
            },
        ),
        fx(
            "external-symlink-inside",
            "ExternalData: model/link.bin → model/w.bin is a symlink, not followed (O_NOFOLLOW)",
            |d| {
                let c = external(d, "link.bin", None, None, "symbolic link");
                symlink(Path::new("w.bin"), &d.join("model/link.bin"));
                c
            },
        ),
        fx(
            "external-symlinked-folder",
            "ExternalData: model/sub → ../elsewhere; location sub/w.bin resolves outside",
            |d| {
                let c = external(d, "sub/w.bin", None, None, "outside the model's folder");
                let other = mkdir(&d.join("elsewhere"));
                write(&other, "w.bin", &[0u8; 72]);
                symlink(&other, &d.join("model/sub"));
                c
            },
        ),
        fx(
            "external-hard-link",
            "ExternalData: w.bin has two links",
            |d| {
                let c = external(d, "w.bin", None, None, "hard links");
                if let Err(e) = std::fs::hard_link(d.join("model/w.bin"), d.join("model/w2.bin")) {
                    panic!("hard link: {e}");
                }
                c
            },
        ),
        fx(
            "external-past-eof",
            "ExternalData: offset 8 + 72 bytes past a 72-byte file",
            |d| external(d, "w.bin", Some("8"), None, "past the end"),
        ),
        fx(
            "external-offset-overflow",
            "ExternalData: offset 2^64-1 (overflow-safe)",
            |d| external(d, "w.bin", Some("18446744073709551615"), None, "overflows"),
        ),
        fx("external-negative-offset", "ExternalData: offset -8", |d| {
            external(d, "w.bin", Some("-8"), None, "not an integer")
        }),
        fx(
            "external-length-mismatch",
            "ExternalData: length 5 for 72 bytes",
            |d| external(d, "w.bin", None, Some("5"), "length is 5"),
        ),
        fx(
            "external-directory",
            "ExternalData: location is a directory",
            |d| {
                let c = external(d, "sub", None, None, "not a regular file");
                mkdir(&d.join("model/sub"));
                c
            },
        ),
        fx(
            "external-missing",
            "ExternalData: location does not exist",
            |d| external(d, "nope.bin", None, None, "cannot be resolved"),
        ),
        fx(
            "external-fifo",
            "ExternalData: location is a FIFO with no writer (rejected, no hang)",
            |d| {
                let c = external(d, "pipe", None, None, "not a regular file");
                let status = std::process::Command::new("mkfifo")
                    .arg(d.join("model/pipe"))
                    .status();
                assert!(
                    matches!(status, Ok(s) if s.success()),
                    "mkfifo failed: {status:?}"
                );
                c
            },
        ),
    ]
}

fn input_shapes() -> Vec<Fixture> {
    vec![
        fx(
            "input-shape-unknown-name",
            "Graph: --input-shape names an input the model does not have",
            |d| {
                let m = conv_model();
                vec![Case::new(
                    "",
                    write_model(d, "model.onnx", &m),
                    err(&["Graph"], &["--input-shape", "\"nope\""]),
                )
                .shape("nope", &[1, 2, 5, 5])]
            },
        ),
        fx(
            "input-shape-contradicts",
            "Value: --input-shape x=1x2x6x6 against the declared [1,2,5,5]",
            |d| {
                let m = conv_model();
                vec![Case::new(
                    "",
                    write_model(d, "model.onnx", &m),
                    err(&["Value"], &["\"x\"", "does not fit"]),
                )
                .shape("x", &[1, 2, 6, 6])]
            },
        ),
        fx(
            "input-shape-wrong-rank",
            "Value: --input-shape x=2x5x5 against a rank-4 declaration",
            |d| {
                let m = conv_model();
                vec![Case::new(
                    "",
                    write_model(d, "model.onnx", &m),
                    err(&["Value"], &["\"x\"", "does not fit"]),
                )
                .shape("x", &[2, 5, 5])]
            },
        ),
        fx(
            "symbolic-dim-unfixed",
            "Value: a symbolic non-batch dim without --input-shape says how to fix it",
            |d| {
                use tensor_shape_proto::dimension::Value as V;
                let mut m = conv_model();
                g(&mut m).input[0] = vi_dims(
                    "x",
                    FLOAT,
                    vec![
                        V::DimValue(1),
                        V::DimValue(2),
                        V::DimParam("height".into()),
                        V::DimValue(5),
                    ],
                );
                one(
                    d,
                    &m,
                    err(&["Value"], &["\"x\"", "height", "--input-shape"]),
                )
            },
        ),
        fx(
            "input-without-shape",
            "Value: an input with no shape and no --input-shape",
            |d| {
                let mut m = conv_model();
                g(&mut m).input[0] = vi_unshaped("x", FLOAT);
                one(d, &m, err(&["Value"], &["\"x\"", "--input-shape"]))
            },
        ),
    ]
}

/// A bad `.npy` input for the conv model's `x` (f32[1,2,5,5]); the message must name the file.
fn npy_case(d: &Path, bytes: &[u8], kinds: &'static [&'static str], names: &[&str]) -> Vec<Case> {
    let model = write_model(d, "model.onnx", &conv_model());
    let file = write(d, "x.npy", bytes);
    vec![Case::new("", model, err(kinds, names))
        .input("x", file.clone())
        .blame(file)]
}

fn npy_inputs() -> Vec<Fixture> {
    let good = f32_bytes(&values(50, 0.9));
    let good2 = good.clone();
    let good3 = good.clone();
    let good4 = good.clone();
    vec![
        fx("npy-bad-magic", "Npy/BadMagic: an input that is not .npy", |d| {
            npy_case(d, b"NOTNUMPY and some more bytes", &["Npy/BadMagic"], &["magic"])
        }),
        fx("npy-truncated-preamble", "Npy/TruncatedPreamble: 7 bytes", |d| {
            npy_case(d, b"\x93NUMPY\x01", &["Npy/TruncatedPreamble"], &["truncated"])
        }),
        fx("npy-truncated-header", "Npy/TruncatedHeader: header length past the end", |d| {
            npy_case(d, b"\x93NUMPY\x01\x00\xff\x00{'descr'", &["Npy/TruncatedHeader"], &["truncated"])
        }),
        fx("npy-truncated-data", "Npy/Truncated: 10 of 200 data bytes", move |d| {
            let b = npy("<f4", false, "(1, 2, 5, 5)", &good[..10]);
            npy_case(d, &b, &["Npy/Truncated"], &["truncated"])
        }),
        fx("npy-wrong-dtype", "Npy/UnsupportedDType: float64 data", |d| {
            let b = npy("<f8", false, "(1, 2, 5, 5)", &[0u8; 400]);
            npy_case(d, &b, &["Npy/UnsupportedDType"], &["<f8"])
        }),
        fx(
            "npy-dtype-mismatch",
            "Input: a valid int64 file for the f32 input x names the file and both types",
            |d| {
                let b = npy("<i8", false, "(1, 2, 5, 5)", &[0u8; 400]);
                npy_case(d, &b, &["Input"], &["\"x\"", "i64", "f32"])
            },
        ),
        fx(
            "npy-wrong-shape",
            "Input: a valid f32[1,2,4,4] file for x: f32[1,2,5,5] names the file and both shapes",
            |d| {
                let b = npy("<f4", false, "(1, 2, 4, 4)", &[0u8; 128]);
                npy_case(d, &b, &["Input"], &["\"x\"", "f32[1,2,4,4]", "f32[1,2,5,5]"])
            },
        ),
        fx("npy-object-dtype", "Npy/Pickle: object dtype is refused", |d| {
            let b = npy("|O", false, "(1,)", b"\x80\x02N.");
            npy_case(d, &b, &["Npy/Pickle"], &["pickle"])
        }),
        fx("npy-structured-dtype", "Npy/Structured: a record dtype", |d| {
            let b = npy_header(
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 2, 5, 5), }",
                &[0u8; 200],
            );
            npy_case(d, &b, &["Npy/Structured"], &["structured"])
        }),
        fx("npy-shape-overflow", "Npy/ShapeOverflow: shape (2^62, 2^62)", |d| {
            let b = npy("<f4", false, "(4611686018427387904, 4611686018427387904)", &[]);
            npy_case(d, &b, &["Npy/ShapeOverflow"], &["overflows"])
        }),
        fx("npy-negative-dim", "Npy/HeaderValue: shape (-1, 50)", move |d| {
            let b = npy("<f4", false, "(-1, 50)", &good2);
            npy_case(d, &b, &["Npy/HeaderValue"], &["shape"])
        }),
        fx("npy-extra-header-key", "Npy/HeaderKeys: an unknown header key", move |d| {
            let b = npy_header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 5, 5), 'extra': 1, }",
                &good3,
            );
            npy_case(d, &b, &["Npy/HeaderKeys"], &["extra"])
        }),
        fx(
            "npy-fortran-order",
            "Ok: a Fortran-order file is transposed on read; the outputs equal those of the C-order file",
            move |d| {
                let c_order = values(50, 0.9);
                // Fortran order: the first index varies fastest.
                let shape = [1usize, 2, 5, 5];
                let mut f = vec![0f32; 50];
                for (i, &v) in c_order.iter().enumerate() {
                    let idx = [i / 50, i / 25 % 2, i / 5 % 5, i % 5];
                    let mut off = 0;
                    let mut stride = 1;
                    for k in 0..4 {
                        off += idx[k] * stride;
                        stride *= shape[k];
                    }
                    f[off] = v;
                }
                let model = write_model(d, "model.onnx", &conv_model());
                let cf = write(d, "x_c.npy", &npy("<f4", false, "(1, 2, 5, 5)", &good4));
                let ff = write(d, "x_f.npy", &npy("<f4", true, "(1, 2, 5, 5)", &f32_bytes(&f)));
                vec![Case::new("", model, Expect::SameAs(vec![("x".into(), cf)])).input("x", ff)]
            },
        ),
    ]
}
