//! `transpose`: permutes dims; output dim i is input dim `perm[i]`. `perm` must be a permutation
//! of 0..rank.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

impl OpDef for Transpose {
    const NAME: &'static str = "transpose";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        let mut seen = vec![false; x.rank()];
        if self.perm.len() != x.rank() {
            bail_shape!("perm {:?} does not match rank of {x}", self.perm);
        }
        for &p in &self.perm {
            if p >= x.rank() || seen[p] {
                bail_shape!(
                    "perm {:?} is not a permutation of 0..{}",
                    self.perm,
                    x.rank()
                );
            }
            seen[p] = true;
        }
        Ok(TensorType::new(
            x.dtype,
            self.perm.iter().map(|&p| x.shape[p]).collect::<Vec<_>>(),
        ))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.usizes("perm", &self.perm);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Transpose {
            perm: r.usizes("perm")?,
        })
    }
}
