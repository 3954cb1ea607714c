//! Tensor types (`TensorType`: dtype + static shape) and tensor values (`Tensor`: row-major data).
//!
//! Invariant: a `Tensor`'s data length always equals the product of its shape; every constructor
//! checks it, and every product of dims is computed with overflow checks (`numel`).

use crate::dtype::DType;
use crate::error::ShapeError;
use std::fmt;

/// The static type of an IR value: element type and shape (row-major, outermost dim first).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> Self {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }

    pub fn f32(shape: impl Into<Vec<usize>>) -> Self {
        Self::new(DType::F32, shape)
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements, or an error when the product overflows `usize`.
    pub fn numel(&self) -> Result<usize, ShapeError> {
        numel(&self.shape)
    }

    /// Size in bytes, overflow-checked.
    pub fn bytes(&self) -> Result<usize, ShapeError> {
        self.numel()?
            .checked_mul(self.dtype.size())
            .ok_or_else(|| ShapeError::Overflow(format!("{self}")))
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Product of dims with overflow checking.
pub fn numel(shape: &[usize]) -> Result<usize, ShapeError> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| ShapeError::Overflow(format!("{shape:?}")))
    })
}

/// Row-major strides (in elements) of a shape whose `numel` is known not to overflow.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Element storage of a tensor, one variant per `DType`.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All-zero (false) storage of `n` elements.
    pub fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
        }
    }
}

/// A tensor value: a type and row-major data of exactly `numel` elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that `data` holds exactly `numel(shape)` elements.
    pub fn new(shape: impl Into<Vec<usize>>, data: TensorData) -> Result<Self, ShapeError> {
        let shape = shape.into();
        let n = numel(&shape)?;
        if n != data.len() {
            return Err(ShapeError::DataLength {
                shape,
                expected: n,
                got: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    pub fn zeros(ty: &TensorType) -> Result<Self, ShapeError> {
        let n = ty.numel()?;
        Ok(Tensor {
            shape: ty.shape.clone(),
            data: TensorData::zeros(ty.dtype, n),
        })
    }

    pub fn from_f32(shape: impl Into<Vec<usize>>, v: Vec<f32>) -> Result<Self, ShapeError> {
        Self::new(shape, TensorData::F32(v))
    }

    pub fn from_i64(shape: impl Into<Vec<usize>>, v: Vec<i64>) -> Result<Self, ShapeError> {
        Self::new(shape, TensorData::I64(v))
    }

    /// A rank-0 f32 tensor.
    pub fn scalar_f32(v: f32) -> Self {
        Tensor {
            shape: vec![],
            data: TensorData::F32(vec![v]),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape.clone())
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The f32 elements, or `None` for another dtype.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The i64 elements, or `None` for another dtype.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Integer elements (i64 or i32) widened to i64, or `None` for a float/bool tensor.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        match &self.data {
            TensorData::I64(v) => Some(v.clone()),
            TensorData::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            _ => None,
        }
    }

    /// Same data, new shape of equal element count.
    pub fn reshaped(self, shape: impl Into<Vec<usize>>) -> Result<Self, ShapeError> {
        Tensor::new(shape, self.data)
    }

    /// A stable 64-bit FNV-1a hash of dtype, shape and the exact bits of the data; the IR text
    /// prints it for weights too large to inline, so that golden files change when weights do.
    pub fn content_hash(&self) -> u64 {
        let mut h = Fnv::new();
        h.write(self.dtype().name().as_bytes());
        for &d in &self.shape {
            h.write(&(d as u64).to_le_bytes());
        }
        match &self.data {
            TensorData::F32(v) => v.iter().for_each(|x| h.write(&x.to_bits().to_le_bytes())),
            TensorData::I64(v) => v.iter().for_each(|x| h.write(&x.to_le_bytes())),
            TensorData::I32(v) => v.iter().for_each(|x| h.write(&x.to_le_bytes())),
            TensorData::Bool(v) => v.iter().for_each(|&x| h.write(&[x as u8])),
        }
        h.0
    }
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
