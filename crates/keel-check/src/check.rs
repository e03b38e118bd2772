//! `check`: pairs events, splits the history into independent partitions (P-compositionality),
//! compiles each against its model, searches them (optionally in parallel) and assembles the
//! report with an explanation for every violation.

use crate::history::{pair_operations, History, HistoryError, Op, OpStatus};
use crate::model::{
    Keyed, Model, MultiRegisterModel, MutexModel, RegisterModel, Semantics, SeqModel,
};
use crate::model::{RegInput, UNOBSERVED};
use crate::search::{search, Budget, Outcome, SearchOp};
use crate::value::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default memory budget for the memo caches of one check.
pub const MEMORY_BYTES_MAX_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// Upper bound on worker threads.
pub const THREADS_MAX: usize = 256;
/// Pending operations listed in an explanation, at most (the blocking one always is).
pub const STUCK_LISTED_MAX: usize = 64;

/// How to check.
#[derive(Clone, Debug)]
pub struct Options {
    /// Initial value of every register / key (default: nil; `kv`: empty string).
    pub initial: Option<Value>,
    /// A read that returns nil means "absent" (default: it constrains nothing, as in Jepsen).
    pub strict_nil: bool,
    /// Split per key (P-compositionality). Off: one search over the whole history.
    pub partition: bool,
    /// Worker threads for partitions (1 = sequential, deterministic scheduling).
    pub threads: usize,
    /// Wall-clock budget for the whole check; exceeded => `Unknown`.
    pub time_limit: Option<Duration>,
    /// Deterministic budget: search steps per partition; exceeded => `Unknown`.
    pub steps_max: Option<u64>,
    /// Memory budget for the memo caches (approximate, own accounting).
    pub memory_bytes_max: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            initial: None,
            strict_nil: false,
            partition: true,
            threads: 1,
            time_limit: None,
            steps_max: None,
            memory_bytes_max: MEMORY_BYTES_MAX_DEFAULT,
        }
    }
}

/// The answer. Never a guess: when a budget runs out the verdict is `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        }
    }

    /// Combines partition verdicts: any violation wins, then any unknown.
    pub fn combine(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::NotLinearizable, _) | (_, Verdict::NotLinearizable) => {
                Verdict::NotLinearizable
            }
            (Verdict::Unknown, _) | (_, Verdict::Unknown) => Verdict::Unknown,
            _ => Verdict::Linearizable,
        }
    }
}

/// One linearized operation and the model state after it.
#[derive(Clone, Debug)]
pub struct Step {
    /// Index into `Report::ops`.
    pub op: usize,
    pub state_after: String,
}

/// An operation that could not come next after the longest linearizable prefix.
#[derive(Clone, Debug)]
pub struct Stuck {
    pub op: usize,
    pub reason: String,
}

/// Why a partition is not linearizable.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<Step>,
    /// State after the prefix.
    pub state: String,
    /// The operation whose completion could not be passed: it must be linearized before its
    /// return, but no order of the pending operations allows it.
    pub blocking_op: usize,
    /// The operations pending at that point and why none of them can be ordered next.
    pub stuck: Vec<Stuck>,
}

/// The verdict of one partition (one key, or one group of keys).
#[derive(Clone, Debug)]
pub struct PartitionReport {
    /// The key (printed), or `*` for an unsplit history.
    pub label: String,
    /// Every operation of the partition (indices into `Report::ops`), fail ones included.
    pub ops: Vec<usize>,
    pub verdict: Verdict,
    /// Why `Unknown`.
    pub reason: Option<String>,
    /// A full linearization, or the longest prefix found (indices into `Report::ops`).
    pub linearization: Vec<usize>,
    pub explanation: Option<Explanation>,
    pub steps: u64,
    pub cache_entries: u64,
    pub cache_bytes: u64,
    pub elapsed: Duration,
}

/// The result of `check`.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    pub model: Model,
    /// The history's operations (invokes paired with completions), in invoke order.
    pub ops: Vec<Op>,
    /// Partitions in key order.
    pub partitions: Vec<PartitionReport>,
    /// Time spent in pairing, partitioning and search (not parsing).
    pub elapsed: Duration,
    /// Largest memo cache of any partition, bytes (own accounting).
    pub cache_bytes_peak: u64,
}

impl Report {
    pub fn partition_counts(&self) -> (usize, usize, usize) {
        let count = |v| self.partitions.iter().filter(|p| p.verdict == v).count();
        (
            count(Verdict::Linearizable),
            count(Verdict::NotLinearizable),
            count(Verdict::Unknown),
        )
    }
}

/// A prepared partition: a model and its compiled operations.
enum Prepared {
    Register(RegisterModel, Vec<SearchOp<crate::model::RegInput>>),
    KeyedRegister(
        Keyed<RegisterModel>,
        Vec<SearchOp<(u32, crate::model::RegInput)>>,
    ),
    Mutex(MutexModel, Vec<SearchOp<crate::model::MutexInput>>),
    KeyedMutex(
        Keyed<MutexModel>,
        Vec<SearchOp<(u32, crate::model::MutexInput)>>,
    ),
    Multi(MultiRegisterModel, Vec<SearchOp<Vec<crate::model::Micro>>>),
}

struct Partition {
    label: String,
    /// All operations of the partition (global indices).
    ops: Vec<usize>,
    /// Global index of each search op.
    search_ids: Vec<usize>,
    prepared: Prepared,
}

/// Checks `history` against `model`. Errors are structural (a process invoking twice, an
/// operation the model does not know, a malformed value), with the source line.
pub fn check(history: &History, model: Model, options: &Options) -> Result<Report, HistoryError> {
    let started = Instant::now();
    let ops = pair_operations(history)?;
    let semantics = Semantics {
        initial: options.initial.clone(),
        strict_nil: options.strict_nil,
    };
    let mut partitions = prepare(&ops, model, options, &semantics)?;
    assert!(partitions.iter().all(|p| p.search_ids.len() <= p.ops.len()));
    let budget = Budget {
        deadline: options.time_limit.map(|t| started + t),
        steps_max: options.steps_max,
        memory_bytes_max: options.memory_bytes_max,
        memory_bytes_used: AtomicU64::new(0),
        memory_exceeded: AtomicBool::new(false),
    };
    let threads = options
        .threads
        .clamp(1, THREADS_MAX)
        .min(partitions.len().max(1));
    let results: Vec<PartitionReport> = if threads <= 1 {
        partitions
            .drain(..)
            .map(|p| run_partition(p, &ops, &budget))
            .collect()
    } else {
        // Largest partitions first; results land in their original slots (deterministic order).
        let mut schedule: Vec<usize> = (0..partitions.len()).collect();
        schedule.sort_by_key(|&i| std::cmp::Reverse(partitions[i].search_ids.len()));
        let work: Vec<Mutex<Option<Partition>>> =
            partitions.drain(..).map(|p| Mutex::new(Some(p))).collect();
        let slots: Vec<Mutex<Option<PartitionReport>>> =
            work.iter().map(|_| Mutex::new(None)).collect();
        let cursor = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let at = cursor.fetch_add(1, Ordering::Relaxed);
                    let Some(&index) = schedule.get(at) else {
                        break;
                    };
                    let partition = work[index]
                        .lock()
                        .expect("work lock")
                        .take()
                        .expect("taken once");
                    let report = run_partition(partition, &ops, &budget);
                    *slots[index].lock().expect("slot lock") = Some(report);
                });
            }
        });
        slots
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .expect("slot lock")
                    .expect("every partition ran")
            })
            .collect()
    };
    let verdict = results
        .iter()
        .fold(Verdict::Linearizable, |v, p| v.combine(p.verdict));
    let cache_bytes_peak = results.iter().map(|p| p.cache_bytes).max().unwrap_or(0);
    Ok(Report {
        verdict,
        model,
        ops,
        partitions: results,
        elapsed: started.elapsed(),
        cache_bytes_peak,
    })
}

fn op_error(op: &Op, message: String) -> HistoryError {
    HistoryError {
        line: op.line,
        message: format!("{message} ({})", op.describe()),
    }
}

fn search_op<I>(op: &Op, input: I) -> SearchOp<I> {
    let return_at = if op.status == OpStatus::Ok {
        op.complete_index
    } else {
        None
    };
    SearchOp {
        input,
        call_at: op.invoke_index,
        return_at,
    }
}

fn prepare(
    ops: &[Op],
    model: Model,
    options: &Options,
    semantics: &Semantics,
) -> Result<Vec<Partition>, HistoryError> {
    // Group operations: per key, or per connected group of keys for transactions.
    let groups: BTreeMap<String, Vec<usize>> = match model {
        Model::MultiRegister if options.partition => group_txns(ops)?,
        _ if options.partition => {
            let mut by_key: BTreeMap<Option<Value>, Vec<usize>> = BTreeMap::new();
            for (i, op) in ops.iter().enumerate() {
                by_key.entry(op.key.clone()).or_default().push(i);
            }
            by_key
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.map(|k| k.to_string()).unwrap_or_else(|| "*".to_string()),
                        v,
                    )
                })
                .collect()
        }
        _ => BTreeMap::from([("*".to_string(), (0..ops.len()).collect())]),
    };
    let mut partitions = Vec::with_capacity(groups.len());
    for (label, members) in groups {
        let live: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| ops[i].status != OpStatus::Fail)
            .collect();
        let mut keys: BTreeMap<Option<Value>, u32> = BTreeMap::new();
        for &i in &live {
            let next = keys.len() as u32;
            keys.entry(ops[i].key.clone()).or_insert(next);
        }
        let keyed = keys.len() > 1 && model != Model::MultiRegister;
        let mut search_ids = Vec::with_capacity(live.len());
        let prepared = match model {
            Model::Register | Model::CasRegister | Model::Kv => {
                let mut reg = RegisterModel::new(model, semantics);
                let mut sops = Vec::with_capacity(live.len());
                for &i in &live {
                    let input = reg
                        .compile(model, &ops[i], semantics)
                        .map_err(|m| op_error(&ops[i], m))?;
                    if let Some(input) = input {
                        let key = keys[&ops[i].key];
                        search_ids.push(i);
                        sops.push(search_op(&ops[i], (key, input)));
                    }
                }
                let (sops, kept) = prune_unobserved_info_writes(sops, search_ids);
                search_ids = kept;
                reg.lazy_info = !sops
                    .iter()
                    .any(|s| matches!(s.input.1, RegInput::Append(_)));
                if keyed {
                    let key_values = key_list(&keys);
                    Prepared::KeyedRegister(
                        Keyed {
                            inner: reg,
                            keys: key_values,
                        },
                        sops,
                    )
                } else {
                    let sops = sops.into_iter().map(|s| SearchOp {
                        input: s.input.1,
                        call_at: s.call_at,
                        return_at: s.return_at,
                    });
                    Prepared::Register(reg, sops.collect())
                }
            }
            Model::Mutex => {
                let mut sops = Vec::with_capacity(live.len());
                for &i in &live {
                    if let Some(input) =
                        MutexModel::compile(&ops[i]).map_err(|m| op_error(&ops[i], m))?
                    {
                        search_ids.push(i);
                        sops.push(search_op(&ops[i], (keys[&ops[i].key], input)));
                    }
                }
                if keyed {
                    Prepared::KeyedMutex(
                        Keyed {
                            inner: MutexModel,
                            keys: key_list(&keys),
                        },
                        sops,
                    )
                } else {
                    let sops = sops.into_iter().map(|s| SearchOp {
                        input: s.input.1,
                        call_at: s.call_at,
                        return_at: s.return_at,
                    });
                    Prepared::Mutex(MutexModel, sops.collect())
                }
            }
            Model::MultiRegister => {
                let mut multi = MultiRegisterModel::new(semantics);
                let mut sops = Vec::with_capacity(live.len());
                for &i in &live {
                    if let Some(input) = multi
                        .compile(&ops[i], semantics)
                        .map_err(|m| op_error(&ops[i], m))?
                    {
                        search_ids.push(i);
                        sops.push(search_op(&ops[i], input));
                    }
                }
                Prepared::Multi(multi, sops)
            }
        };
        partitions.push(Partition {
            label,
            ops: members,
            search_ids,
            prepared,
        });
    }
    Ok(partitions)
}

/// Drops `info` writes (and cas) whose written value no operation ever requires: no read
/// returns it and no cas expects it. Such an operation may as well never have happened: in
/// any linearization that applies it, the operations between it and the next write can only
/// be writes (a read or cas there would require its value), so removing it leaves a valid
/// linearization. Likewise an ok write of such a value: all such values are one state
/// ([`UNOBSERVED`]) to the search. Appends read the state, so partitions with appends are left alone. This
/// matters for histories with many timeouts: every pending info op doubles the search space.
fn prune_unobserved_info_writes(
    sops: Vec<SearchOp<(u32, RegInput)>>,
    ids: Vec<usize>,
) -> (Vec<SearchOp<(u32, RegInput)>>, Vec<usize>) {
    assert_eq!(sops.len(), ids.len());
    if sops
        .iter()
        .any(|s| matches!(s.input.1, RegInput::Append(_)))
    {
        return (sops, ids);
    }
    let mut required: HashSet<(u32, u32)> = HashSet::new();
    for sop in &sops {
        match sop.input {
            (key, RegInput::Read(v)) | (key, RegInput::Cas(v, _)) => {
                required.insert((key, v));
            }
            _ => {}
        }
    }
    let mut kept_sops = Vec::with_capacity(sops.len());
    let mut kept_ids = Vec::with_capacity(ids.len());
    for (mut sop, id) in sops.into_iter().zip(ids) {
        let written = match sop.input {
            (key, RegInput::Write(v)) | (key, RegInput::Cas(_, v)) => Some((key, v)),
            _ => None,
        };
        let unobserved = written.is_some_and(|w| !required.contains(&w));
        if sop.return_at.is_none() && unobserved {
            continue;
        }
        // Values nobody requires are indistinguishable to every later operation: one state.
        if unobserved {
            sop.input.1 = match sop.input.1 {
                RegInput::Write(_) => RegInput::Write(UNOBSERVED),
                RegInput::Cas(e, _) => RegInput::Cas(e, UNOBSERVED),
                other => other,
            };
        }
        kept_sops.push(sop);
        kept_ids.push(id);
    }
    assert_eq!(kept_sops.len(), kept_ids.len());
    (kept_sops, kept_ids)
}

fn key_list(keys: &BTreeMap<Option<Value>, u32>) -> Vec<Value> {
    let mut list = vec![Value::Nil; keys.len()];
    for (k, &i) in keys {
        list[i as usize] = k.clone().unwrap_or(Value::Nil);
    }
    list
}

/// Transactions touching a common key are one partition (union-find over keys).
fn group_txns(ops: &[Op]) -> Result<BTreeMap<String, Vec<usize>>, HistoryError> {
    let mut key_ids: BTreeMap<Value, usize> = BTreeMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut op_keys = Vec::with_capacity(ops.len());
    for op in ops {
        let keys = MultiRegisterModel::txn_keys(op).map_err(|m| op_error(op, m))?;
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            let next = parent.len();
            let id = *key_ids.entry(key).or_insert(next);
            if id == next {
                parent.push(next);
            }
            ids.push(id);
        }
        for pair in ids.windows(2) {
            let (a, b) = (find(&mut parent, pair[0]), find(&mut parent, pair[1]));
            parent[a.max(b)] = a.min(b);
        }
        op_keys.push(ids);
    }
    let mut names: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (key, &id) in &key_ids {
        let root = find(&mut parent, id);
        names.entry(root).or_default().push(key.to_string());
    }
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, ids) in op_keys.iter().enumerate() {
        let label = match ids.first() {
            Some(&id) => names[&find(&mut parent, id)].join(" "),
            None => "*".to_string(),
        };
        groups.entry(label).or_default().push(i);
    }
    Ok(groups)
}

fn run_partition(partition: Partition, ops: &[Op], budget: &Budget) -> PartitionReport {
    let started = Instant::now();
    let Partition {
        label,
        ops: members,
        search_ids,
        prepared,
    } = partition;
    let mut report = match prepared {
        Prepared::Register(mut m, s) => run_model(&mut m, &s, &search_ids, ops, budget),
        Prepared::KeyedRegister(mut m, s) => run_model(&mut m, &s, &search_ids, ops, budget),
        Prepared::Mutex(mut m, s) => run_model(&mut m, &s, &search_ids, ops, budget),
        Prepared::KeyedMutex(mut m, s) => run_model(&mut m, &s, &search_ids, ops, budget),
        Prepared::Multi(mut m, s) => run_model(&mut m, &s, &search_ids, ops, budget),
    };
    report.label = label;
    report.ops = members;
    report.elapsed = started.elapsed();
    report
}

fn run_model<M: SeqModel>(
    model: &mut M,
    sops: &[SearchOp<M::Input>],
    ids: &[usize],
    ops: &[Op],
    budget: &Budget,
) -> PartitionReport {
    assert_eq!(sops.len(), ids.len());
    let (outcome, stats) = search(model, sops, budget);
    let global = |local: &[u32]| {
        local
            .iter()
            .map(|&l| ids[l as usize])
            .collect::<Vec<usize>>()
    };
    let (verdict, reason, linearization, explanation) = match outcome {
        Outcome::Linearizable { order } => (Verdict::Linearizable, None, global(&order), None),
        Outcome::Unknown { reason, prefix } => {
            (Verdict::Unknown, Some(reason), global(&prefix), None)
        }
        Outcome::NotLinearizable { prefix, blocking } => {
            let explanation = explain(model, sops, ids, ops, &prefix, blocking);
            (
                Verdict::NotLinearizable,
                None,
                global(&prefix),
                Some(explanation),
            )
        }
    };
    PartitionReport {
        label: String::new(),
        ops: Vec::new(),
        verdict,
        reason,
        linearization,
        explanation,
        steps: stats.steps,
        cache_entries: stats.cache_entries,
        cache_bytes: stats.cache_bytes,
        elapsed: Duration::ZERO,
    }
}

/// Replays the longest prefix and says, for each operation pending at the blocking return,
/// why it cannot come next.
fn explain<M: SeqModel>(
    model: &mut M,
    sops: &[SearchOp<M::Input>],
    ids: &[usize],
    ops: &[Op],
    prefix: &[u32],
    blocking: u32,
) -> Explanation {
    let mut state = model.init();
    let mut steps = Vec::with_capacity(prefix.len());
    let mut done = vec![false; sops.len()];
    for &local in prefix {
        state = model
            .step(&state, &sops[local as usize].input)
            .expect("the prefix replays");
        done[local as usize] = true;
        steps.push(Step {
            op: ids[local as usize],
            state_after: model.show(&state),
        });
    }
    assert!(
        !done[blocking as usize],
        "the blocking operation is not in the prefix"
    );
    let horizon = sops[blocking as usize]
        .return_at
        .expect("a blocking operation has a return");
    let mut stuck = Vec::new();
    for (local, sop) in sops.iter().enumerate() {
        if done[local] || sop.call_at > horizon {
            continue;
        }
        if stuck.len() >= STUCK_LISTED_MAX && local != blocking as usize {
            continue;
        }
        let reason = match model.step(&state, &sop.input) {
            None => format!("illegal in state {}", model.show(&state)),
            Some(next) => format!(
                "legal (-> {}), but every order that follows dead-ends",
                model.show(&next)
            ),
        };
        stuck.push(Stuck {
            op: ids[local],
            reason,
        });
    }
    let _ = ops;
    Explanation {
        prefix: steps,
        state: model.show(&state),
        blocking_op: ids[blocking as usize],
        stuck,
    }
}
