//! `resize`: nearest or (multi)linear resampling of an f32 tensor to `sizes`, with the
//! coordinate transforms PyTorch's exporters emit. `scales` (one per dim, output/input) drive the
//! coordinate transform exactly as ONNX specifies (given by the model, or derived from sizes).
//! Rejects cubic mode, tf_crop_and_resize and antialiasing at import.

use super::{want_f32, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::{numel, TensorType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest,
    Linear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    HalfPixelSymmetric,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

macro_rules! named_enum {
    ($t:ty { $($v:ident = $s:literal),* }) => {
        impl $t {
            pub fn name(self) -> &'static str { match self { $(Self::$v => $s),* } }
            pub fn from_name(s: &str) -> Option<Self> { match s { $($s => Some(Self::$v),)* _ => None } }
        }
    };
}

named_enum!(ResizeMode { Nearest = "nearest", Linear = "linear" });
named_enum!(CoordMode {
    HalfPixel = "half_pixel",
    PytorchHalfPixel = "pytorch_half_pixel",
    AlignCorners = "align_corners",
    Asymmetric = "asymmetric",
    HalfPixelSymmetric = "half_pixel_symmetric"
});
named_enum!(NearestMode {
    RoundPreferFloor = "round_prefer_floor",
    RoundPreferCeil = "round_prefer_ceil",
    Floor = "floor",
    Ceil = "ceil"
});

#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub nearest: NearestMode,
    pub sizes: Vec<usize>,
    pub scales: Vec<f32>,
}

impl OpDef for Resize {
    const NAME: &'static str = "resize";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        want_f32(x, "resize input")?;
        if self.sizes.len() != x.rank() || self.scales.len() != x.rank() {
            bail_shape!("resize needs sizes and scales for each dim of {x}");
        }
        if self.scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            bail_shape!(
                "resize scales {:?} must be positive and finite",
                self.scales
            );
        }
        for (i, (&d, &o)) in x.shape.iter().zip(&self.sizes).enumerate() {
            if d == 0 && o > 0 {
                bail_shape!("resize of empty dim {i} to {o}");
            }
        }
        numel(&self.sizes)?;
        Ok(TensorType::f32(self.sizes.clone()))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ident("mode", self.mode.name());
        w.ident("coord", self.coord.name());
        w.ident("nearest", self.nearest.name());
        w.usizes("sizes", &self.sizes);
        w.floats("scales", &self.scales);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Resize {
            mode: r.parsed("mode", ResizeMode::from_name)?,
            coord: r.parsed("coord", CoordMode::from_name)?,
            nearest: r.parsed("nearest", NearestMode::from_name)?,
            sizes: r.usizes("sizes")?,
            scales: r.floats("scales")?,
        })
    }
}
