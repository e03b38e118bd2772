//! Core step throughput: messages per second through a leader of 3 in-memory nodes (every write
//! is durable the moment it is issued, every message delivered at once, every committed entry
//! applied at once), and how proposal batching changes entries per second.
//!
//! `cargo bench -p keel-core --bench step`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel_core::{Config, Membership, Message, Node, NodeId, Restored, Role, Time};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const NODES: u64 = 3;
/// Bounds the pump so a stuck cluster fails the bench instead of spinning.
const PUMP_ROUNDS_MAX: usize = 10_000;
const PAYLOAD_BYTES: usize = 128;
const BATCH_SIZES: [usize; 4] = [1, 16, 64, 256];

struct Cluster {
    nodes: Vec<Node>,
    network: VecDeque<Message>,
    now: Time,
    delivered_messages: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let now = Time {
            mono_ms: 0,
            wall_ms: 1_000_000,
            wall_trusted: true,
        };
        let ids: Vec<NodeId> = (1..=NODES).collect();
        let nodes = ids
            .iter()
            .map(|id| {
                let restored = Restored::bootstrap(Membership::new(ids.clone()));
                Node::new(Config::new(*id), restored, now).expect("valid config")
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            network: VecDeque::new(),
            now,
            delivered_messages: 0,
        };
        // Let node 1 time out first; pump until it leads.
        for step in 1..=100u64 {
            cluster.now.mono_ms = 2_000 + step * 50;
            cluster.now.wall_ms = 1_000_000 + cluster.now.mono_ms;
            cluster.nodes[0].tick(cluster.now);
            cluster.pump();
            if cluster.nodes[0].role() == Role::Leader {
                break;
            }
        }
        assert_eq!(cluster.nodes[0].role(), Role::Leader, "node 1 must lead");
        cluster.delivered_messages = 0;
        cluster
    }

    /// Runs every node's output until nothing is left: writes made durable at once, messages
    /// delivered in order, committed entries applied.
    fn pump(&mut self) {
        for _ in 0..PUMP_ROUNDS_MAX {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].has_ready() {
                    continue;
                }
                progressed = true;
                let ready = self.nodes[i].ready();
                if let Some(last) = ready.writes.last() {
                    self.nodes[i].persisted(self.now, last.id);
                }
                self.network.extend(ready.messages);
                if let Some(last) = ready.committed.last() {
                    self.nodes[i].applied(self.now, last.index);
                }
            }
            while let Some(msg) = self.network.pop_front() {
                progressed = true;
                let to = (msg.to - 1) as usize;
                self.nodes[to].receive(self.now, msg);
                self.delivered_messages += 1;
            }
            if !progressed {
                return;
            }
        }
        panic!("cluster did not quiesce in {PUMP_ROUNDS_MAX} rounds");
    }

    /// Proposes `batch` entries at the leader, then runs the cluster until all are applied.
    fn propose_and_commit(&mut self, batch: usize) {
        let payload = vec![b'x'; PAYLOAD_BYTES];
        let mut last = 0;
        for _ in 0..batch {
            let (index, _) = self.nodes[0]
                .propose(self.now, payload.clone())
                .expect("the leader accepts");
            last = index;
        }
        self.pump();
        assert!(self.nodes[0].commit_index() >= last, "batch committed");
    }
}

fn step_throughput(c: &mut Criterion) {
    // Messages one single-entry proposal costs (appends and acks), for the throughput unit.
    let mut probe = Cluster::new();
    probe.propose_and_commit(1);
    let messages_per_proposal = probe.delivered_messages.max(1);
    let mut group = c.benchmark_group("core_step");
    group.throughput(Throughput::Elements(messages_per_proposal));
    group.bench_function("messages_through_leader_3_nodes", |b| {
        b.iter_custom(|iters| {
            // A fresh cluster per sample keeps the in-memory logs small.
            let mut cluster = Cluster::new();
            let start = Instant::now();
            for _ in 0..iters {
                cluster.propose_and_commit(1);
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn proposal_batching(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_proposal_batching");
    for batch in BATCH_SIZES {
        // How many messages a batch costs: shows whether proposals made between two `ready()`
        // calls share append messages.
        let mut probe = Cluster::new();
        probe.propose_and_commit(batch);
        eprintln!(
            "batch {batch}: {} messages delivered, {:.2} per entry",
            probe.delivered_messages,
            probe.delivered_messages as f64 / batch as f64
        );
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("entries", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let mut cluster = Cluster::new();
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    cluster.propose_and_commit(batch);
                    elapsed += start.elapsed();
                }
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = step_throughput, proposal_batching
}
criterion_main!(benches);
