//! `conv`: 2-D convolution (cross-correlation), NCHW. Inputs: x [N,C,H,W], w [O,C/group,kh,kw],
//! optional bias [O], then, when `residual`, r with the result's type; w and bias may be
//! computed at run time. `pads` are [top, left, bottom, right] (ONNX auto_pad is resolved at
//! import). Rejects group 0 or not dividing C and O, strides or dilations of 0, a dilated
//! kernel larger than the padded input, and a residual whose type is not the result's.
//!
//! Fused epilogue (only passes set it; each attribute printed only when present):
//!   y = act(clamp(conv + bias + r))
//! in that order, each step rounded to f32 as the unfused ops would: `residual=true` adds r
//! (ResNet's identity), `clamp=[lo, hi]` is min(hi, max(lo, ·)) as ONNX Clip (Relu: [0, inf]),
//! `act=silu` is x·sigmoid(x) and `act=hard_swish` is x·max(0, min(1, x/6 + 1/2)).
//!
//! `in_scale=true` (the `se_fold` pass) takes one more operand, last: s [N, C, 1, 1], and
//! convolves x · s (each input channel of each image scaled) instead of x. The interpreter
//! scales the input; compiled code scales each image's weights, W[o, c] · s[n, c], which rounds
//! differently, so the two agree to f32 rounding, not bit for bit. Rejects a scale of another
//! type.

use super::{fixed, want_f32, want_rank, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::error::ShapeError;
use crate::tensor::TensorType;
use crate::{bail_shape, DType};

#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub group: usize,
    /// Fused epilogue clamp of the result.
    pub clamp: Option<Clamp>,
    /// A residual operand (the result's type) comes last and is added before the clamp.
    pub residual: bool,
    /// Fused epilogue activation, applied after the clamp.
    pub act: Option<Act>,
    /// A per-image, per-input-channel scale `s` [N, C, 1, 1] comes last (after the residual):
    /// the conv convolves `x · s` (a squeeze-excitation gate folded in by the `se_fold` pass).
    pub in_scale: bool,
}

impl Conv {
    /// Operand index of the bias among `n` operands, if any.
    pub fn bias_index(&self, n: usize) -> Option<usize> {
        (n == 3 + self.residual as usize + self.in_scale as usize).then_some(2)
    }

    /// Operand index of the residual among `n` operands, if any.
    pub fn residual_index(&self, n: usize) -> Option<usize> {
        self.residual
            .then(|| n.saturating_sub(1 + self.in_scale as usize))
    }

    /// Operand index of the input scale among `n` operands, if any.
    pub fn scale_index(&self, n: usize) -> Option<usize> {
        self.in_scale.then(|| n.saturating_sub(1))
    }
}

/// An activation fused into a producer's epilogue, after its clamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// x·sigmoid(x) (SiLU, Swish).
    Silu,
    /// x·max(0, min(1, x/6 + 1/2)), as `unary hard_swish`.
    HardSwish,
}

impl Act {
    pub fn name(self) -> &'static str {
        match self {
            Act::Silu => "silu",
            Act::HardSwish => "hard_swish",
        }
    }
}

/// A clamp fused into a producer's epilogue: `min(hi, max(lo, x))` — `hi` when lo > hi, NaN
/// kept — exactly ONNX Clip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clamp {
    pub lo: f32,
    pub hi: f32,
}

impl Clamp {
    pub fn apply(&self, x: f32) -> f32 {
        if x.is_nan() {
            x
        } else {
            x.max(self.lo).min(self.hi)
        }
    }
}

/// Writes `clamp=[lo, hi]` when there is a clamp.
fn write_clamp(w: &mut AttrWriter, c: &Option<Clamp>) {
    if let Some(c) = c {
        w.floats("clamp", &[c.lo, c.hi]);
    }
}

/// Reads an optional `clamp=[lo, hi]`.
fn read_clamp(r: &mut AttrReader) -> Result<Option<Clamp>, String> {
    if !r.has("clamp") {
        return Ok(None);
    }
    match r.floats("clamp")?[..] {
        [lo, hi] => Ok(Some(Clamp { lo, hi })),
        ref v => Err(format!("attribute `clamp`: expected [lo, hi], got {v:?}")),
    }
}

/// Writes the epilogue attributes shared by `conv` and `dyn_conv`, each only when present.
pub(crate) fn write_epilogue(
    w: &mut AttrWriter,
    clamp: &Option<Clamp>,
    residual: bool,
    act: Option<Act>,
) {
    write_clamp(w, clamp);
    if residual {
        w.bool("residual", true);
    }
    if let Some(a) = act {
        w.ident("act", a.name());
    }
}

/// Reads the epilogue attributes of [`write_epilogue`]: (clamp, residual, act).
pub(crate) fn read_epilogue(
    r: &mut AttrReader,
) -> Result<(Option<Clamp>, bool, Option<Act>), String> {
    let clamp = read_clamp(r)?;
    let residual = r.has("residual") && r.bool("residual")?;
    let act = if r.has("act") {
        Some(match r.ident("act")?.as_str() {
            "silu" => Act::Silu,
            "hard_swish" => Act::HardSwish,
            other => return Err(format!("attribute `act`: unknown activation `{other}`")),
        })
    } else {
        None
    };
    Ok((clamp, residual, act))
}

/// Requires a residual operand to have the convolution result's type.
pub(crate) fn check_residual(r: &TensorType, out: &TensorType) -> Result<(), ShapeError> {
    if r != out {
        bail_shape!("residual must be {out}, got {r}");
    }
    Ok(())
}

/// Output extent of one spatial dim: floor((in + pads - dilated kernel) / stride) + 1, checked.
pub fn conv_out_dim(
    input: usize,
    pad_begin: usize,
    pad_end: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Result<usize, ShapeError> {
    if stride == 0 || dilation == 0 || kernel == 0 {
        bail_shape!("kernel, stride and dilation must be positive");
    }
    let overflow = || ShapeError::Overflow("convolution window".into());
    let padded = input
        .checked_add(pad_begin)
        .and_then(|v| v.checked_add(pad_end))
        .ok_or_else(overflow)?;
    let window = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    if window > padded {
        bail_shape!("dilated kernel extent {window} exceeds padded input extent {padded}");
    }
    Ok((padded - window) / stride + 1)
}

/// Output [height, width] of a 2-D convolution window over an `hw` input with a `kernel`.
pub fn conv_out_hw(
    hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
) -> Result<[usize; 2], ShapeError> {
    Ok([
        conv_out_dim(hw[0], pads[0], pads[2], kernel[0], strides[0], dilations[0])?,
        conv_out_dim(hw[1], pads[1], pads[3], kernel[1], strides[1], dilations[1])?,
    ])
}

/// Writes the window attributes shared by `conv` and `dyn_conv`.
pub(crate) fn write_window(
    w: &mut AttrWriter,
    strides: &[usize; 2],
    pads: &[usize; 4],
    dilations: &[usize; 2],
) {
    w.usizes("strides", strides);
    w.usizes("pads", pads);
    w.usizes("dilations", dilations);
}

/// Reads the window attributes shared by `conv` and `dyn_conv`: (strides, pads, dilations).
pub(crate) type Window = ([usize; 2], [usize; 4], [usize; 2]);
pub(crate) fn read_window(r: &mut AttrReader) -> Result<Window, String> {
    Ok((
        fixed(r.usizes("strides")?, "strides")?,
        fixed(r.usizes("pads")?, "pads")?,
        fixed(r.usizes("dilations")?, "dilations")?,
    ))
}

impl OpDef for Conv {
    const NAME: &'static str = "conv";
    fn arity(&self) -> Arity {
        let r = self.residual as usize + self.in_scale as usize;
        Arity::Range(2 + r, 3 + r)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let (x, w) = (inputs[0], inputs[1]);
        want_f32(x, "conv input")?;
        if let Some(s) = self.scale_index(inputs.len()).map(|i| inputs[i]) {
            let want = [x.shape.first(), x.shape.get(1)].map(|d| d.copied().unwrap_or(0));
            if s.dtype != DType::F32 || s.shape != [want[0], want[1], 1, 1] {
                bail_shape!(
                    "input scale must be f32[{}, {}, 1, 1], got {s}",
                    want[0],
                    want[1]
                );
            }
        }
        want_f32(w, "conv weight")?;
        want_rank(x, 4, "conv input")?;
        want_rank(w, 4, "conv weight")?;
        let (n, c, h, w_in) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
        let g = self.group;
        if g == 0 || c % g != 0 || o % g != 0 {
            bail_shape!(
                "group {g} must be positive and divide input channels {c} and output channels {o}"
            );
        }
        if c / g != cg {
            bail_shape!("weight has {cg} input channels per group, input has {c}/{g}");
        }
        if let Some(b) = self.bias_index(inputs.len()).map(|i| inputs[i]) {
            if b.dtype != DType::F32 || b.shape != [o] {
                bail_shape!("bias must be f32[{o}], got {b}");
            }
        }
        let [oh, ow] = conv_out_hw([h, w_in], [kh, kw], self.strides, self.pads, self.dilations)?;
        let out = TensorType::f32([n, o, oh, ow]);
        if let Some(i) = self.residual_index(inputs.len()) {
            check_residual(inputs[i], &out)?;
        }
        Ok(out)
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        write_window(w, &self.strides, &self.pads, &self.dilations);
        w.usize("group", self.group);
        write_epilogue(w, &self.clamp, self.residual, self.act);
        if self.in_scale {
            w.bool("in_scale", true);
        }
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        let (strides, pads, dilations) = read_window(r)?;
        let group = r.usize("group")?;
        let (clamp, residual, act) = read_epilogue(r)?;
        let in_scale = r.has("in_scale") && r.bool("in_scale")?;
        Ok(Conv {
            strides,
            pads,
            dilations,
            group,
            clamp,
            residual,
            act,
            in_scale,
        })
    }
    fn macs(&self, inputs: &[&TensorType], out: &TensorType) -> u64 {
        let w = &inputs[1].shape;
        let per_out = w[1..].iter().fold(1u64, |a, &d| a.saturating_mul(d as u64));
        out.shape
            .iter()
            .fold(per_out, |a, &d| a.saturating_mul(d as u64))
    }
}
