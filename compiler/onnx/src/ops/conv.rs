//! Conv (2-D only) → IR `conv`. Weight and bias may be computed at run time. Resolves `auto_pad`
//! (NOTSET, VALID, SAME_UPPER, SAME_LOWER) to explicit pads; `kernel_shape`, when given, must match
//! the weight. Rejects 1-D/3-D convolutions, negative pads, non-positive strides/dilations and
//! `SAME_*` padding whose arithmetic overflows (checked: the attributes are untrusted).

use crate::import::{Ctx, Operands};
use crate::node::{invalid, unsupported, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::Conv;
use dync_ir::{NodeId, Op};

/// Reads a 2-entry positive attribute (strides, dilations, kernel_shape) with default 1.
pub fn pair(a: &Attrs, name: &str) -> Result<[usize; 2], NodeError> {
    match a.ints(name)? {
        None => Ok([1, 1]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => invalid!("`{name}` must be two positive integers, got {v:?}"),
    }
}

/// Resolves `auto_pad` and `pads` into [top, left, bottom, right] for a 2-D window op.
pub fn resolve_pads(
    a: &Attrs,
    input_hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> Result<[usize; 4], NodeError> {
    let auto = a.string_or("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" => match a.ints("pads")? {
            None => Ok([0; 4]),
            Some(p) if p.len() == 4 => {
                let mut out = [0usize; 4];
                for (o, &v) in out.iter_mut().zip(&p) {
                    *o = usize::try_from(v)
                        .map_err(|_| NodeError::Invalid(format!("negative pads {p:?}")))?;
                }
                Ok(out)
            }
            Some(p) => {
                if p.len() % 2 == 0 && p.len() != 4 {
                    unsupported!("{}-D window (only 2-D)", p.len() / 2);
                }
                invalid!("`pads` must have 4 entries, got {p:?}")
            }
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = [0usize; 4];
            for i in 0..2 {
                let o = input_hw[i].div_ceil(strides[i]);
                // Attributes are untrusted: a huge dilation or stride must not overflow.
                let need = kernel[i]
                    .checked_sub(1)
                    .and_then(|k| k.checked_mul(dilations[i]))
                    .and_then(|w| w.checked_add(1))
                    .and_then(|w| o.saturating_sub(1).checked_mul(strides[i])?.checked_add(w))
                    .ok_or_else(|| {
                        NodeError::Invalid(format!(
                            "auto_pad {auto}: the padding for kernel {kernel:?}, strides \
                             {strides:?} and dilations {dilations:?} overflows"
                        ))
                    })?
                    .saturating_sub(input_hw[i]);
                let (small, big) = (need / 2, need - need / 2);
                if auto == "SAME_UPPER" {
                    out[i] = small;
                    out[i + 2] = big;
                } else {
                    out[i] = big;
                    out[i + 2] = small;
                }
            }
            Ok(out)
        }
        other => invalid!("unknown auto_pad {other:?}"),
    }
}

pub fn import(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(2, 3)?;
    let a = Attrs::new(n);
    let (x, w) = (ins.get(0)?, ins.get(1)?);
    let (xt, wt) = (cx.ty(x).clone(), cx.ty(w).clone());
    if xt.rank() != 4 || wt.rank() != 4 {
        unsupported!("{}-D convolution (only 2-D)", xt.rank().saturating_sub(2));
    }
    let kernel = [wt.shape[2], wt.shape[3]];
    if let Some(k) = a.ints("kernel_shape")? {
        if k.len() != 2 || k[0] as usize != kernel[0] || k[1] as usize != kernel[1] {
            invalid!("kernel_shape {k:?} does not match the weight {wt}");
        }
    }
    let strides = pair(&a, "strides")?;
    let dilations = pair(&a, "dilations")?;
    if kernel.contains(&0) {
        invalid!("weight {wt} has an empty kernel");
    }
    let pads = resolve_pads(&a, [xt.shape[2], xt.shape[3]], kernel, strides, dilations)?;
    let group = a.int_or("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| NodeError::Invalid(format!("group must be positive, got {group}")))?;
    let op = Op::Conv(Conv {
        strides,
        pads,
        dilations,
        group,
        clamp: None,
        residual: false,
        act: None,
        in_scale: false,
    });
    Ok(vec![cx.add(op, &ins.present())?])
}
