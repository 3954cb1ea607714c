//! Convolutions that are fully connected layers: a 1×1 kernel over a 1×1 input without
//! padding (so a 1×1 output), as squeeze-excitation blocks write their FC layers (torchvision's
//! MobileNetV3) and as classifiers on pooled features sometimes are. Per image and group,
//! `y[o] = Σ_c W[o, c]·x[c]` runs as [`super::matmul::product`]'s contiguous dot products:
//! each output streams its own weight row (the direct path would run one dependent scalar
//! chain per output channel). Tasks are [`Blocks`] of output channels over the groups. The
//! conv's epilogue follows in the op's order: + bias, + the residual, the clamp, the
//! activation.
//!
//! Requires: unpacked weights — the memory plan packs only convs of at least
//! [`crate::pack::MIN_POSITIONS`] output positions. [`applies`] picks the convs this handles;
//! the others take [`super::conv`].

use super::kernel::{as_i64, BufId, Kernel, LResult};
use super::matmul::{product, Block, Blocks, Epilogue, Mat};
use cranelift_codegen::ir::{InstBuilder, Value};
use dync_ir::ops::Conv;
use dync_ir::TensorType;

/// Whether the conv of `x` with weight `w` is a fully connected layer (see the module).
pub(crate) fn applies(op: &Conv, x: &TensorType, w: &TensorType) -> bool {
    x.shape.len() == 4
        && w.shape.len() == 4
        && x.shape[2..] == [1, 1]
        && w.shape[2..] == [1, 1]
        && op.pads == [0; 4]
}

/// The product's shape: groups, images (rows), input channels per group (reduction) and
/// output channels per group (columns).
fn geometry(op: &Conv, x: &TensorType, w: &TensorType) -> (usize, usize, usize, usize) {
    let og = w.shape[0].checked_div(op.group).unwrap_or(0);
    (op.group, x.shape[0], w.shape[1], og)
}

/// The kernel's tasks.
pub(crate) fn tasks(op: &Conv, x: &TensorType, w: &TensorType) -> usize {
    let (groups, n, cg, og) = geometry(op, x, w);
    Blocks::new(groups, n, cg, og).tasks
}

pub(crate) fn lower(k: &mut Kernel, op: &Conv) -> LResult {
    let x = k.buf(BufId::In(0)).ty.clone();
    let w = k.buf(BufId::In(1)).ty.clone();
    let (groups, n, cg, og) = geometry(op, &x, &w);
    if groups * n * og == 0 {
        return Ok(());
    }
    let (c, o) = (as_i64(x.shape[1])?, as_i64(w.shape[0])?);
    let bias = op.bias_index(k.n_inputs()).map(BufId::In);
    let residual = op.residual_index(k.n_inputs()).map(BufId::In);
    let (clamp, act) = (op.clamp, op.act);
    let blocks = Blocks::new(groups, n, cg, og);
    let per_group = as_i64(blocks.rt * blocks.ct)?;
    let group = |k: &mut Kernel, grp: Value, r: Option<Value>| -> LResult {
        // A [n × cg]: image i's channels of the group; B [cg × og]: B[c][o] = W[o][c] of the
        // group's rows; C [n × og] from the group's first output channel, row stride O.
        let a_base = k.b.ins().imul_imm_s(grp, as_i64(cg)?);
        let b_base = k.b.ins().imul_imm_s(grp, as_i64(og * cg)?);
        let c_base = k.b.ins().imul_imm_s(grp, as_i64(og)?);
        let a = Mat {
            buf: BufId::In(0),
            base: a_base,
            rs: c,
            cs: 1,
        };
        let b = Mat {
            buf: BufId::In(1),
            base: b_base,
            rs: 1,
            cs: as_i64(cg)?,
        };
        let epi: &mut Epilogue = &mut |k, acc, i, j, lanes| {
            // Output element (i, group's channel j): channel c_base + j of image i.
            let oc = k.b.ins().iadd(c_base, j);
            let mut y = acc;
            if let Some(bb) = bias {
                let bv = k.load_f32(bb, oc, lanes, true);
                y = k.b.ins().fadd(y, bv);
            }
            if let Some(rb) = residual {
                let at = k.mul_add(oc, i, o);
                let rv = k.load_f32(rb, at, lanes, true);
                y = k.b.ins().fadd(y, rv);
            }
            if let Some(cl) = clamp {
                y = super::math::clamp(k, lanes, cl.lo, cl.hi, y);
            }
            if let Some(a) = act {
                y = super::conv::act(k, lanes, a, y)?;
            }
            Ok(y)
        };
        match r {
            None => {
                let c = Block::whole(k, n, og, c_base);
                let c = Block {
                    ldc: w.shape[0],
                    ..c
                };
                product(k, a, b, cg, c, epi)
            }
            Some(r) => blocks.block(k, r, (n, og), c_base, &mut |k, blk| {
                let blk = Block {
                    ldc: w.shape[0],
                    ..blk
                };
                product(k, a, b, cg, blk, epi)
            }),
        }
    };
    if blocks.tasks <= 1 {
        return k.loop_n(groups, |k, grp| group(k, grp, None));
    }
    k.for_tasks(|k, t| {
        let grp = k.b.ins().udiv_imm_u(t, per_group);
        let r = k.b.ins().urem_imm_u(t, per_group);
        group(k, grp, Some(r))
    })
}
