//! `expand`: broadcasts the input to `shape` (numpy rules, aligned at the trailing dim), ONNX
//! `Expand` (Operators.md, Expand-13; the bidirectional result shape is resolved at import).
//! Any dtype. Evaluated as the broadcast strided view of the input.

use crate::broadcast::{broadcast_strides, offsets};
use crate::data::{collect, elems, for_dtype, numel, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::Expand;
use dync_ir::{Tensor, TensorType};

pub(crate) fn expand(
    _: &Expand,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    for_dtype!(inputs[0].dtype(), T => typed::<T>(inputs[0], out))
}

fn typed<T: Elem>(x: &Tensor, out: &TensorType) -> Result<Tensor, EvalError> {
    let xv = elems::<T>(x, "expand")?;
    let strides = broadcast_strides(x.shape(), &out.shape);
    let y = collect(
        numel(&out.shape)?,
        offsets(&out.shape, strides, 0).map(|o| Ok(xv[o])),
    )?;
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::Expand;
    use dync_ir::Op;

    #[test]
    fn onnx_examples() {
        // Operators.md, Expand: [3,1] to [2,1,6] and [3,1] to [3,4].
        let x = f32t(&[3, 1], &[1., 2., 3.]);
        let y = run_op(Op::Expand(Expand { shape: vec![3, 4] }), &[&x]);
        assert_eq!(f32s(&y), [1., 1., 1., 1., 2., 2., 2., 2., 3., 3., 3., 3.]);
        let y = run_op(
            Op::Expand(Expand {
                shape: vec![2, 3, 2],
            }),
            &[&x],
        );
        assert_eq!(f32s(&y), [1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]);
    }

    #[test]
    fn scalar_and_rejected_shapes() {
        let y = run_op(
            Op::Expand(Expand { shape: vec![2, 2] }),
            &[&i64t(&[], &[5])],
        );
        assert_eq!(y.as_i64().unwrap(), [5; 4]);
        assert!(try_eval(Op::Expand(Expand { shape: vec![2] }), &[&iota(&[3])]).is_err());
    }
}
