//! Peer transport over TCP. Each node dials every peer it must talk to over two one-way
//! connections, a priority lane (votes, heartbeats, responses, TimeoutNow) and a bulk lane
//! (appends, snapshot chunks), so a vote never waits behind a megabyte of entries. Each lane has
//! a bounded queue; when full, or while the peer is unreachable, messages are dropped (Raft
//! retransmits). Frames are length-delimited, bounded by `peer_frame_bytes_max`, and carry a
//! prost `WireMessage` after a `Hello`/`HelloAck` handshake (cluster id, node ids, version).

use crate::shared::Shared;
use crate::wire::{self, Hello, HelloAck, WireMessage, LANE_BULK, LANE_PRIORITY};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use keel_core::{Message, NodeId};
use prost::Message as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const CONNECT_TIMEOUT_MS: u64 = 1000;
const HANDSHAKE_TIMEOUT_MS: u64 = 1000;
const BACKOFF_MIN_MS: u64 = 20;
const BACKOFF_MAX_MS: u64 = 1000;
/// Frames already queued for a peer are written together and flushed once (one syscall for
/// many frames), at most this many per flush.
const FRAMES_PER_FLUSH_MAX: usize = 256;

pub struct Transport {
    shared: Arc<Shared>,
    frame_bytes_max: usize,
    outbox_max: usize,
    lanes: Mutex<BTreeMap<(NodeId, u32), mpsc::Sender<Bytes>>>,
    tasks: Mutex<JoinSet<()>>,
}

fn codec(frame_bytes_max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(frame_bytes_max)
        .new_codec()
}

impl Transport {
    pub fn new(shared: Arc<Shared>, frame_bytes_max: usize, outbox_max: usize) -> Transport {
        Transport {
            shared,
            frame_bytes_max,
            outbox_max,
            lanes: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// Queues a message for its peer; never blocks. Dropped if the lane is full.
    pub fn send(&self, m: Message) {
        assert_eq!(
            m.from, self.shared.node_id,
            "sending a message from another node"
        );
        let lane = if m.is_priority() {
            LANE_PRIORITY
        } else {
            LANE_BULK
        };
        let bytes = Bytes::from(wire::message_to_wire(&m).encode_to_vec());
        if bytes.len() > self.frame_bytes_max {
            tracing::warn!(
                to = m.to,
                bytes = bytes.len(),
                kind = m.kind_name(),
                "message larger than a frame: dropped"
            );
            self.shared.metrics.peer_messages_dropped_total.inc();
            return;
        }
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let tx = lanes.entry((m.to, lane)).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.outbox_max);
            let shared = self.shared.clone();
            let frame_max = self.frame_bytes_max;
            self.tasks
                .lock()
                .expect("tasks lock")
                .spawn(dial_lane(shared, m.to, lane, rx, frame_max));
            tx
        });
        if tx.try_send(bytes).is_err() {
            self.shared.metrics.peer_messages_dropped_total.inc();
        }
    }

    /// Stops every outgoing lane.
    pub fn stop(&self) {
        self.tasks.lock().expect("tasks lock").abort_all();
        self.lanes.lock().expect("lanes lock").clear();
    }
}

/// One outgoing lane: connect (with backoff), handshake, then forward queued frames.
async fn dial_lane(
    shared: Arc<Shared>,
    to: NodeId,
    lane: u32,
    mut rx: mpsc::Receiver<Bytes>,
    frame_max: usize,
) {
    let mut backoff_ms = BACKOFF_MIN_MS;
    let mut refusals_logged = 0u32;
    // Drain only after a failed attempt: never the message that opened the lane (e.g. the
    // first pre-vote between two followers), nor those queued while a live connection broke.
    let mut drain = false;
    loop {
        if drain {
            // Whatever queued while the peer was unreachable is stale: Raft resends it.
            while rx.try_recv().is_ok() {}
        }
        drain = true;
        let Some(addr) = shared.dial_addr(to) else {
            tokio::time::sleep(Duration::from_millis(BACKOFF_MAX_MS)).await;
            continue;
        };
        match connect(&shared, to, lane, &addr, frame_max).await {
            Ok(mut framed) => {
                backoff_ms = BACKOFF_MIN_MS;
                refusals_logged = 0;
                tracing::debug!(peer = to, lane, %addr, "connected");
                loop {
                    // The listener never writes after the handshake: anything readable means
                    // the peer closed (or restarted): reconnect before writing into a dead socket.
                    tokio::select! {
                        frame = rx.recv() => {
                            let Some(frame) = frame else { return };
                            let mut sent = framed.feed(frame).await;
                            let mut fed = 1;
                            while sent.is_ok() && fed < FRAMES_PER_FLUSH_MAX {
                                let Ok(next) = rx.try_recv() else { break };
                                sent = framed.feed(next).await;
                                fed += 1;
                            }
                            if sent.is_ok() {
                                sent = SinkExt::<Bytes>::flush(&mut framed).await;
                            }
                            if let Err(e) = sent {
                                tracing::debug!(peer = to, lane, %e, "peer connection lost");
                                break;
                            }
                        }
                        _ = framed.next() => {
                            tracing::debug!(peer = to, lane, "peer closed the connection");
                            break;
                        }
                    }
                }
                drain = false;
                continue;
            }
            Err(ConnectError::Refused(reason)) => {
                if refusals_logged < 3 {
                    tracing::error!(peer = to, %addr, %reason, "peer refused the handshake");
                    refusals_logged += 1;
                }
                backoff_ms = BACKOFF_MAX_MS;
            }
            Err(ConnectError::Io(e)) => {
                tracing::debug!(peer = to, lane, %addr, %e, "connect failed");
            }
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(BACKOFF_MAX_MS);
    }
}

enum ConnectError {
    Io(String),
    Refused(String),
}

async fn connect(
    shared: &Shared,
    to: NodeId,
    lane: u32,
    addr: &str,
    frame_max: usize,
) -> Result<Framed<TcpStream, LengthDelimitedCodec>, ConnectError> {
    let stream = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        TcpStream::connect(addr),
    )
    .await
    .map_err(|_| ConnectError::Io("connect timed out".into()))?
    .map_err(|e| ConnectError::Io(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, codec(frame_max));
    let hello = Hello {
        cluster_id: shared.cluster_id.clone(),
        node_id: shared.node_id,
        version_major: wire::PROTOCOL_MAJOR,
        version_minor: wire::PROTOCOL_MINOR,
        client_addr: shared.self_addresses.client_addr.clone(),
        peer_addr: shared.self_addresses.peer_addr.clone(),
        lane,
        to_node_id: to,
        cluster_version_max: crate::version::CLUSTER_VERSION_MAX,
    };
    framed
        .send(Bytes::from(hello.encode_to_vec()))
        .await
        .map_err(|e| ConnectError::Io(e.to_string()))?;
    let ack = tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), framed.next())
        .await
        .map_err(|_| ConnectError::Io("handshake timed out".into()))?
        .ok_or_else(|| ConnectError::Io("closed during handshake".into()))?
        .map_err(|e| ConnectError::Io(e.to_string()))?;
    let ack = HelloAck::decode(&ack[..])
        .map_err(|e| ConnectError::Refused(format!("bad handshake reply: {e}")))?;
    if !ack.accepted {
        return Err(ConnectError::Refused(ack.reason));
    }
    if ack.version_major != wire::PROTOCOL_MAJOR {
        return Err(ConnectError::Refused(format!(
            "peer speaks protocol {}.{}, this node {}.{}",
            ack.version_major,
            ack.version_minor,
            wire::PROTOCOL_MAJOR,
            wire::PROTOCOL_MINOR
        )));
    }
    let peer = crate::version::check_peer(
        to,
        ack.version_minor,
        ack.cluster_version_max,
        shared.cluster_version(),
    )
    .map_err(ConnectError::Refused)?;
    shared.learn_peer_version(to, peer);
    shared.learn_client_addr(to, ack.client_addr);
    Ok(framed)
}

/// Accepts peer connections and feeds their messages to the node loop.
pub async fn listen(
    shared: Arc<Shared>,
    listener: TcpListener,
    priority: mpsc::Sender<Message>,
    bulk: mpsc::Sender<Message>,
    frame_max: usize,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while conns.try_join_next().is_some() {}
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let (priority, bulk) = (priority.clone(), bulk.clone());
        conns.spawn(async move {
            if let Err(e) = serve_conn(shared, stream, priority, bulk, frame_max).await {
                tracing::debug!(%remote, %e, "peer connection ended");
            }
        });
    }
}

async fn serve_conn(
    shared: Arc<Shared>,
    stream: TcpStream,
    priority: mpsc::Sender<Message>,
    bulk: mpsc::Sender<Message>,
    frame_max: usize,
) -> Result<(), String> {
    let mut framed = Framed::new(stream, codec(frame_max));
    let first = tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), framed.next())
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .ok_or("closed before handshake")?
        .map_err(|e| e.to_string())?;
    let hello = Hello::decode(&first[..]).map_err(|e| format!("bad handshake: {e}"))?;
    let verdict = wire::check_hello(
        &hello,
        &shared.cluster_id,
        shared.node_id,
        shared.cluster_version(),
    );
    let ack = HelloAck {
        accepted: verdict.is_ok(),
        reason: verdict.as_ref().err().cloned().unwrap_or_default(),
        node_id: shared.node_id,
        version_major: wire::PROTOCOL_MAJOR,
        version_minor: wire::PROTOCOL_MINOR,
        client_addr: shared.self_addresses.client_addr.clone(),
        cluster_version_max: crate::version::CLUSTER_VERSION_MAX,
    };
    framed
        .send(Bytes::from(ack.encode_to_vec()))
        .await
        .map_err(|e| e.to_string())?;
    let peer = match verdict {
        Ok(peer) => peer,
        Err(reason) => {
            tracing::error!(peer = hello.node_id, %reason, "refusing peer connection");
            return Err(reason);
        }
    };
    shared.learn_peer_version(hello.node_id, peer);
    shared.learn_client_addr(hello.node_id, hello.client_addr.clone());
    let from = hello.node_id;
    while let Some(frame) = framed.next().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let w =
            WireMessage::decode(&frame[..]).map_err(|e| format!("bad frame from {from}: {e}"))?;
        let m = wire::message_from_wire(w, from, shared.node_id)?;
        let tx = if m.is_priority() { &priority } else { &bulk };
        if tx.try_send(m).is_err() {
            shared.metrics.peer_messages_dropped_total.inc();
        }
    }
    Ok(())
}
