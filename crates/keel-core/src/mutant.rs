//! Known bugs that can be switched on (feature `mutants`) to prove the simulator, the model
//! checker and the tests catch them. Without the feature, `Node::mutant` is always false.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// Commit an older term's entry by counting replicas (violates Figure 8's rule).
    CommitPreviousTerm,
    /// Reply to a vote request before the vote is persisted.
    VoteBeforePersist,
    /// Grant a vote without the up-to-date log check.
    VoteWithoutLogCheck,
    /// A follower accepts entries without the previous index/term check.
    AppendWithoutPrevCheck,
    /// Switch voter sets without the joint phase.
    SkipJointConsensus,
    /// A new leader commits (and serves lease reads) without waiting out the previous lease.
    LeaseWithoutWait,
    /// Serve ReadIndex reads without the confirming heartbeat round.
    ReadIndexWithoutQuorum,
}

impl Mutant {
    pub const ALL: [Mutant; 7] = [
        Mutant::CommitPreviousTerm,
        Mutant::VoteBeforePersist,
        Mutant::VoteWithoutLogCheck,
        Mutant::AppendWithoutPrevCheck,
        Mutant::SkipJointConsensus,
        Mutant::LeaseWithoutWait,
        Mutant::ReadIndexWithoutQuorum,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::CommitPreviousTerm => "commit-previous-term",
            Mutant::VoteBeforePersist => "vote-before-persist",
            Mutant::VoteWithoutLogCheck => "vote-without-log-check",
            Mutant::AppendWithoutPrevCheck => "append-without-prev-check",
            Mutant::SkipJointConsensus => "skip-joint-consensus",
            Mutant::LeaseWithoutWait => "lease-without-wait",
            Mutant::ReadIndexWithoutQuorum => "read-index-without-quorum",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}
