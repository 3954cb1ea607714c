//! The kernel builder: one Cranelift function for one IR node, with the primitives every
//! lowering uses — buffers, bounds-checked (in checked mode) loads and stores, counted loops,
//! the kernel's task range, faults, library calls and read-only tables.
//!
//! A kernel is a task function (see [`crate::abi`]): its buffer pointers come from the `args`
//! array, and a kernel of `tasks > 1` computes the tasks `begin..end` it is given
//! ([`Kernel::for_tasks`]); lowerings make each task's work independent of the range.
//!
//! Invariants: element indices and byte offsets are I64 values; a kernel's result buffer never
//! overlaps its operands (the memory plan guarantees it), so operand loads are `readonly`;
//! loads and stores are `notrap` because every access is in bounds by construction — checked
//! mode verifies exactly that, stopping with [`Fault::OutOfBounds`] before any access that is
//! not. Loops run their body at least once (empty loops are not emitted).

use crate::abi::Fault;
use crate::error::CodegenError;
use crate::libcalls::MathFn;
use crate::pack::Packing;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, Block, BlockArg, InstBuilder, MemFlagsData, Signature, StackSlotData,
    StackSlotKind, Type, Value,
};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_module::{DataDescription, FuncId, Module};
use dync_ir::{DType, TensorType};
use std::collections::HashMap;

/// Result of a lowering step.
pub(crate) type LResult<T = ()> = Result<T, CodegenError>;

/// One buffer a kernel reads or writes.
pub(crate) struct Buf {
    pub ptr: Value,
    pub ty: TensorType,
    pub bytes: usize,
    /// Stored in this packed layout rather than its type's row-major one.
    pub packed: Option<Packing>,
}

/// One operand of a kernel as the emitter describes it.
pub(crate) struct Operand {
    pub ty: TensorType,
    pub packed: Option<Packing>,
}

/// A kernel's buffer: operand `i`, the result, or its f32 scratch memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufId {
    In(usize),
    Out,
    Scratch,
}

/// Vector width of f32 code: 4 lanes (f32x4) or 1 (scalar).
pub(crate) const LANES: usize = 4;

/// The Cranelift type of `dtype` elements (bool is a byte holding 0 or 1).
pub(crate) fn clif_type(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::I64 => types::I64,
        DType::I32 => types::I32,
        DType::Bool => types::I8,
    }
}

/// f32 values of `lanes` lanes.
pub(crate) fn f32_type(lanes: usize) -> Type {
    if lanes == 1 {
        types::F32
    } else {
        types::F32X4
    }
}

pub(crate) struct Kernel<'a> {
    pub b: FunctionBuilder<'a>,
    ins: Vec<Buf>,
    out: Buf,
    scratch: Option<Buf>,
    checked: bool,
    /// Returns its i32 parameter (a fault code).
    fail: Block,
    module: &'a mut dyn Module,
    math: &'a HashMap<MathFn, FuncId>,
    /// Name prefix of the kernel, for the read-only tables it defines.
    pub name: String,
    /// The task range `begin..end` (I64) and the kernel's task count.
    range: (Value, Value),
    tasks: usize,
    /// The GEMM tile function (see [`Kernel::call_tile`]), for kernels that asked for it.
    tile: Option<Value>,
    /// The SiLU micro-kernel or null ([`Kernel::silu_fn`]), for kernels that asked for it.
    silu: Option<Value>,
    /// The mixing micro-kernel or null ([`Kernel::mix_fn`]), for kernels that asked for it.
    mix: Option<Value>,
    /// The depthwise micro-kernel or null ([`Kernel::dw_fn`]), for kernels that asked for it.
    dw: Option<Value>,
    /// The small-map depthwise micro-kernel or null ([`Kernel::dwp_fn`]), for kernels that
    /// asked for it.
    dwp: Option<Value>,
    /// The channel-block depthwise micro-kernel or null ([`Kernel::dwc_fn`]), for kernels that
    /// asked for it.
    dwc: Option<Value>,
    /// The matrix-vector micro-kernel or null ([`Kernel::gemv_fn`]), for kernels that asked
    /// for it.
    gemv: Option<Value>,
    /// The in-place stride-1 convolution tile or null ([`Kernel::taps_fn`]), for kernels that
    /// asked for it.
    taps: Option<Value>,
    /// The result is stored in its fused residual's buffer (`crate::plan::MemoryPlan::
    /// in_place`): the output already holds the residual when the kernel starts.
    pub residual_in_place: bool,
}

/// The function pointers a kernel receives after its buffers (see [`crate::abi`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Slots {
    /// The GEMM tile function.
    pub tile: bool,
    /// The SiLU micro-kernel, or null when the context has none.
    pub silu: bool,
    /// The kernel-mixing micro-kernel, or null when the context has none.
    pub mix: bool,
    /// The depthwise convolution micro-kernel, or null when the context has none.
    pub dw: bool,
    /// The small-map depthwise micro-kernel, or null when the context has none.
    pub dwp: bool,
    /// The channel-block depthwise micro-kernel, or null when the context has none.
    pub dwc: bool,
    /// The matrix-vector micro-kernel, or null when the context has none.
    pub gemv: bool,
    /// The in-place stride-1 convolution tile, or null when the context has none.
    pub taps: bool,
}

impl Slots {
    /// What each slot holds, in the order of [`Slots::taken`].
    pub const NAMES: [&'static str; 8] = [
        "GEMM tile",
        "SiLU",
        "mixing",
        "depthwise",
        "small-map depthwise",
        "channel-block depthwise",
        "matrix-vector",
        "in-place convolution tile",
    ];

    /// Which slots a kernel takes, in the order it receives their pointers.
    pub fn taken(&self) -> [bool; 8] {
        [
            self.tile, self.silu, self.mix, self.dw, self.dwp, self.dwc, self.gemv, self.taps,
        ]
    }

    /// The function pointers a kernel with these slots receives.
    pub fn count(&self) -> usize {
        self.taken().into_iter().filter(|&s| s).count()
    }
}

impl<'a> Kernel<'a> {
    /// Starts a kernel of `tasks` tasks whose `args` hold one pointer per buffer: operands,
    /// the result, then scratch memory of `scratch` f32 elements when that is not 0, then the
    /// function pointers of `slots`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mut b: FunctionBuilder<'a>,
        tys: (Vec<Operand>, TensorType),
        scratch: usize,
        slots: Slots,
        tasks: usize,
        checked: bool,
        module: &'a mut dyn Module,
        math: &'a HashMap<MathFn, FuncId>,
        name: String,
    ) -> LResult<Self> {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        let fail = b.create_block();
        b.append_block_param(fail, types::I32);
        b.set_cold_block(fail);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let (in_tys, out_ty) = tys;
        let (args, range) = (p[0], (p[1], p[2]));
        let ptr_ty = module.isa().pointer_type();
        let nbufs = in_tys.len() + 1 + usize::from(scratch > 0) + slots.count();
        let flags = MemFlagsData::new()
            .with_notrap()
            .with_aligned()
            .with_readonly();
        let mut params = Vec::with_capacity(nbufs);
        for i in 0..nbufs {
            let off = i32::try_from(i * 8)
                .map_err(|_| CodegenError::Overflow(format!("{name}: {nbufs} buffers")))?;
            params.push(b.ins().load(ptr_ty, flags, args, off));
        }
        let mut bufs = Vec::with_capacity(in_tys.len());
        for (op, &ptr) in in_tys.into_iter().zip(&params) {
            let bytes = match op.packed {
                Some(p) => p.elems().and_then(|n| n.checked_mul(4)),
                None => op.ty.bytes().ok(),
            }
            .ok_or_else(|| CodegenError::Overflow(format!("{name}: an operand")))?;
            bufs.push(Buf {
                ptr,
                ty: op.ty,
                bytes,
                packed: op.packed,
            });
        }
        let missing = || CodegenError::cranelift(&name, "kernel without result");
        let out_ptr = *params.get(bufs.len()).ok_or_else(missing)?;
        let out_bytes = out_ty
            .bytes()
            .map_err(|e| CodegenError::Overflow(e.to_string()))?;
        let scratch = match scratch {
            0 => None,
            n => {
                let ty = TensorType::f32([n]);
                Some(Buf {
                    ptr: *params.get(bufs.len() + 1).ok_or_else(missing)?,
                    bytes: ty
                        .bytes()
                        .map_err(|e| CodegenError::Overflow(e.to_string()))?,
                    ty,
                    packed: None,
                })
            }
        };
        // The function pointers follow the operands, the result and the scratch buffer.
        let fns = bufs.len() + 1 + usize::from(scratch.is_some());
        let mut next = fns;
        let mut slot = |wanted: bool| {
            wanted.then(|| {
                next += 1;
                params[next - 1]
            })
        };
        let [tile, silu, mix, dw, dwp, dwc, gemv, taps] = slots.taken().map(&mut slot);
        Ok(Kernel {
            b,
            ins: bufs,
            out: Buf {
                ptr: out_ptr,
                ty: out_ty,
                bytes: out_bytes,
                packed: None,
            },
            scratch,
            checked,
            fail,
            module,
            math,
            name,
            range,
            tasks,
            tile,
            silu,
            mix,
            dw,
            dwp,
            dwc,
            gemv,
            taps,
            residual_in_place: false,
        })
    }

    /// Emits `body(t)` for each task t of the range the kernel is called with (all of
    /// `0..tasks` when it has one task, then t is the constant 0).
    pub fn for_tasks(&mut self, mut body: impl FnMut(&mut Self, Value) -> LResult) -> LResult {
        if self.tasks <= 1 {
            let t = self.iconst(0);
            return body(self, t);
        }
        let (begin, end) = self.range;
        self.loop_dyn(begin, end, body)
    }

    /// Emits `body` to run only when `cond` (an i8 truth value) holds.
    pub fn when(&mut self, cond: Value, body: impl FnOnce(&mut Self) -> LResult) -> LResult {
        let (then, join) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(cond, then, &[], join, &[]);
        self.b.switch_to_block(then);
        body(self)?;
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(join);
        Ok(())
    }

    /// A kernel's buffer. Lowerings only name the scratch buffer of ops that request one
    /// (`scratch_elems`); the result stands in otherwise, so a slip is caught by checked mode.
    pub fn buf(&self, id: BufId) -> &Buf {
        match id {
            BufId::In(i) => &self.ins[i],
            BufId::Out => &self.out,
            BufId::Scratch => self.scratch.as_ref().unwrap_or(&self.out),
        }
    }

    /// Shape of a buffer.
    pub fn shape(&self, id: BufId) -> Vec<usize> {
        self.buf(id).ty.shape.clone()
    }

    pub fn dtype(&self, id: BufId) -> DType {
        self.buf(id).ty.dtype
    }

    pub fn n_inputs(&self) -> usize {
        self.ins.len()
    }

    pub fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(types::I64, v)
    }

    /// `base + i·stride` (I64), folding the trivial cases.
    pub fn mul_add(&mut self, base: Value, i: Value, stride: i64) -> Value {
        match stride {
            0 => base,
            1 => self.b.ins().iadd(base, i),
            s => {
                let t = self.b.ins().imul_imm_s(i, s);
                self.b.ins().iadd(base, t)
            }
        }
    }

    pub fn add_imm(&mut self, v: Value, imm: i64) -> Value {
        if imm == 0 {
            v
        } else {
            self.b.ins().iadd_imm_s(v, imm)
        }
    }

    /// f32 constant of `lanes` lanes.
    pub fn fconst(&mut self, lanes: usize, x: f32) -> Value {
        let s = self.b.ins().f32const(x);
        self.splat(lanes, s)
    }

    /// Broadcasts a scalar f32 to `lanes` lanes.
    pub fn splat(&mut self, lanes: usize, s: Value) -> Value {
        if lanes == 1 {
            s
        } else {
            self.b.ins().splat(types::F32X4, s)
        }
    }

    /// The address of byte `off` of `buf` for an access of `size` bytes; in checked mode,
    /// first stops with `OutOfBounds` unless `0 <= off` and `off + size <= buf.bytes`.
    fn addr(&mut self, id: BufId, off: Value, size: usize) -> Value {
        let (ptr, bytes) = {
            let buf = self.buf(id);
            (buf.ptr, buf.bytes)
        };
        if self.checked {
            match bytes
                .checked_sub(size)
                .and_then(|lim| i64::try_from(lim).ok())
            {
                Some(limit) => {
                    let bad = self
                        .b
                        .ins()
                        .icmp_imm_s(IntCC::UnsignedGreaterThan, off, limit);
                    self.fail_if(bad, Fault::OutOfBounds);
                }
                None => self.fail_now(Fault::OutOfBounds),
            }
        }
        self.b.ins().iadd(ptr, off)
    }

    fn flags(&self, id: BufId, movable: bool) -> MemFlagsData {
        let mut f = MemFlagsData::new().with_notrap();
        if let BufId::In(_) = id {
            f = f.with_readonly();
            if movable && !self.checked {
                f = f.with_can_move();
            }
        }
        f
    }

    /// Loads a `ty` value at element `idx` of `id` (elements of the buffer's dtype).
    pub fn load(&mut self, id: BufId, ty: Type, idx: Value) -> Value {
        self.load_off(id, ty, idx, 0, false)
    }

    /// Loads a `ty` value at element `idx + off` of `id`. Loads that share `idx` share its
    /// address computation, `off` becomes the instruction's displacement. `movable` lets a load
    /// of an operand (read-only for the whole kernel) be hoisted out of loops or sunk to its
    /// use (not in checked mode, whose bounds checks must stay in front of it): only for loads
    /// that run unconditionally once their loop runs and whose address is valid wherever
    /// Cranelift may place them.
    pub fn load_off(&mut self, id: BufId, ty: Type, idx: Value, off: i64, movable: bool) -> Value {
        let esize = self.dtype(id).size() as i64;
        match self.displacement(off, esize) {
            Some(disp) => {
                let base = self.b.ins().imul_imm_s(idx, esize);
                let ptr = self.buf(id).ptr;
                let a = self.b.ins().iadd(ptr, base);
                let f = self.flags(id, movable);
                self.b.ins().load(ty, f, a, disp)
            }
            None => {
                let i = self.add_imm(idx, off);
                let byte = self.b.ins().imul_imm_s(i, esize);
                self.load_at(id, ty, byte, movable)
            }
        }
    }

    /// The byte displacement of element offset `off`, when accesses may use one (not in
    /// checked mode, which checks the whole offset) and it fits an i32.
    fn displacement(&self, off: i64, esize: i64) -> Option<i32> {
        if self.checked {
            return None;
        }
        off.checked_mul(esize).and_then(|d| i32::try_from(d).ok())
    }

    /// Stores `v` at element `idx + off` of `id` (see [`Kernel::load_off`]).
    pub fn store_off(&mut self, id: BufId, idx: Value, off: i64, v: Value) {
        let esize = self.dtype(id).size() as i64;
        match self.displacement(off, esize) {
            Some(disp) => {
                let base = self.b.ins().imul_imm_s(idx, esize);
                let ptr = self.buf(id).ptr;
                let a = self.b.ins().iadd(ptr, base);
                let f = self.flags(id, false);
                self.b.ins().store(f, v, a, disp);
            }
            None => {
                let i = self.add_imm(idx, off);
                self.store(id, i, v);
            }
        }
    }

    /// Loads a `ty` value at byte offset `off` of `id`.
    pub fn load_at(&mut self, id: BufId, ty: Type, off: Value, movable: bool) -> Value {
        let a = self.addr(id, off, ty.bytes() as usize);
        let f = self.flags(id, movable);
        self.b.ins().load(ty, f, a, 0)
    }

    /// Stores `v` at element `idx` of `id`.
    pub fn store(&mut self, id: BufId, idx: Value, v: Value) {
        let esize = self.dtype(id).size() as i64;
        let off = self.b.ins().imul_imm_s(idx, esize);
        self.store_at(id, off, v);
    }

    /// Stores `v` at byte offset `off` of `id`.
    pub fn store_at(&mut self, id: BufId, off: Value, v: Value) {
        let ty = self.b.func.dfg.value_type(v);
        let a = self.addr(id, off, ty.bytes() as usize);
        let f = self.flags(id, false);
        self.b.ins().store(f, v, a, 0);
    }

    /// f32 load of `lanes` lanes at element `idx`: a vector load when `contiguous`, otherwise
    /// one scalar broadcast to all lanes (a stride-0, broadcast operand).
    pub fn load_f32(&mut self, id: BufId, idx: Value, lanes: usize, contiguous: bool) -> Value {
        if lanes > 1 && contiguous {
            self.load(id, types::F32X4, idx)
        } else {
            let s = self.load(id, types::F32, idx);
            self.splat(lanes, s)
        }
    }

    /// Stops the kernel with `fault` when `cond` (an i8 truth value) is non-zero.
    pub fn fail_if(&mut self, cond: Value, fault: Fault) {
        let cont = self.b.create_block();
        let code = self.b.ins().iconst(types::I32, i64::from(fault.code()));
        self.b
            .ins()
            .brif(cond, self.fail, &[BlockArg::Value(code)], cont, &[]);
        self.b.switch_to_block(cont);
    }

    /// Stops the kernel with `fault` unconditionally (code after it is unreachable but valid).
    pub fn fail_now(&mut self, fault: Fault) {
        let one = self.b.ins().iconst(types::I8, 1);
        self.fail_if(one, fault);
    }

    /// Emits `body(i)` for i in 0..n.
    pub fn loop_n(&mut self, n: usize, body: impl FnMut(&mut Self, Value) -> LResult) -> LResult {
        self.loop_range(0, n, 1, body)
    }

    /// Emits `body(i)` for i = lo, lo + step, ... while i < hi (`step` > 0).
    pub fn loop_range(
        &mut self,
        lo: usize,
        hi: usize,
        step: usize,
        mut body: impl FnMut(&mut Self, Value) -> LResult,
    ) -> LResult {
        if lo >= hi || step == 0 {
            return Ok(());
        }
        let (lo_i, hi_i, step_i) = (as_i64(lo)?, as_i64(hi)?, as_i64(step)?);
        if hi - lo <= step {
            let i = self.iconst(lo_i);
            return body(self, i);
        }
        let header = self.b.create_block();
        let exit = self.b.create_block();
        let i = self.b.append_block_param(header, types::I64);
        let start = self.iconst(lo_i);
        self.b.ins().jump(header, &[BlockArg::Value(start)]);
        self.b.switch_to_block(header);
        body(self, i)?;
        let next = self.b.ins().iadd_imm_s(i, step_i);
        let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, hi_i);
        self.b
            .ins()
            .brif(more, header, &[BlockArg::Value(next)], exit, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// Emits `body(i)` for i = lo, lo + 1, ... while i < hi, for run-time bounds (I64; no
    /// iteration when lo >= hi).
    pub fn loop_dyn(
        &mut self,
        lo: Value,
        hi: Value,
        mut body: impl FnMut(&mut Self, Value) -> LResult,
    ) -> LResult {
        let header = self.b.create_block();
        let exit = self.b.create_block();
        let i = self.b.append_block_param(header, types::I64);
        let any = self.b.ins().icmp(IntCC::SignedLessThan, lo, hi);
        self.b
            .ins()
            .brif(any, header, &[BlockArg::Value(lo)], exit, &[]);
        self.b.switch_to_block(header);
        body(self, i)?;
        let next = self.b.ins().iadd_imm_s(i, 1);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, next, hi);
        self.b
            .ins()
            .brif(more, header, &[BlockArg::Value(next)], exit, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// The address of element `idx` of `id` for a callee that accesses elements
    /// `idx..idx + len` of it (I64 values; `len` ≥ 1): in checked mode, first stops with
    /// `OutOfBounds` unless they are all inside the buffer.
    pub fn span_addr(&mut self, id: BufId, idx: Value, len: Value) -> Value {
        let esize = self.dtype(id).size() as i64;
        let off = self.b.ins().imul_imm_s(idx, esize);
        if self.checked {
            let last = self.b.ins().iadd(idx, len);
            let last = self.b.ins().iadd_imm_s(last, -1);
            let last = self.b.ins().imul_imm_s(last, esize);
            self.addr(id, last, esize as usize);
            self.addr(id, off, esize as usize)
        } else {
            let ptr = self.buf(id).ptr;
            self.b.ins().iadd(ptr, off)
        }
    }

    /// The GEMM tile function's address (`dync_runtime::ukernel::GemmF32Fn`'s contract, see
    /// [`crate::abi::tile_signature`]); only in kernels started with `tile`.
    pub fn tile_fn(&self) -> LResult<Value> {
        self.tile
            .ok_or_else(|| CodegenError::cranelift(&self.name, "kernel without a tile slot"))
    }

    /// The SiLU micro-kernel (`dync_runtime::ukernel::silu`'s contract, see
    /// [`crate::abi::silu_signature`]) or null, for kernels started with `silu`; `None` when the
    /// kernel has no such slot (it then computes SiLU itself).
    pub fn silu_fn(&self) -> Option<Value> {
        self.silu
    }

    /// The mixing micro-kernel (`dync_runtime::ukernel::mix`'s contract, see
    /// [`crate::abi::mix_signature`]) or null, for kernels started with `mix`; `None` when the
    /// kernel has no such slot.
    pub fn mix_fn(&self) -> Option<Value> {
        self.mix
    }

    /// The depthwise micro-kernel (`dync_runtime::ukernel::dw`'s contract, see
    /// [`crate::abi::dw_signature`]) or null, for kernels started with `dw`; `None` when the
    /// kernel has no such slot.
    pub fn dw_fn(&self) -> Option<Value> {
        self.dw
    }

    /// The small-map depthwise micro-kernel (`dync_runtime::ukernel::dwp`'s contract, see
    /// [`crate::abi::dw_signature`]) or null, for kernels started with `dwp`; `None` when the
    /// kernel has no such slot.
    pub fn dwp_fn(&self) -> Option<Value> {
        self.dwp
    }

    /// The channel-block depthwise micro-kernel (`dync_runtime::ukernel::dwc`'s contract, see
    /// [`crate::abi::dwc_signature`]) or null, for kernels started with `dwc`; `None` when the
    /// kernel has no such slot.
    pub fn dwc_fn(&self) -> Option<Value> {
        self.dwc
    }

    /// The matrix-vector micro-kernel (`dync_runtime::ukernel::gemv`'s contract, see
    /// [`crate::abi::gemv_signature`]) or null, for kernels started with `gemv`; `None` when the
    /// kernel has no such slot.
    pub fn gemv_fn(&self) -> Option<Value> {
        self.gemv
    }

    /// The in-place stride-1 convolution tile (`dync_runtime::ukernel::taps`'s contract, see
    /// [`crate::abi::taps_signature`]) or null, for kernels started with `taps`; `None` when
    /// the kernel has no such slot (it then packs `B` for the GEMM tile).
    pub fn taps_fn(&self) -> Option<Value> {
        self.taps
    }

    /// Calls the micro-kernel `f` through `call` when `f` is given and not null at run time,
    /// else emits `own` (the kernel's own code for the same contract): both paths are compiled,
    /// the context's table picks one.
    pub fn ukernel_or(
        &mut self,
        f: Option<Value>,
        call: impl FnOnce(&mut Self, Value) -> LResult,
        own: impl FnOnce(&mut Self) -> LResult,
    ) -> LResult {
        let Some(f) = f else {
            return own(self);
        };
        let (cb, inline, join) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().brif(f, cb, &[], inline, &[]);
        self.b.switch_to_block(cb);
        call(self, f)?;
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(inline);
        own(self)?;
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(join);
        Ok(())
    }

    /// Whether any 16-byte `shuffle` is native code: on x86-64 it needs SSSE3 and SSE4.1
    /// (Cranelift otherwise calls a helper that AOT objects cannot link); aarch64 always.
    pub fn has_shuffle(&self) -> bool {
        let isa = self.module.isa();
        if isa.triple().architecture != target_lexicon::Architecture::X86_64 {
            return true;
        }
        let flags = isa.isa_flags();
        ["has_ssse3", "has_sse41"].iter().all(|want| {
            flags
                .iter()
                .any(|f| f.name == *want && f.as_bool() == Some(true))
        })
    }

    /// The calling convention of functions this kernel calls (the target's C convention).
    pub fn call_conv(&self) -> cranelift_codegen::isa::CallConv {
        self.module.isa().default_call_conv()
    }

    /// A stack buffer of `bytes` bytes at a 64-byte aligned address (a cache line: the tiles'
    /// 512-bit loads of a packed panel then never straddle two lines); returns its address.
    /// The slot's own alignment is only relative to the frame, whose base the ABI aligns to
    /// 16 bytes, so the slot is 48 bytes larger and the address is rounded up at run time.
    pub fn stack_buffer(&mut self, bytes: usize) -> LResult<Value> {
        const LINE: usize = 64;
        let size = bytes
            .checked_add(LINE - 16)
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| CodegenError::Overflow(format!("{}: a stack buffer", self.name)))?;
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            size,
            4,
        ));
        let ptr = self.module.isa().pointer_type();
        let base = self.b.ins().stack_addr(ptr, slot, 0);
        let base = self.b.ins().iadd_imm_s(base, (LINE - 1) as i64);
        Ok(self.b.ins().band_imm_s(base, -(LINE as i64)))
    }

    /// Emits `body(i)` for i in lo..hi: unrolled (i a constant) when there are at most
    /// `unroll` iterations, otherwise as a loop.
    pub fn repeat(
        &mut self,
        lo: usize,
        hi: usize,
        unroll: usize,
        mut body: impl FnMut(&mut Self, Value) -> LResult,
    ) -> LResult {
        if hi.saturating_sub(lo) <= unroll {
            for i in lo..hi {
                let v = self.iconst(as_i64(i)?);
                body(self, v)?;
            }
            Ok(())
        } else {
            self.loop_range(lo, hi, 1, body)
        }
    }

    /// A variable of type `ty` holding `init`.
    pub fn var(&mut self, ty: Type, init: Value) -> Variable {
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    /// Calls the math library function `f` on f32 scalars.
    pub fn call_math(&mut self, f: MathFn, args: &[Value]) -> LResult<Value> {
        let id = *self.math.get(&f).ok_or_else(|| {
            CodegenError::cranelift(&self.name, format!("{} not declared", f.symbol()))
        })?;
        let fref = self.module.declare_func_in_func(id, self.b.func);
        let call = self.b.ins().call(fref, args);
        self.b
            .inst_results(call)
            .first()
            .copied()
            .ok_or_else(|| CodegenError::cranelift(&self.name, "math call without result"))
    }

    /// Applies a math library function lane by lane.
    pub fn call_math_lanes(&mut self, f: MathFn, args: &[Value], lanes: usize) -> LResult<Value> {
        if lanes == 1 {
            return self.call_math(f, args);
        }
        let mut out = None;
        for l in 0..lanes as u8 {
            let lane_args: Vec<Value> = args
                .iter()
                .map(|&a| self.b.ins().extractlane(a, l))
                .collect();
            let r = self.call_math(f, &lane_args)?;
            out = Some(match out {
                None => self.b.ins().splat(types::F32X4, r),
                Some(v) => self.b.ins().insertlane(v, r, l),
            });
        }
        out.ok_or_else(|| CodegenError::cranelift(&self.name, "zero lanes"))
    }

    /// Defines a read-only table of `fields` as 64-bit little-endian words (a micro-kernel's
    /// `repr(C)` geometry of `usize`s on the 64-bit targets) and returns its address.
    pub fn usize_table(&mut self, fields: &[usize]) -> LResult<Value> {
        let mut bytes = Vec::with_capacity(fields.len() * 8);
        for &f in fields {
            bytes.extend_from_slice(&u64::try_from(f).unwrap_or(u64::MAX).to_le_bytes());
        }
        self.table(bytes)
    }

    /// Defines a read-only table holding `bytes` (16-byte aligned) and returns its address.
    pub fn table(&mut self, bytes: Vec<u8>) -> LResult<Value> {
        let id = self
            .module
            .declare_anonymous_data(false, false)
            .map_err(|e| CodegenError::cranelift(&self.name, e))?;
        let mut d = DataDescription::new();
        d.set_align(16);
        d.define(bytes.into_boxed_slice());
        self.module
            .define_data(id, &d)
            .map_err(|e| CodegenError::cranelift(&self.name, e))?;
        let gv = self.module.declare_data_in_func(id, self.b.func);
        let ptr = self.module.isa().pointer_type();
        Ok(self.b.ins().symbol_value(ptr, gv))
    }

    /// Loads entry `idx` of a table of `ty` values, unchecked: tables are built by the
    /// lowering with exactly the entries it indexes.
    pub fn table_load(&mut self, table: Value, ty: Type, idx: Value) -> Value {
        let off = self.b.ins().imul_imm_s(idx, i64::from(ty.bytes()));
        let a = self.b.ins().iadd(table, off);
        let f = MemFlagsData::new().with_notrap().with_readonly();
        self.b.ins().load(ty, f, a, 0)
    }

    /// Returns 0 from the current block, emits the fault block and finishes the function.
    pub fn finish(mut self) {
        let config = self.module.isa().frontend_config();
        let zero = self.b.ins().iconst(types::I32, 0);
        self.b.ins().return_(&[zero]);
        self.b.switch_to_block(self.fail);
        let code = self.b.block_params(self.fail)[0];
        self.b.ins().return_(&[code]);
        self.b.seal_all_blocks();
        self.b.finalize(config);
    }
}

/// `v` as i64, or an overflow error (shapes are `usize`, IR arithmetic is i64).
pub(crate) fn as_i64(v: usize) -> LResult<i64> {
    i64::try_from(v).map_err(|_| CodegenError::Overflow(format!("the extent {v}")))
}

/// Signature of `f`: f32 arguments, one f32 result.
pub(crate) fn math_signature(module: &dyn Module, f: MathFn) -> Signature {
    let mut s = module.make_signature();
    s.params
        .extend(std::iter::repeat_n(AbiParam::new(types::F32), f.arity()));
    s.returns.push(AbiParam::new(types::F32));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{isa, CodegenOptions};
    use cranelift_codegen::ir::UserFuncName;
    use cranelift_frontend::FunctionBuilderContext;
    use cranelift_jit::{JITBuilder, JITModule};
    use cranelift_module::Linkage;

    /// Runs a kernel over an f32[4] operand that loads element `idx` into an f32[1] result.
    fn run_load(idx: i64, checked: bool) -> i32 {
        let opts = CodegenOptions {
            checked,
            ..Default::default()
        };
        let builder = JITBuilder::with_isa(
            isa(&opts, false).unwrap(),
            cranelift_module::default_libcall_names(),
        );
        let mut module = JITModule::new(builder);
        let sig = crate::abi::task_signature(module.isa().default_call_conv(), types::I64);
        let fid = module.declare_function("k", Linkage::Local, &sig).unwrap();
        let mut ctx = module.make_context();
        ctx.func.signature = sig;
        ctx.func.name = UserFuncName::user(0, fid.as_u32());
        let mut fctx = FunctionBuilderContext::new();
        let math = HashMap::new();
        {
            let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let operand = Operand {
                ty: TensorType::f32([4]),
                packed: None,
            };
            let tys = (vec![operand], TensorType::f32([1]));
            let mut k = Kernel::new(
                b,
                tys,
                0,
                Slots::default(),
                1,
                checked,
                &mut module,
                &math,
                "k".into(),
            )
            .unwrap();
            let i = k.iconst(idx);
            let v = k.load(BufId::In(0), types::F32, i);
            let zero = k.iconst(0);
            k.store(BufId::Out, zero, v);
            k.finish();
        }
        module.define_function(fid, &mut ctx).unwrap();
        module.finalize_definitions().unwrap();
        let code = module.get_finalized_function(fid);
        // Real buffers larger than declared, so an unchecked stray access stays in memory.
        let input = [1.0f32; 16];
        let mut out = [0.0f32; 16];
        let args = [input.as_ptr() as *mut u8, out.as_mut_ptr().cast::<u8>()];
        // SAFETY: `code` is the task just defined, (args, begin, end) -> i32, with two buffers.
        let status = unsafe {
            let f = std::mem::transmute::<*const u8, extern "C" fn(*const *mut u8, u64, u64) -> i32>(
                code,
            );
            f(args.as_ptr(), 0, 1)
        };
        // SAFETY: the kernel has returned; nothing references the module's memory.
        unsafe { module.free_memory() };
        status
    }

    #[test]
    fn checked_mode_stops_out_of_bounds_accesses() {
        assert_eq!(run_load(3, true), 0);
        assert_eq!(run_load(4, true), Fault::OutOfBounds.code());
        assert_eq!(run_load(-1, true), Fault::OutOfBounds.code());
        assert_eq!(run_load(4, false), 0, "unchecked code does not test bounds");
    }
}
