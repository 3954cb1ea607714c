//! `gather`: picks entries of `data` along `axis` by integer indices, ONNX `Gather`
//! (Operators.md, Gather-13): y[a.., i.., b..] = data[a.., indices[i..], b..]. Negative indices
//! count from the end; an index outside [−extent, extent) is an error. Any data dtype; indices
//! i64 or i32.

use crate::data::{elems, for_dtype, numel, tensor, Elem};
use crate::error::EvalError;
use dync_ir::ops::Gather;
use dync_ir::{Tensor, TensorType};

pub(crate) fn gather(
    op: &Gather,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    for_dtype!(out.dtype, T => typed::<T>(op, inputs[0], inputs[1], out))
}

fn typed<T: Elem>(
    op: &Gather,
    x: &Tensor,
    idx: &Tensor,
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let xv = elems::<T>(x, "gather")?;
    let shape = x.shape();
    let extent = shape[op.axis];
    let indices = idx.to_i64_vec().ok_or(EvalError::UnsupportedDtype {
        op: "gather indices",
        dtype: idx.dtype(),
    })?;
    let rows = indices
        .iter()
        .map(|&i| {
            let out_of_range = || EvalError::IndexOutOfRange {
                index: i,
                axis: op.axis,
                extent,
            };
            let e = i64::try_from(extent).map_err(|_| out_of_range())?;
            let j = if i < 0 { i + e } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < extent)
                .ok_or_else(out_of_range)
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let outer = numel(&shape[..op.axis])?;
    let inner = numel(&shape[op.axis + 1..])?;
    let n = numel(&out.shape)?;
    let mut y = Vec::new();
    y.try_reserve_exact(n).map_err(|_| EvalError::Alloc(n))?;
    for o in 0..outer {
        for &j in &rows {
            y.extend_from_slice(&xv[(o * extent + j) * inner..][..inner]);
        }
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::error::EvalError;
    use crate::testutil::*;
    use dync_ir::ops::Gather;
    use dync_ir::{Op, Tensor, TensorData};

    fn ga(axis: usize, x: &Tensor, idx: &Tensor) -> Result<Tensor, EvalError> {
        try_eval(Op::Gather(Gather { axis }), &[x, idx])
    }

    #[test]
    fn onnx_examples() {
        // Operators.md, Gather example 1 (axis 0) and example 2 (axis 1).
        let x = f32t(&[3, 2], &[1., 1.2, 2.3, 3.4, 4.5, 5.7]);
        let y = ga(0, &x, &i64t(&[2, 2], &[0, 1, 1, 2])).unwrap();
        assert_eq!(y.shape(), &[2, 2, 2]);
        assert_eq!(f32s(&y), [1., 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7]);
        let x = f32t(&[3, 3], &[1., 1.2, 1.9, 2.3, 3.4, 3.9, 4.5, 5.7, 5.9]);
        let y = ga(1, &x, &i64t(&[1, 2], &[0, 2])).unwrap();
        assert_eq!(y.shape(), &[3, 1, 2]);
        assert_eq!(f32s(&y), [1., 1.9, 2.3, 3.9, 4.5, 5.9]);
    }

    #[test]
    fn negative_and_scalar_indices() {
        let x = iota(&[10]);
        let y = ga(0, &x, &i64t(&[3], &[0, -9, -10])).unwrap();
        assert_eq!(f32s(&y), [0., 1., 0.]);
        let idx32 = Tensor::new([], TensorData::I32(vec![-1])).unwrap();
        let y = ga(1, &iota(&[2, 3]), &idx32).unwrap();
        assert_eq!(y.shape(), &[2]);
        assert_eq!(f32s(&y), [2., 5.]);
    }

    #[test]
    fn out_of_range_is_an_error() {
        let x = iota(&[10]);
        let err = EvalError::IndexOutOfRange {
            index: 10,
            axis: 0,
            extent: 10,
        };
        assert_eq!(ga(0, &x, &i64t(&[1], &[10])), Err(err));
        assert!(ga(0, &x, &i64t(&[1], &[-11])).is_err());
        // Gathering nothing checks nothing (the result is empty).
        assert_eq!(
            ga(1, &f32t(&[0, 2], &[]), &i64t(&[1], &[5]))
                .unwrap()
                .shape(),
            &[0, 1]
        );
    }
}
