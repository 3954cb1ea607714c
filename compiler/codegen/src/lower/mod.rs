//! Lowering: one Cranelift function ("kernel") per IR node, fully specialized on the node's
//! static shapes and attributes. `lower/<op>.rs` mirrors `ir/ops/<op>.rs`; [`lower`] dispatches
//! by an exhaustive match on [`Op`], so a new op does not compile until it is lowered here.
//!
//! Shared machinery: [`kernel`] (the builder: buffers, checked accesses, loops, faults),
//! [`nest`] (strided loop nests with 4-wide vectorization of the innermost dim), [`window`]
//! (the interior/border split of sliding windows, for conv and pooling) and [`math`] (inline
//! exp and lane-wise selects).

pub(crate) mod kernel;
pub(crate) mod math;
pub(crate) mod nest;
pub(crate) mod window;

mod batch_norm;
mod binary;
mod cast;
mod concat;
mod conv;
mod conv_dw;
mod conv_fc;
mod conv_gemm;
mod dyn_conv;
mod einsum;
mod expand;
mod gather;
mod gemm;
mod matmul;
mod pad;
mod pool;
mod predict;
mod reduce;
mod resize;
mod slice;
mod softmax;
mod transpose;
mod unary;

pub(crate) use conv_gemm::{blocking, dyn_blocking};

use crate::error::{CodegenError, NodeRef};
use crate::pack::Packing;
use dync_ir::ops::Act;
use dync_ir::{Op, TensorType};
use kernel::{BufId, Kernel, LResult};

/// Emits the body of phase `phase` (of [`phases`]) of the kernel computing `op` (the kernel's
/// buffers are its operands and result, typed as in the graph). `node` names the node in
/// errors.
pub(crate) fn lower(k: &mut Kernel, op: &Op, node: &NodeRef, phase: usize) -> LResult {
    match op {
        // The memory plan gives these storage of their own (inputs, weights) or their
        // operand's (reshape views), never a kernel.
        Op::Input(_) | Op::Const(_) | Op::Reshape(_) => Err(CodegenError::lower(
            node,
            "has no kernel: the memory plan places it",
        )),
        Op::Conv(o) => match k.buf(BufId::In(1)).packed {
            Some(p) => conv_gemm::lower_conv(k, o, &p, phase),
            None if o.in_scale => Err(CodegenError::lower(
                node,
                "scales its input (se_fold) but its weight is not packed for the GEMM path",
            )),
            None if conv_fc::applies(o, &k.buf(BufId::In(0)).ty, &k.buf(BufId::In(1)).ty) => {
                conv_fc::lower(k, o)
            }
            None => conv::lower(k, o),
        },
        Op::DynConv(o) => match k.buf(BufId::In(2)).packed {
            Some(p) => conv_gemm::lower_dyn(k, o, &p, phase),
            None if o.in_scale => Err(CodegenError::lower(
                node,
                "scales its input (se_fold) but its bank is not packed for the GEMM path",
            )),
            None => dyn_conv::lower(k, o),
        },
        Op::Predict(o) => predict::lower(k, o, phase),
        Op::BatchNorm(o) => batch_norm::lower(k, o),
        Op::Unary(o) => unary::lower(k, o),
        Op::Binary(o) => binary::lower(k, o),
        Op::MatMul(o) => matmul::lower(k, o),
        Op::Gemm(o) => gemm::lower(k, o),
        Op::Einsum(o) => einsum::lower(k, o, node),
        Op::Softmax(o) => softmax::lower(k, o),
        Op::AvgPool(o) => pool::lower_avg(k, o),
        Op::MaxPool(o) => pool::lower_max(k, o),
        Op::Reduce(o) => reduce::lower(k, o),
        Op::Transpose(o) => transpose::lower(k, o),
        Op::Concat(o) => concat::lower(k, o),
        Op::Slice(o) => slice::lower(k, o),
        Op::Gather(o) => gather::lower(k, o),
        Op::Pad(o) => pad::lower(k, o, node),
        Op::Resize(o) => resize::lower(k, o, node),
        Op::Cast(o) => cast::lower(k, o),
        Op::Expand(o) => expand::lower(k, o),
    }
}

/// The operand whose packing ([`crate::plan::MemoryPlan::packed`]) puts the kernel of `op` on
/// the GEMM path: a conv's weight, a dyn_conv's bank.
pub(crate) fn packed_operand(op: &Op) -> Option<usize> {
    match op {
        Op::Conv(_) => Some(1),
        Op::DynConv(_) => Some(2),
        _ => None,
    }
}

/// f32 elements of scratch memory the kernel of `op` needs (0: none), given its operand and
/// result types and the packing of its [`packed_operand`].
pub(crate) fn scratch_elems(
    op: &Op,
    operands: &[&TensorType],
    result: &TensorType,
    packed: Option<&Packing>,
) -> usize {
    match (op, operands.first(), operands.get(2), packed) {
        (Op::Conv(o), Some(x), _, Some(p)) if o.in_scale => conv_gemm::scale_scratch(x, p),
        (Op::Conv(o), Some(x), _, Some(p)) if conv_gemm::splits(o, x, p) => {
            conv_gemm::split_scratch(x)
        }
        (Op::DynConv(o), Some(x), Some(bank), Some(p)) => {
            conv_gemm::dyn_scratch(o, (x, bank), result, p)
        }
        (Op::DynConv(_), Some(x), Some(bank), None) => dyn_conv::scratch_elems(x, bank),
        (Op::Predict(o), Some(_), _, _) => predict::scratch_elems(o, operands),
        _ => 0,
    }
}

/// Whether the kernel of `op` applies a SiLU epilogue with [`conv::act_region`] (a conv or
/// dyn_conv off the FC path, `packed`: on the GEMM path), or is on the GEMM path with a
/// HardSwish epilogue, and so takes the SiLU micro-kernel slot when the micro-kernels may be
/// used (not null, the slot also tells a GEMM kernel that its tile is the runtime's, which
/// applies either activation in its epilogue).
pub(crate) fn uses_silu(op: &Op, operands: &[&TensorType], packed: bool) -> bool {
    match (op, operands.first(), operands.get(1)) {
        (Op::Conv(o), Some(x), Some(w)) => match o.act {
            Some(Act::Silu) => packed || !conv_fc::applies(o, x, w),
            Some(Act::HardSwish) => packed,
            None => false,
        },
        (Op::DynConv(o), _, _) => match o.act {
            Some(Act::Silu) => true,
            Some(Act::HardSwish) => packed,
            None => false,
        },
        _ => false,
    }
}

/// Whether the kernel of `op` mixes a dyn_conv's bank into packed panels (`packed`: on the
/// GEMM path), and so takes the mixing micro-kernel slot when the micro-kernels may be used.
pub(crate) fn uses_mix(op: &Op, packed: bool) -> bool {
    matches!(op, Op::DynConv(_)) && packed
}

/// Whether the kernel of `op` is a depthwise conv or dyn_conv on the direct path (not
/// `packed`, not a conv on the FC path), and so takes the depthwise micro-kernel slot when the
/// micro-kernels may be used ([`conv::dw_kernel_applies`] decides per shape whether it calls it).
pub(crate) fn uses_dw(
    op: &Op,
    operands: &[&TensorType],
    result: &TensorType,
    packed: bool,
) -> bool {
    let depthwise = |group: usize, x: &TensorType| {
        x.shape.get(1) == Some(&group) && result.shape.get(1) == Some(&group)
    };
    match (op, operands.first(), operands.get(1)) {
        (Op::Conv(o), Some(x), Some(w)) => {
            !packed && !conv_fc::applies(o, x, w) && depthwise(o.group, x)
        }
        (Op::DynConv(o), Some(x), _) => !packed && depthwise(o.group, x),
        _ => false,
    }
}

/// Whether the kernel of `op` is a depthwise conv or dyn_conv on the direct path (not
/// `packed`, not a conv on the FC path) whose channels run in blocks
/// ([`conv_dw::block_geo`]), and so takes the channel-block depthwise micro-kernel's slot when
/// the micro-kernels may be used.
pub(crate) fn uses_dwc(
    op: &Op,
    operands: &[&TensorType],
    result: &TensorType,
    packed: bool,
) -> bool {
    if packed {
        return false;
    }
    match (op, operands.first(), operands.get(1), operands.get(2)) {
        (Op::Conv(o), Some(x), Some(w), _) => {
            !conv_fc::applies(o, x, w)
                && conv_dw::block_geo(
                    &x.shape,
                    &result.shape,
                    &w.shape,
                    (o.strides, o.pads, o.dilations),
                    o.group,
                    o.residual,
                )
                .is_some()
        }
        (Op::DynConv(o), Some(x), _, Some(bank)) => {
            dyn_conv::block_geo(o, x, bank, result).is_some()
        }
        _ => false,
    }
}

/// Whether the kernel of `op` computes matrix-vector products ([`gemm::gemv`], every layer of a
/// `predict`), and so takes the matrix-vector micro-kernel slot when the micro-kernels may be
/// used.
pub(crate) fn uses_gemv(op: &Op, operands: &[&TensorType]) -> bool {
    match (op, operands.first(), operands.get(1)) {
        (Op::Gemm(o), Some(a), Some(b)) => gemm::gemv(o, &a.shape, &b.shape),
        (Op::Predict(_), _, _) => true,
        _ => false,
    }
}

/// Whether the kernel of `op` is a conv or dyn_conv on the GEMM path (`packed`) whose tiles
/// may read `B` in place ([`conv_gemm::reads_taps`]), and so takes the in-place convolution
/// tile's slot when the micro-kernels may be used.
pub(crate) fn uses_taps(
    op: &Op,
    operands: &[&TensorType],
    result: &TensorType,
    packed: Option<&Packing>,
) -> bool {
    match (
        op,
        operands.first(),
        operands.get(1),
        operands.get(2),
        packed,
    ) {
        (Op::Conv(o), Some(x), Some(w), _, Some(p)) => conv_gemm::reads_taps(
            &x.shape,
            &result.shape,
            &w.shape,
            conv_gemm::conv_attrs(o),
            p,
            true,
        ),
        (Op::DynConv(o), Some(x), _, Some(bank), Some(p)) => conv_gemm::reads_taps(
            &x.shape,
            &result.shape,
            bank.shape.get(1..).unwrap_or(&[]),
            (o.strides, o.pads, o.dilations),
            p,
            false,
        ),
        _ => false,
    }
}

/// The phases of the kernel of `op`: task functions run one after the other on the same
/// buffers (a dyn_conv on the GEMM path mixes its kernels, then convolves), given its operand
/// types and the packing of its [`packed_operand`].
pub(crate) fn phases(op: &Op, operands: &[&TensorType], packed: Option<&Packing>) -> usize {
    match (op, packed) {
        (Op::Conv(o), Some(_)) if o.in_scale => 2,
        (Op::Conv(o), Some(p)) if operands.first().is_some_and(|x| conv_gemm::splits(o, x, p)) => 2,
        (Op::DynConv(_), Some(_)) => 2,
        (Op::Predict(o), _) => predict::phases(o, operands),
        _ => 1,
    }
}

/// The parallel tasks of phase `phase` of the kernel of `op` (see [`crate::abi`]; 1: a serial
/// kernel), given its operand and result types and the packing of its [`packed_operand`].
pub(crate) fn tasks(
    op: &Op,
    operands: &[&TensorType],
    result: &TensorType,
    packed: Option<&Packing>,
    phase: usize,
) -> usize {
    match (op, operands.first(), operands.get(1), packed) {
        (Op::Conv(o), Some(x), _, Some(p)) => conv_gemm::conv_phase_tasks(o, x, result, p, phase),
        (Op::Conv(o), Some(x), Some(w), None) if conv_fc::applies(o, x, w) => {
            conv_fc::tasks(o, x, w)
        }
        (Op::Conv(o), Some(x), Some(w), None) => conv::tasks(o, x, w, result),
        (Op::DynConv(o), Some(x), _, Some(p)) => match operands.get(2) {
            Some(bank) => conv_gemm::dyn_tasks(o, (x, bank), result, p, phase),
            None => 1,
        },
        (Op::DynConv(o), Some(x), _, None) => match operands.get(2) {
            Some(bank) => dyn_conv::tasks(o, x, bank, result),
            None => 1,
        },
        (Op::Predict(o), _, _, _) => predict::tasks(o, operands, phase),
        (Op::Unary(_) | Op::Cast(_), _, _, _) => unary::tasks(result),
        (Op::Binary(_), Some(a), Some(b), _) => binary::tasks(a, b, result),
        (Op::Expand(_), Some(x), _, _) => expand::tasks(x, result),
        (Op::Gemm(o), Some(a), Some(b), _) => gemm::tasks(o, a, b),
        (Op::MatMul(_), Some(a), Some(b), _) => matmul::tasks(a, b),
        (Op::Reduce(o), Some(x), _, _) => reduce::tasks(x, o),
        (Op::Concat(o), _, _, _) => concat::tasks(o, operands, result),
        (Op::Resize(o), Some(x), _, _) => resize::tasks(o, x, result),
        (Op::Transpose(o), Some(x), _, _) => transpose::tasks(o, x, result),
        (Op::Slice(o), Some(x), _, _) => slice::tasks(o, x, result),
        (Op::AvgPool(o), _, _, _) => pool::tasks(result, o.kernel),
        (Op::MaxPool(o), _, _, _) => pool::tasks(result, o.kernel),
        _ => 1,
    }
}
