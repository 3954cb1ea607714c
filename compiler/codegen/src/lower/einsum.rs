//! `einsum`: a strided nest over the output labels; each output element (4 adjacent ones per
//! vector when every operand walks the innermost output label with stride 0 or 1, as DyNet's
//! kernel mixing `bog,ogcij->bocij` does) sums the product of the operands over the summation
//! labels in nested loops. An operand's stride for a label is the sum of its strides over the
//! dims carrying that label (diagonals), and 0 on broadcast (extent-1) ellipsis dims.

use super::kernel::{as_i64, f32_type, BufId, Kernel, LResult};
use super::nest::{for_each, At, View};
use crate::error::{CodegenError, NodeRef};
use cranelift_codegen::ir::{InstBuilder, Value};
use cranelift_frontend::Variable;
use dync_ir::ops::{Einsum, EinsumSpec};
use dync_ir::tensor::strides;

pub(crate) fn lower(k: &mut Kernel, op: &Einsum, node: &NodeRef) -> LResult {
    let shapes: Vec<Vec<usize>> = (0..k.n_inputs()).map(|i| k.shape(BufId::In(i))).collect();
    let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
    let spec = EinsumSpec::new(&op.equation, &refs)
        .map_err(|e| CodegenError::lower(node, e.to_string()))?;
    let size = |l: &char| spec.sizes.get(l).copied().unwrap_or(1);
    // Stride of each operand along each label of `labels`.
    let strides_of = |labels: &[char]| -> LResult<Vec<Vec<i64>>> {
        shapes
            .iter()
            .zip(&spec.inputs)
            .map(|(shape, op_labels)| {
                let own = strides(shape);
                labels
                    .iter()
                    .map(|l| {
                        op_labels
                            .iter()
                            .zip(shape)
                            .zip(&own)
                            .filter(|((ol, &d), _)| *ol == l && d == size(l))
                            .try_fold(0i64, |acc, (_, &s)| Ok(acc + as_i64(s)?))
                    })
                    .collect()
            })
            .collect()
    };
    let summed: Vec<char> = spec
        .sizes
        .keys()
        .copied()
        .filter(|l| !spec.output.contains(l))
        .collect();
    let sum_dims: Vec<usize> = summed.iter().map(size).collect();
    let sum_strides = strides_of(&summed)?;
    let out_dims = spec.out_shape();
    let mut views: Vec<View> = strides_of(&spec.output)?
        .into_iter()
        .enumerate()
        .map(|(i, s)| View {
            buf: BufId::In(i),
            offset: 0,
            strides: s,
        })
        .collect();
    views.push(View::dense(BufId::Out, &out_dims)?);
    for_each(k, &out_dims, &views, true, |k, at, lanes| {
        let (out, ins) = at
            .split_last()
            .ok_or_else(|| CodegenError::lower(node, "einsum without result"))?;
        let zero = k.fconst(lanes, 0.0);
        let acc = k.var(f32_type(lanes), zero);
        let bases: Vec<Value> = ins.iter().map(|a| a.idx).collect();
        sum_level(k, &sum_dims, &sum_strides, 0, &bases, ins, lanes, acc)?;
        let y = k.b.use_var(acc);
        k.store(BufId::Out, out.idx, y);
        Ok(())
    })
}

/// Loops over summation label `d` and deeper; at the bottom adds the operands' product.
#[allow(clippy::too_many_arguments)]
fn sum_level(
    k: &mut Kernel,
    dims: &[usize],
    strides: &[Vec<i64>],
    d: usize,
    bases: &[Value],
    at: &[At],
    lanes: usize,
    acc: Variable,
) -> LResult {
    if d == dims.len() {
        let mut prod: Option<Value> = None;
        let n = bases.len();
        for (i, (&b, a)) in bases.iter().zip(at).enumerate() {
            let v = k.load_f32(BufId::In(i), b, lanes, a.contiguous);
            prod = Some(match prod {
                None => v,
                Some(p) if i + 1 == n => {
                    let s = k.b.use_var(acc);
                    let s = k.b.ins().fma(p, v, s);
                    k.b.def_var(acc, s);
                    return Ok(());
                }
                Some(p) => k.b.ins().fmul(p, v),
            });
        }
        if let Some(p) = prod {
            let s = k.b.use_var(acc);
            let s = k.b.ins().fadd(s, p);
            k.b.def_var(acc, s);
        }
        return Ok(());
    }
    k.loop_n(dims[d], |k, i| {
        let next: Vec<Value> = bases
            .iter()
            .zip(strides)
            .map(|(&b, s)| k.mul_add(b, i, s[d]))
            .collect();
        sum_level(k, dims, strides, d + 1, &next, at, lanes, acc)
    })
}
