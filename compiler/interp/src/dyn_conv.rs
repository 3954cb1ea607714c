//! `dyn_conv`: per sample, mixes the kernel W̃[o] = Σᵢ c[o,i]·bank[i,o] (and the bias bank) with
//! f64 accumulation rounded once to f32 — exactly what the exported graph computes with its
//! MatMul/Einsum — then convolves that sample (scaled per channel first, with `in_scale`)
//! with `conv`, the summed bias and the sample's residual (the fused epilogue is `conv`'s).

use crate::conv::conv;
use crate::data::{alloc, dims, elems, tensor};
use crate::error::EvalError;
use dync_ir::ops::{Conv, DynConv};
use dync_ir::{Tensor, TensorType};

pub(crate) fn dyn_conv(
    op: &DynConv,
    inputs: &[&Tensor],
    out: &TensorType,
) -> Result<Tensor, EvalError> {
    let x = elems::<f32>(inputs[0], "dyn_conv")?;
    let coeff = elems::<f32>(inputs[1], "dyn_conv")?;
    let bank = elems::<f32>(inputs[2], "dyn_conv")?;
    let bias = op
        .bias_index()
        .map(|i| elems::<f32>(inputs[i], "dyn_conv"))
        .transpose()?;
    let bias_bank = op
        .bias_bank_index()
        .map(|i| elems::<f32>(inputs[i], "dyn_conv"))
        .transpose()?;
    let residual = op
        .residual_index()
        .map(|i| elems::<f32>(inputs[i], "dyn_conv"))
        .transpose()?;
    let scale = op
        .scale_index()
        .map(|i| elems::<f32>(inputs[i], "dyn_conv"))
        .transpose()?;
    let [n, c, h, w] = dims(inputs[0].shape())?;
    let [g, o, cg, kh, kw] = dims(inputs[2].shape())?;
    let [_, _, oh, ow] = dims(&out.shape)?;
    let per_channel = inputs[1].shape().len() == 3;
    let k = cg * kh * kw;
    let conv_op = Conv {
        strides: op.strides,
        pads: op.pads,
        dilations: op.dilations,
        group: op.group,
        clamp: op.clamp,
        residual: op.residual,
        act: op.act,
        in_scale: op.in_scale,
    };
    let sample_out = TensorType::f32([1, o, oh, ow]);
    let mut y = alloc(n * o * oh * ow, 0f32)?;
    let mut kernel = alloc(o * k, 0f32)?;
    let mut b = alloc(o, 0f32)?;
    for s in 0..n {
        // c[o, i] of this sample.
        let coef = |oc: usize, i: usize| -> f64 {
            let idx = if per_channel {
                (s * o + oc) * g + i
            } else {
                s * g + i
            };
            f64::from(coeff[idx])
        };
        for oc in 0..o {
            for (e, dst) in kernel[oc * k..][..k].iter_mut().enumerate() {
                *dst = (0..g)
                    .map(|i| coef(oc, i) * f64::from(bank[(i * o + oc) * k + e]))
                    .sum::<f64>() as f32;
            }
            let mixed = bias_bank.map_or(0.0, |bb| {
                (0..g)
                    .map(|i| coef(oc, i) * f64::from(bb[i * o + oc]))
                    .sum::<f64>()
            });
            b[oc] = (mixed + bias.map_or(0.0, |v| f64::from(v[oc]))) as f32;
        }
        let xs = tensor(&[1, c, h, w], x[s * c * h * w..][..c * h * w].to_vec())?;
        let ws = tensor(&[o, cg, kh, kw], kernel.clone())?;
        let bs = tensor(&[o], b.clone())?;
        let rs = residual
            .map(|r| {
                tensor(
                    &[1, o, oh, ow],
                    r[s * o * oh * ow..][..o * oh * ow].to_vec(),
                )
            })
            .transpose()?;
        let ss = scale
            .map(|sc| tensor(&[1, c, 1, 1], sc[s * c..][..c].to_vec()))
            .transpose()?;
        let mut operands = vec![&xs, &ws, &bs];
        operands.extend(rs.as_ref());
        operands.extend(ss.as_ref());
        let ys = conv(&conv_op, &operands, &sample_out)?;
        let ys = elems::<f32>(&ys, "dyn_conv")?;
        y[s * ys.len()..][..ys.len()].copy_from_slice(ys);
    }
    tensor(&out.shape, y)
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use dync_ir::ops::{Act, Binary, BinaryKind, Clamp, Conv, DynConv, Unary, UnaryKind};
    use dync_ir::Op;

    /// The fused epilogue (residual, clamp, SiLU) equals the unfused ops after the dyn_conv,
    /// bit for bit, each sample reading its own residual.
    #[test]
    fn fused_epilogue_equals_the_unfused_ops() {
        let (n, c, o, g) = (2usize, 2usize, 3usize, 2usize);
        let x = iota(&[n, c, 3, 3]);
        let coeff = f32t(&[n, g], &[0.5, -1.0, 2.0, 0.25]);
        let bank = f32t(
            &[g, o, c, 1, 1],
            &(0..g * o * c)
                .map(|i| (i as f32 - 5.0) / 9.0)
                .collect::<Vec<_>>(),
        );
        let r = f32t(
            &[n, o, 3, 3],
            &(0..n * o * 9)
                .map(|i| (i % 11) as f32 - 5.0)
                .collect::<Vec<_>>(),
        );
        let base = DynConv {
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            group: 1,
            bias: false,
            bias_bank: false,
            clamp: None,
            residual: false,
            act: None,
            in_scale: false,
        };
        let plain = run_op(Op::DynConv(base.clone()), &[&x, &coeff, &bank]);
        let add = Op::Binary(Binary {
            kind: BinaryKind::Add,
        });
        let sum = run_op(add, &[&plain, &r]);
        let clip = Op::Unary(Unary {
            kind: UnaryKind::Clip {
                min: -2.0,
                max: 3.0,
            },
        });
        let clipped = run_op(clip, &[&sum]);
        let sig = run_op(
            Op::Unary(Unary {
                kind: UnaryKind::Sigmoid,
            }),
            &[&clipped],
        );
        let mul = Op::Binary(Binary {
            kind: BinaryKind::Mul,
        });
        let want = run_op(mul, &[&clipped, &sig]);
        let fused = DynConv {
            clamp: Some(Clamp { lo: -2.0, hi: 3.0 }),
            residual: true,
            act: Some(Act::Silu),
            ..base
        };
        let got = run_op(Op::DynConv(fused), &[&x, &coeff, &bank, &r]);
        assert_eq!(f32s(&got), f32s(&want));
    }

    /// A dyn_conv equals mixing by hand and running `conv` on each sample.
    #[test]
    fn matches_mix_then_conv() {
        let (n, c, o, g, k) = (2usize, 4usize, 6usize, 3usize, 3usize);
        let x = iota(&[n, c, 5, 5]);
        let bank: Vec<f32> = (0..g * o * 2 * k * k)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let coeff: Vec<f32> = (0..n * o * g).map(|i| (i % 5) as f32 / 4.0).collect();
        let bias: Vec<f32> = (0..o).map(|i| i as f32).collect();
        let op = DynConv {
            strides: [1, 1],
            pads: [1, 1, 1, 1],
            dilations: [1, 1],
            group: 2,
            bias: true,
            bias_bank: false,
            clamp: None,
            residual: false,
            act: None,
            in_scale: false,
        };
        let got = run_op(
            Op::DynConv(op),
            &[
                &x,
                &f32t(&[n, o, g], &coeff),
                &f32t(&[g, o, 2, k, k], &bank),
                &f32t(&[o], &bias),
            ],
        );
        for s in 0..n {
            let mut w = vec![0f32; o * 2 * k * k];
            for oc in 0..o {
                for e in 0..2 * k * k {
                    w[oc * 2 * k * k + e] = (0..g)
                        .map(|i| {
                            coeff[(s * o + oc) * g + i] as f64
                                * bank[(i * o + oc) * 2 * k * k + e] as f64
                        })
                        .sum::<f64>() as f32;
                }
            }
            let xs = f32t(&[1, c, 5, 5], &f32s(&x)[s * c * 25..][..c * 25]);
            let conv = Op::Conv(Conv {
                strides: [1, 1],
                pads: [1, 1, 1, 1],
                dilations: [1, 1],
                group: 2,
                clamp: None,
                residual: false,
                act: None,
                in_scale: false,
            });
            let want = run_op(conv, &[&xs, &f32t(&[o, 2, k, k], &w), &f32t(&[o], &bias)]);
            assert_close(&f32s(&got)[s * o * 25..][..o * 25], &f32s(&want), 1e-5);
        }
    }
}
