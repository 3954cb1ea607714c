//! `matmul`: numpy matmul. Rank-1 operands are promoted (a: prepend 1, b: append 1, then the
//! promoted dim is dropped); batch dims broadcast. f32 only.

use super::{want_f32, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::ops::broadcast_shapes;
use crate::tensor::{numel, TensorType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatMul;

/// Geometry of a numpy matmul: result shape, broadcast batch shape, and m, k, n.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatMulShape {
    pub out: Vec<usize>,
    pub batch: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// Computes the numpy matmul geometry of operands shaped `a` and `b`.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<MatMulShape, ShapeError> {
    if a.is_empty() || b.is_empty() {
        bail_shape!("matmul operands must have rank >= 1, got {a:?} and {b:?}");
    }
    let pa: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let pb: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (pa[pa.len() - 2], pa[pa.len() - 1]);
    let (k2, n) = (pb[pb.len() - 2], pb[pb.len() - 1]);
    if k != k2 {
        bail_shape!("matmul inner dims differ: {a:?} x {b:?}");
    }
    let batch = broadcast_shapes(&pa[..pa.len() - 2], &pb[..pb.len() - 2])?;
    let mut out = batch.clone();
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    numel(&out)?;
    Ok(MatMulShape {
        out,
        batch,
        m,
        k,
        n,
    })
}

impl OpDef for MatMul {
    const NAME: &'static str = "matmul";
    fn arity(&self) -> Arity {
        Arity::Exact(2)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        want_f32(inputs[0], "matmul a")?;
        want_f32(inputs[1], "matmul b")?;
        Ok(TensorType::f32(
            matmul_shape(&inputs[0].shape, &inputs[1].shape)?.out,
        ))
    }
    fn write_attrs(&self, _: &mut AttrWriter) {}
    fn read_attrs(_: &mut AttrReader) -> Result<Self, String> {
        Ok(MatMul)
    }
    fn macs(&self, inputs: &[&TensorType], _: &TensorType) -> u64 {
        match matmul_shape(&inputs[0].shape, &inputs[1].shape) {
            Ok(s) => s
                .batch
                .iter()
                .chain([&s.m, &s.k, &s.n])
                .fold(1u64, |a, &d| a.saturating_mul(d as u64)),
            Err(_) => 0,
        }
    }
}
