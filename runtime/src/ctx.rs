//! The run-time context of generated code: the `ctx` argument of a model's entry point.
//!
//! Generated code reads [`RtCtx`] at the fixed offsets of its `#[repr(C)]` prefix (see
//! [`CTX_PARALLEL_FOR`], ...; the compiler takes them from this definition):
//! - `parallel_for(ctx, task, args, n)`: runs `task(args, begin, end)` over disjoint ranges
//!   covering `[0, n)` on the context's pool, the calling thread included, and returns 0 or the
//!   status of the lowest failing task index (see [`crate::pool`]); with one thread it is one
//!   call `task(args, 0, n)`;
//! - `kernel_hook(ctx, kernel, phase)`: when set (generated code tests it per kernel), called
//!   with [`HOOK_BEGIN`] before and [`HOOK_END`] after kernel `kernel` (index in execution
//!   order), on the thread that called the entry; `hook_data` is the hook's own state;
//! - `ukernels`: the micro-kernel table of the running CPU ([`crate::ukernel::select`]; its
//!   layout is [`crate::ukernel::UkernelTable`]'s): null means "none", and generated code must
//!   then use its own loops. A table added here must keep this prefix
//!   and grow `CTX_VERSION`.
//!
//! A null `ctx` is valid everywhere: generated code then runs every task range itself, serially,
//! and calls no hook. A context may be shared by threads (one loop runs on the pool at a time;
//! a concurrent one runs on its caller's thread), so one context can serve a shared model
//! handle. [`dync_rt_ctx_new`] and [`dync_rt_ctx_free`] expose contexts to C (the shared
//! libraries' `create_threads`).

use crate::pool::{Pool, TaskFn};
use crate::ukernel::UkernelTable;
use std::ffi::c_void;

/// `RtCtx::version` of this layout.
pub const CTX_VERSION: u32 = 1;
/// `kernel_hook`'s phase before a kernel runs.
pub const HOOK_BEGIN: u32 = 0;
/// `kernel_hook`'s phase after a kernel ran (whatever its status).
pub const HOOK_END: u32 = 1;

/// `parallel_for`'s type.
pub type ParallelForFn =
    unsafe extern "C" fn(ctx: *mut RtCtx, task: TaskFn, args: *const *mut u8, n: u64) -> i32;
/// `kernel_hook`'s type.
pub type KernelHookFn = unsafe extern "C" fn(ctx: *mut RtCtx, kernel: u32, phase: u32);

/// The context; its public fields are the ABI prefix generated code reads.
#[repr(C)]
pub struct RtCtx {
    pub version: u32,
    /// Threads loops run on (≥ 1).
    pub threads: u32,
    pub parallel_for: ParallelForFn,
    pub kernel_hook: Option<KernelHookFn>,
    /// State of the hook's owner.
    pub hook_data: *mut c_void,
    /// The micro-kernel table ([`crate::ukernel::select`] in [`RtCtx::new`]).
    pub ukernels: *const UkernelTable,
    /// `None` for one thread: truly serial, no worker threads.
    pool: Option<Pool>,
}

/// Byte offsets of the fields generated code reads.
pub const CTX_PARALLEL_FOR: usize = std::mem::offset_of!(RtCtx, parallel_for);
pub const CTX_KERNEL_HOOK: usize = std::mem::offset_of!(RtCtx, kernel_hook);
pub const CTX_UKERNELS: usize = std::mem::offset_of!(RtCtx, ukernels);

unsafe extern "C" fn parallel_for(
    ctx: *mut RtCtx,
    task: TaskFn,
    args: *const *mut u8,
    n: u64,
) -> i32 {
    // SAFETY: generated code passes the context it was given, a valid `RtCtx`.
    match unsafe { ctx.as_ref() }.and_then(|c| c.pool.as_ref()) {
        // SAFETY: generated tasks write disjoint outputs for disjoint ranges.
        Some(p) => unsafe { p.run(task, args, n) },
        None if n == 0 => 0,
        None => task(args, 0, n),
    }
}

impl RtCtx {
    /// A context running loops on `threads` threads (1, or 0, means serial: no pool at all).
    pub fn new(threads: usize) -> std::io::Result<RtCtx> {
        let pool = if threads > 1 {
            Some(Pool::new(threads)?)
        } else {
            None
        };
        Ok(RtCtx {
            version: CTX_VERSION,
            threads: pool
                .as_ref()
                .map_or(1, |p| u32::try_from(p.threads()).unwrap_or(u32::MAX)),
            parallel_for,
            kernel_hook: None,
            hook_data: std::ptr::null_mut(),
            ukernels: crate::ukernel::select(),
            pool,
        })
    }

    /// The pointer to pass as an entry point's `ctx`.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        (self as *mut RtCtx).cast()
    }
}

// SAFETY: the raw pointers are the hook's and micro-kernels' state, which their owners make
// usable from any thread; the pool is shareable.
unsafe impl Send for RtCtx {}
// SAFETY: as above; `parallel_for` serializes loops on the pool.
unsafe impl Sync for RtCtx {}

/// A new context for `threads` threads (0 or 1: serial), or null when a thread cannot be
/// started or memory is exhausted. Free it with [`dync_rt_ctx_free`].
#[no_mangle]
pub extern "C" fn dync_rt_ctx_new(threads: u32) -> *mut RtCtx {
    let Ok(threads) = usize::try_from(threads) else {
        return std::ptr::null_mut();
    };
    match std::panic::catch_unwind(|| RtCtx::new(threads).map(Box::new)) {
        Ok(Ok(b)) => Box::into_raw(b),
        _ => std::ptr::null_mut(),
    }
}

/// Frees a context of [`dync_rt_ctx_new`] (null is ignored); it must not be in use.
///
/// # Safety
/// `ctx` is null or a context of `dync_rt_ctx_new` not freed yet.
#[no_mangle]
pub unsafe extern "C" fn dync_rt_ctx_free(ctx: *mut RtCtx) {
    if !ctx.is_null() {
        // SAFETY: allocated by `dync_rt_ctx_new` per the contract.
        drop(unsafe { Box::from_raw(ctx) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn add_one(args: *const *mut u8, begin: u64, end: u64) -> i32 {
        // SAFETY: args[0] is an f32 buffer covering the range.
        unsafe {
            let x = *args as *mut f32;
            for i in begin..end {
                *x.add(i as usize) += 1.0;
            }
        }
        0
    }

    #[test]
    fn parallel_for_covers_the_range_serially_and_on_a_pool() {
        for threads in [0, 1, 2, 3] {
            let ctx = dync_rt_ctx_new(threads);
            assert!(!ctx.is_null());
            // SAFETY: a live context.
            let c = unsafe { &*ctx };
            assert_eq!(c.version, CTX_VERSION);
            assert_eq!(c.threads, threads.max(1));
            assert!(std::ptr::eq(c.ukernels, crate::ukernel::select()));
            assert!(c.kernel_hook.is_none());
            let mut x = vec![0.0f32; 37];
            let args = [x.as_mut_ptr().cast::<u8>()];
            // SAFETY: `add_one` writes disjoint elements for disjoint ranges.
            let st = unsafe { (c.parallel_for)(ctx, add_one, args.as_ptr(), 37) };
            assert_eq!(st, 0);
            assert!(x.iter().all(|&v| v == 1.0));
            // SAFETY: not used anymore.
            unsafe { dync_rt_ctx_free(ctx) };
        }
        // SAFETY: null is ignored.
        unsafe { dync_rt_ctx_free(std::ptr::null_mut()) };
    }

    #[test]
    fn the_abi_prefix_has_fixed_offsets() {
        assert_eq!(CTX_PARALLEL_FOR, 8);
        assert_eq!(CTX_KERNEL_HOOK, 16);
        assert_eq!(CTX_UKERNELS, 32);
    }
}
