//! `reduce`: mean/sum/max/min/prod over a list of axes, ONNX `ReduceMean`, `ReduceSum`,
//! `ReduceMax`, `ReduceMin`, `ReduceProd` (Operators.md, opset 18 forms with the axes resolved
//! at import). An empty axis list reduces nothing (identity); `keepdims` only changes the
//! result's shape, not its data order.
//!
//! f32 accumulates in f64 (Max/Min propagate NaN as numpy's `maximum.reduce` does); i64/i32
//! accumulate in their own type with overflow checks. Reducing an empty set gives the ONNX
//! reference's values: sum 0, prod 1, mean NaN (0/0), max the lowest value (−inf), min the
//! highest (+inf).

use crate::broadcast::Walk;
use crate::data::{alloc, elems, numel, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::{Reduce, ReduceKind};
use dync_ir::{DType, Tensor, TensorType};

/// Element types with reductions: the accumulator, its start value, one step, the result.
trait Reducible: Elem {
    type Acc: Copy;
    fn init(kind: ReduceKind) -> Self::Acc;
    fn step(kind: ReduceKind, acc: Self::Acc, x: Self) -> Result<Self::Acc, EvalError>;
    fn finish(kind: ReduceKind, acc: Self::Acc, count: usize) -> Self;
}

impl Reducible for f32 {
    type Acc = f64;
    fn init(kind: ReduceKind) -> f64 {
        match kind {
            ReduceKind::Mean | ReduceKind::Sum => 0.0,
            ReduceKind::Prod => 1.0,
            ReduceKind::Max => f64::NEG_INFINITY,
            ReduceKind::Min => f64::INFINITY,
        }
    }
    fn step(kind: ReduceKind, acc: f64, x: f32) -> Result<f64, EvalError> {
        let x = f64::from(x);
        Ok(match kind {
            ReduceKind::Mean | ReduceKind::Sum => acc + x,
            ReduceKind::Prod => acc * x,
            ReduceKind::Max | ReduceKind::Min if acc.is_nan() || x.is_nan() => f64::NAN,
            ReduceKind::Max => acc.max(x),
            ReduceKind::Min => acc.min(x),
        })
    }
    fn finish(kind: ReduceKind, acc: f64, count: usize) -> f32 {
        match kind {
            ReduceKind::Mean => (acc / count as f64) as f32,
            ReduceKind::Sum | ReduceKind::Prod | ReduceKind::Max | ReduceKind::Min => acc as f32,
        }
    }
}

macro_rules! impl_int_reduce {
    ($t:ty) => {
        /// Integer Mean is rejected before evaluation (`reduce`), so `finish` only passes through.
        impl Reducible for $t {
            type Acc = $t;
            fn init(kind: ReduceKind) -> $t {
                match kind {
                    ReduceKind::Mean | ReduceKind::Sum => 0,
                    ReduceKind::Prod => 1,
                    ReduceKind::Max => <$t>::MIN,
                    ReduceKind::Min => <$t>::MAX,
                }
            }
            fn step(kind: ReduceKind, acc: $t, x: $t) -> Result<$t, EvalError> {
                let overflow = || EvalError::Overflow(kind.name());
                match kind {
                    ReduceKind::Mean | ReduceKind::Sum => acc.checked_add(x).ok_or_else(overflow),
                    ReduceKind::Prod => acc.checked_mul(x).ok_or_else(overflow),
                    ReduceKind::Max => Ok(acc.max(x)),
                    ReduceKind::Min => Ok(acc.min(x)),
                }
            }
            fn finish(_: ReduceKind, acc: $t, _: usize) -> $t {
                acc
            }
        }
    };
}

impl_int_reduce!(i64);
impl_int_reduce!(i32);

pub(crate) fn reduce(
    op: &Reduce,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let x = inputs[0];
    match (x.dtype(), op.kind) {
        (DType::F32, _) => typed::<f32>(op, x, out),
        (dtype, ReduceKind::Mean) | (dtype @ DType::Bool, _) => Err(EvalError::UnsupportedDtype {
            op: "reduce",
            dtype,
        }),
        (DType::I64, _) => typed::<i64>(op, x, out),
        (DType::I32, _) => typed::<i32>(op, x, out),
    }
}

fn typed<T: Reducible>(op: &Reduce, x: &Tensor, out: &TensorType) -> Result<Tensor, EvalError> {
    let xv = elems::<T>(x, "reduce")?;
    let shape = x.shape();
    // Output strides seen from the input's index space: the kept dims' row-major strides in
    // the keepdims-shaped result, 0 along reduced dims.
    let kept: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(d, &n)| if op.axes.contains(&d) { 1 } else { n })
        .collect();
    let mut strides = crate::broadcast::row_major_strides(&kept);
    for &a in &op.axes {
        strides[a] = 0;
    }
    let count = numel(&op.axes.iter().map(|&a| shape[a]).collect::<Vec<_>>())?;
    let mut acc = alloc(numel(&kept)?, T::init(op.kind))?;
    let mut walk = Walk::new(shape, vec![strides]);
    for &v in xv {
        let a = &mut acc[walk.offset(0)];
        *a = T::step(op.kind, *a, v)?;
        walk.advance();
    }
    let y = acc
        .into_iter()
        .map(|a| T::finish(op.kind, a, count))
        .collect();
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::error::EvalError;
    use crate::testutil::*;
    use dync_ir::ops::{Reduce, ReduceKind};
    use dync_ir::{Op, Tensor};

    fn red(
        kind: ReduceKind,
        axes: &[usize],
        keepdims: bool,
        x: &Tensor,
    ) -> Result<Tensor, EvalError> {
        try_eval(
            Op::Reduce(Reduce {
                kind,
                axes: axes.to_vec(),
                keepdims,
            }),
            &[x],
        )
    }

    /// The ONNX Reduce* examples' data, shape [3, 2, 2].
    fn data() -> Tensor {
        f32t(
            &[3, 2, 2],
            &[5., 1., 20., 2., 30., 1., 40., 2., 55., 1., 60., 2.],
        )
    }

    #[test]
    fn onnx_examples_along_axis_1() {
        let y = red(ReduceKind::Mean, &[1], true, &data()).unwrap();
        assert_eq!(y.shape(), &[3, 1, 2]);
        assert_eq!(f32s(&y), [12.5, 1.5, 35., 1.5, 57.5, 1.5]);
        let y = red(ReduceKind::Sum, &[1], false, &data()).unwrap();
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(f32s(&y), [25., 3., 70., 3., 115., 3.]);
        let y = red(ReduceKind::Prod, &[1], false, &data()).unwrap();
        assert_eq!(f32s(&y), [100., 2., 1200., 2., 3300., 2.]);
        let y = red(ReduceKind::Max, &[1], false, &data()).unwrap();
        assert_eq!(f32s(&y), [20., 2., 40., 2., 60., 2.]);
        let y = red(ReduceKind::Min, &[1], false, &data()).unwrap();
        assert_eq!(f32s(&y), [5., 1., 30., 1., 55., 1.]);
    }

    #[test]
    fn several_and_all_axes() {
        let y = red(ReduceKind::Mean, &[0, 1, 2], false, &data()).unwrap();
        assert_eq!(y.shape(), &[] as &[usize]);
        assert_eq!(f32s(&y), [219. / 12.]);
        let y = red(ReduceKind::Sum, &[0, 2], true, &data()).unwrap();
        assert_eq!(y.shape(), &[1, 2, 1]);
        assert_eq!(
            f32s(&y),
            [
                5. + 1. + 30. + 1. + 55. + 1.,
                20. + 2. + 40. + 2. + 60. + 2.
            ]
        );
    }

    #[test]
    fn empty_axes_is_identity() {
        let y = red(ReduceKind::Sum, &[], true, &data()).unwrap();
        assert_eq!(y, data());
    }

    #[test]
    fn max_propagates_nan() {
        let x = f32t(&[2, 2], &[1., f32::NAN, 3., 4.]);
        let y = red(ReduceKind::Max, &[1], false, &x).unwrap();
        assert_close(&f32s(&y), &[f32::NAN, 4.], 0.);
    }

    #[test]
    fn empty_sets() {
        let x = f32t(&[2, 0], &[]);
        assert_eq!(
            f32s(&red(ReduceKind::Sum, &[1], false, &x).unwrap()),
            [0., 0.]
        );
        assert_eq!(
            f32s(&red(ReduceKind::Prod, &[1], false, &x).unwrap()),
            [1., 1.]
        );
        assert!(f32s(&red(ReduceKind::Mean, &[1], false, &x).unwrap())
            .iter()
            .all(|v| v.is_nan()));
        let y = red(ReduceKind::Max, &[1], true, &x).unwrap();
        assert_eq!(f32s(&y), [f32::NEG_INFINITY; 2]);
    }

    #[test]
    fn integers_are_checked() {
        let x = i64t(&[3], &[i64::MAX, 1, -5]);
        assert_eq!(
            red(ReduceKind::Sum, &[0], false, &x),
            Err(EvalError::Overflow("sum"))
        );
        let y = red(ReduceKind::Max, &[0], false, &x).unwrap();
        assert_eq!(y.as_i64().unwrap(), [i64::MAX]);
        let y = red(ReduceKind::Prod, &[0], false, &i64t(&[3], &[2, -3, 4])).unwrap();
        assert_eq!(y.as_i64().unwrap(), [-24]);
        assert!(matches!(
            red(ReduceKind::Mean, &[0], false, &x),
            Err(EvalError::Shape(_))
        ));
    }
}
