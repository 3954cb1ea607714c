//! Memory planning: where every value of a graph lives while the generated code runs.
//!
//! - Graph inputs stay in the caller's input buffers; constants go to the read-only weights
//!   blob (each 64-byte aligned); every other value gets a 64-byte aligned offset in one
//!   activation arena (the `workspace` of [`crate::abi`]).
//! - Views have no kernel and cost no copy: they alias their operand's storage at a byte
//!   offset (their "root" is the first value up the chain of view operands that is not a view):
//!   - a `reshape`, at offset 0;
//!   - a `slice` that selects one contiguous run of its operand (ShuffleNet's channel split at
//!     batch 1), at the run's offset, when its root is computed by a kernel and is not (viewed
//!     as) a graph output, and the slice is not one either (an output's buffer holds exactly
//!     the output). Its root then lives in the arena.
//! - A value that is a graph output (itself or through a reshape view) is computed directly into
//!   that output's buffer. An output whose storage is an input, a constant or another output's
//!   buffer is filled by a copy after the kernels ran ([`MemoryPlan::copies`]); copy sources are
//!   therefore never in the arena.
//! - Arena offsets come from lifetimes: a buffer is live from the step of the kernel that
//!   writes it through the step of the last kernel that reads it (inclusive, so a kernel's result
//!   never overlaps its operands). Buffers are placed in order of definition, each in the
//!   smallest gap left by the buffers live at the same time (best fit), or above them.
//!
//! - A constant whose every use is the weight of a convolution on the GEMM path (or the bank of
//!   such a dyn_conv) is stored packed ([`crate::pack::Packing`], [`MemoryPlan::packed`]); its
//!   blob space is the packed size.
//! - A kernel that needs scratch memory (see `lower::scratch_elems`) gets an arena buffer live
//!   only at its own step.
//! - The one exception to "a result never overlaps its operands": a conv or dyn_conv on the GEMM
//!   path with a fused residual computed in the arena, whose last use this is (ResNet's
//!   bottleneck expansions: the block's input), writes its result into the residual's buffer
//!   ([`MemoryPlan::in_place`]; the buffer then lives on as the result's). Its GEMM tiles then
//!   accumulate onto the residual where it lies instead of copying it into the output first:
//!   every output element is read (as the residual) and written by the same task, and the
//!   residual is not one of its other operands.
//!
//! Only nodes that some output depends on are planned (dead nodes get no kernel). Requires a
//! verified graph; sizes are overflow-checked.

use crate::abi::ALIGN;
use crate::error::CodegenError;
use crate::pack::Packing;
use dync_ir::ops::Slice;
use dync_ir::tensor::strides;
use dync_ir::{Graph, NodeId, Op};
use std::collections::{HashMap, HashSet};

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Storage {
    /// Graph input `i` (position in `Graph::inputs`).
    Input(usize),
    /// The weights blob, at this byte offset.
    Weight(usize),
    /// Graph output `j`'s buffer (position in `Graph::outputs`).
    Output(usize),
    /// The arena, at this byte offset.
    Arena(usize),
}

/// One arena buffer: the value that defines it, its placement and its live steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaBuffer {
    pub root: NodeId,
    pub offset: usize,
    /// Size in bytes (the value's size; placement reserves it rounded up to 64).
    pub bytes: usize,
    /// First and last kernel step (index into `MemoryPlan::kernels`) at which it is live.
    pub first: usize,
    pub last: usize,
    /// The kernel's scratch memory rather than its result.
    pub scratch: bool,
}

#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// The nodes that get a kernel, in execution order (a topological order).
    pub kernels: Vec<NodeId>,
    /// Storage of every live value (a view: its root's storage at the view's offset).
    pub storage: HashMap<NodeId, Storage>,
    /// Every live view: its operand and its byte offset in the operand.
    pub views: HashMap<NodeId, (NodeId, usize)>,
    /// Live constants with their byte offsets in the weights blob, in blob order.
    pub weights: Vec<(NodeId, usize)>,
    /// The constants stored packed, with their layout.
    pub packed: HashMap<NodeId, Packing>,
    /// Outputs filled by copying (output index, value), after all kernels ran.
    pub copies: Vec<(usize, NodeId)>,
    /// Arena offsets of the kernels' scratch buffers.
    pub scratch: HashMap<NodeId, usize>,
    /// Arena buffers, in placement order.
    pub buffers: Vec<ArenaBuffer>,
    /// Results written into their fused residual's buffer, with that residual.
    pub in_place: HashMap<NodeId, NodeId>,
    pub arena_bytes: usize,
    pub weight_bytes: usize,
}

fn align_up(n: usize) -> Result<usize, CodegenError> {
    n.checked_next_multiple_of(ALIGN)
        .ok_or_else(|| CodegenError::Overflow(format!("a buffer of {n} bytes")))
}

impl MemoryPlan {
    /// The storage root of `id`: the first value up its chain of view operands that is not a
    /// view.
    pub fn root(&self, id: NodeId) -> NodeId {
        view_root(&self.views, id)
    }
}

fn view_root(views: &HashMap<NodeId, (NodeId, usize)>, mut id: NodeId) -> NodeId {
    while let Some(&(o, _)) = views.get(&id) {
        id = o;
    }
    id
}

/// `id` and the values up its chain of reshape operands, the first non-reshape one last.
fn reshape_chain(g: &Graph, mut id: NodeId) -> Vec<NodeId> {
    let mut chain = vec![id];
    while let Op::Reshape(_) = g.node(id).op {
        match g.operands(id).first() {
            Some(&o) => id = o,
            None => break,
        }
        chain.push(id);
    }
    chain
}

/// The element offset of the slice `s` of a tensor of shape `shape` when it selects one
/// contiguous run of it (every dim after some dim d whole and in order, dim d with unit step,
/// every dim before d of extent 1 in the result); None otherwise or when it is empty.
fn contiguous_run(s: &Slice, shape: &[usize], out: &[usize]) -> Option<usize> {
    if out.contains(&0) {
        return None;
    }
    let whole = |i: usize| out[i] == shape[i] && (s.steps[i] == 1 || shape[i] == 1);
    let inner = (0..shape.len()).rev().take_while(|&i| whole(i)).count();
    if let Some(d) = shape.len().checked_sub(inner + 1) {
        if s.steps[d] != 1 && out[d] != 1 || out[..d].iter().any(|&e| e != 1) {
            return None;
        }
    }
    let mut offset = 0usize;
    for (i, &st) in strides(shape).iter().enumerate() {
        offset = offset.checked_add(usize::try_from(s.starts[i]).ok()?.checked_mul(st)?)?;
    }
    Some(offset)
}

/// The live views in `order` (see the module doc): each with its operand and byte offset.
fn find_views(
    g: &Graph,
    order: &[NodeId],
) -> Result<HashMap<NodeId, (NodeId, usize)>, CodegenError> {
    // The outputs and every value they view through reshapes.
    let output_chain: HashSet<NodeId> = g
        .outputs
        .iter()
        .flat_map(|(_, o)| reshape_chain(g, *o))
        .collect();
    let mut views = HashMap::new();
    for &id in order {
        let x = match g.operands(id).first() {
            Some(&x) => x,
            None => continue,
        };
        let offset = match &g.node(id).op {
            Op::Reshape(_) => 0,
            Op::Slice(s) if !output_chain.contains(&id) => {
                let Some(elems) = contiguous_run(s, &g.ty(x).shape, &g.ty(id).shape) else {
                    continue;
                };
                let r = view_root(&views, x);
                if output_chain.contains(&r) || matches!(g.node(r).op, Op::Input(_) | Op::Const(_))
                {
                    continue;
                }
                elems
                    .checked_mul(g.ty(id).dtype.size())
                    .ok_or_else(|| CodegenError::Overflow(format!("the slice {}", id.index())))?
            }
            _ => continue,
        };
        views.insert(id, (x, offset));
    }
    Ok(views)
}

/// Nodes that some graph output depends on (including the outputs).
fn live_nodes(g: &Graph) -> HashSet<NodeId> {
    let mut live = HashSet::new();
    let mut stack: Vec<NodeId> = g.outputs.iter().map(|(_, o)| *o).collect();
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(g.operands(n));
        }
    }
    live
}

/// Plans the storage of the verified graph `g`.
pub fn plan(g: &Graph) -> Result<MemoryPlan, CodegenError> {
    let order = g
        .topo_order()
        .map_err(|n| CodegenError::Overflow(format!("the cycle through node {}", n.index())))?;
    let live = live_nodes(g);
    let order: Vec<NodeId> = order.into_iter().filter(|n| live.contains(n)).collect();

    let packed = packings(g, &order);
    let views = find_views(g, &order)?;
    let root = |id| view_root(&views, id);
    let mut storage: HashMap<NodeId, Storage> = HashMap::new();
    let mut weights = Vec::new();
    let mut weight_bytes = 0usize;
    let mut kernels = Vec::new();
    for &id in &order {
        match &g.node(id).op {
            Op::Input(_) => {
                if let Some(i) = g.inputs.iter().position(|(_, n)| *n == id) {
                    storage.insert(id, Storage::Input(i));
                }
            }
            Op::Const(_) => {
                let off = weight_bytes;
                storage.insert(id, Storage::Weight(off));
                weights.push((id, off));
                let bytes = match packed.get(&id) {
                    Some(p) => p.elems().and_then(|n| n.checked_mul(4)).ok_or_else(|| {
                        CodegenError::Overflow(format!("the packed weight {}", id.index()))
                    })?,
                    None => g
                        .ty(id)
                        .bytes()
                        .map_err(|e| CodegenError::Overflow(e.to_string()))?,
                };
                weight_bytes = off
                    .checked_add(align_up(bytes)?)
                    .ok_or_else(|| CodegenError::Overflow("the weights blob".into()))?;
            }
            _ if views.contains_key(&id) => {}
            _ => kernels.push(id),
        }
    }

    // Computed roots that are (or are viewed as) a graph output live in that output's buffer.
    for (j, (_, out)) in g.outputs.iter().enumerate() {
        let r = root(*out);
        if !storage.contains_key(&r) && !matches!(g.node(r).op, Op::Input(_)) {
            storage.insert(r, Storage::Output(j));
        }
    }
    let copies: Vec<(usize, NodeId)> = g
        .outputs
        .iter()
        .enumerate()
        .filter(|(j, (_, out))| storage.get(&root(*out)) != Some(&Storage::Output(*j)))
        .map(|(j, (_, out))| (j, *out))
        .collect();

    // Live intervals of the arena roots.
    let mut last: HashMap<NodeId, usize> = HashMap::new();
    for (s, &k) in kernels.iter().enumerate() {
        last.entry(k).or_insert(s);
        for o in g.operands(k) {
            let e = last.entry(root(o)).or_insert(s);
            *e = (*e).max(s);
        }
    }
    let mut buffers: Vec<ArenaBuffer> = Vec::new();
    let mut scratch = HashMap::new();
    let mut in_place = HashMap::new();
    // The buffer (index into `buffers`) that holds each arena value: a result written in place
    // is held by its residual's buffer, so a chain of residual blocks reuses one buffer.
    let mut holder: HashMap<NodeId, usize> = HashMap::new();
    let mut arena_bytes = 0usize;
    for (s, &k) in kernels.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(slot) = storage.entry(k) {
            let end = last.get(&k).copied().unwrap_or(s);
            let reused = residual_in_place(g, k, &packed, &root)
                .filter(|r| last.get(r) == Some(&s))
                .and_then(|r| Some((r, *holder.get(&r)?)))
                .filter(|&(_, i)| g.ty(k).bytes().ok() == Some(buffers[i].bytes));
            let offset = match reused {
                Some((r, i)) => {
                    let b = &mut buffers[i];
                    b.last = b.last.max(end);
                    in_place.insert(k, r);
                    holder.insert(k, i);
                    b.offset
                }
                None => {
                    let bytes = g
                        .ty(k)
                        .bytes()
                        .map_err(|e| CodegenError::Overflow(e.to_string()))?;
                    let offset = place(&mut buffers, &mut arena_bytes, k, bytes, (s, end), false)?;
                    holder.insert(k, buffers.len() - 1);
                    offset
                }
            };
            slot.insert(Storage::Arena(offset));
        }
        let ids = g.operands(k);
        let operands: Vec<&dync_ir::TensorType> = ids.iter().map(|&o| g.ty(o)).collect();
        let op = &g.node(k).op;
        let p = crate::lower::packed_operand(op)
            .and_then(|i| ids.get(i))
            .and_then(|o| packed.get(o));
        let elems = crate::lower::scratch_elems(op, &operands, &g.node(k).ty, p);
        if elems > 0 {
            let bytes = elems
                .checked_mul(4)
                .ok_or_else(|| CodegenError::Overflow("a scratch buffer".into()))?;
            scratch.insert(
                k,
                place(&mut buffers, &mut arena_bytes, k, bytes, (s, s), true)?,
            );
        }
    }
    // Views share their operand's storage, at their offset (only arena roots have slices).
    for &id in &order {
        if let Some(&(x, off)) = views.get(&id) {
            let st = match storage.get(&x) {
                Some(&Storage::Arena(base)) => {
                    Storage::Arena(base.checked_add(off).ok_or_else(|| {
                        CodegenError::Overflow(format!("the view {}", id.index()))
                    })?)
                }
                Some(&st) if off == 0 => st,
                _ => continue,
            };
            storage.insert(id, st);
        }
    }
    Ok(MemoryPlan {
        kernels,
        storage,
        views,
        weights,
        packed,
        copies,
        scratch,
        buffers,
        in_place,
        arena_bytes,
        weight_bytes,
    })
}

/// The residual operand of `k` when `k` is a conv or dyn_conv on the GEMM path (its weight or
/// bank `packed`) whose fused residual is a value of its own (not a view) that none of its
/// other operands shares: a candidate for [`MemoryPlan::in_place`].
fn residual_in_place(
    g: &Graph,
    k: NodeId,
    packed: &HashMap<NodeId, Packing>,
    root: &dyn Fn(NodeId) -> NodeId,
) -> Option<NodeId> {
    let ids = g.operands(k);
    let op = &g.node(k).op;
    let residual = match op {
        Op::Conv(c) => c.residual_index(ids.len()),
        Op::DynConv(d) => d.residual_index(),
        _ => None,
    }?;
    let weight = crate::lower::packed_operand(op).and_then(|i| ids.get(i))?;
    let r = *ids.get(residual)?;
    let alone = ids
        .iter()
        .enumerate()
        .all(|(i, &o)| i == residual || root(o) != r);
    (packed.contains_key(weight) && root(r) == r && alone).then_some(r)
}

/// The constants to store packed: those whose every use (among `order`, the live nodes) is
/// the weight of a conv (operand 1) or the bank of a dyn_conv (operand 2) taking the GEMM
/// path, all with the same packing, and that are not graph outputs.
fn packings(g: &Graph, order: &[NodeId]) -> HashMap<NodeId, Packing> {
    let mut uses: HashMap<NodeId, Option<Packing>> = HashMap::new();
    let outputs: HashSet<NodeId> = g
        .outputs
        .iter()
        .filter_map(|(_, o)| reshape_chain(g, *o).pop())
        .collect();
    for &id in order {
        let ops = g.operands(id);
        let group = match &g.node(id).op {
            Op::Conv(c) => c.group,
            Op::DynConv(c) => c.group,
            _ => 0,
        };
        let wanted = crate::lower::packed_operand(&g.node(id).op);
        for (j, &o) in ops.iter().enumerate() {
            if !matches!(g.node(o).op, Op::Const(_)) {
                continue;
            }
            let p = match wanted {
                Some(w) if w == j => {
                    let (x, y) = (g.ty(ops[0]), g.ty(id));
                    let p = Packing::for_conv(x, g.ty(o), y, group);
                    match &g.node(id).op {
                        Op::Conv(c) => p.map(|p| crate::lower::blocking(c, x, y, g.ty(o), p)),
                        Op::DynConv(c) => {
                            p.map(|p| crate::lower::dyn_blocking(c, x, y, g.ty(o), p))
                        }
                        _ => p,
                    }
                }
                _ => None,
            };
            let entry = uses.entry(o).or_insert(p);
            if *entry != p {
                *entry = None;
            }
        }
    }
    uses.into_iter()
        .filter(|(id, _)| !outputs.contains(id))
        .filter_map(|(id, p)| Some((id, p?)))
        .collect()
}

/// Places a buffer of `bytes` live over `steps` (inclusive) among `buffers`, in the smallest
/// gap left by the buffers live at the same time; returns its offset.
fn place(
    buffers: &mut Vec<ArenaBuffer>,
    arena_bytes: &mut usize,
    root: NodeId,
    bytes: usize,
    (first, last): (usize, usize),
    scratch: bool,
) -> Result<usize, CodegenError> {
    let reserved = align_up(bytes)?;
    let offset = if reserved == 0 {
        0
    } else {
        let mut busy: Vec<(usize, usize)> = Vec::new();
        for b in buffers
            .iter()
            .filter(|b| b.first <= last && first <= b.last && b.bytes > 0)
        {
            busy.push((b.offset, b.offset + align_up(b.bytes)?));
        }
        busy.sort_unstable();
        best_fit(&busy, reserved)?
    };
    let top = offset
        .checked_add(reserved)
        .ok_or_else(|| CodegenError::Overflow("the arena".into()))?;
    *arena_bytes = (*arena_bytes).max(top);
    buffers.push(ArenaBuffer {
        root,
        offset,
        bytes,
        first,
        last,
        scratch,
    });
    Ok(offset)
}

/// The offset of the smallest gap among `busy` (sorted, half-open byte ranges) that holds
/// `size` bytes, or the offset just above all of them.
fn best_fit(busy: &[(usize, usize)], size: usize) -> Result<usize, CodegenError> {
    let mut best: Option<(usize, usize)> = None; // (gap size, offset)
    let mut cursor = 0usize;
    for &(lo, hi) in busy {
        if lo > cursor {
            let gap = lo - cursor;
            if gap >= size && best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, cursor));
            }
        }
        cursor = cursor.max(hi);
    }
    match best {
        Some((_, off)) => Ok(off),
        None => {
            cursor
                .checked_add(size)
                .ok_or_else(|| CodegenError::Overflow("the arena".into()))?;
            Ok(cursor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_prefers_the_smallest_gap() {
        let busy = [(0, 64), (192, 256), (320, 384)];
        assert_eq!(best_fit(&busy, 64).unwrap(), 256);
        assert_eq!(best_fit(&busy, 128).unwrap(), 64);
        assert_eq!(best_fit(&busy, 192).unwrap(), 384);
        assert_eq!(best_fit(&[], 64).unwrap(), 0);
    }

    #[test]
    fn contiguous_runs_of_slices() {
        let slice = |starts: &[i64], ends: &[i64], steps: &[i64]| Slice {
            starts: starts.to_vec(),
            ends: ends.to_vec(),
            steps: steps.to_vec(),
        };
        let shape = [1, 116, 28, 28];
        // ShuffleNet's split at batch 1: channels 87.. are one run.
        let s = slice(&[0, 87, 0, 0], &[1, 116, 28, 28], &[1; 4]);
        assert_eq!(contiguous_run(&s, &shape, &[1, 29, 28, 28]), Some(87 * 784));
        // At batch 2 the run breaks between the samples.
        let s = slice(&[0, 87, 0, 0], &[2, 116, 28, 28], &[1; 4]);
        assert_eq!(
            contiguous_run(&s, &[2, 116, 28, 28], &[2, 29, 28, 28]),
            None
        );
        // One row of one channel; a part of a row.
        let s = slice(&[0, 3, 5, 0], &[1, 4, 6, 28], &[1; 4]);
        assert_eq!(
            contiguous_run(&s, &shape, &[1, 1, 1, 28]),
            Some(3 * 784 + 5 * 28)
        );
        let s = slice(&[0, 3, 5, 2], &[1, 4, 6, 9], &[1; 4]);
        assert_eq!(
            contiguous_run(&s, &shape, &[1, 1, 1, 7]),
            Some(3 * 784 + 5 * 28 + 2)
        );
        // Rows cut inside, a step, a reversal: not one run.
        let s = slice(&[0, 0, 0, 1], &[1, 116, 28, 28], &[1; 4]);
        assert_eq!(contiguous_run(&s, &shape, &[1, 116, 28, 27]), None);
        let s = slice(&[0, 0, 0, 0], &[1, 116, 28, 28], &[1, 2, 1, 1]);
        assert_eq!(contiguous_run(&s, &shape, &[1, 58, 28, 28]), None);
        let s = slice(&[0, 115, 0, 0], &[1, -1, 28, 28], &[1, -1, 1, 1]);
        assert_eq!(contiguous_run(&s, &shape, &[1, 116, 28, 28]), None);
        // The whole tensor; an empty slice.
        let s = slice(&[0; 4], &[1, 116, 28, 28], &[1; 4]);
        assert_eq!(contiguous_run(&s, &shape, &shape), Some(0));
        let s = slice(&[0, 3, 0, 0], &[1, 3, 28, 28], &[1; 4]);
        assert_eq!(contiguous_run(&s, &shape, &[1, 0, 28, 28]), None);
    }
}
