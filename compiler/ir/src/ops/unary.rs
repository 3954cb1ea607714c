//! `unary`: elementwise f32 functions. `kind` selects the function; `clip` and `hard_sigmoid`
//! carry their constants (ONNX Clip's min/max inputs are resolved at import; absent bounds are
//! ±inf). The result has the input's type.

use super::{want_f32, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::error::ShapeError;
use crate::tensor::TensorType;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryKind {
    Relu,
    /// max(x, alpha·x) for x < 0.
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    /// max(0, min(1, alpha·x + beta)).
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// x · max(0, min(1, x/6 + 1/2)).
    HardSwish,
    Clip {
        min: f32,
        max: f32,
    },
    Tanh,
    Exp,
    Log,
    Sqrt,
    Neg,
    Abs,
    Reciprocal,
    Erf,
}

impl UnaryKind {
    pub fn name(&self) -> &'static str {
        match self {
            UnaryKind::Relu => "relu",
            UnaryKind::LeakyRelu { .. } => "leaky_relu",
            UnaryKind::Sigmoid => "sigmoid",
            UnaryKind::HardSigmoid { .. } => "hard_sigmoid",
            UnaryKind::HardSwish => "hard_swish",
            UnaryKind::Clip { .. } => "clip",
            UnaryKind::Tanh => "tanh",
            UnaryKind::Exp => "exp",
            UnaryKind::Log => "log",
            UnaryKind::Sqrt => "sqrt",
            UnaryKind::Neg => "neg",
            UnaryKind::Abs => "abs",
            UnaryKind::Reciprocal => "reciprocal",
            UnaryKind::Erf => "erf",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unary {
    pub kind: UnaryKind,
}

impl OpDef for Unary {
    const NAME: &'static str = "unary";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        want_f32(inputs[0], self.kind.name())?;
        Ok(inputs[0].clone())
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ident("kind", self.kind.name());
        match self.kind {
            UnaryKind::LeakyRelu { alpha } => w.float("alpha", alpha),
            UnaryKind::HardSigmoid { alpha, beta } => {
                w.float("alpha", alpha);
                w.float("beta", beta);
            }
            UnaryKind::Clip { min, max } => {
                w.float("min", min);
                w.float("max", max);
            }
            UnaryKind::Relu
            | UnaryKind::Sigmoid
            | UnaryKind::HardSwish
            | UnaryKind::Tanh
            | UnaryKind::Exp
            | UnaryKind::Log
            | UnaryKind::Sqrt
            | UnaryKind::Neg
            | UnaryKind::Abs
            | UnaryKind::Reciprocal
            | UnaryKind::Erf => {}
        }
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        let kind = match r.ident("kind")?.as_str() {
            "relu" => UnaryKind::Relu,
            "leaky_relu" => UnaryKind::LeakyRelu {
                alpha: r.float("alpha")?,
            },
            "sigmoid" => UnaryKind::Sigmoid,
            "hard_sigmoid" => UnaryKind::HardSigmoid {
                alpha: r.float("alpha")?,
                beta: r.float("beta")?,
            },
            "hard_swish" => UnaryKind::HardSwish,
            "clip" => UnaryKind::Clip {
                min: r.float("min")?,
                max: r.float("max")?,
            },
            "tanh" => UnaryKind::Tanh,
            "exp" => UnaryKind::Exp,
            "log" => UnaryKind::Log,
            "sqrt" => UnaryKind::Sqrt,
            "neg" => UnaryKind::Neg,
            "abs" => UnaryKind::Abs,
            "reciprocal" => UnaryKind::Reciprocal,
            "erf" => UnaryKind::Erf,
            other => return Err(format!("unknown unary kind `{other}`")),
        };
        Ok(Unary { kind })
    }
}
