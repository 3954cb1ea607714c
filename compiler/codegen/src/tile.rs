//! The f32 GEMM tile in pure Cranelift: the same function as the runtime's micro-kernels
//! (`dync_runtime::ukernel`, whose module documentation is the contract), for targets and
//! configurations without a ukernel table (aarch64, `--no-ukernels`, no run-time context).
//!
//! # What it computes
//! [`emit_gemm_tile`] defines `tile(k, a, b, ldb, c, ldc, m, n, bias, flags, lo, hi)` in the
//! module ISA's default (C) calling convention, the C signature of `GemmF32Fn`. For `i < m`,
//! `j < n` (`m`, `n` are first limited to `M0 = 8`, `N0 = 32`):
//!
//! ```text
//! s = C[i·ldc + j] if flags & GEMM_ACCUMULATE, else +0.0
//! s = s + A[p·M0 + i] · B[p·ldb + j]   for p = 0, 1, …, k − 1 (FMA when the ISA has it)
//! s = s + bias[i]        if bias is not null
//! s = min(hi, max(lo, s)) if flags & GEMM_CLAMP, as x86 maxps/minps: NaN s stays NaN, lo > hi
//!                        gives hi (written `lo > s ? lo : s`, then `hi < y ? hi : y`)
//! C[i·ldc + j] = s
//! ```
//!
//! Without native FMA (x86 below AVX + FMA) products and sums are rounded separately, like the
//! generic kernel, instead of calling libm's `fmaf`.
//!
//! # Register tiling
//! Cranelift has 128-bit vectors only and x86-64 gives it 16 xmm registers, so the 8 × 32 tile
//! is computed in passes of `MR × NR = 4 × 8`: 8 f32x4 accumulators (8 independent FMA chains
//! cover the FMA latency), two B vectors and the A broadcasts (a scalar load + `splat`) live
//! per reduction step. Measured alternatives on x86 (Sapphire Rapids): one f32x4 load of A
//! with lane-broadcast shuffles was slower, and so were separate multiply and add.
//!
//! The reduction loop is unrolled `UNROLL = 2` times, a second loop runs the remaining step;
//! both run zero times when their count is 0, so `k == 0` keeps the starting sums. Not more:
//! A and B loads are pure (`readonly`, `can_move`) and Cranelift places pure values
//! depth-first from the loop's jump, so every accumulator's chain is emitted over all unrolled
//! steps at once; with 4 steps the B vectors of all steps are live together and spill (measured slower than
//! 1 step, while 2 fit in 16 registers and are the fastest). Passes run column groups outer,
//! row halves inner (the second half re-reads the group's B columns from L1); the row half
//! `4..8` is skipped when `m <= 4`.
//!
//! # Edges
//! Rows: a pass always computes its 4 rows (A is packed 8 wide, so rows `>= m` read valid A
//! lanes) but only loads/stores C, and reads bias, for rows `< m`. Columns: a pass of `cols`
//! columns (`min(8, n - c0)`, chosen at run time among 8 variants generated here) reads B and
//! C only at columns `< n`: whole groups of 4 with vector loads, the rest with scalar loads
//! inserted into a zeroed vector, and stores the same lanes back. Nothing outside the
//! `m × n` elements of C is read or written; B and A are only read, so their loads are
//! `readonly` + `can_move`.
//!
//! The bias is copied once per call into a stack slot of 8 floats preset to `-0.0` (the
//! identity of `+`, including for `-0.0` and NaN sums), so the epilogue adds a slot element
//! unconditionally. The clamp bounds are `-inf`/`+inf` without `GEMM_CLAMP`, which makes the
//! clamp the identity bit for bit; only the accumulate flag is a branch.

use crate::error::CodegenError;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, Block, BlockArg, Endianness, InstBuilder, MemFlagsData, StackSlot, StackSlotData,
    StackSlotKind, Type, UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::{FuncId, Linkage, Module};
use dync_runtime::ukernel::{GEMM_ACCUMULATE, GEMM_CLAMP, GEMM_F32_M0, GEMM_F32_N0};

/// Rows of a register pass.
const MR: usize = 4;
/// Columns of a register pass (two f32x4 groups).
const NR: usize = 8;
/// f32 lanes of a vector.
const LANES: usize = 4;
/// Reduction steps per iteration of the main loop.
const UNROLL: usize = 2;
const _: () = assert!(
    GEMM_F32_M0.is_multiple_of(MR)
        && GEMM_F32_N0.is_multiple_of(NR)
        && NR == 2 * LANES
        && UNROLL.is_power_of_two()
);

/// Declares (`Linkage::Local`) and defines the tile function `name` in `module`; returns its
/// id. The function has the C signature of `dync_runtime::ukernel::GemmF32Fn` in the module
/// ISA's default calling convention.
pub fn emit_gemm_tile(module: &mut dyn Module, name: &str) -> Result<FuncId, CodegenError> {
    let isa = module.isa();
    let ptr = isa.pointer_type();
    let fma = isa.has_native_fma();
    let sig = crate::abi::tile_signature(isa.default_call_conv(), ptr);
    let id = module
        .declare_function(name, Linkage::Local, &sig)
        .map_err(|e| CodegenError::cranelift(name, e))?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    build(b, ptr, fma, name)?.finalize(module.target_config());
    module
        .define_function(id, &mut ctx)
        .map_err(|e| CodegenError::cranelift(name, format!("{e:?}")))?;
    module.clear_context(&mut ctx);
    Ok(id)
}

/// Values every pass shares, defined in the entry block.
struct Shared {
    ptr: Type,
    fma: bool,
    /// Row strides of B and C in bytes, and B's for `UNROLL` rows.
    ldb4: Value,
    ldb_unroll: Value,
    ldc4: Value,
    /// `k / UNROLL` and `k % UNROLL`.
    k_main: Value,
    k_rest: Value,
    /// Non-zero when C is accumulated.
    accumulate: Value,
    /// Clamp bounds (`-inf`, `+inf` without the clamp flag), splatted.
    lo: Value,
    hi: Value,
}

/// Per-pass values: A at the pass's first row, B and C at its first row and column, the bias
/// slot at its first row, and its valid row count (`1..=MR`).
#[derive(Clone, Copy)]
struct Pass {
    a: Value,
    b: Value,
    c: Value,
    bias: Value,
    rows: Value,
}

/// Loads of A and B: never written by the tile, in bounds by the contract.
fn input_flags() -> MemFlagsData {
    MemFlagsData::new()
        .with_notrap()
        .with_readonly()
        .with_can_move()
}

/// Loads and stores of C and the bias slot.
fn data_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// The tile's body; the caller finalizes the returned builder.
fn build<'a>(
    mut b: FunctionBuilder<'a>,
    ptr: Type,
    fma: bool,
    name: &str,
) -> Result<FunctionBuilder<'a>, CodegenError> {
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params: [Value; 14] = b
        .block_params(entry)
        .try_into()
        .map_err(|_| CodegenError::cranelift(name, "tile signature"))?;
    // The `side` prefetch hint is ignored: Cranelift has no prefetch instruction.
    let [k, a, bm, ldb, c, ldc, m, n, bias, flags, lo, hi, _side, _side_len] = params;
    let m = umin_imm(&mut b, ptr, m, GEMM_F32_M0);
    let n = umin_imm(&mut b, ptr, n, GEMM_F32_N0);
    let (setup, done) = (b.create_block(), b.create_block());
    let m0 = b.ins().icmp_imm_s(IntCC::Equal, m, 0);
    let n0 = b.ins().icmp_imm_s(IntCC::Equal, n, 0);
    let empty = b.ins().bor(m0, n0);
    b.ins().brif(empty, done, &[], setup, &[]);

    b.switch_to_block(setup);
    let clamp = b.ins().band_imm_s(flags, i64::from(GEMM_CLAMP));
    let ninf = b.ins().f32const(f32::NEG_INFINITY);
    let pinf = b.ins().f32const(f32::INFINITY);
    let lo = b.ins().select(clamp, lo, ninf);
    let hi = b.ins().select(clamp, hi, pinf);
    let ldb4 = b.ins().ishl_imm_s(ldb, 2);
    let sh = Shared {
        ptr,
        fma,
        ldb4,
        ldb_unroll: b.ins().imul_imm_s(ldb4, UNROLL as i64),
        ldc4: b.ins().ishl_imm_s(ldc, 2),
        k_main: b.ins().ushr_imm_s(k, UNROLL.trailing_zeros() as i64),
        k_rest: b.ins().band_imm_s(k, UNROLL as i64 - 1),
        accumulate: b.ins().band_imm_s(flags, i64::from(GEMM_ACCUMULATE)),
        lo: b.ins().splat(types::F32X4, lo),
        hi: b.ins().splat(types::F32X4, hi),
    };
    let slot = bias_slot(&mut b, ptr, bias, m);

    // Passes: c0 over column groups of NR, r0 over row halves of MR.
    let (c0, r0) = (b.declare_var(ptr), b.declare_var(ptr));
    let zero = b.ins().iconst(ptr, 0);
    b.def_var(c0, zero);
    b.def_var(r0, zero);
    let (pass, next) = (b.create_block(), b.create_block());
    b.ins().jump(pass, &[]);

    b.switch_to_block(pass);
    let (c0v, r0v) = (b.use_var(c0), b.use_var(r0));
    let rows_left = b.ins().isub(m, r0v);
    let rows = umin_imm(&mut b, ptr, rows_left, MR);
    let cols_left = b.ins().isub(n, c0v);
    let cols = umin_imm(&mut b, ptr, cols_left, NR);
    let r0_bytes = b.ins().ishl_imm_s(r0v, 2);
    let c0_bytes = b.ins().ishl_imm_s(c0v, 2);
    let pa = b.ins().iadd(a, r0_bytes);
    let pb = b.ins().iadd(bm, c0_bytes);
    let c_row = b.ins().imul(r0v, sh.ldc4);
    let pc = b.ins().iadd(c, c_row);
    let pc = b.ins().iadd(pc, c0_bytes);
    let slot_addr = b.ins().stack_addr(ptr, slot, 0);
    let pbias = b.ins().iadd(slot_addr, r0_bytes);
    let pass_vals = Pass {
        a: pa,
        b: pb,
        c: pc,
        bias: pbias,
        rows,
    };
    // Column-count dispatch, the full pass first (the common case); every variant has this
    // chain as its only predecessor.
    for cols_n in (1..=NR).rev() {
        let variant = b.create_block();
        if cols_n == 1 {
            b.ins().jump(variant, &[]);
        } else {
            let other = b.create_block();
            let is = b.ins().icmp_imm_s(IntCC::Equal, cols, cols_n as i64);
            b.ins().brif(is, variant, &[], other, &[]);
            b.switch_to_block(variant);
            emit_pass(&mut b, &sh, pass_vals, cols_n, next);
            b.switch_to_block(other);
            continue;
        }
        b.switch_to_block(variant);
        emit_pass(&mut b, &sh, pass_vals, cols_n, next);
    }

    b.switch_to_block(next);
    let (r0v, c0v) = (b.use_var(r0), b.use_var(c0));
    let r1 = b.ins().iadd_imm_s(r0v, MR as i64);
    let next_col = b.create_block();
    b.def_var(r0, r1);
    let more_rows = b.ins().icmp(IntCC::UnsignedLessThan, r1, m);
    b.ins().brif(more_rows, pass, &[], next_col, &[]);
    b.switch_to_block(next_col);
    let c1 = b.ins().iadd_imm_s(c0v, NR as i64);
    b.def_var(c0, c1);
    b.def_var(r0, zero);
    let more_cols = b.ins().icmp(IntCC::UnsignedLessThan, c1, n);
    b.ins().brif(more_cols, pass, &[], done, &[]);

    b.switch_to_block(done);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    Ok(b)
}

/// `min(x, imm)` of a pointer-width unsigned value.
fn umin_imm(b: &mut FunctionBuilder, ptr: Type, x: Value, imm: usize) -> Value {
    let c = b.ins().iconst(ptr, imm as i64);
    b.ins().umin(x, c)
}

/// A stack slot of `M0` floats holding `bias[0..m]` (when `bias` is not null) and `-0.0`
/// elsewhere. Leaves the builder in a new block.
fn bias_slot(b: &mut FunctionBuilder, ptr: Type, bias: Value, m: Value) -> StackSlot {
    let bytes = (GEMM_F32_M0 * 4) as u32;
    let slot = b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 4));
    let nz = b.ins().f32const(-0.0f32);
    let nzv = b.ins().splat(types::F32X4, nz);
    for off in (0..bytes).step_by(16) {
        b.ins().stack_store(ptr, nzv, slot, off as i32);
    }
    let (copy, after) = (b.create_block(), b.create_block());
    let i = b.declare_var(ptr);
    let zero = b.ins().iconst(ptr, 0);
    b.def_var(i, zero);
    b.ins().brif(bias, copy, &[], after, &[]);
    b.switch_to_block(copy);
    let iv = b.use_var(i);
    let off = b.ins().ishl_imm_s(iv, 2);
    let src = b.ins().iadd(bias, off);
    let x = b.ins().load(types::F32, input_flags(), src, 0);
    let base = b.ins().stack_addr(ptr, slot, 0);
    let dst = b.ins().iadd(base, off);
    b.ins().store(data_flags(), x, dst, 0);
    let i1 = b.ins().iadd_imm_s(iv, 1);
    b.def_var(i, i1);
    let more = b.ins().icmp(IntCC::UnsignedLessThan, i1, m);
    b.ins().brif(more, copy, &[], after, &[]);
    b.switch_to_block(after);
    slot
}

/// `w` (`1..=4`) consecutive floats at `p + off` as an f32x4 (lanes `w..` zero); only those
/// floats are read.
fn load_group(b: &mut FunctionBuilder, flags: MemFlagsData, p: Value, off: i32, w: usize) -> Value {
    if w == LANES {
        return b.ins().load(types::F32X4, flags, p, off);
    }
    let x = b.ins().load(types::F32, flags, p, off);
    let mut v = b.ins().scalar_to_vector(types::F32X4, x);
    for j in 1..w {
        let x = b.ins().load(types::F32, flags, p, off + 4 * j as i32);
        v = b.ins().insertlane(v, x, j as u8);
    }
    v
}

/// Stores lanes `0..w` of `v` at `p + off`.
fn store_group(b: &mut FunctionBuilder, v: Value, p: Value, off: i32, w: usize) {
    if w == LANES {
        b.ins().store(data_flags(), v, p, off);
        return;
    }
    for j in 0..w {
        let x = b.ins().extractlane(v, j as u8);
        b.ins().store(data_flags(), x, p, off + 4 * j as i32);
    }
}

/// One pass of `MR` rows and `cols` (`1..=NR`) columns; jumps to `next` when done. The
/// builder is in the pass's (empty) first block.
fn emit_pass(b: &mut FunctionBuilder, sh: &Shared, pass: Pass, cols: usize, next: Block) {
    let widths: Vec<usize> = [cols.min(LANES), cols.saturating_sub(LANES)]
        .into_iter()
        .filter(|&w| w > 0)
        .collect();
    let nacc = MR * widths.len();
    let init = start_sums(b, sh, &pass, &widths);

    // Loop blocks take (A pointer, B pointer, remaining count, accumulators...).
    let loop_block = |b: &mut FunctionBuilder| {
        let blk = b.create_block();
        for _ in 0..3 {
            b.append_block_param(blk, sh.ptr);
        }
        for _ in 0..nacc {
            b.append_block_param(blk, types::F32X4);
        }
        blk
    };
    let args = |ap: Value, bp: Value, cnt: Value, acc: &[Value]| -> Vec<BlockArg> {
        [ap, bp, cnt]
            .iter()
            .chain(acc)
            .map(|&v| BlockArg::Value(v))
            .collect()
    };
    let (main, rest_check, rest) = (loop_block(b), loop_block(b), loop_block(b));
    let epilogue = b.create_block();
    for _ in 0..nacc {
        b.append_block_param(epilogue, types::F32X4);
    }
    let acc_args =
        |acc: &[Value]| -> Vec<BlockArg> { acc.iter().map(|&v| BlockArg::Value(v)).collect() };

    let start = args(pass.a, pass.b, sh.k_main, &init);
    b.ins().brif(sh.k_main, main, &start, rest_check, &start);

    // Main loop: UNROLL steps per iteration.
    b.switch_to_block(main);
    let p = b.block_params(main).to_vec();
    let (ap, bp, cnt) = (p[0], p[1], p[2]);
    let mut acc = p[3..].to_vec();
    for u in 0..UNROLL {
        // Row u of B (the stride products are loop-invariant and hoisted).
        let row = if u == 0 {
            bp
        } else {
            let off = b.ins().imul_imm_s(sh.ldb4, u as i64);
            b.ins().iadd(bp, off)
        };
        acc = step(b, sh, &acc, &widths, ap, (u * GEMM_F32_M0 * 4) as i32, row);
    }
    let ap1 = b.ins().iadd_imm_s(ap, (UNROLL * GEMM_F32_M0 * 4) as i64);
    let bp1 = b.ins().iadd(bp, sh.ldb_unroll);
    let cnt1 = b.ins().iadd_imm_s(cnt, -1i64);
    let again = args(ap1, bp1, cnt1, &acc);
    b.ins().brif(cnt1, main, &again, rest_check, &again);

    // The k % UNROLL remaining steps.
    b.switch_to_block(rest_check);
    let p = b.block_params(rest_check).to_vec();
    let (ap, bp, acc) = (p[0], p[1], p[3..].to_vec());
    let to_rest = args(ap, bp, sh.k_rest, &acc);
    b.ins()
        .brif(sh.k_rest, rest, &to_rest, epilogue, &acc_args(&acc));
    b.switch_to_block(rest);
    let p = b.block_params(rest).to_vec();
    let (ap, bp, cnt) = (p[0], p[1], p[2]);
    let acc = step(b, sh, &p[3..], &widths, ap, 0, bp);
    let ap1 = b.ins().iadd_imm_s(ap, (GEMM_F32_M0 * 4) as i64);
    let bp1 = b.ins().iadd(bp, sh.ldb4);
    let cnt1 = b.ins().iadd_imm_s(cnt, -1i64);
    b.ins().brif(
        cnt1,
        rest,
        &args(ap1, bp1, cnt1, &acc),
        epilogue,
        &acc_args(&acc),
    );

    // Epilogue, row by row (rows >= pass.rows are neither read nor written).
    b.switch_to_block(epilogue);
    let acc = b.block_params(epilogue).to_vec();
    let flags = data_flags();
    let mut crow = pass.c;
    for (i, row_acc) in acc.chunks(widths.len()).enumerate() {
        if i > 0 {
            crow = next_row(b, sh, &pass, (i, crow), next);
        }
        let bias = b.ins().load(types::F32, flags, pass.bias, (4 * i) as i32);
        let bias = b.ins().splat(types::F32X4, bias);
        for (g, (&x, &w)) in row_acc.iter().zip(&widths).enumerate() {
            let x = b.ins().fadd(x, bias);
            let x = clamp(b, sh, x);
            store_group(b, x, crow, (16 * g) as i32, w);
        }
    }
    b.ins().jump(next, &[]);
}

/// The pass's starting sums (row-major, `widths.len()` per row): `C`'s rows `< pass.rows` with
/// `GEMM_ACCUMULATE` (the sums continue those of the call before), else zero.
fn start_sums(b: &mut FunctionBuilder, sh: &Shared, pass: &Pass, widths: &[usize]) -> Vec<Value> {
    let zero = b.ins().f32const(0.0f32);
    let zero = b.ins().splat(types::F32X4, zero);
    let sums: Vec<Variable> = (0..MR * widths.len())
        .map(|_| {
            let v = b.declare_var(types::F32X4);
            b.def_var(v, zero);
            v
        })
        .collect();
    let (load_c, start) = (b.create_block(), b.create_block());
    b.ins().brif(sh.accumulate, load_c, &[], start, &[]);
    b.switch_to_block(load_c);
    let mut crow = pass.c;
    for (i, row) in sums.chunks(widths.len()).enumerate() {
        if i > 0 {
            crow = next_row(b, sh, pass, (i, crow), start);
        }
        for (g, (&v, &w)) in row.iter().zip(widths).enumerate() {
            let cv = load_group(b, data_flags(), crow, (16 * g) as i32, w);
            b.def_var(v, cv);
        }
    }
    b.ins().jump(start, &[]);
    b.switch_to_block(start);
    sums.iter().map(|&v| b.use_var(v)).collect()
}

/// Row `i > 0` of the pass's `C` after row `i − 1` at `crow`: branches to `done` when the
/// pass has at most `i` rows, else continues in a new block and returns the row's address.
fn next_row(
    b: &mut FunctionBuilder,
    sh: &Shared,
    pass: &Pass,
    (i, crow): (usize, Value),
    done: Block,
) -> Value {
    let row = b.create_block();
    let valid = b
        .ins()
        .icmp_imm_s(IntCC::UnsignedGreaterThan, pass.rows, i as i64);
    b.ins().brif(valid, row, &[], done, &[]);
    b.switch_to_block(row);
    b.ins().iadd(crow, sh.ldc4)
}

/// One reduction step on the accumulators `acc` (row-major, `widths.len()` per row): returns
/// `acc[i][g] + A[i] · B-group g` for the pass's rows, with `A` at `a + a_off` and the B row
/// at `brow`.
fn step(
    b: &mut FunctionBuilder,
    sh: &Shared,
    acc: &[Value],
    widths: &[usize],
    a: Value,
    a_off: i32,
    brow: Value,
) -> Vec<Value> {
    let bv: Vec<Value> = widths
        .iter()
        .enumerate()
        .map(|(g, &w)| load_group(b, input_flags(), brow, (16 * g) as i32, w))
        .collect();
    let mut out = Vec::with_capacity(acc.len());
    for (i, row_acc) in acc.chunks(widths.len()).enumerate() {
        let x = b
            .ins()
            .load(types::F32, input_flags(), a, a_off + 4 * i as i32);
        let av = b.ins().splat(types::F32X4, x);
        for (&s, &bg) in row_acc.iter().zip(&bv) {
            out.push(if sh.fma {
                b.ins().fma(av, bg, s)
            } else {
                let p = b.ins().fmul(av, bg);
                b.ins().fadd(s, p)
            });
        }
    }
    out
}

/// `min(hi, max(lo, x))` with maxps/minps semantics (see the module documentation), written
/// as the compare-and-select patterns Cranelift lowers to `maxps`/`minps` on x86.
fn clamp(b: &mut FunctionBuilder, sh: &Shared, x: Value) -> Value {
    let little = MemFlagsData::new().with_endianness(Endianness::Little);
    // lo > x ? lo : x
    let gt = b.ins().fcmp(FloatCC::LessThan, x, sh.lo);
    let gt = b.ins().bitcast(types::F32X4, little, gt);
    let y = b.ins().bitselect(gt, sh.lo, x);
    // hi < y ? hi : y
    let lt = b.ins().fcmp(FloatCC::LessThan, sh.hi, y);
    let lt = b.ins().bitcast(types::F32X4, little, lt);
    b.ins().bitselect(lt, sh.hi, y)
}
