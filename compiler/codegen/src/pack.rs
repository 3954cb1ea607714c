//! Weight packing for the GEMM convolution path: which convolutions take it, and the layout
//! their constant weights (and dyn_conv kernel banks) are stored in.
//!
//! A convolution of `G` groups with `og` output channels and `K = C/G·kh·kw` reduction steps
//! per group is `G` GEMMs `Y[og × P] = W[og × K] · X̂[K × P]` (X̂ the im2col of the input). The
//! GEMM tile (`dync_runtime::ukernel`, or its Cranelift twin in [`crate::tile`]) reads `W` as
//! panels of [`M0`] output channels: [`Packing`] stores a weight `[E][O][K]` (E = 1 for a conv,
//! the experts of a bank) as panels of `M0` channels × `K` steps per group, channels past `og`
//! zero, in the order the convolution (or a dyn_conv's mixing) reads them ([`Packing::offset`]):
//! runs of `run` panels (one task's), within a run chunks of `chunk` steps (one call of the
//! tile), within a chunk the run's panels one after the other, within a panel's chunk its steps,
//! each step's experts side by side. A task then reads its weights as one sequential stream: a
//! chunk of each panel in turn, 18 KB apart, streamed from memory at 13.8 GB/s against 23 GB/s
//! for runs of 8 panels read in order, and a fused dyn_conv's mixing read 6 experts' banks at
//! 19 GB/s, at 12 GB/s with each expert's steps in a 4 KB block of its own, and at 48 GB/s
//! interleaved and prefetched a block ahead (read loops of those patterns on this machine;
//! `dync_runtime::ukernel::mix`). With one expert, `chunk = K` and `run = ⌈og/M0⌉` the layout
//! is plain `[G][⌈og/M0⌉][K][M0]`. The memory plan packs a constant when every use of it is
//! such a weight ([`crate::plan`]); the conv lowerings take the GEMM path exactly for packed
//! weights, so the decision is made once.
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
    /// Steps per chunk (the last chunk of a panel may be shorter); `k` for one chunk.
    pub chunk: usize,
    /// Panels per run (the last run of a group may be shorter); `mblocks` for one run.
    pub run: usize,
}

impl Packing {
    /// The packing of the weight `w` ([O, C/G, kh, kw]) or bank ([E, O, C/G, kh, kw]) of a
    /// convolution of `x` into `y` with `group` groups, when it takes the GEMM path, in one
    /// chunk and one run (the lowering's blocking refines them).
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
            chunk: k,
            run: og.div_ceil(M0),
        })
    }

    /// Element index of lane 0 of step `p` of panel `b` of group `g` of expert `e`: runs of
    /// [`Self::run`] panels, each as chunks of [`Self::chunk`] steps, each the run's panels in
    /// order, each panel's chunk as its steps in turn, each step's experts side by side (see the
    /// module documentation).
    pub fn offset(&self, e: usize, g: usize, b: usize, p: usize) -> usize {
        let (mb, k, n) = (self.mblocks(), self.k, self.experts);
        let (r, bi) = (b / self.run, b % self.run);
        let panels = self.run.min(mb - r * self.run);
        let (c, s) = (p / self.chunk, p % self.chunk);
        let kc = self.chunk.min(k - c * self.chunk);
        let run = (g * mb + r * self.run) * k * n;
        (run + (c * self.chunk * panels + bi * kc + s) * n + e) * M0
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
                    let rows = M0.min(self.og - b * M0);
                    let row0 = (e * o + g * self.og + b * M0) * k;
                    // Step by step, the panel's lanes are written contiguously.
                    for p in 0..k {
                        let at = self.offset(e, g, b, p) * 4;
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
            chunk: 2,
            run: 2,
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

    /// Two experts, runs of 2 panels, chunks of 2 steps: every element lands where `offset`
    /// says, each run's chunks hold its panels one after the other, and nothing overlaps.
    #[test]
    fn blocked_layout_orders_runs_chunks_then_panels() {
        let p = Packing {
            experts: 2,
            groups: 1,
            og: 3 * M0,
            k: 5,
            chunk: 2,
            run: 2,
        };
        // Run 0 (panels 0, 1): chunk 0 holds panel 0's steps 0–1, then panel 1's, each
        // step's two experts side by side.
        assert_eq!(p.offset(1, 0, 0, 0), M0);
        assert_eq!(p.offset(0, 0, 0, 1), 2 * M0);
        assert_eq!(p.offset(0, 0, 1, 0), 4 * M0);
        assert_eq!(p.offset(0, 0, 0, 2), 8 * M0);
        // The last chunk (1 step) of run 0, then run 1 (panel 2 alone).
        assert_eq!(p.offset(1, 0, 1, 4), 19 * M0);
        assert_eq!(p.offset(0, 0, 2, 0), 20 * M0);
        let mut seen: Vec<usize> = (0..2)
            .flat_map(|e| (0..3).flat_map(move |b| (0..5).map(move |s| p.offset(e, 0, b, s))))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..30).map(|i| i * M0).collect::<Vec<_>>());
        let src: Vec<f32> = (0..2 * 3 * M0 * 5).map(|v| v as f32).collect();
        let mut bytes = vec![0u8; p.elems().unwrap() * 4];
        p.pack_into(&src, &mut bytes);
        let at = |i: usize| f32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
        // Expert 1, channel M0 + 3 (panel 1, lane 3), step 4.
        assert_eq!(
            at(p.offset(1, 0, 1, 4) + 3),
            ((3 * M0 + M0 + 3) * 5 + 4) as f32
        );
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
