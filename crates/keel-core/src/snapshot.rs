//! Snapshots and compaction as protocol events: the application reports a snapshot, the log
//! before it is purged, and followers behind the purge point receive it in bounded chunks,
//! verified by checksum before anything is replaced.

use crate::message::Body;
use crate::node::{Gate, IncomingSnapshot, Node, Note, Role};
use crate::progress::ProgressState;
use crate::types::{Index, NodeId, Snapshot, SnapshotMeta, Time};

impl Node {
    /// The application captured its state after applying `index`. The core records the metadata
    /// (term, configuration, last stamp), keeps the snapshot to send to followers, and compacts
    /// the log up to `index - compaction_retain_entries`.
    pub fn snapshot_created(
        &mut self,
        now: Time,
        index: Index,
        data: Vec<u8>,
        session_table: Vec<u8>,
    ) -> Result<(), String> {
        self.set_now(now);
        if index > self.log.applied {
            return Err(format!(
                "snapshot at {index} is beyond the applied index {}",
                self.log.applied
            ));
        }
        if index <= self.log.snapshot_index {
            return Err(format!(
                "snapshot at {index} is not newer than {}",
                self.log.snapshot_index
            ));
        }
        let entry = self
            .log
            .entry(index)
            .expect("applied entry above the snapshot is in the log");
        let (membership, config_version) = self.membership_at(index);
        let meta = SnapshotMeta {
            index,
            term: entry.term,
            membership,
            config_version,
            last_stamp: entry.stamp,
            session_table,
        };
        let snapshot = Snapshot { meta, data };
        let compact_to = index.saturating_sub(self.cfg.compaction_retain_entries);
        self.open_write.snapshot = Some(snapshot.clone());
        if compact_to > self.log.snapshot_index {
            let (m, v) = self.membership_at(compact_to);
            self.log.compact(compact_to);
            self.base_membership = (v, m);
            self.config_entries.retain(|(i, _)| *i > compact_to);
            self.open_write.compact_to = Some(compact_to);
        }
        // The kept snapshot must be at or after the compaction point to be useful to followers.
        self.snapshot = Some(snapshot);
        self.after_step();
        Ok(())
    }

    /// Configuration in effect at `index` and its version.
    pub(crate) fn membership_at(&self, index: Index) -> (crate::quorum::Membership, Index) {
        self.config_entries
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(i, m)| (m.clone(), *i))
            .unwrap_or_else(|| (self.base_membership.1.clone(), self.base_membership.0))
    }

    pub(crate) fn start_snapshot_send(&mut self, peer: NodeId) {
        let Some(snap) = &self.snapshot else {
            // No snapshot to send yet (e.g. just restarted): the follower stays in probe.
            return;
        };
        let index = snap.meta.index;
        if index < self.log.snapshot_index {
            return; // Cannot help: the snapshot is older than the purge point.
        }
        let now = self.now.mono_ms;
        if let Some(pr) = self.progress.get_mut(&peer) {
            pr.become_snapshot(index, now);
        }
        self.stats.snapshots_sent += 1;
        self.send_snapshot_chunk(peer);
    }

    fn send_snapshot_chunk(&mut self, peer: NodeId) {
        let Some(snap) = &self.snapshot else { return };
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        if pr.state != ProgressState::Snapshot || pr.snapshot_index != snap.meta.index {
            return;
        }
        let offset = pr.snapshot_offset as usize;
        let end = (offset + self.cfg.snapshot_chunk_bytes_max).min(snap.data.len());
        pr.snapshot_sent_mono_ms = self.now.mono_ms;
        let body = Body::InstallSnapshot {
            meta: snap.meta.clone(),
            offset: offset as u64,
            total_bytes: snap.data.len() as u64,
            checksum: snap.checksum(),
            chunk: snap.data[offset..end].to_vec(),
            done: end == snap.data.len(),
        };
        self.send(peer, body, Gate::None);
    }

    pub(crate) fn resend_snapshot_chunk(&mut self, peer: NodeId) {
        let same = match (&self.snapshot, self.progress.get(&peer)) {
            (Some(s), Some(p)) => s.meta.index == p.snapshot_index,
            _ => false,
        };
        if same {
            self.send_snapshot_chunk(peer);
        } else if let Some(p) = self.progress.get_mut(&peer) {
            p.become_probe();
            self.maybe_send_append(peer, true);
        }
    }

    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        offset: u64,
        index: Index,
        done: bool,
        rejected: bool,
    ) {
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if rejected {
            pr.become_probe();
            self.maybe_send_append(from, true);
            return;
        }
        if done {
            pr.update(index);
            pr.become_probe();
            self.maybe_send_append(from, true);
            self.maybe_commit();
            return;
        }
        if index != pr.snapshot_index {
            return; // An answer about another snapshot.
        }
        pr.snapshot_offset = offset;
        self.send_snapshot_chunk(from);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        total_bytes: u64,
        checksum: u32,
        chunk: Vec<u8>,
        done: bool,
    ) {
        assert_eq!(self.role, Role::Follower);
        let index = meta.index;
        if index <= self.log.committed {
            // We already have everything it holds.
            self.incoming_snapshot = None;
            let committed = self.log.committed;
            self.send(
                from,
                Body::InstallSnapshotResponse {
                    offset: total_bytes,
                    index: committed,
                    done: true,
                    rejected: false,
                },
                Gate::Log,
            );
            return;
        }
        if total_bytes > self.cfg.snapshot_bytes_max as u64 {
            self.fail_snapshot(
                from,
                index,
                format!("snapshot of {total_bytes} bytes exceeds snapshot_bytes_max"),
            );
            return;
        }
        let restart = offset == 0
            || self.incoming_snapshot.as_ref().is_none_or(|s| {
                s.meta.index != index || s.meta.term != meta.term || s.checksum != checksum
            });
        if restart {
            if offset != 0 {
                // We lost the beginning; ask for it again.
                self.request_snapshot_from(from, index, 0);
                return;
            }
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta: meta.clone(),
                total_bytes,
                checksum,
                data: Vec::new(),
            });
        }
        let incoming = self.incoming_snapshot.as_mut().expect("set above");
        if offset != incoming.data.len() as u64 {
            let have = incoming.data.len() as u64;
            self.request_snapshot_from(from, index, have);
            return;
        }
        if incoming.data.len() + chunk.len() > total_bytes as usize {
            self.fail_snapshot(
                from,
                index,
                "snapshot chunks exceed the announced size".into(),
            );
            return;
        }
        incoming.data.extend_from_slice(&chunk);
        if !done {
            let have = incoming.data.len() as u64;
            self.request_snapshot_from(from, index, have);
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("present");
        if incoming.data.len() as u64 != incoming.total_bytes {
            self.fail_snapshot(
                from,
                index,
                "snapshot ended short of its announced size".into(),
            );
            return;
        }
        if crc32c::crc32c(&incoming.data) != incoming.checksum {
            self.fail_snapshot(from, index, "snapshot checksum mismatch".into());
            return;
        }
        self.install_snapshot(Snapshot {
            meta: incoming.meta,
            data: incoming.data,
        });
        let committed = self.log.committed;
        self.send(
            from,
            Body::InstallSnapshotResponse {
                offset: total_bytes,
                index: committed,
                done: true,
                rejected: false,
            },
            Gate::Log,
        );
    }

    /// Asks the leader for snapshot `index` from byte `offset` on (progress or resend).
    fn request_snapshot_from(&mut self, from: NodeId, index: Index, offset: u64) {
        self.send(
            from,
            Body::InstallSnapshotResponse {
                offset,
                index,
                done: false,
                rejected: false,
            },
            Gate::None,
        );
    }

    fn fail_snapshot(&mut self, from: NodeId, index: Index, reason: String) {
        self.incoming_snapshot = None;
        self.stats.snapshot_install_failures += 1;
        self.out.notes.push(Note::SnapshotInstallFailed { reason });
        self.send(
            from,
            Body::InstallSnapshotResponse {
                offset: 0,
                index,
                done: false,
                rejected: true,
            },
            Gate::None,
        );
    }

    /// Replaces the log's base and the state machine with a verified snapshot.
    fn install_snapshot(&mut self, snap: Snapshot) {
        let meta = &snap.meta;
        assert!(
            meta.index > self.log.committed,
            "install only newer snapshots"
        );
        let kept_tail = self.log.matches(meta.index, meta.term);
        self.log.restore(meta.index, meta.term, meta.last_stamp);
        self.base_membership = (meta.config_version, meta.membership.clone());
        if kept_tail {
            self.config_entries.retain(|(i, _)| *i > meta.index);
        } else {
            self.config_entries.clear();
            self.open_write.entries.clear();
            self.open_write.truncate_from = Some(meta.index + 1);
            self.durable_last_index = self.durable_last_index.min(meta.index);
        }
        self.stats.snapshots_installed += 1;
        self.out.notes.push(Note::SnapshotInstalled {
            index: meta.index,
            term: meta.term,
        });
        self.out.restore = Some(snap.clone());
        self.open_write.snapshot = Some(snap.clone());
        self.snapshot = Some(snap);
    }
}
