//! Weight packing for the GEMM convolution path: which convolutions take it, and the layout
//! their constant weights (and dyn_conv kernel banks) are stored in.
//!
//! A convolution of `G` groups with `og` output channels and `K = C/G·kh·kw` reduction steps
//! per group is `G` GEMMs `Y[og × P] = W[og × K] · X̂[K × P]` (X̂ the im2col of the input). The
//! GEMM tile (`dync_runtime::ukernel`, or its Cranelift twin in [`crate::tile`]) reads `W` as
//! panels of [`M0`] output channels: [`Packing`] stores a weight `[E][O][K]` (E = 1 for a conv,
//! the experts of a bank) as `[E][G][⌈og/M0⌉][K][M0]`, channels past `og` zero. The memory plan
//! packs a constant when every use of it is such a weight ([`crate::plan`]); the conv lowerings
//! take the GEMM path exactly for packed weights, so the decision is made once.
//!
//! Not packed (the direct conv path): depthwise and small-group convs whose panels would be
//! less than half full (`og < M0 / 2`), tiny reductions (`K < 4`) and outputs of fewer than
//! [`MIN_POSITIONS`] positions, where a GEMM tile would be mostly empty (a 1×1 conv over a 1×1
//! input then takes the dot-product path of `lower::conv_fc`). A half-full panel
//! (dy-mobile's 6 channels per group) still runs several times faster on the micro-kernel
//! than on the direct path.

use dync_ir::TensorType;
use dync_runtime::ukernel::GEMM_F32_M0 as M0;

/// Output positions below which a convolution stays on the direct path.
pub const MIN_POSITIONS: usize = 8;

/// The packed layout of a `[E][G·og][K]` f32 weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Packing {
    /// Experts (1 for a conv's weight).
    pub experts: usize,
    pub groups: usize,
    /// Output channels per group.
    pub og: usize,
    /// Reduction steps per output channel: C/G·kh·kw.
    pub k: usize,
}

impl Packing {
    /// The packing of the weight `w` ([O, C/G, kh, kw]) or bank ([E, O, C/G, kh, kw]) of a
    /// convolution of `x` into `y` with `group` groups, when it takes the GEMM path.
    pub fn for_conv(x: &TensorType, w: &TensorType, y: &TensorType, group: usize) -> Option<Self> {
        let (experts, ws) = match w.shape.len() {
            4 => (1, &w.shape[..]),
            5 => (w.shape[0], &w.shape[1..]),
            _ => return None,
        };
        let o = ws[0];
        let og = o.checked_div(group)?;
        let k = ws[1].checked_mul(ws[2])?.checked_mul(ws[3])?;
        let positions = y.shape.get(2)?.checked_mul(*y.shape.get(3)?)?;
        let ok = x.shape.len() == 4 && 2 * og >= M0 && k >= 4 && positions >= MIN_POSITIONS;
        ok.then_some(Packing {
            experts,
            groups: group,
            og,
            k,
        })
    }

    /// Panels of `M0` channels per group.
    pub fn mblocks(&self) -> usize {
        self.og.div_ceil(M0)
    }

    /// f32 elements of one expert's packed weight.
    pub fn expert_elems(&self) -> Option<usize> {
        self.groups
            .checked_mul(self.mblocks())?
            .checked_mul(self.k)?
            .checked_mul(M0)
    }

    /// f32 elements of the packed weight.
    pub fn elems(&self) -> Option<usize> {
        self.expert_elems()?.checked_mul(self.experts)
    }

    /// f32 elements [`Self::pack_into`] reads: `E·G·og·K`.
    pub fn src_elems(&self) -> Option<usize> {
        self.experts
            .checked_mul(self.groups)?
            .checked_mul(self.og)?
            .checked_mul(self.k)
    }

    /// Writes `src` ([E][G·og][K] row-major, of at least [`Self::src_elems`] elements) into `dst` in the packed
    /// layout, as little-endian f32 bytes. `dst` must hold [`Self::elems`] f32 and be
    /// zero-filled: the lanes of channels past `og` are not written.
    pub fn pack_into(&self, src: &[f32], dst: &mut [u8]) {
        let (mb, k) = (self.mblocks(), self.k);
        let o = self.groups * self.og;
        for e in 0..self.experts {
            for g in 0..self.groups {
                for b in 0..mb {
                    let panel = ((e * self.groups + g) * mb + b) * k * M0;
                    let rows = M0.min(self.og - b * M0);
                    let row0 = (e * o + g * self.og + b * M0) * k;
                    // Step by step, the panel's lanes are written contiguously.
                    for p in 0..k {
                        let at = (panel + p * M0) * 4;
                        for (i, d) in dst[at..at + rows * 4].chunks_exact_mut(4).enumerate() {
                            d.copy_from_slice(&src[row0 + i * k + p].to_le_bytes());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_channel_panels_with_zero_padding() {
        // 1 expert, 2 groups of 9 channels, K = 2: the second panel of each group holds 1
        // channel and 7 zero lanes.
        let p = Packing {
            experts: 1,
            groups: 2,
            og: 9,
            k: 2,
        };
        let src: Vec<f32> = (0..36).map(|v| v as f32).collect();
        let mut bytes = vec![0u8; p.elems().unwrap() * 4];
        p.pack_into(&src, &mut bytes);
        let out: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(out.len(), 2 * 2 * 2 * M0);
        // Group 1, panel 0, step 1, lane 3: channel 9 + 3 = 12, element 12·2 + 1.
        assert_eq!(out[(2 * 2 + 1) * M0 + 3], 25.0);
        // Group 0, panel 1, step 0: channel 8, then zeros.
        assert_eq!(out[2 * M0], 16.0);
        assert!(out[2 * M0 + 1..3 * M0].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn depthwise_and_tiny_outputs_stay_direct() {
        let x = TensorType::f32([1, 32, 8, 8]);
        let y = TensorType::f32([1, 32, 8, 8]);
        let dw = TensorType::f32([32, 1, 3, 3]);
        assert_eq!(Packing::for_conv(&x, &dw, &y, 32), None);
        let w = TensorType::f32([32, 32, 3, 3]);
        assert_eq!(Packing::for_conv(&x, &w, &y, 1).map(|p| p.k), Some(288));
        let y1 = TensorType::f32([1, 32, 1, 1]);
        assert_eq!(Packing::for_conv(&x, &w, &y1, 1), None);
    }
}
