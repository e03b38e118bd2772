//! Events as recorded (invoke / ok / fail / info) and the operations they pair into.
//!
//! A history is a list of events in real-time order: the position of an event is its time for
//! the checker. `time_ns` is carried for display only (Jepsen's `:time` is not always monotone).

use crate::value::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Upper bound on events in one history; larger inputs are rejected, not truncated.
pub const HISTORY_EVENTS_MAX: usize = 50_000_000;

/// Who issued an event. Only `Client` events are operations; `Named` ones (Jepsen's
/// `:nemesis`) are fault-injection records and are ignored by the checker.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Named(String),
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Named(n) => write!(f, ":{n}"),
        }
    }
}

/// Jepsen's event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The operation started.
    Invoke,
    /// It took effect between its invoke and this completion.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown: it may take effect at any time after its invoke, or never.
    Info,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Invoke => "invoke",
            EventKind::Ok => "ok",
            EventKind::Fail => "fail",
            EventKind::Info => "info",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        match name {
            "invoke" => Some(EventKind::Invoke),
            "ok" => Some(EventKind::Ok),
            "fail" => Some(EventKind::Fail),
            "info" => Some(EventKind::Info),
            _ => None,
        }
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub process: Process,
    pub kind: EventKind,
    /// The operation's function: `read`, `write`, `cas`, `get`, `put`, `txn`, ...
    pub f: String,
    /// The key the operation touches, for per-key models (`kv`, keyed registers).
    pub key: Option<Value>,
    /// Invoke: the argument (nil for reads). Completion: the result (the value read).
    pub value: Value,
    /// Monotonic time in nanoseconds, when recorded. Display only.
    pub time_ns: Option<u64>,
    /// The 1-based source line the event came from; 0 when built in code.
    pub line: u32,
}

/// A history: events in real-time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Writes the history in Keel's JSON-lines format (docs/history-format.md), one event per
    /// line; `keel check` reads it back.
    pub fn to_keel_jsonl(&self) -> String {
        let mut out = String::with_capacity(self.events.len() * 80);
        for event in &self.events {
            let mut object = serde_json::Map::new();
            let process = match &event.process {
                Process::Client(p) => serde_json::Value::from(*p),
                Process::Named(n) => serde_json::Value::String(n.clone()),
            };
            object.insert("process".into(), process);
            object.insert("type".into(), event.kind.name().into());
            object.insert("f".into(), event.f.clone().into());
            if let Some(key) = &event.key {
                object.insert("key".into(), key.to_json());
            }
            object.insert("value".into(), event.value.to_json());
            if let Some(time_ns) = event.time_ns {
                object.insert("time".into(), time_ns.into());
            }
            out.push_str(&serde_json::Value::Object(object).to_string());
            out.push('\n');
        }
        out
    }

    pub fn push(&mut self, event: Event) {
        assert!(
            self.events.len() < HISTORY_EVENTS_MAX,
            "history exceeds HISTORY_EVENTS_MAX"
        );
        self.events.push(event);
    }
}

/// Builds a history in code, one event at a time, in real-time order. Used by the simulator:
///
/// ```
/// use keel_check::{HistoryBuilder, Value};
/// let mut b = HistoryBuilder::new();
/// b.invoke(1, "put", Some("k"), Value::str("v1"));
/// b.invoke(2, "get", Some("k"), Value::Nil);
/// b.ok(1, Value::Nil);
/// b.ok(2, Value::str("v1"));
/// b.invoke(1, "cas", Some("k"), Value::List(vec![Value::str("v1"), Value::str("v2")]));
/// b.info(1); // timed out: may or may not have happened
/// let history = b.build();
/// assert_eq!(history.len(), 6);
/// ```
#[derive(Default)]
pub struct HistoryBuilder {
    history: History,
    /// Per client process, the `f` and key of its open invoke (completions repeat them).
    open: BTreeMap<u64, (String, Option<Value>)>,
    time_ns: Option<u64>,
}

impl HistoryBuilder {
    pub fn new() -> HistoryBuilder {
        HistoryBuilder::default()
    }

    /// Sets the time stamped on subsequent events (display only; order is call order).
    pub fn at_time_ns(&mut self, time_ns: u64) -> &mut Self {
        self.time_ns = Some(time_ns);
        self
    }

    /// Records an invoke. A process may have only one open operation; a second invoke
    /// before its completion panics (a bug in the caller, not in the system under test).
    pub fn invoke(&mut self, process: u64, f: &str, key: Option<&str>, value: Value) -> &mut Self {
        let key = key.map(Value::str);
        let previous = self.open.insert(process, (f.to_string(), key.clone()));
        assert!(
            previous.is_none(),
            "process {process} invoked while an operation is open"
        );
        self.push(
            Process::Client(process),
            EventKind::Invoke,
            f.to_string(),
            key,
            value,
        );
        self
    }

    /// Completes `process`'s open operation: it took effect; `value` is its result.
    pub fn ok(&mut self, process: u64, value: Value) -> &mut Self {
        self.complete(process, EventKind::Ok, value)
    }

    /// Completes `process`'s open operation: it certainly did not take effect.
    pub fn fail(&mut self, process: u64) -> &mut Self {
        self.complete(process, EventKind::Fail, Value::Nil)
    }

    /// Completes `process`'s open operation as unknown (timeout, crash).
    pub fn info(&mut self, process: u64) -> &mut Self {
        self.complete(process, EventKind::Info, Value::Nil)
    }

    fn complete(&mut self, process: u64, kind: EventKind, value: Value) -> &mut Self {
        let open = self.open.remove(&process);
        let (f, key) =
            open.unwrap_or_else(|| panic!("process {process} completes without an open operation"));
        self.push(Process::Client(process), kind, f, key, value);
        self
    }

    fn push(
        &mut self,
        process: Process,
        kind: EventKind,
        f: String,
        key: Option<Value>,
        value: Value,
    ) {
        self.history.push(Event {
            process,
            kind,
            f,
            key,
            value,
            time_ns: self.time_ns,
            line: 0,
        });
    }

    /// The history so far; operations still open are treated like `info` (open to the end).
    pub fn build(self) -> History {
        self.history
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpStatus {
    Ok,
    Fail,
    /// `info` completion or no completion at all: open to the end of the history.
    Info,
}

/// An invoke paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub process: u64,
    pub f: String,
    pub key: Option<Value>,
    /// The invoke's value (the argument).
    pub input: Value,
    /// The completion's value (the result); nil for info and fail.
    pub output: Value,
    pub status: OpStatus,
    /// Index of the invoke event in the history.
    pub invoke_index: usize,
    /// Index of the completion event (`None` when the operation never completed).
    pub complete_index: Option<usize>,
    pub invoke_time_ns: Option<u64>,
    pub complete_time_ns: Option<u64>,
    /// Source line of the invoke (0 when built in code).
    pub line: u32,
}

impl Op {
    /// Short human form, e.g. `p3 cas [1 2] -> ok`.
    pub fn describe(&self) -> String {
        let key = self
            .key
            .as_ref()
            .map(|k| format!(" {k}"))
            .unwrap_or_default();
        let result = match self.status {
            OpStatus::Ok if self.output.is_nil() || self.output == self.input => "ok".to_string(),
            OpStatus::Ok => format!("ok {}", self.output),
            OpStatus::Fail => "fail".to_string(),
            OpStatus::Info => "info".to_string(),
        };
        let input = if self.input.is_nil() {
            String::new()
        } else {
            format!(" {}", self.input)
        };
        format!("p{} {}{}{} -> {}", self.process, self.f, key, input, result)
    }
}

/// An error in the structure of a history (not in its consistency).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryError {
    /// 1-based source line, 0 when unknown.
    pub line: u32,
    pub message: String,
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "{}", self.message)
        }
    }
}

impl std::error::Error for HistoryError {}

/// Pairs invokes with completions. Named processes (nemesis) are skipped. Errors: a process
/// invoking while its previous operation is open, or completing one it never invoked.
pub fn pair_operations(history: &History) -> Result<Vec<Op>, HistoryError> {
    let mut ops: Vec<Op> = Vec::with_capacity(history.len() / 2 + 1);
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    for (index, event) in history.events.iter().enumerate() {
        let Process::Client(process) = event.process else {
            continue;
        };
        let err = |message: String| HistoryError {
            line: event.line,
            message,
        };
        match event.kind {
            EventKind::Invoke => {
                if let Some(&previous) = open.get(&process) {
                    let line = ops[previous].line;
                    return Err(err(format!(
                        "process {process} invokes :{} while its operation from line {line} is still open",
                        event.f
                    )));
                }
                open.insert(process, ops.len());
                ops.push(Op {
                    process,
                    f: event.f.clone(),
                    key: event.key.clone(),
                    input: event.value.clone(),
                    output: Value::Nil,
                    status: OpStatus::Info,
                    invoke_index: index,
                    complete_index: None,
                    invoke_time_ns: event.time_ns,
                    complete_time_ns: None,
                    line: event.line,
                });
            }
            kind => {
                let Some(at) = open.remove(&process) else {
                    return Err(err(format!(
                        "process {process} completes :{} ({}) without an open invoke",
                        event.f,
                        kind.name()
                    )));
                };
                let op = &mut ops[at];
                if op.f != event.f {
                    return Err(err(format!(
                        "process {process} completes :{} but invoked :{} (line {})",
                        event.f, op.f, op.line
                    )));
                }
                op.status = match kind {
                    EventKind::Ok => OpStatus::Ok,
                    EventKind::Fail => OpStatus::Fail,
                    _ => OpStatus::Info,
                };
                if kind == EventKind::Ok {
                    op.output = event.value.clone();
                }
                if op.key.is_none() {
                    op.key = event.key.clone();
                }
                op.complete_index = Some(index);
                op.complete_time_ns = event.time_ns;
            }
        }
    }
    assert!(ops.len() <= history.len());
    Ok(ops)
}
