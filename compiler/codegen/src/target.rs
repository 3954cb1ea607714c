//! Code generation options and the target machine.
//!
//! The host (the JIT's target and `dync compile`'s default) or an explicit triple (AOT), with a
//! CPU: `native` builds the ISA through cranelift-native, which enables every feature the host
//! CPU has (in particular FMA: without it Cranelift turns `fma` into calls of libm's `fmaf`);
//! `x86-64`, `x86-64-v3` and `x86-64-v4` are the psABI levels (x86 only); `generic` is the
//! architecture's baseline. Rejects `native` for a triple of another architecture than the
//! host's, x86 levels for other architectures, and triples Cranelift does not support.

use crate::error::CodegenError;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
pub use target_lexicon::Triple;

/// The machine code is generated for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The machine running the compiler.
    #[default]
    Host,
    /// An explicit target triple (ahead-of-time compilation).
    Triple(target_lexicon::Triple),
}

/// The CPU code is generated for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cpu {
    /// Every feature of the CPU running the compiler.
    #[default]
    Native,
    /// The architecture's baseline (x86-64: SSE2).
    Generic,
    /// x86-64 psABI levels.
    X86_64,
    X86_64V3,
    X86_64V4,
}

impl Cpu {
    pub const NAMES: [&'static str; 5] = ["native", "generic", "x86-64", "x86-64-v3", "x86-64-v4"];

    pub fn name(self) -> &'static str {
        match self {
            Cpu::Native => "native",
            Cpu::Generic => "generic",
            Cpu::X86_64 => "x86-64",
            Cpu::X86_64V3 => "x86-64-v3",
            Cpu::X86_64V4 => "x86-64-v4",
        }
    }
}

impl std::str::FromStr for Cpu {
    type Err = CodegenError;
    fn from_str(s: &str) -> Result<Cpu, CodegenError> {
        [
            Cpu::Native,
            Cpu::Generic,
            Cpu::X86_64,
            Cpu::X86_64V3,
            Cpu::X86_64V4,
        ]
        .into_iter()
        .find(|c| c.name() == s)
        .ok_or_else(|| {
            CodegenError::Target(format!(
                "unknown CPU {s:?} (known: {})",
                Cpu::NAMES.join(", ")
            ))
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct CodegenOptions {
    pub target: Target,
    pub cpu: Cpu,
    /// Bounds-checked mode: every load and store of generated code is checked against its
    /// buffer, and a violation stops the run with [`crate::abi::Fault::OutOfBounds`]. Slower;
    /// used by the property tests. Also runs Cranelift's IR verifier on every function.
    pub checked: bool,
    /// Never call the runtime's x86 micro-kernels: GEMM tiles run the module's own Cranelift
    /// tile (always the case on aarch64, whose hot path is Cranelift's).
    pub no_ukernels: bool,
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
    // GEMM convs keep packed panels on the stack (tens of KiB): touch every page of a large
    // frame in order, so that a thread whose stack is too small hits its guard page instead
    // of writing past it.
    set(&mut flags, "enable_probestack", "true")?;
    set(&mut flags, "probestack_strategy", "inline")?;
    set(
        &mut flags,
        "enable_verifier",
        if opts.checked { "true" } else { "false" },
    )?;
    let host = target_lexicon::Triple::host();
    let triple = match &opts.target {
        Target::Host => host.clone(),
        Target::Triple(t) => t.clone(),
    };
    let mut builder = if opts.cpu == Cpu::Native {
        if triple.architecture != host.architecture {
            return Err(CodegenError::Target(format!(
                "--cpu native describes this {} machine, not {triple}; name a CPU (e.g. generic)",
                host.architecture
            )));
        }
        let mut b = lookup(triple)?;
        cranelift_native::infer_native_flags(&mut b).map_err(|e| CodegenError::Target(e.into()))?;
        b
    } else {
        lookup(triple)?
    };
    if let Cpu::X86_64 | Cpu::X86_64V3 | Cpu::X86_64V4 = opts.cpu {
        if builder.triple().architecture != target_lexicon::Architecture::X86_64 {
            return Err(CodegenError::Target(format!(
                "--cpu {} is an x86-64 level; the target is {}",
                opts.cpu.name(),
                builder.triple()
            )));
        }
        builder
            .enable(opts.cpu.name())
            .map_err(|e| CodegenError::Target(format!("--cpu {}: {e}", opts.cpu.name())))?;
    }
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| CodegenError::Target(e.to_string()))
}

fn lookup(triple: target_lexicon::Triple) -> Result<cranelift_codegen::isa::Builder, CodegenError> {
    let t = triple.to_string();
    cranelift_codegen::isa::lookup(triple).map_err(|e| CodegenError::Target(format!("{t}: {e}")))
}
