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

/// The input taps of one output coordinate: (input index, weight) pairs. A single-tap coordinate
/// repeats its index with weight 0 as the second tap.
pub type Taps = [(usize, f64); 2];

impl Resize {
    /// The scale of dim `d` from input extent `n` to output extent `m`, in f64. Scales are stored
    /// as f32; one equal to the f32 rounding of m/n is taken to be m/n, which the ONNX reference
    /// computes in f64 when the model gives `sizes` (the importer derives such scales in f32).
    pub fn effective_scale(&self, d: usize, n: usize, m: usize) -> f64 {
        let s = self.scales[d];
        if m as f32 / n as f32 == s {
            m as f64 / n as f64
        } else {
            f64::from(s)
        }
    }

    /// Whether dim `d` (input extent `n`) is resampled; otherwise it is copied through, as in
    /// the ONNX reference.
    pub fn resamples(&self, d: usize, n: usize) -> bool {
        let m = self.sizes[d];
        !(m == n && self.effective_scale(d, n, m) == 1.0)
    }

    /// The input coordinate of output coordinate `y` of dim `d` (input extent `n`):
    /// - half_pixel: (y + 0.5)/s − 0.5; pytorch_half_pixel: the same, or 0 when m = 1
    /// - align_corners: y·(n − 1)/(s·n − 1), or 0 when m = 1 (the reference divides by s·n − 1)
    /// - asymmetric: y/s
    /// - half_pixel_symmetric: n/2·(1 − m/(s·n)) + (y + 0.5)/s − 0.5
    pub fn source_coord(&self, d: usize, y: usize, n: usize) -> f64 {
        let m = self.sizes[d];
        let s = self.effective_scale(d, n, m);
        let (y, nf, mf) = (y as f64, n as f64, m as f64);
        let out_width = s * nf;
        match self.coord {
            CoordMode::HalfPixel => (y + 0.5) / s - 0.5,
            CoordMode::PytorchHalfPixel if m == 1 => 0.0,
            CoordMode::PytorchHalfPixel => (y + 0.5) / s - 0.5,
            CoordMode::AlignCorners if m == 1 => 0.0,
            CoordMode::AlignCorners => y * (nf - 1.0) / (out_width - 1.0),
            CoordMode::Asymmetric => y / s,
            CoordMode::HalfPixelSymmetric => {
                nf / 2.0 * (1.0 - mf / out_width) + (y + 0.5) / s - 0.5
            }
        }
    }

    /// The taps of output coordinate `y` of dim `d` (input extent `n` > 0). Nearest picks x when
    /// it is an integer, else floor(x) or floor(x) + 1 by `nearest`; linear blends floor(x) and
    /// floor(x) + 1 by the fraction. Indices are clamped to [0, n − 1] (the border is read).
    pub fn taps(&self, d: usize, y: usize, n: usize) -> Taps {
        let x = self.source_coord(d, y, n);
        let fl = x.floor();
        let frac = x - fl;
        let clamp = |i: f64| -> usize {
            // NaN clamps to 0.
            if i >= (n - 1) as f64 {
                n - 1
            } else if i > 0.0 {
                i as usize
            } else {
                0
            }
        };
        match self.mode {
            ResizeMode::Nearest => {
                let up = frac > 0.0
                    && match self.nearest {
                        NearestMode::RoundPreferFloor => frac > 0.5,
                        NearestMode::RoundPreferCeil => frac >= 0.5,
                        NearestMode::Floor => false,
                        NearestMode::Ceil => true,
                    };
                let i = clamp(if up { fl + 1.0 } else { fl });
                [(i, 1.0), (i, 0.0)]
            }
            ResizeMode::Linear if frac == 0.0 => {
                let i = clamp(fl);
                [(i, 1.0), (i, 0.0)]
            }
            ResizeMode::Linear => [(clamp(fl), 1.0 - frac), (clamp(fl + 1.0), frac)],
        }
    }
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
