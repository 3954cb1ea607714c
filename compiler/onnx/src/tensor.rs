//! ONNX tensors and value types to IR: [`tensor_from_proto`] materializes a `TensorProto`
//! (from `raw_data`, a typed field or external data), [`value_info_type`] reads a declared type,
//! and [`dtype_from_onnx`] / [`onnx_from_dtype`] map element types both ways.
//!
//! Element types: FLOAT → f32, INT64 → i64, INT32 → i32, BOOL → bool; tensor data of INT8,
//! UINT8, INT16 and UINT16 is widened losslessly to i32. Every other type (FLOAT16, DOUBLE,
//! STRING, ...) is rejected by name, never converted lossily.
//!
//! `tensor_from_proto` rejects, naming the tensor: ranks over `Limits::max_rank`, negative dims,
//! element or byte counts that overflow, tensors over `Limits::max_tensor_bytes` or pushing the
//! context's total over `Limits::max_total_weight_bytes` (all before allocating), more than one
//! data source, a source that cannot hold the type, a length that is not exactly the element
//! count (raw_data: count × element size), typed values out of the type's range, bool bytes
//! other than 0 and 1, segments, and external data that fails the checks of
//! [`crate::load::open_external`] or whose offset/length do not fit the file and the tensor.

use crate::error::{ErrorKind, ImportError};
use crate::limits::{self, Limits};
use crate::load::{open_external, parse_external};
use crate::proto::{
    tensor_shape_proto::dimension, type_proto, DataLocation, DataType, TensorProto, ValueInfoProto,
};
use dync_ir::{DType, Tensor, TensorData};
use std::cell::Cell;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What tensors are materialized against: the folder external data may come from, the limits,
/// and the running total of bytes materialized so far (for `max_total_weight_bytes`).
#[derive(Debug)]
pub struct TensorCtx<'a> {
    base_dir: Option<&'a Path>,
    limits: &'a Limits,
    total_bytes: Cell<u64>,
}

impl<'a> TensorCtx<'a> {
    /// `base_dir: None` rejects external data (an in-memory model has no folder).
    pub fn new(base_dir: Option<&'a Path>, limits: &'a Limits) -> Self {
        TensorCtx {
            base_dir,
            limits,
            total_bytes: Cell::new(0),
        }
    }

    pub fn limits(&self) -> &Limits {
        self.limits
    }

    /// Bytes of all tensors materialized through this context so far.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.get()
    }
}

/// An ONNX element type dync cannot represent (or an unknown type code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedDataType(pub i32);

impl fmt::Display for UnsupportedDataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DataType::try_from(self.0) {
            Ok(_) => write!(f, "unsupported data type {}", type_name(self.0)),
            Err(_) => write!(f, "unknown data type {}", self.0),
        }
    }
}

impl std::error::Error for UnsupportedDataType {}

/// The ONNX spelling of a `TensorProto.DataType` code (`FLOAT16`), or the number if unknown.
pub fn type_name(code: i32) -> String {
    match DataType::try_from(code) {
        Ok(t) => format!("{t:?}").to_uppercase(),
        Err(_) => code.to_string(),
    }
}

/// The IR type of an ONNX element type, exactly (no widening: a value declared UINT8 is not an
/// i32 value).
pub fn dtype_from_onnx(code: i32) -> Result<DType, UnsupportedDataType> {
    match DataType::try_from(code) {
        Ok(DataType::Float) => Ok(DType::F32),
        Ok(DataType::Int64) => Ok(DType::I64),
        Ok(DataType::Int32) => Ok(DType::I32),
        Ok(DataType::Bool) => Ok(DType::Bool),
        _ => Err(UnsupportedDataType(code)),
    }
}

/// The ONNX `TensorProto.DataType` code of an IR type.
pub fn onnx_from_dtype(dtype: DType) -> i32 {
    let t = match dtype {
        DType::F32 => DataType::Float,
        DType::I64 => DataType::Int64,
        DType::I32 => DataType::Int32,
        DType::Bool => DataType::Bool,
    };
    t as i32
}

/// How elements of a supported ONNX type are stored in tensor data.
#[derive(Clone, Copy, Debug)]
enum Elem {
    F32,
    I64,
    I32,
    I16,
    U16,
    I8,
    U8,
    Bool,
}

impl Elem {
    fn from_onnx(code: i32) -> Result<Elem, UnsupportedDataType> {
        Ok(match DataType::try_from(code) {
            Ok(DataType::Float) => Elem::F32,
            Ok(DataType::Int64) => Elem::I64,
            Ok(DataType::Int32) => Elem::I32,
            Ok(DataType::Int16) => Elem::I16,
            Ok(DataType::Uint16) => Elem::U16,
            Ok(DataType::Int8) => Elem::I8,
            Ok(DataType::Uint8) => Elem::U8,
            Ok(DataType::Bool) => Elem::Bool,
            _ => return Err(UnsupportedDataType(code)),
        })
    }

    /// Bytes per element in `raw_data` and external data.
    fn onnx_size(self) -> usize {
        match self {
            Elem::F32 | Elem::I32 => 4,
            Elem::I64 => 8,
            Elem::I16 | Elem::U16 => 2,
            Elem::I8 | Elem::U8 | Elem::Bool => 1,
        }
    }

    fn dtype(self) -> DType {
        match self {
            Elem::F32 => DType::F32,
            Elem::I64 => DType::I64,
            Elem::I32 | Elem::I16 | Elem::U16 | Elem::I8 | Elem::U8 => DType::I32,
            Elem::Bool => DType::Bool,
        }
    }
}

/// Where a tensor's elements are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Raw,
    External,
    Float,
    Int32,
    Int64,
    Double,
    Uint64,
    String,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Raw => "raw_data",
            Source::External => "external data",
            Source::Float => "float_data",
            Source::Int32 => "int32_data",
            Source::Int64 => "int64_data",
            Source::Double => "double_data",
            Source::Uint64 => "uint64_data",
            Source::String => "string_data",
        }
    }
}

/// Every data source `t` uses.
fn sources(t: &TensorProto) -> Vec<Source> {
    let external = t.data_location == DataLocation::External as i32;
    [
        (Source::Raw, !t.raw_data.is_empty()),
        (Source::External, external),
        (Source::Float, !t.float_data.is_empty()),
        (Source::Int32, !t.int32_data.is_empty()),
        (Source::Int64, !t.int64_data.is_empty()),
        (Source::Double, !t.double_data.is_empty()),
        (Source::Uint64, !t.uint64_data.is_empty()),
        (Source::String, !t.string_data.is_empty()),
    ]
    .into_iter()
    .filter_map(|(s, present)| present.then_some(s))
    .collect()
}

/// Materializes `t` as an IR tensor; see the module docs for what is rejected. Errors name the
/// tensor but no file: the caller attaches it.
pub fn tensor_from_proto(t: &TensorProto, ctx: &TensorCtx) -> Result<Tensor, ImportError> {
    Ok(convert(t, ctx)?)
}

fn convert(t: &TensorProto, ctx: &TensorCtx) -> Result<Tensor, ErrorKind> {
    let name = t.name.as_str();
    let err = |m: String| ErrorKind::tensor(name, m);
    let elem = Elem::from_onnx(t.data_type).map_err(|e| err(e.to_string()))?;
    let limits = ctx.limits;
    limits::check(
        || format!("the rank of tensor {name:?}"),
        t.dims.len() as u64,
        limits.max_rank as u64,
    )?;
    let shape = t
        .dims
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            usize::try_from(d).map_err(|_| err(format!("dimension {i} is {d}, which is negative")))
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let n = dync_ir::tensor::numel(&shape)
        .map_err(|_| err(format!("the element count of shape {shape:?} overflows")))?;
    let overflow = || err(format!("the byte size of shape {shape:?} overflows"));
    let bytes = n.checked_mul(elem.dtype().size()).ok_or_else(overflow)?;
    let stored_bytes = n.checked_mul(elem.onnx_size()).ok_or_else(overflow)?;
    limits::check(
        || format!("the size in bytes of tensor {name:?}"),
        bytes as u64,
        limits.max_tensor_bytes,
    )?;
    if t.segment.is_some() {
        return Err(err("segmented tensors are not supported".into()));
    }
    let location = DataLocation::try_from(t.data_location)
        .map_err(|_| err(format!("unknown data_location {}", t.data_location)))?;
    if location == DataLocation::Default && !t.external_data.is_empty() {
        return Err(err(
            "external_data is given but data_location is not EXTERNAL".into(),
        ));
    }
    let source = match sources(t).as_slice() {
        [] if n == 0 => None,
        [] => {
            return Err(err(format!(
                "has no data, but shape {shape:?} needs {n} elements"
            )))
        }
        [s] => Some(*s),
        [a, b, ..] => {
            return Err(err(format!(
                "has data in both {} and {}; exactly one data source is allowed",
                a.name(),
                b.name()
            )))
        }
    };
    // Everything below allocates `bytes`; reserve them in the context's total first.
    let total = ctx.total_bytes.get().saturating_add(bytes as u64);
    limits::check(
        || "the total size in bytes of the model's tensors".into(),
        total,
        limits.max_total_weight_bytes,
    )?;
    ctx.total_bytes.set(total);
    let data = match source {
        None => TensorData::zeros(elem.dtype(), 0),
        Some(Source::Raw) => {
            if t.raw_data.len() != stored_bytes {
                return Err(err(format!(
                    "raw_data has {} bytes, but shape {shape:?} of {} needs {stored_bytes}",
                    t.raw_data.len(),
                    type_name(t.data_type)
                )));
            }
            read_elems(&mut t.raw_data.as_slice(), elem, n).map_err(|e| err(e.to_string()))?
        }
        Some(Source::External) => read_external(t, elem, n, stored_bytes, ctx)?,
        Some(s) => typed(t, s, elem, n).map_err(err)?,
    };
    Tensor::new(shape, data).map_err(|e| err(e.to_string()))
}

/// Data from a typed field, which must be the one that holds `elem` and have exactly `n` values.
fn typed(t: &TensorProto, source: Source, elem: Elem, n: usize) -> Result<TensorData, String> {
    let len = match (elem, source) {
        (Elem::F32, Source::Float) => t.float_data.len(),
        (Elem::I64, Source::Int64) => t.int64_data.len(),
        (Elem::I32 | Elem::I16 | Elem::U16 | Elem::I8 | Elem::U8 | Elem::Bool, Source::Int32) => {
            t.int32_data.len()
        }
        _ => {
            return Err(format!(
                "{} cannot hold {} data",
                source.name(),
                type_name(t.data_type)
            ))
        }
    };
    if len != n {
        return Err(format!(
            "{} has {len} values, but the shape needs {n}",
            source.name()
        ));
    }
    let ints = |range: fn(i32) -> bool| -> Result<TensorData, String> {
        match t.int32_data.iter().find(|&&v| !range(v)) {
            Some(v) => Err(format!(
                "int32_data value {v} is out of range for {}",
                type_name(t.data_type)
            )),
            None => Ok(TensorData::I32(t.int32_data.clone())),
        }
    };
    match elem {
        Elem::F32 => Ok(TensorData::F32(t.float_data.clone())),
        Elem::I64 => Ok(TensorData::I64(t.int64_data.clone())),
        Elem::I32 => Ok(TensorData::I32(t.int32_data.clone())),
        Elem::I16 => ints(|v| i16::try_from(v).is_ok()),
        Elem::U16 => ints(|v| u16::try_from(v).is_ok()),
        Elem::I8 => ints(|v| i8::try_from(v).is_ok()),
        Elem::U8 => ints(|v| u8::try_from(v).is_ok()),
        Elem::Bool => t
            .int32_data
            .iter()
            .map(|&v| match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(format!("int32_data value {v} is not a boolean (0 or 1)")),
            })
            .collect::<Result<Vec<bool>, String>>()
            .map(TensorData::Bool),
    }
}

/// Reads `stored_bytes` of external data after all location, file and range checks.
fn read_external(
    t: &TensorProto,
    elem: Elem,
    n: usize,
    stored_bytes: usize,
    ctx: &TensorCtx,
) -> Result<TensorData, ErrorKind> {
    // Named in errors even when the entries do not parse.
    let location = t
        .external_data
        .iter()
        .find(|e| e.key == "location")
        .map(|e| e.value.clone())
        .unwrap_or_default();
    let err = |message: String| ErrorKind::ExternalData {
        tensor: t.name.clone(),
        path: location.clone(),
        message,
    };
    let r = parse_external(&t.external_data).map_err(&err)?;
    let base = ctx.base_dir.ok_or_else(|| {
        err("external data is not allowed for a model without a folder (loaded from memory)".into())
    })?;
    let size = stored_bytes as u64;
    if let Some(len) = r.length {
        if len != size {
            return Err(err(format!(
                "length is {len} bytes, but the tensor's shape and type need {size}"
            )));
        }
    }
    let (mut file, file_len) = open_external(base, &r.location).map_err(&err)?;
    let end = r
        .offset
        .checked_add(size)
        .ok_or_else(|| err(format!("offset {} plus {size} bytes overflows", r.offset)))?;
    if end > file_len {
        return Err(err(format!(
            "bytes {}..{end} are past the end of the file ({file_len} bytes)",
            r.offset
        )));
    }
    file.seek(SeekFrom::Start(r.offset))
        .map_err(|e| err(format!("cannot seek to offset {}: {e}", r.offset)))?;
    read_elems(&mut file.take(size), elem, n).map_err(|e| err(e.to_string()))
}

/// Why little-endian elements could not be read.
#[derive(Debug)]
enum ReadError {
    Io(std::io::Error),
    Value(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "reading failed: {e}"),
            ReadError::Value(m) => f.write_str(m),
        }
    }
}

/// Reads `n` little-endian elements of `elem` from `src`, in bounded chunks so that only the
/// result (already accounted against the limits) is allocated in full.
fn read_elems(src: &mut impl Read, elem: Elem, n: usize) -> Result<TensorData, ReadError> {
    let any = |_: &[u8]| Ok(());
    Ok(match elem {
        Elem::F32 => TensorData::F32(read_vec(src, n, any, f32::from_le_bytes)?),
        Elem::I64 => TensorData::I64(read_vec(src, n, any, i64::from_le_bytes)?),
        Elem::I32 => TensorData::I32(read_vec(src, n, any, i32::from_le_bytes)?),
        Elem::I16 => TensorData::I32(read_vec(src, n, any, |b| i16::from_le_bytes(b).into())?),
        Elem::U16 => TensorData::I32(read_vec(src, n, any, |b| u16::from_le_bytes(b).into())?),
        Elem::I8 => TensorData::I32(read_vec(src, n, any, |b| i8::from_le_bytes(b).into())?),
        Elem::U8 => TensorData::I32(read_vec(src, n, any, |b: [u8; 1]| b[0].into())?),
        Elem::Bool => {
            let valid = |bytes: &[u8]| match bytes.iter().find(|&&v| v > 1) {
                Some(v) => Err(format!("byte {v} is not a boolean (0 or 1)")),
                None => Ok(()),
            };
            TensorData::Bool(read_vec(src, n, valid, |b: [u8; 1]| b[0] == 1)?)
        }
    })
}

const CHUNK_BYTES: usize = 1 << 16;

/// `n` elements of `N` bytes each: every chunk read must pass `valid`, then each element is
/// converted by `conv` (infallible, so that converting a chunk is one vectorizable loop).
fn read_vec<T, const N: usize>(
    src: &mut impl Read,
    n: usize,
    valid: impl Fn(&[u8]) -> Result<(), String>,
    conv: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, ReadError> {
    let mut out = Vec::new();
    // An allocation failure is an error, not an abort.
    out.try_reserve_exact(n)
        .map_err(|e| ReadError::Io(std::io::Error::other(e)))?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let per_chunk = CHUNK_BYTES / N;
    let mut left = n;
    while left > 0 {
        let k = left.min(per_chunk);
        let chunk = &mut buf[..k * N];
        src.read_exact(chunk).map_err(ReadError::Io)?;
        valid(chunk).map_err(ReadError::Value)?;
        let (elems, _) = chunk.as_chunks::<N>();
        out.extend(elems.iter().map(|&b| conv(b)));
        left -= k;
    }
    Ok(out)
}

/// One dimension of a declared value type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    /// A named dimension (`dim_param`), e.g. `batch`.
    Symbolic(String),
    /// Neither a value nor a name.
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(d) => write!(f, "{d}"),
            Dim::Symbolic(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// The declared type of a graph input, output or value_info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueType {
    pub dtype: DType,
    /// `None` when no shape is declared (the rank is unknown).
    pub shape: Option<Vec<Dim>>,
}

/// `f32[batch,3,224,224]`, or `f32[..]` without a declared shape.
impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shape {
            None => write!(f, "{}[..]", self.dtype),
            Some(dims) => {
                let dims: Vec<String> = dims.iter().map(Dim::to_string).collect();
                write!(f, "{}[{}]", self.dtype, dims.join(","))
            }
        }
    }
}

/// Reads the declared type of `v`: a tensor type with a supported element type, a rank within
/// `limits.max_rank` and no negative dims. Errors name the value but no file.
pub fn value_info_type(v: &ValueInfoProto, limits: &Limits) -> Result<ValueType, ImportError> {
    let name = v.name.as_str();
    let err = |m: String| ErrorKind::value(name, m);
    let not_dense = |kind: &str| err(format!("is {kind}; only dense tensors are supported"));
    let tensor = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        None => return Err(err("has no type".into()).into()),
        Some(type_proto::Value::SequenceType(_)) => return Err(not_dense("a sequence").into()),
        Some(type_proto::Value::MapType(_)) => return Err(not_dense("a map").into()),
        Some(type_proto::Value::OptionalType(_)) => return Err(not_dense("an optional").into()),
        Some(type_proto::Value::SparseTensorType(_)) => {
            return Err(not_dense("a sparse tensor").into())
        }
    };
    let dtype = dtype_from_onnx(tensor.elem_type).map_err(|e| err(e.to_string()))?;
    let Some(shape) = &tensor.shape else {
        return Ok(ValueType { dtype, shape: None });
    };
    limits::check(
        || format!("the rank of value {name:?}"),
        shape.dim.len() as u64,
        limits.max_rank as u64,
    )?;
    let dims = shape
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| match &d.value {
            Some(dimension::Value::DimValue(x)) => usize::try_from(*x)
                .map(Dim::Known)
                .map_err(|_| err(format!("dimension {i} is {x}, which is negative"))),
            Some(dimension::Value::DimParam(s)) if !s.is_empty() => Ok(Dim::Symbolic(s.clone())),
            Some(dimension::Value::DimParam(_)) | None => Ok(Dim::Unknown),
        })
        .collect::<Result<Vec<Dim>, ErrorKind>>()?;
    Ok(ValueType {
        dtype,
        shape: Some(dims),
    })
}
