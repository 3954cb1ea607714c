//! The IR text form, parser side: builds a [`Graph`] from the text [`crate::print`] writes.
//!
//! Grammar (whitespace and newlines are insignificant between tokens; `//` starts a comment
//! that runs to the end of the line, except inside strings):
//!
//! ```text
//! graph  := "graph" "(" [param ("," param)*] ")" "->" "(" [output ("," output)*] ")" "{" inst* "}"
//! param  := VALUE ":" type STRING                      graph input: number, type, name
//! output := STRING "=" VALUE                           graph output: name, value
//! inst   := VALUE "=" "const" type data [loc]
//!         | VALUE "=" "input" ":" type [loc]           an input node the signature does not list
//!         | VALUE "=" OPNAME [VALUE ("," VALUE)*] [attrs] ":" type [loc]
//! type   := DTYPE "[" [INT ("," INT)*] "]"            e.g. f32[1,3,8,8], f32[] for a scalar
//! data   := "[" [literal ("," literal)*] "]"          row-major, flattened
//!         | "blob" "(" 16 hex digits ")"              content hash of data not in the text
//! attrs  := "{" [NAME "=" attr ("," NAME "=" attr)*] "}"
//! attr   := INT | FLOAT | NAME | STRING | "[" [number ("," number)*] "]"
//! loc    := "loc" "(" STRING ")"                      the ONNX node the value came from
//! VALUE  := "%" digits
//! ```
//!
//! Strings use Rust's escapes (`\"`, `\\`, `\n`, `\t`, `\r`, `\0`, `\'`, `\u{...}`); floats are
//! decimal or `inf`, `-inf`, `NaN`. Values may be numbered freely (the printer renumbers) and
//! used before their definition, so that the verifier, not the parser, reports cycles; an output
//! naming an undefined value is kept as a dangling output for the same reason. Nodes are added
//! with their declared types (`Graph::add_typed`): the caller runs the verifier.
//!
//! Rejected with a [`ParseError`] at the offending token, never a panic: lexical errors, syntax
//! errors, unknown dtypes and ops, attributes an op does not accept (through `Op::read`), a
//! value defined twice, an operand naming no value, const literals that do not fit the dtype.
//! A const whose literal count differs from its type's element count is kept with a value of
//! shape `[count]`, so that the verifier reports the mismatch.

use crate::attrs::{AttrReader, AttrValue};
use crate::dtype::DType;
use crate::error::ParseError;
use crate::graph::{Graph, NodeId};
use crate::ops::{Const, Input, Op};
use crate::tensor::{Tensor, TensorData, TensorType};
use petgraph::graph::NodeIndex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Parses one graph from IR text.
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let tokens = lex(text)?;
    Parser {
        toks: tokens,
        pos: 0,
        g: Graph::new(),
        values: HashMap::new(),
    }
    .graph()
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `%` followed by its name (digits in valid text).
    Value(String),
    /// A run of letters, digits, `_`, `.` (and `+`/`-` at a number's start or after an
    /// exponent `e`): names, numbers, dtypes and hashes.
    Word(String),
    Str(String),
    Punct(char),
    Arrow,
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Value(v) => format!("`%{v}`"),
        Tok::Word(w) => format!("`{w}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Punct(c) => format!("`{c}`"),
        Tok::Arrow => "`->`".to_string(),
        Tok::Eof => "end of input".to_string(),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Splits `text` into tokens, tracking 1-based line and column (in characters).
fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |line, col, message: String| ParseError { line, col, message };
    while i < chars.len() {
        let c = chars[i];
        let (tline, tcol) = (line, col);
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let tok = if c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(err(tline, tcol, "unterminated string".into()));
                };
                match ch {
                    '"' => {
                        i += 1;
                        break;
                    }
                    '\n' => return Err(err(tline, tcol, "unterminated string".into())),
                    '\\' => {
                        let (decoded, used) =
                            unescape(&chars[i..]).map_err(|m| err(line, col + (i - start), m))?;
                        s.push(decoded);
                        i += used;
                    }
                    _ => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            Tok::Str(s)
        } else if c == '%' {
            i += 1;
            while i < chars.len() && is_word_char(chars[i]) {
                i += 1;
            }
            if i == start + 1 {
                return Err(err(tline, tcol, "expected a value number after `%`".into()));
            }
            Tok::Value(chars[start + 1..i].iter().collect())
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            i += 2;
            Tok::Arrow
        } else if is_word_char(c) || c == '-' || c == '+' {
            i += 1;
            while i < chars.len() {
                let ch = chars[i];
                let exp_sign = (ch == '+' || ch == '-') && matches!(chars[i - 1], 'e' | 'E');
                if is_word_char(ch) || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            Tok::Word(chars[start..i].iter().collect())
        } else if "()[]{},:=".contains(c) {
            i += 1;
            Tok::Punct(c)
        } else {
            return Err(err(tline, tcol, format!("unexpected character {c:?}")));
        };
        // Tokens never span lines (strings with raw newlines are rejected above).
        col += i - start;
        toks.push(Token {
            tok,
            line: tline,
            col: tcol,
        });
    }
    toks.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(toks)
}

/// Decodes one escape sequence at the start of `s` (which begins with `\`); returns the
/// character and how many chars it used.
fn unescape(s: &[char]) -> Result<(char, usize), String> {
    let simple = match s.get(1) {
        Some('n') => '\n',
        Some('t') => '\t',
        Some('r') => '\r',
        Some('0') => '\0',
        Some('\\') => '\\',
        Some('"') => '"',
        Some('\'') => '\'',
        Some('u') => {
            if s.get(2) != Some(&'{') {
                return Err("expected `{` after `\\u`".into());
            }
            let digits = s[3..]
                .iter()
                .take(6)
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            if digits == 0 || s.get(3 + digits) != Some(&'}') {
                return Err(
                    "malformed or unterminated `\\u{...}` escape (1 to 6 hex digits)".into(),
                );
            }
            let hex: String = s[3..3 + digits].iter().collect();
            let c = u32::from_str_radix(&hex, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("`\\u{{{hex}}}` is not a unicode scalar value"))?;
            return Ok((c, digits + 4));
        }
        Some(other) => return Err(format!("unknown escape `\\{other}`")),
        None => return Err("unterminated string".into()),
    };
    Ok((simple, 2))
}

/// Parses a float literal: decimal (`1.5`, `-2`, `1e-7`), `inf`, `-inf` or `NaN`.
fn parse_f32(w: &str) -> Option<f32> {
    match w {
        "inf" | "+inf" => return Some(f32::INFINITY),
        "-inf" => return Some(f32::NEG_INFINITY),
        "NaN" => return Some(f32::NAN),
        _ => {}
    }
    let digits = w.strip_prefix(['-', '+']).unwrap_or(w);
    // Rust's parser also takes `infinity`, `nan` and friends; the text form does not.
    if !digits.starts_with(|c: char| c.is_ascii_digit())
        || !digits
            .chars()
            .all(|c| c.is_ascii_digit() || "._eE+-".contains(c))
    {
        return None;
    }
    w.parse().ok()
}

fn is_int_literal(w: &str) -> bool {
    let digits = w.strip_prefix('-').unwrap_or(w);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

fn is_name(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A use of a value number, remembered with its position for errors.
#[derive(Clone, Copy)]
struct Use {
    value: usize,
    line: usize,
    col: usize,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    g: Graph,
    /// Defined value numbers.
    values: HashMap<usize, NodeId>,
}

type R<T> = Result<T, ParseError>;

impl Parser {
    fn peek(&self) -> &Token {
        // `lex` always ends the stream with `Eof`, and `next` never moves past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn err_at<T>(&self, t: &Token, message: impl Into<String>) -> R<T> {
        Err(ParseError {
            line: t.line,
            col: t.col,
            message: message.into(),
        })
    }

    fn unexpected<T>(&self, t: &Token, wanted: &str) -> R<T> {
        self.err_at(t, format!("expected {wanted}, found {}", describe(&t.tok)))
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek().tok == Tok::Punct(c)
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let found = self.is_punct(c);
        if found {
            self.next();
        }
        found
    }

    fn expect_punct(&mut self, c: char, context: &str) -> R<()> {
        let t = self.next();
        if t.tok == Tok::Punct(c) {
            Ok(())
        } else {
            self.unexpected(&t, &format!("`{c}` {context}"))
        }
    }

    fn expect_word(&mut self, what: &str) -> R<(String, Token)> {
        let t = self.next();
        match &t.tok {
            Tok::Word(w) => Ok((w.clone(), t.clone())),
            _ => self.unexpected(&t, what),
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> R<()> {
        let t = self.next();
        match &t.tok {
            Tok::Word(w) if w == kw => Ok(()),
            _ => self.unexpected(&t, &format!("`{kw}`")),
        }
    }

    fn expect_str(&mut self, what: &str) -> R<String> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            _ => self.unexpected(&t, what),
        }
    }

    fn value(&mut self, what: &str) -> R<Use> {
        let t = self.next();
        match &t.tok {
            Tok::Value(v) => match v.parse::<usize>() {
                Ok(value) if v.chars().all(|c| c.is_ascii_digit()) => Ok(Use {
                    value,
                    line: t.line,
                    col: t.col,
                }),
                _ => self.err_at(
                    &t,
                    format!("invalid value `%{v}`: values are `%` and a number"),
                ),
            },
            _ => self.unexpected(&t, what),
        }
    }

    fn graph(mut self) -> R<Graph> {
        self.expect_keyword("graph")?;
        self.expect_punct('(', "after `graph`")?;
        if !self.eat_punct(')') {
            loop {
                self.param()?;
                if self.eat_punct(')') {
                    break;
                }
                self.expect_punct(',', "or `)` after a graph input")?;
            }
        }
        let t = self.next();
        if t.tok != Tok::Arrow {
            return self.unexpected(&t, "`->` after the graph inputs");
        }
        self.expect_punct('(', "before the graph outputs")?;
        let mut outputs = Vec::new();
        if !self.eat_punct(')') {
            loop {
                let name = self.expect_str("an output name (a string)")?;
                self.expect_punct('=', "after the output name")?;
                outputs.push((name, self.value("the output value")?));
                if self.eat_punct(')') {
                    break;
                }
                self.expect_punct(',', "or `)` after a graph output")?;
            }
        }
        self.expect_punct('{', "to open the graph body")?;
        let mut pending = Vec::new();
        while !self.eat_punct('}') {
            self.instruction(&mut pending)?;
        }
        let t = self.next();
        if t.tok != Tok::Eof {
            return self.unexpected(&t, "end of input after the graph");
        }
        // Operands used before their definition.
        for (id, uses) in pending {
            for (port, u) in uses.iter().enumerate() {
                let src = self.lookup(u)?;
                self.g.set_operand(id, port, src);
            }
        }
        // Outputs naming no value dangle (the verifier reports them). They get ids no node can
        // have, counted down from the largest index petgraph does not reserve, one per number.
        let mut dangling: HashMap<usize, NodeId> = HashMap::new();
        for (name, u) in outputs {
            let id = match self.values.get(&u.value) {
                Some(&id) => id,
                None => {
                    let k = dangling.len();
                    *dangling.entry(u.value).or_insert_with(|| {
                        NodeIndex::new((u32::MAX as usize - 1).saturating_sub(k))
                    })
                }
            };
            self.g.set_output(name, id);
        }
        Ok(self.g)
    }

    fn lookup(&self, u: &Use) -> R<NodeId> {
        self.values
            .get(&u.value)
            .copied()
            .ok_or_else(|| ParseError {
                line: u.line,
                col: u.col,
                message: format!("undefined value %{}", u.value),
            })
    }

    /// `%N: type "name"`. A number listed again re-lists the same input (the verifier rejects
    /// that); its type must agree.
    fn param(&mut self) -> R<()> {
        let u = self.value("a graph input (`%N: type \"name\"`)")?;
        self.expect_punct(':', "after the input value")?;
        let ty_tok = self.peek().clone();
        let ty = self.ty()?;
        let name = self.expect_str("the input name (a string)")?;
        match self.values.get(&u.value) {
            None => {
                let id = self.g.add_input(name, ty);
                self.values.insert(u.value, id);
            }
            // Only signature inputs are defined while the signature is parsed.
            Some(&id) if *self.g.ty(id) == ty => {
                self.g.inputs.push((name, id));
            }
            Some(_) => {
                return self.err_at(
                    &ty_tok,
                    format!("input %{} is listed again with another type", u.value),
                )
            }
        }
        Ok(())
    }

    fn ty(&mut self) -> R<TensorType> {
        let (w, t) = self.expect_word("a tensor type like `f32[1,3]`")?;
        let Some(dtype) = DType::from_name(&w) else {
            return self.err_at(
                &t,
                format!("unknown element type `{w}` (expected f32, i64, i32 or bool)"),
            );
        };
        self.expect_punct('[', "after the element type")?;
        let mut shape = Vec::new();
        if !self.eat_punct(']') {
            loop {
                let (d, dt) = self.expect_word("a dimension")?;
                match d.parse::<usize>() {
                    Ok(v) if d.chars().all(|c| c.is_ascii_digit()) => shape.push(v),
                    _ => return self.err_at(&dt, format!("invalid dimension `{d}`")),
                }
                if self.eat_punct(']') {
                    break;
                }
                self.expect_punct(',', "or `]` in the shape")?;
            }
        }
        Ok(TensorType::new(dtype, shape))
    }

    fn loc(&mut self) -> R<Option<String>> {
        if !matches!(&self.peek().tok, Tok::Word(w) if w == "loc") {
            return Ok(None);
        }
        self.next();
        self.expect_punct('(', "after `loc`")?;
        let origin = self.expect_str("the origin (a string)")?;
        self.expect_punct(')', "after the origin")?;
        Ok(Some(origin))
    }

    fn instruction(&mut self, pending: &mut Vec<(NodeId, Vec<Use>)>) -> R<()> {
        let def_tok = self.peek().clone();
        let def = self.value("an instruction (`%N = ...`) or `}`")?;
        if self.values.contains_key(&def.value) {
            return self.err_at(&def_tok, format!("value %{} is defined twice", def.value));
        }
        self.expect_punct('=', "after the defined value")?;
        let (name, name_tok) = self.expect_word("an op name")?;
        let id = match name.as_str() {
            "const" => {
                let ty = self.ty()?;
                let (value, blob_hash) = self.const_data(&ty)?;
                let origin = self.loc()?;
                let c = Const {
                    ty: ty.clone(),
                    value,
                    blob_hash,
                };
                self.g.add_typed(Op::Const(c), &[], ty, origin)
            }
            "input" => {
                self.expect_punct(':', "before the result type")?;
                let ty = self.ty()?;
                let origin = self.loc()?;
                self.g
                    .add_typed(Op::Input(Input { ty: ty.clone() }), &[], ty, origin)
            }
            _ => {
                let mut uses = Vec::new();
                if matches!(self.peek().tok, Tok::Value(_)) {
                    loop {
                        uses.push(self.value("an operand")?);
                        if !self.eat_punct(',') {
                            break;
                        }
                    }
                }
                let attrs_tok = self.peek().clone();
                let attrs = if self.is_punct('{') {
                    self.attrs()?
                } else {
                    BTreeMap::new()
                };
                let op = match Op::read(&name, AttrReader::new(attrs)) {
                    None => {
                        return self.err_at(
                            &name_tok,
                            format!("unknown op `{name}` (ops: const, {})", Op::NAMES.join(", ")),
                        );
                    }
                    Some(Err(m)) => return self.err_at(&attrs_tok, format!("{name}: {m}")),
                    Some(Ok(op)) => op,
                };
                self.expect_punct(':', "before the result type")?;
                let ty = self.ty()?;
                let origin = self.loc()?;
                let ids: Option<Vec<NodeId>> = uses
                    .iter()
                    .map(|u| self.values.get(&u.value).copied())
                    .collect();
                match ids {
                    Some(ids) => self.g.add_typed(op, &ids, ty, origin),
                    None => {
                        let id = self.g.add_typed(op, &[], ty, origin);
                        pending.push((id, uses));
                        id
                    }
                }
            }
        };
        self.values.insert(def.value, id);
        Ok(())
    }

    /// `[literals]` or `blob(hash)`, for a const of type `ty`.
    fn const_data(&mut self, ty: &TensorType) -> R<(Option<Arc<Tensor>>, Option<u64>)> {
        let t = self.next();
        match &t.tok {
            Tok::Word(w) if w == "blob" => {
                self.expect_punct('(', "after `blob`")?;
                let (h, ht) = self.expect_word("a 16-digit hex content hash")?;
                if h.len() != 16 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    return self.err_at(
                        &ht,
                        format!("invalid content hash `{h}`: expected 16 hex digits"),
                    );
                }
                let hash = u64::from_str_radix(&h, 16)
                    .or_else(|_| self.err_at(&ht, format!("invalid content hash `{h}`")))?;
                self.expect_punct(')', "after the content hash")?;
                Ok((None, Some(hash)))
            }
            Tok::Punct('[') => {
                let mut words = Vec::new();
                if !self.eat_punct(']') {
                    loop {
                        words.push(self.expect_word("a literal")?);
                        if self.eat_punct(']') {
                            break;
                        }
                        self.expect_punct(',', "or `]` in the data")?;
                    }
                }
                let data = self.literals(ty.dtype, &words)?;
                let shape = match ty.numel() {
                    Ok(n) if n == words.len() => ty.shape.clone(),
                    _ => vec![words.len()],
                };
                // The shape's element count equals the data length by construction.
                let tensor =
                    Tensor::new(shape, data).or_else(|e| self.err_at(&t, e.to_string()))?;
                Ok((Some(Arc::new(tensor)), None))
            }
            _ => self.unexpected(&t, "const data (`[...]` or `blob(...)`)"),
        }
    }

    fn literals(&self, dtype: DType, words: &[(String, Token)]) -> R<TensorData> {
        fn each<T>(
            p: &Parser,
            words: &[(String, Token)],
            what: &str,
            f: impl Fn(&str) -> Option<T>,
        ) -> R<Vec<T>> {
            words
                .iter()
                .map(|(w, t)| {
                    f(w).map_or_else(|| p.err_at(t, format!("invalid {what} literal `{w}`")), Ok)
                })
                .collect()
        }
        Ok(match dtype {
            DType::F32 => TensorData::F32(each(self, words, "f32", parse_f32)?),
            DType::I64 => TensorData::I64(each(self, words, "i64", |w| {
                is_int_literal(w).then(|| w.parse().ok()).flatten()
            })?),
            DType::I32 => TensorData::I32(each(self, words, "i32", |w| {
                is_int_literal(w).then(|| w.parse().ok()).flatten()
            })?),
            DType::Bool => TensorData::Bool(each(self, words, "bool", |w| match w {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            })?),
        })
    }

    /// `{name=value, ...}`.
    fn attrs(&mut self) -> R<BTreeMap<String, AttrValue>> {
        self.expect_punct('{', "to open the attributes")?;
        let mut items = BTreeMap::new();
        if self.eat_punct('}') {
            return Ok(items);
        }
        loop {
            let (key, kt) = self.expect_word("an attribute name")?;
            if !is_name(&key) {
                return self.err_at(&kt, format!("invalid attribute name `{key}`"));
            }
            self.expect_punct('=', "after the attribute name")?;
            let v = self.attr_value()?;
            if items.insert(key.clone(), v).is_some() {
                return self.err_at(&kt, format!("attribute `{key}` is given twice"));
            }
            if self.eat_punct('}') {
                return Ok(items);
            }
            self.expect_punct(',', "or `}` after an attribute")?;
        }
    }

    fn attr_value(&mut self) -> R<AttrValue> {
        let t = self.next();
        match &t.tok {
            Tok::Str(s) => Ok(AttrValue::Str(s.clone())),
            Tok::Word(w) => match self.number(w, &t)? {
                Some(v) => Ok(v),
                None if is_name(w) => Ok(AttrValue::Ident(w.clone())),
                None => self.err_at(&t, format!("invalid attribute value `{w}`")),
            },
            Tok::Punct('[') => {
                let (mut ints, mut floats, mut all_int) = (Vec::new(), Vec::new(), true);
                if !self.eat_punct(']') {
                    loop {
                        let (w, wt) = self.expect_word("a number")?;
                        match self.number(&w, &wt)? {
                            Some(AttrValue::Int(i)) => {
                                ints.push(i);
                                floats.push(i as f32);
                            }
                            Some(AttrValue::Float(x)) => {
                                all_int = false;
                                floats.push(x);
                            }
                            _ => {
                                return self.err_at(
                                    &wt,
                                    format!("expected a number in the list, found `{w}`"),
                                )
                            }
                        }
                        if self.eat_punct(']') {
                            break;
                        }
                        self.expect_punct(',', "or `]` in the list")?;
                    }
                }
                // A list is integers unless a float was written, as the printer writes it.
                Ok(if all_int {
                    AttrValue::Ints(ints)
                } else {
                    AttrValue::Floats(floats)
                })
            }
            _ => self.unexpected(&t, "an attribute value"),
        }
    }

    /// An integer or float literal; `None` when `w` is not a number.
    fn number(&self, w: &str, t: &Token) -> R<Option<AttrValue>> {
        if is_int_literal(w) {
            return match w.parse::<i64>() {
                Ok(i) => Ok(Some(AttrValue::Int(i))),
                Err(_) => self.err_at(t, format!("integer `{w}` is out of range")),
            };
        }
        Ok(parse_f32(w).map(AttrValue::Float))
    }
}
