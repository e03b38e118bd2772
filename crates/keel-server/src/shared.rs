//! State shared between the node loop, the HTTP handlers and the transport: the published
//! status view (what every response header says), metrics, and the address book.

use crate::admission::Admission;
use crate::codec::{AddressBook, Addresses};
use crate::metrics::Metrics;
use keel_core::NodeId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Header {
    pub term: u64,
    pub leader: Option<NodeId>,
    pub revision: u64,
    pub applied_index: u64,
    pub config_version: u64,
    pub served_by: NodeId,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MemberView {
    pub id: NodeId,
    pub role: &'static str,
    pub peer_addr: Option<String>,
    pub client_addr: Option<String>,
}

/// What the node loop publishes after every iteration.
#[derive(Clone, Debug, Default)]
pub struct StatusView {
    pub header: Header,
    pub role: &'static str,
    pub commit_index: u64,
    pub mode: &'static str,
    pub lease_valid: bool,
    pub last_contact_ms: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// Leaving voters while the configuration is joint.
    pub voters_outgoing: Vec<NodeId>,
}

pub struct Shared {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub self_addresses: Addresses,
    pub status: RwLock<StatusView>,
    pub metrics: Metrics,
    pub admission: Arc<Admission>,
    /// From flags / config file.
    static_book: AddressBook,
    /// Replicated through the log (wins over the static book).
    replicated: RwLock<AddressBook>,
    /// Client addresses peers announced in their handshakes.
    learned_clients: RwLock<BTreeMap<NodeId, String>>,
    /// Per-process dial overrides (`--peer-routes`): win over both books.
    routes: BTreeMap<NodeId, String>,
    pub shutting_down: AtomicBool,
    /// Bearer-token authorization (`--auth-tokens`); None: off.
    pub auth: Option<crate::auth::Tokens>,
    /// Authorization failures by reason (`auth::Failure::REASONS`), for the runtime's
    /// rate-limited audit records.
    pub authz_failures: [std::sync::atomic::AtomicU64; 3],
    /// What each peer's latest handshake said about its binary (docs/upgrades.md). At most
    /// one entry per node id that completed a handshake with this cluster id.
    peer_versions: RwLock<BTreeMap<NodeId, crate::version::PeerVersion>>,
    /// The cluster version this node has applied (1 until an upgrade is finalized).
    pub cluster_version: AtomicU32,
    /// The data directory's format (raised after the cluster version, by the storage thread).
    pub data_format: AtomicU32,
}

impl Shared {
    pub fn new(
        node_id: NodeId,
        cluster_id: String,
        self_addresses: Addresses,
        static_book: AddressBook,
        routes: BTreeMap<NodeId, String>,
        admission: Admission,
    ) -> Shared {
        let mut book = static_book;
        book.insert(node_id, self_addresses.clone());
        Shared {
            node_id,
            cluster_id,
            self_addresses,
            status: RwLock::new(StatusView {
                mode: "no_leader",
                role: "follower",
                ..Default::default()
            }),
            metrics: Metrics::new(),
            admission: Arc::new(admission),
            static_book: book,
            replicated: RwLock::new(AddressBook::new()),
            learned_clients: RwLock::new(BTreeMap::new()),
            routes,
            shutting_down: AtomicBool::new(false),
            auth: None,
            authz_failures: Default::default(),
            peer_versions: RwLock::new(BTreeMap::new()),
            cluster_version: AtomicU32::new(keel_kv::CLUSTER_VERSION_INITIAL),
            data_format: AtomicU32::new(keel_storage::DATA_FORMAT_MIN),
        }
    }

    pub fn status(&self) -> StatusView {
        self.status.read().expect("status lock").clone()
    }

    /// The response header block and mode, without cloning the whole view (per response).
    pub fn header_and_mode(&self) -> (Header, &'static str) {
        let status = self.status.read().expect("status lock");
        (status.header.clone(), status.mode)
    }

    pub fn header(&self) -> Header {
        self.status.read().expect("status lock").header.clone()
    }

    /// Counts a refusal by admission control (`reason` from metrics::ADMISSION_REASONS) and
    /// marks the node overloaded for a while.
    /// Counts an authorization failure (metric now; audited by the runtime, rate-limited).
    pub fn authz_failure(&self, failure: crate::auth::Failure) {
        self.metrics
            .authz_failures_total
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: failure.reason(),
            })
            .inc();
        self.authz_failures[failure.reason_index()]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn reject(&self, reason: &'static str) {
        self.metrics.reject(reason);
        self.admission.note_reject();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn set_replicated_book(&self, book: AddressBook) {
        *self.replicated.write().expect("book lock") = book;
    }

    pub fn learn_client_addr(&self, id: NodeId, addr: String) {
        if !addr.is_empty() && addr.len() <= crate::codec::ADDRESS_BYTES_MAX {
            self.learned_clients
                .write()
                .expect("learned lock")
                .insert(id, addr);
        }
    }

    /// Records what peer `id`'s handshake said about its binary (the latest wins: a restarted
    /// peer on another binary shakes hands again before it sends anything).
    pub fn learn_peer_version(&self, id: NodeId, version: crate::version::PeerVersion) {
        assert!(version.cluster_version_max >= 1);
        self.peer_versions
            .write()
            .expect("peer versions lock")
            .insert(id, version);
    }

    pub fn peer_versions(&self) -> BTreeMap<NodeId, crate::version::PeerVersion> {
        self.peer_versions
            .read()
            .expect("peer versions lock")
            .clone()
    }

    pub fn cluster_version(&self) -> u32 {
        self.cluster_version.load(Ordering::Acquire)
    }

    /// Where to dial peer `id`: a `--peer-routes` override, else the replicated book, else
    /// the static one.
    pub fn dial_addr(&self, id: NodeId) -> Option<String> {
        match self.routes.get(&id) {
            Some(route) => Some(route.clone()),
            None => self.peer_addr(id),
        }
    }

    /// The peer address `id` announced (what members listings show).
    pub fn peer_addr(&self, id: NodeId) -> Option<String> {
        let replicated = self.replicated.read().expect("book lock");
        replicated
            .get(&id)
            .or_else(|| self.static_book.get(&id))
            .map(|a| a.peer_addr.clone())
            .filter(|a| !a.is_empty())
    }

    pub fn client_addr(&self, id: NodeId) -> Option<String> {
        let from_book = {
            let replicated = self.replicated.read().expect("book lock");
            replicated
                .get(&id)
                .or_else(|| self.static_book.get(&id))
                .map(|a| a.client_addr.clone())
                .filter(|a| !a.is_empty())
        };
        from_book.or_else(|| {
            self.learned_clients
                .read()
                .expect("learned lock")
                .get(&id)
                .cloned()
        })
    }

    pub fn members(&self, status: &StatusView) -> Vec<MemberView> {
        let mut out = Vec::new();
        let mut ids: Vec<(NodeId, &'static str)> =
            status.voters.iter().map(|&id| (id, "voter")).collect();
        ids.extend(
            status
                .voters_outgoing
                .iter()
                .filter(|id| !status.voters.contains(id))
                .map(|&id| (id, "voter")),
        );
        ids.extend(status.learners.iter().map(|&id| (id, "learner")));
        ids.sort();
        for (id, role) in ids {
            out.push(MemberView {
                id,
                role,
                peer_addr: self.peer_addr(id),
                client_addr: self.client_addr(id),
            });
        }
        out
    }
}
