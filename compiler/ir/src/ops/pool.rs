//! `avg_pool` and `max_pool`: 2-D windowed pooling over NCHW f32. `pads` are [top, left,
//! bottom, right]; `ceil_mode` rounds the output extent up, but (as PyTorch and ONNX do) never
//! lets the last window start in the end padding. avg_pool's `count_include_pad` chooses the
//! divisor; max_pool ignores padded cells. (Global average pooling is a `reduce` mean.)

use super::{fixed, want_f32, want_rank, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;

/// Output extent of one pooled dim; see the module docs for `ceil_mode`.
pub fn pool_out_dim(
    input: usize,
    pad_begin: usize,
    pad_end: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize, ShapeError> {
    let floor = super::conv_out_dim(input, pad_begin, pad_end, kernel, stride, dilation)?;
    if !ceil_mode {
        return Ok(floor);
    }
    let span = input + pad_begin + pad_end - ((kernel - 1) * dilation + 1);
    let mut out = span.div_ceil(stride) + 1;
    if (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Ok(out)
}

fn pooled(
    what: &str,
    x: &TensorType,
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    ceil_mode: bool,
) -> Result<TensorType, ShapeError> {
    want_f32(x, what)?;
    want_rank(x, 4, what)?;
    if pads[0] >= kernel[0] || pads[2] >= kernel[0] || pads[1] >= kernel[1] || pads[3] >= kernel[1]
    {
        // A window made only of padding has no defined value.
        bail_shape!("{what} pads {pads:?} must be smaller than the kernel {kernel:?}");
    }
    let oh = pool_out_dim(
        x.shape[2],
        pads[0],
        pads[2],
        kernel[0],
        strides[0],
        dilations[0],
        ceil_mode,
    )?;
    let ow = pool_out_dim(
        x.shape[3],
        pads[1],
        pads[3],
        kernel[1],
        strides[1],
        dilations[1],
        ceil_mode,
    )?;
    Ok(TensorType::f32([x.shape[0], x.shape[1], oh, ow]))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvgPool {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

impl OpDef for AvgPool {
    const NAME: &'static str = "avg_pool";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        pooled(
            "avg_pool input",
            inputs[0],
            self.kernel,
            self.strides,
            self.pads,
            [1, 1],
            self.ceil_mode,
        )
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usizes("kernel", &self.kernel);
        w.usizes("strides", &self.strides);
        w.usizes("pads", &self.pads);
        w.bool("ceil_mode", self.ceil_mode);
        w.bool("count_include_pad", self.count_include_pad);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(AvgPool {
            kernel: fixed(r.usizes("kernel")?, "kernel")?,
            strides: fixed(r.usizes("strides")?, "strides")?,
            pads: fixed(r.usizes("pads")?, "pads")?,
            ceil_mode: r.bool("ceil_mode")?,
            count_include_pad: r.bool("count_include_pad")?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPool {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub ceil_mode: bool,
}

impl OpDef for MaxPool {
    const NAME: &'static str = "max_pool";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        pooled(
            "max_pool input",
            inputs[0],
            self.kernel,
            self.strides,
            self.pads,
            self.dilations,
            self.ceil_mode,
        )
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usizes("kernel", &self.kernel);
        w.usizes("strides", &self.strides);
        w.usizes("pads", &self.pads);
        w.usizes("dilations", &self.dilations);
        w.bool("ceil_mode", self.ceil_mode);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(MaxPool {
            kernel: fixed(r.usizes("kernel")?, "kernel")?,
            strides: fixed(r.usizes("strides")?, "strides")?,
            pads: fixed(r.usizes("pads")?, "pads")?,
            dilations: fixed(r.usizes("dilations")?, "dilations")?,
            ceil_mode: r.bool("ceil_mode")?,
        })
    }
}
