//! `binary`: elementwise arithmetic with numpy (multidirectional) broadcasting. Both operands
//! have the same dtype (f32, i64 or i32); integer division truncates toward zero and division
//! by zero is an evaluation error.

use super::{Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::TensorType;
use crate::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
}

impl BinaryKind {
    pub fn name(self) -> &'static str {
        match self {
            BinaryKind::Add => "add",
            BinaryKind::Sub => "sub",
            BinaryKind::Mul => "mul",
            BinaryKind::Div => "div",
            BinaryKind::Pow => "pow",
            BinaryKind::Max => "max",
            BinaryKind::Min => "min",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "add" => BinaryKind::Add,
            "sub" => BinaryKind::Sub,
            "mul" => BinaryKind::Mul,
            "div" => BinaryKind::Div,
            "pow" => BinaryKind::Pow,
            "max" => BinaryKind::Max,
            "min" => BinaryKind::Min,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binary {
    pub kind: BinaryKind,
}

/// Numpy broadcasting of two shapes, aligned at the trailing dim.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, ShapeError> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i < r - a.len() {
            1
        } else {
            a[i - (r - a.len())]
        };
        let db = if i < r - b.len() {
            1
        } else {
            b[i - (r - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bail_shape!("shapes {a:?} and {b:?} do not broadcast"),
        };
    }
    Ok(out)
}

impl OpDef for Binary {
    const NAME: &'static str = "binary";
    fn arity(&self) -> Arity {
        Arity::Exact(2)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        let (a, b) = (inputs[0], inputs[1]);
        if a.dtype != b.dtype {
            bail_shape!("operands have different types {} and {}", a.dtype, b.dtype);
        }
        if a.dtype == DType::Bool {
            bail_shape!("{} is not defined on bool", self.kind.name());
        }
        Ok(TensorType::new(
            a.dtype,
            broadcast_shapes(&a.shape, &b.shape)?,
        ))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.ident("kind", self.kind.name());
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Binary {
            kind: r.parsed("kind", BinaryKind::from_name)?,
        })
    }
}
