//! A small EDN reader (the subset Jepsen histories use) and the EDN history format: a vector
//! of event maps, or event maps one after another. Commas are whitespace, `;` starts a
//! comment, `#_` discards the next form.

use super::ParseError;
use crate::history::{Event, EventKind, History, Process, HISTORY_EVENTS_MAX};
use crate::value::Value;

/// Deepest nesting accepted (the reader is recursive).
const NESTING_DEPTH_MAX: u32 = 64;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    /// Floats and other numbers kept as text.
    Number(String),
    Str(String),
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    /// Converts to a history value; maps and sets become their printed text.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Edn::Nil => Value::Nil,
            Edn::Bool(b) => Value::Bool(*b),
            Edn::Int(i) => Value::Int(*i),
            Edn::Number(n) => Value::Str(n.clone()),
            Edn::Str(s) => Value::Str(s.clone()),
            Edn::Keyword(k) => Value::Keyword(k.clone()),
            Edn::Symbol(s) => Value::Str(s.clone()),
            Edn::Vector(items) => Value::List(items.iter().map(Edn::to_value).collect()),
            Edn::Map(pairs) => Value::List(
                pairs
                    .iter()
                    .map(|(k, v)| Value::List(vec![k.to_value(), v.to_value()]))
                    .collect(),
            ),
        }
    }
}

pub(crate) struct Reader<'a> {
    src: &'a [u8],
    pos: usize,
    pub(crate) line: u32,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(src: &'a str, line: u32) -> Reader<'a> {
        Reader {
            src: src.as_bytes(),
            pos: 0,
            line,
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            message: message.into(),
        }
    }

    /// Skips whitespace, commas, comments and `#_` discards. True when input remains.
    pub(crate) fn skip(&mut self) -> Result<bool, ParseError> {
        while self.pos < self.src.len() {
            match self.src[self.pos] {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | b',' => self.pos += 1,
                b';' => {
                    while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'#' if self.src.get(self.pos + 1) == Some(&b'_') => {
                    self.pos += 2;
                    self.read()?;
                }
                _ => return Ok(true),
            }
        }
        Ok(false)
    }

    /// The rest of the input from the current position.
    pub(crate) fn rest(&self) -> &'a str {
        std::str::from_utf8(&self.src[self.pos..]).unwrap_or("")
    }

    pub(crate) fn read(&mut self) -> Result<Edn, ParseError> {
        self.read_depth(0)
    }

    fn read_depth(&mut self, depth: u32) -> Result<Edn, ParseError> {
        if depth > NESTING_DEPTH_MAX {
            return Err(self.error(format!("nesting deeper than {NESTING_DEPTH_MAX}")));
        }
        if !self.skip()? {
            return Err(self.error("unexpected end of input"));
        }
        let c = self.src[self.pos];
        match c {
            b'[' | b'(' => {
                let close = if c == b'[' { b']' } else { b')' };
                let open_line = self.line;
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if !self.skip()? {
                        return Err(ParseError {
                            line: open_line,
                            message: format!("unclosed '{}' (reached end of input)", c as char),
                        });
                    }
                    if self.src[self.pos] == close {
                        self.pos += 1;
                        return Ok(Edn::Vector(items));
                    }
                    items.push(self.read_depth(depth + 1)?);
                }
            }
            b'{' => {
                let open_line = self.line;
                self.pos += 1;
                let mut pairs = Vec::new();
                loop {
                    if !self.skip()? {
                        return Err(ParseError {
                            line: open_line,
                            message: "unclosed '{' (reached end of input)".into(),
                        });
                    }
                    if self.src[self.pos] == b'}' {
                        self.pos += 1;
                        return Ok(Edn::Map(pairs));
                    }
                    let key = self.read_depth(depth + 1)?;
                    if !self.skip()? || self.src[self.pos] == b'}' {
                        return Err(self.error(format!("map key {key:?} has no value")));
                    }
                    let value = self.read_depth(depth + 1)?;
                    pairs.push((key, value));
                }
            }
            b'#' if self.src.get(self.pos + 1) == Some(&b'{') => {
                let open_line = self.line;
                self.pos += 2;
                let mut items = Vec::new();
                loop {
                    if !self.skip()? {
                        return Err(ParseError {
                            line: open_line,
                            message: "unclosed '#{' (reached end of input)".into(),
                        });
                    }
                    if self.src[self.pos] == b'}' {
                        self.pos += 1;
                        return Ok(Edn::Vector(items));
                    }
                    items.push(self.read_depth(depth + 1)?);
                }
            }
            b'"' => self.read_string(),
            b']' | b')' | b'}' => Err(self.error(format!("unexpected '{}'", c as char))),
            b':' => {
                self.pos += 1;
                let token = self.token();
                if token.is_empty() {
                    return Err(self.error("empty keyword"));
                }
                Ok(Edn::Keyword(token.to_string()))
            }
            _ => {
                let token = self.token();
                if token.is_empty() {
                    return Err(self.error(format!("unexpected character {:?}", c as char)));
                }
                Ok(match token {
                    "nil" => Edn::Nil,
                    "true" => Edn::Bool(true),
                    "false" => Edn::Bool(false),
                    t if t.starts_with(|c: char| c.is_ascii_digit())
                        || (t.len() > 1
                            && t.starts_with(['-', '+'])
                            && t[1..].starts_with(|c: char| c.is_ascii_digit())) =>
                    {
                        match t.trim_end_matches(['N', 'M']).parse::<i64>() {
                            Ok(i) => Edn::Int(i),
                            Err(_) if t.parse::<f64>().is_ok() => Edn::Number(t.to_string()),
                            Err(_) => return Err(self.error(format!("malformed number {t:?}"))),
                        }
                    }
                    t => Edn::Symbol(t.to_string()),
                })
            }
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.pos < self.src.len() {
            match self.src[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'(' | b')' | b'{' | b'}'
                | b'"' | b';' => break,
                _ => self.pos += 1,
            }
        }
        std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("")
    }

    fn read_string(&mut self) -> Result<Edn, ParseError> {
        let open_line = self.line;
        self.pos += 1;
        let mut out = Vec::new();
        while self.pos < self.src.len() {
            let c = self.src[self.pos];
            self.pos += 1;
            match c {
                b'"' => return Ok(Edn::Str(String::from_utf8_lossy(&out).into_owned())),
                b'\\' => {
                    let Some(&e) = self.src.get(self.pos) else {
                        break;
                    };
                    self.pos += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        Err(ParseError {
            line: open_line,
            message: "unterminated string".into(),
        })
    }
}

/// Parses an EDN history.
pub(crate) fn parse(text: &str) -> Result<History, ParseError> {
    let mut reader = Reader::new(text, 1);
    let mut forms: Vec<(u32, Edn)> = Vec::new();
    while reader.skip()? {
        let line = reader.line;
        forms.push((line, reader.read()?));
    }
    // One top-level vector of maps, or maps one after another.
    let events: Vec<(u32, Edn)> = match forms.as_slice() {
        [(_, Edn::Vector(_))] => {
            let Some((line, Edn::Vector(items))) = forms.pop() else {
                unreachable!()
            };
            // Item lines are not tracked inside the vector; re-read to recover them.
            let _ = items;
            vector_item_lines(text, line)?
        }
        _ => forms,
    };
    let mut history = History::new();
    for (line, form) in events {
        if history.len() >= HISTORY_EVENTS_MAX {
            return Err(ParseError {
                line,
                message: format!("more than {HISTORY_EVENTS_MAX} events"),
            });
        }
        history.push(event_from_map(&form, line)?);
    }
    Ok(history)
}

/// Reads the items of the top-level vector, each with the line it starts on.
fn vector_item_lines(text: &str, _line: u32) -> Result<Vec<(u32, Edn)>, ParseError> {
    let mut reader = Reader::new(text, 1);
    reader.skip()?;
    assert!(reader.src[reader.pos] == b'[' || reader.src[reader.pos] == b'(');
    reader.pos += 1;
    let mut items = Vec::new();
    loop {
        if !reader.skip()? {
            return Err(reader.error("unclosed top-level vector"));
        }
        if matches!(reader.src[reader.pos], b']' | b')') {
            return Ok(items);
        }
        let line = reader.line;
        items.push((line, reader.read()?));
    }
}

fn keyword_or_name(edn: &Edn) -> Option<&str> {
    match edn {
        Edn::Keyword(k) | Edn::Str(k) | Edn::Symbol(k) => Some(k),
        _ => None,
    }
}

/// Converts one EDN map into an event.
pub(crate) fn event_from_map(form: &Edn, line: u32) -> Result<Event, ParseError> {
    let err = |message: String| ParseError { line, message };
    let Edn::Map(pairs) = form else {
        return Err(err(format!(
            "expected an event map {{:process .. :type ..}}, got {}",
            form.to_value()
        )));
    };
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| matches!(k, Edn::Keyword(n) if n == name))
            .map(|(_, v)| v)
    };
    let process = match get("process") {
        Some(Edn::Int(p)) if *p >= 0 => Process::Client(*p as u64),
        Some(Edn::Keyword(n)) => Process::Named(n.clone()),
        Some(other) => {
            return Err(err(format!(
                ":process must be a non-negative integer or keyword, got {}",
                other.to_value()
            )))
        }
        None => return Err(err("event has no :process".into())),
    };
    let kind = match get("type") {
        Some(t) => keyword_or_name(t)
            .and_then(EventKind::parse)
            .ok_or_else(|| {
                err(format!(
                    ":type must be :invoke, :ok, :fail or :info, got {}",
                    t.to_value()
                ))
            })?,
        None => return Err(err("event has no :type".into())),
    };
    let f = match get("f") {
        Some(f) => keyword_or_name(f)
            .ok_or_else(|| err(format!(":f must be a keyword, got {}", f.to_value())))?
            .to_string(),
        None => return Err(err("event has no :f".into())),
    };
    let value = get("value").map(Edn::to_value).unwrap_or(Value::Nil);
    let key = get("key").map(Edn::to_value);
    let time_ns = match get("time") {
        Some(Edn::Int(t)) if *t >= 0 => Some(*t as u64),
        Some(other) => {
            return Err(err(format!(
                ":time must be a non-negative integer, got {}",
                other.to_value()
            )))
        }
        None => None,
    };
    Ok(Event {
        process,
        kind,
        f,
        key,
        value,
        time_ns,
        line,
    })
}
