//! The parser: what it accepts beyond the printer's output (comments, free numbering, forward
//! references), the position and message of its errors, and that no input makes it panic.

mod common;

use common::random_graph;
use dync_ir::ops::Op;
use dync_ir::{parse, print, verify, ParseError};
use proptest::prelude::*;

fn err(text: &str) -> ParseError {
    match parse(text) {
        Ok(g) => panic!("parsed, expected an error:\n{}", print(&g)),
        Err(e) => e,
    }
}

/// Asserts an error at `line`:`col` whose message contains `needle`.
fn assert_err(text: &str, line: usize, col: usize, needle: &str) {
    let e = err(text);
    assert_eq!((e.line, e.col), (line, col), "{e}");
    assert!(
        e.message.contains(needle),
        "`{}` lacks `{needle}`",
        e.message
    );
}

const HEAD: &str = "graph(%0: f32[2] \"x\") -> (\"y\" = %1) {\n";

#[test]
fn comments_blank_lines_and_free_numbering_are_accepted() {
    let text = "// leading comment\n\ngraph(%7: f32[2] \"x\") // trailing\n  -> (\"y\" = %3) {\n\n  %3 = unary %7 {kind=relu} : f32[2] // done\n}\n// end\n";
    let g = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        print(&g),
        "graph(%0: f32[2] \"x\") -> (\"y\" = %1) {\n  %1 = unary %0 {kind=relu} : f32[2]\n}\n"
    );
}

#[test]
fn strings_undo_rust_escapes() {
    let text = "graph() -> (\"y\" = %0) {\n  %0 = const f32[] [1.0] loc(\"q\\\" b\\\\ n\\n t\\t r\\r z\\0 a\\' u\\u{1F600}\\u{e9} // x\")\n}\n";
    let g = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let id = g.outputs[0].1;
    assert_eq!(
        g.node(id).origin.as_deref(),
        Some("q\" b\\ n\n t\t r\r z\0 a' u\u{1F600}\u{e9} // x")
    );
}

#[test]
fn floats_take_every_printed_form() {
    let text = "graph() -> (\"y\" = %0) {\n  %0 = const f32[8] [1, -2.5, 1e-7, 3.4028235e38, -0.0, inf, -inf, NaN]\n}\n";
    let g = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let v = g
        .const_value(g.outputs[0].1)
        .and_then(|t| t.as_f32())
        .map(<[f32]>::to_vec);
    let v = v.unwrap_or_default();
    assert_eq!(&v[..5], &[1.0, -2.5, 1e-7, f32::MAX, 0.0]);
    assert!(v[4].is_sign_negative());
    assert_eq!((v[5], v[6]), (f32::INFINITY, f32::NEG_INFINITY));
    assert!(v[7].is_nan());
}

#[test]
fn forward_references_are_resolved() {
    let text = "graph(%0: f32[2] \"x\") -> (\"y\" = %2) {\n  %2 = binary %1, %0 {kind=add} : f32[2]\n  %1 = unary %0 {kind=neg} : f32[2]\n}\n";
    let g = parse(text).unwrap_or_else(|e| panic!("{e}"));
    if let Err(errors) = verify(&g) {
        panic!("{errors:?}");
    }
    let y = g.outputs[0].1;
    let ops = g.operands(y);
    assert!(matches!(g.node(ops[0]).op, Op::Unary(_)));
    assert_eq!(ops[1], g.inputs[0].1);
}

#[test]
fn lexical_errors_point_at_the_character() {
    assert_err(
        "graph() -> () {\n  %0 = const f32[] [1.0] loc(\"abc\n}\n",
        2,
        30,
        "unterminated string",
    );
    assert_err(
        "graph() -> () {\n  %0 = const f32[] [1.0] loc(\"a\\qb\")\n}\n",
        2,
        32,
        "unknown escape `\\q`",
    );
    assert_err(
        "graph() -> () {\n  %0 = const f32[] [1.0] loc(\"\\u{110000}\")\n}\n",
        2,
        31,
        "not a unicode scalar value",
    );
    assert_err(
        "graph() -> () {\n  %0 = const f32[] [1.0] loc(\"\\u{12\")\n}\n",
        2,
        31,
        "unterminated",
    );
    assert_err(
        "graph() -> () {\n  % = const f32[] [1.0]\n}\n",
        2,
        3,
        "value number",
    );
    assert_err("graph() -> () {\n  ☃\n}\n", 2, 3, "unexpected character");
}

#[test]
fn syntax_errors_name_what_was_expected() {
    assert_err("", 1, 1, "expected `graph`");
    assert_err("graph(%0 f32[2] \"x\") -> () {}", 1, 10, "expected `:`");
    assert_err("graph() () {}", 1, 9, "`->`");
    assert_err("graph() -> (%0) {}", 1, 13, "output name");
    assert_err(
        "graph() -> () {\n  %0 = const f32[2] [1.0, 2.0\n}\n",
        3,
        1,
        "`,` or `]`",
    );
    assert_err(
        "graph() -> () {\n  %x = const f32[] [1.0]\n}\n",
        2,
        3,
        "invalid value `%x`",
    );
    assert_err(
        "graph() -> () {\n}\ngraph",
        3,
        1,
        "end of input after the graph",
    );
    assert_err(
        &format!("{HEAD}  %1 = unary %0 {{kind=relu}} f32[2]\n}}\n"),
        2,
        29,
        "`:` before the result type",
    );
    assert_err(
        &format!("{HEAD}  %1 = unary %0 {{kind=relu}} : f32[2]\n"),
        3,
        1,
        "instruction",
    );
}

#[test]
fn semantic_errors_point_at_the_token() {
    assert_err(
        &format!("{HEAD}  %1 = frobnicate %0 : f32[2]\n}}\n"),
        2,
        8,
        "unknown op `frobnicate`",
    );
    assert_err(
        &format!("{HEAD}  %1 = unary %0 {{kind=relu, kind=neg}} : f32[2]\n}}\n"),
        2,
        29,
        "given twice",
    );
    assert_err(
        &format!("{HEAD}  %1 = unary %0 {{kind=rleu}} : f32[2]\n}}\n"),
        2,
        17,
        "unknown unary kind `rleu`",
    );
    assert_err(
        &format!("{HEAD}  %1 = unary %0 {{kind=relu, alpha=1.0}} : f32[2]\n}}\n"),
        2,
        17,
        "unknown attribute `alpha`",
    );
    assert_err(
        &format!("{HEAD}  %1 = softmax %0 : f32[2]\n}}\n"),
        2,
        19,
        "missing attribute `axis`",
    );
    assert_err(
        &format!("{HEAD}  %1 = softmax %0 {{axis=-1}} : f32[2]\n}}\n"),
        2,
        19,
        "negative",
    );
    assert_err(
        &format!("{HEAD}  %1 = unary %5 {{kind=relu}} : f32[2]\n}}\n"),
        2,
        14,
        "undefined value %5",
    );
    assert_err(
        &format!("{HEAD}  %0 = unary %0 {{kind=relu}} : f32[2]\n}}\n"),
        2,
        3,
        "defined twice",
    );
    assert_err(
        &format!("{HEAD}  %1 = unary %0 {{kind=relu}} : f64[2]\n}}\n"),
        2,
        31,
        "unknown element type `f64`",
    );
    assert_err(
        &format!("{HEAD}  %1 = unary %0 {{kind=relu}} : f32[-2]\n}}\n"),
        2,
        35,
        "invalid dimension `-2`",
    );
    assert_err(
        &format!("{HEAD}  %1 = input %0 : f32[2]\n}}\n"),
        2,
        14,
        "`:` before the result type",
    );
    assert_err(
        "graph(%0: f32[2] \"a\", %0: f32[3] \"b\") -> () {\n}\n",
        1,
        27,
        "another type",
    );
}

#[test]
fn const_literals_must_fit_their_dtype() {
    assert_err(
        "graph() -> () {\n  %0 = const i32[1] [2147483648]\n}\n",
        2,
        22,
        "invalid i32 literal",
    );
    assert_err(
        "graph() -> () {\n  %0 = const i64[1] [1.5]\n}\n",
        2,
        22,
        "invalid i64 literal",
    );
    assert_err(
        "graph() -> () {\n  %0 = const f32[1] [true]\n}\n",
        2,
        22,
        "invalid f32 literal",
    );
    assert_err(
        "graph() -> () {\n  %0 = const f32[1] [nan]\n}\n",
        2,
        22,
        "invalid f32 literal",
    );
    assert_err(
        "graph() -> () {\n  %0 = const bool[1] [1]\n}\n",
        2,
        23,
        "invalid bool literal",
    );
    assert_err(
        "graph() -> () {\n  %0 = const f32[40] blob(12ab)\n}\n",
        2,
        27,
        "16 hex digits",
    );
    assert_err(
        "graph() -> () {\n  %0 = const f32[40] blob(00000000000000zz)\n}\n",
        2,
        27,
        "16 hex digits",
    );
    assert_err(
        "graph() -> () {\n  %0 = const f32[1] 1.0\n}\n",
        2,
        21,
        "const data",
    );
}

#[test]
fn attribute_values_are_typed_by_their_form() {
    // Integers where floats are wanted are accepted; floats where integers are wanted are not.
    let ok = format!("{HEAD}  %1 = unary %0 {{kind=leaky_relu, alpha=1}} : f32[2]\n}}\n");
    assert!(parse(&ok).is_ok());
    assert_err(
        &format!("{HEAD}  %1 = softmax %0 {{axis=0.0}} : f32[2]\n}}\n"),
        2,
        19,
        "expected an integer",
    );
    assert_err(
        &format!("{HEAD}  %1 = reshape %0 {{shape=[2.0]}} : f32[2]\n}}\n"),
        2,
        19,
        "expected integers",
    );
    assert_err(
        &format!("{HEAD}  %1 = reshape %0 {{shape=[a]}} : f32[2]\n}}\n"),
        2,
        27,
        "expected a number",
    );
    assert_err(
        &format!("{HEAD}  %1 = softmax %0 {{axis=99999999999999999999}} : f32[2]\n}}\n"),
        2,
        25,
        "out of range",
    );
    assert_err(
        &format!("{HEAD}  %1 = einsum %0 {{equation=i->i}} : f32[2]\n}}\n"),
        2,
        29,
        "`,` or `}`",
    );
}

/// Fragments of valid IR text, for building plausible garbage.
const PIECES: &[&str] = &[
    "graph",
    "(",
    ")",
    "->",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "=",
    "%0",
    "%1",
    "%2",
    "%99999999999999999999999",
    "f32",
    "i64",
    "bool",
    "[2,3]",
    "const",
    "blob(0000000000000000)",
    "loc(\"a\")",
    "\"",
    "\\u{",
    "unary",
    "conv",
    "{kind=relu}",
    "1.5",
    "-1",
    "inf",
    "NaN",
    "1e99",
    "\n",
    " ",
    "//",
    "input",
    "f32[18446744073709551615,2]",
    "%",
];

fn check_no_panic(text: &str) {
    // Whatever parses must print, verify, and print back to the same text.
    if let Ok(g) = parse(text) {
        let printed = print(&g);
        let _ = verify(&g);
        let again =
            parse(&printed).unwrap_or_else(|e| panic!("reprint does not parse: {e}\n{printed}"));
        assert_eq!(print(&again), printed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}") {
        check_no_panic(&s);
    }

    #[test]
    fn random_syntax_never_panics(pieces in prop::collection::vec(prop::sample::select(PIECES), 0..60)) {
        check_no_panic(&pieces.concat());
    }

    /// Valid texts with random edits: deleting, duplicating or inserting characters and pieces.
    #[test]
    fn mutated_valid_text_never_panics(
        bits in prop::collection::vec(any::<u32>(), 0..100),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..4u8, prop::sample::select(PIECES)), 1..6),
    ) {
        let mut chars: Vec<char> = print(&random_graph(&bits)).chars().collect();
        for (at, kind, piece) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => {
                    let end = (i + 1 + at.index(8)).min(chars.len());
                    chars.drain(i.min(end)..end);
                }
                1 => {
                    let end = (i + at.index(12)).min(chars.len());
                    let copy: Vec<char> = chars[i.min(end)..end].to_vec();
                    chars.splice(i..i, copy);
                }
                _ => {
                    chars.splice(i..i, piece.chars());
                }
            }
        }
        check_no_panic(&chars.into_iter().collect::<String>());
    }
}
