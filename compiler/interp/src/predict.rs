//! `predict`: the fused coefficient predictor, evaluated as the chain of ops it stands for —
//! `reduce` mean over H, W, then per layer `gemm` (+ relu or x·sigmoid(x) between layers), the
//! multiply by `scale` (skipped when 1), and `unary` sigmoid or `softmax` over runs — each step
//! rounded to f32 as the unfused graph rounds it, so the fused op agrees with the graph it
//! replaced up to the scale's rounding.

use crate::error::EvalError;
use crate::eval;
use dync_ir::ops::{
    Binary, BinaryKind, Gemm, Hidden, Predict, PredictAct, Reduce, ReduceKind, Softmax, Unary,
    UnaryKind,
};
use dync_ir::{Op, Tensor, TensorType};

/// Evaluates `op` on `inputs` with its inferred result type.
fn step(op: Op, inputs: &[&Tensor]) -> Result<Tensor, EvalError> {
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let refs: Vec<&TensorType> = types.iter().collect();
    let out = op.infer(&refs)?;
    eval(&op, inputs, &out)
}

fn unary(kind: UnaryKind, x: &Tensor) -> Result<Tensor, EvalError> {
    step(Op::Unary(Unary { kind }), &[x])
}

pub(crate) fn predict(
    op: &Predict,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let mean = Reduce {
        kind: ReduceKind::Mean,
        axes: vec![2, 3],
        keepdims: false,
    };
    let mut v = step(Op::Reduce(mean), &inputs[..1])?;
    let layers = Predict::layers(inputs.len());
    let mul = Op::Binary(Binary {
        kind: BinaryKind::Mul,
    });
    let fc = Op::Gemm(Gemm {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: true,
    });
    for l in 0..layers {
        v = step(fc.clone(), &[&v, inputs[1 + 2 * l], inputs[2 + 2 * l]])?;
        if l + 1 < layers {
            v = match op.hidden {
                Hidden::None => v,
                Hidden::Relu => unary(UnaryKind::Relu, &v)?,
                Hidden::Silu => {
                    let s = unary(UnaryKind::Sigmoid, &v)?;
                    step(mul.clone(), &[&v, &s])?
                }
            };
        }
    }
    if op.scale != 1.0 {
        v = step(mul, &[&v, &Tensor::scalar_f32(op.scale)])?;
    }
    let y = match op.act {
        PredictAct::Sigmoid => unary(UnaryKind::Sigmoid, &v)?,
        PredictAct::Softmax { run } => {
            let rows = out.shape[1] / run;
            let runs = v.reshaped([out.shape[0], rows, run])?;
            step(Op::Softmax(Softmax { axis: 2 }), &[&runs])?
        }
    };
    Ok(y.reshaped(out.shape.clone())?)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::{Hidden, Predict, PredictAct};
    use dync_ir::Op;

    /// Two samples, 2 channels of 2×1, a 2→3 relu layer and a 3→2 layer, by hand.
    #[test]
    fn two_layers_by_hand() {
        let x = f32t(&[2, 2, 2, 1], &[1.0, 3.0, -2.0, 0.0, 0.0, 0.0, 4.0, 4.0]);
        // Means: sample 0 [2, -1], sample 1 [0, 4].
        let w1 = f32t(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let b1 = f32t(&[3], &[0.0, 0.0, -1.0]);
        // Hidden: s0 relu([2, -1, 0]) = [2, 0, 0]; s1 relu([0, 4, 3]) = [0, 4, 3].
        let w2 = f32t(&[2, 3], &[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
        let b2 = f32t(&[2], &[0.5, 0.0]);
        // Logits: s0 [2.5, 0]; s1 [3.5, 7].
        let op = |act| {
            Op::Predict(Predict {
                hidden: Hidden::Relu,
                act,
                scale: 2.0,
            })
        };
        let y = run_op(op(PredictAct::Sigmoid), &[&x, &w1, &b1, &w2, &b2]);
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        let want = [sig(5.0), sig(0.0), sig(7.0), sig(14.0)];
        assert_close(&f32s(&y), &want, 1e-6);
        let y = run_op(
            op(PredictAct::Softmax { run: 2 }),
            &[&x, &w1, &b1, &w2, &b2],
        );
        let sm = |a: f32, b: f32| [1.0 / (1.0 + (b - a).exp()), 1.0 / (1.0 + (a - b).exp())];
        let want: Vec<f32> = [sm(5.0, 0.0), sm(7.0, 14.0)].concat();
        assert_close(&f32s(&y), &want, 1e-6);
    }

    #[test]
    fn rejects_unchained_widths() {
        let x = iota(&[1, 2, 1, 1]);
        let w = iota(&[2, 3]);
        let b = iota(&[2]);
        let op = Op::Predict(Predict {
            hidden: Hidden::None,
            act: PredictAct::Sigmoid,
            scale: 1.0,
        });
        assert!(try_eval(op, &[&x, &w, &b]).is_err());
    }
}
