//! `dyn_conv`: one task per group and block of output channels (the `conv` lowering's blocks,
//! [`super::conv::for_block`]), covering every image. A task first mixes its channels' kernels
//! W̃[n,o] = Σᵢ c[n,o,i]·bank[i,o] and biases (static bias + Σᵢ c[n,o,i]·bias_bank[i,o]) for
//! all images into its part of the scratch memory — the bank rows 4 lanes at a time, each
//! bank vector loaded once and multiplied into the accumulators of [`IMAGES`] images (so at
//! batch ≤ `IMAGES` every panel of the bank is read once for the whole batch) — then convolves
//! each image's block with them ([`super::conv::conv_channels`]), while the panel is in cache.
//! Coefficients are per output channel ([N,O,g]) or per expert ([N,g]). Each mixed value is
//! summed over the experts in order by the same instructions whatever the task split, so
//! results do not depend on the thread count. A depthwise dyn_conv on a 7×7-sized map
//! ([`block_geo`]) has a task per block of `DWC_CHANNELS` channels instead, which mixes them
//! all for every image, then convolves each image's block
//! ([`super::conv_dw::channels`]).

use super::conv::{conv_channels, for_block, Geo};
use super::kernel::{as_i64, f32_type, BufId, Kernel, LResult};
use super::nest::{for_each_from, View};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use dync_ir::ops::{Conv, DynConv};
use dync_ir::TensorType;
use dync_runtime::ukernel::dwc::DwcGeo;

/// Images whose accumulators share one load of a bank vector.
const IMAGES: usize = 8;

/// Scratch f32 elements: the mixed kernels [N, O, C/G, kh, kw], then the mixed biases [N, O].
pub(crate) fn scratch_elems(x: &TensorType, bank: &TensorType) -> usize {
    let s = &bank.shape;
    let o = s.get(1).copied().unwrap_or(0);
    let n = x.shape.first().copied().unwrap_or(0);
    s[1..]
        .iter()
        .product::<usize>()
        .saturating_add(o)
        .saturating_mul(n)
}

/// The tasks of `op` on `x` with bank `bank` and result `y` [N, O, OH, OW]: one per group and
/// block of output channels, or per block of channels ([`block_geo`]).
pub(crate) fn tasks(op: &DynConv, x: &TensorType, bank: &TensorType, y: &TensorType) -> usize {
    if block_geo(op, x, bank, y).is_some() {
        return super::conv_dw::channel_blocks(op.group).max(1);
    }
    let og = y.shape[1].checked_div(op.group).unwrap_or(0);
    (op.group * og.div_ceil(super::conv::OC_BLOCK)).max(1)
}

/// The channel-block geometry of a depthwise dyn_conv ([`super::conv_dw::block_geo`] with the
/// bank's kernel shape).
pub(crate) fn block_geo(
    op: &DynConv,
    x: &TensorType,
    bank: &TensorType,
    y: &TensorType,
) -> Option<DwcGeo> {
    super::conv_dw::block_geo(
        &x.shape,
        &y.shape,
        bank.shape.get(1..)?,
        (op.strides, op.pads, op.dilations),
        op.group,
        op.residual,
    )
}

pub(crate) fn lower(k: &mut Kernel, op: &DynConv) -> LResult {
    let bank = k.shape(BufId::In(2));
    let (gk, o) = (bank[0], bank[1]);
    let e: usize = bank[2..].iter().product();
    let batch = k.shape(BufId::In(0))[0];
    let conv = Conv {
        strides: op.strides,
        pads: op.pads,
        dilations: op.dilations,
        group: op.group,
        clamp: op.clamp,
        residual: op.residual,
        act: op.act,
        in_scale: false,
    };
    let (ei, oi) = (as_i64(e)?, as_i64(o)?);
    let kernels = as_i64(batch * o * e)?;
    let mut geo = Geo::new(
        k,
        &conv,
        &bank[1..],
        (BufId::Scratch, 0),
        Some((BufId::Scratch, kernels)),
    );
    geo.per_image = (oi * ei, oi);
    if !super::conv::has_outputs(&geo) || batch == 0 {
        return Ok(());
    }
    let mix = Mix {
        op,
        per_channel: k.shape(BufId::In(1)).len() == 3,
        batch,
        gk,
        o,
        e,
    };
    let (x, y, b) = (k.buf(BufId::In(0)), k.buf(BufId::Out), k.buf(BufId::In(2)));
    if let Some(dg) = block_geo(op, &x.ty, &b.ty, &y.ty) {
        return k.for_tasks(|k, blk| {
            let (c0, end) = super::conv_dw::block_channels(k, geo.group, blk)?;
            k.loop_dyn(c0, end, |k, oc| mix.every_image(k, oc))?;
            k.loop_n(batch, |k, n| super::conv_dw::channels(k, &geo, &dg, n, blk))
        });
    }
    k.for_tasks(|k, t| {
        for_block(k, &geo, t, &mut |k, grp, oc0, nb| {
            for j in 0..nb {
                let oc = k.add_imm(oc0, as_i64(j)?);
                mix.every_image(k, oc)?;
            }
            k.loop_n(batch, |k, n| {
                conv_channels(k, &geo, n, (grp, oc0), nb, None)
            })
        })
    })
}

/// The mixing of one dyn_conv's kernels and biases.
struct Mix<'a> {
    op: &'a DynConv,
    per_channel: bool,
    batch: usize,
    gk: usize,
    o: usize,
    e: usize,
}

impl Mix<'_> {
    /// Mixes channel `oc`'s kernel and bias for every image, [`IMAGES`] at a time.
    fn every_image(&self, k: &mut Kernel, oc: Value) -> LResult {
        for first in (0..self.batch).step_by(IMAGES) {
            self.channel(k, oc, first..(first + IMAGES).min(self.batch))?;
        }
        Ok(())
    }

    /// Mixes channel `oc`'s kernel and bias for `images`.
    fn channel(&self, k: &mut Kernel, oc: Value, images: std::ops::Range<usize>) -> LResult {
        let (oi, ei, gi) = (as_i64(self.o)?, as_i64(self.e)?, as_i64(self.gk)?);
        // coeffs[n][i]: c[n, oc, i] (per channel) or c[n, i].
        let cbase = if self.per_channel {
            k.b.ins().imul_imm_s(oc, gi)
        } else {
            k.iconst(0)
        };
        let per_image = if self.per_channel { oi * gi } else { gi };
        let mut coeffs = Vec::with_capacity(images.len());
        for n in images.clone() {
            let row = (0..self.gk)
                .map(|i| {
                    let off = as_i64(n)? * per_image + as_i64(i)?;
                    Ok(k.load_off(BufId::In(1), types::F32, cbase, off, false))
                })
                .collect::<LResult<Vec<Value>>>()?;
            coeffs.push(row);
        }
        let rows = [
            View {
                buf: BufId::In(2),
                offset: 0,
                strides: vec![1],
            },
            View {
                buf: BufId::Scratch,
                offset: 0,
                strides: vec![1],
            },
        ];
        let row = k.b.ins().imul_imm_s(oc, ei);
        let first = images.start;
        for_each_from(k, &[self.e], &rows, &[row, row], true, |k, at, lanes| {
            let ty = f32_type(lanes);
            let zero = k.fconst(lanes, 0.0);
            let mut accs = vec![zero; coeffs.len()];
            for i in 0..self.gk {
                let b = k.load_off(BufId::In(2), ty, at[0].idx, as_i64(i)? * oi * ei, true);
                for (acc, c) in accs.iter_mut().zip(&coeffs) {
                    let cv = k.splat(lanes, c[i]);
                    *acc = k.b.ins().fma(cv, b, *acc);
                }
            }
            for (j, &acc) in accs.iter().enumerate() {
                let n = as_i64(first + j)?;
                k.store_off(BufId::Scratch, at[1].idx, n * oi * ei, acc);
            }
            Ok(())
        })?;
        let kernels = as_i64(self.batch)? * oi * ei;
        for (j, c) in coeffs.iter().enumerate() {
            let mut b = match self.op.bias_index() {
                Some(i) => k.load(BufId::In(i), types::F32, oc),
                None => k.fconst(1, 0.0),
            };
            if let Some(bb) = self.op.bias_bank_index() {
                for (i, &ci) in c.iter().enumerate() {
                    let v = k.load_off(BufId::In(bb), types::F32, oc, as_i64(i)? * oi, true);
                    b = k.b.ins().fma(ci, v, b);
                }
            }
            let n = as_i64(first + j)?;
            k.store_off(BufId::Scratch, oc, kernels + n * oi, b);
        }
        Ok(())
    }
}
