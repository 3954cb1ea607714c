//! `reduce`: mean/sum/max/min/prod over a sorted, duplicate-free list of axes, keeping them as
//! size-1 dims when `keepdims`. An empty axis list reduces nothing (ONNX's "all axes" default is
//! made explicit at import). Mean is f32 only; the others also take i64/i32.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;
use crate::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
}

impl ReduceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Mean => "mean",
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "max",
            ReduceKind::Min => "min",
            ReduceKind::Prod => "prod",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "mean" => ReduceKind::Mean,
            "sum" => ReduceKind::Sum,
            "max" => ReduceKind::Max,
            "min" => ReduceKind::Min,
            "prod" => ReduceKind::Prod,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub axes: Vec<usize>,
    pub keepdims: bool,
}

impl OpDef for Reduce {
    const NAME: &'static str = "reduce";
    fn arity(&self) -> Arity {
        Arity::Exact(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let x = inputs[0];
        if x.dtype == DType::Bool || (self.kind == ReduceKind::Mean && x.dtype != DType::F32) {
            bail_shape!("reduce {} is not defined on {}", self.kind.name(), x.dtype);
        }
        if !self.axes.windows(2).all(|w| w[0] < w[1]) {
            bail_shape!("reduce axes {:?} must be sorted and distinct", self.axes);
        }
        if self.axes.last().is_some_and(|&a| a >= x.rank()) {
            bail_shape!("reduce axes {:?} out of range for {x}", self.axes);
        }
        let mut shape = Vec::new();
        for (i, &d) in x.shape.iter().enumerate() {
            if !self.axes.contains(&i) {
                shape.push(d);
            } else if self.keepdims {
                shape.push(1);
            } else if d == 0 && matches!(self.kind, ReduceKind::Max | ReduceKind::Min) {
                bail_shape!("reduce {} over an empty axis", self.kind.name());
            }
        }
        Ok(TensorType::new(x.dtype, shape))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ident("kind", self.kind.name());
        w.usizes("axes", &self.axes);
        w.bool("keepdims", self.keepdims);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Reduce {
            kind: r.parsed("kind", ReduceKind::from_name)?,
            axes: r.usizes("axes")?,
            keepdims: r.bool("keepdims")?,
        })
    }
}
