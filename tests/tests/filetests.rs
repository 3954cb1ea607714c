//! Golden IR filetests, in the manner of Cranelift's. Every `tests/filetests/**/*.dync` file
//! opens with header lines starting with `;`, one of which is `; test: <kind> [args...]`; the
//! rest of the file is the test's input, and its expected output is the sibling
//! `<name>.expected`. `DYNC_BLESS=1 cargo test -p dync-tests --test filetests` rewrites the
//! expected files from the actual outputs; without it, any difference fails with a line diff.
//! All files run; failures are reported together. An `.expected` file without its `.dync` fails
//! too, so that renamed tests leave nothing stale behind.
//!
//! Kinds ([`run_kind`]; a new kind is one match arm there):
//! - `print`: parse, verify (must pass), print canonically; the printed text must parse and print
//!   back to itself.
//! - `verify`: parse (must succeed), then print with the verifier's errors under the lines they
//!   concern (`print_with_errors`; a graph without errors prints plainly).
//! - `opt PASS...`: parse and verify, run the named passes in order through
//!   `dync_opt::PassManager` (each rewriting pass followed by constant folding and dead-code
//!   elimination, the graph verified after each), print the result, then one `; remark: ...`
//!   line per remark the passes made.

use dync_ir::{parse, print, print_with_errors, verify, Graph};
use std::fs;
use std::path::{Path, PathBuf};

/// Runs one test of `kind` on `input` (the file with its header lines blanked, so that line
/// numbers in errors are the file's), returning the output to compare with `.expected`.
fn run_kind(kind: &str, args: &[&str], input: &str) -> Result<String, String> {
    match kind {
        "print" => {
            no_args(kind, args)?;
            let g = parse_verified(input)?;
            let out = print(&g);
            let again =
                parse(&out).map_err(|e| format!("printed text does not parse: {e}\n{out}"))?;
            if print(&again) != out {
                return Err(format!(
                    "printed text does not print back to itself:\n{out}"
                ));
            }
            Ok(out)
        }
        "verify" => {
            no_args(kind, args)?;
            let g = parse(input).map_err(|e| format!("parse error: {e}"))?;
            Ok(match verify(&g) {
                Ok(()) => print(&g),
                Err(errors) => print_with_errors(&g, &errors),
            })
        }
        "opt" => {
            if args.is_empty() {
                return Err("`opt` needs the names of the passes to run".into());
            }
            let mut g = parse_verified(input)?;
            let mut pm = dync_opt::PassManager::new(dync_opt::PrintAfter::None);
            for name in args {
                let pass = dync_opt::lookup(name).ok_or_else(|| {
                    format!(
                        "unknown pass `{name}` (known: {})",
                        dync_opt::PASS_NAMES.join(", ")
                    )
                })?;
                pm.run(pass.as_ref(), &mut g).map_err(|e| e.to_string())?;
            }
            let mut out = print(&g);
            for r in &pm.cx.remarks {
                out.push_str(&format!("; remark: {r}\n"));
            }
            Ok(out)
        }
        other => Err(format!(
            "unknown test kind `{other}` (kinds: print, verify, opt)"
        )),
    }
}

fn no_args(kind: &str, args: &[&str]) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("`{kind}` takes no arguments, got {args:?}"))
    }
}

/// Parses and verifies, rendering verifier errors on the IR for the failure message.
fn parse_verified(input: &str) -> Result<Graph, String> {
    let g = parse(input).map_err(|e| format!("parse error: {e}"))?;
    verify(&g).map_err(|errors| format!("verifier errors:\n{}", print_with_errors(&g, &errors)))?;
    Ok(g)
}

/// A test file split into its `; test:` directive and its input.
struct TestFile {
    kind: String,
    args: Vec<String>,
    input: String,
}

/// Reads the leading `;` lines: exactly one `; test: <kind> [args]`, nothing unknown.
fn split_header(text: &str) -> Result<TestFile, String> {
    let mut test = None;
    let mut input = String::with_capacity(text.len());
    let mut in_header = true;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if in_header && trimmed.starts_with(';') {
            let directive = trimmed.trim_start_matches(';').trim();
            match directive.strip_prefix("test:") {
                Some(rest) if test.is_none() => {
                    let mut words = rest.split_whitespace().map(str::to_string);
                    let kind = words.next().ok_or("`; test:` names no kind")?;
                    test = Some((kind, words.collect()));
                }
                Some(_) => return Err("more than one `; test:` line".into()),
                None => return Err(format!("unknown header line `{trimmed}`")),
            }
            // Keep the line count so that parse errors point at the file's lines.
            input.push_str(if line.ends_with('\n') { "\n" } else { "" });
            continue;
        }
        if !trimmed.is_empty() {
            in_header = false;
        }
        input.push_str(line);
    }
    let (kind, args) = test.ok_or("the file has no `; test: <kind>` header line")?;
    Ok(TestFile { kind, args, input })
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A line diff (longest common subsequence): `-` expected only, `+` actual only, with up to
/// `CONTEXT` unchanged lines around each change and `...` for the unchanged lines skipped.
fn diff(expected: &str, actual: &str) -> String {
    const CONTEXT: usize = 2;
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut lines) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..lines.len()).filter(|&k| lines[k].0 != ' ').collect();
    let near_change = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
    let mut out = String::new();
    let mut skipping = false;
    for (k, (mark, line)) in lines.iter().enumerate() {
        if near_change(k) {
            out += &format!("{mark} {line}\n");
            skipping = false;
        } else if !skipping {
            out += "...\n";
            skipping = true;
        }
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out += "(the files differ in their final newline)\n";
    }
    out
}

/// Runs one `.dync` file; `Err` describes the failure.
fn run_file(path: &Path, bless: bool) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let test = split_header(&text)?;
    let args: Vec<&str> = test.args.iter().map(String::as_str).collect();
    let actual = run_kind(&test.kind, &args, &test.input)?;
    let expected_path = path.with_extension("expected");
    if bless {
        if fs::read_to_string(&expected_path).ok().as_deref() != Some(actual.as_str()) {
            fs::write(&expected_path, &actual)
                .map_err(|e| format!("cannot write {}: {e}", expected_path.display()))?;
        }
        return Ok(());
    }
    let expected = fs::read_to_string(&expected_path).map_err(|e| {
        format!(
            "cannot read {} ({e}); run with DYNC_BLESS=1 to create it",
            expected_path.display()
        )
    })?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "output differs from {} (- expected, + actual; DYNC_BLESS=1 accepts the new output):\n{}",
            expected_path.display(),
            diff(&expected, &actual)
        ))
    }
}

#[test]
fn filetests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("filetests");
    let bless = std::env::var("DYNC_BLESS").is_ok_and(|v| v == "1");
    let mut files = Vec::new();
    files_under(&root, &mut files);
    files.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for path in &files {
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("dync") => {
                count += 1;
                if let Err(e) = run_file(path, bless) {
                    failures.push(format!("FAIL {shown}: {e}"));
                }
            }
            Some("expected") if !path.with_extension("dync").exists() => {
                failures.push(format!("FAIL {shown}: no matching .dync file"));
            }
            Some("expected") => {}
            _ => failures.push(format!("FAIL {shown}: not a .dync or .expected file")),
        }
    }
    assert!(count > 0, "no .dync files under {}", root.display());
    assert!(
        failures.is_empty(),
        "{} of {count} filetests failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn header_is_split_keeping_line_numbers() {
    let t = split_header("; test: opt fold_bn\n\ngraph() -> () {\n}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.kind, "opt");
    assert_eq!(t.args, ["fold_bn"]);
    assert_eq!(t.input, "\n\ngraph() -> () {\n}\n");
    assert!(split_header("graph() -> () {\n}\n").is_err());
    assert!(split_header("; test: print\n; test: verify\n").is_err());
    assert!(split_header("; tset: print\n").is_err());
}

#[test]
fn diff_marks_changed_lines_with_context() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "  a\n- b\n+ x\n  c\n");
    assert_eq!(diff("a\n", "a\nb\n"), "  a\n+ b\n");
    let long: String = (0..10).map(|i| format!("{i}\n")).collect();
    let changed = long.replace("5\n", "five\n");
    assert_eq!(
        diff(&long, &changed),
        "...\n  3\n  4\n- 5\n+ five\n  6\n  7\n...\n"
    );
    assert_eq!(
        diff("a", "a\n"),
        "...\n(the files differ in their final newline)\n"
    );
}
