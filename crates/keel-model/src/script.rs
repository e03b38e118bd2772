//! Scripts: the model's actions as text, one per line, in the same format a violation trace is
//! printed in (`Action`'s `Display`). A script line is resolved against the state it runs in,
//! so a printed trace replays as is (`keel model --script FILE`), and the named prefixes below
//! are written in it too.
//!
//! A prefix is a short, real execution from boot (every action goes through the same `apply`
//! and the same property checks as explored ones) that brings the cluster to an ordinary
//! situation (a leader elected; an entry only its leader holds; a leader holding a lease), so
//! that exhaustive search starts there instead of at boot. The bugs in the commit rule, the
//! append check and the read paths need 12-16 actions from boot; the 3-7 actions of a prefix
//! are the part every such path shares, and the search finds the rest (7-10 actions) on its
//! own. Prefix actions cost no budget; the bounds apply to what is explored after them.
//! Everything a prefix skips (other first elections) is covered by searches from boot.

use crate::action::{conf_change_for, short_message, Action};
use crate::state::State;
use keel_core::{NodeId, ReadMode};

/// A named situation and the script that reaches it from boot.
pub struct Prefix {
    pub name: &'static str,
    pub about: &'static str,
    pub script: &'static [&'static str],
}

/// Lines of a script, at most.
pub const SCRIPT_LINES_MAX: usize = 10_000;

pub const PREFIXES: &[Prefix] = &[
    Prefix {
        name: "leader-elected",
        about: "node 1 won term 1 with node 2's vote; its no-op is on its way to nodes 2 and 3",
        script: &["tick 1", "deliver 1->2 Vote t1", "deliver 2->1 VoteResp t1"],
    },
    Prefix {
        name: "lone-entry",
        about: "node 1 won term 1 with node 3's vote, and the network lost its no-op to both \
                followers: an entry of term 1 that only node 1 holds (the start of Raft's \
                Figure 8)",
        script: &[
            "tick 1",
            "deliver 1->3 Vote t1",
            "deliver 3->1 VoteResp t1",
            "drop 1->2 App t1",
            "drop 1->3 App t1",
        ],
    },
    Prefix {
        name: "leased-leader",
        about: "node 1 won term 1 with node 2's vote and committed its no-op on nodes 1 and 2, \
                so it holds a lease; the network lost everything it sent to node 3",
        script: &[
            "tick 1",
            "deliver 1->2 Vote t1",
            "deliver 2->1 VoteResp t1",
            "drop 1->3 Vote t1",
            "drop 1->3 App t1",
            "deliver 1->2 App t1",
            "deliver 2->1 AppResp t1",
        ],
    },
];

pub fn prefix_named(name: &str) -> Option<&'static Prefix> {
    PREFIXES.iter().find(|p| p.name == name)
}

/// The lines of a script text that hold actions: blank lines, `#` comments and the `model ...`
/// header of a printed trace are skipped; leading whitespace and a `N.` numbering are ignored.
pub fn script_lines(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in text.lines() {
        let mut line = raw.trim();
        if let Some((num, rest)) = line.split_once(". ") {
            if !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()) {
                line = rest.trim();
            }
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with("model ") {
            continue;
        }
        if out.len() >= SCRIPT_LINES_MAX {
            return Err(format!("a script holds at most {SCRIPT_LINES_MAX} actions"));
        }
        out.push(line.to_string());
    }
    Ok(out)
}

fn node_arg(word: Option<&str>, s: &State, line: &str) -> Result<NodeId, String> {
    let id: NodeId = word
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("{line:?}: expected a node id"))?;
    if id == 0 || id as usize > s.hosts.len() {
        return Err(format!("{line:?}: no node {id} in this model"));
    }
    Ok(id)
}

/// The first in-flight message whose printed form starts with the words of `pattern`.
fn find_message(s: &State, pattern: &[&str], line: &str) -> Result<keel_core::Message, String> {
    s.net
        .iter()
        .find(|m| {
            let text = short_message(m);
            let words: Vec<&str> = text.split_whitespace().collect();
            words.len() >= pattern.len() && words[..pattern.len()] == *pattern
        })
        .cloned()
        .ok_or_else(|| {
            let in_flight: Vec<String> = s.net.iter().map(short_message).collect();
            format!(
                "{line:?}: no such message in flight (in flight: {})",
                in_flight.join("; ")
            )
        })
}

/// Resolves one script line to an action enabled by its form in `s` (budgets aside).
pub fn parse_action(line: &str, s: &State) -> Result<Action, String> {
    let mut words = line.split_whitespace();
    let verb = words.next().ok_or("empty script line")?;
    match verb {
        "deliver" | "drop" | "duplicate" => {
            let pattern: Vec<&str> = words.collect();
            if pattern.is_empty() {
                return Err(format!("{line:?}: expected a message (FROM->TO KIND ...)"));
            }
            let m = find_message(s, &pattern, line)?;
            Ok(match verb {
                "deliver" => Action::Deliver(m),
                "drop" => Action::Drop(m),
                _ => Action::Duplicate(m),
            })
        }
        "tick" => Ok(Action::Tick(node_arg(words.next(), s, line)?)),
        "persist" => {
            let id = node_arg(words.next(), s, line)?;
            if s.host(id).pending.is_empty() {
                return Err(format!("{line:?}: node {id} has no pending write"));
            }
            Ok(Action::Persist(id))
        }
        "crash-restart" => Ok(Action::Crash(node_arg(words.next(), s, line)?)),
        "snapshot" => Ok(Action::Snapshot(node_arg(words.next(), s, line)?)),
        "propose" => {
            let id = node_arg(words.next(), s, line)?;
            let value = words
                .next()
                .and_then(|w| w.strip_prefix('v'))
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("{line:?}: expected a value vN"))?;
            Ok(Action::Propose(id, value))
        }
        "read" => {
            let id = node_arg(words.next(), s, line)?;
            let mode = match words.next() {
                Some("lease") => ReadMode::Lease,
                Some("read-index") => ReadMode::ReadIndex,
                _ => return Err(format!("{line:?}: expected lease or read-index")),
            };
            Ok(Action::Read(id, mode))
        }
        "transfer-leader" => {
            let id = node_arg(words.next(), s, line)?;
            let target = node_arg(words.next(), s, line)?;
            Ok(Action::Transfer(id, target))
        }
        "clock" => {
            let id = node_arg(words.next(), s, line)?;
            let offset: i64 = words
                .next()
                .and_then(|w| w.strip_prefix('+').unwrap_or(w).parse().ok())
                .ok_or_else(|| format!("{line:?}: expected an offset in ms"))?;
            let u = s.host(id).node.config().clock_uncertainty_ms as i64;
            if offset.abs() > u {
                return Err(format!("{line:?}: offset beyond the uncertainty {u} ms"));
            }
            Ok(Action::Clock(id, offset))
        }
        "drift" => {
            let id = node_arg(words.next(), s, line)?;
            let rate: i64 = words
                .next()
                .and_then(|w| w.strip_prefix('+').unwrap_or(w).parse().ok())
                .ok_or_else(|| format!("{line:?}: expected a rate in ppm"))?;
            // A replay may drift beyond the configured bound (--drift-ppm explores that).
            if rate.abs() >= 1_000_000 {
                return Err(format!(
                    "{line:?}: a monotonic clock cannot stop or run backwards"
                ));
            }
            Ok(Action::Drift(id, rate))
        }
        "conf-change" => {
            // The model proposes one change per state; the printed change is informative.
            let id = node_arg(words.next(), s, line)?;
            let c = conf_change_for(s, s.host(id))
                .ok_or_else(|| format!("{line:?}: no membership change to propose"))?;
            Ok(Action::Conf(id, c))
        }
        _ => Err(format!("{line:?}: unknown action {verb:?}")),
    }
}
