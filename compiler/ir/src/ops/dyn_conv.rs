//! `dyn_conv`: dynamic convolution — each sample convolves with its own kernel, mixed from a
//! constant bank by per-sample coefficients (DyNet, CondConv, DY-CNN).
//!
//! Operands, in order: x f32[N,C,H,W]; coeff f32[N,O,g] (one coefficient per output channel and
//! kernel: DyNet) or f32[N,g] (one per expert, shared by all output channels: CondConv, DY-CNN);
//! bank f32[g,O,C/group,kh,kw]; then, when `bias`, a static bias f32[O]; then, when `bias_bank`,
//! a bias bank f32[g,O] mixed with the same coefficients; then, when `residual`, r with the
//! result's type; then, when `in_scale`, s f32[N,C,1,1], which scales the input as the `conv`
//! op's `in_scale` does (see [`super::Conv`]).
//!
//!   W̃[n,o] = Σᵢ c[n,o,i]·bank[i,o]      (c[n,o,i] = coeff[n,i] for per-expert coefficients)
//!   y[n]   = conv(x[n], W̃[n]) + bias[o] + Σᵢ c[n,o,i]·bias_bank[i,o]
//!
//! with `conv` exactly as the `conv` op (strides, pads [t,l,b,r], dilations, group), followed
//! by the same fused epilogue (`residual`, `clamp`, `act`: see [`super::Conv`]). Produced by
//! the recognition passes, never by import.

use super::conv::{read_window, write_window};
use super::{conv_out_hw, want_f32, want_rank, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;

#[derive(Clone, Debug, PartialEq)]
pub struct DynConv {
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub group: usize,
    /// A static bias f32[O] follows the bank.
    pub bias: bool,
    /// A bias bank f32[g,O] comes last.
    pub bias_bank: bool,
    /// Fused epilogue clamp of the result (see [`super::Clamp`]).
    pub clamp: Option<super::Clamp>,
    /// A residual operand (the result's type) comes last, added before the clamp.
    pub residual: bool,
    /// Fused epilogue activation, after the clamp (see [`super::Act`]).
    pub act: Option<super::Act>,
    /// A per-image, per-input-channel scale of the input comes last (the `se_fold` pass).
    pub in_scale: bool,
}

impl DynConv {
    /// Operand index of the static bias, if any.
    pub fn bias_index(&self) -> Option<usize> {
        self.bias.then_some(3)
    }

    /// Operand index of the bias bank, if any.
    pub fn bias_bank_index(&self) -> Option<usize> {
        self.bias_bank.then_some(3 + self.bias as usize)
    }

    /// Operand index of the residual, if any.
    pub fn residual_index(&self) -> Option<usize> {
        self.residual
            .then_some(3 + self.bias as usize + self.bias_bank as usize)
    }

    /// Operand index of the input scale, if any.
    pub fn scale_index(&self) -> Option<usize> {
        self.in_scale
            .then_some(3 + self.bias as usize + self.bias_bank as usize + self.residual as usize)
    }
}

impl OpDef for DynConv {
    const NAME: &'static str = "dyn_conv";
    fn arity(&self) -> Arity {
        Arity::Exact(
            3 + self.bias as usize
                + self.bias_bank as usize
                + self.residual as usize
                + self.in_scale as usize,
        )
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let (x, c, bank) = (inputs[0], inputs[1], inputs[2]);
        for (t, what) in [(x, "input"), (c, "coefficients"), (bank, "bank")] {
            want_f32(t, what)?;
        }
        want_rank(x, 4, "dyn_conv input")?;
        want_rank(bank, 5, "dyn_conv bank")?;
        let (n, ch, h, w_in) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let (g, o, cg, kh, kw) = (
            bank.shape[0],
            bank.shape[1],
            bank.shape[2],
            bank.shape[3],
            bank.shape[4],
        );
        let grp = self.group;
        if grp == 0 || ch % grp != 0 || o % grp != 0 || ch / grp != cg {
            bail_shape!(
                "group {grp} does not fit input channels {ch}, output channels {o} and bank {bank}"
            );
        }
        if c.shape != [n, o, g] && c.shape != [n, g] {
            bail_shape!("coefficients must be [{n},{o},{g}] or [{n},{g}], got {c}");
        }
        if let Some(i) = self.bias_index() {
            if inputs[i].shape != [o] || inputs[i].dtype != crate::DType::F32 {
                bail_shape!("bias must be f32[{o}], got {}", inputs[i]);
            }
        }
        if let Some(i) = self.bias_bank_index() {
            if inputs[i].shape != [g, o] || inputs[i].dtype != crate::DType::F32 {
                bail_shape!("bias bank must be f32[{g},{o}], got {}", inputs[i]);
            }
        }
        let [oh, ow] = conv_out_hw([h, w_in], [kh, kw], self.strides, self.pads, self.dilations)?;
        let out = TensorType::f32([n, o, oh, ow]);
        if let Some(i) = self.residual_index() {
            super::conv::check_residual(inputs[i], &out)?;
        }
        if let Some(s) = self.scale_index().map(|i| inputs[i]) {
            if s.dtype != crate::DType::F32 || s.shape != [n, ch, 1, 1] {
                bail_shape!("input scale must be f32[{n}, {ch}, 1, 1], got {s}");
            }
        }
        Ok(out)
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        write_window(w, &self.strides, &self.pads, &self.dilations);
        w.usize("group", self.group);
        w.bool("bias", self.bias);
        w.bool("bias_bank", self.bias_bank);
        super::conv::write_epilogue(w, &self.clamp, self.residual, self.act);
        if self.in_scale {
            w.bool("in_scale", true);
        }
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        let (strides, pads, dilations) = read_window(r)?;
        let (group, bias, bias_bank) = (r.usize("group")?, r.bool("bias")?, r.bool("bias_bank")?);
        let (clamp, residual, act) = super::conv::read_epilogue(r)?;
        let in_scale = r.has("in_scale") && r.bool("in_scale")?;
        Ok(DynConv {
            strides,
            pads,
            dilations,
            group,
            bias,
            bias_bank,
            clamp,
            residual,
            act,
            in_scale,
        })
    }
    /// Convolution with the mixed kernel plus the mixing itself (g multiply-adds per kernel
    /// element per sample).
    fn macs(&self, inputs: &[&TensorType], out: &TensorType) -> u64 {
        let bank = &inputs[2].shape;
        let per_out = bank[2..]
            .iter()
            .fold(1u64, |a, &d| a.saturating_mul(d as u64));
        let conv = out
            .shape
            .iter()
            .fold(per_out, |a, &d| a.saturating_mul(d as u64));
        let mix = bank
            .iter()
            .fold(out.shape[0] as u64, |a, &d| a.saturating_mul(d as u64));
        conv.saturating_add(mix)
    }
}
