//! AveragePool, MaxPool (2-D) → IR `avg_pool`/`max_pool`; GlobalAveragePool → IR `reduce` mean
//! over the spatial axes (keepdims); GlobalMaxPool → `reduce` max. Rejects MaxPool's Indices
//! output, storage_order=1, and AveragePool dilations other than 1.

use super::conv::{pair, resolve_pads};
use crate::import::{Ctx, Operands};
use crate::node::{invalid, unsupported, Attrs, NodeError};
use crate::proto::NodeProto;
use dync_ir::ops::{AvgPool, MaxPool, Reduce, ReduceKind};
use dync_ir::{NodeId, Op};

struct Window {
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
    ceil_mode: bool,
}

fn window(cx: &Ctx, n: &NodeProto, x: NodeId) -> Result<Window, NodeError> {
    let a = Attrs::new(n);
    let xt = cx.ty(x);
    if xt.rank() != 4 {
        unsupported!("{}-D pooling (only 2-D)", xt.rank().saturating_sub(2));
    }
    let Some(k) = a.ints("kernel_shape")? else {
        invalid!("attribute `kernel_shape` is required")
    };
    if k.len() != 2 || k.iter().any(|&v| v <= 0) {
        invalid!("kernel_shape must be two positive integers, got {k:?}");
    }
    let kernel = [k[0] as usize, k[1] as usize];
    let strides = pair(&a, "strides")?;
    let dilations = pair(&a, "dilations")?;
    if a.int_or("storage_order", 0)? != 0 {
        unsupported!("storage_order=1");
    }
    let pads = resolve_pads(&a, [xt.shape[2], xt.shape[3]], kernel, strides, dilations)?;
    Ok(Window {
        kernel,
        strides,
        dilations,
        pads,
        ceil_mode: a.flag("ceil_mode", false)?,
    })
}

pub fn import_average(
    cx: &mut Ctx,
    n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let x = ins.get(0)?;
    let w = window(cx, n, x)?;
    if w.dilations != [1, 1] {
        unsupported!("AveragePool dilations {:?}", w.dilations);
    }
    let op = Op::AvgPool(AvgPool {
        kernel: w.kernel,
        strides: w.strides,
        pads: w.pads,
        ceil_mode: w.ceil_mode,
        count_include_pad: Attrs::new(n).flag("count_include_pad", false)?,
    });
    Ok(vec![cx.add(op, &[x])?])
}

pub fn import_max(cx: &mut Ctx, n: &NodeProto, ins: &Operands) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let x = ins.get(0)?;
    let w = window(cx, n, x)?;
    let op = Op::MaxPool(MaxPool {
        kernel: w.kernel,
        strides: w.strides,
        pads: w.pads,
        dilations: w.dilations,
        ceil_mode: w.ceil_mode,
    });
    // Only output 0 is provided; a used Indices output is reported by the importer.
    Ok(vec![cx.add(op, &[x])?])
}

fn global(cx: &mut Ctx, ins: &Operands, kind: ReduceKind) -> Result<Vec<NodeId>, NodeError> {
    ins.expect(1, 1)?;
    let x = ins.get(0)?;
    let rank = cx.ty(x).rank();
    if rank < 3 {
        invalid!("input must have rank >= 3, got {}", cx.ty(x));
    }
    let op = Op::Reduce(Reduce {
        kind,
        axes: (2..rank).collect(),
        keepdims: true,
    });
    Ok(vec![cx.add(op, &[x])?])
}

pub fn import_global_average(
    cx: &mut Ctx,
    _n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    global(cx, ins, ReduceKind::Mean)
}

pub fn import_global_max(
    cx: &mut Ctx,
    _n: &NodeProto,
    ins: &Operands,
) -> Result<Vec<NodeId>, NodeError> {
    global(cx, ins, ReduceKind::Max)
}
