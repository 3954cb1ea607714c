//! Typed access to tensor elements for the kernels.
//!
//! [`Elem`] ties a Rust element type to its `TensorData` variant, so that dtype-agnostic
//! kernels (transpose, slice, concat, ...) are written once as generic functions and
//! instantiated per dtype by [`for_dtype!`]. Result buffers larger than an existing input
//! (broadcasts, padding, resizing, ...) are allocated with [`alloc`]/[`collect`], which report a
//! result too large to allocate as an error instead of aborting the process.

use crate::error::EvalError;
use dync_ir::{Tensor, TensorData};

/// An element type of IR tensors, with the conversions of the `cast` op (see `cast.rs`):
/// f32 → integer truncates and saturates (NaN → 0) as `as` does, integer → integer wraps,
/// integer → f32 rounds to nearest, anything → bool is `!= 0`, bool → number is 0 or 1.
pub(crate) trait Elem: Copy + PartialOrd + std::fmt::Debug + 'static {
    fn slice(data: &TensorData) -> Option<&[Self]>;
    fn wrap(v: Vec<Self>) -> TensorData;
    fn from_f32(v: f32) -> Self;
    fn from_i64(v: i64) -> Self;
    fn from_bool(v: bool) -> Self;
}

macro_rules! impl_elem {
    ($t:ty, $dt:ident, $from_f32:expr, $from_i64:expr, $from_bool:expr) => {
        impl Elem for $t {
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(v: Vec<Self>) -> TensorData {
                TensorData::$dt(v)
            }
            fn from_f32(v: f32) -> Self {
                $from_f32(v)
            }
            fn from_i64(v: i64) -> Self {
                $from_i64(v)
            }
            fn from_bool(v: bool) -> Self {
                $from_bool(v)
            }
        }
    };
}

impl_elem!(
    f32,
    F32,
    |v: f32| v,
    |v: i64| v as f32,
    |v: bool| f32::from(u8::from(v))
);
impl_elem!(
    i64,
    I64,
    |v: f32| v as i64,
    |v: i64| v,
    |v: bool| i64::from(v)
);
impl_elem!(i32, I32, |v: f32| v as i32, |v: i64| v as i32, |v: bool| {
    i32::from(v)
});
impl_elem!(bool, Bool, |v: f32| v != 0.0, |v: i64| v != 0, |v: bool| v);

/// Runs `$body` with the type alias `$T` bound to the element type of `$dtype`.
macro_rules! for_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            dync_ir::DType::F32 => {
                type $T = f32;
                $body
            }
            dync_ir::DType::I64 => {
                type $T = i64;
                $body
            }
            dync_ir::DType::I32 => {
                type $T = i32;
                $body
            }
            dync_ir::DType::Bool => {
                type $T = bool;
                $body
            }
        }
    };
}
pub(crate) use for_dtype;

/// The elements of `t` as `T`; an error naming `op` when `t` holds another dtype.
pub(crate) fn elems<'a, T: Elem>(t: &'a Tensor, op: &'static str) -> Result<&'a [T], EvalError> {
    T::slice(t.data()).ok_or(EvalError::UnsupportedDtype {
        op,
        dtype: t.dtype(),
    })
}

/// Builds a tensor of `shape` from `v`.
pub(crate) fn tensor<T: Elem>(shape: &[usize], v: Vec<T>) -> Result<Tensor, EvalError> {
    Ok(Tensor::new(shape, T::wrap(v))?)
}

/// A vector of `n` copies of `fill`, or `EvalError::Alloc` when it cannot be allocated.
pub(crate) fn alloc<T: Clone>(n: usize, fill: T) -> Result<Vec<T>, EvalError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| EvalError::Alloc(n))?;
    v.resize(n, fill);
    Ok(v)
}

/// Collects the `n` results of `it` (stopping at the first error), allocating fallibly.
pub(crate) fn collect<T>(
    n: usize,
    it: impl Iterator<Item = Result<T, EvalError>>,
) -> Result<Vec<T>, EvalError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| EvalError::Alloc(n))?;
    for x in it {
        v.push(x?);
    }
    Ok(v)
}

/// Number of elements of `shape` (the shape of an existing tensor or of a type whose size the
/// op's shape inference checked), as an error when it overflows.
pub(crate) fn numel(shape: &[usize]) -> Result<usize, EvalError> {
    Ok(dync_ir::tensor::numel(shape)?)
}

/// The dims of a rank-`N` shape (the op's shape inference has checked the rank; a mismatch is
/// reported, not assumed away).
pub(crate) fn dims<const N: usize>(shape: &[usize]) -> Result<[usize; N], EvalError> {
    shape.try_into().map_err(|_| {
        EvalError::Shape(dync_ir::ShapeError::invalid(format!(
            "expected rank {N}, got shape {shape:?}"
        )))
    })
}
