//! `unary`: elementwise f32 functions, the ONNX operators Relu, LeakyRelu, Sigmoid,
//! HardSigmoid, HardSwish, Clip, Tanh, Exp, Log, Sqrt, Neg, Abs, Reciprocal and Erf
//! (Operators.md, their latest versions). Each is evaluated in f64 and rounded once.
//!
//! Conventions: NaN propagates through every function (the clamping ones compare rather than
//! call `max`/`min`, which would drop a NaN); Sigmoid never overflows (exp of a non-positive
//! argument only); HardSwish is x·max(0, min(1, x/6 + 1/2)); Clip is min(max(x, min), max), so
//! max wins when min > max (as ONNX defines); Log(0) = −inf, Log/Sqrt of a
//! negative number = NaN, Reciprocal(0) = inf; Erf is `dync_ir::math::erf` (shared with the
//! functions generated code calls).

use crate::data::{elems, tensor};
use crate::error::EvalError;
use dync_ir::ops::{Unary, UnaryKind};
use dync_ir::{Tensor, TensorType};

pub(crate) fn unary(op: &Unary, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, EvalError> {
    let x = elems::<f32>(inputs[0], op.kind.name())?;
    let y = x
        .iter()
        .map(|&v| apply(op.kind, f64::from(v)) as f32)
        .collect();
    tensor(&out.shape, y)
}

/// min(max(v, lo), hi) as ONNX Clip defines it (so `hi` wins when lo > hi); NaN propagates.
fn clamp(v: f64, lo: f64, hi: f64) -> f64 {
    let t = if v < lo { lo } else { v };
    if t > hi {
        hi
    } else {
        t
    }
}

pub(crate) fn apply(kind: UnaryKind, x: f64) -> f64 {
    match kind {
        UnaryKind::Relu => clamp(x, 0.0, f64::INFINITY),
        UnaryKind::LeakyRelu { alpha } => {
            if x < 0.0 {
                f64::from(alpha) * x
            } else {
                x
            }
        }
        UnaryKind::Sigmoid => {
            if x >= 0.0 {
                1.0 / (1.0 + (-x).exp())
            } else {
                let e = x.exp();
                e / (1.0 + e)
            }
        }
        UnaryKind::HardSigmoid { alpha, beta } => {
            clamp(f64::from(alpha) * x + f64::from(beta), 0.0, 1.0)
        }
        UnaryKind::HardSwish => x * clamp(x / 6.0 + 0.5, 0.0, 1.0),
        UnaryKind::Clip { min, max } => clamp(x, f64::from(min), f64::from(max)),
        UnaryKind::Tanh => x.tanh(),
        UnaryKind::Exp => x.exp(),
        UnaryKind::Log => x.ln(),
        UnaryKind::Sqrt => x.sqrt(),
        UnaryKind::Neg => -x,
        UnaryKind::Abs => x.abs(),
        UnaryKind::Reciprocal => 1.0 / x,
        UnaryKind::Erf => dync_ir::math::erf(x),
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::{Unary, UnaryKind};
    use dync_ir::Op;

    fn un(kind: UnaryKind, v: &[f32]) -> Vec<f32> {
        f32s(&run_op(Op::Unary(Unary { kind }), &[&f32t(&[v.len()], v)]))
    }

    const NAN: f32 = f32::NAN;

    #[test]
    fn relu_and_leaky_relu() {
        assert_close(
            &un(UnaryKind::Relu, &[-1., 0., 2., NAN]),
            &[0., 0., 2., NAN],
            0.,
        );
        assert_close(
            &un(UnaryKind::LeakyRelu { alpha: 0.1 }, &[-2., 3.]),
            &[-0.2, 3.],
            0.,
        );
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        let y = un(
            UnaryKind::Sigmoid,
            &[0., 1., -1., 100., -100., -1000., 1000.],
        );
        assert_close(&y, &[0.5, 0.731_058_6, 0.268_941_43, 1., 0., 0., 1.], 1e-7);
        assert!(y.iter().all(|v| v.is_finite()));
        // sigmoid(-100) = 3.7e-44 is a subnormal f32, not 0.
        assert!(y[4] > 0.0 && y[4] < 4e-44);
    }

    #[test]
    fn hard_sigmoid_and_hard_swish() {
        let hs = UnaryKind::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        };
        assert_close(&un(hs, &[-3., 1., 3., NAN]), &[0., 0.7, 1., NAN], 1e-7);
        let y = un(UnaryKind::HardSwish, &[-4., -1., 0., 1., 3., 5.]);
        assert_close(&y, &[0., -1. / 3., 0., 2. / 3., 3., 5.], 1e-7);
    }

    #[test]
    fn clip_keeps_nan() {
        let k = UnaryKind::Clip { min: -1., max: 1. };
        assert_close(&un(k, &[-2., 0.5, 2., NAN]), &[-1., 0.5, 1., NAN], 0.);
        // min > max: every value becomes max.
        let crossed = UnaryKind::Clip { min: 2., max: 1. };
        assert_close(&un(crossed, &[0., 1.5, 3.]), &[1., 1., 1.], 0.);
        let open = UnaryKind::Clip {
            min: f32::NEG_INFINITY,
            max: 6.,
        };
        assert_close(&un(open, &[-1e30, 7.]), &[-1e30, 6.], 0.);
    }

    #[test]
    fn transcendental_functions() {
        assert_close(
            &un(UnaryKind::Tanh, &[0., 1., -20.]),
            &[0., 0.761_594_2, -1.],
            1e-7,
        );
        assert_close(
            &un(UnaryKind::Exp, &[0., 1., -1.]),
            &[1., std::f32::consts::E, 0.367_879_45],
            1e-7,
        );
        assert_close(
            &un(UnaryKind::Log, &[1., 0., -1.]),
            &[0., f32::NEG_INFINITY, NAN],
            0.,
        );
        assert_close(
            &un(UnaryKind::Sqrt, &[4., 2., -1.]),
            &[2., std::f32::consts::SQRT_2, NAN],
            1e-7,
        );
        assert_close(
            &un(UnaryKind::Reciprocal, &[4., 0.]),
            &[0.25, f32::INFINITY],
            0.,
        );
        assert_close(&un(UnaryKind::Neg, &[1., -2.]), &[-1., 2.], 0.);
        assert_close(&un(UnaryKind::Abs, &[1., -2.]), &[1., 2.], 0.);
    }

    #[test]
    fn erf_matches_tabulated_values() {
        let x = [0., 0.5, -0.5, 1., 2., 2.5, 3., 4., -7., 1e-20];
        #[rustfmt::skip]
        let want = [0., 0.520_499_9, -0.520_499_9, 0.842_700_8, 0.995_322_3, 0.999_593_1,
                    0.999_977_9, 0.999_999_98, -1., 1.128_379_2e-20];
        assert_close(&un(UnaryKind::Erf, &x), &want, 2e-7);
        assert!(un(UnaryKind::Erf, &[NAN])[0].is_nan());
    }
}
