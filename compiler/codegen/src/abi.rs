//! The calling conventions of generated code, shared by the JIT and AOT objects.
//!
//! Entry point (C ABI, symbol [`ENTRY_SYMBOL`]):
//! `extern "C" fn(inputs: *const *const u8, outputs: *const *mut u8, workspace: *mut u8,
//! ctx: *mut RtCtx) -> i32`.
//! - `inputs[i]` points at graph input i (row-major, its declared dtype and shape, any
//!   alignment); `outputs[j]` at a buffer for graph output j; outputs must not overlap inputs or
//!   the workspace.
//! - `workspace` holds at least `arena_bytes` (see [`crate::plan`]) bytes, 64-byte aligned.
//! - `ctx` is null or a `dync_runtime::ctx::RtCtx`: its `parallel_for` runs the tasks of a
//!   parallel kernel on the runtime's thread pool; its `kernel_hook`, when set, is called with
//!   phase 0 before and 1 after each kernel (profiling; a load and a test per kernel when it is
//!   not set, so every build can be profiled); its `ukernels` table, when not null and not the
//!   portable variant, provides the GEMM tile of x86-64 code compiled with micro-kernels
//!   (read once per call, checked against the compiled `M0 × N0` tile shape). With a null
//!   `ctx` every kernel runs on the calling thread, no hook is called and the GEMM tile is the
//!   module's own Cranelift tile ([`crate::tile`]).
//! - Weights are at the symbol [`WEIGHTS_SYMBOL`] (64-byte aligned, only read): an object's
//!   read-only section, or the JIT model's own buffer (see [`crate::emit::write_weights`]).
//! - Returns 0 on success, otherwise a status `(kernel + 1) << 8 | fault` naming the kernel
//!   (index into the model's kernel list, in execution order) and the [`Fault`].
//!
//! Kernels (one per IR node, internal) are tasks: `fn(args: *const *mut u8, begin: u64,
//! end: u64) -> i32`. `args` holds one pointer per operand, one for the result and, for kernels
//! that need it, one for scratch memory in the arena (the entry writes them into a stack slot);
//! then, for kernels on the GEMM path, the GEMM tile function ([`tile_signature`]), and for
//! kernels with a SiLU epilogue when the micro-kernels may be used, the context table's SiLU
//! kernel or null ([`silu_signature`]; null: the kernel's own Cranelift loop), and for
//! dyn_convs on the GEMM path under the same condition the table's mixing kernel or null
//! ([`mix_signature`]), and for depthwise convs and dyn_convs on the direct path the table's
//! depthwise kernel or null ([`dw_signature`]), and for `gemm`s with `transB` and `predict`s the
//! table's matrix-vector kernel or null ([`gemv_signature`]); the kernel computes its tasks `begin..end` of `0..tasks` and returns 0 or a [`Fault`] code
//! (the first one in task order). Tasks of a kernel write disjoint parts of its result (and of
//! its scratch memory), and every output element is computed by the same instructions whatever
//! range its task is run in, so results are bit-identical at every thread count. A kernel of
//! one task (small shapes) is called directly with `0..1`; one of several tasks (convs over
//! images, groups, channel blocks and rows; elementwise ops, reductions and pools over chunks
//! of their outputs; GEMM/GEMV over output blocks — see `lower::tasks`) through
//! `ctx->parallel_for(ctx, kernel, args, tasks)` when `ctx` is not null, else directly with
//! `0..tasks`. A kernel may have several phases (a dyn_conv on the GEMM path: mixing, then the
//! convolution), task functions the entry runs one after the other on the same arguments.
//!
//! Transcendental functions that the lowering does not inline are calls to the C math
//! library's functions named in [`crate::libcalls`]; the JIT binds them in process, AOT objects
//! import them from libm.

use cranelift_codegen::ir::{types, AbiParam, Signature, Type};
use cranelift_codegen::isa::CallConv;

/// Symbol of the entry point.
pub const ENTRY_SYMBOL: &str = "dync_entry";
/// Symbol of the weights data object.
pub const WEIGHTS_SYMBOL: &str = "dync_weights";
/// Alignment of the weights object, of each weight in it, and of each arena buffer.
pub const ALIGN: usize = 64;

/// Why generated code stopped. The codes are stable: the AOT runtime prints [`Fault::message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A gather index outside [-extent, extent).
    IndexOutOfRange = 1,
    /// Integer division by zero.
    DivisionByZero = 2,
    /// Integer arithmetic overflowed.
    IntegerOverflow = 3,
    /// Integer pow with a negative exponent.
    NegativeExponent = 4,
    /// Checked mode: a load or store fell outside its buffer (a compiler bug, caught).
    OutOfBounds = 5,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::IndexOutOfRange,
        Fault::DivisionByZero,
        Fault::IntegerOverflow,
        Fault::NegativeExponent,
        Fault::OutOfBounds,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.code() == code)
    }

    pub fn message(self) -> &'static str {
        match self {
            Fault::IndexOutOfRange => "index out of range",
            Fault::DivisionByZero => "integer division by zero",
            Fault::IntegerOverflow => "integer overflow",
            Fault::NegativeExponent => "integer pow with a negative exponent",
            Fault::OutOfBounds => "out-of-bounds memory access in generated code (checked mode)",
        }
    }
}

/// Splits a non-zero entry status into (kernel index, fault).
pub fn decode_status(status: i32) -> Option<(usize, Fault)> {
    let kernel = usize::try_from(status >> 8).ok()?.checked_sub(1)?;
    Some((kernel, Fault::from_code(status & 0xff)?))
}

/// The largest number of kernels whose statuses fit the encoding.
pub const MAX_KERNELS: usize = (i32::MAX >> 8) as usize - 1;

/// The entry point's signature.
pub fn entry_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.extend([AbiParam::new(ptr); 4]);
    s.returns.push(AbiParam::new(types::I32));
    s
}

/// A kernel's (task's) signature: `(args, begin, end) -> status`.
pub fn task_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.extend([
        AbiParam::new(ptr),
        AbiParam::new(types::I64),
        AbiParam::new(types::I64),
    ]);
    s.returns.push(AbiParam::new(types::I32));
    s
}

/// `RtCtx::parallel_for`'s signature: `(ctx, task, args, n) -> status`.
pub fn parallel_for_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.extend([AbiParam::new(ptr); 3]);
    s.params.push(AbiParam::new(types::I64));
    s.returns.push(AbiParam::new(types::I32));
    s
}

/// `RtCtx::kernel_hook`'s signature: `(ctx, kernel, phase)`.
pub fn hook_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.push(AbiParam::new(ptr));
    s.params.extend([AbiParam::new(types::I32); 2]);
    s
}

/// Byte offsets of the `RtCtx` fields generated code reads (the runtime's `repr(C)` layout).
pub use dync_runtime::ctx::{
    CTX_KERNEL_HOOK, CTX_PARALLEL_FOR, CTX_UKERNELS, HOOK_BEGIN, HOOK_END,
};
pub use dync_runtime::ukernel::{
    UKERNELS_DWC_F32, UKERNELS_DWP_F32, UKERNELS_DW_F32, UKERNELS_GEMM_F32, UKERNELS_GEMM_F32_M0,
    UKERNELS_GEMM_F32_N0, UKERNELS_GEMV_F32, UKERNELS_ISA, UKERNELS_MIX_F32, UKERNELS_SILU_F32,
    UKERNELS_TAPS_F32,
};

/// Signature of the SiLU kernel (`dync_runtime::ukernel::silu::SiluF32Fn`): `x, rows, cols,
/// ld`, pointer-sized, no result.
pub fn silu_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.extend(std::iter::repeat_n(AbiParam::new(ptr), 4));
    s
}

/// Signature of the mixing kernel (`dync_runtime::ukernel::mix::MixF32Fn`): `steps, bank,
/// expert_ld, step_ld, experts, coefs, images, dst, dst_ld`, pointer-sized, no result.
pub fn mix_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.extend(std::iter::repeat_n(AbiParam::new(ptr), 9));
    s
}

/// Signature of the depthwise kernels (`dync_runtime::ukernel::dw::DwF32Fn`, and `dwp`'s, the
/// same arguments): `x, h, w, wts, kh, kw, sy, sx, pt, pl, y, oh, ow` pointer-sized, then
/// `bias: f32`, `flags: u32`, `lo: f32`, `hi: f32`, no result.
pub fn dw_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.extend(std::iter::repeat_n(AbiParam::new(ptr), 13));
    s.params
        .extend([types::F32, types::I32, types::F32, types::F32].map(AbiParam::new));
    s
}

/// Signature of the channel-block depthwise kernel (`dync_runtime::ukernel::dwc::DwcF32Fn`):
/// `x, x_ld, geo, wts, w_ld, bias, y, y_ld, nc` pointer-sized, then `flags: u32`, `lo: f32`,
/// `hi: f32`, no result.
pub fn dwc_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.extend(std::iter::repeat_n(AbiParam::new(ptr), 9));
    s.params
        .extend([types::I32, types::F32, types::F32].map(AbiParam::new));
    s
}

/// Signature of the matrix-vector kernel (`dync_runtime::ukernel::gemv::GemvF32Fn`): `k, x,
/// ldx, m, w, ldw, y, ldy, n`, pointer-sized, no result.
pub fn gemv_signature(call_conv: CallConv, ptr: Type) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params.extend(std::iter::repeat_n(AbiParam::new(ptr), 9));
    s
}

/// Signature of the in-place stride-1 convolution tile (`dync_runtime::ukernel::taps::
/// TapsF32Fn`): `k, a, lda, x, geo, pos0, c, ldc, res, m, n, bias` pointer-sized, then
/// `flags: u32`, `lo: f32`, `hi: f32`, then `side, side_len` pointer-sized, no result.
pub fn taps_signature(call_conv: CallConv, ptr: Type) -> Signature {
    epilogue_params(call_conv, ptr, 12)
}

/// Signature of the GEMM tile (`dync_runtime::ukernel::GemmF32Fn`): `k, a, b, ldb, c, ldc, m,
/// n, bias` pointer-sized, then `flags: u32`, `lo: f32`, `hi: f32`, then `side, side_len`
/// pointer-sized, no result.
pub fn tile_signature(call_conv: CallConv, ptr: Type) -> Signature {
    epilogue_params(call_conv, ptr, 9)
}

/// A tile's signature: `lead` pointer-sized parameters, the epilogue's `flags: u32`,
/// `lo: f32`, `hi: f32`, then the `side` hint's pointer and length.
fn epilogue_params(call_conv: CallConv, ptr: Type, lead: usize) -> Signature {
    let mut s = Signature::new(call_conv);
    s.params
        .extend(std::iter::repeat_n(AbiParam::new(ptr), lead));
    s.params
        .extend([types::I32, types::F32, types::F32].map(AbiParam::new));
    s.params.extend([AbiParam::new(ptr), AbiParam::new(ptr)]);
    s
}
