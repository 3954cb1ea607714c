//! Ahead-of-time compilation to a relocatable object file (cranelift-object, position
//! independent), the input of `dync compile`'s executables, shared libraries and objects.
//!
//! For a model named `<name>` (a C identifier, see [`c_name`]) the object defines, besides the
//! kernels and weights of [`crate::emit`] (local symbols):
//! - `dync_<name>_entry`: the entry point of [`crate::abi`];
//! - `dync_<name>_model`: the descriptor (`dync_runtime::model::ModelDesc`, read-only data with
//!   relocations) and the tables it points at;
//! - `dync_<name>_arena_bytes`: a `uint64_t`;
//! - the C wrapper, written here in Cranelift IR so that the object needs nothing but libc
//!   (`aligned_alloc`, `free`, `memcpy`) and libm:
//!   - `create()`: allocates a handle (a 64-byte header whose first `u32` is a busy flag and
//!     whose pointer at `HANDLE_CTX` is the run-time context, followed by the arena) with
//!     `aligned_alloc`; null when out of memory. It runs serially (a null context);
//!   - `create_threads(n)`: the same, running on a pool of `n` threads (the runtime's
//!     `dync_rt_ctx_new`; `n` ≤ 1 is `create()`); null when the threads cannot be started, or
//!     when the program was linked without the dync runtime: the runtime's functions are weak
//!     imports, so an object linked into a C program without it still links;
//!   - `run(handle, inputs, outputs)`: [`STATUS_NULL`] for a null handle, or null input/output
//!     arrays when the model has inputs/outputs; otherwise claims the handle's arena with an
//!     atomic compare-and-swap and calls the entry; when another thread holds it, runs on a
//!     temporary arena instead ([`STATUS_NO_MEMORY`] if that cannot be allocated). So one handle
//!     may be shared by threads; each call's result is the same as a serial call's;
//!   - `destroy(handle)`: frees it and its context (null is ignored);
//!   - `error_message(status)`: a static string for every status (0, the wrapper's codes, every
//!     fault; "unknown status" otherwise); `error_node(status)`: for a fault, the kernel's node
//!     as `%N (op from "onnx node")`, else null;
//! - with [`ObjectOptions::main`], a C `main(argc, argv)` that calls the runtime's
//!   `dync_rt_main(argc, argv, &dync_<name>_model)` (executables only: it needs the runtime).
//!
//! Supported targets: x86-64 and aarch64, ELF, little-endian, 64-bit (the descriptor layout is
//! the runtime's `repr(C)` structs, whose offsets on such targets equal the host's); others are
//! a [`CodegenError::Target`]. Everything [`crate::emit_model`] rejects is rejected too. The
//! output is deterministic: the same graph and options give the same bytes.
//!
//! The weights blob is written once, by [`crate::emit::write_weights`], into a buffer that
//! becomes the contents of its own section ([`WEIGHTS_SECTION`], read-only data) defining the
//! weights symbol as a local symbol; [`CompiledObject::write_to`] streams the object file to a
//! writer without assembling it in memory, and returns a fingerprint of its bytes for the
//! linker's build ID ([`crate::link`]).

use crate::abi::{Fault, ALIGN};
use crate::emit::{emit_model_with_progress, write_weights, zeroed_bytes, EmittedModel};
use crate::error::CodegenError;
use crate::target::{isa, CodegenOptions, Target};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, Signature, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module};
use cranelift_object::object::write::{Object, SymbolScope};
use cranelift_object::object::SectionKind;
use cranelift_object::{ObjectBuilder, ObjectModule};
use dync_ir::{DType, TensorType};
use dync_runtime::model::{
    dtype_code, ModelDesc, TensorDesc, ABI_VERSION, ARENA_ALIGN, HANDLE_CTX, HANDLE_HEADER,
    MODEL_MAGIC, STATUS_NO_MEMORY, STATUS_NULL,
};
use dync_runtime::npy::NpyDType;
use std::io::Write;
use std::mem::{offset_of, size_of};
use target_lexicon::{Architecture, BinaryFormat, Endianness, PointerWidth, Triple};

/// The runtime function the generated `main` calls.
pub const RT_MAIN_SYMBOL: &str = "dync_rt_main";
/// The runtime's context constructor and destructor (weak imports of the wrapper).
pub const RT_CTX_NEW_SYMBOL: &str = "dync_rt_ctx_new";
pub const RT_CTX_FREE_SYMBOL: &str = "dync_rt_ctx_free";

/// What to put in the object besides the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectOptions {
    /// The model's C name: the prefix of every exported symbol (a valid C identifier).
    pub name: String,
    /// Define `main` (for executables linked with the runtime).
    pub main: bool,
}

/// The section holding the weights blob.
pub const WEIGHTS_SECTION: &str = ".rodata.dync_weights";

/// A compiled object and what the header, the linker and the reports need to know about it.
pub struct CompiledObject {
    /// The object file, written by [`Self::write_to`] or [`Self::bytes`].
    object: Object<'static>,
    pub name: String,
    pub inputs: Vec<(String, TensorType)>,
    pub outputs: Vec<(String, TensorType)>,
    pub arena_bytes: usize,
    pub weight_bytes: usize,
    pub kernels: usize,
    /// The target triple.
    pub triple: String,
    /// The CPU features the code uses, in the runtime's (Rust's) names.
    pub cpu_features: Vec<String>,
}

impl CompiledObject {
    /// A symbol of this model: `dync_<name>_<what>`.
    pub fn symbol(&self, what: &str) -> String {
        symbol(&self.name, what)
    }

    /// Writes the object file to `w` (streamed, without assembling it in memory); returns a
    /// 128-bit fingerprint of the bytes written (see [`Fingerprint`]), e.g. for a build ID.
    pub fn write_to(&self, w: impl Write) -> std::io::Result<[u8; 16]> {
        let mut fp = Fingerprint::new(w);
        self.object
            .write_stream(&mut fp)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(fp.finish())
    }

    /// The object file's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, CodegenError> {
        self.object
            .write()
            .map_err(|e| CodegenError::cranelift("the object file", e))
    }
}

impl std::fmt::Debug for CompiledObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledObject")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("arena_bytes", &self.arena_bytes)
            .field("weight_bytes", &self.weight_bytes)
            .field("kernels", &self.kernels)
            .field("triple", &self.triple)
            .field("cpu_features", &self.cpu_features)
            .finish_non_exhaustive()
    }
}

/// A writer that passes bytes on to `W` and computes a 128-bit fingerprint of them: four lanes
/// each mix every fourth 64-bit little-endian word (multiply, rotate), then the lanes and the
/// length are mixed into two words. Not cryptographic; fast enough to cost little next to
/// writing the bytes (four independent chains), and a function of the bytes only.
pub struct Fingerprint<W> {
    inner: W,
    lanes: [u64; 4],
    /// Bytes of an incomplete 32-byte block.
    tail: [u8; 32],
    tail_len: usize,
    len: u64,
}

const FP_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl<W: Write> Fingerprint<W> {
    pub fn new(inner: W) -> Self {
        Fingerprint {
            inner,
            lanes: [
                0x243f_6a88_85a3_08d3,
                0x1319_8a2e_0370_7344,
                0xa409_3822_299f_31d0,
                0x082e_fa98_ec4e_6c89,
            ],
            tail: [0; 32],
            tail_len: 0,
            len: 0,
        }
    }

    fn block(&mut self, b: &[u8]) {
        for (lane, w) in self.lanes.iter_mut().zip(b.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            *lane = (*lane ^ u64::from_le_bytes(word))
                .wrapping_mul(FP_MUL)
                .rotate_left(29);
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u64);
        if self.tail_len > 0 {
            let take = (32 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 32 {
                return;
            }
            let t = self.tail;
            self.block(&t);
            self.tail_len = 0;
        }
        let mut blocks = bytes.chunks_exact(32);
        for b in &mut blocks {
            self.block(b);
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// The fingerprint of everything written.
    pub fn finish(mut self) -> [u8; 16] {
        // The incomplete block, zero-padded; the length tells a padded block from zeros.
        if self.tail_len > 0 {
            let mut t = [0u8; 32];
            t[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            self.block(&t);
        }
        let mix = |mut x: u64| {
            x ^= x >> 31;
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x ^= x >> 27;
            x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        let [a, b, c, d] = self.lanes;
        let hi = mix(a ^ mix(b ^ mix(self.len)));
        let lo = mix(c ^ mix(d ^ mix(hi)));
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&hi.to_le_bytes());
        out[8..].copy_from_slice(&lo.to_le_bytes());
        out
    }
}

impl<W: Write> Write for Fingerprint<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn symbol(name: &str, what: &str) -> String {
    format!("dync_{name}_{what}")
}

/// `s` as a C identifier: lower-case ASCII letters, digits and `_` (others become `_`), with a
/// leading `m_` when it would start with a digit, `model` when empty.
pub fn c_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out = "model".into();
    } else if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "m_");
    }
    out
}

/// Whether `s` is a C identifier (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_c_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The ISA of AOT objects for `opts` (position-independent code), or a
/// [`CodegenError::Target`] for a target this module does not support (see the module doc).
pub fn object_isa(opts: &CodegenOptions) -> Result<OwnedTargetIsa, CodegenError> {
    let triple = match &opts.target {
        Target::Host => Triple::host(),
        Target::Triple(t) => t.clone(),
    };
    let supported = matches!(
        triple.architecture,
        Architecture::X86_64 | Architecture::Aarch64(_)
    ) && triple.binary_format == BinaryFormat::Elf
        && triple.endianness() == Ok(Endianness::Little)
        && triple.pointer_width() == Ok(PointerWidth::U64)
        && size_of::<usize>() == 8;
    if !supported {
        return Err(CodegenError::Target(format!(
            "ahead-of-time compilation supports x86_64 and aarch64 ELF targets (Linux), not \
             {triple}"
        )));
    }
    isa(opts, true)
}

/// Compiles `g` into an object; `progress(done, total)` is called after each kernel.
pub fn compile_object(
    g: &dync_ir::Graph,
    opts: &CodegenOptions,
    obj: &ObjectOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CompiledObject, CodegenError> {
    if !is_c_identifier(&obj.name) {
        return Err(CodegenError::Target(format!(
            "the model name {:?} is not a C identifier",
            obj.name
        )));
    }
    let isa = object_isa(opts)?;
    let triple = isa.triple().clone();
    let cpu_features = cpu_features(&*isa);
    let builder = ObjectBuilder::new(
        isa.clone(),
        format!("{}.o", obj.name),
        cranelift_module::default_libcall_names(),
    )
    .map_err(|e| CodegenError::cranelift("the object", e))?;
    let mut module = ObjectModule::new(builder);
    let em = emit_model_with_progress(&mut module, &*isa, g, opts, progress)?;
    let names = Strings::default();
    let mut w = Writer {
        module: &mut module,
        name: &obj.name,
        strings: names,
    };
    let tables = w.define_tables(&em, &triple.to_string(), &cpu_features.join(","))?;
    let wrapper = w.define_wrapper(&em, &tables)?;
    w.define_descriptor(&em, &tables, &wrapper)?;
    if obj.main {
        w.define_main(wrapper.desc)?;
    }
    let mut product = module.finish();
    // The entry is emitted under the generic name of `crate::abi`; exported names carry the
    // model's prefix so that several models can be linked into one program.
    let entry_sym = product.function_symbol(em.entry);
    product.object.symbol_mut(entry_sym).name = symbol(&obj.name, "entry").into_bytes();
    for f in [RT_CTX_NEW_SYMBOL, RT_CTX_FREE_SYMBOL] {
        if let Some(id) = product.object.symbol_id(f.as_bytes()) {
            product.object.symbol_mut(id).weak = true;
        }
    }
    // The weights symbol, imported by the code, becomes a local symbol defined by its section.
    if let Some(id) = em.weights {
        let len = em.plan.weight_bytes.max(1);
        let mut blob = zeroed_bytes(len)?;
        write_weights(g, &em.plan, &mut blob)?;
        let sym = product.data_symbol(id);
        let obj = &mut product.object;
        let section = obj.add_section(
            Vec::new(),
            WEIGHTS_SECTION.as_bytes().to_vec(),
            SectionKind::ReadOnlyData,
        );
        obj.set_section_data(section, blob, ALIGN as u64);
        obj.symbol_mut(sym).scope = SymbolScope::Compilation;
        obj.set_symbol_data(sym, section, 0, len as u64);
    }
    Ok(CompiledObject {
        object: product.object,
        name: obj.name.clone(),
        inputs: em.inputs.clone(),
        outputs: em.outputs.clone(),
        arena_bytes: em.plan.arena_bytes,
        weight_bytes: em.plan.weight_bytes,
        kernels: em.kernels.len(),
        triple: triple.to_string(),
        cpu_features,
    })
}

/// The CPU features enabled in `isa`'s flags (`has_avx2` → `avx2`), in the runtime's names.
fn cpu_features(isa: &dyn cranelift_codegen::isa::TargetIsa) -> Vec<String> {
    isa.isa_flags()
        .iter()
        .filter(|f| f.as_bool() == Some(true))
        .filter_map(|f| {
            let n = f.name.strip_prefix("has_")?;
            Some(match n {
                "sse41" => "sse4.1".to_string(),
                "sse42" => "sse4.2".to_string(),
                "avx_vnni" => "avxvnni".to_string(),
                "pauth" => "paca".to_string(),
                other => other.to_string(),
            })
        })
        .collect()
}

/// The element type's runtime code.
fn dtype(d: DType) -> u32 {
    dtype_code(match d {
        DType::F32 => NpyDType::F32,
        DType::I64 => NpyDType::I64,
        DType::I32 => NpyDType::I32,
        DType::Bool => NpyDType::Bool,
    })
}

/// The data objects the descriptor points at.
struct Tables {
    name: DataId,
    triple: DataId,
    features: DataId,
    inputs: Option<DataId>,
    outputs: Option<DataId>,
    kernel_names: Option<DataId>,
    /// Messages indexed by [`message_index`].
    messages: DataId,
}

/// The wrapper's functions and the descriptor's id (declared before it is defined).
struct Wrapper {
    desc: DataId,
    error_message: FuncId,
    error_node: FuncId,
}

/// Interned NUL-terminated strings (each defined once, in first-use order: deterministic).
#[derive(Default)]
struct Strings(Vec<(String, DataId)>);

struct Writer<'a> {
    module: &'a mut ObjectModule,
    name: &'a str,
    strings: Strings,
}

fn cl(what: &str) -> impl Fn(cranelift_module::ModuleError) -> CodegenError + '_ {
    move |e| CodegenError::cranelift(what, e)
}

fn u64_of(n: usize, what: &str) -> Result<u64, CodegenError> {
    u64::try_from(n).map_err(|_| CodegenError::Overflow(what.to_string()))
}

fn u32_of(n: usize, what: &str) -> Result<u32, CodegenError> {
    u32::try_from(n).map_err(|_| CodegenError::Overflow(what.to_string()))
}

fn put(bytes: &mut [u8], off: usize, v: &[u8]) {
    bytes[off..off + v.len()].copy_from_slice(v);
}

/// Faults are numbered 1..=`FAULTS`; the message table holds `success`, one message per fault
/// code, then the wrapper's two statuses and "unknown status".
fn fault_count() -> usize {
    Fault::ALL
        .iter()
        .map(|f| usize::try_from(f.code()).unwrap_or(0))
        .max()
        .unwrap_or(0)
}

fn messages() -> Vec<&'static str> {
    let n = fault_count();
    let mut m = vec!["success"];
    m.extend((1..=n).map(|c| {
        i32::try_from(c)
            .ok()
            .and_then(Fault::from_code)
            .map_or("unknown status", Fault::message)
    }));
    m.push("a null model handle, or null input or output pointers");
    m.push("out of memory (allocating the workspace of a concurrent run)");
    m.push("unknown status");
    m
}

impl Writer<'_> {
    fn sym(&self, what: &str) -> String {
        symbol(self.name, what)
    }

    fn string(&mut self, s: &str) -> Result<DataId, CodegenError> {
        if let Some((_, id)) = self.strings.0.iter().find(|(t, _)| t == s) {
            return Ok(*id);
        }
        let mut bytes = s.as_bytes().to_vec();
        if bytes.contains(&0) {
            bytes.retain(|&b| b != 0);
        }
        bytes.push(0);
        let id = self.data(bytes, 1, &[], &[])?;
        self.strings.0.push((s.to_string(), id));
        Ok(id)
    }

    /// Defines anonymous read-only data with pointer relocations `(offset, data)` and
    /// `(offset, function)`.
    fn data(
        &mut self,
        bytes: Vec<u8>,
        align: u64,
        data_ptrs: &[(usize, DataId)],
        fn_ptrs: &[(usize, FuncId)],
    ) -> Result<DataId, CodegenError> {
        let id = self
            .module
            .declare_anonymous_data(false, false)
            .map_err(cl("model tables"))?;
        self.define(id, bytes, align, data_ptrs, fn_ptrs)?;
        Ok(id)
    }

    fn define(
        &mut self,
        id: DataId,
        bytes: Vec<u8>,
        align: u64,
        data_ptrs: &[(usize, DataId)],
        fn_ptrs: &[(usize, FuncId)],
    ) -> Result<(), CodegenError> {
        let mut d = DataDescription::new();
        d.set_align(align);
        d.define(bytes.into_boxed_slice());
        for &(off, target) in data_ptrs {
            let gv = self.module.declare_data_in_data(target, &mut d);
            d.write_data_addr(u32_of(off, "a table offset")?, gv, 0);
        }
        for &(off, f) in fn_ptrs {
            let fr = self.module.declare_func_in_data(f, &mut d);
            d.write_function_addr(u32_of(off, "a table offset")?, fr);
        }
        self.module.define_data(id, &d).map_err(cl("model tables"))
    }

    /// A table of pointers to `items` (null for `None`).
    fn pointer_table(&mut self, items: &[Option<DataId>]) -> Result<DataId, CodegenError> {
        let relocs: Vec<(usize, DataId)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i * 8, (*d)?)))
            .collect();
        self.data(vec![0; items.len().max(1) * 8], 8, &relocs, &[])
    }

    fn tensor_table(
        &mut self,
        list: &[(String, TensorType)],
    ) -> Result<Option<DataId>, CodegenError> {
        if list.is_empty() {
            return Ok(None);
        }
        let size = size_of::<TensorDesc>();
        let mut bytes = vec![0u8; list.len() * size];
        let mut relocs = Vec::new();
        for (i, (name, ty)) in list.iter().enumerate() {
            let base = i * size;
            let name_id = self.string(name)?;
            relocs.push((base + offset_of!(TensorDesc, name), name_id));
            if !ty.shape.is_empty() {
                let mut dims = Vec::new();
                for &d in &ty.shape {
                    let d = i64::try_from(d)
                        .map_err(|_| CodegenError::Overflow(format!("a dim of {name:?}")))?;
                    dims.extend(d.to_le_bytes());
                }
                let shape = self.data(dims, 8, &[], &[])?;
                relocs.push((base + offset_of!(TensorDesc, shape), shape));
            }
            let rank = u32_of(ty.shape.len(), "a rank")?;
            put(
                &mut bytes,
                base + offset_of!(TensorDesc, rank),
                &rank.to_le_bytes(),
            );
            put(
                &mut bytes,
                base + offset_of!(TensorDesc, dtype),
                &dtype(ty.dtype).to_le_bytes(),
            );
            let n = ty
                .bytes()
                .map_err(|e| CodegenError::Overflow(e.to_string()))?;
            put(
                &mut bytes,
                base + offset_of!(TensorDesc, bytes),
                &u64_of(n, "a tensor size")?.to_le_bytes(),
            );
        }
        Ok(Some(self.data(bytes, 8, &relocs, &[])?))
    }

    fn define_tables(
        &mut self,
        em: &EmittedModel,
        triple: &str,
        features: &str,
    ) -> Result<Tables, CodegenError> {
        let name = self.string(self.name.to_string().as_str())?;
        let triple = self.string(triple)?;
        let features = self.string(features)?;
        let inputs = self.tensor_table(&em.inputs)?;
        let outputs = self.tensor_table(&em.outputs)?;
        let kernel_names = if em.kernels.is_empty() {
            None
        } else {
            let ids = em
                .kernels
                .iter()
                .map(|k| self.string(&k.to_string()).map(Some))
                .collect::<Result<Vec<_>, _>>()?;
            Some(self.pointer_table(&ids)?)
        };
        let ids = messages()
            .into_iter()
            .map(|m| self.string(m).map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        let messages = self.pointer_table(&ids)?;
        Ok(Tables {
            name,
            triple,
            features,
            inputs,
            outputs,
            kernel_names,
            messages,
        })
    }

    fn define_descriptor(
        &mut self,
        em: &EmittedModel,
        t: &Tables,
        w: &Wrapper,
    ) -> Result<(), CodegenError> {
        let mut b = vec![0u8; size_of::<ModelDesc>()];
        put(
            &mut b,
            offset_of!(ModelDesc, magic),
            &MODEL_MAGIC.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(ModelDesc, abi_version),
            &ABI_VERSION.to_le_bytes(),
        );
        let arena = u64_of(em.plan.arena_bytes, "the arena")?;
        put(
            &mut b,
            offset_of!(ModelDesc, arena_bytes),
            &arena.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(ModelDesc, weight_bytes),
            &u64_of(em.plan.weight_bytes, "the weights")?.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(ModelDesc, num_inputs),
            &u32_of(em.inputs.len(), "the input count")?.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(ModelDesc, num_outputs),
            &u32_of(em.outputs.len(), "the output count")?.to_le_bytes(),
        );
        put(
            &mut b,
            offset_of!(ModelDesc, num_kernels),
            &u32_of(em.kernels.len(), "the kernel count")?.to_le_bytes(),
        );
        let mut data = vec![
            (offset_of!(ModelDesc, name), t.name),
            (offset_of!(ModelDesc, target), t.triple),
            (offset_of!(ModelDesc, cpu_features), t.features),
        ];
        for (off, id) in [
            (offset_of!(ModelDesc, inputs), t.inputs),
            (offset_of!(ModelDesc, outputs), t.outputs),
            (offset_of!(ModelDesc, kernel_names), t.kernel_names),
        ] {
            if let Some(id) = id {
                data.push((off, id));
            }
        }
        let fns = [
            (offset_of!(ModelDesc, entry), em.entry),
            (offset_of!(ModelDesc, error_message), w.error_message),
            (offset_of!(ModelDesc, error_node), w.error_node),
        ];
        self.define(w.desc, b, 8, &data, &fns)?;
        let arena_sym = self.sym("arena_bytes");
        let id = self
            .module
            .declare_data(&arena_sym, Linkage::Export, false, false)
            .map_err(cl(&arena_sym))?;
        self.define(id, arena.to_le_bytes().to_vec(), 8, &[], &[])
    }

    fn declare_fn(
        &mut self,
        name: &str,
        linkage: Linkage,
        params: &[types::Type],
        ret: Option<types::Type>,
    ) -> Result<(FuncId, Signature), CodegenError> {
        let mut sig = self.module.make_signature();
        sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        sig.returns.extend(ret.map(AbiParam::new));
        let id = self
            .module
            .declare_function(name, linkage, &sig)
            .map_err(cl(name))?;
        Ok((id, sig))
    }

    /// Defines function `id` with `body(builder, module, params)`, which must end the entry
    /// block (and every block it creates) with a terminator.
    fn define_fn(
        &mut self,
        id: FuncId,
        sig: Signature,
        what: &str,
        body: impl FnOnce(
            &mut FunctionBuilder,
            &mut ObjectModule,
            &[cranelift_codegen::ir::Value],
        ) -> Result<(), CodegenError>,
    ) -> Result<(), CodegenError> {
        let mut ctx = Context::new();
        ctx.func.signature = sig;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let mut fctx = FunctionBuilderContext::new();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let start = b.create_block();
            b.append_block_params_for_function_params(start);
            b.switch_to_block(start);
            let params = b.block_params(start).to_vec();
            body(&mut b, self.module, &params)?;
            b.seal_all_blocks();
            b.finalize(self.module.isa().frontend_config());
        }
        self.module
            .define_function(id, &mut ctx)
            .map_err(|e| CodegenError::cranelift(what, format!("{e:?}")))
    }

    fn define_wrapper(&mut self, em: &EmittedModel, t: &Tables) -> Result<Wrapper, CodegenError> {
        let ptr = self.module.isa().pointer_type();
        let i32t = types::I32;
        let desc_sym = self.sym("model");
        let desc = self
            .module
            .declare_data(&desc_sym, Linkage::Export, false, false)
            .map_err(cl(&desc_sym))?;
        let (alloc, _) =
            self.declare_fn("aligned_alloc", Linkage::Import, &[ptr, ptr], Some(ptr))?;
        let (free, _) = self.declare_fn("free", Linkage::Import, &[ptr], None)?;
        let arena = i64::try_from(em.plan.arena_bytes)
            .map_err(|_| CodegenError::Overflow("the arena".into()))?;
        let header = i64::try_from(HANDLE_HEADER)
            .map_err(|_| CodegenError::Overflow("the handle".into()))?;
        let align = i64::try_from(ARENA_ALIGN)
            .map_err(|_| CodegenError::Overflow("the alignment".into()))?;
        let handle_bytes = arena
            .checked_add(header)
            .ok_or_else(|| CodegenError::Overflow("the handle".into()))?;
        let flags = MemFlagsData::trusted();
        let ctx_off =
            i32::try_from(HANDLE_CTX).map_err(|_| CodegenError::Overflow("the handle".into()))?;

        // create() -> handle
        let name = self.sym("create");
        let (create, sig) = self.declare_fn(&name, Linkage::Export, &[], Some(ptr))?;
        self.define_fn(create, sig, &name, |b, m, _| {
            let f = m.declare_func_in_func(alloc, b.func);
            let a = b.ins().iconst(ptr, align);
            let n = b.ins().iconst(ptr, handle_bytes);
            let call = b.ins().call(f, &[a, n]);
            let h = b.inst_results(call)[0];
            let (init, done) = (b.create_block(), b.create_block());
            b.ins().brif(h, init, &[], done, &[]);
            b.switch_to_block(init);
            let zero = b.ins().iconst(i32t, 0);
            b.ins().store(flags, zero, h, 0);
            let null = b.ins().iconst(ptr, 0);
            b.ins().store(flags, null, h, ctx_off);
            b.ins().return_(&[h]);
            b.switch_to_block(done);
            b.ins().return_(&[h]);
            Ok(())
        })?;

        // create_threads(n) -> handle
        let (ctx_new, _) =
            self.declare_fn(RT_CTX_NEW_SYMBOL, Linkage::Import, &[i32t], Some(ptr))?;
        let (ctx_free, _) = self.declare_fn(RT_CTX_FREE_SYMBOL, Linkage::Import, &[ptr], None)?;
        let mut new_sig = self.module.make_signature();
        new_sig.params.push(AbiParam::new(i32t));
        new_sig.returns.push(AbiParam::new(ptr));
        let mut free_sig = self.module.make_signature();
        free_sig.params.push(AbiParam::new(ptr));
        let name = self.sym("create_threads");
        let (create_threads, sig) = self.declare_fn(&name, Linkage::Export, &[i32t], Some(ptr))?;
        self.define_fn(create_threads, sig, &name, |b, m, p| {
            let n = p[0];
            let fc = m.declare_func_in_func(create, b.func);
            let call = b.ins().call(fc, &[]);
            let h = b.inst_results(call)[0];
            let null = b.ins().iconst(ptr, 0);
            let (got, serial, pool, start, fail) = (
                b.create_block(),
                b.create_block(),
                b.create_block(),
                b.create_block(),
                b.create_block(),
            );
            b.ins().brif(h, got, &[], serial, &[]);
            b.switch_to_block(serial);
            b.ins().return_(&[h]);
            b.switch_to_block(got);
            let many = b.ins().icmp_imm_s(IntCC::UnsignedGreaterThan, n, 1);
            b.ins().brif(many, pool, &[], serial, &[]);
            b.switch_to_block(pool);
            let fr = m.declare_func_in_func(ctx_new, b.func);
            let f = b.ins().func_addr(ptr, fr);
            b.ins().brif(f, start, &[], fail, &[]);
            b.switch_to_block(start);
            let sig = b.import_signature(new_sig);
            let call = b.ins().call_indirect(sig, f, &[n]);
            let ctx = b.inst_results(call)[0];
            let ok = b.create_block();
            b.ins().brif(ctx, ok, &[], fail, &[]);
            b.switch_to_block(ok);
            b.ins().store(flags, ctx, h, ctx_off);
            b.ins().return_(&[h]);
            b.switch_to_block(fail);
            let ff = m.declare_func_in_func(free, b.func);
            b.ins().call(ff, &[h]);
            b.ins().return_(&[null]);
            Ok(())
        })?;

        // run(handle, inputs, outputs) -> status
        let name = self.sym("run");
        let (run, sig) = self.declare_fn(&name, Linkage::Export, &[ptr, ptr, ptr], Some(i32t))?;
        let (n_in, n_out) = (em.inputs.len(), em.outputs.len());
        let entry = em.entry;
        self.define_fn(run, sig, &name, |b, m, p| {
            let (h, ins, outs) = (p[0], p[1], p[2]);
            let mut bad = b.ins().icmp_imm_s(IntCC::Equal, h, 0);
            for (v, n) in [(ins, n_in), (outs, n_out)] {
                if n > 0 {
                    let z = b.ins().icmp_imm_s(IntCC::Equal, v, 0);
                    bad = b.ins().bor(bad, z);
                }
            }
            let (null, go) = (b.create_block(), b.create_block());
            b.ins().brif(bad, null, &[], go, &[]);
            b.switch_to_block(null);
            let code = b.ins().iconst(i32t, i64::from(STATUS_NULL));
            b.ins().return_(&[code]);

            b.switch_to_block(go);
            let zero = b.ins().iconst(i32t, 0);
            let one = b.ins().iconst(i32t, 1);
            let old = b.ins().atomic_cas(flags, h, zero, one);
            let (fast, slow) = (b.create_block(), b.create_block());
            b.ins().brif(old, slow, &[], fast, &[]);

            let fe = m.declare_func_in_func(entry, b.func);
            b.switch_to_block(fast);
            let ws = b.ins().iadd_imm_s(h, header);
            let ctx = b.ins().load(ptr, flags, h, ctx_off);
            let call = b.ins().call(fe, &[ins, outs, ws, ctx]);
            let st = b.inst_results(call)[0];
            let zero = b.ins().iconst(i32t, 0);
            b.ins().atomic_store(flags, zero, h);
            b.ins().return_(&[st]);

            b.switch_to_block(slow);
            let fa = m.declare_func_in_func(alloc, b.func);
            let a = b.ins().iconst(ptr, align);
            let n = b.ins().iconst(ptr, arena.max(align));
            let call = b.ins().call(fa, &[a, n]);
            let tmp = b.inst_results(call)[0];
            let (work, oom) = (b.create_block(), b.create_block());
            b.ins().brif(tmp, work, &[], oom, &[]);
            b.switch_to_block(oom);
            let code = b.ins().iconst(i32t, i64::from(STATUS_NO_MEMORY));
            b.ins().return_(&[code]);
            b.switch_to_block(work);
            let ctx = b.ins().load(ptr, flags, h, ctx_off);
            let call = b.ins().call(fe, &[ins, outs, tmp, ctx]);
            let st = b.inst_results(call)[0];
            let ff = m.declare_func_in_func(free, b.func);
            b.ins().call(ff, &[tmp]);
            b.ins().return_(&[st]);
            Ok(())
        })?;

        // destroy(handle)
        let name = self.sym("destroy");
        let (destroy, sig) = self.declare_fn(&name, Linkage::Export, &[ptr], None)?;
        self.define_fn(destroy, sig, &name, |b, m, p| {
            let h = p[0];
            let (live, has_ctx, release, done) = (
                b.create_block(),
                b.create_block(),
                b.create_block(),
                b.create_block(),
            );
            b.ins().brif(h, live, &[], done, &[]);
            b.switch_to_block(live);
            let ctx = b.ins().load(ptr, flags, h, ctx_off);
            b.ins().brif(ctx, has_ctx, &[], release, &[]);
            // A context exists only when `dync_rt_ctx_new` was linked, and so its destructor.
            b.switch_to_block(has_ctx);
            let fr = m.declare_func_in_func(ctx_free, b.func);
            let f = b.ins().func_addr(ptr, fr);
            let sig = b.import_signature(free_sig);
            b.ins().call_indirect(sig, f, &[ctx]);
            b.ins().jump(release, &[]);
            b.switch_to_block(release);
            let ff = m.declare_func_in_func(free, b.func);
            b.ins().call(ff, &[h]);
            b.ins().jump(done, &[]);
            b.switch_to_block(done);
            b.ins().return_(&[]);
            Ok(())
        })?;

        let kernels = i64::try_from(em.kernels.len())
            .map_err(|_| CodegenError::Overflow("the kernel count".into()))?;
        let faults = i64::try_from(fault_count())
            .map_err(|_| CodegenError::Overflow("the fault count".into()))?;
        // Whether `code` is a fault status of this model: (kernel, fault, valid).
        let decode = move |b: &mut FunctionBuilder, code| {
            let k = b.ins().sshr_imm_s(code, 8);
            let f = b.ins().band_imm_s(code, 0xff);
            let k_lo = b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, k, 1);
            let k_hi = b.ins().icmp_imm_s(IntCC::SignedLessThanOrEqual, k, kernels);
            let f_lo = b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, f, 1);
            let f_hi = b.ins().icmp_imm_s(IntCC::SignedLessThanOrEqual, f, faults);
            let a = b.ins().band(k_lo, k_hi);
            let c = b.ins().band(f_lo, f_hi);
            let valid = b.ins().band(a, c);
            (k, f, valid)
        };
        let load_entry = move |b: &mut FunctionBuilder, m: &mut ObjectModule, table, idx| {
            let gv = m.declare_data_in_func(table, b.func);
            let base = b.ins().symbol_value(ptr, gv);
            let idx = b.ins().uextend(ptr, idx);
            let off = b.ins().imul_imm_s(idx, 8);
            let addr = b.ins().iadd(base, off);
            b.ins()
                .load(ptr, MemFlagsData::trusted().with_readonly(), addr, 0)
        };

        // error_message(status) -> const char*
        let name = self.sym("error_message");
        let (error_message, sig) = self.declare_fn(&name, Linkage::Export, &[i32t], Some(ptr))?;
        let messages = t.messages;
        self.define_fn(error_message, sig, &name, |b, m, p| {
            let code = p[0];
            let (_, f, valid) = decode(b, code);
            let unknown = b.ins().iconst(i32t, faults + 3);
            let mut idx = b.ins().select(valid, f, unknown);
            for (status, slot) in [
                (0, 0),
                (i64::from(STATUS_NULL), faults + 1),
                (i64::from(STATUS_NO_MEMORY), faults + 2),
            ] {
                let is = b.ins().icmp_imm_s(IntCC::Equal, code, status);
                let s = b.ins().iconst(i32t, slot);
                idx = b.ins().select(is, s, idx);
            }
            let msg = load_entry(b, m, messages, idx);
            b.ins().return_(&[msg]);
            Ok(())
        })?;

        // error_node(status) -> const char* or null
        let name = self.sym("error_node");
        let (error_node, sig) = self.declare_fn(&name, Linkage::Export, &[i32t], Some(ptr))?;
        let names = t.kernel_names;
        self.define_fn(error_node, sig, &name, |b, m, p| {
            let null = b.ins().iconst(ptr, 0);
            let Some(names) = names else {
                b.ins().return_(&[null]);
                return Ok(());
            };
            let (k, _, valid) = decode(b, p[0]);
            let k0 = b.ins().iadd_imm_s(k, -1);
            let zero = b.ins().iconst(i32t, 0);
            let idx = b.ins().select(valid, k0, zero);
            let s = load_entry(b, m, names, idx);
            let r = b.ins().select(valid, s, null);
            b.ins().return_(&[r]);
            Ok(())
        })?;
        Ok(Wrapper {
            desc,
            error_message,
            error_node,
        })
    }

    fn define_main(&mut self, desc: DataId) -> Result<(), CodegenError> {
        let ptr = self.module.isa().pointer_type();
        let (rt_main, _) = self.declare_fn(
            RT_MAIN_SYMBOL,
            Linkage::Import,
            &[types::I32, ptr, ptr],
            Some(types::I32),
        )?;
        let (main, sig) = self.declare_fn(
            "main",
            Linkage::Export,
            &[types::I32, ptr],
            Some(types::I32),
        )?;
        self.define_fn(main, sig, "main", |b, m, p| {
            let gv = m.declare_data_in_func(desc, b.func);
            let d = b.ins().symbol_value(ptr, gv);
            let f = m.declare_func_in_func(rt_main, b.func);
            let call = b.ins().call(f, &[p[0], p[1], d]);
            let r = b.inst_results(call)[0];
            b.ins().return_(&[r]);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_names_are_identifiers() {
        assert_eq!(c_name("dy-mobile"), "dy_mobile");
        assert_eq!(c_name("ResNet18.v2"), "resnet18_v2");
        assert_eq!(c_name("18x"), "m_18x");
        assert_eq!(c_name(""), "model");
        for s in ["dy-mobile", "18x", "", "é"] {
            assert!(is_c_identifier(&c_name(s)), "{s:?}");
        }
        assert!(!is_c_identifier("a-b"));
        assert!(!is_c_identifier("1a"));
        assert!(is_c_identifier("_a1"));
    }

    #[test]
    fn fingerprints_depend_on_the_bytes_only() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = |b: &[u8]| {
            let mut fp = Fingerprint::new(Vec::new());
            fp.write_all(b).unwrap();
            assert!(fp.inner == b, "the bytes pass through");
            fp.finish()
        };
        let all = whole(&bytes);
        // Any split into writes gives the same fingerprint.
        for cut in [1, 5, 31, 32, 33, 64, 999] {
            let mut fp = Fingerprint::new(std::io::sink());
            for part in bytes.chunks(cut) {
                fp.write_all(part).unwrap();
            }
            assert_eq!(fp.finish(), all, "writes of {cut} bytes");
        }
        // One changed bit anywhere, a zero byte appended, or a shorter prefix changes it.
        for i in [0, 31, 32, 500, 999] {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert_ne!(whole(&b), all, "bit flipped at {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_ne!(whole(&longer), all);
        assert_ne!(whole(&bytes[..999]), all);
        assert_ne!(whole(&[]), whole(&[0]));
    }

    #[test]
    fn every_fault_has_a_message_slot() {
        let m = messages();
        assert_eq!(m.len(), fault_count() + 4);
        for f in Fault::ALL {
            assert_eq!(m[f.code() as usize], f.message());
        }
    }
}
