//! dync's reference interpreter: plain, obviously correct evaluation of every IR op with exact
//! ONNX semantics. It is the oracle of every later test (ONNX node tests, onnxruntime
//! comparisons, generated code), so clarity beats speed; it is still fast enough for ResNet-50
//! in a release build (loops ordered so the innermost runs over contiguous memory).
//!
//! [`eval`] evaluates one op on concrete tensors: it first re-runs the op's shape inference on
//! the operands' actual types and checks the result against the declared type, so every kernel
//! may rely on the op's invariants (ranks, extents, axes in range). [`run`] evaluates a graph.
//!
//! Numerics: f32 results; sums of products (conv, matmul, gemm, einsum, reductions, softmax,
//! pools, resize) accumulate in f64 and round once, and transcendental functions are evaluated
//! in f64, so results are as close to exact as f32 allows. Integer arithmetic is checked:
//! overflow and division by zero are errors, never silent wrapping.

pub mod error;

mod batch_norm;
mod binary;
mod broadcast;
mod cast;
mod concat;
mod conv;
mod data;
mod dyn_conv;
mod einsum;
mod expand;
mod gather;
mod gemm;
mod matmul;
mod pad;
mod pool;
mod predict;
mod reduce;
mod reshape;
mod resize;
mod run;
mod slice;
mod softmax;
mod transpose;
mod unary;

pub use error::{EvalError, InterpError};
pub use run::run;

use dync_ir::{Op, Tensor, TensorType};

/// Evaluates `op` on `inputs`, producing a tensor of the declared type `out`.
///
/// Rejects operands that violate the op's rules or whose result type differs from `out`.
/// `const` returns its value (a copy); `input` is an error: graph inputs are bound by [`run`].
/// A result with no elements is returned without evaluating the op (so, e.g., a gather of
/// nothing checks no index); kernels may therefore assume a non-empty result, whose every
/// sub-shape product fits in `usize`.
pub fn eval(op: &Op, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, EvalError> {
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let type_refs: Vec<&TensorType> = types.iter().collect();
    let inferred = op.infer(&type_refs)?;
    if &inferred != out {
        return Err(EvalError::TypeMismatch {
            inferred,
            declared: out.clone(),
        });
    }
    let computed = !matches!(op, Op::Input(_) | Op::Const(_));
    if computed && out.numel()? == 0 {
        return Ok(Tensor::zeros(out)?);
    }
    match op {
        Op::Input(_) => Err(EvalError::GraphInput),
        Op::Const(c) => c.value.as_deref().cloned().ok_or(EvalError::MissingData),
        Op::Conv(o) => conv::conv(o, inputs, out),
        Op::DynConv(o) => dyn_conv::dyn_conv(o, inputs, out),
        Op::Predict(o) => predict::predict(o, inputs, out),
        Op::BatchNorm(o) => batch_norm::batch_norm(o, inputs, out),
        Op::Unary(o) => unary::unary(o, inputs, out),
        Op::Binary(o) => binary::binary(o, inputs, out),
        Op::MatMul(o) => matmul::matmul(o, inputs, out),
        Op::Gemm(o) => gemm::gemm(o, inputs, out),
        Op::Einsum(o) => einsum::einsum(o, inputs, out),
        Op::Softmax(o) => softmax::softmax(o, inputs, out),
        Op::AvgPool(o) => pool::avg_pool(o, inputs, out),
        Op::MaxPool(o) => pool::max_pool(o, inputs, out),
        Op::Reduce(o) => reduce::reduce(o, inputs, out),
        Op::Reshape(o) => reshape::reshape(o, inputs, out),
        Op::Transpose(o) => transpose::transpose(o, inputs, out),
        Op::Concat(o) => concat::concat(o, inputs, out),
        Op::Slice(o) => slice::slice(o, inputs, out),
        Op::Gather(o) => gather::gather(o, inputs, out),
        Op::Pad(o) => pad::pad(o, inputs, out),
        Op::Resize(o) => resize::resize(o, inputs, out),
        Op::Cast(o) => cast::cast(o, inputs, out),
        Op::Expand(o) => expand::expand(o, inputs, out),
    }
}

/// Helpers shared by the kernels' unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// An f32 tensor.
    pub fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_f32(shape, v.to_vec()).expect("test tensor")
    }

    /// An i64 tensor.
    pub fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_i64(shape, v.to_vec()).expect("test tensor")
    }

    /// `0, 1, 2, ...` as an f32 tensor of `shape`.
    pub fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        f32t(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
    }

    /// Evaluates `op` with its inferred result type.
    pub fn try_eval(op: Op, inputs: &[&Tensor]) -> Result<Tensor, EvalError> {
        let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let refs: Vec<&TensorType> = types.iter().collect();
        let out = op.infer(&refs)?;
        eval(&op, inputs, &out)
    }

    /// Evaluates `op`, panicking on error (tests only).
    pub fn run_op(op: Op, inputs: &[&Tensor]) -> Tensor {
        try_eval(op, inputs).expect("eval")
    }

    /// The f32 elements of `t` (tests only).
    pub fn f32s(t: &Tensor) -> Vec<f32> {
        t.as_f32().expect("f32 tensor").to_vec()
    }

    /// Asserts elementwise closeness: |a - b| <= tol·(1 + |b|); NaNs must match.
    pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * (1.0 + b.abs());
            assert!(
                ok,
                "element {i}: got {a}, want {b}\n got: {got:?}\nwant: {want:?}"
            );
        }
    }
}
