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
mod dyn_conv;
mod einsum;
mod expand;
mod gather;
mod gemm;
mod matmul;
mod pad;
mod pool;
mod reduce;
mod resize;
mod slice;
mod softmax;
mod transpose;
mod unary;

use crate::error::{CodegenError, NodeRef};
use dync_ir::{Op, TensorType};
use kernel::{Kernel, LResult};

/// Emits the body of the kernel computing `op` (the kernel's buffers are its operands and
/// result, typed as in the graph). `node` names the node in errors.
pub(crate) fn lower(k: &mut Kernel, op: &Op, node: &NodeRef) -> LResult {
    match op {
        // The memory plan gives these storage of their own (inputs, weights) or their
        // operand's (reshape views), never a kernel.
        Op::Input(_) | Op::Const(_) | Op::Reshape(_) => Err(CodegenError::lower(
            node,
            "has no kernel: the memory plan places it",
        )),
        Op::Conv(o) => conv::lower(k, o),
        Op::DynConv(o) => dyn_conv::lower(k, o),
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

/// f32 elements of scratch memory the kernel of `op` needs (0: none), given its operand types.
pub(crate) fn scratch_elems(op: &Op, operands: &[&TensorType]) -> usize {
    match (op, operands.first(), operands.get(2)) {
        (Op::DynConv(_), Some(x), Some(bank)) => dyn_conv::scratch_elems(x, bank),
        _ => 0,
    }
}

/// The parallel tasks of the kernel of `op` (see [`crate::abi`]; 1: a serial kernel), given its
/// operand and result types.
pub(crate) fn tasks(op: &Op, operands: &[&TensorType], result: &TensorType) -> usize {
    match (op, operands.first()) {
        (Op::Conv(o), Some(x)) => conv::tasks(x, result, o.group),
        (Op::DynConv(o), Some(_)) => dyn_conv::tasks(result, o.group),
        _ => 1,
    }
}
