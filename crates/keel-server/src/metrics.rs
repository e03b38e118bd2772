//! Prometheus metrics (prometheus-client). Labels come only from bounded enums; every labelled
//! series is created at start-up with value 0 so dashboards never see a missing series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpCodeLabel {
    pub op: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLevelLabel {
    pub op: &'static str,
    pub level: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: &'static str,
}

/// Reasons admission control refuses a request (the `reason` label's only values).
pub const ADMISSION_REASONS: [&str; 9] = [
    "queue_full",
    "queue_delay",
    "client_share",
    "key_share",
    "inflight_limit",
    "apply_lag",
    "uncommitted_limit",
    "shutting_down",
    "body_too_large",
];
/// Node roles (`role` label of `keel_role`): the core's roles plus `learner`.
pub const ROLES: [&str; 5] = [
    "follower",
    "pre-candidate",
    "candidate",
    "leader",
    "learner",
];

/// Node modes (the `mode` label's only values).
pub const MODES: [&str; 8] = [
    "healthy",
    "no_leader",
    "no_quorum",
    "catching_up",
    "overloaded",
    "clock_untrusted",
    "disk_full",
    "shutting_down",
];
/// Client API operations (the `op` label's only values). Reads are `get` and `range`.
pub const OPS: [&str; 10] = [
    "get", "range", "put", "delete", "cas", "txn", "session", "members", "transfer", "finalize",
];
pub const READ_OPS: [&str; 2] = ["get", "range"];
/// Read levels (`level` label); `none` for writes and admin requests.
pub const LEVELS: [&str; 3] = ["linearizable", "bounded", "any"];
/// Response codes (`code` label): OK or an error code; anything else is `OTHER`.
pub const CODES: [&str; 18] = [
    "OK",
    "BAD_REQUEST",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "PAYLOAD_TOO_LARGE",
    "NOT_LEADER",
    "NO_LEADER",
    "OUTCOME_UNKNOWN",
    "OVERLOADED",
    "STALE_BOUND_UNMET",
    "NO_SPACE",
    "SESSION_EXPIRED",
    "UNAVAILABLE",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "FAILED_PRECONDITION",
    "INTERNAL",
    "OTHER",
];
/// Endpoint classes for retries and timeouts (`class` label).
pub const CLASSES: [&str; 3] = ["read", "write", "admin"];

/// Maps any string to the bounded label value it stands for (a static from `values`), or
/// `fallback`. User input never becomes a label value.
pub fn bounded_label(value: &str, values: &[&'static str], fallback: &'static str) -> &'static str {
    values
        .iter()
        .copied()
        .find(|v| *v == value)
        .unwrap_or(fallback)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0002, 2.0, 16))
}

pub struct Metrics {
    pub registry: Registry,
    pub term: Gauge,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub config_version: Gauge,
    /// The applied cluster version and the data directory's format (docs/upgrades.md).
    pub cluster_version: Gauge,
    pub data_format: Gauge,
    pub is_leader: Gauge,
    pub leader_id: Gauge,
    pub lease_valid: Gauge,
    pub mode: Family<ModeLabel, Gauge>,
    pub role: Family<RoleLabel, Gauge>,
    pub leader_changes_total: Counter,
    pub commit_index_regressions_total: Counter,
    pub snapshot_install_failures_total: Counter,
    pub snapshots_created_total: Counter,
    pub snapshots_installed_total: Counter,
    pub invariant_violations_total: Counter,
    pub clock_discontinuities_total: Counter,
    pub peer_messages_dropped_total: Counter,
    pub admission_rejected_total: Family<ReasonLabel, Counter>,
    pub authz_failures_total: Family<ReasonLabel, Counter>,
    pub quorum_ack_latency_seconds: Histogram,
    pub wal_fsync_seconds: Histogram,
    pub apply_lag_entries: Gauge,
    /// The apply lag as sampled once per node-loop iteration (its distribution over time).
    pub apply_lag_sampled_entries: Histogram,
    pub requests_total: Family<OpCodeLabel, Counter>,
    pub request_latency_seconds: HistogramFamily<OpLevelLabel>,
    /// Latency by response code alone (op x level x code would be ~4,800 series).
    pub request_latency_by_code_seconds: HistogramFamily<CodeLabel>,
    pub request_timeouts_total: Family<ClassLabel, Counter>,
    pub request_retries_total: Family<ClassLabel, Counter>,
    pub mode_transitions_total: Family<ModeLabel, Counter>,
    pub audit_records_total: Counter,
    pub audit_failures_total: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keel");
        let m = Metrics {
            term: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            config_version: Gauge::default(),
            cluster_version: Gauge::default(),
            data_format: Gauge::default(),
            is_leader: Gauge::default(),
            leader_id: Gauge::default(),
            lease_valid: Gauge::default(),
            mode: Family::default(),
            role: Family::default(),
            leader_changes_total: Counter::default(),
            commit_index_regressions_total: Counter::default(),
            snapshot_install_failures_total: Counter::default(),
            snapshots_created_total: Counter::default(),
            snapshots_installed_total: Counter::default(),
            invariant_violations_total: Counter::default(),
            clock_discontinuities_total: Counter::default(),
            peer_messages_dropped_total: Counter::default(),
            admission_rejected_total: Family::default(),
            authz_failures_total: Family::default(),
            quorum_ack_latency_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            wal_fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            apply_lag_entries: Gauge::default(),
            apply_lag_sampled_entries: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            requests_total: Family::default(),
            request_latency_seconds: Family::new_with_constructor(request_histogram),
            request_latency_by_code_seconds: Family::new_with_constructor(request_histogram),
            request_timeouts_total: Family::default(),
            request_retries_total: Family::default(),
            mode_transitions_total: Family::default(),
            audit_records_total: Counter::default(),
            audit_failures_total: Counter::default(),
            registry: Registry::default(),
        };
        for op in OPS {
            for code in CODES {
                let _ = m.requests_total.get_or_create(&OpCodeLabel { op, code });
            }
            let levels: &[&'static str] = if READ_OPS.contains(&op) {
                &LEVELS
            } else {
                &["none"]
            };
            for &level in levels {
                for outcome in ["ok", "error"] {
                    let _ = m.request_latency_seconds.get_or_create(&OpLevelLabel {
                        op,
                        level,
                        outcome,
                    });
                }
            }
        }
        for code in CODES {
            let _ = m
                .request_latency_by_code_seconds
                .get_or_create(&CodeLabel { code });
        }
        for class in CLASSES {
            let _ = m
                .request_timeouts_total
                .get_or_create(&ClassLabel { class });
            let _ = m.request_retries_total.get_or_create(&ClassLabel { class });
        }
        for mode in MODES {
            let _ = m.mode_transitions_total.get_or_create(&ModeLabel { mode });
        }
        for r in ADMISSION_REASONS {
            let _ = m
                .admission_rejected_total
                .get_or_create(&ReasonLabel { reason: r });
        }
        for mode in MODES {
            let _ = m.mode.get_or_create(&ModeLabel { mode });
        }
        for role in ROLES {
            let _ = m.role.get_or_create(&RoleLabel { role });
        }
        for reason in crate::auth::Failure::REASONS {
            let _ = m
                .authz_failures_total
                .get_or_create(&ReasonLabel { reason });
        }
        registry.register("term", "Current Raft term", m.term.clone());
        registry.register("commit_index", "Commit index", m.commit_index.clone());
        registry.register("applied_index", "Applied index", m.applied_index.clone());
        registry.register(
            "config_version",
            "Index of the configuration in effect",
            m.config_version.clone(),
        );
        registry.register(
            "cluster_version",
            "Finalized cluster version applied by this node (docs/upgrades.md)",
            m.cluster_version.clone(),
        );
        registry.register(
            "data_format",
            "Format version of this node's data directory",
            m.data_format.clone(),
        );
        registry.register(
            "is_leader",
            "1 if this node is the leader",
            m.is_leader.clone(),
        );
        registry.register(
            "leader_id",
            "Known leader id (0: none)",
            m.leader_id.clone(),
        );
        registry.register(
            "lease_valid",
            "1 if this node holds a valid leader lease",
            m.lease_valid.clone(),
        );
        registry.register("mode", "1 for the node's current mode", m.mode.clone());
        registry.register("role", "1 for the node's current role", m.role.clone());
        registry.register(
            "leader_changes",
            "Changes of the known leader",
            m.leader_changes_total.clone(),
        );
        registry.register(
            "commit_index_regressions",
            "Times the commit index went down (must stay 0)",
            m.commit_index_regressions_total.clone(),
        );
        registry.register(
            "snapshot_install_failures",
            "Snapshot installs that failed",
            m.snapshot_install_failures_total.clone(),
        );
        registry.register(
            "snapshots_created",
            "State-machine snapshots taken",
            m.snapshots_created_total.clone(),
        );
        registry.register(
            "snapshots_installed",
            "Snapshots received from a leader and installed",
            m.snapshots_installed_total.clone(),
        );
        registry.register(
            "invariant_violations",
            "Protocol invariant violations detected (must stay 0)",
            m.invariant_violations_total.clone(),
        );
        registry.register(
            "clock_discontinuities",
            "Wall-clock discontinuities seen",
            m.clock_discontinuities_total.clone(),
        );
        registry.register(
            "peer_messages_dropped",
            "Peer messages dropped (queue full or no address)",
            m.peer_messages_dropped_total.clone(),
        );
        registry.register(
            "admission_rejected",
            "Requests refused by admission control",
            m.admission_rejected_total.clone(),
        );
        registry.register(
            "authz_failures",
            "Requests refused by authorization, by reason (missing, invalid, forbidden)",
            m.authz_failures_total.clone(),
        );
        registry.register(
            "quorum_ack_latency_seconds",
            "Proposal to commit-and-apply on the leader",
            m.quorum_ack_latency_seconds.clone(),
        );
        registry.register(
            "wal_fsync_seconds",
            "Duration of one group-commit batch",
            m.wal_fsync_seconds.clone(),
        );
        registry.register(
            "apply_lag_sampled_entries",
            "Commit index minus applied index, sampled once per node-loop iteration",
            m.apply_lag_sampled_entries.clone(),
        );
        registry.register(
            "apply_lag_entries",
            "Commit index minus applied index",
            m.apply_lag_entries.clone(),
        );
        registry.register(
            "requests",
            "Client API requests by operation and response code",
            m.requests_total.clone(),
        );
        registry.register(
            "request_latency_by_code_seconds",
            "Client API request latency by response code",
            m.request_latency_by_code_seconds.clone(),
        );
        registry.register(
            "request_latency_seconds",
            "Client API request latency by operation, read level and outcome",
            m.request_latency_seconds.clone(),
        );
        registry.register(
            "request_timeouts",
            "Requests that timed out inside the node (writes: OUTCOME_UNKNOWN)",
            m.request_timeouts_total.clone(),
        );
        registry.register(
            "request_retries",
            "Retries seen: duplicate session writes, lease reads re-confirmed by ReadIndex",
            m.request_retries_total.clone(),
        );
        registry.register(
            "mode_transitions",
            "Mode transitions, by the mode entered",
            m.mode_transitions_total.clone(),
        );
        registry.register(
            "audit_records",
            "Records appended to this node's audit chain",
            m.audit_records_total.clone(),
        );
        registry.register(
            "audit_failures",
            "Audit appends that failed (auditing stops after the first)",
            m.audit_failures_total.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Records one finished client request. Every argument must already be a bounded value.
    pub fn request(&self, op: &'static str, level: &'static str, code: &'static str, seconds: f64) {
        assert!(OPS.contains(&op), "op label {op:?} is not a bounded value");
        assert!(
            CODES.contains(&code),
            "code label {code:?} is not a bounded value"
        );
        self.requests_total
            .get_or_create(&OpCodeLabel { op, code })
            .inc();
        let level = if READ_OPS.contains(&op) {
            level
        } else {
            "none"
        };
        let outcome = if code == "OK" { "ok" } else { "error" };
        self.request_latency_seconds
            .get_or_create(&OpLevelLabel { op, level, outcome })
            .observe(seconds);
        self.request_latency_by_code_seconds
            .get_or_create(&CodeLabel { code })
            .observe(seconds);
    }

    pub fn request_timeout(&self, class: &'static str) {
        assert!(CLASSES.contains(&class));
        self.request_timeouts_total
            .get_or_create(&ClassLabel { class })
            .inc();
    }

    pub fn request_retry(&self, class: &'static str) {
        assert!(CLASSES.contains(&class));
        self.request_retries_total
            .get_or_create(&ClassLabel { class })
            .inc();
    }

    pub fn mode_transition(&self, to: &'static str) {
        assert!(MODES.contains(&to));
        self.mode_transitions_total
            .get_or_create(&ModeLabel { mode: to })
            .inc();
    }

    pub fn reject(&self, reason: &'static str) {
        assert!(
            ADMISSION_REASONS.contains(&reason),
            "unknown reason {reason:?}"
        );
        self.admission_rejected_total
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn set_role(&self, current: &'static str) {
        assert!(ROLES.contains(&current), "unknown role {current:?}");
        for role in ROLES {
            self.role
                .get_or_create(&RoleLabel { role })
                .set(i64::from(role == current));
        }
    }

    pub fn set_mode(&self, current: &'static str) {
        for mode in MODES {
            self.mode
                .get_or_create(&ModeLabel { mode })
                .set(i64::from(mode == current));
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
