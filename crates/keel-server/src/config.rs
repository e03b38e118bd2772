//! Server configuration: identity, addresses, timing knobs and limits. Loaded from flags or a
//! TOML file (same field names). Every limit has its unit in its name.

use keel_core::NodeId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub id: NodeId,
    pub cluster_id: String,
    pub data_dir: PathBuf,
    pub listen_client: String,
    pub listen_peer: String,
    /// Address other nodes and clients should use for this node (defaults to the listen
    /// addresses; set them when listening on 0.0.0.0 or port 0 is resolved at start).
    pub advertise_client: Option<String>,
    pub advertise_peer: Option<String>,
    /// Initial voters' peer addresses (this node included or not). Empty: a single-node cluster.
    pub peers: BTreeMap<NodeId, String>,
    /// Client (HTTP) addresses of the peers, for NOT_LEADER hints and forwarding; also learned
    /// from handshakes.
    pub peer_clients: BTreeMap<NodeId, String>,
    /// Per-process dial overrides: this node connects to these addresses for these peers
    /// instead of their announced peer addresses (the nemesis routes each directed link
    /// through its fault proxy this way). Never replicated.
    pub peer_routes: BTreeMap<NodeId, String>,
    /// Anchor this node's audit chain head in the log when a record has waited this long...
    pub audit_anchor_interval_ms: u64,
    /// ...or when this many records are unanchored.
    pub audit_anchor_records_max: u64,
    /// WAL segment file size (preallocated; a failed preallocation is the `disk_full` mode).
    pub wal_segment_bytes: u64,
    /// Test-only slow disk: every WAL sync batch waits this long before its fdatasync.
    pub test_fsync_delay_ms: u64,
    /// Repair mode (`keel serve --repair`): storage discards damaged synced data instead of
    /// refusing to start, and the node neither votes nor campaigns until it has caught up from
    /// a leader (docs/safety.md, "Repair mode"). Only for a member of a multi-node cluster.
    pub repair: bool,
    /// Bearer-token authorization (auth.rs): the token file, or None for an open API.
    pub auth_tokens_file: Option<PathBuf>,

    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub lease_duration_ms: u64,
    pub lease_renew_interval_ms: u64,
    pub clock_uncertainty_ms: u64,
    pub tick_interval_ms: u64,
    /// A wall-clock step differing from the monotonic step by more than this marks the clock
    /// untrusted for `clock_cooloff_ms`.
    pub clock_jump_threshold_ms: u64,
    pub clock_cooloff_ms: u64,

    /// Take a state-machine snapshot every this many applied entries.
    pub snapshot_interval_entries: u64,
    pub compaction_retain_entries: u64,
    pub message_bytes_max: usize,
    pub peer_frame_bytes_max: usize,
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    /// Client requests waiting for the node loop (beyond: OVERLOADED scope=node).
    pub client_queue_max: usize,
    /// Proposals in flight (proposed, not yet applied) before OVERLOADED.
    pub inflight_proposals_max: usize,
    /// Reads waiting for the node loop (their own queue, polled before writes).
    pub read_queue_max: usize,
    /// In-flight requests per client bucket (identity: `x-keel-client-id` or IP).
    pub client_inflight_max: u32,
    /// In-flight writes per key bucket.
    pub key_inflight_max: u32,
    /// CoDel target: queueing delay tolerated inside the node.
    pub queue_delay_target_ms: u64,
    /// CoDel interval: how long the delay must stay above target before refusing.
    pub queue_delay_interval_ms: u64,
    /// Writes are refused while commit index − applied index exceeds this.
    pub apply_lag_entries_max: u64,
    /// Peer messages waiting for the node loop (beyond: dropped; Raft retries).
    pub peer_inbox_max: usize,
    /// Per peer and lane, messages waiting to be sent (beyond: dropped).
    pub peer_outbox_max: usize,
    /// A write not applied within this is answered OUTCOME_UNKNOWN; a read, UNAVAILABLE.
    pub request_timeout_ms: u64,
    /// Entries handed to the loop per iteration (batch bound).
    pub loop_batch_max: usize,
    /// Test-only bug switches (feature `mutants`): core mutants by name, or `no-session-dedup`.
    pub mutant: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            id: 1,
            cluster_id: "keel".into(),
            data_dir: PathBuf::from("./keel-data"),
            listen_client: "127.0.0.1:7379".into(),
            listen_peer: "127.0.0.1:7380".into(),
            advertise_client: None,
            advertise_peer: None,
            peers: BTreeMap::new(),
            peer_clients: BTreeMap::new(),
            peer_routes: BTreeMap::new(),
            wal_segment_bytes: 64 << 20,
            audit_anchor_interval_ms: 5_000,
            audit_anchor_records_max: 32,
            test_fsync_delay_ms: 0,
            repair: false,
            auth_tokens_file: None,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            // A new leader cannot commit before the previous lease ends: a lease no longer than
            // the election timeout keeps failover within [T, 2T) plus a few round trips.
            lease_duration_ms: 1000,
            lease_renew_interval_ms: 300,
            clock_uncertainty_ms: 10,
            tick_interval_ms: 10,
            clock_jump_threshold_ms: 250,
            clock_cooloff_ms: 10_000,
            snapshot_interval_entries: 10_000,
            compaction_retain_entries: 1_000,
            message_bytes_max: 4 << 20,
            peer_frame_bytes_max: 64 << 20,
            key_bytes_max: 4 << 10,
            value_bytes_max: 1 << 20,
            client_queue_max: 4096,
            inflight_proposals_max: 8192,
            read_queue_max: 4096,
            client_inflight_max: 1024,
            key_inflight_max: 256,
            queue_delay_target_ms: 20,
            queue_delay_interval_ms: 100,
            apply_lag_entries_max: 50_000,
            peer_inbox_max: 8192,
            peer_outbox_max: 1024,
            request_timeout_ms: 0,
            loop_batch_max: 1024,
            mutant: None,
        }
    }
}

impl ServerConfig {
    /// Parses `1=host:port,2=host:port`.
    pub fn parse_address_map(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected ID=HOST:PORT"))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: node id must be a positive integer"))?;
            if id == 0 {
                return Err(format!("{part:?}: node id 0 is reserved"));
            }
            let addr = addr.trim();
            if addr.is_empty()
                || addr.len() > crate::codec::ADDRESS_BYTES_MAX
                || !addr.contains(':')
            {
                return Err(format!("{part:?}: address must be HOST:PORT"));
            }
            if out.insert(id, addr.to_string()).is_some() {
                return Err(format!("node {id} listed twice"));
            }
        }
        Ok(out)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("--id must be at least 1".into());
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > 128 {
            return Err("cluster id must be 1..=128 bytes".into());
        }
        if self.tick_interval_ms == 0 || self.tick_interval_ms * 2 > self.heartbeat_interval_ms {
            return Err(
                "tick_interval_ms must be positive and at most half of heartbeat_interval_ms"
                    .into(),
            );
        }
        // Every entry is one WAL record, and a record never spans segments.
        let segment_min = self.message_bytes_max as u64 + 4096;
        if self.wal_segment_bytes < segment_min || self.wal_segment_bytes > 1 << 30 {
            return Err(format!(
                "wal_segment_bytes must be in [message_bytes_max + 4096 = {segment_min}, 1 GiB]"
            ));
        }
        if self.repair && self.peers.len() < 3 {
            return Err(
                "--repair needs a cluster of at least 3 voters (--peers): a repairing \
                        node neither votes nor campaigns, so the others must elect a leader \
                        without it"
                    .into(),
            );
        }
        if self.test_fsync_delay_ms > crate::persist::FSYNC_DELAY_MS_MAX {
            return Err(format!(
                "test_fsync_delay_ms must be at most {}",
                crate::persist::FSYNC_DELAY_MS_MAX
            ));
        }
        if self.queue_delay_target_ms == 0
            || self.queue_delay_interval_ms < self.queue_delay_target_ms
        {
            return Err(
                "queue_delay_target_ms must be positive and at most queue_delay_interval_ms".into(),
            );
        }
        if self.snapshot_interval_entries == 0 {
            return Err("snapshot_interval_entries must be positive".into());
        }
        for (name, v) in [
            ("client_queue_max", self.client_queue_max),
            ("read_queue_max", self.read_queue_max),
            ("client_inflight_max", self.client_inflight_max as usize),
            ("key_inflight_max", self.key_inflight_max as usize),
            ("apply_lag_entries_max", self.apply_lag_entries_max as usize),
            (
                "audit_anchor_interval_ms",
                self.audit_anchor_interval_ms as usize,
            ),
            (
                "audit_anchor_records_max",
                self.audit_anchor_records_max as usize,
            ),
            ("inflight_proposals_max", self.inflight_proposals_max),
            ("peer_inbox_max", self.peer_inbox_max),
            ("peer_outbox_max", self.peer_outbox_max),
            ("loop_batch_max", self.loop_batch_max),
        ] {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.peer_frame_bytes_max < self.message_bytes_max + 4096 {
            return Err("peer_frame_bytes_max must exceed message_bytes_max".into());
        }
        self.core_config().validate()
    }

    /// Effective request timeout: twice the election timeout unless set.
    pub fn request_timeout_ms(&self) -> u64 {
        if self.request_timeout_ms > 0 {
            self.request_timeout_ms
        } else {
            (2 * self.election_timeout_ms).max(1000)
        }
    }

    pub fn core_config(&self) -> keel_core::Config {
        let mut c = keel_core::Config::new(self.id);
        c.random_seed = self.id.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ std::process::id() as u64;
        c.election_timeout_ms = self.election_timeout_ms;
        c.heartbeat_interval_ms = self.heartbeat_interval_ms;
        c.lease_duration_ms = self.lease_duration_ms;
        c.lease_renew_interval_ms = self.lease_renew_interval_ms;
        c.clock_uncertainty_ms = self.clock_uncertainty_ms;
        c.message_bytes_max = self.message_bytes_max;
        c.compaction_retain_entries = self.compaction_retain_entries;
        c
    }

    pub fn kv_config(&self) -> keel_kv::Config {
        keel_kv::Config {
            key_bytes_max: self.key_bytes_max,
            value_bytes_max: self.value_bytes_max,
            ..Default::default()
        }
    }
}

/// Parses a TOML configuration file (the field names of `ServerConfig`; `peers` and
/// `peer_clients` are tables `{ 1 = "host:port" }`).
pub fn from_toml(text: &str) -> Result<ServerConfig, String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut maps = Vec::new();
    for name in ["peers", "peer_clients"] {
        if let Some(v) = table.remove(name) {
            let t = v
                .as_table()
                .ok_or_else(|| format!("{name} must be a table of id = \"host:port\""))?;
            let joined: Vec<String> = t
                .iter()
                .map(|(k, v)| {
                    Ok(format!(
                        "{k}={}",
                        v.as_str()
                            .ok_or_else(|| format!("{name}.{k} must be a string"))?
                    ))
                })
                .collect::<Result<_, String>>()?;
            maps.push((name, ServerConfig::parse_address_map(&joined.join(","))?));
        }
    }
    let mut cfg: ServerConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    for (name, map) in maps {
        if name == "peers" {
            cfg.peers = map;
        } else {
            cfg.peer_clients = map;
        }
    }
    Ok(cfg)
}
