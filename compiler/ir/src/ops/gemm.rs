//! `gemm`: Y = alpha·op(A)·op(B) + beta·C, with op = transpose when `trans_a`/`trans_b`.
//! A and B are rank 2; the optional C broadcasts (unidirectionally) to [M, N]. f32 only.

use super::{want_f32, want_rank, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::ops::broadcast_shapes;
use crate::tensor::TensorType;

#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Gemm {
    /// (m, k, n) for operand shapes `a` and `b` (rank 2, checked by `infer`).
    pub fn mkn(&self, a: &[usize], b: &[usize]) -> (usize, usize, usize) {
        let (m, k) = if self.trans_a {
            (a[1], a[0])
        } else {
            (a[0], a[1])
        };
        let n = if self.trans_b { b[0] } else { b[1] };
        (m, k, n)
    }
}

impl OpDef for Gemm {
    const NAME: &'static str = "gemm";
    fn arity(&self) -> Arity {
        Arity::Range(2, 3)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let (a, b) = (inputs[0], inputs[1]);
        want_f32(a, "gemm a")?;
        want_f32(b, "gemm b")?;
        want_rank(a, 2, "gemm a")?;
        want_rank(b, 2, "gemm b")?;
        let (m, k, n) = self.mkn(&a.shape, &b.shape);
        let kb = if self.trans_b { b.shape[1] } else { b.shape[0] };
        if k != kb {
            bail_shape!(
                "gemm inner dims differ: {a} x {b} (trans_a={}, trans_b={})",
                self.trans_a,
                self.trans_b
            );
        }
        if let Some(c) = inputs.get(2) {
            want_f32(c, "gemm c")?;
            if c.rank() > 2 || broadcast_shapes(&c.shape, &[m, n])? != [m, n] {
                bail_shape!("gemm c {c} does not broadcast to [{m},{n}]");
            }
        }
        Ok(TensorType::f32([m, n]))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.float("alpha", self.alpha);
        w.float("beta", self.beta);
        w.bool("trans_a", self.trans_a);
        w.bool("trans_b", self.trans_b);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Gemm {
            alpha: r.float("alpha")?,
            beta: r.float("beta")?,
            trans_a: r.bool("trans_a")?,
            trans_b: r.bool("trans_b")?,
        })
    }
    fn macs(&self, inputs: &[&TensorType], _: &TensorType) -> u64 {
        let (m, k, n) = self.mkn(&inputs[0].shape, &inputs[1].shape);
        (m as u64).saturating_mul(k as u64).saturating_mul(n as u64)
    }
}
