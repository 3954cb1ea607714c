//! Safe loading of ONNX model files: reading, recognizing non-ONNX input, decoding and the
//! model-level checks, plus the path and file checks for external tensor data.
//!
//! `load_model` rejects, each with a clear [`ErrorKind`]: files over `Limits::max_file_bytes`
//! (checked on the open handle before reading), non-regular files, empty files and other
//! formats (.npy, zip/.pt, gzip, HDF5, pickle, text), bytes that are not a valid protobuf
//! `ModelProto` (including nesting beyond prost's recursion limit of 100, reported with the
//! field path shortened), a model without `ir_version` or graph, a missing, duplicated or
//! unsupported opset of the default domain, and more than `Limits::max_nodes` nodes. It does not check the graph's structure or its tensors:
//! the importer does, through `crate::tensor`.
//!
//! Protobuf accepts a message cut at a field boundary. Writers put `graph` before or after
//! `opset_import`, so a cut at the top level loses one of them (both are required here); a cut
//! inside the graph breaks a length prefix and fails to decode.
//!
//! External data ([`open_external`]) is read only from a relative `location` made of normal
//! components that, canonicalized, stays inside the canonical model folder; the file is opened
//! with `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC` (no symlink as last component, no blocking on a
//! FIFO) and must be, by `fstat` on the handle, a regular file with exactly one link and the same
//! inode as the checked canonical path.

use crate::error::{ErrorKind, ImportError};
use crate::limits::{self, Limits};
use crate::proto::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::tensor::TensorCtx;
use prost::Message;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Oldest opset of the default domain dync imports.
pub const MIN_OPSET: i64 = 7;
/// Newest opset of the default domain dync imports. Opsets 22 to 28 (onnx 1.23) change the ops
/// dync registers only by admitting new element types (and Cast's float8 `round_mode`, which the
/// registry does not accept), so their semantics are those dync implements.
pub const MAX_OPSET: i64 = 28;

/// A decoded model that passed the model-level checks.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    /// The file it was read from; `None` for an in-memory model.
    pub path: Option<PathBuf>,
    /// The model's metadata. Its `graph` is `None`: the graph was moved to [`Self::graph`].
    pub model: ModelProto,
    /// The main graph.
    pub graph: GraphProto,
    /// The opset version of the default domain, in `MIN_OPSET..=MAX_OPSET`.
    pub opset: i64,
    /// The folder external data is read from (canonical when loaded from a file); `None` forbids
    /// external data.
    pub base_dir: Option<PathBuf>,
}

impl LoadedModel {
    /// Attaches this model's file to an error.
    pub fn error(&self, e: impl Into<ImportError>) -> ImportError {
        let e = e.into();
        match &self.path {
            Some(p) => e.with_path(p),
            None => e,
        }
    }

    /// The context for materializing this model's tensors (external data from `base_dir`).
    pub fn tensor_ctx<'a>(&'a self, limits: &'a Limits) -> TensorCtx<'a> {
        TensorCtx::new(self.base_dir.as_deref(), limits)
    }

    /// The imported opset version of `domain` (`""` and `"ai.onnx"` both mean the default).
    pub fn opset_version(&self, domain: &str) -> Option<i64> {
        let d = normalize_domain(domain);
        self.model
            .opset_import
            .iter()
            .find(|o| normalize_domain(&o.domain) == d)
            .map(|o| o.version)
    }
}

/// Whether `domain` names the default ONNX operator domain.
pub fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

fn normalize_domain(domain: &str) -> &str {
    if is_default_domain(domain) {
        ""
    } else {
        domain
    }
}

/// Reads and checks the model at `path`; external data will be read from its folder.
pub fn load_model(path: &Path, limits: &Limits) -> Result<LoadedModel, ImportError> {
    let at = |k: ErrorKind| ImportError::from(k).with_path(path);
    let io = |error| at(ErrorKind::Io { error });
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is then rejected as non-regular.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(at(ErrorKind::not_onnx("it is a directory")));
    }
    if !meta.is_file() {
        return Err(at(ErrorKind::not_onnx("it is not a regular file")));
    }
    limits::check(model_size, meta.len(), limits.max_file_bytes).map_err(at)?;
    let bytes = read_capped(file, meta.len(), limits.max_file_bytes).map_err(io)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base_dir = folder.canonicalize().map_err(io)?;
    let mut m = load_model_bytes(&bytes, Some(&base_dir), limits).map_err(|e| e.with_path(path))?;
    m.path = Some(path.to_path_buf());
    Ok(m)
}

/// Reads the whole file, at most `max + 1` bytes: a file that grew past the limit since it was
/// measured is then caught by `load_model_bytes`'s size check.
fn read_capped(file: File, len: u64, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    // `len <= max` was checked, so the reservation is bounded by the limit.
    bytes
        .try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
        .map_err(std::io::Error::other)?;
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn model_size() -> String {
    "the model size in bytes".into()
}

/// Decodes and checks an in-memory model. External data is read from `base_dir`; with `None`,
/// any tensor with external data is rejected.
pub fn load_model_bytes(
    bytes: &[u8],
    base_dir: Option<&Path>,
    limits: &Limits,
) -> Result<LoadedModel, ImportError> {
    limits::check(model_size, bytes.len() as u64, limits.max_file_bytes)?;
    let (model, graph, opset) = decode_model(bytes, limits)?;
    Ok(LoadedModel {
        path: None,
        model,
        graph,
        opset,
        base_dir: base_dir.map(Path::to_path_buf),
    })
}

fn decode_model(bytes: &[u8], limits: &Limits) -> Result<(ModelProto, GraphProto, i64), ErrorKind> {
    if let Some(reason) = sniff_format(bytes) {
        return Err(ErrorKind::not_onnx(reason));
    }
    let mut model = ModelProto::decode(bytes).map_err(|e| {
        ErrorKind::not_onnx(if looks_like_text(bytes) {
            "it is a text file".to_string()
        } else {
            format!("invalid or truncated protobuf ({})", decode_message(&e))
        })
    })?;
    if model.ir_version <= 0 {
        return Err(ErrorKind::not_onnx(if looks_like_text(bytes) {
            "it is a text file"
        } else {
            "it has no ir_version (not an ONNX model, or truncated)"
        }));
    }
    let graph = model.graph.take().ok_or(ErrorKind::MissingGraph)?;
    let opset = default_opset(&model.opset_import)?;
    let nodes = count_nodes(&graph, limits.max_nodes);
    limits::check(
        || "the number of nodes".into(),
        nodes as u64,
        limits.max_nodes as u64,
    )?;
    Ok((model, graph, opset))
}

/// prost's message, `failed to decode Protobuf message: <field>: ... <field>: <cause>`, with a
/// field path (innermost first) of more than four fields cut to its two innermost and its
/// outermost: a hostile file nests up to the recursion limit, a path of 100 fields.
fn decode_message(e: &prost::DecodeError) -> String {
    const KEEP: usize = 2;
    let text = e.to_string();
    let parts: Vec<&str> = text.split(": ").collect();
    match parts.as_slice() {
        [head, path @ .., cause] if path.len() > KEEP + 2 => format!(
            "{head}: {}: ... ({} more fields) ...: {}: {cause}",
            path[..KEEP].join(": "),
            path.len() - KEEP - 1,
            path[path.len() - 1]
        ),
        _ => text,
    }
}

/// Names a known non-ONNX format from the file's first bytes, or an empty file.
fn sniff_format(bytes: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x93NUMPY", "it is a NumPy .npy array file"),
        (
            b"PK\x03\x04",
            "it is a zip archive (a PyTorch .pt/.pth checkpoint is one); export the model with torch.onnx.export",
        ),
        (b"PK\x05\x06", "it is an empty zip archive"),
        (b"\x1f\x8b", "it is gzip-compressed; decompress it first"),
        (b"\x89HDF\r\n\x1a\n", "it is an HDF5 file (e.g. a Keras model)"),
        (b"\x80\x02", "it is a Python pickle (e.g. a legacy PyTorch checkpoint)"),
        (b"\x80\x03", "it is a Python pickle (e.g. a legacy PyTorch checkpoint)"),
        (b"\x80\x04", "it is a Python pickle (e.g. a legacy PyTorch checkpoint)"),
        (b"\x80\x05", "it is a Python pickle (e.g. a legacy PyTorch checkpoint)"),
    ];
    if bytes.is_empty() {
        return Some("the file is empty");
    }
    MAGICS
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map(|(_, r)| *r)
}

/// Whether the first KiB is printable UTF-8 text (a cut multi-byte character at its end is
/// allowed). Only used to word an error: binary protobuf starts with a control byte.
fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&head[..e.valid_up_to()]) {
            Ok(s) => s,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

/// The default domain's opset version, after rejecting duplicated domains.
fn default_opset(imports: &[OperatorSetIdProto]) -> Result<i64, ErrorKind> {
    for (i, o) in imports.iter().enumerate() {
        let d = normalize_domain(&o.domain);
        if imports[..i]
            .iter()
            .any(|p| normalize_domain(&p.domain) == d)
        {
            return Err(ErrorKind::DuplicateOpset {
                domain: d.to_string(),
            });
        }
    }
    let version = imports
        .iter()
        .find(|o| is_default_domain(&o.domain))
        .map(|o| o.version)
        .ok_or(ErrorKind::MissingOpset)?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&version) {
        return Err(ErrorKind::UnsupportedOpset {
            domain: String::new(),
            version,
        });
    }
    Ok(version)
}

/// Nodes of `graph` and of every subgraph in its attributes, counting stops past `max`. The walk
/// uses an explicit stack; prost already bounded the nesting depth.
fn count_nodes(graph: &GraphProto, max: usize) -> usize {
    let mut count = 0usize;
    let mut stack = vec![graph];
    while let Some(g) = stack.pop() {
        count = count.saturating_add(g.node.len());
        if count > max {
            break;
        }
        for a in g.node.iter().flat_map(|n| &n.attribute) {
            stack.extend(a.g.iter());
            stack.extend(a.graphs.iter());
        }
    }
    count
}

/// A parsed `TensorProto.external_data` list. `checksum` and `basepath` (written by the `onnx`
/// package, never needed to read) are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalRef {
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
}

/// Parses the `external_data` entries; rejects unknown or repeated keys, a missing location and
/// offsets or lengths that are not non-negative integers in u64. The error is a message for
/// `ErrorKind::ExternalData`.
pub fn parse_external(entries: &[StringStringEntryProto]) -> Result<ExternalRef, String> {
    let mut location = None;
    let mut offset = None;
    let mut length = None;
    for (i, e) in entries.iter().enumerate() {
        if entries[..i].iter().any(|p| p.key == e.key) {
            return Err(format!("key {:?} is given more than once", e.key));
        }
        let number = || {
            e.value
                .parse::<u64>()
                .map_err(|_| format!("{} {:?} is not an integer in 0..=2^64-1", e.key, e.value))
        };
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => offset = Some(number()?),
            "length" => length = Some(number()?),
            "checksum" | "basepath" => {}
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    Ok(ExternalRef {
        location: location.ok_or("no location is given")?,
        offset: offset.unwrap_or(0),
        length,
    })
}

/// Opens external data `location` of a model whose folder is `base_dir`, returning the file and
/// its size. See the module docs for every check; the error is a message for
/// `ErrorKind::ExternalData`.
pub fn open_external(base_dir: &Path, location: &str) -> Result<(File, u64), String> {
    let rel = check_location(location)?;
    let base = base_dir.canonicalize().map_err(|e| {
        format!(
            "cannot resolve the model's folder {}: {e}",
            base_dir.display()
        )
    })?;
    let joined = base.join(rel);
    let canonical = joined
        .canonicalize()
        .map_err(|e| format!("cannot be resolved: {e}"))?;
    if !canonical.starts_with(&base) {
        return Err("resolves to a path outside the model's folder".into());
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&joined)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link, which is not followed".to_string(),
            _ => format!("cannot be opened: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be inspected: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.nlink() != 1 {
        return Err(format!(
            "has {} hard links; only files with exactly one link are read",
            meta.nlink()
        ));
    }
    // The checked canonical path and the opened handle must be the same file, so that a path
    // swapped between the containment check and the open is caught.
    let checked = std::fs::metadata(&canonical).map_err(|e| format!("cannot be inspected: {e}"))?;
    if (checked.dev(), checked.ino()) != (meta.dev(), meta.ino()) {
        return Err("changed while it was being opened".into());
    }
    Ok((file, meta.len()))
}

/// Accepts only a non-empty relative path of normal components without NUL bytes.
fn check_location(location: &str) -> Result<&Path, String> {
    if location.is_empty() {
        return Err("the location is empty".into());
    }
    if location.contains('\0') {
        return Err("the location contains a NUL byte".into());
    }
    let path = Path::new(location);
    for c in path.components() {
        match c {
            Component::Normal(_) => {}
            Component::ParentDir => return Err("the location contains `..`".into()),
            Component::CurDir => return Err("the location contains `.`".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "the location is absolute; only paths relative to the model's folder are read"
                        .into(),
                )
            }
        }
    }
    Ok(path)
}
