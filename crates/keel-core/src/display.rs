//! One-line text forms of messages, entries and memberships: what the scenario tests print
//! and match (their golden files are written in it) and what the model checker's replays
//! name a message by. Display only; nothing parses it back.

use std::collections::BTreeSet;
use std::fmt;

use crate::message::{Body, Message};
use crate::quorum::Membership;
use crate::types::{Entry, EntryKind, NodeId};

/// Entries listed in one message line at most; the rest are counted.
pub const ENTRIES_PRINTED_MAX: usize = 12;
/// Payloads longer than this are shortened to their first 16 bytes and their length.
const PAYLOAD_PRINTED_BYTES_MAX: usize = 24;

fn ids(ids: &BTreeSet<NodeId>) -> String {
    let v: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    format!("({})", v.join(","))
}

impl fmt::Display for Membership {
    /// `voters=(1,2,3)`, `voters=(1,2,4)&&(1,2,3)` while joint, ` learners=(5)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "voters={}", ids(&self.voters))?;
        if !self.voters_outgoing.is_empty() {
            write!(f, "&&{}", ids(&self.voters_outgoing))?;
        }
        if !self.learners.is_empty() {
            write!(f, " learners={}", ids(&self.learners))?;
        }
        Ok(())
    }
}

impl fmt::Display for Entry {
    /// `INDEX@tTERM noop`, `INDEX@tTERM "payload"`, `INDEX@tTERM conf[voters=(..)]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@t{} ", self.index, self.term)?;
        match &self.kind {
            EntryKind::Noop => f.write_str("noop"),
            EntryKind::Normal(d) => write!(f, "{:?}", short_payload(d)),
            EntryKind::Config(m) => write!(f, "conf[{m}]"),
        }
    }
}

/// A payload as text, shortened past `PAYLOAD_PRINTED_BYTES_MAX` bytes.
pub fn short_payload(d: &[u8]) -> String {
    let s = String::from_utf8_lossy(d).to_string();
    if s.len() > PAYLOAD_PRINTED_BYTES_MAX {
        let cut = (0..=16).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}..({} bytes)", &s[..cut], s.len())
    } else {
        s
    }
}

/// `[1@t1 noop, 2@t1 "a"]`, at most `ENTRIES_PRINTED_MAX` of them.
pub fn entries(es: &[Entry]) -> String {
    let mut parts: Vec<String> = es
        .iter()
        .take(ENTRIES_PRINTED_MAX)
        .map(|e| e.to_string())
        .collect();
    if es.len() > ENTRIES_PRINTED_MAX {
        parts.push(format!("... {} more", es.len() - ENTRIES_PRINTED_MAX));
    }
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Message {
    /// One line, as the scenario tests and the model checker's replays print a message:
    /// `FROM->TO Kind term=T details`. Payloads and long entry lists are shortened.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self;
        let head = format!("{}->{} {} term={}", m.from, m.to, m.kind_name(), m.term);
        let rest = match &m.body {
            Body::PreVote {
                last_index,
                last_term,
            }
            | Body::Vote {
                last_index,
                last_term,
                transfer: false,
            } => {
                format!("last={last_index}@t{last_term}")
            }
            Body::Vote {
                last_index,
                last_term,
                transfer: true,
            } => {
                format!("last={last_index}@t{last_term} transfer")
            }
            Body::PreVoteResponse { granted } | Body::VoteResponse { granted } => {
                (if *granted { "granted" } else { "rejected" }).to_string()
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                format!(
                    "prev={prev_index}@t{prev_term} commit={commit} entries={}",
                    self::entries(entries)
                )
            }
            Body::AppendResponse {
                index,
                reject: None,
                repairing,
            } => format!("ok index={index}{}", repairing_tag(*repairing)),
            Body::AppendResponse {
                index,
                reject: Some(h),
                repairing,
            } => {
                format!(
                    "reject index={index} hint=(index={} term={}){}",
                    h.index,
                    h.term,
                    repairing_tag(*repairing)
                )
            }
            Body::Heartbeat { commit, round } => format!("commit={commit} round={round}"),
            Body::HeartbeatResponse {
                round,
                last_index,
                repairing,
            } => format!(
                "round={round} last={last_index}{}",
                repairing_tag(*repairing)
            ),
            Body::InstallSnapshot {
                meta,
                offset,
                total_bytes,
                chunk,
                done,
                ..
            } => format!(
                "snap={}@t{} cfg=v{} bytes={}..{}/{} done={}",
                meta.index,
                meta.term,
                meta.config_version,
                offset,
                offset + chunk.len() as u64,
                total_bytes,
                done
            ),
            Body::InstallSnapshotResponse {
                offset,
                index,
                done,
                rejected,
            } => {
                format!("offset={offset} index={index} done={done} rejected={rejected}")
            }
            Body::TimeoutNow => String::new(),
        };
        if rest.is_empty() {
            f.write_str(&head)
        } else {
            write!(f, "{head} {rest}")
        }
    }
}

fn repairing_tag(repairing: bool) -> &'static str {
    if repairing {
        " repairing"
    } else {
        ""
    }
}
