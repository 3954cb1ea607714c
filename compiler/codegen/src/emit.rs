//! Module emission: turns a verified graph into Cranelift functions and data in any
//! `cranelift_module::Module` — the JIT and object files (AOT), through the same code.
//!
//! Emits: one kernel per planned node (see [`crate::lower`]) — one task function per phase of
//! the kernel (phases run in order on the same buffers, e.g. a dyn_conv's mixing then its
//! convolution, each parallel over its own tasks), the GEMM tile when a kernel calls it, and the
//! entry point ([`abi::ENTRY_SYMBOL`], see [`crate::abi`]) that calls the kernels in plan order
//! with pointers into inputs, outputs, weights and the arena (written into one stack slot),
//! running the tasks of parallel kernels through the context's `parallel_for` when there is a
//! context, calling its kernel hook around each kernel when one is set, stops at the first
//! non-zero kernel status, then performs the plan's output copies.
//!
//! Kernels are lowered to Cranelift IR on the calling thread (lowering declares functions and
//! data in the module) and compiled to machine code on worker threads meanwhile
//! (`std::thread::available_parallelism`, the calling thread joining them once lowering is
//! done); the machine code is defined in the module in kernel order, so the output does not
//! depend on the thread count or scheduling.
//!
//! The weights blob ([`abi::WEIGHTS_SYMBOL`], every live constant at its planned offset) is
//! declared as an imported data symbol and never copied into the module: [`write_weights`]
//! fills a buffer the caller owns, which the JIT resolves the symbol to and an object file
//! takes as the contents of a section defining it (see `crate::object`). The weights are
//! written by several threads, straight into their packed layout.
//!
//! Rejects graphs that do not verify, constants without data (when the weights are written),
//! and more kernels than the status encoding can name; a node that cannot be lowered is named
//! in the error.

use crate::abi::{self, MAX_KERNELS};
use crate::error::{CodegenError, NodeRef};
use crate::libcalls::MathFn;
use crate::lower::{self, kernel::math_signature, kernel::Kernel, kernel::Operand, kernel::Slots};
use crate::pack::Packing;
use crate::plan::{self, MemoryPlan, Storage};
use crate::target::CodegenOptions;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, BlockArg, Function, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind,
    UserFuncName, Value,
};
use cranelift_codegen::isa::TargetIsa;
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataId, FuncId, Linkage, Module, ModuleReloc};
use dync_ir::{Graph, Numbering, Op, TensorData, TensorType};
use dync_runtime::ukernel::{Isa, GEMM_F32_M0, GEMM_F32_N0};
use std::collections::HashMap;
use std::sync::{mpsc, Mutex};

/// What emission produced: the entry function and everything a runtime needs to call it.
#[derive(Clone, Debug)]
pub struct EmittedModel {
    pub entry: FuncId,
    pub plan: MemoryPlan,
    /// The node of each kernel, in execution order (to name the node of a failing status).
    pub kernels: Vec<NodeRef>,
    /// Graph inputs and outputs in signature order.
    pub inputs: Vec<(String, TensorType)>,
    pub outputs: Vec<(String, TensorType)>,
    /// The weights blob's symbol ([`abi::WEIGHTS_SYMBOL`], imported; see the module docs),
    /// when the plan has weights.
    pub weights: Option<DataId>,
}

/// The `NodeRef` of node `id`.
pub fn node_ref(g: &Graph, num: &Numbering, id: dync_ir::NodeId) -> NodeRef {
    let n = g.node(id);
    NodeRef {
        value: num.number(id).unwrap_or(id.index()),
        op: n.op.name(),
        origin: n.origin.clone(),
    }
}

/// Emits `g` into `module`, whose ISA `isa` is (kernels are compiled with it on worker
/// threads); the caller provides the weights (see the module docs) and finalizes the module.
pub fn emit_model<M: Module>(
    module: &mut M,
    isa: &dyn TargetIsa,
    g: &Graph,
    opts: &CodegenOptions,
) -> Result<EmittedModel, CodegenError> {
    emit_model_with_progress(module, isa, g, opts, &mut |_, _| {})
}

/// [`emit_model`], calling `progress(done, total)` after each kernel is lowered (for progress
/// bars of long compiles).
pub fn emit_model_with_progress<M: Module>(
    module: &mut M,
    isa: &dyn TargetIsa,
    g: &Graph,
    opts: &CodegenOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EmittedModel, CodegenError> {
    dync_ir::verify(g).map_err(CodegenError::Verify)?;
    let plan = plan::plan(g)?;
    if plan.kernels.len() > MAX_KERNELS {
        return Err(CodegenError::Overflow(format!(
            "the kernel count {}",
            plan.kernels.len()
        )));
    }
    let num = Numbering::new(g);
    let module: &mut dyn Module = module;

    let mut math = HashMap::new();
    for f in MathFn::ALL {
        let sig = math_signature(module, f);
        let id = module
            .declare_function(f.symbol(), Linkage::Import, &sig)
            .map_err(|e| CodegenError::cranelift(f.symbol(), e))?;
        math.insert(f, id);
    }
    let weights = if plan.weights.is_empty() {
        None
    } else {
        Some(
            module
                .declare_data(abi::WEIGHTS_SYMBOL, Linkage::Import, false, false)
                .map_err(|e| CodegenError::cranelift(abi::WEIGHTS_SYMBOL, e))?,
        )
    };

    // Whether generated code may call the context's micro-kernels (x86-64 only: aarch64's hot
    // path is Cranelift's).
    let ukernels = !opts.no_ukernels
        && module.isa().triple().architecture == target_lexicon::Architecture::X86_64;
    let mut fctx = FunctionBuilderContext::new();
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Mutex::new(rx);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1);
    let (lowered, compiled) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| s.spawn(|| compile_jobs(isa, &rx)))
            .collect();
        let lowered = lower_kernels(
            module,
            g,
            &num,
            &plan,
            (opts, ukernels),
            &math,
            &mut fctx,
            tx,
            progress,
        );
        // The sender is gone (dropped by `lower_kernels`): the queue drains, then every loop ends.
        let mut compiled = compile_jobs(isa, &rx);
        for h in handles {
            match h.join() {
                Ok(c) => compiled.extend(c),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        (lowered, compiled)
    });
    let kernel_ids = lowered?;
    let mut compiled = compiled;
    compiled.sort_by_key(|c| c.0);
    for (_, fid, code) in compiled {
        let code = code?;
        module
            .define_function_bytes(fid, code.alignment, &code.bytes, &code.relocs)
            .map_err(|e| CodegenError::cranelift(code.what, format!("{e:?}")))?;
    }
    let kernels = plan
        .kernels
        .iter()
        .map(|&id| node_ref(g, &num, id))
        .collect();

    let tile = if kernel_ids.iter().any(|k| k.slots.tile) {
        Some((crate::tile::emit_gemm_tile(module, TILE_SYMBOL)?, ukernels))
    } else {
        None
    };
    let entry = emit_entry(module, g, &plan, &kernel_ids, weights, tile, &mut fctx)?;
    let sig_of = |list: &[(String, dync_ir::NodeId)]| {
        list.iter()
            .map(|(n, id)| (n.clone(), g.ty(*id).clone()))
            .collect()
    };
    Ok(EmittedModel {
        entry,
        kernels,
        inputs: sig_of(&g.inputs),
        outputs: sig_of(&g.outputs),
        plan,
        weights,
    })
}

/// One kernel function lowered to Cranelift IR, waiting for its machine code.
struct Job {
    /// Position in definition order.
    seq: usize,
    id: FuncId,
    func: Function,
    /// The node, for errors.
    what: String,
}

/// A function's machine code, to be defined in the module.
struct Code {
    alignment: u64,
    bytes: Vec<u8>,
    relocs: Vec<ModuleReloc>,
    what: String,
}

/// Lowers every kernel of the plan (declaring its functions in `module`) and sends each
/// function to `jobs`; returns each kernel's phases (function and tasks) and whether it calls
/// the GEMM tile. `jobs` is dropped on return, so that the compiling loops end.
#[allow(clippy::too_many_arguments)]
fn lower_kernels(
    module: &mut dyn Module,
    g: &Graph,
    num: &Numbering,
    plan: &MemoryPlan,
    (opts, ukernels): (&CodegenOptions, bool),
    math: &HashMap<MathFn, FuncId>,
    fctx: &mut FunctionBuilderContext,
    jobs: mpsc::Sender<Job>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<KernelFns>, CodegenError> {
    let ptr = module.isa().pointer_type();
    let call_conv = module.isa().default_call_conv();
    let mut ctx = module.make_context();
    let mut kernel_ids = Vec::with_capacity(plan.kernels.len());
    let mut seq = 0;
    for (i, &id) in plan.kernels.iter().enumerate() {
        let node = g.node(id);
        let nref = node_ref(g, num, id);
        let operands = g.operands(id);
        let operand_tys: Vec<&TensorType> = operands.iter().map(|&o| g.ty(o)).collect();
        let packed = lower::packed_operand(&node.op)
            .and_then(|i| operands.get(i))
            .and_then(|o| plan.packed.get(o));
        let scratch = lower::scratch_elems(&node.op, &operand_tys, &node.ty, packed);
        // Both depthwise kernels serve the same ops (the shape picks one at compile time).
        let dw = ukernels && lower::uses_dw(&node.op, &operand_tys, &node.ty, packed.is_some());
        let slots = Slots {
            tile: packed.is_some(),
            silu: ukernels && lower::uses_silu(&node.op, &operand_tys, packed.is_some()),
            mix: ukernels && lower::uses_mix(&node.op, packed.is_some()),
            dw,
            dwp: dw,
            dwc: ukernels && lower::uses_dwc(&node.op, &operand_tys, &node.ty, packed.is_some()),
            gemv: ukernels && lower::uses_gemv(&node.op, &operand_tys),
            taps: ukernels && lower::uses_taps(&node.op, &operand_tys, &node.ty, packed),
        };
        let mut phases = Vec::new();
        for phase in 0..lower::phases(&node.op, &operand_tys, packed) {
            let tasks = lower::tasks(&node.op, &operand_tys, &node.ty, packed, phase);
            let sig = abi::task_signature(call_conv, ptr);
            let name = match phase {
                0 => format!("dync_kernel_{i}"),
                p => format!("dync_kernel_{i}_{p}"),
            };
            let fid = module
                .declare_function(&name, Linkage::Local, &sig)
                .map_err(|e| CodegenError::cranelift(&name, e))?;
            ctx.func.signature = sig;
            ctx.func.name = UserFuncName::user(0, fid.as_u32());
            let tys = operands
                .iter()
                .map(|&o| Operand {
                    ty: g.ty(o).clone(),
                    packed: plan.packed.get(&o).copied(),
                })
                .collect();
            let b = FunctionBuilder::new(&mut ctx.func, fctx);
            let mut k = Kernel::new(
                b,
                (tys, node.ty.clone()),
                scratch,
                slots,
                tasks,
                opts.checked,
                module,
                math,
                name,
            )?;
            k.residual_in_place = plan.in_place.contains_key(&id);
            lower::lower(&mut k, &node.op, &nref, phase)?;
            k.finish();
            let func = std::mem::replace(&mut ctx.func, Function::new());
            module.clear_context(&mut ctx);
            let job = Job {
                seq,
                id: fid,
                func,
                what: nref.to_string(),
            };
            seq += 1;
            // The receiver lives as long as the caller's scope: sending does not fail.
            jobs.send(job).map_err(|_| {
                CodegenError::cranelift(nref.to_string(), "the compiling threads stopped")
            })?;
            phases.push((fid, tasks));
        }
        kernel_ids.push(KernelFns { phases, slots });
        progress(i + 1, plan.kernels.len());
    }
    Ok(kernel_ids)
}

/// A kernel's phases (function and tasks, run in order with the same arguments) and whether it
/// calls the GEMM tile.
struct KernelFns {
    /// Each phase's function and task count, run in order with the same arguments.
    phases: Vec<(FuncId, usize)>,
    /// The function pointers the kernel takes after its buffers.
    slots: Slots,
}

/// Compiles jobs from `jobs` until the queue is empty and its sender gone; returns each job's
/// position, function and machine code (or error).
fn compile_jobs(
    isa: &dyn TargetIsa,
    jobs: &Mutex<mpsc::Receiver<Job>>,
) -> Vec<(usize, FuncId, Result<Code, CodegenError>)> {
    let mut ctx = Context::new();
    let mut out = Vec::new();
    loop {
        // The lock is held only to take one job; a poisoned lock (a panicking peer) ends this
        // loop too, and the panic is resumed when the peer is joined.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => break,
        };
        let Ok(job) = job else { break };
        let (seq, id) = (job.seq, job.id);
        out.push((seq, id, compile_job(isa, &mut ctx, job)));
    }
    out
}

/// Machine code of one job, compiled in `ctx` (reused across jobs).
fn compile_job(isa: &dyn TargetIsa, ctx: &mut Context, job: Job) -> Result<Code, CodegenError> {
    ctx.clear();
    ctx.func = job.func;
    let what = job.what;
    if let Err(e) = ctx.compile(isa, &mut ControlPlane::default()) {
        return Err(CodegenError::cranelift(what, format!("{:?}", e.inner)));
    }
    let code = ctx
        .compiled_code()
        .ok_or_else(|| CodegenError::cranelift(what.clone(), "no machine code"))?;
    let relocs = code
        .buffer
        .relocs()
        .iter()
        .map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, job.id))
        .collect();
    Ok(Code {
        alignment: u64::from(code.buffer.alignment),
        bytes: code.buffer.data().to_vec(),
        relocs,
        what,
    })
}

/// Writes the weights blob of `g`'s plan into `dst`: every live constant at its planned
/// offset, packed constants in their [`crate::pack::Packing`]. `dst` must be zero-filled (the
/// gaps between weights and packed padding stay zero) and at least `plan.weight_bytes` long.
/// Rejects a constant without data (its IR text elided the weights). The weights are written by
/// up to `std::thread::available_parallelism` threads.
pub fn write_weights(g: &Graph, plan: &MemoryPlan, dst: &mut [u8]) -> Result<(), CodegenError> {
    let num = Numbering::new(g);
    let mut jobs: Vec<(Option<&Packing>, &TensorData, &mut [u8])> =
        Vec::with_capacity(plan.weights.len());
    let mut rest = dst;
    let mut at = 0usize;
    for (j, &(id, off)) in plan.weights.iter().enumerate() {
        let nref = || node_ref(g, &num, id);
        let value = match &g.node(id).op {
            Op::Const(c) => c.value.as_deref(),
            _ => None,
        }
        .ok_or_else(|| {
            CodegenError::lower(
                &nref(),
                "constant has no data (its IR text elided the weights)",
            )
        })?;
        // A weight's space: up to the next weight's offset (the last one: its own size).
        let end = plan
            .weights
            .get(j + 1)
            .map_or(plan.weight_bytes, |&(_, next)| next);
        let outside = || CodegenError::lower(&nref(), "weight outside the weights blob");
        let skip = off.checked_sub(at).ok_or_else(outside)?;
        let len = end.checked_sub(off).ok_or_else(outside)?;
        if skip > rest.len() || len > rest.len() - skip {
            return Err(outside());
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
        let (here, tail) = tail.split_at_mut(len);
        rest = tail;
        at = end;
        // Only f32 weights are packed (the GEMM path's).
        let packed = plan
            .packed
            .get(&id)
            .filter(|_| matches!(value.data(), TensorData::F32(_)));
        let need = match packed {
            Some(p) => p.elems().and_then(|n| n.checked_mul(4)),
            None => value.len().checked_mul(value.dtype().size()),
        };
        if need.is_none_or(|n| n > here.len()) {
            return Err(outside());
        }
        if packed.is_some_and(|p| p.src_elems().is_none_or(|n| n > value.len())) {
            return Err(CodegenError::lower(
                &nref(),
                "the weight has fewer elements than its packing reads",
            ));
        }
        jobs.push((packed, value.data(), here));
    }
    // Largest first, so that the threads finish together.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.2.len()));
    let jobs = Mutex::new(jobs.into_iter());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let write = || loop {
        let next = match jobs.lock() {
            Ok(mut it) => it.next(),
            Err(_) => None,
        };
        let Some((packed, data, dst)) = next else {
            break;
        };
        write_weight(packed, data, dst);
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(write);
        }
        write();
    });
    Ok(())
}

/// `n` zero bytes, allocated fallibly from the allocator's zeroed memory (fresh pages are not
/// written: a large blob costs no pass over memory before the weights are written).
pub fn zeroed_bytes(n: usize) -> Result<Vec<u8>, CodegenError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(n).map_err(|_| CodegenError::Alloc(n))?;
    // SAFETY: the layout's size is non-zero.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return Err(CodegenError::Alloc(n));
    }
    // SAFETY: `p` was allocated by the global allocator with the layout of `n` bytes (size `n`,
    // alignment 1, as `Vec<u8>` of capacity `n` has), and all `n` bytes are initialized (zero).
    Ok(unsafe { Vec::from_raw_parts(p, n, n) })
}

/// Writes one weight into `dst` (zero-filled, large enough: checked by [`write_weights`]), in
/// the `packed` layout when given (then `data` is f32).
fn write_weight(packed: Option<&Packing>, data: &TensorData, dst: &mut [u8]) {
    match (packed, data) {
        (Some(p), TensorData::F32(v)) => p.pack_into(v, dst),
        (None, TensorData::F32(v)) => {
            for (d, x) in dst.chunks_exact_mut(4).zip(v) {
                d.copy_from_slice(&x.to_le_bytes());
            }
        }
        (_, other) => {
            let b = tensor_bytes(other);
            dst[..b.len()].copy_from_slice(&b);
        }
    }
}

/// The context's GEMM micro-kernel (`ctx->ukernels->gemm_f32`) when there is a context with
/// a table that is not the portable one and has the `M0 × N0` tile the code was compiled for,
/// else `own` (the module's Cranelift tile).
fn micro_kernel_or(
    b: &mut FunctionBuilder,
    rt: Value,
    has_ctx: Value,
    own: Value,
    ptr: cranelift_codegen::ir::Type,
) -> Result<Value, CodegenError> {
    table_fn(
        b,
        (rt, has_ctx),
        ptr,
        abi::UKERNELS_GEMM_F32,
        own,
        |b, table, flags| tile_matches(b, table, flags, ptr),
    )
}

/// Whether the micro-kernel table `table` has the `M0 × N0` GEMM tile the code was compiled
/// for.
fn tile_matches(
    b: &mut FunctionBuilder,
    table: Value,
    flags: MemFlagsData,
    ptr: cranelift_codegen::ir::Type,
) -> Result<Option<Value>, CodegenError> {
    let m0 = b
        .ins()
        .load(ptr, flags, table, ctx_off(abi::UKERNELS_GEMM_F32_M0)?);
    let n0 = b
        .ins()
        .load(ptr, flags, table, ctx_off(abi::UKERNELS_GEMM_F32_N0)?);
    let m_ok = b.ins().icmp_imm_s(IntCC::Equal, m0, GEMM_F32_M0 as i64);
    let n_ok = b.ins().icmp_imm_s(IntCC::Equal, n0, GEMM_F32_N0 as i64);
    Ok(Some(b.ins().band(m_ok, n_ok)))
}

/// The context's micro-kernel at byte offset `field` of its table when there is a context with
/// a table that is not the portable one (and, `with_tile`, whose GEMM tile the code uses:
/// [`micro_kernel_or`]'s condition), else null; the kernels then run their own code. The
/// SiLU slot takes the tile's condition (non-null then also means that the GEMM tile is the
/// table's, which implements `GEMM_SILU` and `GEMM_HARDSWISH`), the mixing slot too (its `M0` is the tile's, which
/// the packed layout it writes depends on), the in-place convolution tile too (it reads the
/// same packed `A`); the depthwise, matrix-vector and in-place convolution kernels may be
/// null in a table (ISAs without them).
fn kernel_or_null(
    b: &mut FunctionBuilder,
    (rt, has_ctx): (Value, Value),
    ptr: cranelift_codegen::ir::Type,
    field: usize,
    with_tile: bool,
) -> Result<Value, CodegenError> {
    let null = b.ins().iconst(ptr, 0);
    table_fn(b, (rt, has_ctx), ptr, field, null, |b, table, flags| {
        if with_tile {
            tile_matches(b, table, flags, ptr)
        } else {
            Ok(None)
        }
    })
}

/// The function pointer at byte offset `field` of the context's micro-kernel table when there
/// is a context (`rt`, `has_ctx`) with a table that is not the portable one and `usable`
/// (given the table; `None`: no further condition) holds, else `fallback`.
fn table_fn(
    b: &mut FunctionBuilder,
    (rt, has_ctx): (Value, Value),
    ptr: cranelift_codegen::ir::Type,
    field: usize,
    fallback: Value,
    usable: impl FnOnce(
        &mut FunctionBuilder,
        Value,
        MemFlagsData,
    ) -> Result<Option<Value>, CodegenError>,
) -> Result<Value, CodegenError> {
    let flags = MemFlagsData::new().with_notrap().with_aligned();
    let (read, check, join) = (b.create_block(), b.create_block(), b.create_block());
    let chosen = b.append_block_param(join, ptr);
    b.ins()
        .brif(has_ctx, read, &[], join, &[BlockArg::Value(fallback)]);
    b.switch_to_block(read);
    let table = b.ins().load(ptr, flags, rt, ctx_off(abi::CTX_UKERNELS)?);
    b.ins()
        .brif(table, check, &[], join, &[BlockArg::Value(fallback)]);
    b.switch_to_block(check);
    let isa = b
        .ins()
        .load(types::I32, flags, table, ctx_off(abi::UKERNELS_ISA)?);
    let ok = b
        .ins()
        .icmp_imm_s(IntCC::NotEqual, isa, Isa::Generic as i64);
    let ok = match usable(b, table, flags)? {
        Some(more) => b.ins().band(ok, more),
        None => ok,
    };
    let f = b.ins().load(ptr, flags, table, ctx_off(field)?);
    let pick = b.ins().select(ok, f, fallback);
    b.ins().jump(join, &[BlockArg::Value(pick)]);
    b.switch_to_block(join);
    Ok(chosen)
}

/// A byte offset of the context's or its table's layout, as a load offset.
fn ctx_off(n: usize) -> Result<i32, CodegenError> {
    i32::try_from(n).map_err(|_| CodegenError::cranelift(abi::ENTRY_SYMBOL, "ctx layout"))
}

/// Little-endian bytes of tensor data (bool as one byte 0 or 1), the layout kernels read.
pub fn tensor_bytes(d: &TensorData) -> Vec<u8> {
    match d {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| u8::from(x)).collect(),
    }
}

/// Symbol of the module's Cranelift GEMM tile.
const TILE_SYMBOL: &str = "dync_gemm_tile";

/// Emits the entry point. `kernel_ids`: each kernel's phases and function slots; `tile`: the
/// module's Cranelift tile and whether the context's micro-kernels may be used (the GEMM tile
/// replacing it, the SiLU kernel in the slot of the kernels that take one).
fn emit_entry(
    module: &mut dyn Module,
    g: &Graph,
    plan: &MemoryPlan,
    kernel_ids: &[KernelFns],
    weights: Option<cranelift_module::DataId>,
    tile: Option<(FuncId, bool)>,
    fctx: &mut FunctionBuilderContext,
) -> Result<FuncId, CodegenError> {
    let ptr = module.isa().pointer_type();
    let sig = abi::entry_signature(module.isa().default_call_conv(), ptr);
    let entry = module
        .declare_function(abi::ENTRY_SYMBOL, Linkage::Export, &sig)
        .map_err(|e| CodegenError::cranelift(abi::ENTRY_SYMBOL, e))?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, entry.as_u32());
    let config = module.isa().frontend_config();
    let err = |e: String| CodegenError::cranelift(abi::ENTRY_SYMBOL, e);
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
        let start = b.create_block();
        b.append_block_params_for_function_params(start);
        b.switch_to_block(start);
        let p = b.block_params(start).to_vec();
        let (inputs, outputs, workspace, rt) = (p[0], p[1], p[2], p[3]);
        // Per kernel: operands, result, scratch, function pointers (as the loop below writes).
        let max_bufs = plan
            .kernels
            .iter()
            .zip(kernel_ids)
            .map(|(&id, k)| {
                g.operands(id).len()
                    + 1
                    + usize::from(plan.scratch.contains_key(&id))
                    + k.slots.count()
            })
            .max()
            .unwrap_or(0);
        let slot_bytes = u32::try_from(max_bufs * 8)
            .map_err(|_| err("too many kernel operands".into()))?
            .max(8);
        let slot = b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            slot_bytes,
            3,
        ));
        let args = b.ins().stack_addr(ptr, slot, 0);
        let call_conv = module.isa().default_call_conv();
        let pf_sig = b.import_signature(abi::parallel_for_signature(call_conv, ptr));
        let hook_sig = b.import_signature(abi::hook_signature(call_conv, ptr));
        let ctx_flags = MemFlagsData::new().with_notrap().with_aligned();
        let has_ctx = b.ins().icmp_imm_s(IntCC::NotEqual, rt, 0);
        // Calls `ctx->kernel_hook(ctx, kernel, phase)` when there is a context with a hook.
        let hook =
            |b: &mut FunctionBuilder, kernel: usize, phase: u32| -> Result<(), CodegenError> {
                let (check, call, done) = (b.create_block(), b.create_block(), b.create_block());
                b.ins().brif(has_ctx, check, &[], done, &[]);
                b.switch_to_block(check);
                let f = b
                    .ins()
                    .load(ptr, ctx_flags, rt, ctx_off(abi::CTX_KERNEL_HOOK)?);
                b.ins().brif(f, call, &[], done, &[]);
                b.switch_to_block(call);
                let k = b.ins().iconst(
                    types::I32,
                    i64::try_from(kernel).map_err(|_| err("kernel index".into()))?,
                );
                let ph = b.ins().iconst(types::I32, i64::from(phase));
                b.ins().call_indirect(hook_sig, f, &[rt, k, ph]);
                b.ins().jump(done, &[]);
                b.switch_to_block(done);
                Ok(())
            };
        let tile_fn = match tile {
            Some((cl, ukernels)) => {
                let fref = module.declare_func_in_func(cl, b.func);
                let own = b.ins().func_addr(ptr, fref);
                Some(if ukernels {
                    micro_kernel_or(&mut b, rt, has_ctx, own, ptr)?
                } else {
                    own
                })
            }
            None => None,
        };
        let fail = b.create_block();
        b.append_block_param(fail, types::I32);
        b.set_cold_block(fail);
        let wbase = match weights {
            Some(w) => {
                let gv = module.declare_data_in_func(w, b.func);
                Some(b.ins().symbol_value(ptr, gv))
            }
            None => None,
        };
        let flags = MemFlagsData::new().with_notrap().with_readonly();
        let mut cache: HashMap<Storage, Value> = HashMap::new();
        let mut address = |b: &mut FunctionBuilder, st: Storage| -> Result<Value, CodegenError> {
            if let Some(&v) = cache.get(&st) {
                return Ok(v);
            }
            let imm = |n: usize| {
                i64::try_from(n).map_err(|_| CodegenError::Overflow(format!("the offset {n}")))
            };
            let v = match st {
                Storage::Input(i) => b.ins().load(
                    ptr,
                    flags,
                    inputs,
                    i32::try_from(i * 8).map_err(|_| err("too many inputs".into()))?,
                ),
                Storage::Output(j) => b.ins().load(
                    ptr,
                    flags,
                    outputs,
                    i32::try_from(j * 8).map_err(|_| err("too many outputs".into()))?,
                ),
                Storage::Arena(off) => b.ins().iadd_imm_s(workspace, imm(off)?),
                Storage::Weight(off) => {
                    let base =
                        wbase.ok_or_else(|| err("a weight without a weights blob".into()))?;
                    b.ins().iadd_imm_s(base, imm(off)?)
                }
            };
            cache.insert(st, v);
            Ok(v)
        };
        let storage_of = |id: dync_ir::NodeId| {
            plan.storage
                .get(&id)
                .copied()
                .ok_or_else(|| err(format!("node {} has no storage", id.index())))
        };
        // The micro-kernels some kernel takes a slot for, read once per call.
        let slot_fn = |b: &mut FunctionBuilder, wanted: fn(&Slots) -> bool, field, with_tile| {
            if kernel_ids.iter().any(|k| wanted(&k.slots)) {
                kernel_or_null(b, (rt, has_ctx), ptr, field, with_tile).map(Some)
            } else {
                Ok(None)
            }
        };
        let silu_fn = slot_fn(&mut b, |s| s.silu, abi::UKERNELS_SILU_F32, true)?;
        let mix_fn = slot_fn(&mut b, |s| s.mix, abi::UKERNELS_MIX_F32, true)?;
        let dw_fn = slot_fn(&mut b, |s| s.dw, abi::UKERNELS_DW_F32, false)?;
        let dwp_fn = slot_fn(&mut b, |s| s.dwp, abi::UKERNELS_DWP_F32, false)?;
        let dwc_fn = slot_fn(&mut b, |s| s.dwc, abi::UKERNELS_DWC_F32, false)?;
        let gemv_fn = slot_fn(&mut b, |s| s.gemv, abi::UKERNELS_GEMV_F32, false)?;
        let taps_fn = slot_fn(&mut b, |s| s.taps, abi::UKERNELS_TAPS_F32, true)?;
        for (i, (&id, KernelFns { phases, slots })) in
            plan.kernels.iter().zip(kernel_ids).enumerate()
        {
            let mut bufs = Vec::new();
            for o in g.operands(id) {
                bufs.push(address(&mut b, storage_of(o)?)?);
            }
            bufs.push(address(&mut b, storage_of(id)?)?);
            if let Some(&off) = plan.scratch.get(&id) {
                bufs.push(address(&mut b, Storage::Arena(off))?);
            }
            let fns = [
                tile_fn, silu_fn, mix_fn, dw_fn, dwp_fn, dwc_fn, gemv_fn, taps_fn,
            ];
            for (name, (taken, f)) in Slots::NAMES.iter().zip(slots.taken().into_iter().zip(fns)) {
                if taken {
                    bufs.push(f.ok_or_else(|| err(format!("a {name} slot without a kernel")))?);
                }
            }
            for (j, &v) in bufs.iter().enumerate() {
                let off = i32::try_from(j * 8).map_err(|_| err("too many operands".into()))?;
                b.ins().stack_store(ptr, v, slot, off);
            }
            hook(&mut b, i, abi::HOOK_BEGIN)?;
            // The phases run in order; a failing one skips the rest (its status is the node's).
            let mut status: Option<Value> = None;
            for &(fid, tasks) in phases {
                let after = match status {
                    None => None,
                    Some(st) => {
                        let (run, join) = (b.create_block(), b.create_block());
                        let joined = b.append_block_param(join, types::I32);
                        let bad = b.ins().icmp_imm_s(IntCC::NotEqual, st, 0);
                        b.ins().brif(bad, join, &[BlockArg::Value(st)], run, &[]);
                        b.switch_to_block(run);
                        Some((join, joined))
                    }
                };
                let fref = module.declare_func_in_func(fid, b.func);
                let n = b.ins().iconst(
                    types::I64,
                    i64::try_from(tasks).map_err(|_| err("task count".into()))?,
                );
                let zero = b.ins().iconst(types::I64, 0);
                let st = if tasks > 1 {
                    let (pool, direct, join) =
                        (b.create_block(), b.create_block(), b.create_block());
                    let st = b.append_block_param(join, types::I32);
                    b.ins().brif(has_ctx, pool, &[], direct, &[]);
                    b.switch_to_block(pool);
                    let pf = b
                        .ins()
                        .load(ptr, ctx_flags, rt, ctx_off(abi::CTX_PARALLEL_FOR)?);
                    let task = b.ins().func_addr(ptr, fref);
                    let call = b.ins().call_indirect(pf_sig, pf, &[rt, task, args, n]);
                    let r = b.inst_results(call)[0];
                    b.ins().jump(join, &[BlockArg::Value(r)]);
                    b.switch_to_block(direct);
                    let call = b.ins().call(fref, &[args, zero, n]);
                    let r = b.inst_results(call)[0];
                    b.ins().jump(join, &[BlockArg::Value(r)]);
                    b.switch_to_block(join);
                    st
                } else {
                    let call = b.ins().call(fref, &[args, zero, n]);
                    b.inst_results(call)[0]
                };
                status = Some(match after {
                    None => st,
                    Some((join, joined)) => {
                        b.ins().jump(join, &[BlockArg::Value(st)]);
                        b.switch_to_block(join);
                        joined
                    }
                });
            }
            let status = status.ok_or_else(|| err("a kernel without phases".into()))?;
            hook(&mut b, i, abi::HOOK_END)?;
            let bad = b.ins().icmp_imm_s(IntCC::NotEqual, status, 0);
            let tag = i64::try_from(i + 1).map_err(|_| err("kernel index".into()))? << 8;
            let code = b.ins().iadd_imm_s(status, tag);
            let cont = b.create_block();
            b.ins().brif(bad, fail, &[BlockArg::Value(code)], cont, &[]);
            b.switch_to_block(cont);
        }
        for &(j, id) in &plan.copies {
            let bytes = g
                .ty(id)
                .bytes()
                .map_err(|e| CodegenError::Overflow(e.to_string()))?;
            if bytes == 0 {
                continue;
            }
            let dst = address(&mut b, Storage::Output(j))?;
            let src = address(&mut b, storage_of(id)?)?;
            let size = b.ins().iconst(
                ptr,
                i64::try_from(bytes).map_err(|_| CodegenError::Overflow("an output".into()))?,
            );
            b.call_memcpy(config, dst, src, size);
        }
        let zero = b.ins().iconst(types::I32, 0);
        b.ins().return_(&[zero]);
        b.switch_to_block(fail);
        let code = b.block_params(fail)[0];
        b.ins().return_(&[code]);
        b.seal_all_blocks();
        b.finalize(config);
    }
    module
        .define_function(entry, &mut ctx)
        .map_err(|e| err(format!("{e:?}")))?;
    Ok(entry)
}
