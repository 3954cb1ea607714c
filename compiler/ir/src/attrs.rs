//! Attribute values of ops in the IR text form, with a writer (printer side) and a reader
//! (parser side). Each op declares its attributes once, in its `OpDef::write_attrs` /
//! `OpDef::read_attrs`, so printing and parsing cannot drift apart.
//!
//! Text syntax: `{name=value, ...}`; values are integers, floats (Rust's shortest round-trip
//! form, `inf`, `-inf`, `NaN`), `[...]` lists of numbers, bare identifiers and `"strings"`.

use std::collections::BTreeMap;
use std::fmt::Write;

/// One attribute value as it appears in the text form.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    /// A list of numbers; printed `[1, 2]`; integers unless a float was written.
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Ident(String),
    Str(String),
}

/// Collects `name=value` pairs in declaration order.
#[derive(Default)]
pub struct AttrWriter {
    pub(crate) items: Vec<(&'static str, AttrValue)>,
}

impl AttrWriter {
    pub fn int(&mut self, name: &'static str, v: i64) {
        self.items.push((name, AttrValue::Int(v)));
    }
    pub fn usize(&mut self, name: &'static str, v: usize) {
        self.int(name, v as i64);
    }
    pub fn float(&mut self, name: &'static str, v: f32) {
        self.items.push((name, AttrValue::Float(v)));
    }
    pub fn ints(&mut self, name: &'static str, v: &[i64]) {
        self.items.push((name, AttrValue::Ints(v.to_vec())));
    }
    pub fn usizes(&mut self, name: &'static str, v: &[usize]) {
        self.ints(name, &v.iter().map(|&x| x as i64).collect::<Vec<_>>());
    }
    pub fn floats(&mut self, name: &'static str, v: &[f32]) {
        self.items.push((name, AttrValue::Floats(v.to_vec())));
    }
    pub fn ident(&mut self, name: &'static str, v: &str) {
        self.items.push((name, AttrValue::Ident(v.to_string())));
    }
    pub fn bool(&mut self, name: &'static str, v: bool) {
        self.ident(name, if v { "true" } else { "false" });
    }
    pub fn str(&mut self, name: &'static str, v: &str) {
        self.items.push((name, AttrValue::Str(v.to_string())));
    }

    /// Renders ` {a=1, b=[1, 2]}`, or nothing when there are no attributes.
    pub fn render(&self) -> String {
        if self.items.is_empty() {
            return String::new();
        }
        let mut s = String::from(" {");
        for (i, (k, v)) in self.items.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{k}=");
            write_value(&mut s, v);
        }
        s.push('}');
        s
    }
}

/// Writes a float so that parsing it back gives the same bits (NaN payloads aside).
pub fn write_f32(s: &mut String, x: f32) {
    if x.is_nan() {
        s.push_str("NaN");
    } else if x.is_infinite() {
        s.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        let _ = write!(s, "{x:?}");
    }
}

fn write_value(s: &mut String, v: &AttrValue) {
    match v {
        AttrValue::Int(i) => {
            let _ = write!(s, "{i}");
        }
        AttrValue::Float(x) => write_f32(s, *x),
        AttrValue::Ints(v) => {
            s.push('[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{x}");
            }
            s.push(']');
        }
        AttrValue::Floats(v) => {
            s.push('[');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_f32(s, *x);
            }
            s.push(']');
        }
        AttrValue::Ident(x) => s.push_str(x),
        AttrValue::Str(x) => {
            let _ = write!(s, "{x:?}");
        }
    }
}

/// Hands parsed attributes to an op's `read_attrs`; `finish` rejects any that were not consumed.
pub struct AttrReader {
    items: BTreeMap<String, AttrValue>,
}

impl AttrReader {
    pub fn new(items: BTreeMap<String, AttrValue>) -> Self {
        AttrReader { items }
    }

    fn take(&mut self, name: &str) -> Result<AttrValue, String> {
        self.items
            .remove(name)
            .ok_or_else(|| format!("missing attribute `{name}`"))
    }

    /// Whether the attribute `name` was given (for optional attributes).
    pub fn has(&self, name: &str) -> bool {
        self.items.contains_key(name)
    }

    pub fn int(&mut self, name: &str) -> Result<i64, String> {
        match self.take(name)? {
            AttrValue::Int(i) => Ok(i),
            other => Err(format!(
                "attribute `{name}`: expected an integer, got {other:?}"
            )),
        }
    }
    pub fn usize(&mut self, name: &str) -> Result<usize, String> {
        let i = self.int(name)?;
        usize::try_from(i).map_err(|_| format!("attribute `{name}`: {i} is negative"))
    }
    pub fn float(&mut self, name: &str) -> Result<f32, String> {
        match self.take(name)? {
            AttrValue::Float(x) => Ok(x),
            AttrValue::Int(i) => Ok(i as f32),
            other => Err(format!(
                "attribute `{name}`: expected a float, got {other:?}"
            )),
        }
    }
    pub fn ints(&mut self, name: &str) -> Result<Vec<i64>, String> {
        match self.take(name)? {
            AttrValue::Ints(v) => Ok(v),
            AttrValue::Floats(v) if v.is_empty() => Ok(vec![]),
            other => Err(format!(
                "attribute `{name}`: expected integers, got {other:?}"
            )),
        }
    }
    pub fn usizes(&mut self, name: &str) -> Result<Vec<usize>, String> {
        self.ints(name)?
            .into_iter()
            .map(|i| usize::try_from(i).map_err(|_| format!("attribute `{name}`: {i} is negative")))
            .collect()
    }
    pub fn floats(&mut self, name: &str) -> Result<Vec<f32>, String> {
        match self.take(name)? {
            AttrValue::Floats(v) => Ok(v),
            AttrValue::Ints(v) => Ok(v.into_iter().map(|i| i as f32).collect()),
            other => Err(format!(
                "attribute `{name}`: expected floats, got {other:?}"
            )),
        }
    }
    pub fn ident(&mut self, name: &str) -> Result<String, String> {
        match self.take(name)? {
            AttrValue::Ident(s) => Ok(s),
            other => Err(format!(
                "attribute `{name}`: expected a name, got {other:?}"
            )),
        }
    }
    pub fn bool(&mut self, name: &str) -> Result<bool, String> {
        match self.ident(name)?.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!(
                "attribute `{name}`: expected true or false, got {other}"
            )),
        }
    }
    pub fn str(&mut self, name: &str) -> Result<String, String> {
        match self.take(name)? {
            AttrValue::Str(s) => Ok(s),
            other => Err(format!(
                "attribute `{name}`: expected a string, got {other:?}"
            )),
        }
    }
    /// Parses an identifier attribute through `FromStr`-like `f`, naming the attribute on error.
    pub fn parsed<T>(&mut self, name: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, String> {
        let s = self.ident(name)?;
        f(&s).ok_or_else(|| format!("attribute `{name}`: unknown value `{s}`"))
    }

    /// Errors when attributes were given that the op does not have.
    pub fn finish(self) -> Result<(), String> {
        match self.items.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("unknown attribute `{k}`")),
        }
    }
}
