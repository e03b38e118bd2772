//! The simulated world: hosts running real keel-core nodes, a network, disks, clocks, clients
//! and a nemesis, all driven by one seeded generator and one event queue.

use crate::clock::NodeClock;
use crate::disk::Disk;
use crate::events::Queued;
use crate::faults::FaultPlan;
use crate::workload::{encode, written_key, App, Op, OpKind, Outcome};
use crate::{SimOptions, TraceSink, WalDamage};
use keel_core::invariants::{SafetyMonitor, Violation};
use keel_core::{
    Body, ConfChange, Config, EntryKind, Membership, Message, Node, NodeId, ReadMode, ReadPath,
    Restored, Role,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

pub const NODE_IDS_MAX: u64 = 7;
const TICK_US: u64 = 10_000;

#[derive(Clone, Debug)]
enum Ev {
    Tick(NodeId, u64),
    Deliver(Box<Message>),
    DiskDone(NodeId, u64),
    Client(usize),
    OpTimeout(u64),
    Nemesis,
    Restart(NodeId),
    Resume(NodeId),
    Heal,
    ClockFix(NodeId, i64),
    DiskFast(NodeId),
    Operator,
    Liveness,
    LivenessProbe,
    Crash(NodeId),
    /// Leader shuffle, step: (step, the leader it started from, node isolated last, polls left).
    Shuffle(u8, NodeId, NodeId, u32),
}

struct Host {
    node: Option<Node>,
    app: App,
    disk: Disk,
    clock: NodeClock,
    life: u64,
    paused_until_us: u64,
    /// Proposals accepted here: index -> (term, op id).
    proposals: BTreeMap<u64, (u64, u64)>,
    /// Reads accepted here: read id -> op id.
    reads: BTreeMap<u64, u64>,
}

pub struct World {
    pub opts: SimOptions,
    pub plan: FaultPlan,
    rng: ChaCha8Rng,
    now_us: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued<Ev>>>,
    hosts: BTreeMap<NodeId, Host>,
    monitor: SafetyMonitor,
    /// blocked[(from, to)]: messages on this directed link are dropped.
    blocked: BTreeSet<(NodeId, NodeId)>,
    clogged: BTreeMap<(NodeId, NodeId), u64>,
    pub ops: Vec<Op>,
    open_ops: BTreeSet<u64>,
    client_leader: Vec<Option<NodeId>>,
    acked_index_by_key: BTreeMap<String, u64>,
    next_read_id: u64,
    pub trace_hash: u64,
    pub events: u64,
    pub clock_assumption_violated: bool,
    liveness_phase: bool,
    liveness_op: Option<u64>,
    pub liveness_ok: bool,
    pub faults_injected: u64,
    pub elections: u64,
    /// Nodes whose synced WAL was damaged and that have not yet caught up (at most one).
    damaged: BTreeSet<NodeId>,
    pub wal_damages: u64,
    pub repairs_completed: u64,
    trace: TraceSink,
}

fn fnv(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x100_0000_01b3)
}

impl World {
    pub fn new(seed: u64, opts: SimOptions, trace: TraceSink) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let plan = FaultPlan::draw(&mut rng, &opts);
        let mut w = World {
            opts,
            plan,
            rng,
            now_us: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            hosts: BTreeMap::new(),
            monitor: SafetyMonitor::new(),
            blocked: BTreeSet::new(),
            clogged: BTreeMap::new(),
            ops: Vec::new(),
            open_ops: BTreeSet::new(),
            client_leader: Vec::new(),
            acked_index_by_key: BTreeMap::new(),
            next_read_id: 1,
            trace_hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            clock_assumption_violated: false,
            liveness_phase: false,
            liveness_op: None,
            liveness_ok: false,
            faults_injected: 0,
            elections: 0,
            damaged: BTreeSet::new(),
            wal_damages: 0,
            repairs_completed: 0,
            trace,
        };
        let voters: Vec<NodeId> = (1..=w.opts.nodes as u64).collect();
        for id in voters.clone() {
            w.start_host(id, Restored::bootstrap(Membership::new(voters.clone())));
        }
        w.client_leader = vec![None; w.opts.clients];
        for c in 0..w.opts.clients {
            let at = w.rng.gen_range(0..200_000);
            w.schedule(at, Ev::Client(c));
        }
        if w.plan.any_faults() {
            let at = w.plan.nemesis_gap_us(&mut w.rng);
            w.schedule(at, Ev::Nemesis);
        }
        if w.plan.churn || w.plan.transfers {
            let at = w.rng.gen_range(500_000..2_000_000);
            w.schedule(at, Ev::Operator);
        }
        let safety_us = w.opts.ticks * TICK_US;
        w.schedule(safety_us, Ev::Liveness);
        w
    }

    fn schedule(&mut self, delay_us: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at_us: self.now_us + delay_us,
            seq: self.seq,
            ev,
        }));
    }

    fn node_config(&self, id: NodeId) -> Config {
        let mut c = Config::new(id);
        c.random_seed = self.plan.seed ^ (id * 7919);
        c.election_timeout_ms = 300;
        c.heartbeat_interval_ms = 50;
        c.lease_duration_ms = 600;
        c.lease_renew_interval_ms = 150;
        c.clock_uncertainty_ms = crate::CLOCK_UNCERTAINTY_MS;
        c.clock_drift_ppm_max = crate::CLOCK_DRIFT_PPM_MAX;
        c.append_entries_max = self.plan.append_entries_max;
        c.inflight_messages_max = 8;
        c.snapshot_chunk_bytes_max = 512;
        c.compaction_retain_entries = 20;
        c.uncommitted_bytes_max = 64 << 10;
        c.lease_reads = self.plan.lease_reads;
        c.mutant = self.opts.mutant;
        c
    }

    fn start_host(&mut self, id: NodeId, restored: Restored) {
        let (offset_us, drift) = self.plan.clock_for(&mut self.rng, id);
        let clock = NodeClock::new(
            offset_us,
            drift,
            self.rng.gen_range(0..1_000_000_000),
            crate::CLOCK_UNCERTAINTY_MS,
            2_000,
        );
        let mut host = Host {
            node: None,
            app: App::default(),
            disk: Disk::new(self.plan.seed, id, self.plan.disk_latency_us),
            clock,
            life: 0,
            paused_until_us: 0,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
        };
        // A brand-new member: persist its bootstrap state (the initial configuration) first.
        if let Err(e) = host.disk.open(false) {
            panic!("fresh disk of node {id} failed to open: {e}");
        }
        if let Some(meta) = restored.snapshot.clone() {
            let w = keel_core::Write {
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

    /// (Re)starts the node on host `id` from its durable disk.
    fn boot(&mut self, id: NodeId) -> Option<Violation> {
        let cfg = self.node_config(id);
        let now_us = self.now_us;
        let damage = self.opts.wal_damage;
        let host = self.hosts.get_mut(&id).expect("host exists");
        let recovery = match host.disk.open(damage != WalDamage::Off) {
            Ok(r) => r,
            Err(e) => {
                return Some(Violation {
                    property: "recovery",
                    detail: format!("node {id} storage refused to open: {e}"),
                })
            }
        };
        let restored = recovery.restored;
        if !recovery.repairs.is_empty() {
            let kept = restored
                .entries
                .last()
                .map_or(0, |e| e.index)
                .max(restored.snapshot.as_ref().map_or(0, |s| s.index));
            self.monitor.observe_storage_damage(id, kept);
            self.trace_line(|| format!("node {id} storage repaired: kept the log up to {kept}"));
        }
        let repairing = damage == WalDamage::Repair && recovery.repairing;
        if damage == WalDamage::SilentTruncate {
            self.damaged.remove(&id);
        }
        let host = self.hosts.get_mut(&id).expect("host exists");
        let now = host.clock.read(now_us);
        let started = if repairing {
            Node::new_repairing(cfg, restored, now)
        } else {
            Node::new(cfg, restored, now)
        };
        let mut node = match started {
            Ok(n) => n,
            Err(e) => {
                return Some(Violation {
                    property: "recovery",
                    detail: format!("node {id} refused to start: {e}"),
                })
            }
        };
        if let Some(s) = &recovery.snapshot {
            node.set_snapshot(s.clone());
        }
        host.app = App::recovered(recovery.snapshot.as_ref());
        host.life += 1;
        host.proposals.clear();
        host.reads.clear();
        host.node = Some(node);
        let life = host.life;
        let v = self
            .monitor
            .observe_restart(self.hosts[&id].node.as_ref().expect("booted"));
        if let Err(v) = v {
            return Some(v);
        }
        let jitter = self.rng.gen_range(0..TICK_US);
        self.schedule(jitter, Ev::Tick(id, life));
        self.drive(id)
    }

    fn record(&mut self, code: u64, a: u64, b: u64, c: u64) {
        let mut h = fnv(self.trace_hash, self.now_us);
        h = fnv(h, code);
        h = fnv(h, a);
        h = fnv(h, b);
        self.trace_hash = fnv(h, c);
    }

    fn trace_line(&mut self, line: impl FnOnce() -> String) {
        if self.trace.enabled() {
            let t = self.now_us;
            self.trace
                .push(format!("{:>10.3}ms {}", t as f64 / 1000.0, line()));
        }
    }

    /// Runs to the end. Returns the first violation.
    pub fn run(&mut self) -> Option<Violation> {
        let end_us = self.opts.ticks * TICK_US + self.opts.liveness_ms * 1000;
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at_us > end_us {
                break;
            }
            assert!(q.at_us >= self.now_us, "time never goes back");
            self.now_us = q.at_us;
            self.events += 1;
            if let Some(v) = self.handle(q.ev) {
                return Some(v);
            }
            if self.liveness_ok {
                return None;
            }
        }
        if !self.liveness_ok {
            self.trace_states();
            return Some(Violation {
                property: "liveness",
                detail: format!(
                    "no leader committed a write within {} ms after healing",
                    self.opts.liveness_ms
                ),
            });
        }
        None
    }

    fn handle(&mut self, ev: Ev) -> Option<Violation> {
        match ev {
            Ev::Tick(id, life) => {
                let host = self.hosts.get_mut(&id)?;
                if host.life != life || host.node.is_none() {
                    return None;
                }
                if host.paused_until_us > self.now_us {
                    let wait = host.paused_until_us - self.now_us;
                    self.schedule(wait, Ev::Tick(id, life));
                    return None;
                }
                let now = host.clock.read(self.now_us);
                host.node.as_mut().expect("alive").tick(now);
                self.record(1, id, 0, 0);
                self.schedule(TICK_US, Ev::Tick(id, life));
                self.drive(id)
            }
            Ev::Deliver(msg) => {
                let to = msg.to;
                let host = self.hosts.get_mut(&to)?;
                host.node.as_ref()?;
                if host.paused_until_us > self.now_us {
                    let wait = host.paused_until_us - self.now_us;
                    self.schedule(wait, Ev::Deliver(msg));
                    return None;
                }
                self.record(2, msg.from, to, msg.term);
                self.trace_line(|| {
                    format!(
                        "deliver {}->{} t{} {:?}",
                        msg.from,
                        msg.to,
                        msg.term,
                        short_body(&msg.body)
                    )
                });
                let host = self.hosts.get_mut(&to).expect("exists");
                let now = host.clock.read(self.now_us);
                host.node.as_mut().expect("alive").receive(now, *msg);
                self.drive(to)
            }
            Ev::DiskDone(id, life) => {
                let host = self.hosts.get_mut(&id)?;
                if host.life != life || host.node.is_none() {
                    return None;
                }
                if host.paused_until_us > self.now_us {
                    let wait = host.paused_until_us - self.now_us;
                    self.schedule(wait, Ev::DiskDone(id, life));
                    return None;
                }
                let wid = match host.disk.complete_next() {
                    Ok(Some(w)) => w,
                    Ok(None) => return None,
                    Err(e) => {
                        return Some(Violation {
                            property: "storage",
                            detail: format!("node {id}: {e}"),
                        })
                    }
                };
                let now = host.clock.read(self.now_us);
                host.node.as_mut().expect("alive").persisted(now, wid);
                self.record(3, id, wid, 0);
                self.drive(id)
            }
            Ev::Client(c) => self.client_step(c),
            Ev::OpTimeout(op) => {
                if self.open_ops.remove(&op) {
                    let o = &mut self.ops[op as usize];
                    o.complete_us = self.now_us;
                    o.outcome = if matches!(o.kind, OpKind::Get { .. }) {
                        Outcome::Fail
                    } else {
                        Outcome::Info
                    };
                    let client = o.client;
                    self.record(4, op, 0, 0);
                    self.client_leader[client] = None;
                    let think = self.rng.gen_range(1_000..20_000);
                    self.schedule(think, Ev::Client(client));
                }
                None
            }
            Ev::Nemesis => {
                if !self.liveness_phase {
                    self.nemesis_step();
                    let gap = self.plan.nemesis_gap_us(&mut self.rng);
                    self.schedule(gap, Ev::Nemesis);
                }
                None
            }
            Ev::Restart(id) => {
                let needs = self.hosts.get(&id).is_some_and(|h| h.node.is_none());
                if needs {
                    self.record(5, id, 0, 0);
                    self.trace_line(|| format!("restart {id}"));
                    return self.boot(id);
                }
                None
            }
            Ev::Resume(id) => {
                if let Some(h) = self.hosts.get_mut(&id) {
                    h.paused_until_us = h.paused_until_us.min(self.now_us);
                }
                None
            }
            Ev::Heal => {
                self.blocked.clear();
                self.clogged.clear();
                self.trace_line(|| "heal network".to_string());
                None
            }
            Ev::ClockFix(id, offset) => {
                if let Some(h) = self.hosts.get_mut(&id) {
                    h.clock.wall_offset_us = offset;
                }
                None
            }
            Ev::DiskFast(id) => {
                if let Some(h) = self.hosts.get_mut(&id) {
                    h.disk.latency_us_min = self.plan.disk_latency_us.0;
                    h.disk.latency_us_max = self.plan.disk_latency_us.1;
                }
                None
            }
            Ev::Operator => {
                if !self.liveness_phase {
                    self.operator_step();
                    let gap = self.rng.gen_range(800_000..3_000_000);
                    self.schedule(gap, Ev::Operator);
                }
                None
            }
            Ev::Liveness => self.begin_liveness(),
            Ev::Shuffle(step, first, last, polls) => {
                self.shuffle_step(step, first, last, polls);
                None
            }
            Ev::Crash(id) => {
                self.faults_injected += 1;
                self.crash(id);
                None
            }
            Ev::LivenessProbe => {
                let v = self.liveness_probe();
                if !self.liveness_ok {
                    self.schedule(200_000, Ev::LivenessProbe);
                }
                v
            }
        }
    }

    /// Processes everything a node has to say, until it is quiet; checks invariants.
    fn drive(&mut self, id: NodeId) -> Option<Violation> {
        loop {
            let now_us = self.now_us;
            let host = self.hosts.get_mut(&id)?;
            let node = host.node.as_mut()?;
            if !node.has_ready() {
                break;
            }
            let ready = node.ready();
            if let Some(snap) = &ready.restore {
                host.app = App::restore(&snap.data);
                assert_eq!(
                    host.app.applied, snap.meta.index,
                    "snapshot data matches its index"
                );
            }
            let life = host.life;
            let mut disk_events = Vec::new();
            for w in ready.writes {
                let lat = self.rng.gen_range(
                    host.disk.latency_us_min
                        ..=host.disk.latency_us_max.max(host.disk.latency_us_min),
                );
                match host.disk.submit(now_us, lat, w) {
                    Ok(done) => disk_events.push(done - now_us),
                    Err(e) => {
                        return Some(Violation {
                            property: "storage",
                            detail: format!("node {id}: {e}"),
                        })
                    }
                }
            }
            for d in disk_events {
                self.schedule(d, Ev::DiskDone(id, life));
            }
            // Messages: check the durability rule at the moment each leaves.
            let node = self.hosts[&id].node.as_ref().expect("alive");
            for m in &ready.messages {
                if let Err(v) = self.monitor.observe_sent(node, m) {
                    return Some(v);
                }
            }
            for m in ready.messages {
                self.send(m);
            }
            // Apply.
            let mut completions = Vec::new();
            let host = self.hosts.get_mut(&id).expect("exists");
            for e in &ready.committed {
                if let Err(v) = self.monitor.observe_applied(id, e) {
                    return Some(v);
                }
                if e.index <= host.app.applied {
                    continue; // Covered by a restored snapshot.
                }
                let result = match &e.kind {
                    EntryKind::Normal(data) => host.app.apply(e.index, data),
                    _ => {
                        host.app.noop(e.index);
                        None
                    }
                };
                if let Some((term, op)) = host.proposals.remove(&e.index) {
                    let swapped = result.map(|r| r.1).unwrap_or(false);
                    let ok = term == e.term && result.is_some_and(|r| r.0 == op);
                    completions.push((op, ok, swapped, e.index));
                }
            }
            let applied = host.app.applied;
            let now = host.clock.read(now_us);
            let node = host.node.as_mut().expect("alive");
            if applied > node.applied_index() {
                node.applied(now, applied);
            }
            // Reads: serve after applying; lease reads re-check the clock after reading.
            let mut read_done = Vec::new();
            for r in &ready.reads {
                if let Some(op) = host.reads.remove(&r.id) {
                    let key = self.ops[op as usize].kind.key().to_string();
                    let value = host.app.kv.get(&key).cloned();
                    let served_index = host.app.applied;
                    let now2 = host.clock.read(now_us);
                    let still = node.lease_read_still_valid(now2, r.path);
                    read_done.push((op, still, value, served_index, r.path));
                }
            }
            for (rid, _) in &ready.failed_reads {
                if let Some(op) = host.reads.remove(rid) {
                    read_done.push((op, false, None, 0, ReadPath::ReadIndex));
                }
            }
            for n in &ready.notes {
                if let keel_core::Note::RepairCompleted { index, term } = n {
                    self.damaged.remove(&id);
                    self.repairs_completed += 1;
                    let (i, t) = (*index, *term);
                    self.trace_line(|| format!("node {id} repair completed at {i}@t{t}"));
                }
                if let keel_core::Note::BecameLeader { term } = n {
                    self.elections += 1;
                    let t = *term;
                    self.trace_line(|| format!("node {id} became leader of term {t}"));
                    // Leader flapping: a new leader sometimes dies moments after taking office.
                    if self.plan.leader_flap > 0.0 && self.rng.gen_bool(self.plan.leader_flap) {
                        let after = self.rng.gen_range(1_000..80_000);
                        self.schedule(after, Ev::Crash(id));
                    }
                }
            }
            // Snapshot now and then.
            let host = self.hosts.get_mut(&id).expect("exists");
            if host.app.applied_since_snapshot >= self.plan.snapshot_every {
                let node = host.node.as_mut().expect("alive");
                let applied = host.app.applied;
                if applied == node.applied_index() && applied > node.log().snapshot_index {
                    let data = host.app.snapshot_bytes();
                    let now = host.clock.read(now_us);
                    if node
                        .snapshot_created(now, applied, data, Vec::new())
                        .is_ok()
                    {
                        host.app.applied_since_snapshot = 0;
                    }
                }
            }
            for (op, ok, swapped, index) in completions {
                self.complete_write(op, ok, swapped, index);
            }
            for (op, served, value, served_index, path) in read_done {
                if let Some(v) = self.complete_read(op, served, value, served_index, path) {
                    return Some(v);
                }
            }
        }
        let node = self.hosts[&id].node.as_ref()?;
        if let Err(v) = self.monitor.observe(node) {
            return Some(v);
        }
        None
    }

    fn send(&mut self, m: Message) {
        self.record(6, m.from, m.to, m.term);
        if self.blocked.contains(&(m.from, m.to)) || self.rng.gen_bool(self.plan.loss) {
            return;
        }
        let (lo, hi) = self.plan.net_delay_us;
        let mut delay = self.rng.gen_range(lo..=hi);
        if let Some(c) = self.clogged.get(&(m.from, m.to)) {
            delay += c;
        }
        if self.rng.gen_bool(self.plan.duplicate) {
            let extra = self.rng.gen_range(lo..=hi * 4);
            self.schedule(delay + extra, Ev::Deliver(Box::new(m.clone())));
        }
        self.schedule(delay, Ev::Deliver(Box::new(m)));
    }

    // ----- Clients -----

    fn leader_guess(&mut self, client: usize) -> Option<NodeId> {
        if let Some(l) = self.client_leader[client] {
            if self.hosts.get(&l).is_some_and(|h| h.node.is_some()) {
                return Some(l);
            }
        }
        let alive: Vec<NodeId> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.node.is_some())
            .map(|(id, _)| *id)
            .collect();
        if alive.is_empty() {
            return None;
        }
        Some(alive[self.rng.gen_range(0..alive.len())])
    }

    fn client_step(&mut self, client: usize) -> Option<Violation> {
        if self.liveness_phase {
            return None;
        }
        let Some(target) = self.leader_guess(client) else {
            self.schedule(50_000, Ev::Client(client));
            return None;
        };
        let keys = self.plan.keys;
        // Skewed keys: key 0 is hot.
        let k = if self.rng.gen_bool(0.5) {
            0
        } else {
            self.rng.gen_range(0..keys)
        };
        let key = format!("k{k}");
        // The first `readers` clients only read (and stay with the node that served them).
        let roll = if client < self.plan.readers {
            100
        } else {
            self.rng.gen_range(0..100)
        };
        let op_id = self.ops.len() as u64;
        let kind = if roll < 40 {
            OpKind::Put {
                key,
                value: format!("{op_id}"),
            }
        } else if roll < 55 {
            let expected = self.recent_value(&key);
            OpKind::Cas {
                key,
                expected,
                new: format!("{op_id}"),
            }
        } else {
            OpKind::Get { key }
        };
        let required_index = self
            .acked_index_by_key
            .get(kind.key())
            .copied()
            .unwrap_or(0);
        let mut op = Op {
            id: op_id,
            client,
            kind: kind.clone(),
            invoke_us: self.now_us,
            complete_us: 0,
            outcome: Outcome::Open,
            lease: false,
            required_index,
            index: 0,
        };
        let now_us = self.now_us;
        let read_mode = match if client < self.plan.readers {
            1
        } else {
            self.rng.gen_range(0..3)
        } {
            0 => ReadMode::ReadIndex,
            1 => ReadMode::Lease,
            _ => ReadMode::InheritedLease,
        };
        let host = self.hosts.get_mut(&target).expect("alive");
        if host.paused_until_us > now_us {
            let wait = host.paused_until_us - now_us + 1;
            self.schedule(wait, Ev::Client(client));
            return None;
        }
        let now = host.clock.read(now_us);
        let node = host.node.as_mut().expect("alive");
        let accepted = match &kind {
            OpKind::Get { key } => {
                let mut mode = read_mode;
                if mode == ReadMode::InheritedLease {
                    // Only when the key is untouched by the limbo region.
                    if let Some((lo, hi)) = node.limbo_range() {
                        let touched = (lo..=hi).any(|i| {
                            node.log().entry(i).is_some_and(|e| match &e.kind {
                                EntryKind::Normal(d) => written_key(d) == Some(key.as_str()),
                                _ => false,
                            })
                        });
                        if touched {
                            mode = ReadMode::Lease;
                        }
                    }
                }
                let rid = self.next_read_id;
                self.next_read_id += 1;
                match node.read(now, rid, mode) {
                    Ok(()) => {
                        host.reads.insert(rid, op_id);
                        op.lease = mode != ReadMode::ReadIndex;
                        Ok(())
                    }
                    Err(keel_core::ReadError::NotLeader { leader, .. }) => Err(leader),
                    Err(_) => Err(None),
                }
            }
            _ => match node.propose(now, encode(op_id, &kind)) {
                Ok((index, term)) => {
                    host.proposals.insert(index, (term, op_id));
                    op.index = index;
                    Ok(())
                }
                Err(keel_core::ProposeError::NotLeader { leader, .. }) => Err(leader),
                Err(_) => Err(None),
            },
        };
        self.record(7, client as u64, target, op_id);
        match accepted {
            Ok(()) => {
                self.client_leader[client] = Some(target);
                self.ops.push(op);
                self.open_ops.insert(op_id);
                self.schedule(self.plan.op_timeout_us, Ev::OpTimeout(op_id));
                self.drive(target)
            }
            Err(hint) => {
                self.client_leader[client] = hint;
                let backoff = self.rng.gen_range(2_000..30_000);
                self.schedule(backoff, Ev::Client(client));
                self.drive(target)
            }
        }
    }

    fn recent_value(&mut self, key: &str) -> String {
        // Use a value some node holds, so CAS sometimes succeeds.
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        let id = ids[self.rng.gen_range(0..ids.len())];
        self.hosts[&id]
            .app
            .kv
            .get(key)
            .cloned()
            .unwrap_or_else(|| "none".to_string())
    }

    fn complete_write(&mut self, op: u64, ok: bool, swapped: bool, index: u64) {
        if !self.open_ops.remove(&op) {
            return;
        }
        let o = &mut self.ops[op as usize];
        o.complete_us = self.now_us;
        o.outcome = if ok {
            Outcome::Ok {
                value: None,
                swapped,
            }
        } else {
            Outcome::Fail
        };
        let key = o.kind.key().to_string();
        let client = o.client;
        if ok {
            let e = self.acked_index_by_key.entry(key).or_insert(0);
            *e = (*e).max(index);
            if Some(op) == self.liveness_op {
                self.liveness_ok = true;
            }
        }
        self.record(8, op, ok as u64, index);
        let think = self.rng.gen_range(1_000..self.plan.think_us_max);
        self.schedule(think, Ev::Client(client));
    }

    fn complete_read(
        &mut self,
        op: u64,
        served: bool,
        value: Option<String>,
        served_index: u64,
        path: ReadPath,
    ) -> Option<Violation> {
        if !self.open_ops.remove(&op) {
            return None;
        }
        let o = &mut self.ops[op as usize];
        o.complete_us = self.now_us;
        o.outcome = if served {
            Outcome::Ok {
                value,
                swapped: false,
            }
        } else {
            Outcome::Fail
        };
        o.lease = path != ReadPath::ReadIndex;
        let client = o.client;
        let required = o.required_index;
        let lease = o.lease;
        self.record(9, op, served as u64, served_index);
        self.trace_line(|| format!("read op {op} {path:?} served={served} at index {served_index} (required {required})"));
        let think = self.rng.gen_range(1_000..self.plan.think_us_max);
        self.schedule(think, Ev::Client(client));
        if served && served_index < required && !(lease && self.clock_assumption_violated) {
            return Some(Violation {
                property: "read-freshness",
                detail: format!(
                    "op {op} ({path:?}) served state at index {served_index}, but a write to its key acknowledged before it began is at index {required}"
                ),
            });
        }
        None
    }

    // ----- Nemesis and operator -----

    fn trace_states(&mut self) {
        if !self.trace.enabled() {
            return;
        }
        let lines: Vec<String> = self
            .hosts
            .iter()
            .map(|(id, h)| match &h.node {
                Some(n) => format!("state {} disk_pending {}", n.summary(), h.disk.pending()),
                None => format!("state node {id} down"),
            })
            .collect();
        for l in lines {
            self.trace_line(|| l);
        }
    }

    fn current_leader(&self) -> Option<NodeId> {
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

    fn nemesis_step(&mut self) {
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        let choice = self.plan.pick_fault(&mut self.rng);
        self.faults_injected += 1;
        let leader = self.current_leader();
        let mut victim = ids[self.rng.gen_range(0..ids.len())];
        if let Some(l) = leader {
            if self.rng.gen_bool(0.5) {
                victim = l;
            }
        }
        let dur = self.rng.gen_range(200_000..3_000_000);
        self.record(10, choice as u64, victim, dur);
        self.trace_line(|| {
            format!(
                "nemesis {} victim {victim} for {}ms",
                crate::faults::FAULT_NAMES[choice],
                dur / 1000
            )
        });
        match choice {
            crate::faults::PARTITION => {
                self.blocked.clear();
                let mode = self.rng.gen_range(0..5);
                let mut side: BTreeSet<NodeId> = BTreeSet::new();
                match mode {
                    0 => {
                        side.insert(victim);
                    }
                    4 => {
                        // The leader with one follower: a minority that grows an uncommitted tail
                        // while the majority elects a new leader (Figure 8 shapes).
                        side.insert(leader.unwrap_or(victim));
                        side.insert(ids[self.rng.gen_range(0..ids.len())]);
                    }
                    1 => {
                        let n = ids.len() / 2;
                        side.insert(victim);
                        while side.len() < n.max(1) {
                            side.insert(ids[self.rng.gen_range(0..ids.len())]);
                        }
                    }
                    2 => {
                        // Asymmetric: victim cannot send, can receive.
                        for &o in &ids {
                            if o != victim {
                                self.blocked.insert((victim, o));
                            }
                        }
                    }
                    _ => {
                        // Bridge: two halves that only `victim` connects.
                        for &a in &ids {
                            for &b in &ids {
                                if a != b && a != victim && b != victim && (a % 2) != (b % 2) {
                                    self.blocked.insert((a, b));
                                }
                            }
                        }
                    }
                }
                for &a in &side {
                    for &b in &ids {
                        if !side.contains(&b) {
                            self.blocked.insert((a, b));
                            self.blocked.insert((b, a));
                        }
                    }
                }
                self.schedule(dur, Ev::Heal);
            }
            crate::faults::CRASH => self.crash(victim),
            crate::faults::PAUSE => {
                if let Some(h) = self.hosts.get_mut(&victim) {
                    h.paused_until_us = self.now_us + dur;
                    self.schedule(dur, Ev::Resume(victim));
                }
            }
            crate::faults::CLOG => {
                for &o in &ids {
                    if o != victim {
                        let d = self.rng.gen_range(50_000..600_000);
                        self.clogged.insert((victim, o), d);
                        self.clogged.insert((o, victim), d);
                    }
                }
                self.schedule(dur, Ev::Heal);
            }
            crate::faults::LEADER_SHUFFLE => {
                // 1: the leader and one follower become a minority (they grow an uncommitted
                // tail); 2: once the majority elects a new leader, isolate it alone (its first
                // entries stay on it); 3: once yet another leader is elected, isolate that one a
                // moment later and let the second rejoin. Steps poll every 20 ms.
                if let Some(l) = leader {
                    let partner = ids[self.rng.gen_range(0..ids.len())];
                    let side: BTreeSet<NodeId> = [l, partner].into_iter().collect();
                    self.partition_off(&side);
                    self.schedule(20_000, Ev::Shuffle(2, l, l, 150));
                }
            }
            crate::faults::CLOCK_JUMP => {
                if let Some(h) = self.hosts.get_mut(&victim) {
                    let old = h.clock.wall_offset_us;
                    let jump = self.rng.gen_range(100_000i64..2_000_000)
                        * if self.rng.gen_bool(0.5) { 1 } else { -1 };
                    h.clock.wall_offset_us += jump;
                    // A time service steps it back within the cooling-off period.
                    let fix = self.rng.gen_range(100_000..1_500_000);
                    self.schedule(fix, Ev::ClockFix(victim, old));
                }
            }
            crate::faults::SLOW_DISK => {
                if let Some(h) = self.hosts.get_mut(&victim) {
                    h.disk.latency_us_min = 10_000;
                    h.disk.latency_us_max = 150_000;
                    self.schedule(dur, Ev::DiskFast(victim));
                }
            }
            _ => unreachable!(),
        }
    }

    /// Cuts every link between `side` and the rest (replacing the current partition).
    fn partition_off(&mut self, side: &BTreeSet<NodeId>) {
        self.blocked.clear();
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        for &a in side {
            for &b in &ids {
                if !side.contains(&b) {
                    self.blocked.insert((a, b));
                    self.blocked.insert((b, a));
                }
            }
        }
    }

    fn shuffle_step(&mut self, step: u8, first: NodeId, last: NodeId, polls: u32) {
        if self.liveness_phase {
            return;
        }
        let leader = self.current_leader();
        let new_leader = leader.filter(|l| *l != first && *l != last);
        match (step, new_leader) {
            (2, Some(s)) => {
                self.trace_line(|| format!("nemesis leader-shuffle: isolate new leader {s}"));
                self.partition_off(&[s].into_iter().collect());
                self.schedule(20_000, Ev::Shuffle(3, first, s, 150));
            }
            (3, Some(l)) => {
                let delay = if self.rng.gen_bool(0.5) {
                    self.rng.gen_range(0..8_000)
                } else {
                    self.rng.gen_range(0..60_000)
                };
                self.trace_line(|| {
                    format!(
                        "nemesis leader-shuffle: isolate leader {l} in {}ms, {last} rejoins",
                        delay / 1000
                    )
                });
                self.schedule(delay, Ev::Shuffle(4, l, last, 0));
            }
            (4, _) => {
                self.partition_off(&[first].into_iter().collect());
                let heal = self.rng.gen_range(500_000..2_000_000);
                self.schedule(heal, Ev::Heal);
            }
            (_, _) if polls > 0 => self.schedule(20_000, Ev::Shuffle(step, first, last, polls - 1)),
            _ => self.blocked.clear(),
        }
    }

    fn crash(&mut self, victim: NodeId) {
        if self.liveness_phase {
            return;
        }
        if let Some(h) = self.hosts.get_mut(&victim) {
            if h.node.is_some() {
                h.disk.crash();
                h.node = None;
                self.monitor.observe_crash(victim);
                self.maybe_damage(victim);
                let restart = self.rng.gen_range(50_000..2_000_000);
                self.schedule(restart, Ev::Restart(victim));
                self.trace_line(|| format!("crash {victim}"));
            }
        }
    }

    /// With WAL damage on: half of the crashes damage a synced record of the crashed node,
    /// while no other node is still repairing (two repairing nodes of three could never elect
    /// a leader again: repair mode trades availability for safety).
    fn maybe_damage(&mut self, victim: NodeId) {
        if self.opts.wal_damage == WalDamage::Off || !self.damaged.is_empty() {
            return;
        }
        if !self.rng.gen_bool(0.5) {
            return;
        }
        let roll = self.rng.gen::<u64>();
        let h = self.hosts.get_mut(&victim).expect("victim exists");
        let pick = |n: usize| (roll % n as u64) as usize;
        if let Some(index) = h.disk.damage_synced_record(pick) {
            self.damaged.insert(victim);
            self.faults_injected += 1;
            self.wal_damages += 1;
            self.record(9, victim, index, 0);
            self.trace_line(|| format!("damage node {victim}: synced WAL record of entry {index}"));
        }
    }

    fn operator_step(&mut self) {
        let Some(leader) = self.current_leader() else {
            return;
        };
        let now_us = self.now_us;
        let churn = self.plan.churn;
        let transfers = self.plan.transfers;
        let roll = self.rng.gen_range(0..10);
        let membership = self.hosts[&leader]
            .node
            .as_ref()
            .expect("leader alive")
            .membership()
            .clone();
        let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let spare: Vec<NodeId> = (1..=NODE_IDS_MAX)
            .filter(|id| !membership.contains(*id))
            .collect();
        let change = if transfers && (!churn || roll < 3) {
            let target = voters[self.rng.gen_range(0..voters.len())];
            if target != leader {
                let host = self.hosts.get_mut(&leader).expect("exists");
                let now = host.clock.read(now_us);
                let r = host
                    .node
                    .as_mut()
                    .expect("alive")
                    .transfer_leader(now, target);
                self.record(11, leader, target, r.is_ok() as u64);
                self.trace_line(|| {
                    format!("operator: transfer leadership {leader} -> {target}: {r:?}")
                });
                self.drive(leader);
            }
            return;
        } else if !churn {
            return;
        } else if roll < 5 && !spare.is_empty() {
            ConfChange::AddLearner(spare[self.rng.gen_range(0..spare.len())])
        } else if roll < 7 && !learners.is_empty() {
            ConfChange::Promote(learners[self.rng.gen_range(0..learners.len())])
        } else if roll < 8 && voters.len() > 3 {
            ConfChange::Remove(voters[self.rng.gen_range(0..voters.len())])
        } else if !learners.is_empty() && voters.len() >= 3 {
            // Replace up to two voters with learners in one joint change.
            let n = learners.len().min(2);
            let add: Vec<NodeId> = learners[..n].to_vec();
            let mut remove = Vec::new();
            while remove.len() < n {
                let v = voters[self.rng.gen_range(0..voters.len())];
                if !remove.contains(&v) {
                    remove.push(v);
                }
            }
            ConfChange::Replace {
                add_voters: add,
                remove_voters: remove,
            }
        } else {
            return;
        };
        if let ConfChange::AddLearner(id) = &change {
            if !self.hosts.contains_key(id) {
                self.start_host(*id, Restored::default());
            } else if self.hosts[id].node.is_none() {
                // Leave it down; it restarts on its own schedule.
            }
        }
        let host = self.hosts.get_mut(&leader).expect("exists");
        let now = host.clock.read(now_us);
        let r = host
            .node
            .as_mut()
            .expect("alive")
            .propose_conf_change(now, change.clone());
        self.record(12, leader, r.is_ok() as u64, 0);
        self.trace_line(|| format!("operator: {change:?} at {leader}: {r:?}"));
        self.drive(leader);
    }

    fn begin_liveness(&mut self) -> Option<Violation> {
        self.liveness_phase = true;
        self.trace_line(|| "liveness phase: heal everything".to_string());
        self.trace_states();
        self.blocked.clear();
        self.clogged.clear();
        self.plan.loss = 0.0;
        self.plan.duplicate = 0.0;
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        for id in ids {
            let h = self.hosts.get_mut(&id).expect("exists");
            h.paused_until_us = 0;
            h.disk.latency_us_min = self.plan.disk_latency_us.0;
            h.disk.latency_us_max = self.plan.disk_latency_us.1;
            if h.node.is_none() {
                if let Some(v) = self.boot(id) {
                    return Some(v);
                }
            }
        }
        self.schedule(0, Ev::LivenessProbe);
        None
    }

    /// In the liveness phase: keep proposing a marker write to the leader until one commits.
    fn liveness_probe(&mut self) -> Option<Violation> {
        if self.liveness_ok {
            return None;
        }
        let pending = self
            .liveness_op
            .is_some_and(|op| self.open_ops.contains(&op));
        if pending {
            return None;
        }
        if let Some(leader) = self.current_leader() {
            let op_id = self.ops.len() as u64;
            let kind = OpKind::Put {
                key: "liveness".into(),
                value: format!("{op_id}"),
            };
            let now_us = self.now_us;
            let host = self.hosts.get_mut(&leader).expect("exists");
            let now = host.clock.read(now_us);
            if let Ok((index, term)) = host
                .node
                .as_mut()
                .expect("alive")
                .propose(now, encode(op_id, &kind))
            {
                host.proposals.insert(index, (term, op_id));
                self.ops.push(Op {
                    id: op_id,
                    client: 0,
                    kind,
                    invoke_us: now_us,
                    complete_us: 0,
                    outcome: Outcome::Open,
                    lease: false,
                    required_index: 0,
                    index,
                });
                self.open_ops.insert(op_id);
                self.liveness_op = Some(op_id);
                self.schedule(self.plan.op_timeout_us, Ev::OpTimeout(op_id));
                if let Some(v) = self.drive(leader) {
                    return Some(v);
                }
            }
        }
        None
    }
}

fn short_body(b: &Body) -> String {
    match b {
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            format!(
                "App prev=({prev_index},{prev_term}) n={} commit={commit}",
                entries.len()
            )
        }
        Body::InstallSnapshot {
            meta, offset, done, ..
        } => format!("Snap idx={} off={offset} done={done}", meta.index),
        other => format!("{other:?}"),
    }
}

impl World {
    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.lines.take().unwrap_or_default()
    }
}
