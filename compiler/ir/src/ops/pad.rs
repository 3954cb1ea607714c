//! `pad`: pads (or, with negative amounts, crops) every dim. `pads` = [begin_0..begin_r,
//! end_0..end_r] as in ONNX. Modes: constant (with `value`), reflect (mirror without repeating
//! the edge; pad < extent), edge (repeat the border; extent > 0 when padding).

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::{numel, TensorType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
}

impl PadMode {
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    pub pads: Vec<i64>,
    pub mode: PadMode,
    pub value: f32,
}

impl OpDef for Pad {
    const NAME: &'static str = "pad";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        let r = x.rank();
        if self.pads.len() != 2 * r {
            bail_shape!(
                "pad needs {} amounts for {x}, got {}",
                2 * r,
                self.pads.len()
            );
        }
        let mut shape = Vec::with_capacity(r);
        for i in 0..r {
            let (b, e) = (self.pads[i], self.pads[i + r]);
            let d = i64::try_from(x.shape[i])
                .map_err(|_| ShapeError::Overflow(format!("dim {i} of {x}")))?;
            let out = d
                .checked_add(b)
                .and_then(|v| v.checked_add(e))
                .ok_or_else(|| ShapeError::Overflow("pad".into()))?;
            if out < 0 || b < -d || e < -d {
                bail_shape!("pad amounts {b}, {e} crop more than extent {d} of dim {i}");
            }
            match self.mode {
                PadMode::Reflect if (b > 0 || e > 0) && (b >= d || e >= d) => {
                    bail_shape!("reflect pad {b}, {e} must be smaller than extent {d} of dim {i}")
                }
                PadMode::Edge if (b > 0 || e > 0) && d == 0 => {
                    bail_shape!("edge pad of the empty dim {i}")
                }
                _ => {}
            }
            shape.push(usize::try_from(out).map_err(|_| ShapeError::Overflow("pad".into()))?);
        }
        numel(&shape)?;
        Ok(TensorType::new(x.dtype, shape))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ints("pads", &self.pads);
        w.ident("mode", self.mode.name());
        w.float("value", self.value);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Pad {
            pads: r.ints("pads")?,
            mode: r.parsed("mode", PadMode::from_name)?,
            value: r.float("value")?,
        })
    }
}
