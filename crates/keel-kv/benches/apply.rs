//! Apply throughput and codec speed. Run: `cargo bench -p keel-kv --bench apply`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keel_kv::{Command, Config, PutRequest, SessionTag, StateMachine, WriteRequest};

const KEYS: u64 = 10_000;

fn put(i: u64, session: Option<SessionTag>) -> Command {
    Command::Write {
        session,
        request: WriteRequest::Put(PutRequest {
            key: format!("bench/key/{:08}", i % KEYS).into_bytes(),
            value: vec![b'x'; 100],
            prev_kv: false,
        }),
    }
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    let encoded: Vec<Vec<u8>> = (0..KEYS).map(|i| put(i, None).encode()).collect();

    group.bench_function("put_100B_value", |b| {
        let mut machine = StateMachine::new(Config::default());
        let mut index = 0u64;
        b.iter(|| {
            index += 1;
            let bytes = &encoded[(index % KEYS) as usize];
            machine.apply(index, index, bytes)
        });
    });

    group.bench_function("put_100B_value_with_session", |b| {
        let mut machine = StateMachine::new(Config::default());
        machine.apply(1, 0, &Command::RegisterSession.encode());
        let mut index = 1u64;
        b.iter_batched(
            || {
                index += 1;
                // seq == lowest_unacked: one cached result per session at a time.
                let seq = index;
                let tag = SessionTag {
                    client_id: 1,
                    seq,
                    lowest_unacked_seq: seq,
                };
                (index, put(index, Some(tag)).encode())
            },
            |(index, bytes)| machine.apply(index, index, &bytes),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn bench_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let command = put(
        42,
        Some(SessionTag {
            client_id: 7,
            seq: 1_000,
            lowest_unacked_seq: 990,
        }),
    );
    let bytes = command.encode();
    group.bench_function("encode_put_100B", |b| b.iter(|| command.encode()));
    group.bench_function("decode_put_100B", |b| {
        b.iter(|| Command::decode(&bytes).unwrap())
    });
    let mut machine = StateMachine::new(Config::default());
    let result = machine.apply(1, 0, &bytes);
    let result_bytes = result.encode();
    group.bench_function("encode_result", |b| b.iter(|| result.encode()));
    group.bench_function("decode_result", |b| {
        b.iter(|| keel_kv::ApplyResult::decode(&result_bytes).unwrap())
    });
    group.finish();
}

fn bench_snapshot(c: &mut Criterion) {
    let mut machine = StateMachine::new(Config::default());
    for i in 0..KEYS {
        machine.apply(i + 1, i, &put(i, None).encode());
    }
    let bytes = machine.snapshot();
    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("snapshot_10k_keys", |b| b.iter(|| machine.snapshot()));
    group.bench_function("restore_10k_keys", |b| {
        b.iter(|| StateMachine::restore(Config::default(), &bytes).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_apply, bench_codec, bench_snapshot);
criterion_main!(benches);
