//! Keel's JSON-lines history (docs/history-format.md): one JSON object per line.

use super::ParseError;
use crate::history::{Event, EventKind, History, Process, HISTORY_EVENTS_MAX};
use crate::value::Value;

/// Longest line accepted, bytes.
const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

pub(crate) fn parse(text: &str) -> Result<History, ParseError> {
    let mut history = History::new();
    for (index, raw) in text.lines().enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.len() > LINE_BYTES_MAX {
            return Err(ParseError {
                line,
                message: format!("line longer than {LINE_BYTES_MAX} bytes"),
            });
        }
        if history.len() >= HISTORY_EVENTS_MAX {
            return Err(ParseError {
                line,
                message: format!("more than {HISTORY_EVENTS_MAX} events"),
            });
        }
        history.push(parse_line(trimmed, line)?);
    }
    Ok(history)
}

pub(crate) fn parse_line(text: &str, line: u32) -> Result<Event, ParseError> {
    let err = |message: String| ParseError { line, message };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let object = json
        .as_object()
        .ok_or_else(|| err("expected a JSON object per line".into()))?;
    let process = match object.get("process") {
        Some(serde_json::Value::Number(n)) => Process::Client(n.as_u64().ok_or_else(|| {
            err(format!(
                "\"process\" must be a non-negative integer, got {n}"
            ))
        })?),
        Some(serde_json::Value::String(name)) => Process::Named(name.clone()),
        Some(other) => {
            return Err(err(format!(
                "\"process\" must be an integer or a name, got {other}"
            )))
        }
        None => return Err(err("missing \"process\"".into())),
    };
    let kind = match object.get("type") {
        Some(serde_json::Value::String(t)) => EventKind::parse(t).ok_or_else(|| {
            err(format!(
                "\"type\" must be invoke, ok, fail or info, got {t:?}"
            ))
        })?,
        Some(other) => return Err(err(format!("\"type\" must be a string, got {other}"))),
        None => return Err(err("missing \"type\"".into())),
    };
    let f = match object.get("f") {
        Some(serde_json::Value::String(f)) if !f.is_empty() => f.clone(),
        Some(other) => {
            return Err(err(format!(
                "\"f\" must be a non-empty string, got {other}"
            )))
        }
        None => return Err(err("missing \"f\"".into())),
    };
    let convert = |name: &str| -> Result<Option<Value>, ParseError> {
        match object.get(name) {
            None => Ok(None),
            Some(v) => Value::from_json(v).map(Some).ok_or_else(|| {
                err(format!(
                    "\"{name}\" must be null, a boolean, an integer, a string or an array, got {v}"
                ))
            }),
        }
    };
    let key = convert("key")?.filter(|k| !k.is_nil());
    let value = convert("value")?.unwrap_or(Value::Nil);
    let time_ns = match object.get("time") {
        None | Some(serde_json::Value::Null) => None,
        Some(t) => Some(t.as_u64().ok_or_else(|| {
            err(format!(
                "\"time\" must be a non-negative integer (ns), got {t}"
            ))
        })?),
    };
    if let Some(revision) = object.get("revision") {
        if !revision.is_null() && revision.as_u64().is_none() {
            return Err(err(format!(
                "\"revision\" must be a non-negative integer, got {revision}"
            )));
        }
    }
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
