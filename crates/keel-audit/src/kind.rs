//! The bounded set of audit record kinds. A kind is a schema name, never user data.

/// What happened. Serialized as its snake_case name (`Kind::as_str`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ElectionWon,
    MembershipProposed,
    MembershipCommitted,
    LeaderTransfer,
    SnapshotTaken,
    SnapshotInstalled,
    ModeTransition,
    AdmissionChange,
    ClockDistrust,
    AuthzFailure,
    AdminRequest,
    RepairStarted,
    RepairCompleted,
    AnchorCommitted,
    NodeStarted,
    /// A cluster version change applied (an upgrade finalized): every node records it.
    UpgradeFinalized,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 16] = [
        Kind::ElectionWon,
        Kind::MembershipProposed,
        Kind::MembershipCommitted,
        Kind::LeaderTransfer,
        Kind::SnapshotTaken,
        Kind::SnapshotInstalled,
        Kind::ModeTransition,
        Kind::AdmissionChange,
        Kind::ClockDistrust,
        Kind::AuthzFailure,
        Kind::AdminRequest,
        Kind::RepairStarted,
        Kind::RepairCompleted,
        Kind::AnchorCommitted,
        Kind::NodeStarted,
        Kind::UpgradeFinalized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ElectionWon => "election_won",
            Kind::MembershipProposed => "membership_proposed",
            Kind::MembershipCommitted => "membership_committed",
            Kind::LeaderTransfer => "leader_transfer",
            Kind::SnapshotTaken => "snapshot_taken",
            Kind::SnapshotInstalled => "snapshot_installed",
            Kind::ModeTransition => "mode_transition",
            Kind::AdmissionChange => "admission_change",
            Kind::ClockDistrust => "clock_distrust",
            Kind::AuthzFailure => "authz_failure",
            Kind::AdminRequest => "admin_request",
            Kind::RepairStarted => "repair_started",
            Kind::RepairCompleted => "repair_completed",
            Kind::AnchorCommitted => "anchor_committed",
            Kind::NodeStarted => "node_started",
            Kind::UpgradeFinalized => "upgrade_finalized",
        }
    }

    /// The kind named `name`, if any (exact, case-sensitive).
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
        assert_eq!(Kind::parse("Election_Won"), None);
        assert_eq!(Kind::parse(""), None);
    }
}
