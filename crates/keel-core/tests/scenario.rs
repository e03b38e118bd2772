//! Data-driven scenario tests with golden output, in the style of etcd-raft's interaction tests.
//!
//! Every file in `tests/scenarios/*.txt` is a script: one command per line, `#` comments, and
//! after each command its expected output:
//!
//! ```text
//! # a comment
//! add-nodes 3
//! ----
//! ok
//!
//! campaign 1
//! ----
//! ...
//! ```
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the expected output; otherwise it must match exactly and
//! the test fails with a diff per mismatching block. The harness is a tiny driver for
//! `keel_core::Node` that follows the driver contract in node.rs to the letter: writes go to a
//! simulated disk as *pending* and become durable only on `persist` (a `crash` loses pending
//! writes), messages go to a network queue and move only on `deliver-msgs`/`stabilize`,
//! committed entries are applied at once to a trivial application (the list of applied
//! payloads). After every event the `SafetyMonitor` checks the node, and any violation is printed
//! into the output as a `VIOLATION` line, so a golden file would show it.
//!
//! Time: one true clock for the whole world; every node's monotonic and wall clocks move with
//! it (plus any skew `set-clock` gives a node). `tick NODE ms=..` lets time pass for everyone
//! and fires only that node's timers; `campaign NODE` does the same in 10 ms steps until the
//! node starts an election.
//!
//! Any `VIOLATION`, core panic or `CORE BUG` line fails the `scenarios` test even if the golden
//! file contains it. Scripts that reproduce open core bugs live in `tests/bugs/` and run only
//! with `-- --ignored` (they fail until the bug is fixed). `quiet=true` on any command keeps only
//! such alarm lines. `SCENARIO=name` runs only the files whose path contains `name`.
//!
//! Notation in the output: an entry is `index@tterm kind`, e.g. `5@t2 "x"` or `3@t1 noop`;
//! indented lines are what a node did in reaction (`write#N` = a durable write it issued,
//! `send` = a message it released, `apply`, `read`, `note`). Commands are listed, with their
//! arguments, in `World::run_command`.

use keel_core::invariants::SafetyMonitor;
use keel_core::{
    Body, ConfChange, Config, Entry, EntryKind, HardState, Index, Membership, Message, Mutant,
    Node, NodeId, Note, ReadMode, ReadPath, Restored, Role, Snapshot, SnapshotMeta, Stamp, Term,
    Time, Write,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Bounds on the harness's own loops.
const READY_ROUNDS_MAX: usize = 100;
const STABILIZE_ROUNDS_MAX: usize = 200;
const NETWORK_MESSAGES_MAX: usize = 100_000;
const WALL_START_MS: u64 = 10_000;

// ----- The simulated disk and host -----

#[derive(Default)]
struct Disk {
    hard_state: HardState,
    /// The bootstrap configuration (used when no snapshot was ever written).
    base: SnapshotMeta,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    /// Issued but not yet durable writes, in id order.
    pending: VecDeque<Write>,
}

impl Disk {
    fn apply(&mut self, w: Write) {
        if let Some(s) = w.snapshot {
            self.snapshot = Some(s);
        }
        if let Some(t) = w.truncate_from {
            self.entries.retain(|e| e.index < t);
        }
        for e in w.entries {
            self.entries.retain(|x| x.index < e.index);
            self.entries.push(e);
        }
        if let Some(hs) = w.hard_state {
            self.hard_state = hs;
        }
        if let Some(c) = w.compact_to {
            self.entries.retain(|e| e.index > c);
        }
    }

    fn restored(&self) -> Restored {
        let meta = self
            .snapshot
            .as_ref()
            .map_or_else(|| self.base.clone(), |s| s.meta.clone());
        let entries = self
            .entries
            .iter()
            .filter(|e| e.index > meta.index)
            .cloned()
            .collect();
        Restored {
            hard_state: self.hard_state,
            snapshot: Some(meta),
            entries,
        }
    }
}

struct Host {
    cfg: Config,
    node: Option<Node>,
    disk: Disk,
    mono_ms: u64,
    wall_ms: u64,
    trusted: bool,
    /// Monotonic rate (`set-clock N rate-ppm=R`): (true time when set, reading then, ppm).
    mono_rate: (u64, u64, i64),
    /// The application: payloads of applied normal entries, in order.
    app: Vec<String>,
}

impl Host {
    fn time(&self) -> Time {
        Time {
            mono_ms: self.mono_ms,
            wall_ms: self.wall_ms,
            wall_trusted: self.trusted,
        }
    }
}

// ----- Formatting -----

fn fmt_membership(m: &Membership) -> String {
    m.to_string()
}

fn fmt_entry(e: &Entry) -> String {
    e.to_string()
}

fn fmt_entries(es: &[Entry]) -> String {
    keel_core::display::entries(es)
}

fn fmt_msg(m: &Message) -> String {
    m.to_string()
}

/// Equal up to runs of whitespace (a command line is split on whitespace).
fn same_text(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

fn fmt_write(w: &Write) -> String {
    let mut s = format!("write#{}", w.id);
    if let Some(snap) = &w.snapshot {
        let _ = write!(s, " snapshot={}@t{}", snap.meta.index, snap.meta.term);
    }
    if let Some(t) = w.truncate_from {
        let _ = write!(s, " truncate-from={t}");
    }
    if !w.entries.is_empty() {
        let _ = write!(s, " entries={}", fmt_entries(&w.entries));
    }
    if let Some(hs) = w.hard_state {
        let _ = write!(s, " {}", fmt_hs(&hs));
    }
    if let Some(c) = w.compact_to {
        let _ = write!(s, " compact-to={c}");
    }
    if w.repair_completed {
        s.push_str(" repair-completed");
    }
    s
}

fn fmt_hs(hs: &HardState) -> String {
    let vote = hs.vote.map_or("-".to_string(), |v| v.to_string());
    format!("hs(term={} vote={} commit={})", hs.term, vote, hs.commit)
}

fn fmt_note(n: &Note) -> String {
    match n {
        Note::BecameLeader { term } => format!("became leader in term {term}"),
        Note::SteppedDown { term, reason } => format!("stepped down in term {term}: {reason}"),
        Note::LeaderChanged { term, leader } => {
            format!(
                "leader is {} in term {term}",
                leader.map_or("none".to_string(), |l| l.to_string())
            )
        }
        Note::ConfigCommitted { index, membership } => {
            format!("config v{index} committed: {}", fmt_membership(membership))
        }
        Note::SnapshotInstalled { index, term } => format!("snapshot {index}@t{term} installed"),
        Note::SnapshotInstallFailed { reason } => format!("snapshot install failed: {reason}"),
        Note::TransferStarted { target } => format!("leadership transfer to {target} started"),
        Note::TransferAborted { target } => format!("leadership transfer to {target} aborted"),
        Note::RepairCompleted { index, term } => {
            format!("repair completed: caught up to {index}@t{term}")
        }
    }
}

fn path_name(p: ReadPath) -> &'static str {
    match p {
        ReadPath::ReadIndex => "read-index",
        ReadPath::Lease => "lease",
        ReadPath::InheritedLease => "inherited-lease",
    }
}

// ----- Argument parsing -----

struct Args {
    positional: Vec<String>,
    keyed: BTreeMap<String, String>,
    /// Every argument as written, space-separated (for commands that take a message's text).
    raw: String,
}

impl Args {
    fn parse(tokens: &[&str]) -> Args {
        let mut positional = Vec::new();
        let mut keyed = BTreeMap::new();
        for t in tokens {
            match t.split_once('=') {
                Some((k, v)) if !t.starts_with('(') => {
                    keyed.insert(k.to_string(), v.to_string());
                }
                _ => positional.push(t.to_string()),
            }
        }
        Args {
            positional,
            keyed,
            raw: tokens.join(" "),
        }
    }

    fn pos(&self, i: usize, what: &str) -> Result<&str, String> {
        self.positional
            .get(i)
            .map(|s| s.as_str())
            .ok_or_else(|| format!("missing argument: {what}"))
    }

    fn id(&self, i: usize) -> Result<NodeId, String> {
        let s = self.pos(i, "node id")?;
        s.parse().map_err(|_| format!("bad node id {s:?}"))
    }

    fn u64_or(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.keyed.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("bad number for {key}: {v:?}")),
        }
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>, String> {
        self.keyed
            .get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("bad number for {key}: {v:?}"))
            })
            .transpose()
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.keyed.get(key).map(|s| s.as_str()) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("bad boolean for {key}: {v:?}")),
        }
    }
}

fn parse_list(s: &str) -> Result<Vec<u64>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| format!("expected (a,b,..), got {s:?}"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| format!("bad number {x:?} in {s:?}"))
        })
        .collect()
}

/// `+ms`, `-ms` (relative) or a plain number (absolute).
fn parse_clock(s: &str, current: u64) -> Result<u64, String> {
    let bad = || format!("bad clock value {s:?}");
    if let Some(d) = s.strip_prefix('+') {
        Ok(current + d.parse::<u64>().map_err(|_| bad())?)
    } else if let Some(d) = s.strip_prefix('-') {
        Ok(current.saturating_sub(d.parse::<u64>().map_err(|_| bad())?))
    } else {
        s.parse().map_err(|_| bad())
    }
}

/// `add(4,5)remove(2,3)` (either part optional).
fn parse_replace(s: &str) -> Result<ConfChange, String> {
    let mut add_voters = Vec::new();
    let mut remove_voters = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('(')
            .ok_or_else(|| format!("bad replace spec {s:?}"))?;
        let (list, tail) = after
            .split_once(')')
            .ok_or_else(|| format!("bad replace spec {s:?}"))?;
        let ids = parse_list(&format!("({list})"))?;
        match name {
            "add" => add_voters = ids,
            "remove" => remove_voters = ids,
            _ => return Err(format!("bad replace part {name:?}")),
        }
        rest = tail;
    }
    Ok(ConfChange::Replace {
        add_voters,
        remove_voters,
    })
}

// ----- The world -----

struct MsgFilter {
    from: Option<NodeId>,
    to: Option<NodeId>,
    kinds: Option<Vec<String>>,
}

impl MsgFilter {
    fn parse(a: &Args) -> Result<MsgFilter, String> {
        let kinds = a
            .keyed
            .get("type")
            .map(|s| s.split(',').map(|k| k.to_string()).collect());
        Ok(MsgFilter {
            from: a.opt_u64("from")?,
            to: a.opt_u64("to")?,
            kinds,
        })
    }

    fn matches(&self, m: &Message) -> bool {
        self.from.is_none_or(|f| f == m.from)
            && self.to.is_none_or(|t| t == m.to)
            && self
                .kinds
                .as_ref()
                .is_none_or(|ks| ks.iter().any(|k| k == m.kind_name()))
    }
}

#[derive(Default)]
struct World {
    hosts: BTreeMap<NodeId, Host>,
    net: VecDeque<Message>,
    /// Groups of a partition: messages between different groups are dropped on delivery.
    partition: Option<Vec<BTreeSet<NodeId>>>,
    monitor: SafetyMonitor,
    out: Vec<String>,
    /// True time since the start. Every node's clocks move with it (plus any skew `set-clock`
    /// gave them); `tick NODE` additionally fires that node's timers.
    elapsed_ms: u64,
    /// Report when `has_ready()` says nothing is ready but `ready()` returns output.
    check_has_ready: bool,
    /// `add-nodes ... sync-disk=true`: every write is durable (and `persisted` called) as soon
    /// as `ready()` hands it out, as the model checker's default disks do.
    sync_disk: bool,
    /// `add-nodes ... wall-start=MS`: wall clocks start here instead of `WALL_START_MS`.
    wall_start_ms: Option<u64>,
    /// Read freshness: per node, its own proposals (index -> term) not yet applied by it.
    proposals: BTreeMap<NodeId, BTreeMap<Index, Term>>,
    /// Highest index of a write acknowledged to its client (applied by its proposer in the term
    /// it was proposed in).
    acked_max: Index,
    /// Per read id: the acknowledged index a read must reflect (`acked_max` when it began).
    read_required: BTreeMap<u64, Index>,
}

impl World {
    fn line(&mut self, s: impl Into<String>) {
        self.out.push(s.into());
    }

    fn advance(&mut self, ms: u64) {
        self.elapsed_ms += ms;
        for h in self.hosts.values_mut() {
            let (base, at_base, rate) = h.mono_rate;
            if rate == 0 {
                h.mono_ms += ms;
            } else {
                // Drifting: read from where the rate was set, as the model checker does.
                let scaled =
                    (self.elapsed_ms - base) as i128 * (1_000_000 + rate as i128) / 1_000_000;
                let mono = at_base + scaled as u64;
                assert!(mono >= h.mono_ms, "the monotonic clock never goes back");
                h.mono_ms = mono;
            }
            h.wall_ms += ms;
        }
    }

    fn host(&mut self, id: NodeId) -> Result<&mut Host, String> {
        self.hosts
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    fn live_node(&mut self, id: NodeId) -> Result<(&mut Node, Time), String> {
        let h = self.host(id)?;
        let t = h.time();
        match h.node.as_mut() {
            Some(n) => Ok((n, t)),
            None => Err(format!("node {id} is down")),
        }
    }

    /// Runs one event on a node, checks safety, and drives its Ready to quiescence.
    fn event<R>(&mut self, id: NodeId, f: impl FnOnce(&mut Node, Time) -> R) -> Result<R, String> {
        let (node, now) = self.live_node(id)?;
        let r = f(node, now);
        self.observe(id);
        self.drain_ready(id);
        Ok(r)
    }

    fn observe(&mut self, id: NodeId) {
        let Some(node) = self.hosts.get(&id).and_then(|h| h.node.as_ref()) else {
            return;
        };
        if let Err(v) = self.monitor.observe(node) {
            self.out.push(format!("VIOLATION {v}"));
        }
    }

    fn drain_ready(&mut self, id: NodeId) {
        for _ in 0..READY_ROUNDS_MAX {
            let host = self.hosts.get_mut(&id).expect("host exists");
            let now = host.time();
            let node = host.node.as_mut().expect("live");
            // The harness calls `ready()` until it comes back empty rather than trusting
            // `has_ready()`, and reports a CORE BUG line when `has_ready()` said false but
            // `ready()` had output (on in every script; see scenarios/has_ready_reads.txt).
            let promised = node.has_ready();
            let rd = node.ready();
            if rd.is_empty() {
                return;
            }
            let mut lines = Vec::new();
            if !promised && self.check_has_ready {
                lines.push(
                    "CORE BUG: has_ready() was false but ready() returned output".to_string(),
                );
            }
            if let Some(s) = &rd.restore {
                host.app = decode_app(&s.data);
                lines.push(format!(
                    "restore snapshot {}@t{} app={}",
                    s.meta.index,
                    s.meta.term,
                    fmt_app(&host.app)
                ));
            }
            for w in &rd.writes {
                lines.push(fmt_write(w));
                if self.sync_disk {
                    host.disk.apply(w.clone());
                    node.persisted(now, w.id);
                } else {
                    host.disk.pending.push_back(w.clone());
                }
            }
            for m in &rd.messages {
                lines.push(format!("send {}", fmt_msg(m)));
                if let Err(v) = self.monitor.observe_sent(node, m) {
                    lines.push(format!("VIOLATION {v}"));
                }
            }
            let mut last_applied = None;
            let own = self.proposals.entry(id).or_default();
            for e in &rd.committed {
                if let EntryKind::Normal(d) = &e.kind {
                    host.app.push(String::from_utf8_lossy(d).to_string());
                }
                if own.remove(&e.index) == Some(e.term) {
                    self.acked_max = self.acked_max.max(e.index);
                }
                lines.push(format!("apply {}", fmt_entry(e)));
                if let Err(v) = self.monitor.observe_applied(id, e) {
                    lines.push(format!("VIOLATION {v}"));
                }
                last_applied = Some(e.index);
            }
            if let Some(i) = last_applied {
                node.applied(now, i);
            }
            for r in &rd.reads {
                // Read the state, then re-check the lease with a clock reading taken after it.
                let state = fmt_app(&host.app);
                let still = node.lease_read_still_valid(now, r.path);
                let required = self.read_required.remove(&r.id).unwrap_or(0);
                let applied = node.applied_index();
                if still && applied < required {
                    lines.push(format!(
                        "VIOLATION read-freshness: read {} served at applied index {applied}, \
                         but a write acknowledged before it began is at index {required}",
                        r.id
                    ));
                }
                let verdict = if still {
                    format!("-> app={state}")
                } else {
                    "-> lease no longer valid after reading: retry".into()
                };
                lines.push(format!(
                    "read {} ready index={} path={} {verdict}",
                    r.id,
                    r.index,
                    path_name(r.path)
                ));
            }
            for (rid, err) in &rd.failed_reads {
                lines.push(format!("read {rid} failed: {err:?}"));
            }
            for n in &rd.notes {
                lines.push(format!("note {}", fmt_note(n)));
            }
            for l in lines {
                self.out.push(format!("  {id}: {l}"));
            }
            if self.net.len() + rd.messages.len() > NETWORK_MESSAGES_MAX {
                self.out.push("network queue full: messages dropped".into());
            } else {
                self.net.extend(rd.messages);
            }
            self.observe(id);
        }
        self.out.push(format!(
            "  {id}: ready did not quiesce after {READY_ROUNDS_MAX} rounds"
        ));
    }

    fn start_node(&mut self, id: NodeId) -> Result<(), String> {
        self.start_node_with(id, false)
    }

    fn start_node_with(&mut self, id: NodeId, repairing: bool) -> Result<(), String> {
        let host = self.host(id)?;
        let now = host.time();
        let restored = host.disk.restored();
        let mut node = if repairing {
            Node::new_repairing(host.cfg.clone(), restored, now)
        } else {
            Node::new(host.cfg.clone(), restored, now)
        }
        .map_err(|e| format!("restart refused: {e}"))?;
        if let Some(s) = &host.disk.snapshot {
            node.set_snapshot(s.clone());
            host.app = decode_app(&s.data);
        } else {
            host.app.clear();
        }
        host.node = Some(node);
        let node = self.hosts[&id].node.as_ref().expect("just set");
        if let Err(v) = self.monitor.observe_restart(node) {
            self.out.push(format!("VIOLATION {v}"));
        }
        self.observe(id);
        self.drain_ready(id);
        Ok(())
    }

    fn blocked(&self, m: &Message) -> Option<&'static str> {
        if let Some(groups) = &self.partition {
            let g = |id: NodeId| groups.iter().position(|s| s.contains(&id));
            if g(m.from).is_none() || g(m.from) != g(m.to) {
                return Some("partition");
            }
        }
        match self.hosts.get(&m.to) {
            None => Some("no such node"),
            Some(h) if h.node.is_none() => Some("node down"),
            _ => None,
        }
    }

    fn deliver(&mut self, m: Message) {
        if let Some(why) = self.blocked(&m) {
            self.line(format!("{} DROPPED ({why})", fmt_msg(&m)));
            return;
        }
        self.line(fmt_msg(&m));
        let to = m.to;
        let _ = self.event(to, |n, now| n.receive(now, m));
    }

    fn deliver_matching(
        &mut self,
        filter: &MsgFilter,
        drop_kinds: &[String],
        count_max: usize,
        drop_all: bool,
    ) -> usize {
        let queued: Vec<Message> = self.net.drain(..).collect();
        let mut keep = VecDeque::new();
        let mut taken = Vec::new();
        for m in queued {
            if taken.len() < count_max && filter.matches(&m) {
                taken.push(m);
            } else {
                keep.push_back(m);
            }
        }
        self.net = keep;
        let n = taken.len();
        for m in taken {
            if drop_all || drop_kinds.iter().any(|k| k == m.kind_name()) {
                self.line(format!("{} DROPPED", fmt_msg(&m)));
            } else {
                self.deliver(m);
            }
        }
        n
    }

    fn persist(&mut self, id: NodeId, count_max: usize) -> Result<bool, String> {
        assert!(count_max > 0, "persist at least one write");
        let host = self.host(id)?;
        if host.node.is_none() {
            return Err(format!("node {id} is down"));
        }
        let Some(first) = host.disk.pending.front().map(|w| w.id) else {
            return Ok(false);
        };
        let mut last = first;
        for _ in 0..count_max {
            let Some(w) = host.disk.pending.pop_front() else {
                break;
            };
            last = w.id;
            host.disk.apply(w);
        }
        let range = if first == last {
            format!("#{last}")
        } else {
            format!("#{first}..#{last}")
        };
        self.line(format!("{id}: durable {range}"));
        self.event(id, |n, now| n.persisted(now, last))?;
        Ok(true)
    }

    fn add_nodes(&mut self, a: &Args) -> Result<(), String> {
        let n: u64 = a
            .pos(0, "count")?
            .parse()
            .map_err(|_| "bad count".to_string())?;
        let first = self.hosts.keys().next_back().map_or(1, |k| k + 1);
        let ids: Vec<NodeId> = (first..first + n).collect();
        let voters = match a.keyed.get("voters") {
            Some(v) => parse_list(v)?,
            None => ids.clone(),
        };
        let learners = match a.keyed.get("learners") {
            Some(v) => parse_list(v)?,
            None => Vec::new(),
        };
        if let Some(v) = a.keyed.get("sync-disk") {
            self.sync_disk = v == "true";
        }
        if let Some(w) = a.opt_u64("wall-start")? {
            self.wall_start_ms = Some(w);
        }
        let mut membership = Membership::new(voters);
        membership.learners = learners.into_iter().collect();
        membership.validate()?;
        for id in ids {
            let mut cfg = Config::new(id);
            cfg.pre_vote = a.bool_or("pre-vote", cfg.pre_vote)?;
            cfg.check_quorum = a.bool_or("check-quorum", cfg.check_quorum)?;
            cfg.lease_reads = a.bool_or("lease-reads", cfg.lease_reads)?;
            cfg.lease_duration_ms = a.u64_or("lease-ms", cfg.lease_duration_ms)?;
            cfg.lease_renew_interval_ms = a.u64_or("renew-ms", cfg.lease_renew_interval_ms)?;
            cfg.election_timeout_ms = a.u64_or("election-ms", cfg.election_timeout_ms)?;
            cfg.heartbeat_interval_ms = a.u64_or("heartbeat-ms", cfg.heartbeat_interval_ms)?;
            cfg.clock_uncertainty_ms = a.u64_or("uncertainty-ms", cfg.clock_uncertainty_ms)?;
            cfg.inflight_messages_max =
                a.u64_or("inflight", cfg.inflight_messages_max as u64)? as usize;
            cfg.append_entries_max =
                a.u64_or("max-entries", cfg.append_entries_max as u64)? as usize;
            cfg.uncommitted_bytes_max =
                a.u64_or("uncommitted-bytes", cfg.uncommitted_bytes_max as u64)? as usize;
            cfg.message_bytes_max =
                a.u64_or("message-bytes", cfg.message_bytes_max as u64)? as usize;
            cfg.snapshot_chunk_bytes_max =
                a.u64_or("chunk-bytes", cfg.snapshot_chunk_bytes_max as u64)? as usize;
            cfg.compaction_retain_entries = a.u64_or("retain", cfg.compaction_retain_entries)?;
            cfg.clock_drift_ppm_max = a.u64_or("drift-ppm", cfg.clock_drift_ppm_max)?;
            if let Some(base) = a.opt_u64("seed-base")? {
                cfg.random_seed = base ^ id;
            }
            if let Some(name) = a.keyed.get("mutant") {
                if !cfg!(feature = "mutants") {
                    return Err(format!("mutant={name} needs keel-core's feature `mutants`"));
                }
                cfg.mutant =
                    Some(Mutant::from_name(name).ok_or_else(|| format!("no mutant {name:?}"))?);
            }
            cfg.validate()?;
            let base = SnapshotMeta {
                membership: membership.clone(),
                ..Default::default()
            };
            let disk = Disk {
                base,
                ..Default::default()
            };
            let host = Host {
                cfg,
                node: None,
                disk,
                mono_ms: self.elapsed_ms,
                wall_ms: self.wall_start_ms.unwrap_or(WALL_START_MS) + self.elapsed_ms,
                trusted: true,
                mono_rate: (0, 0, 0),
                app: Vec::new(),
            };
            self.hosts.insert(id, host);
            self.start_node(id)?;
        }
        Ok(())
    }

    /// Replaces a node's durable state with a log of the given terms (no-op entries) and restarts
    /// it: the way to build the Raft paper's figure log shapes.
    fn set_log(&mut self, a: &Args) -> Result<(), String> {
        let id = a.id(0)?;
        let terms = parse_list(a.keyed.get("terms").ok_or("missing terms=(..)")?)?;
        let last_term = terms.last().copied().unwrap_or(0);
        let term = a.u64_or("term", last_term)?;
        let commit = a.u64_or("commit", 0)?;
        let host = self.host(id)?;
        host.disk.entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry {
                index: i as u64 + 1,
                term: *t,
                stamp: Stamp::default(),
                kind: EntryKind::Noop,
            })
            .collect();
        host.disk.hard_state = HardState {
            term,
            vote: None,
            commit,
        };
        host.disk.pending.clear();
        host.disk.snapshot = None;
        host.node = None;
        self.start_node(id)
    }

    fn status(&mut self, id: NodeId) -> String {
        let host = self.hosts.get_mut(&id).expect("checked");
        let now = host.time();
        let Some(node) = host.node.as_mut() else {
            return format!("{id}: down");
        };
        let vote = node.vote().map_or("-".into(), |v| v.to_string());
        let leader = node.leader().map_or("-".into(), |v| v.to_string());
        let mut s = format!(
            "{id}: {} term={} vote={} leader={} commit={} applied={} last={} cfg=v{} {}",
            node.role().name(),
            node.term(),
            vote,
            leader,
            node.commit_index(),
            node.applied_index(),
            node.last_index(),
            node.config_version(),
            fmt_membership(node.membership())
        );
        if node.repairing() {
            s.push_str(" repairing");
        }
        if node.role() == Role::Leader {
            let lease = node.lease_read_still_valid(now, ReadPath::Lease);
            let inherited = node.lease_read_still_valid(now, ReadPath::InheritedLease);
            let _ = write!(
                s,
                " lease={}",
                if lease {
                    "valid"
                } else if inherited {
                    "inherited"
                } else {
                    "none"
                }
            );
            if let Some((lo, hi)) = node.limbo_range() {
                let _ = write!(s, " limbo={lo}..{hi}");
            }
        }
        s
    }

    fn parse_nodes(&self, s: &str) -> Result<Vec<NodeId>, String> {
        if s == "all" {
            Ok(self.hosts.keys().copied().collect())
        } else {
            Ok(vec![s.parse().map_err(|_| format!("bad node {s:?}"))?])
        }
    }

    fn run_command(&mut self, cmd: &str, a: &Args) -> Result<(), String> {
        match cmd {
            // add-nodes N [voters=(..)] [learners=(..)] [pre-vote=..] [check-quorum=..]
            //   [lease-reads=..] [lease-ms=..] [renew-ms=..] [election-ms=..] [heartbeat-ms=..]
            //   [uncertainty-ms=..] [inflight=..] [max-entries=..] [uncommitted-bytes=..]
            //   [message-bytes=..] [chunk-bytes=..] [retain=..]
            "add-nodes" => self.add_nodes(a),
            // set-log NODE terms=(1,1,4) [term=T] [commit=C]
            "set-log" => self.set_log(a),
            // tick NODE|all [ms=100]: time passes for everyone; then call Node::tick on NODE (or all).
            "tick" => {
                let ids = self.parse_nodes(a.pos(0, "node")?)?;
                let ms = a.u64_or("ms", 100)?;
                self.advance(ms);
                for id in ids {
                    let h = self.host(id)?;
                    if h.node.is_some() {
                        self.event(id, |n, now| n.tick(now))?;
                    }
                }
                Ok(())
            }
            // set-clock NODE [wall=+ms|-ms|abs] [mono=+ms] [trusted=true|false] [rate-ppm=±R]
            // (rate-ppm: from now on the monotonic clock runs R ppm fast or slow)
            "set-clock" => {
                let id = a.id(0)?;
                let elapsed = self.elapsed_ms;
                let h = self.host(id)?;
                if let Some(w) = a.keyed.get("wall") {
                    h.wall_ms = parse_clock(w, h.wall_ms)?;
                }
                if let Some(m) = a.keyed.get("mono") {
                    let mono = parse_clock(m, h.mono_ms)?;
                    if mono < h.mono_ms {
                        return Err("the monotonic clock never goes back".into());
                    }
                    h.mono_ms = mono;
                }
                h.trusted = a.bool_or("trusted", h.trusted)?;
                // A drifting clock continues from its current reading.
                h.mono_rate = (elapsed, h.mono_ms, h.mono_rate.2);
                if let Some(r) = a.keyed.get("rate-ppm") {
                    let rate: i64 = r
                        .strip_prefix('+')
                        .unwrap_or(r)
                        .parse()
                        .map_err(|_| format!("bad rate-ppm {r:?}"))?;
                    if rate.abs() >= 1_000_000 {
                        return Err("a monotonic clock never runs backwards".into());
                    }
                    h.mono_rate = (elapsed, h.mono_ms, rate);
                }
                let (m, w, t) = (h.mono_ms, h.wall_ms, h.trusted);
                self.line(format!("{id}: mono={m} wall={w} trusted={t}"));
                Ok(())
            }
            // campaign NODE: tick it in 10 ms steps until its election timer fires and it starts
            // a (pre-)election (at most twice its election timeout).
            "campaign" => {
                let id = a.id(0)?;
                let (node, _) = self.live_node(id)?;
                if node.role() == Role::Leader {
                    return Err(format!("node {id} is the leader"));
                }
                let started = node.stats().elections_started;
                let limit = 2 * node.config().election_timeout_ms + 10;
                let at = self.out.len();
                let mut waited = 0;
                while waited < limit {
                    waited += 10;
                    self.advance(10);
                    let now_started = self.event(id, |n, now| {
                        n.tick(now);
                        n.stats().elections_started
                    })?;
                    if now_started > started {
                        self.out
                            .insert(at, format!("{id}: campaigned after +{waited}ms"));
                        return Ok(());
                    }
                }
                self.line(format!("{id}: did not campaign within +{waited}ms"));
                Ok(())
            }
            // propose NODE DATA [bytes=N] [count=N] (bytes: pad the payload to N bytes;
            // count: propose N entries DATA1..DATAN)
            "propose" => {
                let id = a.id(0)?;
                let base = a.pos(1, "data")?.to_string();
                // count=N proposes N entries DATA1..DATAN.
                let count = a.opt_u64("count")?;
                for k in 1..=count.unwrap_or(1) {
                    let mut data = match count {
                        Some(_) => format!("{base}{k}").into_bytes(),
                        None => base.clone().into_bytes(),
                    };
                    if let Some(n) = a.opt_u64("bytes")? {
                        data.resize(n as usize, b'.');
                    }
                    // The result is printed before the reaction lines it caused.
                    let at = self.out.len();
                    let r = self.event(id, |n, now| n.propose(now, data))?;
                    if let Ok((i, t)) = r {
                        self.proposals.entry(id).or_default().insert(i, t);
                    }
                    let line = match r {
                        Ok((i, t)) => format!("{id}: proposed at {i}@t{t}"),
                        Err(e) => format!("{id}: refused: {e}"),
                    };
                    self.out.insert(at, line);
                }
                Ok(())
            }
            // propose-conf-change NODE add-learner=4|promote=4|remove=3|replace=add(4,5)remove(2,3)
            "propose-conf-change" => {
                let id = a.id(0)?;
                let change = if let Some(v) = a.keyed.get("add-learner") {
                    ConfChange::AddLearner(v.parse().map_err(|_| "bad id")?)
                } else if let Some(v) = a.keyed.get("promote") {
                    ConfChange::Promote(v.parse().map_err(|_| "bad id")?)
                } else if let Some(v) = a.keyed.get("remove") {
                    ConfChange::Remove(v.parse().map_err(|_| "bad id")?)
                } else if let Some(v) = a.keyed.get("replace") {
                    parse_replace(v)?
                } else {
                    return Err("need add-learner=, promote=, remove= or replace=".into());
                };
                let at = self.out.len();
                let r = self.event(id, |n, now| n.propose_conf_change(now, change))?;
                let line = match r {
                    Ok((i, t)) => format!("{id}: proposed at {i}@t{t}"),
                    Err(e) => format!("{id}: refused: {e}"),
                };
                self.out.insert(at, line);
                Ok(())
            }
            // transfer-leader FROM TO
            "transfer-leader" => {
                let id = a.id(0)?;
                let to = a.id(1)?;
                let at = self.out.len();
                let r = self.event(id, |n, now| n.transfer_leader(now, to))?;
                let line = match r {
                    Ok(()) => format!("{id}: transfer to {to} accepted"),
                    Err(e) => format!("{id}: refused: {e}"),
                };
                self.out.insert(at, line);
                Ok(())
            }
            // read NODE ID mode=read-index|lease|inherited
            "read" => {
                let id = a.id(0)?;
                let rid: u64 = a.pos(1, "read id")?.parse().map_err(|_| "bad read id")?;
                let mode = match a
                    .keyed
                    .get("mode")
                    .map(|s| s.as_str())
                    .unwrap_or("read-index")
                {
                    "read-index" => ReadMode::ReadIndex,
                    "lease" => ReadMode::Lease,
                    "inherited" => ReadMode::InheritedLease,
                    m => return Err(format!("bad mode {m:?}")),
                };
                let at = self.out.len();
                self.read_required.insert(rid, self.acked_max);
                let r = self.event(id, |n, now| n.read(now, rid, mode))?;
                let line = match r {
                    Ok(()) => format!("{id}: read {rid} accepted"),
                    Err(e) => format!("{id}: read {rid} refused: {e:?}"),
                };
                self.out.insert(at, line);
                Ok(())
            }
            // deliver-msg|drop-msg|duplicate-msg TEXT: the first queued message printed exactly
            // as TEXT (model checker replays name messages this way).
            "deliver-msg" | "drop-msg" | "duplicate-msg" => {
                let text = &a.raw;
                let pos = self
                    .net
                    .iter()
                    .position(|m| same_text(&fmt_msg(m), text))
                    .ok_or_else(|| format!("no queued message {text:?}"))?;
                match cmd {
                    "deliver-msg" => {
                        let m = self.net.remove(pos).expect("found");
                        self.deliver(m);
                    }
                    "drop-msg" => {
                        let m = self.net.remove(pos).expect("found");
                        self.line(format!("{} DROPPED", fmt_msg(&m)));
                    }
                    _ => {
                        let m = self.net[pos].clone();
                        self.line(format!("{} DUPLICATED", fmt_msg(&m)));
                        self.net.push_back(m);
                    }
                }
                Ok(())
            }
            // deliver-msgs [from=ID] [to=ID] [type=App,Vote,..] [drop=App,..] [count=N]
            "deliver-msgs" => {
                let filter = MsgFilter::parse(a)?;
                let drops: Vec<String> = a
                    .keyed
                    .get("drop")
                    .map_or(Vec::new(), |s| s.split(',').map(String::from).collect());
                let count = a.u64_or("count", u64::MAX)? as usize;
                if self.deliver_matching(&filter, &drops, count, false) == 0 {
                    self.line("no messages");
                }
                Ok(())
            }
            // drop-msgs [from=ID] [to=ID] [type=..] [count=N]
            "drop-msgs" => {
                let filter = MsgFilter::parse(a)?;
                let count = a.u64_or("count", u64::MAX)? as usize;
                if self.deliver_matching(&filter, &[], count, true) == 0 {
                    self.line("no messages");
                }
                Ok(())
            }
            // corrupt-snapshot FROM TO: flip a byte in the first queued snapshot chunk FROM->TO.
            "corrupt-snapshot" => {
                let (from, to) = (a.id(0)?, a.id(1)?);
                for m in self.net.iter_mut() {
                    if m.from == from && m.to == to {
                        if let Body::InstallSnapshot { chunk, .. } = &mut m.body {
                            if let Some(b) = chunk.first_mut() {
                                *b ^= 0xff;
                                self.out.push(format!("corrupted {}", fmt_msg(m)));
                                return Ok(());
                            }
                        }
                    }
                }
                Err("no snapshot chunk queued".into())
            }
            // msgs: list the queued messages without delivering them.
            "msgs" => {
                let lines: Vec<String> = self.net.iter().map(fmt_msg).collect();
                if lines.is_empty() {
                    self.line("no messages");
                }
                self.out.extend(lines);
                Ok(())
            }
            // persist NODE|all [count=N]: make the pending writes (the first N) durable, then
            // tell the node.
            "persist" => {
                let which = a.pos(0, "node")?;
                let mut ids = self.parse_nodes(which)?;
                if which == "all" {
                    ids.retain(|id| self.hosts[id].node.is_some());
                }
                let count = a.u64_or("count", u64::MAX)? as usize;
                for id in ids {
                    if !self.persist(id, count)? {
                        self.line(format!("{id}: nothing to persist"));
                    }
                }
                Ok(())
            }
            // stabilize: persist everything, deliver everything, until quiet.
            "stabilize" => {
                for _ in 0..STABILIZE_ROUNDS_MAX {
                    let mut busy = false;
                    let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
                    for id in ids {
                        let h = &self.hosts[&id];
                        if h.node.is_some() && !h.disk.pending.is_empty() {
                            self.persist(id, usize::MAX)?;
                            busy = true;
                        }
                    }
                    let queued: Vec<Message> = self.net.drain(..).collect();
                    busy |= !queued.is_empty();
                    for m in queued {
                        self.deliver(m);
                    }
                    if !busy {
                        return Ok(());
                    }
                }
                Err(format!("not quiet after {STABILIZE_ROUNDS_MAX} rounds"))
            }
            // partition (1,2) (3,4,5): nodes in different groups (or in none) cannot talk.
            "partition" => {
                let groups = a
                    .positional
                    .iter()
                    .map(|g| parse_list(g).map(|v| v.into_iter().collect()))
                    .collect::<Result<Vec<BTreeSet<NodeId>>, String>>()?;
                self.partition = Some(groups);
                Ok(())
            }
            "heal" => {
                self.partition = None;
                Ok(())
            }
            // crash NODE: the process dies; writes not yet durable are lost.
            "crash" => {
                let id = a.id(0)?;
                let h = self.host(id)?;
                if h.node.take().is_none() {
                    return Err(format!("node {id} is already down"));
                }
                let lost: Vec<String> = h
                    .disk
                    .pending
                    .drain(..)
                    .map(|w| format!("#{}", w.id))
                    .collect();
                h.app.clear();
                self.proposals.remove(&id);
                self.monitor.observe_crash(id);
                let lost = if lost.is_empty() {
                    "none".to_string()
                } else {
                    lost.join(",")
                };
                self.line(format!("{id}: crashed; lost unsynced writes: {lost}"));
                Ok(())
            }
            // restart NODE [damage-after=I] [repair=true]: Node::new from the durable state.
            // damage-after=I: storage lost the synced entries after I (and lowers the commit
            // index to I, as keel-storage does); repair=true: start in repair mode.
            "restart" => {
                let id = a.id(0)?;
                let damage_after = a.opt_u64("damage-after")?;
                let repair = a.bool_or("repair", false)?;
                let host = self.host(id)?;
                if host.node.is_some() {
                    return Err(format!("node {id} is running"));
                }
                if let Some(keep) = damage_after {
                    host.disk.entries.retain(|e| e.index <= keep);
                    host.disk.hard_state.commit = host.disk.hard_state.commit.min(keep);
                    self.line(format!(
                        "{id}: storage discarded synced entries after {keep}"
                    ));
                    self.monitor.observe_storage_damage(id, keep);
                }
                let hs = self.hosts[&id].disk.hard_state;
                let mode = if repair { " in repair mode" } else { "" };
                self.line(format!(
                    "{id}: restarting{mode} from durable {}",
                    fmt_hs(&hs)
                ));
                self.start_node_with(id, repair)
            }
            // snapshot NODE [data=applied-index]: the application snapshots at its applied index.
            "snapshot" => {
                let id = a.id(0)?;
                let (node, _) = self.live_node(id)?;
                let index = node.applied_index();
                // data=applied-index: the model checker's application (its state is the applied
                // index), so a replayed trace sends the same snapshot bytes.
                let (data, sessions) = match a.keyed.get("data").map(|s| s.as_str()) {
                    None => (encode_app(&self.hosts[&id].app), b"sessions".to_vec()),
                    Some("applied-index") => (index.to_le_bytes().to_vec(), Vec::new()),
                    Some(d) => return Err(format!("bad data={d:?}")),
                };
                let r = self.event(id, |n, now| n.snapshot_created(now, index, data, sessions))?;
                let line = match r {
                    Ok(()) => format!("{id}: snapshot at {index}"),
                    Err(e) => format!("{id}: snapshot refused: {e}"),
                };
                self.line(line);
                Ok(())
            }
            // status NODE|all
            "status" => {
                for id in self.parse_nodes(a.pos(0, "node")?)? {
                    self.host(id)?;
                    let s = self.status(id);
                    self.line(s);
                }
                Ok(())
            }
            // log NODE|all: every entry, with the commit point.
            "log" => {
                for id in self.parse_nodes(a.pos(0, "node")?)? {
                    let (node, _) = self.live_node(id)?;
                    let log = node.log();
                    let mut lines = vec![format!(
                        "{id}: snapshot={}@t{} commit={} last={}",
                        log.snapshot_index,
                        log.snapshot_term,
                        log.committed,
                        log.last_index()
                    )];
                    for e in log.entries() {
                        lines.push(format!("  {}", fmt_entry(e)));
                    }
                    self.out.extend(lines);
                }
                Ok(())
            }
            // log-terms NODE|all: the log's shape as a list of terms (like the paper's figures).
            "log-terms" => {
                for id in self.parse_nodes(a.pos(0, "node")?)? {
                    let (node, _) = self.live_node(id)?;
                    let log = node.log();
                    let terms: Vec<String> =
                        log.entries().iter().map(|e| e.term.to_string()).collect();
                    let line =
                        format!("{id}: commit={} terms=[{}]", log.committed, terms.join(" "));
                    self.line(line);
                }
                Ok(())
            }
            // disk NODE: the durable state and the pending writes.
            "disk" => {
                let id = a.id(0)?;
                let d = &self.host(id)?.disk;
                let last = d.entries.last().map_or(0, |e| e.index);
                let snap = d.snapshot.as_ref().map_or("none".to_string(), |s| {
                    format!("{}@t{}", s.meta.index, s.meta.term)
                });
                let pending: Vec<String> = d.pending.iter().map(|w| format!("#{}", w.id)).collect();
                let line = format!(
                    "{id}: durable {} last={} snapshot={} pending=[{}]",
                    fmt_hs(&d.hard_state),
                    last,
                    snap,
                    pending.join(",")
                );
                self.line(line);
                Ok(())
            }
            // stats NODE
            "stats" => {
                let id = a.id(0)?;
                let (node, _) = self.live_node(id)?;
                let s = node.stats();
                let line = format!(
                    "{id}: elections={} won={} snapshots-sent={} snapshots-installed={} snapshot-failures={} proposals-refused={}",
                    s.elections_started,
                    s.leader_terms_won,
                    s.snapshots_sent,
                    s.snapshots_installed,
                    s.snapshot_install_failures,
                    s.proposals_refused
                );
                self.line(line);
                Ok(())
            }
            // app NODE: the application's state (applied payloads).
            "app" => {
                let id = a.id(0)?;
                let s = fmt_app(&self.host(id)?.app);
                self.line(format!("{id}: app={s}"));
                Ok(())
            }
            // check-has-ready: report when has_ready() and ready() disagree (the default).
            "check-has-ready" => {
                self.check_has_ready = true;
                Ok(())
            }
            _ => Err(format!("unknown command {cmd:?}")),
        }
    }
}

fn encode_app(app: &[String]) -> Vec<u8> {
    app.join(",").into_bytes()
}

fn decode_app(data: &[u8]) -> Vec<String> {
    if data.is_empty() {
        return Vec::new();
    }
    String::from_utf8_lossy(data)
        .split(',')
        .map(String::from)
        .collect()
}

fn fmt_app(app: &[String]) -> String {
    let shown: Vec<String> = app
        .iter()
        .map(|s| keel_core::display::short_payload(s.as_bytes()))
        .collect();
    format!("[{}]", shown.join(","))
}

// ----- Script files -----

enum Item {
    /// Comment or blank line, kept verbatim.
    Text(String),
    Block {
        line_no: usize,
        command: String,
        expected: Vec<String>,
    },
}

fn parse_script(text: &str) -> Vec<Item> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            items.push(Item::Text(l.to_string()));
            i += 1;
            continue;
        }
        let line_no = i + 1;
        let command = l.trim().to_string();
        i += 1;
        let mut expected = Vec::new();
        if i < lines.len() && lines[i] == "----" {
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                expected.push(lines[i].to_string());
                i += 1;
            }
        }
        // The blank line(s) that end the block: the writer always emits exactly one.
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        items.push(Item::Block {
            line_no,
            command,
            expected,
        });
    }
    items
}

/// Runs one script; returns the regenerated file text and the mismatches found.
fn run_script(path: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(path).expect("read scenario");
    let items = parse_script(&text);
    let mut world = World {
        check_has_ready: true,
        ..World::default()
    };
    let mut out = String::new();
    let mut mismatches = Vec::new();
    let mut aborted = false;
    for item in items {
        match item {
            Item::Text(t) => {
                out.push_str(&t);
                out.push('\n');
            }
            Item::Block {
                line_no,
                command,
                expected,
            } => {
                let actual = if aborted {
                    vec!["skipped: the core panicked earlier".to_string()]
                } else {
                    let tokens: Vec<&str> = command.split_whitespace().collect();
                    let args = Args::parse(&tokens[1..]);
                    world.out.clear();
                    let result =
                        catch_unwind(AssertUnwindSafe(|| world.run_command(tokens[0], &args)));
                    let mut lines = std::mem::take(&mut world.out);
                    match result {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => lines.push(format!("error: {e}")),
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            lines.push(format!("PANIC in the core: {msg}"));
                            aborted = true;
                        }
                    }
                    if args.keyed.get("quiet").is_some_and(|v| v == "true") {
                        // quiet=true on any command: keep only what must never be hidden.
                        let total = lines.len();
                        lines.retain(|l| {
                            l.contains("VIOLATION")
                                || l.starts_with("error")
                                || l.starts_with("PANIC")
                        });
                        lines.push(format!(
                            "({} lines of output suppressed by quiet=true)",
                            total - lines.len()
                        ));
                    }
                    if lines.is_empty() {
                        lines.push("ok".into());
                    }
                    lines
                };
                if actual != expected {
                    mismatches.push(format!(
                        "{}:{line_no}: {command}\n{}",
                        path.display(),
                        diff_lines(&expected, &actual)
                    ));
                }
                out.push_str(&command);
                out.push_str("\n----\n");
                for l in &actual {
                    out.push_str(l);
                    out.push('\n');
                }
                out.push('\n');
            }
        }
    }
    // One blank line at most at the end.
    while out.ends_with("\n\n") {
        out.pop();
    }
    (out, mismatches)
}

/// A line diff (longest common subsequence): `-` expected only, `+` actual only.
fn diff_lines(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut s = String::new();
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            let _ = writeln!(s, "   {}", expected[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(s, " + {}", actual[j]);
            j += 1;
        } else {
            let _ = writeln!(s, " - {}", expected[i]);
            i += 1;
        }
    }
    s
}

fn scenario_files(subdir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(subdir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenario directory exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

/// Output lines that must never appear in a healthy run.
fn is_alarm(line: &str) -> bool {
    let alarm = line.contains("VIOLATION")
        || line.contains("PANIC in the core")
        || line.contains("CORE BUG");
    alarm && !line.starts_with('#')
}

/// Runs every script in `subdir`; returns golden mismatches and alarm lines.
fn run_dir(subdir: &str) -> (Vec<String>, Vec<String>) {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let only = std::env::var("SCENARIO").ok();
    let files = scenario_files(subdir);
    assert!(
        subdir == "bugs" || !files.is_empty(),
        "no scenario files in tests/{subdir}"
    );
    let mut failures = Vec::new();
    let mut alarms = Vec::new();
    for path in files {
        if only
            .as_ref()
            .is_some_and(|o| !path.to_string_lossy().contains(o.as_str()))
        {
            continue;
        }
        let (text, mismatches) = run_script(&path);
        for l in text.lines().filter(|l| is_alarm(l)) {
            alarms.push(format!("{}: {l}", path.display()));
        }
        if update {
            std::fs::write(&path, text).expect("write golden file");
        } else {
            failures.extend(mismatches);
        }
    }
    (failures, alarms)
}

fn report(failures: &[String]) -> String {
    let mut msg = format!(
        "{} scenario block(s) differ from the golden output (UPDATE_GOLDEN=1 rewrites them):\n",
        failures.len()
    );
    for f in failures.iter().take(10) {
        msg.push_str(f);
        msg.push('\n');
    }
    msg
}

/// Every behaviour script: output must match the golden text, and no safety violation, core
/// panic or API inconsistency may appear anywhere in it.
#[test]
fn scenarios() {
    let (failures, alarms) = run_dir("scenarios");
    assert!(failures.is_empty(), "{}", report(&failures));
    assert!(
        alarms.is_empty(),
        "alarms in scenario output:\n{}",
        alarms.join("\n")
    );
}

/// Counterexamples of the model checker (`keel model --mutant NAME --scenario-out FILE`), one
/// per core mutant, replayed here over the same mutant: the golden output must match, and each
/// must reach the broken property the model reported (a VIOLATION or core PANIC line).
#[cfg(feature = "mutants")]
#[test]
fn model_replays() {
    let (failures, alarms) = run_dir("model-replays");
    assert!(failures.is_empty(), "{}", report(&failures));
    let only = std::env::var("SCENARIO").ok();
    for path in scenario_files("model-replays") {
        if only
            .as_ref()
            .is_some_and(|o| !path.to_string_lossy().contains(o.as_str()))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read replay");
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no '# expect: ' line", path.display()));
        let name = path.display().to_string();
        assert!(
            alarms
                .iter()
                .any(|a| a.starts_with(&name) && a.contains(expected.trim())),
            "{name}: the replay did not reach {expected:?}; alarms: {alarms:?}"
        );
        // The other way round: the same script over the unmodified core breaks nothing (its
        // later steps may no longer fit; those are errors, not alarms).
        let clean: String = text
            .lines()
            .map(|l| match l.find(" mutant=") {
                Some(at) if l.starts_with("add-nodes") => format!("{}\n", &l[..at]),
                _ => format!("{l}\n"),
            })
            .collect();
        assert_ne!(clean, text, "{name}: no mutant= to remove");
        let tmp = std::env::temp_dir().join(format!(
            "keel-replay-clean-{}-{}",
            std::process::id(),
            path.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&tmp, &clean).expect("write temp script");
        let (out, _) = run_script(&tmp);
        let _ = std::fs::remove_file(&tmp);
        let found: Vec<&str> = out.lines().filter(|l| is_alarm(l)).collect();
        assert!(found.is_empty(), "{name} without its mutant: {found:?}");
    }
}

/// Scripts that reproduce known core bugs (tests/bugs/*.txt). They fail until the bug is fixed;
/// then move the file to tests/scenarios/. Run: `cargo test -p keel-core --test scenario -- --ignored`.
#[test]
#[ignore = "reproduces open core bugs; see tests/bugs/"]
fn known_core_bugs() {
    let (failures, alarms) = run_dir("bugs");
    assert!(failures.is_empty(), "{}", report(&failures));
    assert!(
        alarms.is_empty(),
        "core bugs still present:\n{}",
        alarms.join("\n")
    );
}

#[test]
fn harness_detects_a_mismatch() {
    // A golden file whose expected output is wrong must be reported, with a readable diff.
    let dir = std::env::temp_dir().join(format!("keel-scenario-selftest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("t.txt");
    std::fs::write(
        &path,
        "add-nodes 1\n----\nwrong\n\nstatus 1\n----\n1: follower\n",
    )
    .expect("write");
    let (text, mismatches) = run_script(&path);
    assert_eq!(mismatches.len(), 2, "{mismatches:?}");
    assert!(mismatches[0].contains(" - wrong"), "{}", mismatches[0]);
    assert!(text.starts_with("add-nodes 1\n----\n"), "{text}");
    // Regenerated output is itself a fixed point.
    std::fs::write(&path, &text).expect("write");
    assert!(is_alarm(
        "  1: CORE BUG: has_ready() was false but ready() returned output"
    ));
    assert!(is_alarm(
        "VIOLATION election-safety: nodes 1 and 2 both leader in term 3"
    ));
    assert!(!is_alarm("# comments may mention a CORE BUG"));
    let (again, none) = run_script(&path);
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(again, text);
    let _ = std::fs::remove_dir_all(&dir);
}
