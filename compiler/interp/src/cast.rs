//! `cast`: converts elements to another dtype, ONNX `Cast` (Operators.md, Cast-21, for f32,
//! i64, i32 and bool). f32 → integer truncates toward zero and saturates (NaN → 0), as Rust's
//! `as` does; integer → integer wraps (two's complement, as numpy's `astype` and
//! onnxruntime's `static_cast` do); integer → f32 rounds to nearest; anything → bool is
//! `!= 0` (NaN → true); bool → number is 0 or 1. The per-type conversions live on `Elem`
//! (`data.rs`), which `pad` shares for its constant.

use crate::data::{collect, elems, for_dtype, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::Cast;
use dync_ir::{Tensor, TensorType};

/// The source side of a conversion: picks the `Elem::from_*` of the destination type.
trait CastTo: Elem {
    fn cast<U: Elem>(self) -> U;
}

impl CastTo for f32 {
    fn cast<U: Elem>(self) -> U {
        U::from_f32(self)
    }
}
impl CastTo for i64 {
    fn cast<U: Elem>(self) -> U {
        U::from_i64(self)
    }
}
impl CastTo for i32 {
    fn cast<U: Elem>(self) -> U {
        U::from_i64(i64::from(self))
    }
}
impl CastTo for bool {
    fn cast<U: Elem>(self) -> U {
        U::from_bool(self)
    }
}

pub(crate) fn cast(op: &Cast, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, EvalError> {
    let x = inputs[0];
    for_dtype!(x.dtype(), S => for_dtype!(op.to, D => convert::<S, D>(x, out)))
}

fn convert<S: CastTo, D: Elem>(x: &Tensor, out: &TensorType) -> Result<Tensor, EvalError> {
    let xv = elems::<S>(x, "cast")?;
    let y = collect(xv.len(), xv.iter().map(|&v| Ok(v.cast::<D>())))?;
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::Cast;
    use dync_ir::{DType, Op, Tensor, TensorData};

    fn cast(to: DType, x: &Tensor) -> TensorData {
        run_op(Op::Cast(Cast { to }), &[x]).into_data()
    }

    #[test]
    fn float_to_int_truncates_and_saturates() {
        let x = f32t(&[6], &[2.9, -2.9, f32::NAN, 1e20, -1e20, f32::INFINITY]);
        let y = cast(DType::I64, &x);
        assert_eq!(
            y,
            TensorData::I64(vec![2, -2, 0, i64::MAX, i64::MIN, i64::MAX])
        );
        let y = cast(DType::I32, &x);
        assert_eq!(
            y,
            TensorData::I32(vec![2, -2, 0, i32::MAX, i32::MIN, i32::MAX])
        );
    }

    #[test]
    fn int_conversions() {
        let x = i64t(&[3], &[1 << 40, -1, 16_777_217]);
        assert_eq!(
            cast(DType::I32, &x),
            TensorData::I32(vec![0, -1, 16_777_217])
        );
        // 2^24 + 1 is not an f32: round to nearest even.
        assert_eq!(
            cast(DType::F32, &x),
            TensorData::F32(vec![1_099_511_627_776., -1., 16_777_216.])
        );
        assert_eq!(cast(DType::I64, &x), x.data().clone());
    }

    #[test]
    fn bool_conversions() {
        let x = f32t(&[4], &[0., -0., 0.5, f32::NAN]);
        assert_eq!(
            cast(DType::Bool, &x),
            TensorData::Bool(vec![false, false, true, true])
        );
        let b = Tensor::new([2], TensorData::Bool(vec![true, false])).unwrap();
        assert_eq!(cast(DType::F32, &b), TensorData::F32(vec![1., 0.]));
        assert_eq!(cast(DType::I64, &b), TensorData::I64(vec![1, 0]));
        assert_eq!(cast(DType::I32, &b), TensorData::I32(vec![1, 0]));
        assert_eq!(
            cast(DType::Bool, &i64t(&[2], &[0, -3])),
            TensorData::Bool(vec![false, true])
        );
    }
}
