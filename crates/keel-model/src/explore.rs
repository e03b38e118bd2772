//! Breadth-first exploration with a visited set of state fingerprints. Only the current and the
//! next layer are kept as full states; every visited state keeps a parent link and its action,
//! so the shortest path to a violation can be rebuilt and replayed. The frontier costs a few
//! kilobytes per state; for large bounds, `Bounds::dfs` explores the same states depth-first
//! with a few bytes per state.

use crate::action::{apply, credit, enabled, Action, Broken};
use crate::check::check_state;
use crate::script::parse_action;
use crate::state::{boot, bootstrap_disk, time_at, Budget, Host, MonoClock, State};
use crate::Bounds;
use keel_core::Membership;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Successor states generated (including revisits).
    pub states_explored: u64,
    pub states_unique: u64,
    /// Deepest layer explored, counted from where the script (prefix) ended.
    pub depth_max: usize,
    /// Actions of the script (prefix) run before the search.
    pub script_actions: usize,
    pub elapsed_s: f64,
    /// Why the search stopped short of exhausting the bounds, if it did.
    pub truncated: Option<&'static str>,
    /// "Sometimes" properties reached (bits, see `crate::REACHED_*`).
    pub reached: u8,
}

#[derive(Debug)]
pub enum Outcome {
    Clean,
    Violation {
        property: String,
        detail: String,
        /// The shortest path: each action with the node summaries after it.
        trace: Vec<(Action, Vec<String>)>,
    },
}

thread_local! {
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// A panic hook that stays quiet while this thread explores (a core assertion is reported as a
/// violation, not as a crash), and otherwise defers to the previous hook.
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

pub fn initial_state(b: &Bounds) -> Result<State, String> {
    let membership = Membership::new(b.initial_voters());
    let mut hosts = Vec::new();
    for id in b.node_ids() {
        let disk = bootstrap_disk(&membership);
        let node = boot(b.node_config(id), &disk, time_at(0, 0))?;
        hosts.push(Host {
            node,
            disk,
            pending: VecDeque::new(),
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            wall_offset_ms: 0,
            mono: MonoClock::default(),
        });
    }
    Ok(State {
        hosts,
        net: Vec::new(),
        now_ms: 0,
        budget: Budget {
            crashes: b.crashes,
            proposals: b.proposals,
            reads: b.reads,
            conf_changes: b.conf_changes,
            transfers: b.transfers,
            snapshots: b.snapshots,
            drops: b.drops,
            duplicates: b.duplicates,
            ticks: b.ticks,
            clock_skews: b.clock_skews,
            clock_drifts: b.clock_drifts,
        },
        next_read_id: 0,
        next_value: 0,
        leaders: BTreeMap::new(),
        committed: BTreeMap::new(),
        acked_max: 0,
        reached: 0,
    })
}

/// One step: apply the action and check every property; a core panic is a violation.
fn step(s: &State, a: &Action, b: &Bounds) -> (State, Result<(), Broken>) {
    let mut next = s.clone();
    QUIET_PANICS.with(|q| q.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| {
        apply(&mut next, a, b)?;
        check_state(s, &mut next)
    }));
    QUIET_PANICS.with(|q| q.set(false));
    let r = match r {
        Ok(r) => r,
        Err(p) => Err(Broken {
            property: "assertion".into(),
            detail: panic_text(p),
        }),
    };
    (next, r)
}

/// Within bounds: states beyond them are checked but not expanded.
fn within_bounds(s: &State, b: &Bounds) -> bool {
    s.hosts
        .iter()
        .all(|h| h.node.term() <= b.term_max && h.node.last_index() <= b.log_entries_max)
}

/// Runs the search. `progress` is called about once a second with the stats so far.
pub fn explore(b: &Bounds, progress: &mut dyn FnMut(&Stats)) -> Result<(Outcome, Stats), String> {
    b.validate()?;
    install_quiet_hook();
    let start = Instant::now();
    let mut stats = Stats::default();
    let init = initial_state(b)?;
    // The script (a named prefix or a replayed trace): real actions, checked like explored ones.
    let mut root = init.clone();
    let mut script_path: Vec<Action> = Vec::new();
    for (n, line) in b.script.iter().enumerate() {
        let a = parse_action(line, &root).map_err(|e| format!("script line {}: {e}", n + 1))?;
        credit(&mut root, &a);
        let (next, r) = step(&root, &a, b);
        script_path.push(a);
        stats.script_actions = script_path.len();
        if let Err(broken) = r {
            stats.elapsed_s = start.elapsed().as_secs_f64();
            let trace = replay(&init, &script_path, b);
            return Ok((
                Outcome::Violation {
                    property: broken.property,
                    detail: broken.detail,
                    trace,
                },
                stats,
            ));
        }
        root = next;
    }
    stats.reached |= root.reached;
    if b.dfs {
        return Ok(dfs(b, &init, root, &script_path, stats, start, progress));
    }
    let mut visited: HashSet<u64> = HashSet::new();
    visited.insert(root.fingerprint(b.symmetry));
    // Parent links: (parent record, action). Record 0 is the initial state.
    let mut records: Vec<(u32, Option<Action>)> = vec![(0, None)];
    let mut layer: Vec<(State, u32)> = vec![(root, 0)];
    stats.states_unique = 1;
    let mut last_report = Instant::now();
    let mut depth = 0;
    'search: while !layer.is_empty() && depth < b.depth_max {
        depth += 1;
        let mut next_layer = Vec::new();
        for (s, rec) in &layer {
            for a in enabled(s, b) {
                let (next, r) = step(s, &a, b);
                stats.states_explored += 1;
                stats.reached |= next.reached;
                if let Err(broken) = r {
                    records.push((*rec, Some(a)));
                    stats.depth_max = depth;
                    stats.elapsed_s = start.elapsed().as_secs_f64();
                    let mut path = script_path.clone();
                    path.extend(path_to(&records, records.len() as u32 - 1));
                    let trace = replay(&init, &path, b);
                    return Ok((
                        Outcome::Violation {
                            property: broken.property,
                            detail: broken.detail,
                            trace,
                        },
                        stats,
                    ));
                }
                if !visited.insert(next.fingerprint(b.symmetry)) {
                    continue;
                }
                stats.states_unique += 1;
                stats.depth_max = depth;
                records.push((*rec, Some(a)));
                if within_bounds(&next, b) {
                    next_layer.push((next, records.len() as u32 - 1));
                }
                if stats.states_unique as usize >= b.states_max {
                    stats.truncated = Some("states-max");
                    break 'search;
                }
            }
            if last_report.elapsed().as_secs() >= 1 {
                last_report = Instant::now();
                stats.elapsed_s = start.elapsed().as_secs_f64();
                progress(&stats);
                if start.elapsed().as_secs() >= b.time_limit_s {
                    stats.truncated = Some("time-limit");
                    break 'search;
                }
            }
        }
        layer = next_layer;
    }
    if stats.truncated.is_none() && !layer.is_empty() {
        stats.truncated = Some("depth");
    }
    stats.elapsed_s = start.elapsed().as_secs_f64();
    Ok((Outcome::Clean, stats))
}

/// One level of the depth-first search: a state, its enabled actions, the next one to try.
struct Frame {
    state: State,
    actions: Vec<Action>,
    next: usize,
    /// The action that led here (None at the root).
    via: Option<Action>,
}

/// Depth-first search to the depth bound, exhaustive like the BFS but keeping only the current
/// path in memory plus, per visited state, the shallowest depth it was reached at (a state
/// reached again at a shallower depth is expanded again, so everything within the depth bound
/// is explored). About 16 bytes per state instead of the BFS frontier's few kilobytes; the
/// counterexample found is a real path but not necessarily a shortest one.
fn dfs(
    b: &Bounds,
    init: &State,
    root: State,
    script_path: &[Action],
    mut stats: Stats,
    start: Instant,
    progress: &mut dyn FnMut(&Stats),
) -> (Outcome, Stats) {
    let mut shallowest: HashMap<u64, u16> = HashMap::new();
    shallowest.insert(root.fingerprint(b.symmetry), 0);
    stats.states_unique = 1;
    let actions = if b.depth_max > 0 && within_bounds(&root, b) {
        enabled(&root, b)
    } else {
        Vec::new()
    };
    let mut stack = vec![Frame {
        state: root,
        actions,
        next: 0,
        via: None,
    }];
    let mut last_report = Instant::now();
    let mut depth_limited = false;
    while !stack.is_empty() {
        let depth = stack.len();
        let top = stack.last_mut().expect("non-empty");
        if top.next == top.actions.len() {
            stack.pop();
            continue;
        }
        let a = top.actions[top.next].clone();
        top.next += 1;
        let (next, r) = step(&top.state, &a, b);
        stats.states_explored += 1;
        stats.reached |= next.reached;
        stats.depth_max = stats.depth_max.max(depth);
        if let Err(broken) = r {
            let mut path = script_path.to_vec();
            path.extend(stack.iter().filter_map(|f| f.via.clone()));
            path.push(a);
            stats.elapsed_s = start.elapsed().as_secs_f64();
            let trace = replay(init, &path, b);
            let outcome = Outcome::Violation {
                property: broken.property,
                detail: broken.detail,
                trace,
            };
            return (outcome, stats);
        }
        let key = next.fingerprint(b.symmetry);
        let depth_u16 = depth.min(u16::MAX as usize) as u16;
        match shallowest.get_mut(&key) {
            Some(d) if *d <= depth_u16 => continue,
            Some(d) => *d = depth_u16,
            None => {
                shallowest.insert(key, depth_u16);
                stats.states_unique += 1;
            }
        }
        if within_bounds(&next, b) {
            if depth < b.depth_max {
                let actions = enabled(&next, b);
                stack.push(Frame {
                    state: next,
                    actions,
                    next: 0,
                    via: Some(a),
                });
            } else {
                depth_limited = true;
            }
        }
        if stats.states_unique as usize >= b.states_max {
            stats.truncated = Some("states-max");
            break;
        }
        if stats.states_explored.is_multiple_of(4096) && last_report.elapsed().as_secs() >= 1 {
            last_report = Instant::now();
            stats.elapsed_s = start.elapsed().as_secs_f64();
            progress(&stats);
            if start.elapsed().as_secs() >= b.time_limit_s {
                stats.truncated = Some("time-limit");
                break;
            }
        }
    }
    if stats.truncated.is_none() && depth_limited {
        stats.truncated = Some("depth");
    }
    stats.elapsed_s = start.elapsed().as_secs_f64();
    (Outcome::Clean, stats)
}

fn path_to(records: &[(u32, Option<Action>)], mut rec: u32) -> Vec<Action> {
    let mut path = Vec::new();
    while let (parent, Some(a)) = &records[rec as usize] {
        path.push(a.clone());
        rec = *parent;
    }
    path.reverse();
    path
}

/// Re-executes a path from the initial state, recording node summaries after each action.
/// Budgets are credited back (scripted actions cost none; explored ones fit theirs anyway).
fn replay(init: &State, path: &[Action], b: &Bounds) -> Vec<(Action, Vec<String>)> {
    let mut s = init.clone();
    let mut out = Vec::new();
    for a in path {
        credit(&mut s, a);
        let (next, _) = step(&s, a, b);
        s = next;
        let mut lines: Vec<String> = s
            .hosts
            .iter()
            .map(|h| format!("{} pending {}", h.node.summary(), h.pending.len()))
            .collect();
        lines.push(format!(
            "time {} ms, wall offsets {:?} ms, in flight {}, acked-max {}",
            s.now_ms,
            s.hosts.iter().map(|h| h.wall_offset_ms).collect::<Vec<_>>(),
            s.net.len(),
            s.acked_max
        ));
        out.push((a.clone(), lines));
    }
    out
}
