//! Scripted scenarios for the degraded-modes matrix (docs/degraded-modes.md, "In the
//! simulator"): a small deterministic cluster of real keel-core nodes over the real WAL
//! (keel-storage on SimIo), driven by a test script instead of the seeded nemesis: fixed faults
//! at fixed times, fixed client operations, fixed delays. No randomness at all.
//!
//! Client-visible answers are computed with the rules the server applies (keel-server
//! `runtime.rs`): the known leader is none while campaigning; a linearizable read asks the core
//! with `ReadMode::Lease` and re-checks the lease after reading (falling back to ReadIndex
//! once); bounded and `any` reads are served locally with `staleness_ms` computed exactly as
//! `Runtime::staleness_ms`; a node whose disk is full refuses writes and, if it leads, hands
//! leadership to the first other voter. The safety monitor runs after every event, linearizable
//! reads are checked for freshness as they complete, and `finish` checks the history.
//!
//! Overload: an optional per-node client queue served at a fixed simulated capacity, with an
//! admission function (the tests pass keel-server's CoDel) applied at dequeue, and peer
//! messages on a priority lane that the queue never delays, or, with the lane disabled, in the
//! same queue behind client requests.

use crate::clock::NodeClock;
use crate::disk::Disk;
use crate::events::Queued;
use crate::workload::{encode, App, Op, OpKind, Outcome};
use keel_core::invariants::{SafetyMonitor, Violation};
use keel_core::{
    Config, EntryKind, Membership, Message, Node, NodeId, Note, ProposeError, ReadError, ReadMode,
    ReadPath, Restored, Role, Stamp, Time, Write,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

pub const TICK_US: u64 = 10_000;
pub const ELECTION_TIMEOUT_MS: u64 = 300;
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
pub const LEASE_DURATION_MS: u64 = 600;
pub const LEASE_RENEW_INTERVAL_MS: u64 = 150;
/// One-way network delay of every message.
pub const NET_DELAY_US: u64 = 1_000;
/// Default time to sync one write.
pub const DISK_LATENCY_US: u64 = 500;
/// A client request that has no answer after this long gets OUTCOME_UNKNOWN (writes) or a
/// timeout (reads).
pub const REQUEST_TIMEOUT_MS: u64 = 1_000;
/// How long a node's wall clock stays untrusted after a detected jump.
pub const CLOCK_COOLOFF_MS: u64 = 2_000;
/// Writes held back while the disk is full (the server's storage queue bound).
pub const HELD_WRITES_MAX: usize = 1_024;
/// Room left by `fill_disk` (less than a WAL segment: small hard-state rewrites still fit).
pub const DISK_FULL_SLACK_BYTES: u64 = 16 << 10;
/// Client requests a scenario may issue in total.
pub const REQUESTS_MAX: usize = 2_000_000;

/// Why a request was refused, as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// NOT_LEADER with a hint (`Some`), or NO_LEADER (`None`).
    NotLeader { leader: Option<NodeId> },
    /// Another leader's entry took the index: the write was certainly not applied.
    Superseded,
    /// A retryable refusal at the leader itself (transfer in progress, term not established,
    /// limits): the core's error name.
    Retry(&'static str),
    /// NO_SPACE: this node's disk is full.
    NoSpace,
    /// STALE_BOUND_UNMET with the staleness the node could prove (None: unprovable).
    StaleBoundUnmet { staleness_ms: Option<u64> },
    /// OVERLOADED: `queue_full` (bounded queue) or `queue_delay` (admission at dequeue).
    Overloaded(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Pending,
    /// The write was committed and applied at the leader that accepted it.
    Acked,
    /// No answer within the request timeout (a write: OUTCOME_UNKNOWN).
    Unknown,
    Refused(Refusal),
    Read {
        value: Option<String>,
        /// "lease", "read_index", "inherited_lease" or "local".
        path: &'static str,
        staleness_ms: Option<u64>,
        applied_index: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    Write { key: String, value: String },
    Linearizable { key: String },
    Bounded { key: String, max_staleness_ms: u64 },
    Any { key: String },
}

#[derive(Clone, Debug)]
pub struct Request {
    pub node: NodeId,
    pub level: Level,
    pub invoke_us: u64,
    pub complete_us: u64,
    pub answer: Answer,
    /// Index into the history (`ops`) for writes and linearizable reads.
    op: Option<usize>,
    retried: bool,
}

/// The overload model: a bounded client queue per node served at a fixed capacity.
pub struct QueueModel {
    /// Simulated service time of one admitted request (capacity = 1000 / service_us per ms).
    pub service_us: u64,
    pub queue_max: usize,
    /// Simulated cost of refusing a request at dequeue (reading it and answering OVERLOADED).
    pub refuse_us: u64,
    /// Peer messages bypass the client queue (as the server's loop polls the peer lane first).
    pub priority_lane: bool,
    /// Admission at dequeue: (now_ms, sojourn_ms) -> refuse? One per node (index id - 1).
    pub refuse_at_dequeue: Vec<Box<dyn FnMut(u64, u64) -> bool>>,
}

enum Item {
    Client(usize),
    Peer(Box<Message>),
}

/// An open-loop load: every node receives one request every `gap_us` until `until_us`. The
/// leader's requests alternate writes and linearizable reads; followers' are `any` reads.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub gap_us: u64,
    pub until_us: u64,
    pub keys: usize,
}

#[derive(Clone, Debug)]
enum Ev {
    Tick(NodeId, u64),
    Deliver(Box<Message>),
    DiskDone(NodeId, u64),
    Timeout(usize),
    Serve(NodeId),
    Arrival(NodeId),
}

struct Host {
    node: Option<Node>,
    app: App,
    disk: Disk,
    clock: NodeClock,
    life: u64,
    disk_latency_us: u64,
    /// Proposals accepted here: index -> (term, request).
    proposals: BTreeMap<u64, (u64, usize)>,
    /// Reads accepted here: read id -> request.
    reads: BTreeMap<u64, usize>,
    /// The stamp of the newest entry applied (the server's `last_applied_stamp`).
    last_applied_stamp: Option<Stamp>,
    /// Writes waiting for disk space, in order.
    held: VecDeque<Write>,
    /// Syncs that failed with ENOSPC and must be retried (their DiskDone event was used).
    syncs_owed: usize,
    disk_full: bool,
    queue: VecDeque<(u64, Item)>,
    serving: bool,
    /// Last message received from the node's known leader, and the largest gap seen.
    leader_contact_us: Option<u64>,
    pub leader_contact_gap_max_us: u64,
}

/// Leadership changes seen: (time µs, node, term).
pub type LeaderLog = Vec<(u64, NodeId, u64)>;

pub struct Cluster {
    now_us: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued<Ev>>>,
    hosts: BTreeMap<NodeId, Host>,
    monitor: SafetyMonitor,
    blocked: BTreeSet<(NodeId, NodeId)>,
    pub requests: Vec<Request>,
    ops: Vec<Op>,
    op_request: Vec<usize>,
    acked_index_by_key: BTreeMap<String, u64>,
    next_read_id: u64,
    violation: Option<Violation>,
    pub elections: u64,
    pub leaders: LeaderLog,
    pub queue_model: Option<QueueModel>,
    /// With the priority lane off: peer messages refused with client requests, and the
    /// longest a delivered one waited in the client queue.
    pub peer_messages_lost: u64,
    pub peer_delay_max_us: u64,
    load: Option<Load>,
    load_seq: u64,
}

impl Cluster {
    /// A cluster of `nodes` voters, run until a leader has committed its first entry.
    pub fn new(nodes: u64) -> Cluster {
        assert!((1..=7).contains(&nodes), "1..=7 nodes");
        let mut c = Cluster {
            now_us: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            hosts: BTreeMap::new(),
            monitor: SafetyMonitor::new(),
            blocked: BTreeSet::new(),
            requests: Vec::new(),
            ops: Vec::new(),
            op_request: Vec::new(),
            acked_index_by_key: BTreeMap::new(),
            next_read_id: 1,
            violation: None,
            elections: 0,
            leaders: Vec::new(),
            queue_model: None,
            peer_messages_lost: 0,
            peer_delay_max_us: 0,
            load: None,
            load_seq: 0,
        };
        let voters: Vec<NodeId> = (1..=nodes).collect();
        for id in voters.clone() {
            c.start_host(id, Restored::bootstrap(Membership::new(voters.clone())));
        }
        let settled = c.run_until_cond(5_000, |c| {
            c.leader().is_some_and(|l| {
                let n = c.hosts[&l].node.as_ref().expect("leader alive");
                n.log().term(n.commit_index()) == Some(n.term())
            })
        });
        assert!(settled, "a leader is elected and commits within 5 s");
        c
    }

    pub fn now_ms(&self) -> u64 {
        self.now_us / 1000
    }
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    fn config(id: NodeId) -> Config {
        let mut c = Config::new(id);
        c.random_seed = 0x5eed ^ (id * 7919);
        c.election_timeout_ms = ELECTION_TIMEOUT_MS;
        c.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
        c.lease_duration_ms = LEASE_DURATION_MS;
        c.lease_renew_interval_ms = LEASE_RENEW_INTERVAL_MS;
        c.clock_uncertainty_ms = crate::CLOCK_UNCERTAINTY_MS;
        c.clock_drift_ppm_max = crate::CLOCK_DRIFT_PPM_MAX;
        c.append_entries_max = 64;
        c.inflight_messages_max = 8;
        c.uncommitted_bytes_max = 1 << 20;
        c.lease_reads = true;
        c
    }

    fn start_host(&mut self, id: NodeId, restored: Restored) {
        // Small fixed offsets within the assumed uncertainty; no drift.
        let offset_us = (id as i64 - 2) * 3_000;
        let clock = NodeClock::new(
            offset_us,
            0,
            id * 1_000_000_000,
            crate::CLOCK_UNCERTAINTY_MS,
            CLOCK_COOLOFF_MS,
        );
        let mut host = Host {
            node: None,
            app: App::default(),
            disk: Disk::new(0xd15c, id, (DISK_LATENCY_US, DISK_LATENCY_US)),
            clock,
            life: 0,
            disk_latency_us: DISK_LATENCY_US,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            last_applied_stamp: None,
            held: VecDeque::new(),
            syncs_owed: 0,
            disk_full: false,
            queue: VecDeque::new(),
            serving: false,
            leader_contact_us: None,
            leader_contact_gap_max_us: 0,
        };
        host.disk.open(false).expect("fresh disk opens");
        if let Some(meta) = restored.snapshot.clone() {
            let w = Write {
                id: 0,
                snapshot: Some(keel_core::Snapshot {
                    meta,
                    data: App::default().snapshot_bytes(),
                }),
                ..Default::default()
            };
            host.disk.submit(0, 0, w).expect("bootstrap write");
            host.disk.complete_next().expect("bootstrap sync");
        }
        host.disk.close();
        self.hosts.insert(id, host);
        self.boot(id);
    }

    fn boot(&mut self, id: NodeId) {
        let now_us = self.now_us;
        let host = self.hosts.get_mut(&id).expect("host exists");
        let recovery = host.disk.open(false).expect("storage opens");
        let now = host.clock.read(now_us);
        let mut node = Node::new(Self::config(id), recovery.restored, now).expect("node starts");
        if let Some(s) = &recovery.snapshot {
            node.set_snapshot(s.clone());
        }
        host.app = App::recovered(recovery.snapshot.as_ref());
        host.life += 1;
        host.proposals.clear();
        host.reads.clear();
        host.last_applied_stamp = None;
        host.node = Some(node);
        let life = host.life;
        let restarted = self
            .monitor
            .observe_restart(self.hosts[&id].node.as_ref().expect("booted"));
        self.note_violation(restarted.err());
        // Ticks are spread over the tick period by node id (deterministic).
        self.schedule(id * 1_000, Ev::Tick(id, life));
        self.drive(id);
    }

    fn schedule(&mut self, delay_us: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at_us: self.now_us + delay_us,
            seq: self.seq,
            ev,
        }));
    }

    fn note_violation(&mut self, v: Option<Violation>) {
        if self.violation.is_none() {
            self.violation = v;
        }
    }

    /// The first safety violation seen so far.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    // ----- Running -----

    pub fn run_for_ms(&mut self, ms: u64) {
        let until = self.now_us + ms * 1000;
        self.run_until_us(until);
    }

    pub fn run_until_us(&mut self, until_us: u64) {
        while self.step_before(until_us) {}
        self.now_us = self.now_us.max(until_us);
    }

    /// Runs until `cond` holds (checked after every event) or `limit_ms` passes; true if it held.
    pub fn run_until_cond(
        &mut self,
        limit_ms: u64,
        mut cond: impl FnMut(&Cluster) -> bool,
    ) -> bool {
        let until = self.now_us + limit_ms * 1000;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step_before(until) {
                self.now_us = self.now_us.max(until);
                return cond(self);
            }
        }
    }

    fn step_before(&mut self, until_us: u64) -> bool {
        let next = match self.queue.peek() {
            Some(Reverse(q)) if q.at_us <= until_us => q.at_us,
            _ => return false,
        };
        let Reverse(q) = self.queue.pop().expect("peeked");
        assert!(next >= self.now_us, "time never goes back");
        self.now_us = next;
        self.handle(q.ev);
        true
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick(id, life) => {
                let Some(host) = self.hosts.get_mut(&id) else {
                    return;
                };
                if host.life != life || host.node.is_none() {
                    return;
                }
                let now = host.clock.read(self.now_us);
                host.node.as_mut().expect("alive").tick(now);
                self.retry_held(id);
                self.schedule(TICK_US, Ev::Tick(id, life));
                while self.hosts[&id].syncs_owed > 0 {
                    let host = self.hosts.get_mut(&id).expect("exists");
                    let before = host.disk.pending();
                    host.syncs_owed -= 1;
                    self.complete_sync(id);
                    let host = self.hosts.get_mut(&id).expect("exists");
                    if host.node.is_none() || host.disk.pending() == before {
                        break; // Still no space (the failure owed it again).
                    }
                }
                self.drive(id);
            }
            Ev::Deliver(msg) => {
                let lane_off = self.queue_model.as_ref().is_some_and(|q| !q.priority_lane);
                if lane_off {
                    self.enqueue(msg.to, Item::Peer(msg));
                } else {
                    self.receive(*msg);
                }
            }
            Ev::DiskDone(id, life) => {
                let Some(host) = self.hosts.get_mut(&id) else {
                    return;
                };
                if host.life != life || host.node.is_none() {
                    return;
                }
                self.complete_sync(id);
            }
            Ev::Timeout(r) => {
                if self.requests[r].answer == Answer::Pending {
                    self.complete(r, Answer::Unknown);
                }
            }
            Ev::Serve(id) => self.serve_next(id),
            Ev::Arrival(id) => self.arrival(id),
        }
    }

    /// Finishes the oldest staged write (one sync). ENOSPC leaves it staged and owed: the node
    /// turns `disk_full` (a leader hands over) and retries at every tick.
    fn complete_sync(&mut self, id: NodeId) {
        let host = self.hosts.get_mut(&id).expect("exists");
        let wid = match host.disk.try_complete_next() {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(keel_storage::Error::NoSpace { .. }) => {
                assert!(host.syncs_owed < HELD_WRITES_MAX, "owed syncs bounded");
                host.syncs_owed += 1;
                let first = !host.disk_full;
                host.disk_full = true;
                let leads = host.node.as_ref().is_some_and(|n| n.role() == Role::Leader);
                if first && leads {
                    self.transfer_to_first_other(id);
                }
                return;
            }
            Err(e) => {
                self.note_violation(Some(Violation {
                    property: "storage",
                    detail: format!("node {id}: {e}"),
                }));
                return;
            }
        };
        // As the server: a completed sync means space is back.
        if host.held.is_empty() {
            host.disk_full = false;
        }
        let now = host.clock.read(self.now_us);
        host.node.as_mut().expect("alive").persisted(now, wid);
        self.drive(id);
    }

    fn receive(&mut self, msg: Message) {
        let to = msg.to;
        let now_us = self.now_us;
        let Some(host) = self.hosts.get_mut(&to) else {
            return;
        };
        let Some(node) = host.node.as_mut() else {
            return;
        };
        if node.leader() == Some(msg.from) && node.role() == Role::Follower {
            if let Some(last) = host.leader_contact_us {
                host.leader_contact_gap_max_us = host.leader_contact_gap_max_us.max(now_us - last);
            }
            host.leader_contact_us = Some(now_us);
        }
        let now = host.clock.read(now_us);
        node.receive(now, msg);
        self.drive(to);
    }

    fn send(&mut self, m: Message) {
        if self.blocked.contains(&(m.from, m.to)) {
            return;
        }
        self.schedule(NET_DELAY_US, Ev::Deliver(Box::new(m)));
    }

    fn retry_held(&mut self, id: NodeId) {
        let now_us = self.now_us;
        let host = self.hosts.get_mut(&id).expect("exists");
        let life = host.life;
        let mut done = Vec::new();
        while let Some(w) = host.held.front() {
            match host.disk.try_submit(now_us, host.disk_latency_us, w) {
                Ok(at) => {
                    done.push(at - now_us);
                    host.held.pop_front();
                }
                Err(keel_storage::Error::NoSpace { .. }) => break,
                Err(e) => {
                    let v = Violation {
                        property: "storage",
                        detail: format!("node {id}: {e}"),
                    };
                    self.note_violation(Some(v));
                    return;
                }
            }
        }
        for d in done {
            self.schedule(d, Ev::DiskDone(id, life));
        }
    }

    /// Processes everything a node has to say, until it is quiet; checks invariants.
    fn drive(&mut self, id: NodeId) {
        loop {
            let now_us = self.now_us;
            let Some(host) = self.hosts.get_mut(&id) else {
                return;
            };
            let Some(node) = host.node.as_mut() else {
                return;
            };
            if !node.has_ready() {
                break;
            }
            let ready = node.ready();
            assert!(ready.restore.is_none(), "scenarios take no snapshots");
            let life = host.life;
            let mut disk_events = Vec::new();
            let mut hit_full = false;
            for w in ready.writes {
                if !host.held.is_empty() {
                    assert!(host.held.len() < HELD_WRITES_MAX, "held writes bounded");
                    host.held.push_back(w);
                    continue;
                }
                match host.disk.try_submit(now_us, host.disk_latency_us, &w) {
                    Ok(done) => disk_events.push(done - now_us),
                    Err(keel_storage::Error::NoSpace { .. }) => {
                        host.held.push_back(w);
                        hit_full = !host.disk_full;
                        host.disk_full = true;
                    }
                    Err(e) => {
                        let v = Violation {
                            property: "storage",
                            detail: format!("node {id}: {e}"),
                        };
                        self.note_violation(Some(v));
                        return;
                    }
                }
            }
            for d in disk_events {
                self.schedule(d, Ev::DiskDone(id, life));
            }
            let node = self.hosts[&id].node.as_ref().expect("alive");
            let mut sent = Vec::new();
            for m in &ready.messages {
                sent.push(self.monitor.observe_sent(node, m).err());
            }
            for v in sent {
                self.note_violation(v);
            }
            for m in ready.messages {
                self.send(m);
            }
            // Apply.
            let mut completions = Vec::new();
            let mut applied_v = Vec::new();
            let host = self.hosts.get_mut(&id).expect("exists");
            for e in &ready.committed {
                applied_v.push(self.monitor.observe_applied(id, e).err());
                if e.index <= host.app.applied {
                    continue;
                }
                let result = match &e.kind {
                    EntryKind::Normal(data) => host.app.apply(e.index, data),
                    _ => {
                        host.app.noop(e.index);
                        None
                    }
                };
                host.last_applied_stamp = Some(e.stamp);
                if let Some((term, r)) = host.proposals.remove(&e.index) {
                    let op = self.requests[r].op.expect("writes are in the history");
                    let ok = term == e.term && result.is_some_and(|x| x.0 == op as u64);
                    completions.push((r, ok, e.index));
                }
            }
            for v in applied_v {
                self.note_violation(v);
            }
            let host = self.hosts.get_mut(&id).expect("exists");
            let applied = host.app.applied;
            let now = host.clock.read(now_us);
            let node = host.node.as_mut().expect("alive");
            if applied > node.applied_index() {
                node.applied(now, applied);
            }
            // Reads: served after applying; the lease is re-checked after reading.
            let mut read_done = Vec::new();
            for r in &ready.reads {
                if let Some(req) = host.reads.remove(&r.id) {
                    let Level::Linearizable { key } = &self.requests[req].level else {
                        unreachable!("only linearizable reads go to the core")
                    };
                    let value = host.app.kv.get(key).cloned();
                    let now2 = host.clock.read(now_us);
                    let still = node.lease_read_still_valid(now2, r.path);
                    read_done.push((req, still, value, host.app.applied, r.path));
                }
            }
            let mut failed = Vec::new();
            for (rid, _) in &ready.failed_reads {
                if let Some(req) = host.reads.remove(rid) {
                    failed.push(req);
                }
            }
            let mut transfer = false;
            for n in &ready.notes {
                if let Note::BecameLeader { term } = n {
                    self.elections += 1;
                    self.leaders.push((now_us, id, *term));
                }
            }
            if hit_full && node.role() == Role::Leader {
                transfer = true;
            }
            let _ = node;
            for (r, ok, index) in completions {
                let answer = if ok {
                    Answer::Acked
                } else {
                    Answer::Refused(Refusal::Superseded)
                };
                if ok {
                    if let Level::Write { key, .. } = &self.requests[r].level {
                        let e = self.acked_index_by_key.entry(key.clone()).or_insert(0);
                        *e = (*e).max(index);
                    }
                }
                self.complete(r, answer);
            }
            for (req, still, value, served_index, path) in read_done {
                self.finish_read(id, req, still, value, served_index, path);
            }
            for req in failed {
                let leader = self.known_leader(id);
                self.complete(req, Answer::Refused(Refusal::NotLeader { leader }));
            }
            if transfer {
                // A leader that cannot write hands over to a voter that can (the server's
                // `transfer_candidate`: the first other voter).
                self.transfer_to_first_other(id);
            }
        }
        let Some(node) = self.hosts[&id].node.as_ref() else {
            return;
        };
        let v = self.monitor.observe(node).err();
        self.note_violation(v);
    }

    fn finish_read(
        &mut self,
        id: NodeId,
        req: usize,
        still: bool,
        value: Option<String>,
        served_index: u64,
        path: ReadPath,
    ) {
        if self.requests[req].answer != Answer::Pending {
            return;
        }
        if !still {
            // The server retries once with ReadIndex when the lease lapsed meanwhile.
            if !self.requests[req].retried && path != ReadPath::ReadIndex {
                self.requests[req].retried = true;
                self.start_linearizable(id, req, ReadMode::ReadIndex);
            } else {
                self.complete(req, Answer::Refused(Refusal::Retry("lease_lost")));
            }
            return;
        }
        let op = self.requests[req]
            .op
            .expect("linearizable reads are in the history");
        let required = self.ops[op].required_index;
        if served_index < required {
            self.note_violation(Some(Violation {
                property: "read-freshness",
                detail: format!(
                    "request {req} ({path:?}) at node {id} served index {served_index}, but a write to its key acknowledged before it began is at {required}"
                ),
            }));
        }
        self.ops[op].lease = path != ReadPath::ReadIndex;
        let path = match path {
            ReadPath::ReadIndex => "read_index",
            ReadPath::Lease => "lease",
            ReadPath::InheritedLease => "inherited_lease",
        };
        self.complete(
            req,
            Answer::Read {
                value,
                path,
                staleness_ms: None,
                applied_index: served_index,
            },
        );
    }

    fn complete(&mut self, r: usize, answer: Answer) {
        let req = &mut self.requests[r];
        if req.answer != Answer::Pending {
            return;
        }
        req.complete_us = self.now_us;
        if let Some(op) = req.op {
            let o = &mut self.ops[op];
            o.complete_us = self.now_us;
            o.outcome = match &answer {
                Answer::Acked => Outcome::Ok {
                    value: None,
                    swapped: true,
                },
                Answer::Read { value, .. } => Outcome::Ok {
                    value: value.clone(),
                    swapped: false,
                },
                Answer::Unknown if matches!(req.level, Level::Write { .. }) => Outcome::Info,
                _ => Outcome::Fail,
            };
        }
        req.answer = answer;
    }

    // ----- Client requests -----

    /// The leader as clients see it: none while this node campaigns (runtime.rs `known_leader`).
    pub fn known_leader(&self, id: NodeId) -> Option<NodeId> {
        let node = self.hosts[&id].node.as_ref()?;
        match node.role() {
            Role::PreCandidate | Role::Candidate => None,
            _ => node.leader(),
        }
    }

    /// The highest-term node that believes it leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.hosts
            .iter()
            .filter_map(|(id, h)| {
                h.node
                    .as_ref()
                    .filter(|n| n.role() == Role::Leader)
                    .map(|n| (n.term(), *id))
            })
            .max()
            .map(|(_, id)| id)
    }

    pub fn role(&self, id: NodeId) -> Option<Role> {
        self.hosts[&id].node.as_ref().map(|n| n.role())
    }

    pub fn term(&self, id: NodeId) -> Option<u64> {
        self.hosts[&id].node.as_ref().map(|n| n.term())
    }

    pub fn commit_index(&self, id: NodeId) -> u64 {
        self.hosts[&id]
            .node
            .as_ref()
            .map_or(0, |n| n.commit_index())
    }

    pub fn applied_index(&self, id: NodeId) -> u64 {
        self.hosts[&id].app.applied
    }

    pub fn value(&self, id: NodeId, key: &str) -> Option<String> {
        self.hosts[&id].app.kv.get(key).cloned()
    }

    pub fn disk_full(&self, id: NodeId) -> bool {
        self.hosts[&id].disk_full
    }

    pub fn wall_trusted(&mut self, id: NodeId) -> bool {
        let now_us = self.now_us;
        let host = self.hosts.get_mut(&id).expect("exists");
        host.clock.read(now_us).wall_trusted
    }

    /// Whether a lease read at `id` would be served now (the leader's lease is provable).
    pub fn lease_valid(&mut self, id: NodeId) -> bool {
        let now_us = self.now_us;
        let host = self.hosts.get_mut(&id).expect("exists");
        let now = host.clock.read(now_us);
        match host.node.as_mut() {
            Some(n) if n.role() == Role::Leader => n.lease_read_still_valid(now, ReadPath::Lease),
            _ => false,
        }
    }

    /// runtime.rs `staleness_ms`, exactly: 0 for a leader with a valid lease and everything
    /// applied; None without a trusted wall clock; else now.latest − stamp.earliest of the
    /// newest applied entry.
    pub fn staleness_ms(&mut self, id: NodeId) -> Option<u64> {
        let now_us = self.now_us;
        let host = self.hosts.get_mut(&id).expect("exists");
        let now = host.clock.read(now_us);
        let node = host.node.as_mut()?;
        if node.role() == Role::Leader
            && host.app.applied == node.commit_index()
            && node.lease_read_still_valid(now, ReadPath::Lease)
        {
            return Some(0);
        }
        if !now.wall_trusted {
            return None;
        }
        let stamp = host.last_applied_stamp?;
        Some((now.wall_ms + crate::CLOCK_UNCERTAINTY_MS).saturating_sub(stamp.earliest_ms))
    }

    pub fn write(&mut self, node: NodeId, key: &str, value: &str) -> usize {
        self.submit(
            node,
            Level::Write {
                key: key.into(),
                value: value.into(),
            },
        )
    }
    pub fn read_linearizable(&mut self, node: NodeId, key: &str) -> usize {
        self.submit(node, Level::Linearizable { key: key.into() })
    }
    pub fn read_bounded(&mut self, node: NodeId, key: &str, max_staleness_ms: u64) -> usize {
        self.submit(
            node,
            Level::Bounded {
                key: key.into(),
                max_staleness_ms,
            },
        )
    }
    pub fn read_any(&mut self, node: NodeId, key: &str) -> usize {
        self.submit(node, Level::Any { key: key.into() })
    }

    /// Issues a request now; with a queue model it waits in the node's client queue first.
    pub fn submit(&mut self, node: NodeId, level: Level) -> usize {
        assert!(self.requests.len() < REQUESTS_MAX, "requests bounded");
        let r = self.requests.len();
        let op = match &level {
            Level::Write { key, value } => Some(OpKind::Put {
                key: key.clone(),
                value: value.clone(),
            }),
            Level::Linearizable { key } => Some(OpKind::Get { key: key.clone() }),
            _ => None,
        }
        .map(|kind| {
            let id = self.ops.len();
            let required_index = self
                .acked_index_by_key
                .get(kind.key())
                .copied()
                .unwrap_or(0);
            self.ops.push(Op {
                id: id as u64,
                client: r,
                kind,
                invoke_us: self.now_us,
                complete_us: 0,
                outcome: Outcome::Open,
                lease: false,
                required_index,
                index: 0,
            });
            self.op_request.push(r);
            id
        });
        self.requests.push(Request {
            node,
            level,
            invoke_us: self.now_us,
            complete_us: 0,
            answer: Answer::Pending,
            op,
            retried: false,
        });
        if self.queue_model.is_some() {
            self.enqueue(node, Item::Client(r));
        } else {
            self.execute(r);
        }
        r
    }

    fn execute(&mut self, r: usize) {
        let id = self.requests[r].node;
        if self.hosts[&id].node.is_none() {
            // The process is down: the client's connection fails (no answer).
            self.schedule(REQUEST_TIMEOUT_MS * 1000, Ev::Timeout(r));
            return;
        }
        match self.requests[r].level.clone() {
            Level::Write { key, value } => {
                if self.hosts[&id].disk_full {
                    self.complete(r, Answer::Refused(Refusal::NoSpace));
                    return;
                }
                let op = self.requests[r].op.expect("writes are in the history");
                let kind = OpKind::Put { key, value };
                let now_us = self.now_us;
                let host = self.hosts.get_mut(&id).expect("exists");
                let now = host.clock.read(now_us);
                let node = host.node.as_mut().expect("alive");
                match node.propose(now, encode(op as u64, &kind)) {
                    Ok((index, term)) => {
                        host.proposals.insert(index, (term, r));
                        self.ops[op].index = index;
                        self.schedule(REQUEST_TIMEOUT_MS * 1000, Ev::Timeout(r));
                    }
                    Err(e) => {
                        let refusal = match e {
                            ProposeError::NotLeader { .. } => Refusal::NotLeader {
                                leader: self.known_leader(id),
                            },
                            ProposeError::Transferring => Refusal::Retry("transferring"),
                            ProposeError::TermNotEstablished => {
                                Refusal::Retry("term_not_established")
                            }
                            ProposeError::UncommittedLimit { .. } => {
                                Refusal::Overloaded("uncommitted_limit")
                            }
                            _ => Refusal::Retry("other"),
                        };
                        self.complete(r, Answer::Refused(refusal));
                    }
                }
                self.drive(id);
            }
            Level::Linearizable { .. } => {
                self.schedule(REQUEST_TIMEOUT_MS * 1000, Ev::Timeout(r));
                self.start_linearizable(id, r, ReadMode::Lease);
            }
            Level::Bounded {
                key,
                max_staleness_ms,
            } => {
                let staleness = self.staleness_ms(id);
                let answer = match staleness {
                    Some(s) if s <= max_staleness_ms => self.local_read(id, &key, staleness),
                    _ => Answer::Refused(Refusal::StaleBoundUnmet {
                        staleness_ms: staleness,
                    }),
                };
                self.complete(r, answer);
            }
            Level::Any { key } => {
                let staleness = self.staleness_ms(id);
                let answer = self.local_read(id, &key, staleness);
                self.complete(r, answer);
            }
        }
    }

    fn local_read(&self, id: NodeId, key: &str, staleness_ms: Option<u64>) -> Answer {
        let app = &self.hosts[&id].app;
        Answer::Read {
            value: app.kv.get(key).cloned(),
            path: "local",
            staleness_ms,
            applied_index: app.applied,
        }
    }

    fn start_linearizable(&mut self, id: NodeId, r: usize, mode: ReadMode) {
        let now_us = self.now_us;
        let rid = self.next_read_id;
        self.next_read_id += 1;
        let host = self.hosts.get_mut(&id).expect("exists");
        let now = host.clock.read(now_us);
        let node = host.node.as_mut().expect("alive");
        if node.role() != Role::Leader {
            let leader = self.known_leader(id);
            self.complete(r, Answer::Refused(Refusal::NotLeader { leader }));
            return;
        }
        match node.read(now, rid, mode) {
            Ok(()) => {
                host.reads.insert(rid, r);
            }
            Err(ReadError::TooManyPending) => {
                self.complete(r, Answer::Refused(Refusal::Overloaded("queue_full")));
            }
            Err(_) => {
                let leader = self.known_leader(id);
                self.complete(r, Answer::Refused(Refusal::NotLeader { leader }));
            }
        }
        self.drive(id);
    }

    // ----- The overload model -----

    fn enqueue(&mut self, id: NodeId, item: Item) {
        let queue_max = self.queue_model.as_ref().expect("queue model").queue_max;
        let now_us = self.now_us;
        let host = self.hosts.get_mut(&id).expect("exists");
        if host.queue.len() >= queue_max {
            match item {
                Item::Client(r) => {
                    self.complete(r, Answer::Refused(Refusal::Overloaded("queue_full")));
                }
                Item::Peer(_) => self.peer_messages_lost += 1,
            }
            return;
        }
        host.queue.push_back((now_us, item));
        if !host.serving {
            host.serving = true;
            self.schedule(0, Ev::Serve(id));
        }
    }

    fn serve_next(&mut self, id: NodeId) {
        let now_us = self.now_us;
        let host = self.hosts.get_mut(&id).expect("exists");
        let Some((arrival_us, item)) = host.queue.pop_front() else {
            host.serving = false;
            return;
        };
        let model = self.queue_model.as_mut().expect("queue model");
        let service_us = model.service_us;
        let refuse_us = model.refuse_us;
        let refuse = (model.refuse_at_dequeue[(id - 1) as usize])(
            now_us / 1000,
            (now_us - arrival_us) / 1000,
        );
        if refuse {
            // Refusing at dequeue costs `refuse_us`; a refused peer message is lost.
            match item {
                Item::Client(r) => {
                    self.complete(r, Answer::Refused(Refusal::Overloaded("queue_delay")));
                }
                Item::Peer(_) => self.peer_messages_lost += 1,
            }
            self.schedule(refuse_us, Ev::Serve(id));
            return;
        }
        match item {
            Item::Client(r) => self.execute(r),
            Item::Peer(m) => {
                self.peer_delay_max_us = self.peer_delay_max_us.max(now_us - arrival_us);
                self.receive(*m)
            }
        }
        self.schedule(service_us, Ev::Serve(id));
    }

    /// Starts an open-loop load (see `Load`).
    pub fn start_load(&mut self, load: Load) {
        assert!(
            load.gap_us > 0 && load.keys > 0,
            "a load needs a gap and keys"
        );
        self.load = Some(load);
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        for id in ids {
            self.schedule(id * 7, Ev::Arrival(id));
        }
    }

    fn arrival(&mut self, id: NodeId) {
        let Some(load) = self.load else {
            return;
        };
        if self.now_us >= load.until_us {
            return;
        }
        self.load_seq += 1;
        let n = self.load_seq;
        let key = format!("k{}", n % load.keys as u64);
        let level = if self.leader() == Some(id) {
            if n.is_multiple_of(2) {
                Level::Write {
                    key,
                    value: format!("v{n}"),
                }
            } else {
                Level::Linearizable { key }
            }
        } else {
            Level::Any { key }
        };
        self.submit(id, level);
        self.schedule(load.gap_us, Ev::Arrival(id));
    }

    // ----- Faults -----

    /// Cuts every link between `id` and the others (both directions).
    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        for o in ids {
            if o != id {
                self.blocked.insert((id, o));
                self.blocked.insert((o, id));
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn crash(&mut self, id: NodeId) {
        let host = self.hosts.get_mut(&id).expect("exists");
        assert!(host.node.is_some(), "crash a running node");
        host.disk.crash();
        host.node = None;
        host.held.clear();
        host.syncs_owed = 0;
        host.disk_full = false;
        host.queue.clear();
        self.monitor.observe_crash(id);
    }

    pub fn restart(&mut self, id: NodeId) {
        assert!(self.hosts[&id].node.is_none(), "restart a crashed node");
        self.boot(id);
    }

    /// An operator's leadership transfer at the leader `from`.
    pub fn transfer(&mut self, from: NodeId, to: NodeId) -> Result<(), ProposeError> {
        let now_us = self.now_us;
        let host = self.hosts.get_mut(&from).expect("exists");
        let now = host.clock.read(now_us);
        let r = host.node.as_mut().expect("alive").transfer_leader(now, to);
        self.drive(from);
        r
    }

    fn transfer_to_first_other(&mut self, id: NodeId) {
        let node = self.hosts[&id].node.as_ref().expect("alive");
        let target = node.membership().voters.iter().copied().find(|v| *v != id);
        if let Some(t) = target {
            let _ = self.transfer(id, t);
        }
    }

    pub fn set_disk_latency_us(&mut self, id: NodeId, latency_us: u64) {
        self.hosts.get_mut(&id).expect("exists").disk_latency_us = latency_us;
    }

    /// Fills a node's file system: the capacity becomes what its files use plus
    /// `DISK_FULL_SLACK_BYTES`, so appends into the preallocated WAL segment still succeed
    /// (SimIo fails every write once usage exceeds the capacity, which the WAL treats as fatal)
    /// while preallocating the next segment fails with ENOSPC: the recoverable disk-full case.
    pub fn fill_disk(&mut self, id: NodeId) {
        let host = self.hosts.get_mut(&id).expect("exists");
        let used = host.disk.used_bytes();
        host.disk.set_capacity_bytes(used + DISK_FULL_SLACK_BYTES);
    }

    /// Space returns: the capacity is unlimited again.
    pub fn free_disk(&mut self, id: NodeId) {
        let host = self.hosts.get_mut(&id).expect("exists");
        host.disk.set_capacity_bytes(u64::MAX);
    }

    /// Steps a node's wall clock by `delta_ms` (the driver's detector notices the jump at the
    /// next clock reading and distrusts the wall clock for the cooling-off period).
    pub fn jump_clock(&mut self, id: NodeId, delta_ms: i64) {
        let host = self.hosts.get_mut(&id).expect("exists");
        host.clock.wall_offset_us += delta_ms * 1000;
    }

    pub fn reset_leader_contact_gaps(&mut self) {
        for h in self.hosts.values_mut() {
            h.leader_contact_us = None;
            h.leader_contact_gap_max_us = 0;
        }
    }

    /// The largest gap between two messages a follower received from its leader since the
    /// last reset, over all nodes.
    pub fn leader_contact_gap_max_ms(&self) -> u64 {
        self.hosts
            .values()
            .map(|h| h.leader_contact_gap_max_us)
            .max()
            .unwrap_or(0)
            / 1000
    }

    /// Ends the scenario: the first safety violation, else the history's linearizability.
    pub fn finish(&self) -> Result<(), Violation> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        match crate::history::check(&self.ops, false) {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// Writes in the history whose answer was Acked (for the "no acknowledged write lost"
    /// check): (key, value).
    pub fn acked_writes(&self) -> Vec<(String, String)> {
        self.requests
            .iter()
            .filter(|r| r.answer == Answer::Acked)
            .filter_map(|r| match &r.level {
                Level::Write { key, value } => Some((key.clone(), value.clone())),
                _ => None,
            })
            .collect()
    }

    /// The entries of a node's log that hold `value` for `key` (acknowledged writes must be
    /// in every up-to-date log).
    pub fn log_has_write(&self, id: NodeId, key: &str, value: &str) -> bool {
        let Some(node) = self.hosts[&id].node.as_ref() else {
            return false;
        };
        let log = node.log();
        (1..=node.commit_index()).any(|i| {
            log.entry(i).is_some_and(|e| match &e.kind {
                EntryKind::Normal(d) => {
                    let s = String::from_utf8_lossy(d);
                    let parts: Vec<&str> = s.split('\0').collect();
                    parts.len() >= 3 && parts[1] == key && parts[2] == value
                }
                _ => false,
            })
        })
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.hosts.keys().copied().collect()
    }
}

/// Percentile (0..=100) of a list of values (sorted inside); 0 for an empty list.
pub fn percentile(values: &mut [u64], p: u64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((values.len() as u64 * p).div_ceil(100)).max(1) as usize;
    values[rank - 1]
}

impl Cluster {
    /// A reading of a node's clock now (for tests).
    pub fn clock(&mut self, id: NodeId) -> Time {
        let now_us = self.now_us;
        self.hosts.get_mut(&id).expect("exists").clock.read(now_us)
    }
}
