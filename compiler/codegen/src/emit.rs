//! Module emission: turns a verified graph into Cranelift functions and data in any
//! `cranelift_module::Module` — the JIT now, object files (AOT) later, through the same code.
//!
//! Emits: the weights blob ([`abi::WEIGHTS_SYMBOL`], every live constant at its planned
//! offset), one kernel per planned node (see [`crate::lower`]) — one task function per phase of
//! the kernel (phases run in order on the same buffers, e.g. a dyn_conv's mixing then its
//! convolution, each parallel over its own tasks), the GEMM tile when a kernel calls it, and the entry
//! point ([`abi::ENTRY_SYMBOL`], see [`crate::abi`]) that calls the kernels in plan order with
//! pointers into inputs, outputs, weights and the arena (written into one stack slot), running
//! the tasks of parallel kernels through the context's `parallel_for` when there is a context,
//! calling its kernel hook around each kernel when one is set, stops at the first non-zero
//! kernel status, then performs the plan's output copies.
//!
//! Rejects graphs that do not verify, constants without data, and more kernels than the
//! status encoding can name; a node that cannot be lowered is named in the error.

use crate::abi::{self, ALIGN, MAX_KERNELS};
use crate::error::{CodegenError, NodeRef};
use crate::libcalls::MathFn;
use crate::lower::{self, kernel::math_signature, kernel::Kernel, kernel::Operand};
use crate::plan::{self, MemoryPlan, Storage};
use crate::target::CodegenOptions;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, BlockArg, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, FuncId, Linkage, Module};
use dync_ir::{Graph, Numbering, Op, TensorData, TensorType};
use dync_runtime::ukernel::{Isa, GEMM_F32_M0, GEMM_F32_N0};
use std::collections::HashMap;

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

/// Emits `g` into `module`; the caller finalizes the module.
pub fn emit_model<M: Module>(
    module: &mut M,
    g: &Graph,
    opts: &CodegenOptions,
) -> Result<EmittedModel, CodegenError> {
    emit_model_with_progress(module, g, opts, &mut |_, _| {})
}

/// [`emit_model`], calling `progress(done, total)` after each kernel is compiled (for progress
/// bars of long compiles).
pub fn emit_model_with_progress<M: Module>(
    module: &mut M,
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
    let ptr = module.isa().pointer_type();
    let call_conv = module.isa().default_call_conv();

    let mut math = HashMap::new();
    for f in MathFn::ALL {
        let sig = math_signature(module, f);
        let id = module
            .declare_function(f.symbol(), Linkage::Import, &sig)
            .map_err(|e| CodegenError::cranelift(f.symbol(), e))?;
        math.insert(f, id);
    }
    let weights = emit_weights(module, g, &num, &plan)?;

    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut kernel_ids = Vec::with_capacity(plan.kernels.len());
    let mut kernels = Vec::with_capacity(plan.kernels.len());
    for (i, &id) in plan.kernels.iter().enumerate() {
        let node = g.node(id);
        let nref = node_ref(g, &num, id);
        let operands = g.operands(id);
        let operand_tys: Vec<&TensorType> = operands.iter().map(|&o| g.ty(o)).collect();
        let packed = lower::packed_operand(&node.op)
            .and_then(|i| operands.get(i))
            .and_then(|o| plan.packed.get(o));
        let scratch = lower::scratch_elems(&node.op, &operand_tys, packed);
        let mut phases = Vec::new();
        for phase in 0..lower::phases(&node.op, packed) {
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
            let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let mut k = Kernel::new(
                b,
                (tys, node.ty.clone()),
                scratch,
                packed.is_some(),
                tasks,
                opts.checked,
                module,
                &math,
                name,
            )?;
            lower::lower(&mut k, &node.op, &nref, phase)?;
            k.finish();
            module
                .define_function(fid, &mut ctx)
                .map_err(|e| CodegenError::cranelift(nref.to_string(), format!("{e:?}")))?;
            module.clear_context(&mut ctx);
            phases.push((fid, tasks));
        }
        kernel_ids.push((phases, packed.is_some()));
        kernels.push(nref);
        progress(i + 1, plan.kernels.len());
    }

    let tile = if kernel_ids.iter().any(|k| k.1) {
        let ukernels = !opts.no_ukernels
            && module.isa().triple().architecture == target_lexicon::Architecture::X86_64;
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
    })
}

/// Defines the weights blob (when there are weights). Weights of zero elements (an empty
/// initializer) still need an address, so a plan of only those gets a one-byte blob.
fn emit_weights(
    module: &mut dyn Module,
    g: &Graph,
    num: &Numbering,
    plan: &MemoryPlan,
) -> Result<Option<cranelift_module::DataId>, CodegenError> {
    /// One weight's contents as they are written into the blob.
    enum WeightData<'a> {
        F32(&'a [f32]),
        Bytes(Vec<u8>),
    }
    if plan.weights.is_empty() {
        return Ok(None);
    }
    let len = plan.weight_bytes.max(1);
    let mut blob = Vec::new();
    blob.try_reserve_exact(len)
        .map_err(|_| CodegenError::Alloc(len))?;
    blob.resize(len, 0u8);
    for &(id, off) in &plan.weights {
        let value = match &g.node(id).op {
            Op::Const(c) => c.value.as_deref(),
            _ => None,
        }
        .ok_or_else(|| {
            CodegenError::lower(
                &node_ref(g, num, id),
                "constant has no data (its IR text elided the weights)",
            )
        })?;
        // f32 weights (nearly all the bytes) are written in place, without a byte copy.
        let packed;
        let data = match (plan.packed.get(&id), value.data()) {
            (Some(p), TensorData::F32(v)) => {
                packed = p.pack(v);
                WeightData::F32(&packed)
            }
            (_, TensorData::F32(v)) => WeightData::F32(v),
            (_, other) => WeightData::Bytes(tensor_bytes(other)),
        };
        let n = match &data {
            WeightData::F32(v) => v.len() * 4,
            WeightData::Bytes(b) => b.len(),
        };
        let dst = blob
            .get_mut(off..)
            .and_then(|b| b.get_mut(..n))
            .ok_or_else(|| {
                CodegenError::lower(&node_ref(g, num, id), "weight outside the weights blob")
            })?;
        match data {
            WeightData::F32(v) => {
                for (d, x) in dst.chunks_exact_mut(4).zip(v) {
                    d.copy_from_slice(&x.to_le_bytes());
                }
            }
            WeightData::Bytes(b) => dst.copy_from_slice(&b),
        }
    }
    let id = module
        .declare_data(abi::WEIGHTS_SYMBOL, Linkage::Local, false, false)
        .map_err(|e| CodegenError::cranelift(abi::WEIGHTS_SYMBOL, e))?;
    let mut d = DataDescription::new();
    d.set_align(ALIGN as u64);
    d.define(blob.into_boxed_slice());
    module
        .define_data(id, &d)
        .map_err(|e| CodegenError::cranelift(abi::WEIGHTS_SYMBOL, e))?;
    Ok(Some(id))
}

/// The context's micro-kernel (`ctx->ukernels->gemm_f32`) when there is a context with a
/// table that is not the portable one and has the `M0 × N0` tile the code was compiled for,
/// else `own` (the module's Cranelift tile).
fn micro_kernel_or(
    b: &mut FunctionBuilder,
    rt: Value,
    has_ctx: Value,
    own: Value,
    ptr: cranelift_codegen::ir::Type,
) -> Result<Value, CodegenError> {
    let off = |n: usize| {
        i32::try_from(n).map_err(|_| CodegenError::cranelift(abi::ENTRY_SYMBOL, "ctx layout"))
    };
    let flags = MemFlagsData::new().with_notrap().with_aligned();
    let (read, check, join) = (b.create_block(), b.create_block(), b.create_block());
    let chosen = b.append_block_param(join, ptr);
    b.ins()
        .brif(has_ctx, read, &[], join, &[BlockArg::Value(own)]);
    b.switch_to_block(read);
    let table = b.ins().load(ptr, flags, rt, off(abi::CTX_UKERNELS)?);
    b.ins()
        .brif(table, check, &[], join, &[BlockArg::Value(own)]);
    b.switch_to_block(check);
    let isa = b
        .ins()
        .load(types::I32, flags, table, off(abi::UKERNELS_ISA)?);
    let m0 = b
        .ins()
        .load(ptr, flags, table, off(abi::UKERNELS_GEMM_F32_M0)?);
    let n0 = b
        .ins()
        .load(ptr, flags, table, off(abi::UKERNELS_GEMM_F32_N0)?);
    let fast = b
        .ins()
        .icmp_imm_s(IntCC::NotEqual, isa, Isa::Generic as i64);
    let m_ok = b.ins().icmp_imm_s(IntCC::Equal, m0, GEMM_F32_M0 as i64);
    let n_ok = b.ins().icmp_imm_s(IntCC::Equal, n0, GEMM_F32_N0 as i64);
    let ok = b.ins().band(fast, m_ok);
    let ok = b.ins().band(ok, n_ok);
    let f = b
        .ins()
        .load(ptr, flags, table, off(abi::UKERNELS_GEMM_F32)?);
    let pick = b.ins().select(ok, f, own);
    b.ins().jump(join, &[BlockArg::Value(pick)]);
    b.switch_to_block(join);
    Ok(chosen)
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

/// Emits the entry point. `kernel_ids`: each kernel's phases (function and tasks, run in
/// order with the same arguments) and whether it calls the GEMM tile; `tile`: the module's Cranelift tile and whether the context's micro-kernel
/// may replace it.
fn emit_entry(
    module: &mut dyn Module,
    g: &Graph,
    plan: &MemoryPlan,
    kernel_ids: &[(Vec<(FuncId, usize)>, bool)],
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
        let max_bufs = plan
            .kernels
            .iter()
            .map(|&id| g.operands(id).len() + 3)
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
                let off =
                    i32::try_from(abi::CTX_KERNEL_HOOK).map_err(|_| err("ctx layout".into()))?;
                let f = b.ins().load(ptr, ctx_flags, rt, off);
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
        for (i, (&id, (phases, uses_tile))) in plan.kernels.iter().zip(kernel_ids).enumerate() {
            let mut bufs = Vec::new();
            for o in g.operands(id) {
                bufs.push(address(&mut b, storage_of(o)?)?);
            }
            bufs.push(address(&mut b, storage_of(id)?)?);
            if let Some(&off) = plan.scratch.get(&id) {
                bufs.push(address(&mut b, Storage::Arena(off))?);
            }
            if *uses_tile {
                bufs.push(tile_fn.ok_or_else(|| err("a GEMM kernel without a tile".into()))?);
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
                    let off = i32::try_from(abi::CTX_PARALLEL_FOR)
                        .map_err(|_| err("ctx layout".into()))?;
                    let pf = b.ins().load(ptr, ctx_flags, rt, off);
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
