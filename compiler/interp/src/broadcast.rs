//! Index mapping for strided views, the one odometer every kernel uses to read operands in an
//! order other than their own row-major order.
//!
//! A [`Walk`] visits a row-major index space (`dims`) and keeps, for each of several operands,
//! the linear offset `start + Σ idx[d]·stride[d]` of the current position. Numpy
//! (multidirectional) broadcasting of a source shape to a result shape is such a view with
//! stride 0 on broadcast dims ([`broadcast_strides`], used by binary, expand, gemm, matmul);
//! transpose permutes the strides, slice scales them by its (possibly negative) steps, einsum
//! sums the strides of a label repeated within an operand (a diagonal).
//!
//! Callers guarantee that every visited offset lies inside the operand (the op's shape
//! inference has checked the geometry), so offsets are never negative.

/// Row-major strides of `shape`, in elements.
pub(crate) fn row_major_strides(shape: &[usize]) -> Vec<isize> {
    dync_ir::tensor::strides(shape)
        .into_iter()
        .map(|s| s as isize)
        .collect()
}

/// Strides that view a row-major tensor of shape `src` as the broadcast shape `out` (numpy
/// rules, aligned at the trailing dim): 0 on dims that `src` lacks or has as 1 while `out` does
/// not. Precondition: `src` broadcasts to `out`.
pub(crate) fn broadcast_strides(src: &[usize], out: &[usize]) -> Vec<isize> {
    let own = row_major_strides(src);
    let lead = out.len() - src.len();
    (0..out.len())
        .map(|i| match i.checked_sub(lead) {
            Some(j) if src[j] == out[i] => own[j],
            _ => 0,
        })
        .collect()
}

/// An odometer over `dims` carrying one offset per operand; see the module docs.
pub(crate) struct Walk {
    dims: Vec<usize>,
    /// `strides[o][d]`: offset change of operand `o` for one step along dim `d`.
    strides: Vec<Vec<isize>>,
    idx: Vec<usize>,
    offsets: Vec<isize>,
}

impl Walk {
    /// A walk over `dims` for operands with the given strides (one entry per dim each), all
    /// starting at offset 0.
    pub(crate) fn new(dims: &[usize], strides: Vec<Vec<isize>>) -> Self {
        let starts = vec![0; strides.len()];
        Self::with_starts(dims, strides, starts)
    }

    /// Like [`Walk::new`] with explicit offsets of the first position.
    pub(crate) fn with_starts(
        dims: &[usize],
        strides: Vec<Vec<isize>>,
        starts: Vec<isize>,
    ) -> Self {
        Walk {
            dims: dims.to_vec(),
            offsets: starts,
            strides,
            idx: vec![0; dims.len()],
        }
    }

    /// Offset of operand `o` at the current position.
    #[inline]
    pub(crate) fn offset(&self, o: usize) -> usize {
        self.offsets[o] as usize
    }

    /// Moves to the next position in row-major order (after the last one, back to the first).
    #[inline]
    pub(crate) fn advance(&mut self) {
        for d in (0..self.dims.len()).rev() {
            self.idx[d] += 1;
            if self.idx[d] < self.dims[d] {
                for (off, s) in self.offsets.iter_mut().zip(&self.strides) {
                    *off += s[d];
                }
                return;
            }
            // Wrap dim d: undo its idx[d]-1 steps.
            let back = self.dims[d].saturating_sub(1) as isize;
            for (off, s) in self.offsets.iter_mut().zip(&self.strides) {
                *off -= s[d] * back;
            }
            self.idx[d] = 0;
        }
    }
}

/// The offsets of a single-operand view over `dims` (whose element count is known not to
/// overflow), in row-major order of the view.
pub(crate) fn offsets(
    dims: &[usize],
    strides: Vec<isize>,
    start: isize,
) -> impl Iterator<Item = usize> {
    let n: usize = dims.iter().product();
    let mut w = Walk::with_starts(dims, vec![strides], vec![start]);
    (0..n).map(move |_| {
        let o = w.offset(0);
        w.advance();
        o
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_strides_zero_on_stretched_dims() {
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]), vec![0, 1, 0]);
        assert_eq!(broadcast_strides(&[2, 3, 4], &[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(broadcast_strides(&[], &[2, 2]), vec![0, 0]);
    }

    #[test]
    fn broadcast_offsets_repeat_rows() {
        let got: Vec<usize> = offsets(&[2, 3], broadcast_strides(&[3], &[2, 3]), 0).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2]);
        let got: Vec<usize> = offsets(&[2, 3], broadcast_strides(&[2, 1], &[2, 3]), 0).collect();
        assert_eq!(got, vec![0, 0, 0, 1, 1, 1]);
    }

    #[test]
    fn negative_strides_walk_backwards() {
        // Reversing both dims of a 2x3 tensor.
        let got: Vec<usize> = offsets(&[2, 3], vec![-3, -1], 5).collect();
        assert_eq!(got, vec![5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn walk_keeps_one_offset_per_operand_and_wraps_around() {
        // Transposed view (operand 1) walked alongside the identity view (operand 0).
        let mut w = Walk::with_starts(&[2, 2], vec![vec![2, 1], vec![1, 2]], vec![0, 5]);
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push((w.offset(0), w.offset(1)));
            w.advance();
        }
        assert_eq!(seen, vec![(0, 5), (1, 7), (2, 6), (3, 8), (0, 5)]);
    }

    #[test]
    fn rank0_walk_has_one_position() {
        let got: Vec<usize> = offsets(&[], vec![], 0).collect();
        assert_eq!(got, vec![0]);
    }
}
