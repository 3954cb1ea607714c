//! `binary`: elementwise Add, Sub, Mul, Div, Pow, Max, Min with numpy (multidirectional)
//! broadcasting, ONNX `Add`/`Sub`/`Mul`/`Div`/`Pow`/`Max`/`Min` (Operators.md, Add-14 etc.;
//! Max/Min restricted to two operands). Both operands have one dtype: f32, i64 or i32.
//!
//! f32 follows IEEE (division by zero gives ±inf or NaN); Pow is `powf`; Max/Min propagate NaN
//! like numpy's `maximum`/`minimum` and onnxruntime. Integers are checked: overflow (including
//! MIN / −1) and division by zero are errors; Div truncates toward zero; Pow with a negative
//! exponent is an error (as numpy raises).

use crate::broadcast::{broadcast_strides, Walk};
use crate::data::{collect, elems, numel, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::{Binary, BinaryKind};
use dync_ir::{DType, Tensor, TensorType};

/// Element types binary arithmetic is defined on.
trait Arith: Elem {
    fn apply(kind: BinaryKind, a: Self, b: Self) -> Result<Self, EvalError>;
}

impl Arith for f32 {
    fn apply(kind: BinaryKind, a: f32, b: f32) -> Result<f32, EvalError> {
        Ok(match kind {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
            BinaryKind::Pow => a.powf(b),
            BinaryKind::Max if a.is_nan() || b.is_nan() => f32::NAN,
            BinaryKind::Max => a.max(b),
            BinaryKind::Min if a.is_nan() || b.is_nan() => f32::NAN,
            BinaryKind::Min => a.min(b),
        })
    }
}

macro_rules! impl_int_arith {
    ($t:ty) => {
        impl Arith for $t {
            fn apply(kind: BinaryKind, a: $t, b: $t) -> Result<$t, EvalError> {
                let overflow = || EvalError::Overflow(kind.name());
                match kind {
                    BinaryKind::Add => a.checked_add(b).ok_or_else(overflow),
                    BinaryKind::Sub => a.checked_sub(b).ok_or_else(overflow),
                    BinaryKind::Mul => a.checked_mul(b).ok_or_else(overflow),
                    BinaryKind::Div if b == 0 => Err(EvalError::DivisionByZero),
                    BinaryKind::Div => a.checked_div(b).ok_or_else(overflow),
                    BinaryKind::Pow if b < 0 => Err(EvalError::NegativeExponent(i64::from(b))),
                    BinaryKind::Pow => match u32::try_from(b) {
                        Ok(e) => a.checked_pow(e).ok_or_else(overflow),
                        // Exponents beyond u32 only fit for bases 0, 1 and -1.
                        Err(_) => match a {
                            0 | 1 => Ok(a),
                            -1 => Ok(if b % 2 == 0 { 1 } else { -1 }),
                            _ => Err(overflow()),
                        },
                    },
                    BinaryKind::Max => Ok(a.max(b)),
                    BinaryKind::Min => Ok(a.min(b)),
                }
            }
        }
    };
}

impl_int_arith!(i64);
impl_int_arith!(i32);

pub(crate) fn binary(
    op: &Binary,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    match inputs[0].dtype() {
        DType::F32 => typed::<f32>(op.kind, inputs[0], inputs[1], out),
        DType::I64 => typed::<i64>(op.kind, inputs[0], inputs[1], out),
        DType::I32 => typed::<i32>(op.kind, inputs[0], inputs[1], out),
        dtype @ DType::Bool => Err(EvalError::UnsupportedDtype {
            op: op.kind.name(),
            dtype,
        }),
    }
}

fn typed<T: Arith>(
    kind: BinaryKind,
    ta: &Tensor,
    tb: &Tensor,
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let (a, b) = (elems::<T>(ta, kind.name())?, elems::<T>(tb, kind.name())?);
    let n = numel(&out.shape)?;
    let y = if ta.shape() == tb.shape() {
        collect(n, a.iter().zip(b).map(|(&x, &y)| T::apply(kind, x, y)))?
    } else {
        let mut walk = Walk::new(
            &out.shape,
            vec![
                broadcast_strides(ta.shape(), &out.shape),
                broadcast_strides(tb.shape(), &out.shape),
            ],
        );
        collect(
            n,
            (0..n).map(|_| {
                let r = T::apply(kind, a[walk.offset(0)], b[walk.offset(1)]);
                walk.advance();
                r
            }),
        )?
    };
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::error::EvalError;
    use crate::testutil::*;
    use dync_ir::ops::{Binary, BinaryKind};
    use dync_ir::{Op, Tensor, TensorData};

    fn bin(kind: BinaryKind, a: &Tensor, b: &Tensor) -> Result<Tensor, EvalError> {
        try_eval(Op::Binary(Binary { kind }), &[a, b])
    }

    fn i32t(shape: &[usize], v: &[i32]) -> Tensor {
        Tensor::new(shape, TensorData::I32(v.to_vec())).unwrap()
    }

    #[test]
    fn broadcasting_shapes() {
        let a = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let row = f32t(&[3], &[10., 20., 30.]);
        let y = bin(BinaryKind::Add, &a, &row).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(f32s(&y), [11., 22., 33., 14., 25., 36.]);
        // Outer product from [2,1] x [1,3].
        let col = f32t(&[2, 1], &[1., 2.]);
        let y = bin(BinaryKind::Mul, &col, &f32t(&[1, 3], &[3., 4., 5.])).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(f32s(&y), [3., 4., 5., 6., 8., 10.]);
        // Scalar on the left.
        let y = bin(BinaryKind::Sub, &f32t(&[], &[1.]), &f32t(&[2], &[3., -4.])).unwrap();
        assert_eq!(f32s(&y), [-2., 5.]);
        // Per-channel scale [C,1,1] against [N,C,H,W].
        let x = iota(&[1, 2, 1, 2]);
        let y = bin(BinaryKind::Mul, &x, &f32t(&[2, 1, 1], &[10., 100.])).unwrap();
        assert_eq!(f32s(&y), [0., 10., 200., 300.]);
    }

    #[test]
    fn float_division_and_pow() {
        let y = bin(
            BinaryKind::Div,
            &f32t(&[3], &[1., -1., 0.]),
            &f32t(&[], &[0.]),
        )
        .unwrap();
        assert_close(&f32s(&y), &[f32::INFINITY, f32::NEG_INFINITY, f32::NAN], 0.);
        let y = bin(
            BinaryKind::Pow,
            &f32t(&[3], &[2., 9., -8.]),
            &f32t(&[3], &[0.5, 0.5, 1. / 3.]),
        )
        .unwrap();
        assert_close(&f32s(&y), &[std::f32::consts::SQRT_2, 3., f32::NAN], 1e-7);
    }

    #[test]
    fn max_min_propagate_nan() {
        let a = f32t(&[3], &[1., f32::NAN, 5.]);
        let b = f32t(&[3], &[2., 0., f32::NAN]);
        assert_close(
            &f32s(&bin(BinaryKind::Max, &a, &b).unwrap()),
            &[2., f32::NAN, f32::NAN],
            0.,
        );
        assert_close(
            &f32s(&bin(BinaryKind::Min, &a, &b).unwrap()),
            &[1., f32::NAN, f32::NAN],
            0.,
        );
    }

    #[test]
    fn integer_division_truncates_and_checks() {
        let a = i64t(&[4], &[7, -7, 7, -7]);
        let b = i64t(&[4], &[2, 2, -2, -2]);
        assert_eq!(
            bin(BinaryKind::Div, &a, &b).unwrap().as_i64().unwrap(),
            [3, -3, -3, 3]
        );
        let zero = i64t(&[], &[0]);
        assert_eq!(
            bin(BinaryKind::Div, &a, &zero),
            Err(EvalError::DivisionByZero)
        );
        let min = i64t(&[], &[i64::MIN]);
        assert_eq!(
            bin(BinaryKind::Div, &min, &i64t(&[], &[-1])),
            Err(EvalError::Overflow("div"))
        );
    }

    #[test]
    fn integer_overflow_is_an_error() {
        let max = i64t(&[], &[i64::MAX]);
        let one = i64t(&[], &[1]);
        assert_eq!(
            bin(BinaryKind::Add, &max, &one),
            Err(EvalError::Overflow("add"))
        );
        assert_eq!(
            bin(BinaryKind::Mul, &max, &i64t(&[], &[2])),
            Err(EvalError::Overflow("mul"))
        );
        let small = i32t(&[], &[i32::MIN]);
        assert_eq!(
            bin(BinaryKind::Sub, &small, &i32t(&[], &[1])),
            Err(EvalError::Overflow("sub"))
        );
        let y = bin(BinaryKind::Add, &i32t(&[2], &[1, 2]), &i32t(&[1], &[40])).unwrap();
        assert_eq!(y.data(), &TensorData::I32(vec![41, 42]));
    }

    #[test]
    fn integer_pow() {
        let base = i64t(&[4], &[3, -2, -1, 0]);
        let y = bin(
            BinaryKind::Pow,
            &base,
            &i64t(&[4], &[4, 3, 5_000_000_001, 7]),
        )
        .unwrap();
        assert_eq!(y.as_i64().unwrap(), [81, -8, -1, 0]);
        let neg = bin(BinaryKind::Pow, &base, &i64t(&[], &[-1]));
        assert_eq!(neg, Err(EvalError::NegativeExponent(-1)));
        let big = bin(BinaryKind::Pow, &i64t(&[], &[2]), &i64t(&[], &[64]));
        assert_eq!(big, Err(EvalError::Overflow("pow")));
        let y = bin(BinaryKind::Max, &base, &i64t(&[], &[0])).unwrap();
        assert_eq!(y.as_i64().unwrap(), [3, 0, 0, 0]);
    }

    #[test]
    fn bool_and_mixed_dtypes_are_rejected() {
        let b = Tensor::new([1], TensorData::Bool(vec![true])).unwrap();
        assert!(matches!(
            bin(BinaryKind::Add, &b, &b),
            Err(EvalError::Shape(_))
        ));
        assert!(matches!(
            bin(BinaryKind::Add, &f32t(&[1], &[1.]), &i64t(&[1], &[1])),
            Err(EvalError::Shape(_))
        ));
    }
}
