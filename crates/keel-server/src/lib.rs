//! keel-server: a Keel node. It drives the sans-IO consensus core (keel-core) with real time,
//! real disks (keel-storage) and real sockets, applies committed entries to the key-value state
//! machine (keel-kv), and serves the HTTP/JSON API of /openapi.yaml.
//!
//! Module map:
//! - `config`    flags / TOML settings and their limits
//! - `clock`     monotonic + wall time, discontinuity detection (`Time::wall_trusted`)
//! - `codec`     WAL payloads, entry envelopes, snapshot data and metadata encodings
//! - `persist`   recovery and the storage thread (group commit: one fdatasync per batch)
//! - `wire`      prost peer messages, handshake, conversions to/from `keel_core::Message`
//! - `transport` TCP lanes (priority + bulk per peer), listener
//! - `runtime`   the node loop: the only owner of `Node` and `StateMachine`
//! - `api`       axum routes, JSON shapes, forwarding to the leader
//! - `error`     machine-readable error codes and their HTTP statuses
//! - `metrics`   Prometheus metrics with bounded labels
//! - `shared`    status view and address book shared by the loop, API and transport
//!
//! Architecture invariant: only the node loop task touches the core and the state machine;
//! everything else talks to it over bounded channels, and a full channel is an explicit refusal
//! (OVERLOADED) or a dropped peer message (Raft retries), never unbounded memory.

pub mod admission;
pub mod api;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod metrics;
pub mod persist;
pub mod runtime;
pub mod serve;
pub mod shared;
pub mod transport;
pub mod version;
pub mod wire;

pub use config::ServerConfig;

use codec::{decode_snapshot_data, AddressBook, Addresses};
use keel_core::{Membership, Node, Restored, SnapshotMeta};
use keel_kv::StateMachine;
use runtime::{Inputs, Queued, Request, Runtime};
use shared::Shared;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Mutant names the server itself understands (besides keel-core's).
pub const SERVER_MUTANTS: [&str; 2] = ["no-session-dedup", "follower-reads-as-linearizable"];

/// A running node.
pub struct Server {
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub shared: Arc<Shared>,
    requests: mpsc::Sender<Queued>,
    loop_task: Option<JoinHandle<anyhow::Result<()>>>,
    http_task: JoinHandle<()>,
    listen_task: JoinHandle<()>,
    anchor_task: JoinHandle<()>,
    transport: Arc<transport::Transport>,
    storage_thread: Option<std::thread::JoinHandle<()>>,
}

struct Mutants {
    core: Option<keel_core::Mutant>,
    no_session_dedup: bool,
    follower_reads: bool,
}

fn parse_mutant(name: &Option<String>) -> anyhow::Result<Mutants> {
    let mut m = Mutants {
        core: None,
        no_session_dedup: false,
        follower_reads: false,
    };
    let Some(name) = name else { return Ok(m) };
    anyhow::ensure!(
        cfg!(feature = "mutants"),
        "--mutant needs a build with the `mutants` feature"
    );
    match name.as_str() {
        "no-session-dedup" => m.no_session_dedup = true,
        "follower-reads-as-linearizable" => m.follower_reads = true,
        other => {
            m.core = Some(keel_core::Mutant::from_name(other).ok_or_else(|| {
                let core: Vec<&str> = keel_core::Mutant::ALL.iter().map(|m| m.name()).collect();
                anyhow::anyhow!(
                    "unknown mutant {other:?}; known: {}, {}",
                    SERVER_MUTANTS.join(", "),
                    core.join(", ")
                )
            })?)
        }
    }
    Ok(m)
}

impl Server {
    /// Binds the listeners, recovers the data directory and starts the node. Must be called
    /// inside a tokio runtime.
    pub async fn start(cfg: ServerConfig) -> anyhow::Result<Server> {
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let mutants = parse_mutant(&cfg.mutant)?;
        let peer_listener = tokio::net::TcpListener::bind(&cfg.listen_peer)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for peers on {}: {e}", cfg.listen_peer))?;
        let client_listener = tokio::net::TcpListener::bind(&cfg.listen_client)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot listen for clients on {}: {e}", cfg.listen_client)
            })?;
        let peer_addr = peer_listener.local_addr()?;
        let client_addr = client_listener.local_addr()?;
        let self_addresses = Addresses {
            peer_addr: cfg
                .advertise_peer
                .clone()
                .unwrap_or_else(|| peer_addr.to_string()),
            client_addr: cfg
                .advertise_client
                .clone()
                .unwrap_or_else(|| client_addr.to_string()),
        };

        let dir = cfg.data_dir.clone();
        let storage_options = persist::storage_options(&cfg);
        let (storage, recovery) =
            tokio::task::spawn_blocking(move || persist::open(&dir, storage_options)).await??;
        for r in &recovery.repairs {
            tracing::warn!(repair = %r, "storage repair");
        }
        let data_format = storage.data_format();
        let repairing = recovery.repairing;
        if repairing {
            tracing::warn!(
                node = cfg.id,
                "starting in repair mode: no votes and no campaigns until caught up from a leader"
            );
        }

        let mut static_book = AddressBook::new();
        for (&id, addr) in &cfg.peers {
            static_book.entry(id).or_default().peer_addr = addr.clone();
        }
        for (&id, addr) in &cfg.peer_clients {
            static_book.entry(id).or_default().client_addr = addr.clone();
        }
        let auth = match &cfg.auth_tokens_file {
            Some(path) => Some(auth::Tokens::load(path).map_err(|e| anyhow::anyhow!(e))?),
            None => None,
        };
        let mut shared = Shared::new(
            cfg.id,
            cfg.cluster_id.clone(),
            self_addresses,
            static_book,
            cfg.peer_routes.clone(),
            admission::Admission::new(cfg.client_inflight_max, cfg.key_inflight_max),
        );
        shared.auth = auth;
        let shared = Arc::new(shared);

        // The initial configuration: the listed peers, or this node alone.
        let voters: Vec<u64> = if cfg.peers.is_empty() {
            vec![cfg.id]
        } else {
            cfg.peers.keys().copied().collect()
        };
        let mut restored: Restored = recovery.restored;
        if restored.snapshot.is_none() {
            restored.snapshot = Some(SnapshotMeta {
                membership: Membership::new(voters),
                ..Default::default()
            });
        }
        let mut clock = clock::Clock::new(cfg.clock_jump_threshold_ms, cfg.clock_cooloff_ms);
        let (now, _) = clock.now();
        let mut core_cfg = cfg.core_config();
        core_cfg.mutant = mutants.core;
        let started = if repairing {
            Node::new_repairing(core_cfg, restored, now)
        } else {
            Node::new(core_cfg, restored, now)
        };
        let mut node = started.map_err(|e| anyhow::anyhow!("cannot start the node: {e}"))?;
        let mut kv_cfg = cfg.kv_config();
        kv_cfg.dedup_disabled = mutants.no_session_dedup;
        let mut book = AddressBook::new();
        let mut last_stamp = None;
        let sm = match recovery.snapshot {
            Some(snap) => {
                let (kv, b) = decode_snapshot_data(&snap.data)
                    .map_err(|e| anyhow::anyhow!("snapshot data: {e}"))?;
                let sm = StateMachine::restore(kv_cfg, kv)
                    .map_err(|e| anyhow::anyhow!("snapshot: {e:?}"))?;
                anyhow::ensure!(
                    sm.applied_index() == snap.meta.index,
                    "snapshot data does not match its index"
                );
                book = b;
                last_stamp = Some(snap.meta.last_stamp);
                node.set_snapshot(snap);
                sm
            }
            None => StateMachine::new(kv_cfg),
        };
        // A snapshot from after a finalized upgrade this binary cannot run: stop before
        // anything is served (docs/upgrades.md). The data format gate usually refuses first.
        version::check_runnable(sm.cluster_version())?;
        shared
            .cluster_version
            .store(sm.cluster_version(), std::sync::atomic::Ordering::Release);
        shared
            .data_format
            .store(data_format, std::sync::atomic::Ordering::Release);
        tracing::info!(
            node = cfg.id,
            term = node.term(),
            commit = node.commit_index(),
            last_index = node.last_index(),
            applied = sm.applied_index(),
            cluster_version = sm.cluster_version(),
            data_format,
            versions = %version::describe(),
            client = %client_addr,
            peer = %peer_addr,
            "node starting"
        );

        let (req_tx, req_rx) = mpsc::channel(cfg.client_queue_max);
        let (read_tx, read_rx) = mpsc::channel(cfg.read_queue_max);
        let (prio_tx, prio_rx) = mpsc::channel(cfg.peer_inbox_max);
        let (bulk_tx, bulk_rx) = mpsc::channel(cfg.peer_inbox_max);
        let (jobs_tx, jobs_rx) = mpsc::channel(1024);
        let (done_tx, done_rx) = mpsc::channel(1024);
        let storage_thread = persist::start(storage, jobs_rx, done_tx, cfg.test_fsync_delay_ms);
        let transport = Arc::new(transport::Transport::new(
            shared.clone(),
            cfg.peer_frame_bytes_max,
            cfg.peer_outbox_max,
        ));
        let listen_task = tokio::spawn(transport::listen(
            shared.clone(),
            peer_listener,
            prio_tx,
            bulk_tx,
            cfg.peer_frame_bytes_max,
        ));

        let state_http = reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()?;
        let state = api::ApiState {
            shared: shared.clone(),
            requests: req_tx.clone(),
            reads: read_tx,
            http: state_http.clone(),
            request_timeout_ms: cfg.request_timeout_ms(),
            key_bytes_max: cfg.key_bytes_max,
            value_bytes_max: cfg.value_bytes_max,
        };
        let app = api::router(state);
        let http_task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(client_listener, app).await {
                tracing::error!(%e, "HTTP server failed");
            }
        });

        let audit = audit::Audit::open(
            &cfg.data_dir,
            cfg.id,
            &cfg.cluster_id,
            cfg.audit_anchor_records_max,
            cfg.audit_anchor_interval_ms,
            &shared.metrics,
        )?;
        let (anchor_tx, anchor_rx) = mpsc::channel(ANCHOR_QUEUE_MAX);
        let anchor_task = tokio::spawn(forward_anchors(
            shared.clone(),
            anchor_rx,
            state_http.clone(),
            cfg.request_timeout_ms(),
        ));
        let mut rt = Runtime::new(
            cfg,
            node,
            sm,
            book,
            clock,
            now,
            shared.clone(),
            transport.clone(),
            jobs_tx,
            last_stamp,
            audit,
            anchor_tx,
        );
        rt.follower_reads_mutant = mutants.follower_reads;
        let inputs = Inputs {
            requests: req_rx,
            reads: read_rx,
            peer_priority: prio_rx,
            peer_bulk: bulk_rx,
            persisted: done_rx,
        };
        let loop_task = tokio::spawn(rt.run(inputs));
        Ok(Server {
            client_addr,
            peer_addr,
            shared,
            requests: req_tx,
            loop_task: Some(loop_task),
            http_task,
            listen_task,
            anchor_task,
            transport,
            storage_thread: Some(storage_thread),
        })
    }

    /// Graceful stop: transfer leadership if leader, finish in-flight work, sync, stop.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        if self
            .requests
            .send(Request::Shutdown { reply: tx }.queued())
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        let result = match self.loop_task.take() {
            Some(t) => t
                .await
                .map_err(|e| anyhow::anyhow!("node loop panicked: {e}"))
                .and_then(|r| r),
            None => Ok(()),
        };
        self.stop_tasks().await;
        result
    }

    /// Stops everything at once, like a crash of the process (unsynced writes may be in
    /// flight; what the storage thread already synced stays).
    pub async fn kill(mut self) {
        if let Some(t) = self.loop_task.take() {
            t.abort();
            let _ = t.await;
        }
        self.stop_tasks().await;
    }

    /// Waits until the node loop ends (a fatal error or a completed shutdown).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        match self.loop_task.as_mut() {
            Some(t) => {
                let r = t
                    .await
                    .map_err(|e| anyhow::anyhow!("node loop panicked: {e}"))
                    .and_then(|r| r);
                self.loop_task = None;
                r
            }
            None => Ok(()),
        }
    }

    /// A sender for shutdown requests (e.g. from a signal handler).
    pub fn shutdown_sender(&self) -> ShutdownSender {
        ShutdownSender(self.requests.clone())
    }

    async fn stop_tasks(&mut self) {
        self.http_task.abort();
        self.listen_task.abort();
        self.anchor_task.abort();
        self.transport.stop();
        drop(std::mem::replace(&mut self.requests, mpsc::channel(1).0));
        if let Some(t) = self.storage_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Anchors waiting to be sent to the leader (older ones are superseded anyway).
const ANCHOR_QUEUE_MAX: usize = 16;

/// A follower's audit anchors go to the leader's `POST /v1/audit/anchor`, which proposes them
/// (only a leader can append to the log). A failed send is not retried here: the anchor
/// schedule proposes again after its interval.
async fn forward_anchors(
    shared: Arc<Shared>,
    mut anchors: mpsc::Receiver<keel_audit::Anchor>,
    http: reqwest::Client,
    timeout_ms: u64,
) {
    while let Some(anchor) = anchors.recv().await {
        let status = shared.status();
        let Some(addr) = status.header.leader.and_then(|l| shared.client_addr(l)) else {
            continue;
        };
        let body = serde_json::json!({
            "node": anchor.node,
            "seq": anchor.seq,
            "head": hex::encode(anchor.head),
        });
        let mut request = http.post(format!("http://{addr}/v1/audit/anchor"));
        if let Some(tokens) = &shared.auth {
            request = request.header("authorization", tokens.service_authorization());
        }
        let sent = request
            .timeout(std::time::Duration::from_millis(timeout_ms))
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::debug!(status = %r.status(), "audit anchor not accepted by the leader")
            }
            Err(e) => tracing::debug!(%e, "audit anchor not sent to the leader"),
        }
    }
}

#[derive(Clone)]
pub struct ShutdownSender(mpsc::Sender<Queued>);

impl ShutdownSender {
    /// Asks the node loop to shut down gracefully; returns once it has.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .0
            .send(Request::Shutdown { reply: tx }.queued())
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}
