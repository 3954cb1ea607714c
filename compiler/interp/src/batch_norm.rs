//! `batch_norm`: inference-mode batch normalization over dim 1, ONNX `BatchNormalization`
//! (Operators.md, BatchNormalization-15, training_mode = 0):
//! y = (x − mean[c]) / sqrt(var[c] + epsilon) · scale[c] + bias[c], evaluated in f64 in that
//! order and rounded once.

use crate::data::{elems, numel, tensor};
use crate::error::EvalError;
use dync_ir::ops::BatchNorm;
use dync_ir::{Tensor, TensorType};

pub(crate) fn batch_norm(
    op: &BatchNorm,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let x = elems::<f32>(inputs[0], "batch_norm")?;
    let param = |i: usize| elems::<f32>(inputs[i], "batch_norm");
    let (scale, bias, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
    let shape = inputs[0].shape();
    let channels = shape[1];
    // Elements per (image, channel) plane.
    let plane = numel(&shape[2..])?;
    let eps = f64::from(op.epsilon);
    let mut y = Vec::with_capacity(x.len());
    for (i, chunk) in x.chunks_exact(plane.max(1)).enumerate() {
        let c = i % channels;
        let std = (f64::from(var[c]) + eps).sqrt();
        let (m, s, b) = (f64::from(mean[c]), f64::from(scale[c]), f64::from(bias[c]));
        y.extend(
            chunk
                .iter()
                .map(|&v| ((f64::from(v) - m) / std * s + b) as f32),
        );
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::BatchNorm;
    use dync_ir::Op;

    #[test]
    fn normalizes_each_channel() {
        let x = f32t(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
        let scale = f32t(&[2], &[1., 2.]);
        let bias = f32t(&[2], &[0., 1.]);
        let mean = f32t(&[2], &[1., 3.]);
        let var = f32t(&[2], &[4., 1.]);
        let y = run_op(
            Op::BatchNorm(BatchNorm { epsilon: 0.0 }),
            &[&x, &scale, &bias, &mean, &var],
        );
        assert_eq!(f32s(&y), [0., 0.5, 1., 3.]);
    }

    #[test]
    fn epsilon_is_added_to_the_variance_and_batches_repeat_channels() {
        let x = f32t(&[2, 1, 1], &[3., -3.]);
        let one = f32t(&[1], &[1.]);
        let zero = f32t(&[1], &[0.]);
        let var = f32t(&[1], &[3.]);
        let y = run_op(
            Op::BatchNorm(BatchNorm { epsilon: 1.0 }),
            &[&x, &one, &zero, &zero, &var],
        );
        assert_eq!(f32s(&y), [1.5, -1.5]);
    }
}
