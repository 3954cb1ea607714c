//! `fold_bn`: folds an inference BatchNormalization into the convolution that feeds it.
//!
//! With s = scale / sqrt(var + eps), BN(y) = s·y + (bias − s·mean) per output channel:
//! - `conv` with a constant weight (and constant or absent bias): W' = s·W, b' = s·b + (bias − s·mean).
//! - `dyn_conv`: every kernel of the bank is scaled (s·Wᵢ — mixing is linear, so
//!   conv(x, Σ cᵢ·s·Wᵢ) = s·conv(x, Σ cᵢ·Wᵢ)), the static bias becomes s·b + (bias − s·mean), and a
//!   bias bank is scaled too.
//!
//! Matches only when the BN is the conv's sole user and every BN parameter is constant; anything
//! else is left alone (a standalone `batch_norm` is still executable).

use crate::error::PassError;
use crate::manager::{Pass, PassCx};
use dync_ir::ops::{BatchNorm, DynConv};
use dync_ir::{Graph, NodeId, Op, Tensor};

pub struct FoldBn;

/// Per-channel (scale s, shift t) of a BN with constant parameters: BN(y) = s·y + t.
fn affine(g: &Graph, bn: &BatchNorm, params: &[NodeId]) -> Option<(Vec<f32>, Vec<f32>)> {
    let v: Vec<&[f32]> = params
        .iter()
        .map(|&p| g.const_value(p).and_then(Tensor::as_f32))
        .collect::<Option<_>>()?;
    let (scale, bias, mean, var) = (v[0], v[1], v[2], v[3]);
    let s: Vec<f32> = scale
        .iter()
        .zip(var)
        .map(|(&sc, &va)| (sc as f64 / (va as f64 + bn.epsilon as f64).sqrt()) as f32)
        .collect();
    let t = bias
        .iter()
        .zip(mean)
        .zip(&s)
        .map(|((&b, &m), &s)| (b as f64 - s as f64 * m as f64) as f32)
        .collect();
    Some((s, t))
}

/// `w` scaled by `s[o]`, where `o` is the index of the dim `axis` (of extent s.len()).
fn scale_along(w: &Tensor, s: &[f32], axis: usize) -> Option<Tensor> {
    let data = w.as_f32()?;
    let shape = w.shape();
    let inner: usize = shape[axis + 1..].iter().product();
    let o = shape[axis];
    if o != s.len() {
        return None;
    }
    if data.is_empty() {
        return Some(w.clone());
    }
    // Row-major: consecutive runs of `inner` elements share one index along `axis`, which
    // cycles through 0..o.
    let mut scaled = Vec::with_capacity(data.len());
    for (run, &sc) in data.chunks_exact(inner).zip(s.iter().cycle()) {
        scaled.extend(run.iter().map(|&x| x * sc));
    }
    Tensor::from_f32(shape.to_vec(), scaled).ok()
}

impl Pass for FoldBn {
    fn name(&self) -> &'static str {
        "fold_bn"
    }
    fn run(&self, g: &mut Graph, _cx: &mut PassCx) -> Result<bool, PassError> {
        let bns: Vec<NodeId> = g
            .node_ids()
            .filter(|&n| matches!(g.node(n).op, Op::BatchNorm(_)))
            .collect();
        let mut changed = false;
        for bn_id in bns {
            let Op::BatchNorm(bn) = g.node(bn_id).op.clone() else {
                continue;
            };
            let operands = g.operands(bn_id);
            let producer = operands[0];
            if g.users(producer).len() != 1 || super::is_output(g, producer) {
                continue;
            }
            let Some((s, t)) = affine(g, &bn, &operands[1..]) else {
                continue;
            };
            let pops = g.operands(producer);
            let origin = g.node(producer).origin.clone();
            let new = match g.node(producer).op.clone() {
                Op::Conv(conv) => {
                    let Some(w) = g.const_value(pops[1]).and_then(|w| scale_along(w, &s, 0)) else {
                        continue;
                    };
                    let old_bias = match pops.get(2) {
                        Some(&b) => match g.const_value(b).and_then(Tensor::as_f32) {
                            Some(b) => b.to_vec(),
                            None => continue,
                        },
                        None => vec![0.0; s.len()],
                    };
                    let bias: Vec<f32> = old_bias
                        .iter()
                        .zip(&s)
                        .zip(&t)
                        .map(|((&b, &s), &t)| b * s + t)
                        .collect();
                    let w = g.add_const(w, origin.clone());
                    let b = g.add_const(bias_tensor(bias)?, origin.clone());
                    g.add(Op::Conv(conv), &[pops[0], w, b], origin)
                }
                Op::DynConv(dc) => {
                    let Some(bank) = g.const_value(pops[2]).and_then(|w| scale_along(w, &s, 1))
                    else {
                        continue;
                    };
                    let old_bias = match dc.bias_index() {
                        Some(i) => match g.const_value(pops[i]).and_then(Tensor::as_f32) {
                            Some(b) => b.to_vec(),
                            None => continue,
                        },
                        None => vec![0.0; s.len()],
                    };
                    let bias_bank = match dc.bias_bank_index() {
                        Some(i) => match g.const_value(pops[i]).and_then(|b| scale_along(b, &s, 1))
                        {
                            Some(b) => Some(b),
                            None => continue,
                        },
                        None => None,
                    };
                    let bias: Vec<f32> = old_bias
                        .iter()
                        .zip(&s)
                        .zip(&t)
                        .map(|((&b, &s), &t)| b * s + t)
                        .collect();
                    let mut operands = vec![pops[0], pops[1], g.add_const(bank, origin.clone())];
                    operands.push(g.add_const(bias_tensor(bias)?, origin.clone()));
                    if let Some(bb) = bias_bank {
                        operands.push(g.add_const(bb, origin.clone()));
                    }
                    let op = DynConv { bias: true, ..dc };
                    g.add(Op::DynConv(op), &operands, origin)
                }
                _ => continue,
            };
            let new = new.map_err(|e| PassError::Rewrite {
                pass: "fold_bn",
                origin: g.node(bn_id).origin.clone().unwrap_or_default(),
                message: e.to_string(),
            })?;
            g.replace_uses(bn_id, new);
            changed = true;
        }
        Ok(changed)
    }
}

fn bias_tensor(v: Vec<f32>) -> Result<Tensor, PassError> {
    Tensor::from_f32([v.len()], v).map_err(|e| PassError::Rewrite {
        pass: "fold_bn",
        origin: String::new(),
        message: e.to_string(),
    })
}
