//! `reshape`: the same row-major data under a new shape of equal element count, ONNX
//! `Reshape` (Operators.md, Reshape-21) and everything imported as it (Flatten, Squeeze,
//! Unsqueeze). Any dtype.

use crate::error::EvalError;
use dync_ir::ops::Reshape;
use dync_ir::{Tensor, TensorType};

pub(crate) fn reshape(
    _: &Reshape,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    Ok(Tensor::new(out.shape.clone(), inputs[0].data().clone())?)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::Reshape;
    use dync_ir::Op;

    #[test]
    fn keeps_row_major_order() {
        let y = run_op(
            Op::Reshape(Reshape { shape: vec![3, 2] }),
            &[&iota(&[2, 3])],
        );
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(f32s(&y), [0., 1., 2., 3., 4., 5.]);
        let y = run_op(
            Op::Reshape(Reshape { shape: vec![] }),
            &[&i64t(&[1, 1], &[7])],
        );
        assert_eq!(y.as_i64().unwrap(), [7]);
    }

    #[test]
    fn element_count_must_match() {
        assert!(try_eval(Op::Reshape(Reshape { shape: vec![4] }), &[&iota(&[2, 3])]).is_err());
    }
}
