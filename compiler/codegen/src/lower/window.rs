//! Sliding-window geometry along one spatial dim, for conv and pooling: the outputs split into
//! runs that share one valid tap range — the interior (whole window inside the input) and the
//! border outputs, usually one by one. Each run is emitted as a loop with that static tap
//! range, so generated code never tests padding at run time.
//!
//! Output o's tap k reads padded coordinate o·stride + k·dilation, i.e. input coordinate
//! o·stride + k·dilation − pad_begin when that lies in [0, input). Valid taps of one output form
//! a contiguous range of k, since the coordinate grows with k.

/// One spatial dim of a windowed op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Axis {
    pub input: usize,
    pub output: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
}

/// A run of outputs that share the same valid tap range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Outputs start..end.
    pub start: usize,
    pub end: usize,
    /// Valid taps k_lo..k_hi (empty when the window covers no input cell).
    pub k_lo: usize,
    pub k_hi: usize,
    /// Window cells inside the padded extent (avg_pool's count_include_pad divisor).
    pub padded_cells: usize,
}

impl Axis {
    fn taps(&self, o: usize) -> (usize, usize, usize) {
        let (mut lo, mut hi, mut padded) = (self.kernel, 0, 0);
        for k in 0..self.kernel {
            let p = o * self.stride + k * self.dilation;
            if p < self.pad_begin + self.input + self.pad_end {
                padded += 1;
            }
            if p >= self.pad_begin && p < self.pad_begin + self.input {
                lo = lo.min(k);
                hi = hi.max(k + 1);
            }
        }
        if lo >= hi {
            (0, 0, padded)
        } else {
            (lo, hi, padded)
        }
    }

    /// The outputs split into maximal runs of equal (tap range, padded cells). Shape inference
    /// bounds every coordinate by the padded extent, so nothing here overflows.
    pub fn segments(&self) -> Vec<Segment> {
        let mut segs: Vec<Segment> = Vec::new();
        for o in 0..self.output {
            let (k_lo, k_hi, padded_cells) = self.taps(o);
            if let Some(last) = segs.last_mut() {
                if (last.k_lo, last.k_hi, last.padded_cells) == (k_lo, k_hi, padded_cells) {
                    last.end = o + 1;
                    continue;
                }
            }
            segs.push(Segment {
                start: o,
                end: o + 1,
                k_lo,
                k_hi,
                padded_cells,
            });
        }
        segs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_3x3_has_one_border_output_each_side() {
        let a = Axis {
            input: 5,
            output: 5,
            pad_begin: 1,
            pad_end: 1,
            kernel: 3,
            stride: 1,
            dilation: 1,
        };
        let s = a.segments();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].start, s[0].k_lo, s[0].k_hi), (0, 1, 3));
        assert_eq!((s[1].start, s[1].end, s[1].k_lo, s[1].k_hi), (1, 4, 0, 3));
        assert_eq!((s[2].start, s[2].k_lo, s[2].k_hi), (4, 0, 2));
        for seg in &s {
            for o in seg.start..seg.end {
                for k in seg.k_lo..seg.k_hi {
                    let p = o * a.stride + k * a.dilation;
                    assert!(p >= a.pad_begin && p - a.pad_begin < a.input);
                }
            }
        }
    }
}
