//! Node configuration: timing, clock assumptions and limits. Every limit has a unit in its name.

use crate::types::NodeId;

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Seed for the node's own deterministic generator (election timeout jitter).
    pub random_seed: u64,
    /// A follower campaigns after hearing nothing for a random time in [T, 2T).
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// LeaseGuard: committing an entry grants its leader a lease for this long from the entry's
    /// creation stamp.
    pub lease_duration_ms: u64,
    /// An idle leader appends a no-op this often so its lease never lapses.
    pub lease_renew_interval_ms: u64,
    /// Half-width of the wall-clock interval: true time is within ±this of `Time::wall_ms`.
    pub clock_uncertainty_ms: u64,
    /// Maximum drift of the monotonic clock, parts per million.
    pub clock_drift_ppm_max: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Serve lease reads at all (ReadIndex otherwise). A cluster-wide setting: with it off, new
    /// leaders skip the deferred-commit wait, which is safe only if no node serves lease reads.
    pub lease_reads: bool,

    pub message_bytes_max: usize,
    pub append_entries_max: usize,
    pub inflight_messages_max: usize,
    pub uncommitted_bytes_max: usize,
    pub pending_reads_max: usize,
    pub snapshot_chunk_bytes_max: usize,
    /// Total snapshot size a follower accepts when receiving one.
    pub snapshot_bytes_max: usize,
    /// Entries kept before a snapshot point when compacting, to serve slightly lagging followers.
    pub compaction_retain_entries: u64,

    /// Test-only known bug to switch on; ignored unless built with feature `mutants`.
    pub mutant: Option<crate::Mutant>,
}

impl Config {
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            random_seed: id,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            lease_duration_ms: 1500,
            lease_renew_interval_ms: 500,
            clock_uncertainty_ms: 5,
            clock_drift_ppm_max: 1000,
            pre_vote: true,
            check_quorum: true,
            lease_reads: true,
            message_bytes_max: 4 << 20,
            append_entries_max: 256,
            inflight_messages_max: 64,
            uncommitted_bytes_max: 64 << 20,
            pending_reads_max: 10_000,
            snapshot_chunk_bytes_max: 1 << 20,
            snapshot_bytes_max: 1 << 30,
            compaction_retain_entries: 1000,
            mutant: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("node id 0 is reserved for 'none'".into());
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.election_timeout_ms
        {
            return Err("heartbeat_interval_ms must be in (0, election_timeout_ms)".into());
        }
        if self.lease_renew_interval_ms == 0
            || self.lease_renew_interval_ms >= self.lease_duration_ms
        {
            return Err("lease_renew_interval_ms must be in (0, lease_duration_ms)".into());
        }
        if self.append_entries_max == 0 || self.inflight_messages_max == 0 {
            return Err("append_entries_max and inflight_messages_max must be positive".into());
        }
        if self.snapshot_chunk_bytes_max == 0 || self.message_bytes_max < 1024 {
            return Err(
                "snapshot_chunk_bytes_max must be positive, message_bytes_max >= 1024".into(),
            );
        }
        Ok(())
    }

    /// The lease a new leader must wait out when it cannot trust its wall clock:
    /// lease duration stretched by the worst monotonic drift.
    pub fn lease_wait_untrusted_ms(&self) -> u64 {
        self.lease_duration_ms + self.lease_duration_ms * self.clock_drift_ppm_max / 1_000_000 + 1
    }
}
