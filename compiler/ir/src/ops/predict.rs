//! `predict`: the coefficient predictor of dynamic convolutions (DyNet's, CondConv's routing,
//! DY-CNN's attention) as one op, computed sample by sample:
//!
//!   v₀ = mean of x[n] over H, W                         (f32[C])
//!   vₗ = hidden(Wₗ · vₗ₋₁ + bₗ)    for the layers l < L   (`hidden`: none, relu or silu)
//!   y[n] = act(scale · (W_L · v_{L-1} + b_L))
//!
//! Operands: x f32[N,C,H,W], then per layer a weight f32[O, I] (I the previous width, C for
//! the first; the layout of ONNX Gemm's transposed B and of a 1×1 conv's weight, each output a
//! contiguous dot product) and a bias f32[O]. `act` is `sigmoid`, or `softmax` over each run of `run`
//! consecutive outputs (DyNet's per-output-channel coefficients [N, O, g] have runs of g; a
//! whole-row softmax has one run), applied after multiplying by `scale` (DY-CNN's 1/temperature).
//! Result f32[N, O_L]. Produced by the `fuse_predictor` pass, never by import. Rejects an even
//! operand count, widths that do not chain, and a `run` that does not divide O_L.

use super::{want_f32, want_rank, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;

/// The activation after every layer but the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hidden {
    None,
    Relu,
    /// x·sigmoid(x) (timm's squeeze-excitation).
    Silu,
}

/// The activation of the last layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictAct {
    Sigmoid,
    /// Softmax over each run of `run` consecutive outputs.
    Softmax {
        run: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Predict {
    pub hidden: Hidden,
    pub act: PredictAct,
    pub scale: f32,
}

impl Predict {
    /// The number of fully connected layers, for `operands` operands (odd, checked by `infer`).
    pub fn layers(operands: usize) -> usize {
        operands.saturating_sub(1) / 2
    }
}

impl OpDef for Predict {
    const NAME: &'static str = "predict";
    fn arity(&self) -> Arity {
        Arity::AtLeast(3)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        want_f32(x, "predict input")?;
        want_rank(x, 4, "predict input")?;
        if inputs.len().is_multiple_of(2) {
            bail_shape!(
                "predict takes the input and a weight and bias per layer, got {} operands",
                inputs.len()
            );
        }
        let mut width = x.shape[1];
        for l in 0..Self::layers(inputs.len()) {
            let (w, b) = (inputs[1 + 2 * l], inputs[2 + 2 * l]);
            want_f32(w, "predict weight")?;
            want_f32(b, "predict bias")?;
            want_rank(w, 2, "predict weight")?;
            if w.shape[1] != width || b.shape != [w.shape[0]] {
                bail_shape!(
                    "predict layer {l}: weight {w} and bias {b} do not take a vector of {width}"
                );
            }
            width = w.shape[0];
        }
        if let PredictAct::Softmax { run } = self.act {
            if run == 0 || !width.is_multiple_of(run) {
                bail_shape!("predict softmax runs of {run} do not divide its {width} outputs");
            }
        }
        Ok(TensorType::f32([x.shape[0], width]))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ident(
            "hidden",
            match self.hidden {
                Hidden::None => "none",
                Hidden::Relu => "relu",
                Hidden::Silu => "silu",
            },
        );
        match self.act {
            PredictAct::Sigmoid => w.ident("act", "sigmoid"),
            PredictAct::Softmax { run } => {
                w.ident("act", "softmax");
                w.usize("run", run);
            }
        }
        w.float("scale", self.scale);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        let hidden = r.parsed("hidden", |s| match s {
            "none" => Some(Hidden::None),
            "relu" => Some(Hidden::Relu),
            "silu" => Some(Hidden::Silu),
            _ => None,
        })?;
        let act = match r.ident("act")?.as_str() {
            "sigmoid" => PredictAct::Sigmoid,
            "softmax" => PredictAct::Softmax {
                run: r.usize("run")?,
            },
            other => return Err(format!("attribute `act`: unknown value `{other}`")),
        };
        Ok(Predict {
            hidden,
            act,
            scale: r.float("scale")?,
        })
    }
    /// The fully connected layers' multiply-adds (the pooling is a sum, not counted).
    fn macs(&self, inputs: &[&TensorType], out: &TensorType) -> u64 {
        let n = out.shape.first().copied().unwrap_or(0) as u64;
        inputs[1..]
            .iter()
            .step_by(2)
            .map(|w| w.shape.iter().fold(n, |a, &d| a.saturating_mul(d as u64)))
            .fold(0u64, u64::saturating_add)
    }
}
