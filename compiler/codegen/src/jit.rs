//! The JIT: compiles a graph into the current process with cranelift-jit and runs it.
//!
//! [`JitModel::run`] validates the inputs against the graph's signature (count, dtype, shape),
//! allocates the outputs, calls the entry point with a 64-byte aligned arena of the planned size
//! and turns a non-zero status into an error naming the failing node. The arena is allocated at
//! the first run and kept for the next ones (as the runtime's handles keep theirs): generated
//! code writes every arena byte before it reads it, so a used arena is as good as a fresh one,
//! and fresh pages would cost a page fault each per run. A new arena is filled with all-ones
//! bytes (NaN) rather than zeros, so that tests catch a kernel that breaks this rule. The model owns a run-time
//! context (`dync_runtime::ctx::RtCtx`): serial by default, a pool of N threads after
//! [`JitModel::set_threads`]; outputs are bit-identical at every thread count. The model's code,
//! weights and context are freed when it is dropped.
//!
//! The weights blob is a 64-byte aligned buffer the model owns, written in place by
//! [`crate::emit::write_weights`] after emission; the module resolves the weights symbol to it
//! when it is finalized (no copy into the module's memory).

use crate::abi::{decode_status, Fault, ALIGN, WEIGHTS_SYMBOL};
use crate::emit::{emit_model, write_weights, zeroed_bytes, EmittedModel};
use crate::error::CodegenError;
use crate::libcalls::MathFn;
use crate::target::{isa, CodegenOptions};
use cranelift_jit::{JITBuilder, JITModule};
use dync_ir::{DType, Graph, Tensor, TensorData, TensorType};
use dync_runtime::ctx::RtCtx;
use std::cell::Cell;
use std::sync::{Arc, OnceLock};

type EntryFn = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8, *mut u8) -> i32;

/// A graph compiled to native code in this process.
pub struct JitModel {
    /// Owns the code and data the entry point uses; `None` only while dropping.
    module: Option<JITModule>,
    /// Owns the weights blob the code reads (at its first 64-byte aligned byte).
    _weights: Vec<u8>,
    entry: EntryFn,
    model: EmittedModel,
    /// The context passed to the entry point (owned; a raw pointer because generated code and
    /// the kernel hook may use it as `*mut` while `run` borrows `self` shared).
    ctx: *mut RtCtx,
    /// The arena of the last run, taken by the next one (`None` while a run holds it: a
    /// re-entrant run, from the kernel hook, allocates its own).
    arena: Cell<Option<Vec<Block>>>,
}

/// One 64-byte aligned arena block.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

impl JitModel {
    /// Compiles `graph` for the host.
    pub fn compile(graph: &Graph, opts: &CodegenOptions) -> Result<JitModel, CodegenError> {
        let isa = isa(opts, false)?;
        let mut builder =
            JITBuilder::with_isa(isa.clone(), cranelift_module::default_libcall_names());
        for f in MathFn::ALL {
            builder.symbol(f.symbol(), f.address());
        }
        // Set after emission, before the module is finalized (when symbols are resolved).
        let weights_at = Arc::new(OnceLock::<usize>::new());
        let at = Arc::clone(&weights_at);
        builder.symbol_lookup_fn(Box::new(move |name| {
            (name == WEIGHTS_SYMBOL)
                .then(|| at.get().copied())
                .flatten()
                .map(std::ptr::with_exposed_provenance)
        }));
        let mut module = JITModule::new(builder);
        let model = emit_model(&mut module, &*isa, graph, opts)?;
        let mut weights = Vec::new();
        if model.weights.is_some() {
            let len = model.plan.weight_bytes.max(1);
            weights = zeroed_bytes(
                len.checked_add(ALIGN - 1)
                    .ok_or(CodegenError::Alloc(usize::MAX))?,
            )?;
            let off = weights.as_ptr().align_offset(ALIGN);
            let blob = weights
                .get_mut(off..off + len)
                .ok_or(CodegenError::Alloc(len))?;
            write_weights(graph, &model.plan, blob)?;
            let _ = weights_at.set(blob.as_ptr().expose_provenance());
        }
        module
            .finalize_definitions()
            .map_err(|e| CodegenError::cranelift("the JIT module", e))?;
        let code = module.get_finalized_function(model.entry);
        // SAFETY: `code` is the finalized entry function, emitted with the signature of
        // `abi::entry_signature` in the host's default (C) calling convention.
        let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(code) };
        Ok(JitModel {
            module: Some(module),
            _weights: weights,
            entry,
            model,
            ctx: new_ctx(1)?,
            arena: Cell::new(None),
        })
    }

    /// Runs the model on `threads` threads from now on (1: serial, no worker threads).
    pub fn set_threads(&mut self, threads: usize) -> Result<(), CodegenError> {
        let ctx = new_ctx(threads)?;
        // SAFETY: `self.ctx` came from `Box::into_raw` and no run uses it (`&mut self`).
        drop(unsafe { Box::from_raw(self.ctx) });
        self.ctx = ctx;
        Ok(())
    }

    /// The threads the model runs on.
    pub fn threads(&self) -> usize {
        // SAFETY: `self.ctx` is live while `self` is.
        unsafe { (*self.ctx).threads as usize }
    }

    /// The run-time context, e.g. to set its kernel hook (profiling).
    pub fn ctx_mut(&mut self) -> &mut RtCtx {
        // SAFETY: live while `self` is; `&mut self` excludes runs.
        unsafe { &mut *self.ctx }
    }

    /// Bytes of the activation arena.
    pub fn arena_bytes(&self) -> usize {
        self.model.plan.arena_bytes
    }

    /// Bytes of the weights blob.
    pub fn weight_bytes(&self) -> usize {
        self.model.plan.weight_bytes
    }

    /// Emission details: plan, kernels, signature.
    pub fn emitted(&self) -> &EmittedModel {
        &self.model
    }

    /// Runs the model on `inputs` (in graph input order); returns the outputs in graph output
    /// order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, CodegenError> {
        let sig = &self.model.inputs;
        if inputs.len() != sig.len() {
            return Err(CodegenError::InputCount {
                expected: sig.len(),
                got: inputs.len(),
            });
        }
        for ((name, ty), t) in sig.iter().zip(inputs) {
            if t.ty() != *ty {
                return Err(CodegenError::Input {
                    name: name.clone(),
                    expected: ty.to_string(),
                    got: t.ty().to_string(),
                });
            }
        }
        let in_ptrs: Vec<*const u8> = inputs.iter().map(|t| data_ptr(t.data())).collect();
        let mut outs: Vec<TensorData> = Vec::with_capacity(self.model.outputs.len());
        for (_, ty) in &self.model.outputs {
            outs.push(alloc_data(ty)?);
        }
        let out_ptrs: Vec<*mut u8> = outs.iter_mut().map(data_ptr_mut).collect();
        let mut arena = match self.arena.take() {
            Some(a) => a,
            None => {
                let blocks = self.model.plan.arena_bytes.div_ceil(64);
                let mut a: Vec<Block> = Vec::new();
                a.try_reserve_exact(blocks)
                    .map_err(|_| CodegenError::Alloc(self.model.plan.arena_bytes))?;
                // All ones: NaN as f32, -1 as an integer, so that a kernel reading arena bytes
                // no kernel wrote shows in every test instead of passing on fresh zero pages.
                a.resize(blocks, Block([0xff; 64]));
                a
            }
        };
        // SAFETY: the pointers reference live buffers of exactly the sizes the entry point was
        // compiled for (inputs checked above, outputs allocated from the declared types, the
        // arena of the planned size, 64-byte aligned); outputs, inputs and arena are distinct
        // allocations; `ctx` is the model's live context.
        let status = unsafe {
            (self.entry)(
                in_ptrs.as_ptr(),
                out_ptrs.as_ptr(),
                arena.as_mut_ptr().cast::<u8>(),
                self.ctx.cast::<u8>(),
            )
        };
        self.arena.set(Some(arena));
        if status != 0 {
            return Err(self.status_error(status));
        }
        self.model
            .outputs
            .iter()
            .zip(outs)
            .map(|((_, ty), d)| {
                Tensor::new(ty.shape.clone(), d).map_err(|e| CodegenError::Overflow(e.to_string()))
            })
            .collect()
    }

    fn status_error(&self, status: i32) -> CodegenError {
        match decode_status(status).and_then(|(k, f)| Some((self.model.kernels.get(k)?, f))) {
            Some((node, fault)) => CodegenError::Runtime {
                node: node.clone(),
                message: Fault::message(fault),
            },
            None => CodegenError::UnknownStatus(status),
        }
    }
}

impl Drop for JitModel {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: no code of this module runs anymore: `run` borrows `self` and has
            // returned, and the entry pointer is dropped with `self`.
            unsafe { m.free_memory() };
        }
        // SAFETY: from `Box::into_raw`, freed only here.
        drop(unsafe { Box::from_raw(self.ctx) });
    }
}

fn new_ctx(threads: usize) -> Result<*mut RtCtx, CodegenError> {
    let ctx = RtCtx::new(threads).map_err(|error| CodegenError::Threads { threads, error })?;
    Ok(Box::into_raw(Box::new(ctx)))
}

fn alloc_data(ty: &TensorType) -> Result<TensorData, CodegenError> {
    let n = ty
        .numel()
        .map_err(|e| CodegenError::Overflow(e.to_string()))?;
    let bytes = n.saturating_mul(ty.dtype.size());
    fn vec<T: Clone>(n: usize, v: T, bytes: usize) -> Result<Vec<T>, CodegenError> {
        let mut out = Vec::new();
        out.try_reserve_exact(n)
            .map_err(|_| CodegenError::Alloc(bytes))?;
        out.resize(n, v);
        Ok(out)
    }
    Ok(match ty.dtype {
        DType::F32 => TensorData::F32(vec(n, 0.0, bytes)?),
        DType::I64 => TensorData::I64(vec(n, 0, bytes)?),
        DType::I32 => TensorData::I32(vec(n, 0, bytes)?),
        DType::Bool => TensorData::Bool(vec(n, false, bytes)?),
    })
}

fn data_ptr(d: &TensorData) -> *const u8 {
    match d {
        TensorData::F32(v) => v.as_ptr().cast(),
        TensorData::I64(v) => v.as_ptr().cast(),
        TensorData::I32(v) => v.as_ptr().cast(),
        TensorData::Bool(v) => v.as_ptr().cast(),
    }
}

/// Generated code writes only 0 or 1 into bool outputs, so the `Vec<bool>` stays valid.
fn data_ptr_mut(d: &mut TensorData) -> *mut u8 {
    match d {
        TensorData::F32(v) => v.as_mut_ptr().cast(),
        TensorData::I64(v) => v.as_mut_ptr().cast(),
        TensorData::I32(v) => v.as_mut_ptr().cast(),
        TensorData::Bool(v) => v.as_mut_ptr().cast(),
    }
}
