//! dync's Cranelift backend.
//!
//! A verified [`dync_ir::Graph`] becomes native code: [`plan`] places every value (inputs in
//! place, constants in a read-only weights blob, activations in one arena with buffer reuse,
//! outputs written in place); [`lower`] turns each node into a kernel specialized on its static
//! shapes (f32x4 SIMD with FMA where it pays, scalar tails); [`emit::emit_model`] emits kernels,
//! weights and the C-ABI entry point ([`abi`]) into any `cranelift_module::Module`, which
//! [`jit::JitModel`] uses in process and [`object`] uses for relocatable objects (with the
//! model's descriptor and C wrapper), described by a C header ([`header`]) and linked into
//! executables and shared libraries by [`link`].
//!
//! Generated code never reads or writes out of bounds by construction; data-dependent errors
//! (gather indices, integer division by zero or overflow) stop it with a status naming the node,
//! and the checked mode ([`CodegenOptions::checked`]) additionally verifies every access.

pub mod abi;
pub mod emit;
pub mod error;
pub mod header;
pub mod jit;
pub mod libcalls;
pub mod link;
pub(crate) mod lower;
pub mod object;
pub mod pack;
pub mod plan;
pub mod target;
pub mod tile;

pub use emit::{emit_model, emit_model_with_progress, EmittedModel};
pub use error::{CodegenError, NodeRef};
pub use jit::JitModel;
pub use plan::{plan, MemoryPlan, Storage};
pub use target::{CodegenOptions, Cpu, Target};
