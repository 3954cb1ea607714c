//! `transpose`: permutes dims, ONNX `Transpose` (Operators.md, Transpose-21): output dim i is
//! input dim `perm[i]`, i.e. y[i_0, …, i_{r−1}] = x[j] with j[perm[i]] = i_i. Any dtype.
//! Evaluated as a strided view of the input: output dim i steps by the input's stride of
//! dim perm[i].

use crate::broadcast::{offsets, row_major_strides};
use crate::data::{collect, elems, for_dtype, numel, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::Transpose;
use dync_ir::{Tensor, TensorType};

pub(crate) fn transpose(
    op: &Transpose,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    for_dtype!(inputs[0].dtype(), T => typed::<T>(op, inputs[0], out))
}

fn typed<T: Elem>(op: &Transpose, x: &Tensor, out: &TensorType) -> Result<Tensor, EvalError> {
    let xv = elems::<T>(x, "transpose")?;
    let own = row_major_strides(x.shape());
    let strides = op.perm.iter().map(|&p| own[p]).collect();
    let n = numel(&out.shape)?;
    let y = collect(n, offsets(&out.shape, strides, 0).map(|o| Ok(xv[o])))?;
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::Transpose;
    use dync_ir::{Op, Tensor, TensorData};

    fn tr(perm: &[usize], x: &Tensor) -> Tensor {
        run_op(
            Op::Transpose(Transpose {
                perm: perm.to_vec(),
            }),
            &[x],
        )
    }

    #[test]
    fn matrix_transpose() {
        let y = tr(&[1, 0], &iota(&[2, 3]));
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(f32s(&y), [0., 3., 1., 4., 2., 5.]);
    }

    #[test]
    fn rank3_permutation() {
        // x[a,b,c] = 100a + 10b + c; y = x.transpose(2, 0, 1), y[c,a,b] = x[a,b,c].
        let v: Vec<i64> = (0..2)
            .flat_map(|a| (0..3).flat_map(move |b| (0..2).map(move |c| 100 * a + 10 * b + c)))
            .collect();
        let x = i64t(&[2, 3, 2], &v);
        let y = tr(&[2, 0, 1], &x);
        assert_eq!(y.shape(), &[2, 2, 3]);
        assert_eq!(
            y.as_i64().unwrap(),
            [0, 10, 20, 100, 110, 120, 1, 11, 21, 101, 111, 121]
        );
    }

    #[test]
    fn bool_and_identity() {
        let x = Tensor::new([2, 1], TensorData::Bool(vec![true, false])).unwrap();
        let y = tr(&[1, 0], &x);
        assert_eq!(y.data(), &TensorData::Bool(vec![true, false]));
        assert_eq!(y.shape(), &[1, 2]);
    }
}
