//! Majority and joint-majority arithmetic over a membership. Nothing else lives here.

use crate::types::{Index, NodeId};
use std::collections::BTreeSet;

/// A configuration. `voters_outgoing` is non-empty exactly while joint (C_old,new): then every
/// decision (election, commit, read confirmation) needs a majority of `voters` AND of
/// `voters_outgoing`. Learners receive the log but never vote and never count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub voters_outgoing: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        let m = Membership {
            voters: voters.into_iter().collect(),
            ..Default::default()
        };
        assert!(
            !m.voters.is_empty(),
            "a membership needs at least one voter"
        );
        m
    }

    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every node that receives the log (voters of both halves and learners), sorted.
    pub fn all_nodes(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    pub fn node_count(&self) -> usize {
        self.voters.len() + self.voters_outgoing.len() + self.learners.len()
    }

    /// Well-formed: at least one voter; learners disjoint from voters.
    pub fn validate(&self) -> Result<(), String> {
        if self.voters.is_empty() {
            return Err("membership has no voters".into());
        }
        if let Some(id) = self.learners.iter().find(|id| self.is_voter(**id)) {
            return Err(format!("node {id} is both voter and learner"));
        }
        Ok(())
    }

    /// True when `granted` contains a majority of every voter set (joint-aware).
    pub fn has_quorum(&self, granted: &dyn Fn(NodeId) -> bool) -> bool {
        majority_of(&self.voters, granted)
            && (self.voters_outgoing.is_empty() || majority_of(&self.voters_outgoing, granted))
    }

    /// Vote outcome: Won when a quorum granted, Lost when a quorum can no longer be reached.
    pub fn vote_result(&self, votes: &dyn Fn(NodeId) -> Option<bool>) -> VoteResult {
        let a = vote_result_of(&self.voters, votes);
        if self.voters_outgoing.is_empty() {
            return a;
        }
        let b = vote_result_of(&self.voters_outgoing, votes);
        match (a, b) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// The largest index acknowledged by a quorum (joint: the smaller of the two majorities).
    pub fn committed_index(&self, matched: &dyn Fn(NodeId) -> Index) -> Index {
        let a = majority_index(&self.voters, matched);
        if self.voters_outgoing.is_empty() {
            a
        } else {
            a.min(majority_index(&self.voters_outgoing, matched))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Pending,
    Won,
    Lost,
}

fn majority_of(set: &BTreeSet<NodeId>, granted: &dyn Fn(NodeId) -> bool) -> bool {
    assert!(!set.is_empty());
    let count = set.iter().filter(|id| granted(**id)).count();
    count > set.len() / 2
}

fn vote_result_of(set: &BTreeSet<NodeId>, votes: &dyn Fn(NodeId) -> Option<bool>) -> VoteResult {
    let (mut yes, mut missing) = (0, 0);
    for id in set {
        match votes(*id) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let need = set.len() / 2 + 1;
    if yes >= need {
        VoteResult::Won
    } else if yes + missing >= need {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

fn majority_index(set: &BTreeSet<NodeId>, matched: &dyn Fn(NodeId) -> Index) -> Index {
    assert!(!set.is_empty());
    let mut indexes: Vec<Index> = set.iter().map(|id| matched(*id)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    // The (n/2+1)-th largest value is held by a majority.
    indexes[set.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_index_is_median_from_top() {
        let m = Membership::new([1, 2, 3, 4, 5]);
        let matched = |id: NodeId| [0, 10, 9, 3, 2, 8][id as usize];
        assert_eq!(m.committed_index(&matched), 8);
    }

    #[test]
    fn joint_needs_both_majorities() {
        let mut m = Membership::new([1, 2, 3]);
        m.voters_outgoing = [4, 5, 6].into_iter().collect();
        let only_new = |id: NodeId| id <= 3;
        assert!(!m.has_quorum(&only_new));
        let both = |id: NodeId| matches!(id, 1 | 2 | 4 | 5);
        assert!(m.has_quorum(&both));
        let matched = |id: NodeId| if id <= 3 { 10 } else { 4 };
        assert_eq!(m.committed_index(&matched), 4);
    }

    #[test]
    fn vote_result_lost_when_unreachable() {
        let m = Membership::new([1, 2, 3]);
        let votes = |id: NodeId| match id {
            1 => Some(true),
            _ => Some(false),
        };
        assert_eq!(m.vote_result(&votes), VoteResult::Lost);
        let pending = |id: NodeId| if id == 1 { Some(true) } else { None };
        assert_eq!(m.vote_result(&pending), VoteResult::Pending);
    }
}
