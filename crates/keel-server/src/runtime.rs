//! The node loop: one task owns the consensus core, the key-value state machine and the handle
//! to the storage thread. Inputs (client requests, peer messages, storage completions, ticks)
//! arrive over bounded channels; each iteration drains a bounded batch, steps the node, and
//! acts on `ready()` in the order the core's contract gives (restore, writes, messages, apply,
//! reads).
//!
//! Client writes are answered when their entry is applied with the term it was proposed in.
//! An entry replaced by another term's entry certainly failed (NOT_LEADER: retry at the
//! leader); a write still unresolved at its deadline gets OUTCOME_UNKNOWN (it may yet commit).

use crate::admission::CoDel;
use crate::audit::Audit;
use crate::codec::{decode_snapshot_data, encode_snapshot_data, AddressBook, Envelope};
use crate::error::ApiError;
use crate::persist::{Done, Job};
use crate::shared::{Header, Shared, StatusView};
use crate::transport::Transport;
use crate::ServerConfig;
use keel_audit::{Anchor, Details, Kind};
use keel_core::{
    ConfChange, EntryKind, Index, Node, NodeId, Note, ReadError, ReadMode, ReadPath, ReadState,
    Role, Stamp, Term, Time,
};
use keel_kv::{ApplyResult, KeyValue, RangeRequest, RangeResponse, StateMachine};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A node that refused anything within this window reports mode `overloaded`.
const OVERLOADED_WINDOW_MS: u64 = 1000;

/// Iterations of `ready()` handling per loop turn before other inputs get a chance.
const READY_ROUNDS_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadLevel {
    Linearizable,
    Bounded { max_staleness_ms: u64 },
    Any,
}

impl ReadLevel {
    pub fn parse(s: &str) -> Option<ReadLevel> {
        match s {
            "" | "linearizable" => Some(ReadLevel::Linearizable),
            "any" => Some(ReadLevel::Any),
            _ => {
                let ms = s.strip_prefix("bounded:")?;
                if ms.is_empty() || ms.len() > 12 || !ms.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(ReadLevel::Bounded {
                    max_staleness_ms: ms.parse().ok()?,
                })
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            ReadLevel::Linearizable => "linearizable",
            ReadLevel::Bounded { .. } => "bounded",
            ReadLevel::Any => "any",
        }
    }
}

#[derive(Clone, Debug)]
pub enum ReadQuery {
    Get(Vec<u8>),
    Range(RangeRequest),
}

#[derive(Clone, Debug)]
pub enum ReadResult {
    Get(Option<KeyValue>),
    Range(RangeResponse),
}

/// How a read was served (the `served` object of every read response).
#[derive(Clone, Debug, Serialize)]
pub struct Served {
    pub level: &'static str,
    pub path: &'static str,
    pub node: NodeId,
    pub term: Term,
    pub applied_index: Index,
    pub revision: u64,
    pub leader: Option<NodeId>,
    pub staleness_ms: Option<u64>,
    pub config_version: Index,
}

#[derive(Debug)]
pub struct ReadOk {
    pub header: Header,
    pub served: Served,
    pub result: ReadResult,
}

#[derive(Debug)]
pub struct WriteOk {
    pub header: Header,
    /// The key-value result (None for configuration and address entries).
    pub result: Option<ApplyResult>,
}

pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A request with the time it entered its queue (for the CoDel queueing-delay check).
pub struct Queued {
    pub at: std::time::Instant,
    pub req: Request,
}

pub enum Request {
    /// Propose an envelope (see codec.rs). `session` is only echoed in OUTCOME_UNKNOWN.
    Write {
        payload: Vec<u8>,
        session: Option<(u64, u64)>,
        reply: Reply<WriteOk>,
    },
    ConfChange {
        change: ConfChange,
        reply: Reply<WriteOk>,
    },
    Transfer {
        target: Option<NodeId>,
        reply: Reply<NodeId>,
    },
    Read {
        level: ReadLevel,
        min_revision: u64,
        query: ReadQuery,
        reply: Reply<ReadOk>,
    },
    /// Graceful stop: transfer leadership, finish in-flight work, sync; then reply.
    Shutdown { reply: oneshot::Sender<()> },
}

impl Request {
    pub fn queued(self) -> Queued {
        Queued {
            at: std::time::Instant::now(),
            req: self,
        }
    }

    /// Client reads and writes may be refused for queueing delay; admin requests and shutdown
    /// are rare and always go through.
    fn sheddable(&self) -> bool {
        matches!(self, Request::Read { .. } | Request::Write { .. })
    }

    /// Answers the request with `err` (a refusal before any work was done).
    fn refuse(self, err: ApiError) {
        match self {
            Request::Write { reply, .. } | Request::ConfChange { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Transfer { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Read { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Request::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }
}

struct PendingWrite {
    term: Term,
    session: Option<(u64, u64)>,
    reply: Reply<WriteOk>,
    deadline_mono_ms: u64,
    proposed_mono_ms: u64,
}

struct PendingRead {
    level: ReadLevel,
    query: ReadQuery,
    reply: Reply<ReadOk>,
    deadline_mono_ms: u64,
    /// A lease read that failed its re-check is retried once as ReadIndex.
    retried: bool,
}

pub struct Inputs {
    pub requests: mpsc::Receiver<Queued>,
    /// Reads have their own queue, polled before writes.
    pub reads: mpsc::Receiver<Queued>,
    pub peer_priority: mpsc::Receiver<keel_core::Message>,
    pub peer_bulk: mpsc::Receiver<keel_core::Message>,
    pub persisted: mpsc::Receiver<Done>,
}

pub struct Runtime {
    cfg: ServerConfig,
    node: Node,
    sm: StateMachine,
    book: AddressBook,
    clock: crate::clock::Clock,
    now: Time,
    shared: Arc<Shared>,
    transport: Arc<Transport>,
    jobs: mpsc::Sender<Job>,
    pending_writes: BTreeMap<Index, PendingWrite>,
    pending_reads: BTreeMap<u64, PendingRead>,
    /// Released reads whose index is not applied yet.
    waiting_reads: Vec<(ReadState, PendingRead)>,
    next_read_id: u64,
    applied_since_snapshot: u64,
    last_applied_stamp: Option<Stamp>,
    last_commit: Index,
    /// Highest term seen (terms never go down) and the term of the last applied entry
    /// (entry terms never go down along the log): checked live, counted as invariant
    /// violations.
    last_term: Term,
    last_applied_term: Term,
    last_leader: Option<NodeId>,
    last_role: Role,
    became_leader_mono_ms: u64,
    shutdown: Option<(u64, oneshot::Sender<()>)>,
    transfer_sent: bool,
    storage_failed: Option<String>,
    /// A committed cluster version this binary cannot run (docs/upgrades.md): the node stops.
    version_refused: Option<String>,
    /// The data format the storage thread must switch to (the applied cluster version is
    /// above the directory's format).
    data_format_wanted: Option<u32>,
    /// The disk is full (a batch waits for space): read-only until the next persisted batch.
    disk_full: Option<String>,
    codel_reads: CoDel,
    codel_writes: CoDel,
    /// The mode last published (transitions are logged, counted and audited).
    published_mode: &'static str,
    audit: Audit,
    /// Anchors of this node's audit chain for the leader to propose (followers only).
    anchor_tx: mpsc::Sender<Anchor>,
    /// Mutant `follower-reads-as-linearizable`: a follower answers linearizable reads from its
    /// own state (a known bug the nemesis must catch). Only set with feature `mutants`.
    pub follower_reads_mutant: bool,
    /// Authorization failures already audited, per reason, and when the last record was
    /// written (one `authz_failure` record per reason per second at most).
    authz_audited: [u64; 3],
    authz_audited_mono_ms: [u64; 3],
    /// Load-shedding episodes (CoDel starting to refuse) per queue (reads, writes) not yet
    /// audited, and when the last `admission_change` record for that queue was written.
    shedding_episodes: [u64; 2],
    shedding_audited_mono_ms: [u64; 2],
}

impl Runtime {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: ServerConfig,
        node: Node,
        sm: StateMachine,
        book: AddressBook,
        clock: crate::clock::Clock,
        now: Time,
        shared: Arc<Shared>,
        transport: Arc<Transport>,
        jobs: mpsc::Sender<Job>,
        last_applied_stamp: Option<Stamp>,
        audit: Audit,
        anchor_tx: mpsc::Sender<Anchor>,
    ) -> Runtime {
        let last_commit = node.commit_index();
        shared.set_replicated_book(book.clone());
        // A crash between applying a finalization and raising the format: raise it now.
        let data_format_wanted = (sm.cluster_version()
            > shared
                .data_format
                .load(std::sync::atomic::Ordering::Acquire))
        .then_some(sm.cluster_version());
        let (cfg_target, cfg_interval) = (cfg.queue_delay_target_ms, cfg.queue_delay_interval_ms);
        Runtime {
            cfg,
            node,
            sm,
            book,
            clock,
            now,
            shared,
            transport,
            jobs,
            pending_writes: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            waiting_reads: Vec::new(),
            next_read_id: 1,
            applied_since_snapshot: 0,
            last_applied_stamp,
            last_commit,
            last_term: 0,
            last_applied_term: 0,
            last_leader: None,
            last_role: Role::Follower,
            became_leader_mono_ms: 0,
            shutdown: None,
            transfer_sent: false,
            storage_failed: None,
            version_refused: None,
            data_format_wanted,
            disk_full: None,
            codel_reads: CoDel::new(cfg_target, cfg_interval),
            codel_writes: CoDel::new(cfg_target, cfg_interval),
            published_mode: "",
            audit,
            anchor_tx,
            follower_reads_mutant: false,
            authz_audited: [0; 3],
            authz_audited_mono_ms: [0; 3],
            shedding_episodes: [0; 2],
            shedding_audited_mono_ms: [0; 2],
        }
    }

    fn tick_now(&mut self) -> Time {
        let (now, jumped) = self.clock.now();
        if jumped {
            self.shared.metrics.clock_discontinuities_total.inc();
            self.audit_local(
                Kind::ClockDistrust,
                Details::new().uint("cooloff_ms", self.cfg.clock_cooloff_ms),
            );
            tracing::warn!(
                wall_ms = now.wall_ms,
                "wall clock discontinuity: lease reads off during the cooling-off period"
            );
        }
        self.now = now;
        now
    }

    /// Audits authorization failures counted by the API layer since the last record: one
    /// record per reason per second at most, carrying the count, so a flood of bad requests
    /// cannot flood the chain.
    fn audit_authz_failures(&mut self) {
        const AUTHZ_AUDIT_INTERVAL_MS: u64 = 1000;
        for (i, reason) in crate::auth::Failure::REASONS.iter().enumerate() {
            let seen = self.shared.authz_failures[i].load(std::sync::atomic::Ordering::Relaxed);
            assert!(seen >= self.authz_audited[i], "failure counters only grow");
            let due = self.authz_audited_mono_ms[i] == 0
                || self.now.mono_ms >= self.authz_audited_mono_ms[i] + AUTHZ_AUDIT_INTERVAL_MS;
            if seen == self.authz_audited[i] || !due {
                continue;
            }
            let count = seen - self.authz_audited[i];
            self.authz_audited[i] = seen;
            self.authz_audited_mono_ms[i] = self.now.mono_ms.max(1);
            self.audit_local(
                Kind::AuthzFailure,
                Details::new().text("reason", reason).uint("count", count),
            );
        }
    }

    /// Audits a queue starting to shed load (`admission_change`): at most one record per queue
    /// per second, counting the episodes it covers.
    fn audit_shedding_started(&mut self, queue: usize, sojourn_ms: u64) {
        const SHEDDING_AUDIT_INTERVAL_MS: u64 = 1000;
        assert!(queue < 2);
        self.shedding_episodes[queue] += 1;
        let last = self.shedding_audited_mono_ms[queue];
        if last != 0 && self.now.mono_ms < last + SHEDDING_AUDIT_INTERVAL_MS {
            return;
        }
        let episodes = std::mem::take(&mut self.shedding_episodes[queue]);
        self.shedding_audited_mono_ms[queue] = self.now.mono_ms.max(1);
        self.audit_local(
            Kind::AdmissionChange,
            Details::new()
                .text("queue", if queue == 0 { "reads" } else { "writes" })
                .text("change", "shedding_started")
                .uint("sojourn_ms", sojourn_ms)
                .uint("episodes", episodes),
        );
    }

    fn audit_local(&mut self, kind: Kind, details: Details) {
        self.audit
            .local(kind, self.now.wall_ms, self.now.mono_ms, details);
    }

    fn audit_from_log(&mut self, kind: Kind, e: &keel_core::Entry, details: Details) {
        self.audit
            .from_log(kind, e.term, e.index, self.now.mono_ms, details);
    }

    /// Proposes this node's audit chain head when an anchor is due: the leader directly,
    /// a follower through the leader (`anchor_tx`, see lib.rs).
    fn maybe_anchor(&mut self) {
        let Some(anchor) = self.audit.due(self.now.mono_ms) else {
            return;
        };
        if self.node.role() == Role::Leader {
            let cmd = keel_kv::Command::AuditAnchor {
                node: anchor.node,
                seq: anchor.seq,
                head: anchor.head,
            };
            let payload = Envelope::KvCommand(cmd.encode()).encode();
            if self.node.propose(self.now, payload).is_err() {
                return;
            }
        } else if self.known_leader().is_none() || self.anchor_tx.try_send(anchor).is_err() {
            return;
        }
        self.audit.proposed(&anchor, self.now.mono_ms);
    }

    /// Runs until shutdown completes or storage fails. Returns an error for a fatal failure.
    pub async fn run(mut self, mut inputs: Inputs) -> anyhow::Result<()> {
        let mut ticker =
            tokio::time::interval(std::time::Duration::from_millis(self.cfg.tick_interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let batch_max = self.cfg.loop_batch_max;
        let started = Details::new()
            .uint("term", self.node.term())
            .uint("commit_index", self.node.commit_index())
            .uint("applied_index", self.sm.applied_index());
        self.audit_local(Kind::NodeStarted, started);
        self.publish();
        loop {
            tokio::select! {
                biased;
                Some(done) = inputs.persisted.recv() => {
                    self.on_persisted(done);
                    while let Ok(done) = inputs.persisted.try_recv() {
                        self.on_persisted(done);
                    }
                }
                Some(m) = inputs.peer_priority.recv() => {
                    let now = self.tick_now();
                    self.node.receive(now, m);
                    for _ in 0..batch_max {
                        let Ok(m) = inputs.peer_priority.try_recv() else { break };
                        self.node.receive(now, m);
                    }
                }
                _ = ticker.tick() => {
                    let now = self.tick_now();
                    self.node.tick(now);
                    self.expire(now);
                    self.maybe_anchor();
                    self.audit_authz_failures();
                }
                Some(m) = inputs.peer_bulk.recv() => {
                    let now = self.tick_now();
                    self.node.receive(now, m);
                    for _ in 0..batch_max {
                        let Ok(m) = inputs.peer_bulk.try_recv() else { break };
                        self.node.receive(now, m);
                    }
                }
                Some(q) = inputs.reads.recv() => {
                    self.tick_now();
                    self.on_queued(q);
                    for _ in 0..batch_max {
                        let Ok(q) = inputs.reads.try_recv() else { break };
                        self.on_queued(q);
                    }
                }
                Some(q) = inputs.requests.recv() => {
                    self.tick_now();
                    self.on_queued(q);
                    for _ in 0..batch_max {
                        let Ok(q) = inputs.requests.try_recv() else { break };
                        self.on_queued(q);
                    }
                }
            }
            if let Some(reason) = self.storage_failed.take() {
                self.fail_everything(&reason);
                anyhow::bail!("storage failed: {reason}");
            }
            self.process_ready().await?;
            self.publish();
            if self.shutdown_done() {
                let (tx, rx) = oneshot::channel();
                let _ = self.jobs.send(Job::Flush(tx)).await;
                let _ = rx.await;
                if let Some((_, reply)) = self.shutdown.take() {
                    let _ = reply.send(());
                }
                tracing::info!(
                    node = self.cfg.id,
                    "node loop stopped after a graceful shutdown"
                );
                return Ok(());
            }
        }
    }

    fn on_persisted(&mut self, done: Done) {
        match done {
            Done::Persisted { id, sync_seconds } => {
                if let Some(reason) = self.disk_full.take() {
                    tracing::warn!(node = self.cfg.id, %reason, "disk space is back: writes accepted again");
                }
                self.shared.metrics.wal_fsync_seconds.observe(sync_seconds);
                let now = self.tick_now();
                self.node.persisted(now, id);
            }
            Done::NoSpace { reason } => {
                tracing::error!(
                    node = self.cfg.id,
                    %reason,
                    "disk full: read-only until space returns (the batch is retried)"
                );
                self.disk_full = Some(reason);
                // A leader that cannot write hands over to a voter that can.
                if self.node.role() == Role::Leader {
                    if let Some(target) = self.transfer_candidate() {
                        let now = self.now;
                        if let Err(e) = self.node.transfer_leader(now, target) {
                            tracing::warn!(%e, "disk full: leadership transfer not possible");
                        }
                    }
                }
            }
            Done::Failed { reason, no_space } => {
                tracing::error!(%reason, no_space, "storage failure: the node stops");
                self.storage_failed = Some(reason);
            }
            Done::DataFormat(format) => {
                assert!(format <= crate::version::CLUSTER_VERSION_MAX);
                self.shared
                    .data_format
                    .store(format, std::sync::atomic::Ordering::Release);
                tracing::info!(node = self.cfg.id, format, "data directory format raised");
            }
        }
    }

    fn fail_everything(&mut self, reason: &str) {
        for (_, w) in std::mem::take(&mut self.pending_writes) {
            let _ = w.reply.send(Err(ApiError::outcome_unknown(
                w.session,
                &format!("storage failed ({reason})"),
            )));
        }
        for (_, r) in std::mem::take(&mut self.pending_reads) {
            let _ = r.reply.send(Err(ApiError::unavailable("storage failed")));
        }
    }

    fn header(&self) -> Header {
        Header {
            term: self.node.term(),
            leader: self.known_leader(),
            revision: self.sm.revision(),
            applied_index: self.sm.applied_index(),
            config_version: self.node.config_version(),
            served_by: self.cfg.id,
        }
    }

    fn not_leader(&self) -> ApiError {
        let leader = self.known_leader().filter(|&l| l != self.cfg.id);
        self.outside_hint(ApiError::not_leader(
            leader.map(|id| (id, self.shared.client_addr(id))),
            self.node.term(),
            self.node.last_leader_contact_ms(),
        ))
    }

    /// A node outside the configuration it knows (removed, or not yet added) will not learn of
    /// a leader by waiting: its NO_LEADER says "try another node", not "retry here".
    fn outside_hint(&self, e: ApiError) -> ApiError {
        if e.code == "NO_LEADER" && !self.node.membership().contains(self.cfg.id) {
            return e.retry("other_node");
        }
        e
    }

    fn deadline(&self) -> u64 {
        self.now.mono_ms + self.cfg.request_timeout_ms()
    }

    /// Admission at dequeue: a request that waited in a standing queue past the CoDel target is
    /// refused (OVERLOADED, reason `queue_delay`) before any work is done for it.
    fn on_queued(&mut self, q: Queued) {
        let sojourn_ms = q.at.elapsed().as_millis() as u64;
        let now_ms = self.now.mono_ms;
        let queue = usize::from(!matches!(q.req, Request::Read { .. }));
        let codel = if queue == 0 {
            &mut self.codel_reads
        } else {
            &mut self.codel_writes
        };
        let was_shedding = codel.dropping();
        let refuse = codel.on_dequeue(now_ms, sojourn_ms);
        if !was_shedding && codel.dropping() {
            self.audit_shedding_started(queue, sojourn_ms);
        }
        if refuse && q.req.sheddable() {
            self.shared.reject("queue_delay");
            let retry_after_ms = self.cfg.queue_delay_interval_ms;
            q.req.refuse(ApiError::overloaded(
                "node",
                retry_after_ms,
                format!("queueing delay {sojourn_ms} ms is above the target (standing queue)"),
            ));
            return;
        }
        self.on_request(q.req);
    }

    fn on_request(&mut self, r: Request) {
        let now = self.now;
        match r {
            Request::Write {
                payload,
                session,
                reply,
            } => {
                if self.shutdown.is_some() {
                    self.shared.reject("shutting_down");
                    let _ = reply.send(Err(
                        ApiError::unavailable("node is shutting down").retry("other_node")
                    ));
                    return;
                }
                if let Some(reason) = &self.disk_full {
                    let _ = reply.send(Err(ApiError::no_space(reason, self.leader_ref())));
                    return;
                }
                let apply_lag = self
                    .node
                    .commit_index()
                    .saturating_sub(self.sm.applied_index());
                if apply_lag > self.cfg.apply_lag_entries_max {
                    self.shared.reject("apply_lag");
                    let _ = reply.send(Err(ApiError::overloaded(
                        "node",
                        100,
                        format!("{apply_lag} committed entries are not applied yet"),
                    )));
                    return;
                }
                if self.pending_writes.len() >= self.cfg.inflight_proposals_max {
                    self.shared.reject("inflight_limit");
                    let _ = reply.send(Err(ApiError::overloaded(
                        "node",
                        50,
                        "too many writes in flight",
                    )));
                    return;
                }
                match self.node.propose(now, payload) {
                    Ok((index, term)) => {
                        let pw = PendingWrite {
                            term,
                            session,
                            reply,
                            deadline_mono_ms: self.deadline(),
                            proposed_mono_ms: now.mono_ms,
                        };
                        self.pending_writes.insert(index, pw);
                    }
                    Err(e) => {
                        if matches!(e, keel_core::ProposeError::UncommittedLimit { .. }) {
                            self.shared.reject("uncommitted_limit");
                        }
                        let _ = reply.send(Err(self.propose_error(e)));
                    }
                }
            }
            Request::ConfChange { change, reply } => {
                let what = format!("{change:?}");
                if let Some(reason) = &self.disk_full {
                    let _ = reply.send(Err(ApiError::no_space(reason, self.leader_ref())));
                    return;
                }
                match self.node.propose_conf_change(now, change) {
                    Ok((index, term)) => {
                        self.audit_local(
                            Kind::MembershipProposed,
                            Details::new()
                                .text("change", &what)
                                .uint("index", index)
                                .uint("term", term),
                        );
                        let pw = PendingWrite {
                            term,
                            session: None,
                            reply,
                            deadline_mono_ms: self.deadline(),
                            proposed_mono_ms: now.mono_ms,
                        };
                        self.pending_writes.insert(index, pw);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.propose_error(e)));
                    }
                }
            }
            Request::Transfer { target, reply } => {
                let target = target.or_else(|| self.transfer_candidate());
                let Some(target) = target else {
                    let _ = reply.send(Err(ApiError::bad_request(
                        "target",
                        "no other voter to transfer to",
                    )));
                    return;
                };
                let result = self.node.transfer_leader(now, target);
                self.audit_local(
                    Kind::AdminRequest,
                    Details::new()
                        .text("op", "transfer_leader")
                        .uint("target", target)
                        .text(
                            "outcome",
                            if result.is_ok() {
                                "accepted"
                            } else {
                                "refused"
                            },
                        ),
                );
                let _ = reply.send(result.map(|()| target).map_err(|e| self.propose_error(e)));
            }
            Request::Read {
                level,
                min_revision,
                query,
                reply,
            } => {
                if min_revision > self.sm.revision() {
                    let e = ApiError::new(
                        "STALE_BOUND_UNMET",
                        format!(
                            "this node has applied revision {}, below min_revision {min_revision}",
                            self.sm.revision()
                        ),
                    )
                    .with("revision", self.sm.revision())
                    .with("min_revision", min_revision);
                    let _ = reply.send(Err(e));
                    return;
                }
                let pr = PendingRead {
                    level,
                    query,
                    reply,
                    deadline_mono_ms: self.deadline(),
                    retried: false,
                };
                match level {
                    ReadLevel::Linearizable => self.start_linearizable(pr, ReadMode::Lease),
                    ReadLevel::Bounded { max_staleness_ms } => {
                        let staleness = self.staleness_ms();
                        match staleness {
                            Some(s) if s <= max_staleness_ms => self.serve_local(pr, Some(s)),
                            _ => {
                                let e = ApiError::new(
                                    "STALE_BOUND_UNMET",
                                    format!(
                                        "cannot prove this node's state is within {max_staleness_ms} ms (bound: {})",
                                        staleness.map_or("unknown".to_string(), |s| format!("{s} ms"))
                                    ),
                                )
                                .with("staleness_ms", staleness)
                                .with("leader", crate::error::leader_json(self.leader_ref()));
                                let _ = pr.reply.send(Err(e));
                            }
                        }
                    }
                    ReadLevel::Any => {
                        let s = self.staleness_ms();
                        self.serve_local(pr, s)
                    }
                }
            }
            Request::Shutdown { reply } => {
                self.shared.shutting_down.store(true, Ordering::Relaxed);
                let deadline = now.mono_ms
                    + self
                        .cfg
                        .election_timeout_ms
                        .max(self.cfg.request_timeout_ms());
                self.shutdown = Some((deadline, reply));
                tracing::info!(
                    node = self.cfg.id,
                    role = self.node.role().name(),
                    "graceful shutdown requested"
                );
            }
        }
    }

    /// The leader as clients should see it: none while this node campaigns (a pre-candidate or
    /// candidate has lost contact with the leader it knew; the core keeps that id for its
    /// own bookkeeping, as etcd's raft does not).
    fn known_leader(&self) -> Option<NodeId> {
        match self.node.role() {
            Role::PreCandidate | Role::Candidate => None,
            _ => self.node.leader(),
        }
    }

    /// A refused proposal as the client sees it (no stale leader hint while campaigning).
    fn propose_error(&self, e: keel_core::ProposeError) -> ApiError {
        let e = match e {
            keel_core::ProposeError::NotLeader { term, .. } if self.known_leader().is_none() => {
                keel_core::ProposeError::NotLeader { leader: None, term }
            }
            e => e,
        };
        self.outside_hint(ApiError::from_propose(
            e,
            |id| self.shared.client_addr(id),
            self.node.last_leader_contact_ms(),
        ))
    }

    fn leader_ref(&self) -> Option<(NodeId, Option<String>)> {
        self.known_leader()
            .map(|id| (id, self.shared.client_addr(id)))
    }

    fn transfer_candidate(&self) -> Option<NodeId> {
        self.node
            .membership()
            .voters
            .iter()
            .copied()
            .find(|&v| v != self.cfg.id)
    }

    /// An upper bound on how stale this node's applied state is, in ms, or None if unprovable.
    /// The state after applying entry i includes every write acknowledged before i's creation,
    /// whose earliest possible wall time is i's stamp; so staleness ≤ now.latest − stamp.earliest.
    fn staleness_ms(&mut self) -> Option<u64> {
        let now = self.now;
        if self.node.role() == Role::Leader
            && self.sm.applied_index() == self.node.commit_index()
            && self.node.lease_read_still_valid(now, ReadPath::Lease)
        {
            return Some(0);
        }
        if !now.wall_trusted {
            return None;
        }
        let stamp = self.last_applied_stamp?;
        Some((now.wall_ms + self.cfg.clock_uncertainty_ms).saturating_sub(stamp.earliest_ms))
    }

    fn start_linearizable(&mut self, pr: PendingRead, mode: ReadMode) {
        if cfg!(feature = "mutants")
            && self.follower_reads_mutant
            && self.node.role() != Role::Leader
        {
            self.serve_local(pr, Some(0));
            return;
        }
        if self.node.role() != Role::Leader {
            let _ = pr.reply.send(Err(self.not_leader()));
            return;
        }
        let id = self.next_read_id;
        self.next_read_id += 1;
        match self.node.read(self.now, id, mode) {
            Ok(()) => {
                self.pending_reads.insert(id, pr);
            }
            Err(ReadError::TooManyPending) => {
                self.shared.reject("queue_full");
                let _ = pr.reply.send(Err(ApiError::overloaded(
                    "node",
                    50,
                    "too many reads pending",
                )));
            }
            Err(_) => {
                let _ = pr.reply.send(Err(self.not_leader()));
            }
        }
    }

    fn execute(&self, query: &ReadQuery) -> Result<ReadResult, ApiError> {
        match query {
            ReadQuery::Get(key) => self
                .sm
                .get(key)
                .map(|r| ReadResult::Get(r.body))
                .map_err(|e| ApiError::from_kv(&e)),
            ReadQuery::Range(req) => self
                .sm
                .range(req)
                .map(|r| ReadResult::Range(r.body))
                .map_err(|e| ApiError::from_kv(&e)),
        }
    }

    fn served(&self, level: ReadLevel, path: &'static str, staleness_ms: Option<u64>) -> Served {
        Served {
            level: level.name(),
            path,
            node: self.cfg.id,
            term: self.node.term(),
            applied_index: self.sm.applied_index(),
            revision: self.sm.revision(),
            leader: self.known_leader(),
            staleness_ms,
            config_version: self.node.config_version(),
        }
    }

    fn serve_local(&mut self, pr: PendingRead, staleness_ms: Option<u64>) {
        let result = self.execute(&pr.query).map(|result| ReadOk {
            header: self.header(),
            served: self.served(pr.level, "local", staleness_ms),
            result,
        });
        let _ = pr.reply.send(result);
    }

    fn serve_released(&mut self, rs: ReadState, pr: PendingRead) {
        assert!(
            self.sm.applied_index() >= rs.index,
            "read served before its index was applied"
        );
        let result = self.execute(&pr.query);
        let path = match rs.path {
            ReadPath::ReadIndex => "read_index",
            ReadPath::Lease => "lease",
            ReadPath::InheritedLease => "inherited_lease",
        };
        if rs.path != ReadPath::ReadIndex {
            let now = self.tick_now();
            if !self.node.lease_read_still_valid(now, rs.path) {
                // The lease lapsed while reading: confirm with a quorum round instead.
                if pr.retried {
                    let _ = pr.reply.send(Err(ApiError::unavailable(
                        "lease lapsed and ReadIndex did not confirm",
                    )));
                } else {
                    self.shared.metrics.request_retry("read");
                    let pr = PendingRead {
                        retried: true,
                        ..pr
                    };
                    self.start_linearizable(pr, ReadMode::ReadIndex);
                }
                return;
            }
        }
        let ok = result.map(|result| ReadOk {
            header: self.header(),
            served: self.served(pr.level, path, Some(0)),
            result,
        });
        let _ = pr.reply.send(ok);
    }

    fn expire(&mut self, now: Time) {
        let expired: Vec<Index> = self
            .pending_writes
            .iter()
            .filter(|(_, w)| w.deadline_mono_ms <= now.mono_ms)
            .map(|(&i, _)| i)
            .collect();
        for i in expired {
            let w = self.pending_writes.remove(&i).expect("listed");
            let why = if self.node.role() == Role::Leader {
                "timed out waiting for commit"
            } else {
                "leadership lost"
            };
            self.shared.metrics.request_timeout("write");
            let _ = w.reply.send(Err(ApiError::outcome_unknown(w.session, why)));
        }
        let expired: Vec<u64> = self
            .pending_reads
            .iter()
            .filter(|(_, r)| r.deadline_mono_ms <= now.mono_ms)
            .map(|(&i, _)| i)
            .collect();
        for i in expired {
            let r = self.pending_reads.remove(&i).expect("listed");
            self.shared.metrics.request_timeout("read");
            let _ = r.reply.send(Err(ApiError::unavailable(
                "read not confirmed in time (no quorum?)",
            )));
        }
    }

    async fn process_ready(&mut self) -> anyhow::Result<()> {
        for _ in 0..READY_ROUNDS_MAX {
            if !self.node.has_ready() {
                break;
            }
            let ready = self.node.ready();
            if let Some(snap) = &ready.restore {
                self.restore(&snap.data, snap.meta.index, snap.meta.last_stamp)?;
            }
            if !ready.writes.is_empty() && self.jobs.send(Job::Writes(ready.writes)).await.is_err()
            {
                anyhow::bail!("storage thread stopped");
            }
            for m in ready.messages {
                self.transport.send(m);
            }
            for e in &ready.committed {
                self.apply(e);
                if let Some(reason) = self.version_refused.clone() {
                    // Nothing after the version change is applied under the old rules.
                    tracing::error!(node = self.cfg.id, %reason, "the node stops");
                    self.fail_everything(&reason);
                    anyhow::bail!("{reason}");
                }
            }
            if let Some(format) = self.data_format_wanted.take() {
                if self.jobs.send(Job::SetDataFormat(format)).await.is_err() {
                    anyhow::bail!("storage thread stopped");
                }
            }
            let now = self.tick_now();
            if self.sm.applied_index() > self.node.applied_index() {
                self.node.applied(now, self.sm.applied_index());
            }
            for rs in ready.reads {
                if let Some(pr) = self.pending_reads.remove(&rs.id) {
                    if self.sm.applied_index() >= rs.index {
                        self.serve_released(rs, pr);
                    } else {
                        self.waiting_reads.push((rs, pr));
                    }
                }
            }
            if !self.waiting_reads.is_empty() {
                let applied = self.sm.applied_index();
                let (ready_now, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_reads)
                    .into_iter()
                    .partition(|(rs, _)| rs.index <= applied);
                self.waiting_reads = still;
                for (rs, pr) in ready_now {
                    self.serve_released(rs, pr);
                }
            }
            for (id, err) in ready.failed_reads {
                if let Some(pr) = self.pending_reads.remove(&id) {
                    let e = match err {
                        ReadError::TooManyPending => {
                            ApiError::overloaded("node", 50, "too many reads pending")
                        }
                        _ => self.not_leader(),
                    };
                    let _ = pr.reply.send(Err(e));
                }
            }
            for n in ready.notes {
                self.on_note(n);
            }
            self.maybe_snapshot();
        }
        self.after_step();
        Ok(())
    }

    fn restore(&mut self, data: &[u8], index: Index, stamp: Stamp) -> anyhow::Result<()> {
        let (kv, book) = decode_snapshot_data(data)
            .map_err(|e| anyhow::anyhow!("snapshot data at {index}: {e}"))?;
        self.sm = StateMachine::restore(self.sm.config().clone(), kv)
            .map_err(|e| anyhow::anyhow!("snapshot at {index} does not restore: {e:?}"))?;
        anyhow::ensure!(
            self.sm.applied_index() == index,
            "snapshot data index differs from its metadata"
        );
        self.book = book;
        self.shared.set_replicated_book(self.book.clone());
        self.on_cluster_version(self.sm.cluster_version());
        if let Some(reason) = &self.version_refused {
            anyhow::bail!("{reason}");
        }
        self.last_applied_stamp = Some(stamp);
        self.applied_since_snapshot = 0;
        tracing::info!(index, "installed a snapshot from the leader");
        Ok(())
    }

    /// The applied cluster version is `version` (a committed finalization, or a snapshot that
    /// carries one): refuse to go on if this binary cannot run it, else publish it and have the
    /// data directory switched to its format.
    fn on_cluster_version(&mut self, version: u32) {
        if let Err(e) = crate::version::check_runnable(version) {
            self.version_refused = Some(e.to_string());
            return;
        }
        let previous = self
            .shared
            .cluster_version
            .swap(version, std::sync::atomic::Ordering::AcqRel);
        assert!(
            version >= previous,
            "cluster version lowered: {version} after {previous}"
        );
        if version
            > self
                .shared
                .data_format
                .load(std::sync::atomic::Ordering::Acquire)
        {
            self.data_format_wanted = Some(version);
        }
        if version != previous {
            tracing::info!(
                node = self.cfg.id,
                version,
                previous,
                "cluster version applied"
            );
        }
    }

    fn apply(&mut self, e: &keel_core::Entry) {
        if e.index <= self.sm.applied_index() {
            return; // covered by a restored snapshot
        }
        let time_ms = e.stamp.earliest_ms;
        let mut result = None;
        match &e.kind {
            EntryKind::Normal(data) => match Envelope::decode(data) {
                Ok(Envelope::KvCommand(cmd)) => {
                    let applied = self.sm.apply(e.index, time_ms, &cmd);
                    if let Ok(keel_kv::Response::ClusterVersionSet { version, previous }) =
                        &applied.result
                    {
                        if version > previous {
                            let details = Details::new()
                                .uint("cluster_version", u64::from(*version))
                                .uint("previous", u64::from(*previous));
                            self.audit_from_log(Kind::UpgradeFinalized, e, details);
                        }
                        self.on_cluster_version(*version);
                    }
                    if let Ok(keel_kv::Response::AuditAnchored { node, seq, head }) =
                        &applied.result
                    {
                        let anchor = Anchor {
                            node: *node,
                            seq: *seq,
                            head: *head,
                        };
                        self.audit
                            .anchor_committed(e.term, e.index, &anchor, self.now.mono_ms);
                    }
                    result = Some(applied)
                }
                Ok(Envelope::AddressUpdate { id, addresses }) => {
                    self.book.insert(id, addresses);
                    self.shared.set_replicated_book(self.book.clone());
                    self.sm.apply_noop(e.index, time_ms);
                }
                Err(err) => {
                    tracing::error!(index = e.index, %err, "undecodable entry payload applied as a no-op");
                    self.sm.apply_noop(e.index, time_ms);
                }
            },
            EntryKind::Noop => {
                // A leader's first entry of its term: the election, as every node sees it.
                self.audit_from_log(Kind::ElectionWon, e, Details::new());
                self.sm.apply_noop(e.index, time_ms)
            }
            EntryKind::Config(c) => {
                let ids = |s: &std::collections::BTreeSet<NodeId>| {
                    s.iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let details = Details::new()
                    .text("voters", &ids(&c.voters))
                    .text("voters_outgoing", &ids(&c.voters_outgoing))
                    .text("learners", &ids(&c.learners));
                self.audit_from_log(Kind::MembershipCommitted, e, details);
                self.sm.apply_noop(e.index, time_ms)
            }
        }
        assert_eq!(
            self.sm.applied_index(),
            e.index,
            "state machine applied index follows the log"
        );
        if e.term < self.last_applied_term || e.term > self.node.term() {
            self.invariant_violated("applied-entry-terms-ordered");
        }
        self.last_applied_term = e.term;
        self.last_applied_stamp = Some(e.stamp);
        self.applied_since_snapshot += 1;
        if let Some(pw) = self.pending_writes.remove(&e.index) {
            if pw.term == e.term {
                if result.as_ref().is_some_and(|r| r.duplicate) {
                    self.shared.metrics.request_retry("write");
                }
                let latency_ms = self.now.mono_ms.saturating_sub(pw.proposed_mono_ms);
                self.shared
                    .metrics
                    .quorum_ack_latency_seconds
                    .observe(latency_ms as f64 / 1000.0);
                let _ = pw.reply.send(Ok(WriteOk {
                    header: self.header(),
                    result,
                }));
            } else {
                let err = ApiError::new(
                    "NOT_LEADER",
                    format!(
                        "the write was not committed: index {} holds an entry of term {}",
                        e.index, e.term
                    ),
                )
                .with("leader", crate::error::leader_json(self.leader_ref()))
                .with("term", self.node.term());
                let _ = pw.reply.send(Err(err));
            }
        }
    }

    fn maybe_snapshot(&mut self) {
        if self.applied_since_snapshot < self.cfg.snapshot_interval_entries {
            return;
        }
        let applied = self.sm.applied_index();
        if applied != self.node.applied_index() || applied <= self.node.log().snapshot_index {
            return;
        }
        let data = encode_snapshot_data(&self.sm.snapshot(), &self.book);
        let sessions = self.sm.session_table_bytes();
        let now = self.tick_now();
        match self.node.snapshot_created(now, applied, data, sessions) {
            Ok(()) => {
                self.applied_since_snapshot = 0;
                self.audit_local(Kind::SnapshotTaken, Details::new().uint("index", applied));
                self.shared.metrics.snapshots_created_total.inc();
                tracing::info!(index = applied, "snapshot taken");
            }
            Err(e) => tracing::warn!(%e, "snapshot refused by the core"),
        }
    }

    fn on_note(&mut self, n: Note) {
        match n {
            Note::BecameLeader { term } => {
                self.became_leader_mono_ms = self.now.mono_ms;
                tracing::info!(node = self.cfg.id, term, "became leader");
            }
            Note::SteppedDown { term, reason } => {
                tracing::info!(node = self.cfg.id, term, reason, "stepped down")
            }
            Note::LeaderChanged { term, leader } => {
                tracing::info!(node = self.cfg.id, term, ?leader, "leader changed")
            }
            Note::ConfigCommitted { index, membership } => tracing::info!(
                index,
                voters = ?membership.voters,
                learners = ?membership.learners,
                "configuration committed"
            ),
            Note::SnapshotInstalled { index, term } => {
                self.audit_local(
                    Kind::SnapshotInstalled,
                    Details::new().uint("index", index).uint("term", term),
                );
                self.shared.metrics.snapshots_installed_total.inc();
                tracing::info!(index, term, "snapshot installed");
            }
            Note::SnapshotInstallFailed { reason } => {
                self.shared.metrics.snapshot_install_failures_total.inc();
                tracing::warn!(%reason, "snapshot install failed");
            }
            Note::TransferStarted { target } => {
                self.audit_local(Kind::LeaderTransfer, Details::new().uint("target", target));
                tracing::info!(target, "leadership transfer started")
            }
            Note::TransferAborted { target } => {
                tracing::warn!(target, "leadership transfer aborted")
            }
            Note::RepairCompleted { index, term } => {
                self.audit_local(
                    Kind::RepairCompleted,
                    Details::new().uint("index", index).uint("term", term),
                );
                tracing::warn!(
                    node = self.cfg.id,
                    index,
                    term,
                    "repair completed: caught up from the leader; voting again"
                )
            }
        }
    }

    /// A protocol invariant failed on this node: counted, logged at error. (The simulator and
    /// model checker check the cross-node properties; these are the ones a node sees alone.)
    fn invariant_violated(&self, what: &'static str) {
        self.shared.metrics.invariant_violations_total.inc();
        tracing::error!(node = self.cfg.id, invariant = what, "invariant violated");
    }

    fn after_step(&mut self) {
        let term = self.node.term();
        if term < self.last_term {
            self.invariant_violated("term-monotonic");
        }
        self.last_term = self.last_term.max(term);
        let commit = self.node.commit_index();
        if commit < self.last_commit {
            self.invariant_violated("commit-index-monotonic");
            self.shared.metrics.commit_index_regressions_total.inc();
            tracing::error!(
                commit,
                previous = self.last_commit,
                "commit index went down"
            );
        }
        self.last_commit = commit;
        if self.node.role() != self.last_role {
            tracing::info!(
                node = self.cfg.id,
                term = self.node.term(),
                from = self.last_role.name(),
                to = self.node.role().name(),
                "role changed"
            );
            self.last_role = self.node.role();
        }
        if self.node.leader() != self.last_leader {
            if self.node.leader().is_some() {
                self.shared.metrics.leader_changes_total.inc();
            }
            self.last_leader = self.node.leader();
        }
        // Shutdown: a leader hands over first.
        if let Some((deadline, _)) = &self.shutdown {
            let _ = deadline;
            if !self.transfer_sent && self.node.role() == Role::Leader {
                if let Some(t) = self.transfer_candidate() {
                    let now = self.now;
                    match self.node.transfer_leader(now, t) {
                        Ok(()) => {
                            self.transfer_sent = true;
                            tracing::info!(target = t, "shutdown: transferring leadership");
                        }
                        Err(e) => tracing::debug!(%e, "shutdown: transfer not possible yet"),
                    }
                }
            }
        }
    }

    fn shutdown_done(&self) -> bool {
        let Some((deadline, _)) = &self.shutdown else {
            return false;
        };
        if self.now.mono_ms >= *deadline {
            return true;
        }
        let solo = self.node.membership().voters.len() <= 1;
        let handed_over = self.node.role() != Role::Leader || solo;
        handed_over && self.pending_writes.is_empty() && self.pending_reads.is_empty()
    }

    /// The node's named mode (docs/degraded-modes.md). One state machine, evaluated after every
    /// loop iteration from the core's and the loop's state; first match wins.
    fn mode(&mut self) -> &'static str {
        if self.shutdown.is_some() {
            return "shutting_down";
        }
        if self.disk_full.is_some() {
            return "disk_full";
        }
        let id = self.cfg.id;
        let m = self.node.membership();
        if !m.voters.contains(&id) && !m.voters_outgoing.contains(&id) {
            return "catching_up";
        }
        let overloaded = self.shared.admission.rejected_within(OVERLOADED_WINDOW_MS)
            || self.codel_reads.dropping()
            || self.codel_writes.dropping();
        match self.known_leader() {
            None => "no_leader",
            Some(l) if l == id => {
                let lease = self.node.lease_read_still_valid(self.now, ReadPath::Lease);
                let settled =
                    self.now.mono_ms > self.became_leader_mono_ms + 2 * self.cfg.lease_duration_ms;
                if !lease && settled && self.now.wall_trusted {
                    "no_quorum"
                } else if !self.now.wall_trusted {
                    "clock_untrusted"
                } else if overloaded {
                    "overloaded"
                } else {
                    "healthy"
                }
            }
            Some(_) => {
                if !self.now.wall_trusted {
                    "clock_untrusted"
                } else if self.node.commit_index() > self.sm.applied_index() + 1000 {
                    "catching_up"
                } else if overloaded {
                    "overloaded"
                } else {
                    "healthy"
                }
            }
        }
    }

    fn publish(&mut self) {
        let mode = self.mode();
        let lease_valid = self.node.role() == Role::Leader
            && self.node.lease_read_still_valid(self.now, ReadPath::Lease);
        let m = self.node.membership().clone();
        let id = self.cfg.id;
        let role = if self.node.role() == Role::Follower && m.learners.contains(&id) {
            "learner"
        } else {
            self.node.role().name()
        };
        let view = StatusView {
            header: self.header(),
            role,
            commit_index: self.node.commit_index(),
            mode,
            lease_valid,
            last_contact_ms: self.node.last_leader_contact_ms(),
            voters: m.voters.iter().copied().collect(),
            learners: m.learners.iter().copied().collect(),
            voters_outgoing: m.voters_outgoing.iter().copied().collect(),
        };
        let metrics = &self.shared.metrics;
        metrics.term.set(view.header.term as i64);
        metrics.commit_index.set(view.commit_index as i64);
        metrics.applied_index.set(view.header.applied_index as i64);
        metrics
            .config_version
            .set(view.header.config_version as i64);
        metrics
            .cluster_version
            .set(i64::from(self.shared.cluster_version()));
        metrics.data_format.set(i64::from(
            self.shared
                .data_format
                .load(std::sync::atomic::Ordering::Acquire),
        ));
        metrics
            .is_leader
            .set(i64::from(self.node.role() == Role::Leader));
        metrics
            .leader_id
            .set(self.known_leader().unwrap_or(0) as i64);
        metrics.lease_valid.set(i64::from(lease_valid));
        let apply_lag = view.commit_index.saturating_sub(view.header.applied_index);
        metrics.apply_lag_entries.set(apply_lag as i64);
        metrics.apply_lag_sampled_entries.observe(apply_lag as f64);
        metrics.set_mode(mode);
        metrics.set_role(role);
        if mode != self.published_mode {
            if !self.published_mode.is_empty() {
                metrics.mode_transition(mode);
                let details = Details::new()
                    .text("from", self.published_mode)
                    .text("to", mode)
                    .uint("term", view.header.term);
                self.audit.local(
                    Kind::ModeTransition,
                    self.now.wall_ms,
                    self.now.mono_ms,
                    details,
                );
                tracing::info!(
                    node = self.cfg.id,
                    from = self.published_mode,
                    to = mode,
                    term = view.header.term,
                    "mode changed"
                );
            }
            self.published_mode = mode;
        }
        *self.shared.status.write().expect("status lock") = view;
    }
}
