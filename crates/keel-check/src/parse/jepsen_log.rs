//! Jepsen's plain-text logs: one event per line, as `jepsen.util/log-op` prints them:
//! `INFO  jepsen.util - 7<TAB>:invoke<TAB>:write<TAB>3` (tabs or spaces), optionally followed by an
//! error. Lines from other loggers are skipped; a `jepsen.util` line that starts like an
//! event (a process, then a keyword) must parse, or it is an error with its line number.
//! Bare event lines without the logger prefix (`7 :ok :read 3`) are accepted too.

use super::edn::{Edn, Reader};
use super::ParseError;
use crate::history::{Event, EventKind, History, Process, HISTORY_EVENTS_MAX};
use crate::value::Value;

const LOGGER_MARKER: &str = "jepsen.util - ";

pub(crate) fn parse(text: &str) -> Result<History, ParseError> {
    let mut history = History::new();
    for (index, raw) in text.lines().enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let (payload, prefixed) = match raw.find(LOGGER_MARKER) {
            Some(at) => (&raw[at + LOGGER_MARKER.len()..], true),
            None => (raw, false),
        };
        if let Some(event) = parse_payload(payload, prefixed, line)? {
            if history.len() >= HISTORY_EVENTS_MAX {
                return Err(ParseError {
                    line,
                    message: format!("more than {HISTORY_EVENTS_MAX} events"),
                });
            }
            history.push(event);
        }
    }
    Ok(history)
}

/// `Ok(None)` for lines that are not events.
fn parse_payload(payload: &str, prefixed: bool, line: u32) -> Result<Option<Event>, ParseError> {
    let err = |message: String| ParseError { line, message };
    let mut reader = Reader::new(payload, line);
    // Process: an integer or a keyword (:nemesis).
    let process = match reader
        .skip()
        .ok()
        .and_then(|more| more.then(|| reader.read().ok()).flatten())
    {
        Some(Edn::Int(p)) if p >= 0 => Process::Client(p as u64),
        Some(Edn::Keyword(n)) => Process::Named(n),
        _ => return Ok(None),
    };
    let kind_form = match reader
        .skip()
        .ok()
        .and_then(|more| more.then(|| reader.read().ok()).flatten())
    {
        Some(Edn::Keyword(k)) => k,
        _ if prefixed => {
            return Err(err(
                "event line: expected :invoke, :ok, :fail or :info after the process".into(),
            ))
        }
        _ => return Ok(None),
    };
    let Some(kind) = EventKind::parse(&kind_form) else {
        if !prefixed {
            return Ok(None);
        }
        return Err(err(format!(
            "event line: unknown type :{kind_form} (expected :invoke, :ok, :fail or :info)"
        )));
    };
    let f = match reader.read() {
        Ok(Edn::Keyword(f)) | Ok(Edn::Symbol(f)) => f,
        Ok(other) => {
            return Err(err(format!(
                "event line: :f must be a keyword, got {}",
                other.to_value()
            )))
        }
        Err(e) => {
            return Err(err(format!(
                "event line: missing or malformed :f ({})",
                e.message
            )))
        }
    };
    let value = if reader.skip()? {
        match reader.read() {
            Ok(v) => v.to_value(),
            Err(e) => return Err(err(format!("event line: malformed value: {}", e.message))),
        }
    } else {
        Value::Nil
    };
    // Anything after the value is the error text; it does not change the verdict.
    let _error = reader.rest();
    Ok(Some(Event {
        process,
        kind,
        f,
        key: None,
        value,
        time_ns: None,
        line,
    }))
}
