//! `.npy` reading and writing for the `dync` CLI and the executables it generates.
//!
//! Reading accepts what numpy's `np.save` writes for the four element types dync uses: descr
//! `<f4`, `<i8`, `<i4` and `|b1` (the big-endian `>f4`, `>i8`, `>i4` are byte-swapped on read),
//! format versions 1.0, 2.0 and 3.0, C or Fortran order. Fortran-order data is transposed on
//! read, so [`NpyArray::data`] is always in C order.
//!
//! Everything else is an [`NpyError`] naming the file, never a panic: a bad magic string; an
//! unknown version; a header longer than [`MAX_HEADER_LEN`] or than the file; a header that is
//! not a dict literal with exactly the keys `descr`, `fortran_order` and `shape`; object (pickle)
//! and structured dtypes and every other dtype; negative dims; a rank above [`MAX_RANK`]; a shape
//! whose nonzero dims times the itemsize exceed `isize::MAX` bytes (as numpy requires); a data
//! section shorter or longer than shape × itemsize; more than `max_bytes` of data (checked before
//! anything is allocated); bool bytes other than 0 and 1; a path that is not a regular file.
//!
//! The header dict is parsed here rather than by npyz's header reader, which allocates the
//! declared header length before reading it, overflows on large shapes (a panic in debug builds)
//! and takes quadratic time on long integer literals. This parser is linear, limits nesting to
//! [`MAX_NESTING`] levels, and accepts the Python literal subset numpy writes: strings, integers,
//! `True`/`False`/`None`, tuples and lists inside one dict. npyz parses the descr type string.
//!
//! Writing produces format version 1.0, C order, little-endian, with the header padded to a
//! multiple of 64 bytes as numpy pads it; the bytes depend only on the array. [`write_npy`]
//! writes a temporary file in the destination's directory and renames it into place, so a
//! failed write never leaves a partial file under the destination name.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use npyz::{Endianness, TypeChar, TypeStr};
use thiserror::Error;

/// The magic string every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Longest accepted header text. numpy's own headers for these dtypes are under 2 KiB.
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// Highest accepted rank (numpy 2 allows 64 dimensions).
pub const MAX_RANK: usize = 64;
/// Deepest accepted nesting of tuples and lists inside the header dict.
pub const MAX_NESTING: usize = 16;
/// numpy pads the preamble plus header to a multiple of this many bytes.
const HEADER_ALIGN: usize = 64;
/// Size of the buffer that file data is read through: a multiple of every itemsize.
const READ_CHUNK: usize = 1 << 16;
/// The name errors carry for in-memory input and output.
const MEMORY_NAME: &str = "<bytes>";
/// Longest excerpt of header text quoted in an error message.
const QUOTE_CHARS: usize = 40;

/// The element types dync exchanges through `.npy` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NpyDType {
    F32,
    I64,
    I32,
    Bool,
}

impl NpyDType {
    /// The little-endian numpy descr this type is written with.
    pub fn descr(self) -> &'static str {
        match self {
            NpyDType::F32 => "<f4",
            NpyDType::I64 => "<i8",
            NpyDType::I32 => "<i4",
            NpyDType::Bool => "|b1",
        }
    }

    /// Bytes per element in the file and in memory.
    pub fn itemsize(self) -> usize {
        match self {
            NpyDType::F32 | NpyDType::I32 => 4,
            NpyDType::I64 => 8,
            NpyDType::Bool => 1,
        }
    }

    /// Short name used in messages: `f32`, `i64`, `i32`, `bool`.
    pub fn name(self) -> &'static str {
        match self {
            NpyDType::F32 => "f32",
            NpyDType::I64 => "i64",
            NpyDType::I32 => "i32",
            NpyDType::Bool => "bool",
        }
    }
}

impl fmt::Display for NpyDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Element data in C order.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
}

impl NpyData {
    pub fn dtype(&self) -> NpyDType {
        match self {
            NpyData::F32(_) => NpyDType::F32,
            NpyData::I64(_) => NpyDType::I64,
            NpyData::I32(_) => NpyDType::I32,
            NpyData::Bool(_) => NpyDType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::F32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An array as stored in a `.npy` file. Invariant expected by [`write_npy`] and guaranteed by
/// [`read_npy`]: the product of `shape` equals `data.len()`; `data` is in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl NpyArray {
    pub fn dtype(&self) -> NpyDType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A failed `.npy` read or write: the file (`<bytes>` for in-memory data) and what went wrong.
#[derive(Debug, Error)]
#[error("{}: {kind}", path.display())]
pub struct NpyError {
    pub path: PathBuf,
    pub kind: NpyErrorKind,
}

/// What went wrong, without the file name (which [`NpyError`] adds).
#[derive(Debug, Error)]
pub enum NpyErrorKind {
    #[error("cannot {action}: {err}")]
    Io {
        action: &'static str,
        err: io::Error,
    },
    #[error("not a regular file")]
    NotRegularFile,
    #[error("not a file path (no file name)")]
    NoFileName,
    #[error("file changed while being read")]
    Changed,
    #[error("not an .npy file: starts with {found:02x?} instead of the magic \\x93NUMPY")]
    BadMagic { found: Vec<u8> },
    #[error("truncated: {len} bytes is shorter than the {need}-byte .npy preamble")]
    TruncatedPreamble { len: usize, need: usize },
    #[error("unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)")]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error("header length {len} exceeds the limit of {max} bytes")]
    HeaderTooLarge { len: u64, max: usize },
    #[error(
        "truncated: header length is {len} bytes but only {available} bytes follow the preamble"
    )]
    TruncatedHeader { len: u64, available: u64 },
    #[error("malformed header (byte {offset} of the header text): {msg}")]
    HeaderSyntax { offset: usize, msg: String },
    #[error("header dict {0}")]
    HeaderKeys(String),
    #[error("header field '{key}' {msg}")]
    HeaderValue { key: &'static str, msg: String },
    #[error("object dtype '{descr}' is stored with pickle, which is refused")]
    Pickle { descr: String },
    #[error("structured dtypes (descr given as a list of fields) are not supported")]
    Structured,
    #[error(
        "unsupported dtype '{descr}' (supported: <f4, <i8, <i4, |b1 and big-endian >f4, >i8, >i4)"
    )]
    UnsupportedDType { descr: String },
    #[error("rank {rank} exceeds the maximum of {max}")]
    RankTooLarge { rank: usize, max: usize },
    #[error("shape {} overflows: its element or byte count does not fit in memory", fmt_shape(.shape))]
    ShapeOverflow { shape: Vec<u64> },
    #[error(
        "truncated: header says {} {dtype} ({expected} bytes), file has {actual} data bytes",
        fmt_shape(.shape)
    )]
    Truncated {
        shape: Vec<usize>,
        dtype: NpyDType,
        expected: u64,
        actual: u64,
    },
    #[error(
        "trailing data: header says {} {dtype} ({expected} bytes), file has {actual} data bytes",
        fmt_shape(.shape)
    )]
    TrailingData {
        shape: Vec<usize>,
        dtype: NpyDType,
        expected: u64,
        actual: u64,
    },
    #[error("data is {bytes} bytes, more than the limit of {max} bytes")]
    TooLarge { bytes: u64, max: u64 },
    #[error("cannot allocate {bytes} bytes for the data")]
    Alloc { bytes: u64 },
    #[error("bool element {index} is byte {byte}, not 0 or 1")]
    InvalidBool { index: usize, byte: u8 },
    #[error("shape {} does not match the data's {actual} elements", fmt_shape(.shape))]
    ShapeMismatch { shape: Vec<usize>, actual: usize },
}

/// `3x224x224`; `scalar` for rank 0.
fn fmt_shape<T: fmt::Display>(dims: &[T]) -> String {
    if dims.is_empty() {
        return "scalar".to_string();
    }
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// At most [`QUOTE_CHARS`] characters of untrusted text, for messages.
fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

fn io_err(action: &'static str) -> impl FnOnce(io::Error) -> NpyErrorKind {
    move |err| NpyErrorKind::Io { action, err }
}

fn at(path: &Path) -> impl FnOnce(NpyErrorKind) -> NpyError + '_ {
    move |kind| NpyError {
        path: path.to_path_buf(),
        kind,
    }
}

/// Read and fully validate the `.npy` file at `path`; at most `max_bytes` of element data.
pub fn read_npy(path: &Path, max_bytes: u64) -> Result<NpyArray, NpyError> {
    read_file(path, max_bytes).map_err(at(path))
}

/// [`read_npy`] for a file already in memory (errors name it `<bytes>`).
pub fn read_npy_bytes(bytes: &[u8], max_bytes: u64) -> Result<NpyArray, NpyError> {
    read_memory(bytes, max_bytes).map_err(at(Path::new(MEMORY_NAME)))
}

/// Serialize `arr` (format 1.0, C order, little-endian). Fails only if the shape does not
/// match the data or the rank exceeds [`MAX_RANK`].
pub fn write_npy_bytes(arr: &NpyArray) -> Result<Vec<u8>, NpyError> {
    encode(arr).map_err(at(Path::new(MEMORY_NAME)))
}

/// Write `arr` to `path` atomically: a temporary file in the same directory, renamed into place.
pub fn write_npy(path: &Path, arr: &NpyArray) -> Result<(), NpyError> {
    encode(arr)
        .and_then(|bytes| write_atomic(path, &bytes))
        .map_err(at(path))
}

/// A file name for the tensor `name`: characters outside `[A-Za-z0-9._-]` become `_`, and the
/// names that would mean something else in a path (``, `.`, `..`) become `_`, `_`, `__`. The
/// result is never empty and never contains a path separator.
pub fn sanitize_name(name: &str) -> String {
    match name {
        "" | "." => "_".to_string(),
        ".." => "__".to_string(),
        _ => name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Where the header text and the data start.
struct Preamble {
    major: u8,
    header_start: usize,
    data_offset: usize,
}

/// A validated header.
struct Header {
    dtype: NpyDType,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<usize>,
    numel: usize,
    data_bytes: usize,
}

/// Bytes before the header text: magic, version, and the header length field.
const PREAMBLE_MAX: usize = 12;

/// Validate the preamble in `prefix` (the file's first bytes, at least [`PREAMBLE_MAX`] of them
/// unless the file is shorter) against the file's total length.
fn parse_preamble(prefix: &[u8], total_len: u64) -> Result<Preamble, NpyErrorKind> {
    let magic_len = prefix.len().min(MAGIC.len());
    let (head, magic_prefix) = (&prefix[..magic_len], &MAGIC[..magic_len]);
    if head != magic_prefix {
        return Err(NpyErrorKind::BadMagic {
            found: head.to_vec(),
        });
    }
    let Some(&[major, minor]) = prefix.get(6..8) else {
        return Err(NpyErrorKind::TruncatedPreamble {
            len: prefix.len(),
            need: 10,
        });
    };
    let len_field = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(NpyErrorKind::UnsupportedVersion { major, minor }),
    };
    let header_start = 8 + len_field;
    let header_len = match prefix.get(8..header_start) {
        Some(&[a, b]) => u64::from(u16::from_le_bytes([a, b])),
        Some(&[a, b, c, d]) => u64::from(u32::from_le_bytes([a, b, c, d])),
        _ => {
            return Err(NpyErrorKind::TruncatedPreamble {
                len: prefix.len(),
                need: header_start,
            })
        }
    };
    if header_len > MAX_HEADER_LEN as u64 {
        return Err(NpyErrorKind::HeaderTooLarge {
            len: header_len,
            max: MAX_HEADER_LEN,
        });
    }
    // `prefix` is part of the file, so the file holds at least `header_start` bytes.
    let available = total_len.saturating_sub(header_start as u64);
    if header_len > available {
        return Err(NpyErrorKind::TruncatedHeader {
            len: header_len,
            available,
        });
    }
    Ok(Preamble {
        major,
        header_start,
        // Both terms are bounded: 12 + 1 MiB.
        data_offset: header_start + header_len as usize,
    })
}

/// Check the data section's length (`actual` bytes) and the size limit, before allocating.
fn check_data_len(h: &Header, actual: u64, max_bytes: u64) -> Result<(), NpyErrorKind> {
    let expected = h.data_bytes as u64;
    if actual < expected {
        return Err(NpyErrorKind::Truncated {
            shape: h.shape.clone(),
            dtype: h.dtype,
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(NpyErrorKind::TrailingData {
            shape: h.shape.clone(),
            dtype: h.dtype,
            expected,
            actual,
        });
    }
    if expected > max_bytes {
        return Err(NpyErrorKind::TooLarge {
            bytes: expected,
            max: max_bytes,
        });
    }
    Ok(())
}

fn read_memory(bytes: &[u8], max_bytes: u64) -> Result<NpyArray, NpyErrorKind> {
    let pre = parse_preamble(bytes, bytes.len() as u64)?;
    // parse_preamble checked that the header lies within `bytes`.
    let header = parse_header(&bytes[pre.header_start..pre.data_offset], pre.major)?;
    let data = &bytes[pre.data_offset..];
    check_data_len(&header, data.len() as u64, max_bytes)?;
    let mut out = alloc_data(&header)?;
    decode_into(&header, data, 0, &mut out)?;
    Ok(finish(header, out))
}

fn read_file(path: &Path, max_bytes: u64) -> Result<NpyArray, NpyErrorKind> {
    // Refuse FIFOs and devices before opening: opening a FIFO blocks, reading a device may
    // never end. The open file is checked again below.
    if !fs::metadata(path).map_err(io_err("stat"))?.is_file() {
        return Err(NpyErrorKind::NotRegularFile);
    }
    let mut file = File::open(path).map_err(io_err("open"))?;
    let meta = file.metadata().map_err(io_err("stat"))?;
    if !meta.is_file() {
        return Err(NpyErrorKind::NotRegularFile);
    }
    let total_len = meta.len();

    let mut prefix = Vec::with_capacity(PREAMBLE_MAX);
    (&mut file)
        .take(PREAMBLE_MAX as u64)
        .read_to_end(&mut prefix)
        .map_err(io_err("read"))?;
    let pre = parse_preamble(&prefix, total_len)?;
    // A version 1.0 preamble is shorter than PREAMBLE_MAX: read the header from its start.
    let mut head = vec![0u8; pre.data_offset - pre.header_start];
    file.seek(SeekFrom::Start(pre.header_start as u64))
        .map_err(io_err("seek"))?;
    read_exact(&mut file, &mut head)?;
    let header = parse_header(&head, pre.major)?;
    check_data_len(&header, total_len - pre.data_offset as u64, max_bytes)?;

    let mut out = alloc_data(&header)?;
    read_data(&mut file, &header, &mut out)?;
    expect_eof(&mut file)?;
    Ok(finish(header, out))
}

fn read_exact(file: &mut File, buf: &mut [u8]) -> Result<(), NpyErrorKind> {
    file.read_exact(buf).map_err(|err| match err.kind() {
        io::ErrorKind::UnexpectedEof => NpyErrorKind::Changed,
        _ => NpyErrorKind::Io {
            action: "read",
            err,
        },
    })
}

/// Read exactly `header.data_bytes` through a bounded buffer and decode it into `out`.
fn read_data(file: &mut File, header: &Header, out: &mut NpyData) -> Result<(), NpyErrorKind> {
    let mut buf = vec![0u8; READ_CHUNK.min(header.data_bytes)];
    let mut remaining = header.data_bytes;
    let mut index = 0;
    while remaining > 0 {
        // READ_CHUNK is a multiple of every itemsize, so every chunk holds whole elements.
        let n = remaining.min(READ_CHUNK);
        let chunk = &mut buf[..n];
        read_exact(file, chunk)?;
        decode_into(header, chunk, index, out)?;
        index += n / header.dtype.itemsize();
        remaining -= n;
    }
    Ok(())
}

/// The file must end where the data ends (it may have grown since it was measured).
fn expect_eof(file: &mut File) -> Result<(), NpyErrorKind> {
    let mut probe = [0u8; 1];
    match file.read(&mut probe).map_err(io_err("read"))? {
        0 => Ok(()),
        _ => Err(NpyErrorKind::Changed),
    }
}

/// An empty vector of the header's type with room for all its elements. `data_bytes` has been
/// checked against `max_bytes`; allocation failure is an error, not an abort.
fn alloc_data(h: &Header) -> Result<NpyData, NpyErrorKind> {
    fn vec<T>(n: usize, bytes: usize) -> Result<Vec<T>, NpyErrorKind> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| NpyErrorKind::Alloc {
            bytes: bytes as u64,
        })?;
        Ok(v)
    }
    Ok(match h.dtype {
        NpyDType::F32 => NpyData::F32(vec(h.numel, h.data_bytes)?),
        NpyDType::I64 => NpyData::I64(vec(h.numel, h.data_bytes)?),
        NpyDType::I32 => NpyData::I32(vec(h.numel, h.data_bytes)?),
        NpyDType::Bool => NpyData::Bool(vec(h.numel, h.data_bytes)?),
    })
}

/// Append the elements in `bytes` (a whole number of elements, starting at element `first`)
/// to `out`, which has the header's dtype.
fn decode_into(
    h: &Header,
    bytes: &[u8],
    first: usize,
    out: &mut NpyData,
) -> Result<(), NpyErrorKind> {
    fn words<const N: usize, T>(out: &mut Vec<T>, bytes: &[u8], convert: fn([u8; N]) -> T) {
        // Callers pass whole elements, so the remainder is empty.
        let (words, _) = bytes.as_chunks::<N>();
        out.extend(words.iter().map(|w| convert(*w)));
    }
    let big = h.big_endian;
    match out {
        NpyData::F32(v) => words(
            v,
            bytes,
            if big {
                f32::from_be_bytes
            } else {
                f32::from_le_bytes
            },
        ),
        NpyData::I64(v) => words(
            v,
            bytes,
            if big {
                i64::from_be_bytes
            } else {
                i64::from_le_bytes
            },
        ),
        NpyData::I32(v) => words(
            v,
            bytes,
            if big {
                i32::from_be_bytes
            } else {
                i32::from_le_bytes
            },
        ),
        NpyData::Bool(v) => {
            for (i, &byte) in bytes.iter().enumerate() {
                match byte {
                    0 => v.push(false),
                    1 => v.push(true),
                    _ => {
                        return Err(NpyErrorKind::InvalidBool {
                            index: first + i,
                            byte,
                        })
                    }
                }
            }
        }
    }
    Ok(())
}

/// The array in C order.
fn finish(h: Header, data: NpyData) -> NpyArray {
    let data = if h.fortran_order {
        match data {
            NpyData::F32(v) => NpyData::F32(fortran_to_c(&v, &h.shape)),
            NpyData::I64(v) => NpyData::I64(fortran_to_c(&v, &h.shape)),
            NpyData::I32(v) => NpyData::I32(fortran_to_c(&v, &h.shape)),
            NpyData::Bool(v) => NpyData::Bool(fortran_to_c(&v, &h.shape)),
        }
    } else {
        data
    };
    NpyArray {
        shape: h.shape,
        data,
    }
}

/// Reorder `src`, the elements of an array of `shape` in Fortran order (first index fastest),
/// into C order (last index fastest). Requires `src.len()` = product of `shape`.
fn fortran_to_c<T: Copy>(src: &[T], shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 || src.is_empty() {
        return src.to_vec();
    }
    // Fortran stride of axis k: product of the dims before it (each <= src.len()).
    let mut strides = Vec::with_capacity(shape.len());
    let mut acc = 1usize;
    for &d in shape {
        strides.push(acc);
        acc = acc.saturating_mul(d);
    }
    let mut out = Vec::with_capacity(src.len());
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    for _ in 0..src.len() {
        // `offset` = Σ index[k]·strides[k] < src.len() for every valid multi-index.
        out.push(src[offset]);
        // Advance the C-order multi-index (last axis fastest), tracking the Fortran offset.
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            offset += strides[k];
            if index[k] < shape[k] {
                break;
            }
            offset -= strides[k] * shape[k];
            index[k] = 0;
        }
    }
    out
}

/// A Python literal from the header. Integers keep their sign and magnitude (`None` when the
/// magnitude exceeds u64) so that negative and huge dims get precise messages.
enum Value {
    Str(String),
    Int {
        negative: bool,
        magnitude: Option<u64>,
    },
    Bool(bool),
    None,
    Tuple(Vec<Value>),
    /// A list's items are parsed (so the header is checked) but not kept: the only list
    /// numpy writes is a structured descr, which is rejected.
    List,
}

/// Recursive-descent parser over the header text. `depth` counts the brackets enclosing a value;
/// recursion stops at [`MAX_NESTING`].
struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    /// Versions 1.0 and 2.0 are latin-1; 3.0 is UTF-8 (validated before parsing).
    utf8: bool,
}

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> NpyErrorKind {
        NpyErrorKind::HeaderSyntax {
            offset: self.pos,
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), NpyErrorKind> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected '{}'", char::from(byte))))
        }
    }

    /// The whole header: one dict with string keys, then only whitespace.
    fn dict(&mut self) -> Result<Vec<(String, Value)>, NpyErrorKind> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = match self.value(0)? {
                Value::Str(s) => s,
                _ => return Err(self.err("dict keys must be strings")),
            };
            self.expect(b':')?;
            let value = self.value(0)?;
            entries.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or '}' in the dict")),
            }
        }
        self.skip_ws();
        if self.pos != self.text.len() {
            return Err(self.err("unexpected text after the dict"));
        }
        Ok(entries)
    }

    fn value(&mut self, depth: usize) -> Result<Value, NpyErrorKind> {
        self.skip_ws();
        match self.peek() {
            Some(quote @ (b'\'' | b'"')) => self.string(quote).map(Value::Str),
            Some(b'0'..=b'9' | b'-' | b'+') => self.int(),
            Some(open @ (b'(' | b'[')) => {
                if depth == MAX_NESTING {
                    return Err(self.err(format!("nested deeper than {MAX_NESTING} levels")));
                }
                self.pos += 1;
                let close = if open == b'(' { b')' } else { b']' };
                let (mut items, trailing_comma) = self.seq(close, depth + 1)?;
                Ok(match (open, items.len(), trailing_comma) {
                    // `(x)` is a parenthesized value, not a tuple.
                    (b'(', 1, false) => items.remove(0),
                    (b'(', ..) => Value::Tuple(items),
                    _ => Value::List,
                })
            }
            Some(b'{') => Err(self.err("nested dicts are not allowed")),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            Some(_) => Err(self.err("expected a value")),
            None => Err(self.err("unexpected end of header")),
        }
    }

    /// Items up to `close` (the opening bracket consumed); whether a comma preceded `close`.
    fn seq(&mut self, close: u8, depth: usize) -> Result<(Vec<Value>, bool), NpyErrorKind> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                // Reaching `close` here after an item means a comma preceded it.
                let trailing_comma = !items.is_empty();
                return Ok((items, trailing_comma));
            }
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok((items, false));
                }
                _ => {
                    return Err(self.err(format!("expected ',' or '{}'", char::from(close))));
                }
            }
        }
    }

    /// A quoted string; a backslash keeps the character after it (no escape is meaningful in
    /// any key or descr this reader accepts).
    fn string(&mut self, quote: u8) -> Result<String, NpyErrorKind> {
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(self.err("unterminated string")),
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(self.err("unterminated string")),
                        Some(c) => bytes.push(c),
                    }
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some(c) => bytes.push(c),
            }
            self.pos += 1;
        }
        Ok(if self.utf8 {
            // The whole header is valid UTF-8 and the quotes are ASCII, so this is lossless;
            // a backslash before a multi-byte character can at worst replace it with U+FFFD.
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            bytes.into_iter().map(char::from).collect()
        })
    }

    fn int(&mut self) -> Result<Value, NpyErrorKind> {
        let negative = match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                true
            }
            Some(b'+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        self.skip_ws();
        let start = self.pos;
        let mut magnitude = Some(0u64);
        while let Some(c @ b'0'..=b'9') = self.peek() {
            magnitude = magnitude
                .and_then(|m| m.checked_mul(10))
                .and_then(|m| m.checked_add(u64::from(c - b'0')));
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err("expected digits"));
        }
        Ok(Value::Int {
            negative,
            magnitude,
        })
    }

    fn word(&mut self) -> Result<Value, NpyErrorKind> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.pos += 1;
        }
        match &self.text[start..self.pos] {
            b"True" => Ok(Value::Bool(true)),
            b"False" => Ok(Value::Bool(false)),
            b"None" => Ok(Value::None),
            word => {
                let word = quote(&String::from_utf8_lossy(word));
                self.pos = start;
                Err(self.err(format!("unexpected name '{word}'")))
            }
        }
    }
}

/// Parse and validate the header text of a version-`major` file.
fn parse_header(text: &[u8], major: u8) -> Result<Header, NpyErrorKind> {
    let utf8 = major >= 3;
    if utf8 {
        if let Err(e) = std::str::from_utf8(text) {
            return Err(NpyErrorKind::HeaderSyntax {
                offset: e.valid_up_to(),
                msg: "version 3.0 header is not valid UTF-8".to_string(),
            });
        }
    }
    let entries = Parser { text, pos: 0, utf8 }.dict()?;

    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in entries {
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            other => {
                return Err(NpyErrorKind::HeaderKeys(format!(
                    "has the unexpected key '{}' (allowed: 'descr', 'fortran_order', 'shape')",
                    quote(other)
                )))
            }
        };
        if slot.replace(value).is_some() {
            return Err(NpyErrorKind::HeaderKeys(format!(
                "has the key '{key}' twice"
            )));
        }
    }
    let missing = |key: &str| NpyErrorKind::HeaderKeys(format!("is missing the key '{key}'"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran = fortran.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;

    let (dtype, big_endian) = match descr {
        Value::Str(s) => parse_descr(&s)?,
        Value::List => return Err(NpyErrorKind::Structured),
        _ => {
            return Err(NpyErrorKind::HeaderValue {
                key: "descr",
                msg: "must be a string".to_string(),
            })
        }
    };
    let Value::Bool(fortran_order) = fortran else {
        return Err(NpyErrorKind::HeaderValue {
            key: "fortran_order",
            msg: "must be True or False".to_string(),
        });
    };
    let dims = parse_shape(shape)?;

    // As in numpy, the product of the nonzero dims times the itemsize must fit in isize, even
    // when a zero dim makes the array empty: later stride arithmetic on the shape cannot
    // overflow, and every allocation size is valid.
    let overflow = || NpyErrorKind::ShapeOverflow {
        shape: dims.clone(),
    };
    let mut shape = Vec::with_capacity(dims.len());
    let mut nonzero_bytes = dtype.itemsize();
    for &d in &dims {
        let d = usize::try_from(d).map_err(|_| overflow())?;
        nonzero_bytes = nonzero_bytes.checked_mul(d.max(1)).ok_or_else(overflow)?;
        shape.push(d);
    }
    if nonzero_bytes > isize::MAX as usize {
        return Err(overflow());
    }
    // Both are at most `nonzero_bytes`, so neither overflows.
    let numel: usize = shape.iter().product();
    let data_bytes = numel * dtype.itemsize();
    Ok(Header {
        dtype,
        big_endian,
        fortran_order,
        shape,
        numel,
        data_bytes,
    })
}

/// The dtype and whether the data is big-endian.
fn parse_descr(descr: &str) -> Result<(NpyDType, bool), NpyErrorKind> {
    let unsupported = || NpyErrorKind::UnsupportedDType {
        descr: quote(descr),
    };
    let ts: TypeStr = descr.parse().map_err(|_| unsupported())?;
    if ts.uses_pickled_array() {
        return Err(NpyErrorKind::Pickle {
            descr: quote(descr),
        });
    }
    let dtype = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => NpyDType::F32,
        (TypeChar::Int, 8) => NpyDType::I64,
        (TypeChar::Int, 4) => NpyDType::I32,
        (TypeChar::Bool, 1) => NpyDType::Bool,
        _ => return Err(unsupported()),
    };
    Ok((dtype, ts.endianness() == Endianness::Big))
}

/// A tuple of non-negative integers, at most [`MAX_RANK`] of them.
fn parse_shape(shape: Value) -> Result<Vec<u64>, NpyErrorKind> {
    let bad = |msg: String| NpyErrorKind::HeaderValue { key: "shape", msg };
    let Value::Tuple(items) = shape else {
        return Err(bad("must be a tuple of integers".to_string()));
    };
    if items.len() > MAX_RANK {
        return Err(NpyErrorKind::RankTooLarge {
            rank: items.len(),
            max: MAX_RANK,
        });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(axis, item)| match item {
            Value::Int {
                negative: false,
                magnitude: Some(d),
            }
            | Value::Int {
                negative: true,
                magnitude: Some(d @ 0),
            } => Ok(d),
            Value::Int {
                negative: true,
                magnitude: _,
            } => Err(bad(format!("has a negative dimension at axis {axis}"))),
            Value::Int {
                magnitude: None, ..
            } => Err(bad(format!("dimension at axis {axis} exceeds 2^64"))),
            _ => Err(bad(format!("dimension at axis {axis} is not an integer"))),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Writing

/// The `.npy` bytes of `arr`; see [`write_npy_bytes`].
fn encode(arr: &NpyArray) -> Result<Vec<u8>, NpyErrorKind> {
    if arr.shape.len() > MAX_RANK {
        return Err(NpyErrorKind::RankTooLarge {
            rank: arr.shape.len(),
            max: MAX_RANK,
        });
    }
    let numel = arr.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if numel != Some(arr.data.len()) {
        return Err(NpyErrorKind::ShapeMismatch {
            shape: arr.shape.clone(),
            actual: arr.data.len(),
        });
    }
    let dims = match arr.shape.as_slice() {
        [d] => format!("{d},"),
        dims => dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({dims}), }}",
        arr.dtype().descr()
    );
    // Version 1.0: 10-byte preamble; pad with spaces so that the data starts on a 64-byte
    // boundary, and end with '\n'. With rank <= 64 the header stays far below u16::MAX.
    const PREAMBLE_V1: usize = 10;
    let data_offset = (PREAMBLE_V1 + header.len() + 1).next_multiple_of(HEADER_ALIGN);
    let header_len = data_offset - PREAMBLE_V1;
    while header.len() + 1 < header_len {
        header.push(' ');
    }
    header.push('\n');
    let header_len16 = u16::try_from(header_len).map_err(|_| NpyErrorKind::RankTooLarge {
        rank: arr.shape.len(),
        max: MAX_RANK,
    })?;

    let data_size = match &arr.data {
        NpyData::F32(v) => size_of_val(v.as_slice()),
        NpyData::I64(v) => size_of_val(v.as_slice()),
        NpyData::I32(v) => size_of_val(v.as_slice()),
        NpyData::Bool(v) => size_of_val(v.as_slice()),
    };
    let mut out = Vec::with_capacity(data_offset.saturating_add(data_size));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len16.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &arr.data {
        NpyData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
    }
    Ok(out)
}

/// Write `bytes` to a fresh temporary file beside `path`, flush it to disk, and rename it over
/// `path`. On failure the temporary file is removed and `path` is untouched.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NpyErrorKind> {
    if path.file_name().is_none() {
        return Err(NpyErrorKind::NoFileName);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_temp(dir)?;
    let result = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write the temporary file"))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename the temporary file")));
    if result.is_err() {
        // Best effort: the write error is what the caller needs to see.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A new, exclusively created temporary file in `dir`.
fn create_temp(dir: &Path) -> Result<(PathBuf, File), NpyErrorKind> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ATTEMPTS: usize = 64;
    for _ in 0..ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".dync-npy-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => {
                return Err(NpyErrorKind::Io {
                    action: "create a temporary file",
                    err,
                })
            }
        }
    }
    Err(NpyErrorKind::Io {
        action: "create a temporary file",
        err: io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{ATTEMPTS} candidate names in {} are taken", dir.display()),
        ),
    })
}
