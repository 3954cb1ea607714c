//! Code generation options and the target machine.
//!
//! Only the host is a target for now (the JIT); the ISA is built through cranelift-native,
//! which enables every feature the host CPU has (in particular FMA: without it Cranelift turns
//! `fma` into library calls). Explicit triples and CPU names belong to the AOT path.

use crate::error::CodegenError;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};

/// The machine code is generated for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The machine running the compiler, with all its CPU features.
    #[default]
    Host,
}

#[derive(Clone, Debug, Default)]
pub struct CodegenOptions {
    pub target: Target,
    /// Bounds-checked mode: every load and store of generated code is checked against its
    /// buffer, and a violation stops the run with [`crate::abi::Fault::OutOfBounds`]. Slower;
    /// used by the property tests. Also runs Cranelift's IR verifier on every function.
    pub checked: bool,
}

/// The ISA for `opts.target`; `pic` for code linked into position-independent executables.
pub fn isa(opts: &CodegenOptions, pic: bool) -> Result<OwnedTargetIsa, CodegenError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| CodegenError::Target(format!("setting {k}={v}: {e}")))
    };
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "is_pic", if pic { "true" } else { "false" })?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(
        &mut flags,
        "enable_verifier",
        if opts.checked { "true" } else { "false" },
    )?;
    let builder = match opts.target {
        Target::Host => {
            cranelift_native::builder().map_err(|e| CodegenError::Target(e.to_string()))?
        }
    };
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| CodegenError::Target(e.to_string()))
}
