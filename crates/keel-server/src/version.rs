//! Versions (docs/upgrades.md): what this binary speaks and stores, what its peers announced in
//! their handshakes, and the rule for finalizing an upgrade.
//!
//! Three numbers, one direction each:
//! - the peer protocol `PROTOCOL_MAJOR.PROTOCOL_MINOR` (wire.rs): a minor release talks to the
//!   previous and the next minor, so a cluster can run two releases side by side;
//! - the data format (keel-storage `DATA_FORMAT_MIN..=DATA_FORMAT_MAX`): what a binary reads;
//! - the cluster version (keel-kv `StateMachine::cluster_version`): replicated, raised only by
//!   a committed `SetClusterVersion` (the finalization step), never lowered. Once a node
//!   applies version V it switches its data directory to format V; before that, every node
//!   writes the oldest format, so any node can still be rolled back to the previous release.
//!
//! The test build `--features next-version` stands in for the next release: protocol 1.1 and
//! cluster version / data format 2 (identical layouts: the build exists to exercise the
//! mixed-version, rollback and finalization machinery end to end).

use keel_core::NodeId;
use std::collections::BTreeMap;

/// The highest cluster version this binary can run: its highest data format.
pub const CLUSTER_VERSION_MAX: u32 = keel_storage::DATA_FORMAT_MAX;

/// What a peer's handshake said about its binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerVersion {
    pub protocol_minor: u32,
    pub cluster_version_max: u32,
}

/// The cluster version a handshake field announces (0: a peer that predates the field, which
/// supports exactly version 1).
pub fn announced_max(field: u32) -> u32 {
    field.max(1)
}

/// What a peer's handshake (Hello or HelloAck) says about its binary, checked against the
/// finalized cluster version this node applied: a binary that cannot run it is refused (a
/// node rolled back after finalization, or an old release on a fresh directory).
pub fn check_peer(
    node: NodeId,
    protocol_minor: u32,
    cluster_version_max_field: u32,
    cluster_version: u32,
) -> Result<PeerVersion, String> {
    let cluster_version_max = announced_max(cluster_version_max_field);
    if cluster_version_max < cluster_version {
        return Err(format!(
            "peer binary supports cluster version up to {cluster_version_max}, but the cluster \
             finalized version {cluster_version}: run the newer binary on node {node}"
        ));
    }
    Ok(PeerVersion {
        protocol_minor,
        cluster_version_max,
    })
}

/// This binary's versions, one line (`keel --version`, logs, `/v1/status`).
pub fn describe() -> String {
    format!(
        "protocol {}.{}, data format {}..={}, cluster version up to {}{}",
        crate::wire::PROTOCOL_MAJOR,
        crate::wire::PROTOCOL_MINOR,
        keel_storage::DATA_FORMAT_MIN,
        keel_storage::DATA_FORMAT_MAX,
        CLUSTER_VERSION_MAX,
        if cfg!(feature = "next-version") {
            "; test build next-version"
        } else {
            ""
        }
    )
}

/// Refuses to run a cluster version this binary does not support (a rolled-back binary on a
/// finalized cluster): the node stops before it could apply anything under the wrong rules.
pub fn check_runnable(cluster_version: u32) -> anyhow::Result<()> {
    anyhow::ensure!(
        cluster_version <= CLUSTER_VERSION_MAX,
        "the cluster finalized cluster version {cluster_version}, newer than this binary \
         supports (up to {CLUSTER_VERSION_MAX}); rolling back after finalization is not \
         possible: run the newer binary"
    );
    Ok(())
}

/// Decides a finalization: the version to set (`requested`, or the highest every member
/// supports), or why not. `binary_max` is this node's `CLUSTER_VERSION_MAX` (a parameter so
/// that both releases' rules are tested in one build); `members` are every voter and learner
/// except this node; `peers` the
/// versions learned from handshakes since each peer's last (re)start. A member the leader has
/// not heard from is a refusal, not a guess: finalizing past a binary that cannot run the
/// new version would stop that node.
pub fn finalize_target(
    requested: Option<u32>,
    current: u32,
    binary_max: u32,
    members: &[NodeId],
    peers: &BTreeMap<NodeId, PeerVersion>,
) -> Result<u32, String> {
    assert!(current >= 1 && current <= binary_max);
    let mut supported = binary_max;
    let mut missing = Vec::new();
    for id in members {
        match peers.get(id) {
            Some(v) => supported = supported.min(v.cluster_version_max),
            None => missing.push(id.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "no handshake from member(s) {} since they started: their binaries are unknown \
             (retry once they are connected)",
            missing.join(",")
        ));
    }
    let target = requested.unwrap_or(supported.max(current));
    if target == 0 {
        return Err("cluster version 0 does not exist".into());
    }
    if target > binary_max {
        return Err(format!(
            "this node's binary supports cluster version up to {binary_max}, not {target}"
        ));
    }
    let behind: Vec<String> = members
        .iter()
        .filter(|id| peers[id].cluster_version_max < target)
        .map(|id| format!("{id} (up to {})", peers[id].cluster_version_max))
        .collect();
    if !behind.is_empty() {
        return Err(format!(
            "member(s) {} run a binary that cannot run cluster version {target}: upgrade them first",
            behind.join(", ")
        ));
    }
    if target < current {
        return Err(format!(
            "the cluster version is {current}; it is never lowered (asked for {target})"
        ));
    }
    assert!(target >= current && target <= binary_max);
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[(NodeId, u32)]) -> BTreeMap<NodeId, PeerVersion> {
        list.iter()
            .map(|&(id, max)| {
                (
                    id,
                    PeerVersion {
                        protocol_minor: max - 1,
                        cluster_version_max: max,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn finalization_waits_for_every_member_and_never_lowers() {
        // A leader on the next release (supports 2), cluster at 1.
        let all_new = peers(&[(2, 2), (3, 2)]);
        assert_eq!(finalize_target(None, 1, 2, &[2, 3], &all_new), Ok(2));
        assert_eq!(finalize_target(Some(2), 1, 2, &[2, 3], &all_new), Ok(2));
        let unknown = finalize_target(None, 1, 2, &[2, 3, 4], &all_new).unwrap_err();
        assert!(unknown.contains("member(s) 4"), "{unknown}");
        let too_high = finalize_target(Some(3), 1, 2, &[2, 3], &all_new).unwrap_err();
        assert!(too_high.contains("this node's binary"), "{too_high}");
        // One member still on the older release: the default target is what everyone
        // supports (1: unchanged); asking for 2 names the member.
        let one_old = peers(&[(2, 2), (3, 1)]);
        assert_eq!(finalize_target(None, 1, 2, &[2, 3], &one_old), Ok(1));
        let refused = finalize_target(Some(2), 1, 2, &[2, 3], &one_old).unwrap_err();
        assert!(refused.contains("3 (up to 1)"), "{refused}");
        // A leader on the older release cannot finalize past itself.
        let refused = finalize_target(Some(2), 1, 1, &[2, 3], &all_new).unwrap_err();
        assert!(refused.contains("up to 1, not 2"), "{refused}");
        // Finalized at 2: never lowered; asking again is fine (idempotent).
        let lower = finalize_target(Some(1), 2, 2, &[2, 3], &all_new).unwrap_err();
        assert!(lower.contains("never lowered"), "{lower}");
        assert_eq!(finalize_target(None, 2, 2, &[2, 3], &all_new), Ok(2));
        assert!(finalize_target(Some(0), 1, 1, &[], &BTreeMap::new()).is_err());
        assert_eq!(announced_max(0), 1);
        assert_eq!(announced_max(2), 2);
    }

    #[test]
    fn a_binary_runs_only_the_cluster_versions_it_supports() {
        assert!(check_runnable(CLUSTER_VERSION_MAX).is_ok());
        let refused = check_runnable(CLUSTER_VERSION_MAX + 1)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("newer than this binary"), "{refused}");
    }
}
