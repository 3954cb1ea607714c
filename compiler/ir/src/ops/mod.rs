//! The exhaustive set of IR operations. Each op is a struct in its own file implementing
//! [`OpDef`]: its text name, arity, attributes (printed and parsed through one definition),
//! type/shape inference and its multiply-accumulate count.
//!
//! Adding an op: a file here, one line in `define_ops!` below; the compiler then points at every
//! `match` on [`Op`] that must handle it (interpreter, lowering, passes).
//!
//! IR ops hold their attributes fully resolved: ONNX inputs that only carry shapes or axes
//! (Reshape's shape, Slice's starts, Resize's sizes) become attributes at import, because every
//! shape in the IR is static.

use crate::attrs::{AttrReader, AttrWriter};
use crate::error::ShapeError;
use crate::tensor::TensorType;

mod batch_norm;
mod binary;
mod cast;
mod concat;
mod constant;
mod conv;
mod dyn_conv;
mod einsum;
mod expand;
mod gather;
mod gemm;
mod input;
mod matmul;
mod pad;
mod pool;
mod predict;
mod reduce;
mod reshape;
mod resize;
mod slice;
mod softmax;
mod transpose;
mod unary;

pub use batch_norm::BatchNorm;
pub use binary::{broadcast_shapes, Binary, BinaryKind};
pub use cast::Cast;
pub use concat::Concat;
pub use constant::{Const, INLINE_LIMIT};
pub use conv::{conv_out_dim, conv_out_hw, Act, Clamp, Conv};
pub use dyn_conv::DynConv;
pub use einsum::{Einsum, EinsumSpec};
pub use expand::Expand;
pub use gather::Gather;
pub use gemm::Gemm;
pub use input::Input;
pub use matmul::{matmul_shape, MatMul, MatMulShape};
pub use pad::{Pad, PadMode};
pub use pool::{pool_out_dim, AvgPool, MaxPool};
pub use predict::{Hidden, Predict, PredictAct};
pub use reduce::{Reduce, ReduceKind};
pub use reshape::Reshape;
pub use resize::{CoordMode, NearestMode, Resize, ResizeMode, Taps};
pub use slice::Slice;
pub use softmax::Softmax;
pub use transpose::Transpose;
pub use unary::{Unary, UnaryKind};

/// How many inputs an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exact(usize),
    Range(usize, usize),
    AtLeast(usize),
}

impl Arity {
    pub fn admits(self, n: usize) -> bool {
        match self {
            Arity::Exact(k) => n == k,
            Arity::Range(lo, hi) => (lo..=hi).contains(&n),
            Arity::AtLeast(k) => n >= k,
        }
    }
}

impl std::fmt::Display for Arity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arity::Exact(k) => write!(f, "{k}"),
            Arity::Range(lo, hi) => write!(f, "{lo} to {hi}"),
            Arity::AtLeast(k) => write!(f, "at least {k}"),
        }
    }
}

/// What every IR op defines. See the module docs.
pub trait OpDef: Sized {
    /// The op's name in the IR text (snake_case).
    const NAME: &'static str;
    fn arity(&self) -> Arity;
    /// Result type from input types; the single source of shape rules (import and verifier use it).
    /// Callers guarantee `inputs.len()` is admitted by `arity`.
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError>;
    fn write_attrs(&self, w: &mut AttrWriter);
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String>;
    /// Multiply-accumulates performed, for ops that do matrix work; 0 otherwise.
    fn macs(&self, _inputs: &[&TensorType], _out: &TensorType) -> u64 {
        0
    }
}

macro_rules! define_ops {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// Every IR operation. Exhaustive on purpose: see the module docs.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $($variant($ty)),*
        }

        impl Op {
            /// The op's name in the IR text.
            pub fn name(&self) -> &'static str {
                match self { $(Op::$variant(_) => <$ty as OpDef>::NAME),* }
            }
            pub fn arity(&self) -> Arity {
                match self { $(Op::$variant(o) => o.arity()),* }
            }
            /// Checks the arity, then infers the result type.
            pub fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
                let arity = self.arity();
                if !arity.admits(inputs.len()) {
                    return Err(ShapeError::Arity { expected: arity.to_string(), got: inputs.len() });
                }
                match self { $(Op::$variant(o) => o.infer(inputs)),* }
            }
            pub fn write_attrs(&self, w: &mut AttrWriter) {
                match self { $(Op::$variant(o) => o.write_attrs(w)),* }
            }
            pub fn macs(&self, inputs: &[&TensorType], out: &TensorType) -> u64 {
                match self { $(Op::$variant(o) => o.macs(inputs, out)),* }
            }
            /// Parses the attributes of the op called `name`; `None` when no op has that name.
            pub fn read(name: &str, mut r: AttrReader) -> Option<Result<Op, String>> {
                $(
                    if name == <$ty as OpDef>::NAME {
                        return Some(<$ty as OpDef>::read_attrs(&mut r)
                            .and_then(|op| r.finish().map(|()| Op::$variant(op))));
                    }
                )*
                None
            }
            /// Every op name, for error messages and docs.
            pub const NAMES: &'static [&'static str] = &[$(<$ty as OpDef>::NAME),*];
        }
    };
}

define_ops! {
    Input(Input),
    Const(Const),
    Conv(Conv),
    DynConv(DynConv),
    Predict(Predict),
    BatchNorm(BatchNorm),
    Unary(Unary),
    Binary(Binary),
    MatMul(MatMul),
    Gemm(Gemm),
    Einsum(Einsum),
    Softmax(Softmax),
    AvgPool(AvgPool),
    MaxPool(MaxPool),
    Reduce(Reduce),
    Reshape(Reshape),
    Transpose(Transpose),
    Concat(Concat),
    Slice(Slice),
    Gather(Gather),
    Pad(Pad),
    Resize(Resize),
    Cast(Cast),
    Expand(Expand),
}

/// Requires the input to be f32, naming its position on error.
pub(crate) fn want_f32(t: &TensorType, what: &str) -> Result<(), ShapeError> {
    if t.dtype != crate::DType::F32 {
        crate::bail_shape!("{what} must be f32, got {}", t.dtype);
    }
    Ok(())
}

/// Requires the input to have rank `r`.
pub(crate) fn want_rank(t: &TensorType, r: usize, what: &str) -> Result<(), ShapeError> {
    if t.rank() != r {
        crate::bail_shape!("{what} must have rank {r}, got {t}");
    }
    Ok(())
}

/// The `N` entries of a list attribute, or an error naming it.
pub(crate) fn fixed<const N: usize>(v: Vec<usize>, name: &str) -> Result<[usize; N], String> {
    v.try_into()
        .map_err(|v: Vec<usize>| format!("`{name}` needs {N} entries, got {}", v.len()))
}
