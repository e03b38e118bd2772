//! Safety properties checked in every state (docs/safety.md), written as pure checks over the
//! state plus its per-path history, so that no incremental monitor has to be cloned.

use crate::action::Broken;
use crate::state::{entry_key, State};
use crate::{REACHED_COMMIT, REACHED_LEADER};
use keel_core::{EntryKind, Role};

fn broken(property: &str, detail: String) -> Result<(), Broken> {
    Err(Broken {
        property: property.to_string(),
        detail,
    })
}

/// Checks every property and updates the per-path history (leaders, committed entries,
/// "sometimes" bits).
pub fn check_state(prev: &State, s: &mut State) -> Result<(), Broken> {
    for (h, before) in s.hosts.iter().zip(&prev.hosts) {
        // The commit rule (Raft Figure 8): a leader advances its commit index only to an entry
        // of its own term; older entries are committed indirectly, never by counting replicas.
        let n = &h.node;
        if n.role() == Role::Leader
            && before.node.role() == Role::Leader
            && n.term() == before.node.term()
            && n.commit_index() > before.node.commit_index()
            && n.log().term(n.commit_index()) != Some(n.term())
        {
            return broken(
                "commit-current-term",
                format!(
                    "leader {} of term {} advanced its commit to index {} of term {:?}",
                    n.id(),
                    n.term(),
                    n.commit_index(),
                    n.log().term(n.commit_index())
                ),
            );
        }
        // Joint consensus: consecutive configurations in a log change voters only through a
        // joint configuration whose outgoing voters are the previous voters.
        let mut previous = n
            .snapshot()
            .filter(|snap| snap.meta.index == n.log().snapshot_index)
            .map(|snap| &snap.meta.membership);
        for e in n.log().entries() {
            if let EntryKind::Config(m) = &e.kind {
                if let Some(p) = previous {
                    let direct = !m.is_joint() && !p.is_joint() && m.voters != p.voters;
                    let wrong_joint = m.is_joint() && m.voters_outgoing != p.voters;
                    if direct || wrong_joint {
                        return broken(
                            "joint-consensus",
                            format!("node {}: configuration at index {} switches voters {:?} -> {:?} without the joint phase", n.id(), e.index, p.voters, m.voters),
                        );
                    }
                }
                previous = Some(m);
            }
        }
    }
    for h in &s.hosts {
        let n = &h.node;
        let log = n.log();
        if log.applied > log.committed || log.committed > log.last_index() {
            return broken(
                "index-order",
                format!(
                    "node {}: applied {} committed {} last {}",
                    n.id(),
                    log.applied,
                    log.committed,
                    log.last_index()
                ),
            );
        }
        if n.durable_hard_state().term > n.term() {
            return broken(
                "term-durability",
                format!("node {}: durable term ahead of memory", n.id()),
            );
        }
        // Election Safety, across the whole path: one leader per term, ever.
        if n.role() == Role::Leader {
            s.reached |= REACHED_LEADER;
            match s.leaders.get(&n.term()) {
                Some(other) if *other != n.id() => {
                    return broken(
                        "election-safety",
                        format!(
                            "nodes {other} and {} both leader in term {}",
                            n.id(),
                            n.term()
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    s.leaders.insert(n.term(), n.id());
                }
            }
        }
    }
    // Log Matching: two logs holding an entry with the same index and term are identical up to
    // there (above both snapshot points).
    for (a_pos, a) in s.hosts.iter().enumerate() {
        for b in &s.hosts[a_pos + 1..] {
            let (la, lb) = (a.node.log(), b.node.log());
            let lo = la.snapshot_index.max(lb.snapshot_index) + 1;
            let hi = la.last_index().min(lb.last_index());
            let mut matched = false;
            for i in (lo..=hi).rev() {
                let (ea, eb) = (
                    la.entry(i).expect("in range"),
                    lb.entry(i).expect("in range"),
                );
                if matched || ea.term == eb.term {
                    matched = true;
                    if ea != eb {
                        return broken(
                            "log-matching",
                            format!(
                                "nodes {} and {} differ at index {i} below a matching entry",
                                a.node.id(),
                                b.node.id()
                            ),
                        );
                    }
                }
            }
        }
    }
    // State Machine Safety: each index is committed with one entry, ever (on this path).
    for h in &s.hosts {
        let log = h.node.log();
        for i in log.snapshot_index + 1..=log.committed {
            let e = log.entry(i).expect("committed entry above the snapshot");
            let key = (e.term, entry_key(e));
            if matches!(e.kind, EntryKind::Normal(_)) {
                s.reached |= REACHED_COMMIT;
            }
            match s.committed.get(&i) {
                Some(k) if (k.0, k.1) != key => {
                    return broken(
                        "state-machine-safety",
                        format!("node {} committed index {i} term {} but term {} was committed there before", h.node.id(), e.term, k.0),
                    );
                }
                Some(_) => {}
                None => {
                    s.committed.insert(i, (key.0, key.1, h.node.term()));
                }
            }
        }
    }
    // Leader Completeness: a leader of a term after the one an entry was seen committed in
    // holds that entry. (A stale leader of an older term need not.)
    for h in s.hosts.iter().filter(|h| h.node.role() == Role::Leader) {
        let log = h.node.log();
        for (&i, &(t, hash, commit_term)) in s.committed.range(log.snapshot_index + 1..) {
            if h.node.term() <= commit_term {
                continue;
            }
            match log.entry(i) {
                Some(e) if e.term == t && entry_key(e) == hash => {}
                _ => {
                    return broken(
                        "leader-completeness",
                        format!(
                            "leader {} of term {} lacks committed index {i} (term {t})",
                            h.node.id(),
                            h.node.term()
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}
