//! The C ABI of an ahead-of-time compiled model, and a validated Rust view of it.
//!
//! `dync compile` emits, for a model named `<name>`, an object whose exported symbols are:
//! - `dync_<name>_model`: a [`ModelDesc`] (read-only data) describing the model: its entry point,
//!   arena size, inputs and outputs (names, dtypes, shapes, bytes), the node of every kernel (for
//!   error messages), the target triple and the CPU features the code needs;
//! - `dync_<name>_entry`: the raw entry point ([`EntryFn`]): `(inputs, outputs, workspace, ctx)`,
//!   `workspace` a 64-byte aligned arena of `arena_bytes` bytes, `ctx` null (serial) or a
//!   [`crate::ctx::RtCtx`] (its thread pool, kernel hook and micro-kernel slot);
//! - `dync_<name>_create`, `_run`, `_destroy`, `_error_message`, `_error_node`: a self-contained
//!   wrapper (it needs only libc's `aligned_alloc` and `free`) that owns the arena; see
//!   [`ModelDesc`] for their contracts;
//! - `dync_<name>_arena_bytes`: the arena size as a `uint64_t`.
//!
//! The layout of [`ModelDesc`] and [`TensorDesc`] is the contract between the compiler (which
//! writes them for 64-bit little-endian targets, taking the field offsets from these
//! definitions), the generated C header (which declares the same structs and checks their size
//! and offsets with `_Static_assert`) and this runtime. [`Model::from_desc`] checks the magic
//! number, ABI version and every count, rank, shape and size before anything uses them.
//!
//! Status codes of `run` and the entry: 0 is success; [`STATUS_NULL`] and [`STATUS_NO_MEMORY`]
//! come from the wrapper; any other value is a fault of generated code, `(kernel + 1) << 8 |
//! fault`, which `error_message` and `error_node` turn into text.

use crate::npy::{NpyArray, NpyDType, NpyData};
use std::ffi::{c_char, CStr};
use thiserror::Error;

/// `ModelDesc::magic`: "DYNC" in little-endian byte order.
pub const MODEL_MAGIC: u32 = u32::from_le_bytes(*b"DYNC");
/// `ModelDesc::abi_version`: the layout of these descriptors and of the micro-kernel table
/// generated code reads (`crate::ukernel::UkernelTable`, whose fields it loads by offset) and
/// of the micro-kernels' signatures. 2: the table gained the mixing, depthwise and
/// matrix-vector kernels; 3: the mixing kernel takes a step stride and its caller's next bank, and the table gained
/// the small-map depthwise kernel; 4: the matrix-vector kernel takes several vectors (`ldx`,
/// `m`, `ldy`); 5: the table gained the in-place stride-1 convolution tile; 6: the GEMM and
/// in-place tiles take the `side` prefetch hint, and the table gained the channel-block
/// depthwise kernel; 7: the small-map depthwise kernel takes the input plane and its padding
/// (the depthwise kernel's arguments) instead of a padded copy; 8: the mixing kernel takes no
/// prefetch hint. An executable linked with a
/// runtime library of another version (a stale `libdync_runtime.a`) then stops with
/// [`ModelError::Version`] instead of calling through fields its table does not have.
pub const ABI_VERSION: u32 = 8;
/// `run` was given a null handle, or null inputs or outputs for a model that has some.
pub const STATUS_NULL: i32 = -1;
/// `run` could not allocate a second arena for a concurrent call on a busy handle.
pub const STATUS_NO_MEMORY: i32 = -2;
/// Alignment of arenas (and of the handle's header before its arena).
pub const ARENA_ALIGN: usize = 64;
/// Bytes of a handle's header; its arena follows. The header's first `u32` is the busy flag;
/// the pointer at [`HANDLE_CTX`] is the handle's run-time context (null: serial).
pub const HANDLE_HEADER: usize = 64;
/// Offset of the context pointer in a handle's header.
pub const HANDLE_CTX: usize = 8;
/// Largest rank, input or output count, and kernel count a descriptor may declare.
pub const MAX_RANK: usize = 64;
pub const MAX_TENSORS: usize = 1 << 16;
pub const MAX_KERNELS: usize = 1 << 23;

/// Element type codes of [`TensorDesc::dtype`].
pub const DTYPE_F32: u32 = 0;
pub const DTYPE_I64: u32 = 1;
pub const DTYPE_I32: u32 = 2;
pub const DTYPE_BOOL: u32 = 3;

/// The code of `dtype` in a descriptor.
pub fn dtype_code(dtype: NpyDType) -> u32 {
    match dtype {
        NpyDType::F32 => DTYPE_F32,
        NpyDType::I64 => DTYPE_I64,
        NpyDType::I32 => DTYPE_I32,
        NpyDType::Bool => DTYPE_BOOL,
    }
}

fn dtype_of(code: u32) -> Option<NpyDType> {
    Some(match code {
        DTYPE_F32 => NpyDType::F32,
        DTYPE_I64 => NpyDType::I64,
        DTYPE_I32 => NpyDType::I32,
        DTYPE_BOOL => NpyDType::Bool,
        _ => return None,
    })
}

/// The generated entry point.
pub type EntryFn = unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8, *mut u8) -> i32;
/// `error_message` and `error_node`: a static NUL-terminated string for a status (`error_node`
/// returns null when the status names no kernel).
pub type StatusFn = unsafe extern "C" fn(i32) -> *const c_char;

/// One input or output.
#[repr(C)]
pub struct TensorDesc {
    /// The graph's name for the tensor, NUL-terminated UTF-8.
    pub name: *const c_char,
    /// `rank` dims.
    pub shape: *const i64,
    pub rank: u32,
    /// One of the `DTYPE_*` codes.
    pub dtype: u32,
    /// Bytes of the row-major data: the product of `shape` times the element size.
    pub bytes: u64,
}

/// The model descriptor, `dync_<name>_model`.
#[repr(C)]
pub struct ModelDesc {
    pub magic: u32,
    pub abi_version: u32,
    /// The model's C name (`<name>`), NUL-terminated.
    pub name: *const c_char,
    pub entry: EntryFn,
    pub error_message: StatusFn,
    pub error_node: StatusFn,
    /// Bytes of the workspace `entry` needs (a multiple of 64, possibly 0).
    pub arena_bytes: u64,
    /// Bytes of the weights in the object's read-only data.
    pub weight_bytes: u64,
    pub num_inputs: u32,
    pub num_outputs: u32,
    pub inputs: *const TensorDesc,
    pub outputs: *const TensorDesc,
    pub num_kernels: u32,
    pub reserved: u32,
    /// For kernel `k` (execution order), `%N (op from "onnx node")`.
    pub kernel_names: *const *const c_char,
    /// The target triple the code was generated for.
    pub target: *const c_char,
    /// Comma-separated CPU features the code uses (Rust's names, e.g. `avx2,fma`), maybe empty.
    pub cpu_features: *const c_char,
}

/// A descriptor that does not describe a usable model (a corrupted or mismatched object).
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("the model descriptor is null")]
    Null,
    #[error("bad model descriptor magic {0:#x} (not produced by dync compile)")]
    Magic(u32),
    #[error(
        "the model uses ABI version {0}; this runtime implements version {ABI_VERSION} (it was \
         linked with a runtime library of another dync build: rebuild that with `cargo build \
         --release` and compile again)"
    )]
    Version(u32),
    #[error("model descriptor: {0}")]
    Invalid(String),
}

/// One input or output, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: NpyDType,
    pub shape: Vec<usize>,
    pub bytes: usize,
}

impl TensorInfo {
    /// `f32[1,3,224,224]`, the way the compiler prints tensor types.
    pub fn type_string(&self) -> String {
        type_string(self.dtype, &self.shape)
    }
}

/// `dtype[d0,d1,...]`.
pub fn type_string(dtype: NpyDType, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", dtype.name(), dims.join(","))
}

/// A validated view of a [`ModelDesc`]: safe to run.
pub struct Model {
    desc: &'static ModelDesc,
    pub name: String,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub arena_bytes: usize,
    pub weight_bytes: u64,
    pub num_kernels: usize,
    pub target: String,
    pub cpu_features: Vec<String>,
}

/// A run that failed: a fault of generated code, described by the model's own tables.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("the model has {expected} {what} but {got} were given")]
    Count {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what} {name:?}: expected {expected}, got {got}")]
    Mismatch {
        what: &'static str,
        name: String,
        expected: String,
        got: String,
    },
    #[error("the arena has {got} bytes but the model needs {need}")]
    Arena { need: usize, got: usize },
    #[error("{node}: {message}")]
    Fault { node: String, message: String },
    #[error("{message} (status {status})")]
    Status { status: i32, message: String },
}

/// # Safety
/// `p` is null or a NUL-terminated string that lives for the program's duration.
unsafe fn static_str(p: *const c_char, what: &str) -> Result<String, ModelError> {
    if p.is_null() {
        return Err(ModelError::Invalid(format!("{what} is null")));
    }
    // SAFETY: non-null and NUL-terminated static per the contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_owned)
        .map_err(|_| ModelError::Invalid(format!("{what} is not UTF-8")))
}

/// # Safety
/// `p` points at `n` valid `TensorDesc`s (when `n > 0`) with valid static names and shapes.
unsafe fn tensors(p: *const TensorDesc, n: u32, what: &str) -> Result<Vec<TensorInfo>, ModelError> {
    let n = n as usize;
    if n > MAX_TENSORS {
        return Err(ModelError::Invalid(format!("{n} {what}s")));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(ModelError::Invalid(format!("the {what} table is null")));
    }
    // SAFETY: `n` descriptors per the contract.
    let descs = unsafe { std::slice::from_raw_parts(p, n) };
    let mut out = Vec::with_capacity(n);
    for (i, d) in descs.iter().enumerate() {
        // SAFETY: static strings per the contract.
        let name = unsafe { static_str(d.name, &format!("the name of {what} {i}")) }?;
        let bad = |m: String| ModelError::Invalid(format!("{what} {name:?}: {m}"));
        let dtype = dtype_of(d.dtype).ok_or_else(|| bad(format!("dtype code {}", d.dtype)))?;
        let rank = d.rank as usize;
        if rank > MAX_RANK {
            return Err(bad(format!("rank {rank}")));
        }
        let dims: &[i64] = if rank == 0 {
            &[]
        } else if d.shape.is_null() {
            return Err(bad("null shape".into()));
        } else {
            // SAFETY: `rank` dims per the contract.
            unsafe { std::slice::from_raw_parts(d.shape, rank) }
        };
        let shape = dims
            .iter()
            .map(|&x| usize::try_from(x))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| bad(format!("negative dim in {dims:?}")))?;
        let bytes = shape
            .iter()
            .try_fold(dtype.itemsize(), |a, &x| a.checked_mul(x))
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if u64::try_from(bytes).ok() != Some(d.bytes) {
            return Err(bad(format!(
                "declares {} bytes, its shape has {bytes}",
                d.bytes
            )));
        }
        out.push(TensorInfo {
            name,
            dtype,
            shape,
            bytes,
        });
    }
    Ok(out)
}

impl Model {
    /// Validates the descriptor and copies its metadata.
    ///
    /// # Safety
    /// `desc` is null or points at a descriptor emitted by `dync compile` (or one with the same
    /// layout whose pointers are valid for the program's duration, and whose entry point obeys
    /// the contract above).
    pub unsafe fn from_desc(desc: *const ModelDesc) -> Result<Model, ModelError> {
        // SAFETY: null or valid and static per the contract.
        let d: &'static ModelDesc = unsafe { desc.as_ref() }.ok_or(ModelError::Null)?;
        if d.magic != MODEL_MAGIC {
            return Err(ModelError::Magic(d.magic));
        }
        if d.abi_version != ABI_VERSION {
            return Err(ModelError::Version(d.abi_version));
        }
        // SAFETY (all calls below): the descriptor's pointers are valid per the contract.
        let name = unsafe { static_str(d.name, "the model name") }?;
        let inputs = unsafe { tensors(d.inputs, d.num_inputs, "input") }?;
        let outputs = unsafe { tensors(d.outputs, d.num_outputs, "output") }?;
        let target = unsafe { static_str(d.target, "the target") }?;
        let features = unsafe { static_str(d.cpu_features, "the CPU features") }?;
        let num_kernels = d.num_kernels as usize;
        if num_kernels > MAX_KERNELS || (num_kernels > 0 && d.kernel_names.is_null()) {
            return Err(ModelError::Invalid(format!(
                "{num_kernels} kernels with a null name table"
            )));
        }
        let arena_bytes = usize::try_from(d.arena_bytes)
            .ok()
            .filter(|b| b % ARENA_ALIGN == 0 && *b <= isize::MAX as usize)
            .ok_or_else(|| ModelError::Invalid(format!("arena of {} bytes", d.arena_bytes)))?;
        Ok(Model {
            desc: d,
            name,
            inputs,
            outputs,
            arena_bytes,
            weight_bytes: d.weight_bytes,
            num_kernels,
            target,
            cpu_features: features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Runs the model on `inputs` (in the model's input order) into `outputs`, with `arena` as
    /// workspace and `ctx` as the run-time context (None: serial). Checks every dtype and shape
    /// first.
    pub fn run(
        &self,
        arena: &mut crate::rt::Arena,
        ctx: Option<&mut crate::ctx::RtCtx>,
        inputs: &[&NpyArray],
        outputs: &mut [NpyArray],
    ) -> Result<(), RunError> {
        check_tensors("input", &self.inputs, inputs.iter().copied())?;
        check_tensors("output", &self.outputs, outputs.iter())?;
        if arena.len() < self.arena_bytes {
            return Err(RunError::Arena {
                need: self.arena_bytes,
                got: arena.len(),
            });
        }
        let in_ptrs: Vec<*const u8> = inputs.iter().map(|a| data_ptr(a)).collect();
        let out_ptrs: Vec<*mut u8> = outputs.iter_mut().map(data_mut_ptr).collect();
        // SAFETY: every buffer has exactly the dtype and shape the entry was compiled for
        // (checked above), the arena is 64-byte aligned and large enough, outputs are distinct
        // allocations from the inputs and the arena, and `ctx` is null or a live context.
        let ctx = ctx.map_or(std::ptr::null_mut(), |c| c.as_mut_ptr());
        let status = unsafe {
            (self.desc.entry)(in_ptrs.as_ptr(), out_ptrs.as_ptr(), arena.as_mut_ptr(), ctx)
        };
        if status == 0 {
            Ok(())
        } else {
            Err(self.status_error(status))
        }
    }

    /// The error of a non-zero status, in the model's own words.
    pub fn status_error(&self, status: i32) -> RunError {
        // SAFETY: the descriptor's status functions return null or static NUL-terminated
        // strings for any status.
        let text = |f: StatusFn| unsafe {
            let p = f(status);
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        let message = text(self.desc.error_message).unwrap_or_else(|| "unknown status".into());
        match text(self.desc.error_node) {
            Some(node) => RunError::Fault { node, message },
            None => RunError::Status { status, message },
        }
    }
}

fn check_tensors<'a>(
    what: &'static str,
    want: &[TensorInfo],
    got: impl ExactSizeIterator<Item = &'a NpyArray>,
) -> Result<(), RunError> {
    if got.len() != want.len() {
        return Err(RunError::Count {
            what,
            expected: want.len(),
            got: got.len(),
        });
    }
    for (w, a) in want.iter().zip(got) {
        if a.dtype() != w.dtype
            || a.shape != w.shape
            || a.len().checked_mul(w.dtype.itemsize()) != Some(w.bytes)
        {
            return Err(RunError::Mismatch {
                what,
                name: w.name.clone(),
                expected: w.type_string(),
                got: type_string(a.dtype(), &a.shape),
            });
        }
    }
    Ok(())
}

fn data_ptr(a: &NpyArray) -> *const u8 {
    match &a.data {
        NpyData::F32(v) => v.as_ptr().cast(),
        NpyData::I64(v) => v.as_ptr().cast(),
        NpyData::I32(v) => v.as_ptr().cast(),
        NpyData::Bool(v) => v.as_ptr().cast(),
    }
}

/// Generated code writes only 0 or 1 into bool outputs, so a `Vec<bool>` stays valid.
fn data_mut_ptr(a: &mut NpyArray) -> *mut u8 {
    match &mut a.data {
        NpyData::F32(v) => v.as_mut_ptr().cast(),
        NpyData::I64(v) => v.as_mut_ptr().cast(),
        NpyData::I32(v) => v.as_mut_ptr().cast(),
        NpyData::Bool(v) => v.as_mut_ptr().cast(),
    }
}

/// A zero-filled array of `info`'s dtype and shape (an output buffer).
pub fn zeros(info: &TensorInfo) -> Result<NpyArray, crate::rt::AllocError> {
    let n = info.bytes / info.dtype.itemsize();
    fn vec<T: Clone>(n: usize, v: T, bytes: usize) -> Result<Vec<T>, crate::rt::AllocError> {
        let mut out = Vec::new();
        out.try_reserve_exact(n)
            .map_err(|_| crate::rt::AllocError(bytes))?;
        out.resize(n, v);
        Ok(out)
    }
    let data = match info.dtype {
        NpyDType::F32 => NpyData::F32(vec(n, 0.0, info.bytes)?),
        NpyDType::I64 => NpyData::I64(vec(n, 0, info.bytes)?),
        NpyDType::I32 => NpyData::I32(vec(n, 0, info.bytes)?),
        NpyDType::Bool => NpyData::Bool(vec(n, false, info.bytes)?),
    };
    Ok(NpyArray {
        shape: info.shape.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::Arena;

    /// y = 2·x over f32[2, 3]; fails with a fault status when x[0] is negative.
    unsafe extern "C" fn entry(
        ins: *const *const u8,
        outs: *const *mut u8,
        _ws: *mut u8,
        _ctx: *mut u8,
    ) -> i32 {
        // SAFETY: called by `Model::run` with one f32[6] input and output.
        unsafe {
            let x = std::slice::from_raw_parts(*ins as *const f32, 6);
            let y = std::slice::from_raw_parts_mut(*outs as *mut f32, 6);
            if x[0] < 0.0 {
                return (1 << 8) | 2;
            }
            for (o, i) in y.iter_mut().zip(x) {
                *o = 2.0 * i;
            }
        }
        0
    }

    unsafe extern "C" fn message(status: i32) -> *const c_char {
        if status == 0 {
            c"success"
        } else {
            c"integer division by zero"
        }
        .as_ptr()
    }

    unsafe extern "C" fn node(status: i32) -> *const c_char {
        if status >> 8 == 1 {
            c"%3 (div from \"d\")".as_ptr()
        } else {
            std::ptr::null()
        }
    }

    const SHAPE: [i64; 2] = [2, 3];

    fn tensor(name: &'static CStr, dtype: u32, bytes: u64) -> TensorDesc {
        TensorDesc {
            name: name.as_ptr(),
            shape: SHAPE.as_ptr(),
            rank: 2,
            dtype,
            bytes,
        }
    }

    fn desc(inputs: &'static [TensorDesc], outputs: &'static [TensorDesc]) -> ModelDesc {
        ModelDesc {
            magic: MODEL_MAGIC,
            abi_version: ABI_VERSION,
            name: c"t".as_ptr(),
            entry,
            error_message: message,
            error_node: node,
            arena_bytes: 64,
            weight_bytes: 0,
            num_inputs: inputs.len() as u32,
            num_outputs: outputs.len() as u32,
            inputs: inputs.as_ptr(),
            outputs: outputs.as_ptr(),
            num_kernels: 1,
            reserved: 0,
            kernel_names: Box::leak(Box::new([c"%3".as_ptr()])).as_ptr(),
            target: c"x86_64-unknown-linux-gnu".as_ptr(),
            cpu_features: c"sse4.1,avx".as_ptr(),
        }
    }

    fn leak<T>(v: T) -> &'static T {
        Box::leak(Box::new(v))
    }

    fn load(d: ModelDesc) -> Result<Model, ModelError> {
        // SAFETY: every pointer of `d` is static (leaked or a literal).
        unsafe { Model::from_desc(leak(d)) }
    }

    #[test]
    fn descriptors_are_validated() {
        let ok_in: &'static [TensorDesc] = Box::leak(Box::new([tensor(c"x", DTYPE_F32, 24)]));
        let ok_out: &'static [TensorDesc] = Box::leak(Box::new([tensor(c"y", DTYPE_F32, 24)]));
        let m = load(desc(ok_in, ok_out)).unwrap();
        assert_eq!(m.inputs[0].type_string(), "f32[2,3]");
        assert_eq!(m.cpu_features, ["sse4.1", "avx"]);
        // SAFETY: null is allowed.
        assert!(matches!(
            unsafe { Model::from_desc(std::ptr::null()) },
            Err(ModelError::Null)
        ));
        let mut d = desc(ok_in, ok_out);
        d.magic = 7;
        assert!(matches!(load(d), Err(ModelError::Magic(7))));
        let mut d = desc(ok_in, ok_out);
        d.abi_version = 99;
        assert!(matches!(load(d), Err(ModelError::Version(99))));
        let bad_dtype: &'static [TensorDesc] = Box::leak(Box::new([tensor(c"x", 9, 24)]));
        assert!(matches!(
            load(desc(bad_dtype, ok_out)),
            Err(ModelError::Invalid(_))
        ));
        let bad_bytes: &'static [TensorDesc] = Box::leak(Box::new([tensor(c"x", DTYPE_F32, 25)]));
        let e = load(desc(bad_bytes, ok_out)).err().unwrap();
        assert!(e.to_string().contains("\"x\""), "{e}");
        let mut d = desc(ok_in, ok_out);
        d.arena_bytes = 65;
        assert!(matches!(load(d), Err(ModelError::Invalid(_))));
    }

    #[test]
    fn runs_check_tensors_and_report_faults() {
        let ins: &'static [TensorDesc] = Box::leak(Box::new([tensor(c"x", DTYPE_F32, 24)]));
        let outs: &'static [TensorDesc] = Box::leak(Box::new([tensor(c"y", DTYPE_F32, 24)]));
        let m = load(desc(ins, outs)).unwrap();
        let mut arena = Arena::new(m.arena_bytes).unwrap();
        let x = NpyArray {
            shape: vec![2, 3],
            data: NpyData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        };
        let mut y = vec![zeros(&m.outputs[0]).unwrap()];
        m.run(&mut arena, None, &[&x], &mut y).unwrap();
        assert_eq!(
            y[0].data,
            NpyData::F32(vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
        );

        let neg = NpyArray {
            shape: vec![2, 3],
            data: NpyData::F32(vec![-1.0; 6]),
        };
        let e = m.run(&mut arena, None, &[&neg], &mut y).unwrap_err();
        assert_eq!(
            e.to_string(),
            "%3 (div from \"d\"): integer division by zero"
        );

        let wrong = NpyArray {
            shape: vec![3, 2],
            data: NpyData::F32(vec![0.0; 6]),
        };
        let e = m.run(&mut arena, None, &[&wrong], &mut y).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input \"x\": expected f32[2,3], got f32[3,2]"
        );
        let e = m.run(&mut arena, None, &[], &mut y).unwrap_err();
        assert!(
            matches!(
                e,
                RunError::Count {
                    expected: 1,
                    got: 0,
                    ..
                }
            ),
            "{e}"
        );
        let mut small = Arena::new(0).unwrap();
        let e = m.run(&mut small, None, &[&x], &mut y).unwrap_err();
        assert!(matches!(e, RunError::Arena { need: 64, got: 0 }), "{e}");
    }
}
