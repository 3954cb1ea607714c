//! `einsum`: Einstein summation over any number of f32 operands, e.g. DyNet's kernel mixing
//! `bog,ogcij->bocij`. Supports explicit (`->`) and implicit outputs, repeated labels within an
//! operand (diagonals), and `...` (broadcast dims, aligned at the right). Rejects labels whose
//! sizes disagree.

use super::{want_f32, Arity, OpDef};
use crate::attrs::{AttrReader, AttrWriter};
use crate::bail_shape;
use crate::error::ShapeError;
use crate::tensor::{numel, TensorType};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Einsum {
    pub equation: String,
}

/// An equation resolved against operand shapes: one label list per operand and for the output
/// (ellipsis dims replaced by private labels), and every label's extent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EinsumSpec {
    pub inputs: Vec<Vec<char>>,
    pub output: Vec<char>,
    pub sizes: BTreeMap<char, usize>,
}

/// Private labels standing for ellipsis dims (never valid equation letters).
const ELLIPSIS_LABELS: &[char] = &['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

fn split_term(term: &str) -> Result<(Vec<char>, Option<usize>), ShapeError> {
    // Returns the letters with the ellipsis position (index into letters) if present.
    let t = term.trim();
    let mut letters = Vec::new();
    let mut ell = None;
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if ell.is_some() {
                bail_shape!("einsum term `{t}` has two ellipses");
            }
            ell = Some(letters.len());
            rest = r;
            continue;
        }
        let mut chars = rest.chars();
        let c = chars.next().unwrap_or(' ');
        if !c.is_ascii_alphabetic() {
            bail_shape!("einsum term `{t}` has invalid label `{c}`");
        }
        letters.push(c);
        rest = chars.as_str();
    }
    Ok((letters, ell))
}

impl EinsumSpec {
    /// Resolves `equation` against the operand shapes.
    pub fn new(equation: &str, shapes: &[&[usize]]) -> Result<Self, ShapeError> {
        let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        let terms: Vec<&str> = lhs.split(',').collect();
        if terms.len() != shapes.len() {
            bail_shape!(
                "einsum `{equation}` names {} operands, got {}",
                terms.len(),
                shapes.len()
            );
        }
        let mut sizes = BTreeMap::new();
        let mut inputs = Vec::new();
        let mut ell_rank = 0usize;
        let mut parsed = Vec::new();
        for (term, shape) in terms.iter().zip(shapes) {
            let (letters, ell) = split_term(term)?;
            let ell_dims = match ell {
                Some(_) => shape.len().checked_sub(letters.len()).ok_or_else(|| {
                    ShapeError::invalid(format!(
                        "einsum term `{term}` has more labels than rank {}",
                        shape.len()
                    ))
                })?,
                None => {
                    if letters.len() != shape.len() {
                        bail_shape!(
                            "einsum term `{term}` has {} labels, operand has rank {}",
                            letters.len(),
                            shape.len()
                        );
                    }
                    0
                }
            };
            if ell_dims > ELLIPSIS_LABELS.len() {
                bail_shape!("einsum ellipsis covers too many dims");
            }
            ell_rank = ell_rank.max(ell_dims);
            parsed.push((letters, ell, ell_dims));
        }
        let mut ell_sizes = vec![1usize; ell_rank];
        for ((letters, ell, ell_dims), shape) in parsed.iter().zip(shapes) {
            let mut labels = letters.clone();
            if let Some(pos) = ell {
                let priv_labels: Vec<char> =
                    ELLIPSIS_LABELS[ell_rank - ell_dims..ell_rank].to_vec();
                labels.splice(pos..pos, priv_labels);
            }
            for (&l, &d) in labels.iter().zip(shape.iter()) {
                if let Some(i) = ELLIPSIS_LABELS.iter().position(|&e| e == l) {
                    // Ellipsis dims broadcast: size 1 stretches to the others.
                    match (ell_sizes[i], d) {
                        (a, b) if a == b => {}
                        (1, b) => ell_sizes[i] = b,
                        (_, 1) => {}
                        (a, b) => bail_shape!("einsum ellipsis dims {a} and {b} do not broadcast"),
                    }
                    continue;
                }
                match sizes.insert(l, d) {
                    Some(prev) if prev != d => {
                        bail_shape!("einsum label `{l}` has sizes {prev} and {d}")
                    }
                    _ => {}
                }
            }
            inputs.push(labels);
        }
        for (i, &d) in ell_sizes.iter().enumerate() {
            sizes.insert(ELLIPSIS_LABELS[i], d);
        }
        let ell_labels: Vec<char> = ELLIPSIS_LABELS[..ell_rank].to_vec();
        let output = match rhs {
            Some(r) => {
                let (letters, ell) = split_term(&r)?;
                let mut out = letters;
                if let Some(pos) = ell {
                    out.splice(pos..pos, ell_labels.clone());
                } else if ell_rank > 0 && ell_sizes.iter().any(|&d| d != 1) {
                    bail_shape!("einsum output drops the ellipsis dims");
                }
                for (i, l) in out.iter().enumerate() {
                    if !sizes.contains_key(l) {
                        bail_shape!("einsum output label `{l}` appears in no operand");
                    }
                    if out[..i].contains(l) {
                        bail_shape!("einsum output label `{l}` is repeated");
                    }
                }
                out
            }
            None => {
                // Implicit output: the ellipsis dims, then labels used exactly once, sorted.
                let mut counts: BTreeMap<char, usize> = BTreeMap::new();
                for l in inputs.iter().flatten() {
                    *counts.entry(*l).or_default() += 1;
                }
                let mut out = ell_labels.clone();
                out.extend(
                    counts
                        .iter()
                        .filter(|(l, &c)| c == 1 && !ELLIPSIS_LABELS.contains(l))
                        .map(|(l, _)| *l),
                );
                out
            }
        };
        let spec = EinsumSpec {
            inputs,
            output,
            sizes,
        };
        numel(&spec.out_shape())?;
        Ok(spec)
    }

    pub fn out_shape(&self) -> Vec<usize> {
        self.output.iter().map(|l| self.sizes[l]).collect()
    }

    /// Multiply-adds of a direct evaluation: the product of all label extents.
    pub fn macs(&self) -> u64 {
        self.sizes
            .values()
            .fold(1u64, |a, &d| a.saturating_mul(d as u64))
    }
}

impl OpDef for Einsum {
    const NAME: &'static str = "einsum";
    fn arity(&self) -> Arity {
        Arity::AtLeast(1)
    }
    fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType, ShapeError> {
        for t in inputs {
            want_f32(t, "einsum operand")?;
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
        Ok(TensorType::f32(
            EinsumSpec::new(&self.equation, &shapes)?.out_shape(),
        ))
    }
    fn write_attrs(&self, w: &mut AttrWriter) {
        w.str("equation", &self.equation);
    }
    fn read_attrs(r: &mut AttrReader) -> Result<Self, String> {
        Ok(Einsum {
            equation: r.str("equation")?,
        })
    }
    fn macs(&self, inputs: &[&TensorType], _: &TensorType) -> u64 {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
        EinsumSpec::new(&self.equation, &shapes)
            .map(|s| s.macs())
            .unwrap_or(0)
    }
}
