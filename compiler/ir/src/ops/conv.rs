//! `conv`: 2-D convolution (cross-correlation), NCHW. Inputs: x [N,C,H,W], w [O,C/group,kh,kw],
//! optional bias [O]; w and bias may be computed at run time. `pads` are [top, left, bottom,
//! right] (ONNX auto_pad is resolved at import). Rejects group 0 or not dividing C and O,
//! strides or dilations of 0, and a dilated kernel larger than the padded input.

use super::{want_f32, want_rank, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::error::ShapeError;
use crate::tensor::TensorType;
use crate::{bail_shape, DType};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv {
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub group: usize,
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

fn arr<const N: usize>(v: Vec<usize>, name: &str) -> Result<[usize; N], String> {
    v.try_into()
        .map_err(|v: Vec<usize>| format!("`{name}` needs {N} entries, got {}", v.len()))
}

impl OpDef for Conv {
    const NAME: &'static str = "conv";
    fn arity(&self) -> Arity {
        Arity::Range(2, 3)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let (x, w) = (inputs[0], inputs[1]);
        want_f32(x, "conv input")?;
        want_f32(w, "conv weight")?;
        want_rank(x, 4, "conv input")?;
        want_rank(w, 4, "conv weight")?;
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
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
        if let Some(b) = inputs.get(2) {
            if b.dtype != DType::F32 || b.shape != [o] {
                bail_shape!("bias must be f32[{o}], got {b}");
            }
        }
        let oh = conv_out_dim(
            h,
            self.pads[0],
            self.pads[2],
            kh,
            self.strides[0],
            self.dilations[0],
        )?;
        let ow = conv_out_dim(
            wd,
            self.pads[1],
            self.pads[3],
            kw,
            self.strides[1],
            self.dilations[1],
        )?;
        Ok(TensorType::f32([n, o, oh, ow]))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usizes("strides", &self.strides);
        w.usizes("pads", &self.pads);
        w.usizes("dilations", &self.dilations);
        w.usize("group", self.group);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Conv {
            strides: arr(r.usizes("strides")?, "strides")?,
            pads: arr(r.usizes("pads")?, "pads")?,
            dilations: arr(r.usizes("dilations")?, "dilations")?,
            group: r.usize("group")?,
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
