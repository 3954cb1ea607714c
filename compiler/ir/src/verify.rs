//! The IR verifier: checks every invariant that passes, the interpreter and backends rely on,
//! and reports all violations at once, each located at a value by its printed number
//! ([`Numbering`]). [`print_with_errors`] shows them under the lines they concern.
//!
//! Checked: the graph is acyclic; every node's operand ports are exactly 0..n, n is admitted by
//! its op's arity, and its declared type equals `op.infer` of its operands' declared types
//! (which also checks a const's value against its declared type); every `input` node is listed
//! in the signature exactly once and the signature lists only `input` nodes; input names and
//! output names are unique; outputs name existing nodes; every type's byte size fits `usize`.
//!
//! Errors about the signature carry the op name [`SIGNATURE`] and are shown under the header.

use crate::error::VerifyError;
use crate::graph::{Graph, NodeId};
use crate::ops::{Arity, Op};
use crate::print::{lines, Line, Numbering};
use std::collections::{HashMap, HashSet};

/// The `op` of errors about the graph signature (inputs and outputs) rather than one node.
pub const SIGNATURE: &str = "graph";

/// Checks `g`; returns every problem found, signature errors first, then by value number.
pub fn verify(g: &Graph) -> Result<(), Vec<VerifyError>> {
    let num = Numbering::new(g);
    let number = |id: NodeId| num.number(id).unwrap_or(usize::MAX);
    let mut errors = Vec::new();
    let sig_error = |value: usize, message: String| VerifyError {
        value,
        op: SIGNATURE.to_string(),
        origin: None,
        message,
    };

    let mut input_names: HashSet<&str> = HashSet::new();
    let mut listed: HashMap<NodeId, &str> = HashMap::new();
    for (name, id) in &g.inputs {
        let n = number(*id);
        if !input_names.insert(name) {
            errors.push(sig_error(n, format!("input name {name:?} is used twice")));
        }
        if !g.contains(*id) {
            errors.push(sig_error(
                n,
                format!("input {name:?} refers to %{n}, which no node defines"),
            ));
            continue;
        }
        if !matches!(g.node(*id).op, Op::Input(_)) {
            errors.push(sig_error(
                n,
                format!(
                    "input {name:?} is %{n}, a `{}` node, not an input",
                    g.node(*id).op.name()
                ),
            ));
        }
        if let Some(first) = listed.insert(*id, name) {
            errors.push(sig_error(
                n,
                format!("input %{n} is listed twice, as {first:?} and {name:?}"),
            ));
        }
    }
    let mut output_names: HashSet<&str> = HashSet::new();
    for (name, id) in &g.outputs {
        let n = number(*id);
        if !output_names.insert(name) {
            errors.push(sig_error(n, format!("output name {name:?} is used twice")));
        }
        if !g.contains(*id) {
            errors.push(sig_error(
                n,
                format!("output {name:?} refers to %{n}, which no node defines"),
            ));
        }
    }

    let mut node_errors = Vec::new();
    // Strongly connected components only when there is a cycle; kosaraju's search is
    // iterative, so that deep graphs cannot overflow the stack.
    let cycles = match g.topo_order() {
        Ok(_) => Vec::new(),
        Err(_) => petgraph::algo::kosaraju_scc(g.petgraph()),
    };
    for cycle in cycles {
        let on_cycle = cycle.len() > 1 || g.operands(cycle[0]).contains(&cycle[0]);
        if on_cycle {
            let mut ns: Vec<usize> = cycle.iter().map(|&id| number(id)).collect();
            ns.sort_unstable();
            // Name a few members; a cycle through thousands of nodes is still one line.
            const SHOWN: usize = 8;
            let mut members: Vec<String> = ns.iter().take(SHOWN).map(|n| format!("%{n}")).collect();
            if ns.len() > SHOWN {
                members.push(format!("and {} more", ns.len() - SHOWN));
            }
            let first = num.node(ns[0]).unwrap_or(cycle[0]);
            node_errors.push(node_error(
                g,
                &num,
                first,
                format!("lies on a cycle through {}", members.join(", ")),
            ));
        }
    }
    for id in g.node_ids() {
        check_node(g, &num, id, &listed, &mut node_errors);
    }
    node_errors.sort_by_key(|e| e.value);
    errors.extend(node_errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn node_error(g: &Graph, num: &Numbering, id: NodeId, message: String) -> VerifyError {
    let node = g.node(id);
    VerifyError {
        value: num.number(id).unwrap_or(usize::MAX),
        op: node.op.name().to_string(),
        origin: node.origin.clone(),
        message,
    }
}

/// Checks one node's operands and type, appending what is wrong.
fn check_node(
    g: &Graph,
    num: &Numbering,
    id: NodeId,
    listed: &HashMap<NodeId, &str>,
    errors: &mut Vec<VerifyError>,
) {
    let node = g.node(id);
    if matches!(node.op, Op::Input(_)) && !listed.contains_key(&id) {
        errors.push(node_error(
            g,
            num,
            id,
            "input node is not listed in the graph signature".into(),
        ));
    }
    if let Err(e) = node.ty.bytes() {
        // Sizes of every value must be computable, for memory planning and allocation.
        errors.push(node_error(
            g,
            num,
            id,
            format!("type {} is too large: {e}", node.ty),
        ));
    }
    let mut ports = g.operand_ports(id);
    ports.sort_unstable();
    if ports.iter().enumerate().any(|(i, (p, _))| *p != i) {
        let ps: Vec<usize> = ports.iter().map(|(p, _)| *p).collect();
        errors.push(node_error(
            g,
            num,
            id,
            format!("operand ports {ps:?} are not 0..{}", ps.len()),
        ));
        return;
    }
    let arity = node.op.arity();
    if !arity.admits(ports.len()) {
        let noun = if matches!(arity, Arity::Exact(1) | Arity::AtLeast(1)) {
            "operand"
        } else {
            "operands"
        };
        errors.push(node_error(
            g,
            num,
            id,
            format!(
                "`{}` takes {arity} {noun}, got {}",
                node.op.name(),
                ports.len()
            ),
        ));
        return;
    }
    let tys: Vec<_> = ports.iter().map(|(_, o)| g.ty(*o)).collect();
    match node.op.infer(&tys) {
        Ok(ty) if ty == node.ty => {}
        Ok(ty) => errors.push(node_error(
            g,
            num,
            id,
            format!("declared type {} but the operands give {ty}", node.ty),
        )),
        Err(e) => {
            let operands: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
            let msg = if operands.is_empty() {
                e.to_string()
            } else {
                format!("{e} (operand types {})", operands.join(", "))
            };
            errors.push(node_error(g, num, id, msg));
        }
    }
}

/// Prints `g` with each error as a `; error: ...` line under the line it concerns: the
/// instruction defining its value, or the header for signature errors and values the header
/// defines.
pub fn print_with_errors(g: &Graph, errors: &[VerifyError]) -> String {
    let num = Numbering::new(g);
    let mut s = String::new();
    for (line, text) in lines(g, &num) {
        s.push_str(&text);
        s.push('\n');
        let indent = &text[..text.len() - text.trim_start().len()];
        for e in errors {
            let here = match line {
                Line::Header => e.op == SIGNATURE || !num.in_body(e.value),
                Line::Value(n) => e.op != SIGNATURE && e.value == n,
                Line::End => false,
            };
            if here {
                s.push_str(indent);
                s.push_str("; error: ");
                s.push_str(&e.message);
                s.push('\n');
            }
        }
    }
    s
}
