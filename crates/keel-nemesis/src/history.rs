//! The run's records: client operations in keel-check's JSON-lines history format
//! (docs/history-format.md), and the fault log. Both are appended under one lock, so a line's
//! position is its real-time order; `time` is nanoseconds since the run's start (monotonic).

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

/// Events one run may record, at most (beyond it, workers stop issuing operations).
pub const EVENTS_MAX: usize = 2_000_000;

/// One line of history.jsonl, kept structured for the report.
#[derive(Clone, Debug)]
pub struct Event {
    pub process: u64,
    pub kind: &'static str,
    pub f: String,
    pub key: Option<String>,
    pub value: Value,
    pub time_ns: u64,
    pub error: Option<String>,
}

impl Event {
    pub fn to_json(&self) -> Value {
        let mut line = json!({
            "process": self.process,
            "type": self.kind,
            "f": self.f,
            "value": self.value,
            "time": self.time_ns,
        });
        if let Some(key) = &self.key {
            line["key"] = json!(key);
        }
        if let Some(error) = &self.error {
            line["error"] = json!(error);
        }
        line
    }
}

/// One fault (or heal) the nemesis applied.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub time_ns: u64,
    /// `start` or `end`.
    pub phase: &'static str,
    pub kind: String,
    pub detail: String,
}

pub struct Recorder {
    started: Instant,
    events: Mutex<Vec<Event>>,
    faults: Mutex<Vec<FaultRecord>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            started: Instant::now(),
            events: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn full(&self) -> bool {
        self.lock_events().len() >= EVENTS_MAX
    }

    fn lock_events(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_faults(&self) -> std::sync::MutexGuard<'_, Vec<FaultRecord>> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an event; its time is taken under the lock so times never go backwards.
    /// Returns that time (ns since the run's start).
    pub fn record(
        &self,
        process: u64,
        kind: &'static str,
        f: &str,
        key: Option<&str>,
        value: Value,
        error: Option<String>,
    ) -> u64 {
        assert!(matches!(kind, "invoke" | "ok" | "fail" | "info"));
        let mut events = self.lock_events();
        let time_ns = self.now_ns();
        events.push(Event {
            process,
            kind,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            time_ns,
            error,
        });
        time_ns
    }

    pub fn fault(&self, phase: &'static str, kind: &str, detail: String) {
        assert!(matches!(phase, "start" | "end" | "instant"));
        let mut faults = self.lock_faults();
        let time_ns = self.now_ns();
        faults.push(FaultRecord {
            time_ns,
            phase,
            kind: kind.to_string(),
            detail,
        });
    }

    pub fn events(&self) -> Vec<Event> {
        self.lock_events().clone()
    }

    pub fn faults(&self) -> Vec<FaultRecord> {
        self.lock_faults().clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// The history as JSON lines (what `keel check` reads).
pub fn to_jsonl(events: &[Event]) -> String {
    let mut out = String::with_capacity(events.len() * 96);
    for event in events {
        out.push_str(&event.to_json().to_string());
        out.push('\n');
    }
    out
}

pub fn faults_to_jsonl(faults: &[FaultRecord]) -> String {
    let mut out = String::new();
    for fault in faults {
        let line = json!({
            "process": "nemesis",
            "type": "info",
            "f": fault.kind,
            "phase": fault.phase,
            "value": fault.detail,
            "time": fault.time_ns,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}
