//! `keel check`: checks histories for linearizability (see docs/checker.md).
//!
//! Exit codes: 0 every file linearizable; 1 any file not linearizable; 2 any unknown (budget
//! exhausted) and none not linearizable; 3 usage, I/O or parse errors (a malformed line is
//! reported with its line number). Clap's own usage errors exit 2 (set by `main`).

use keel_check::gen::{self, Flavor, GenConfig};
use keel_check::{check, html, parse_history, Format, Model, Options, Report, Value, Verdict};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Files found under one directory argument, at most.
const DIRECTORY_FILES_MAX: usize = 100_000;
/// Partitions listed per file in text output (all of them with --verbose or --json).
const PARTITIONS_LISTED_MAX: usize = 10;
/// Prefix operations shown in a text explanation (the last ones).
const PREFIX_SHOWN_MAX: usize = 8;
/// Pending operations shown in a text explanation.
const STUCK_SHOWN_MAX: usize = 12;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// History files or directories (searched recursively for .edn, .jsonl, .json, .log, .txt).
    pub paths: Vec<PathBuf>,
    /// register | cas-register | kv | mutex | multi-register. Default: inferred from the
    /// operations (txn => multi-register, acquire => mutex, get/put => kv, cas => cas-register).
    #[arg(long)]
    pub model: Option<String>,
    /// keel | edn | jepsen-log. Default: detected per file.
    #[arg(long)]
    pub format: Option<String>,
    /// Initial value of every register / key (an EDN scalar: 0, "s", :k; bare text is a string).
    #[arg(long)]
    pub initial: Option<String>,
    /// An ok read of nil means "absent" (default: it constrains nothing, as in Jepsen/Knossos).
    #[arg(long)]
    pub strict_nil: bool,
    /// Check the whole history as one object (no per-key split).
    #[arg(long)]
    pub no_partition: bool,
    /// Threads for partitions of one file.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Time budget per file, milliseconds (exceeded => unknown).
    #[arg(long, default_value_t = 300_000)]
    pub timeout_ms: u64,
    /// Memory budget for the search caches, MiB (exceeded => unknown).
    #[arg(long, default_value_t = 2048)]
    pub memory_mb: u64,
    /// Deterministic budget: search steps per partition (exceeded => unknown).
    #[arg(long)]
    pub steps_max: Option<u64>,
    /// One JSON object per file, then a totals object.
    #[arg(long)]
    pub json: bool,
    /// List every partition's verdict.
    #[arg(long)]
    pub verbose: bool,
    /// Write a self-contained HTML page drawing the checked histories.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Benchmark mode: check the given files repeatedly and generated hard cases; print timings.
    #[arg(long)]
    pub bench: bool,
    /// Iterations per benchmark case (best and median are reported).
    #[arg(long, default_value_t = 5)]
    pub bench_iterations: u32,
}

pub fn run(args: Args) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("keel check: {message}");
            3
        }
    }
}

fn run_inner(args: Args) -> Result<i32, String> {
    let model = match &args.model {
        None => None,
        Some(name) => Some(Model::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
            format!(
                "unknown model {name:?} (expected one of {})",
                names.join(", ")
            )
        })?),
    };
    let format = match &args.format {
        None => None,
        Some(name) => Some(Format::parse(name).ok_or_else(|| {
            format!("unknown format {name:?} (expected keel, edn or jepsen-log)")
        })?),
    };
    if args.jobs == 0 || args.jobs > keel_check::check::THREADS_MAX {
        return Err(format!(
            "--jobs must be 1..={}",
            keel_check::check::THREADS_MAX
        ));
    }
    let options = Options {
        initial: args.initial.as_deref().map(parse_initial),
        strict_nil: args.strict_nil,
        partition: !args.no_partition,
        threads: args.jobs,
        time_limit: Some(Duration::from_millis(args.timeout_ms)),
        steps_max: args.steps_max,
        memory_bytes_max: args.memory_mb.saturating_mul(1024 * 1024),
    };
    if args.bench {
        return bench(&args, model, format, &options);
    }
    if args.paths.is_empty() {
        return Err("no history files given (usage: keel check [--model M] FILE...)".into());
    }
    let files = expand(&args.paths)?;
    let mut totals = Totals::default();
    let mut reports: Vec<(String, Report)> = Vec::new();
    for file in &files {
        let (report, format_used) = load_and_check(file, model, format, &options)?;
        totals.add(&report);
        if args.json {
            println!("{}", report_json(file, &report, format_used));
        } else {
            print_report(file, &report, format_used, args.verbose);
        }
        if args.html.is_some() {
            reports.push((file.display().to_string(), report));
        }
    }
    totals.print(args.json);
    if let Some(path) = &args.html {
        let pairs: Vec<(String, &Report)> = reports.iter().map(|(t, r)| (t.clone(), r)).collect();
        std::fs::write(path, html::render(&pairs))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !args.json {
            println!("html: {}", path.display());
        }
    }
    Ok(totals.exit_code())
}

fn parse_initial(text: &str) -> Value {
    match parse_history(
        &format!("[{{:process 0 :type :invoke :f :x :value {text}}}]"),
        Some(Format::Edn),
    ) {
        Ok((history, _)) if history.len() == 1 => match &history.events[0].value {
            Value::Str(s) if !text.trim_start().starts_with('"') => Value::Str(s.clone()),
            v => v.clone(),
        },
        _ => Value::Str(text.to_string()),
    }
}

/// Infers the model from the operation names.
fn infer_model(history: &keel_check::History) -> Model {
    let has = |names: &[&str]| history.events.iter().any(|e| names.contains(&e.f.as_str()));
    if has(&["txn"]) {
        Model::MultiRegister
    } else if has(&["acquire", "release", "lock", "unlock"]) {
        Model::Mutex
    } else if has(&["get", "put", "append", "delete"]) {
        Model::Kv
    } else if has(&["cas"]) {
        Model::CasRegister
    } else {
        Model::Register
    }
}

fn load_and_check(
    file: &Path,
    model: Option<Model>,
    format: Option<Format>,
    options: &Options,
) -> Result<(Report, Format), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (history, format_used) =
        parse_history(&text, format).map_err(|e| format!("{}: {e}", file.display()))?;
    let model = model.unwrap_or_else(|| infer_model(&history));
    let report = check(&history, model, options).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((report, format_used))
}

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| {
            ["edn", "jsonl", "json", "log", "txt"]
                .iter()
                .any(|x| e == *x)
        }) {
            if out.len() >= DIRECTORY_FILES_MAX {
                return Err(format!(
                    "{}: more than {DIRECTORY_FILES_MAX} files",
                    dir.display()
                ));
            }
            out.push(path);
        }
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    files: usize,
    linearizable: usize,
    not_linearizable: usize,
    unknown: usize,
    checker_time: Duration,
}

impl Totals {
    fn add(&mut self, report: &Report) {
        self.files += 1;
        self.checker_time += report.elapsed;
        match report.verdict {
            Verdict::Linearizable => self.linearizable += 1,
            Verdict::NotLinearizable => self.not_linearizable += 1,
            Verdict::Unknown => self.unknown += 1,
        }
    }

    fn exit_code(&self) -> i32 {
        if self.not_linearizable > 0 {
            1
        } else if self.unknown > 0 {
            2
        } else {
            0
        }
    }

    fn print(&self, json: bool) {
        let peak_rss = peak_rss_bytes();
        if json {
            let value = serde_json::json!({"totals": {
                "files": self.files,
                "linearizable": self.linearizable,
                "not_linearizable": self.not_linearizable,
                "unknown": self.unknown,
                "checker_ms": self.checker_time.as_secs_f64() * 1e3,
                "peak_rss_bytes": peak_rss,
            }});
            println!("{value}");
        } else {
            println!(
                "total: {} files: {} linearizable, {} not linearizable, {} unknown; checker time {:.1} ms (parsing excluded); peak RSS {}",
                self.files,
                self.linearizable,
                self.not_linearizable,
                self.unknown,
                self.checker_time.as_secs_f64() * 1e3,
                peak_rss.map(mib).unwrap_or_else(|| "n/a".into())
            );
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// VmHWM from /proc/self/status (Linux), bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn print_report(file: &Path, report: &Report, format: Format, verbose: bool) {
    let (good, bad, unknown) = report.partition_counts();
    println!(
        "{}: {} ({}, {}, {} ops, {} partitions: {good} linearizable, {bad} not, {unknown} unknown; {:.2} ms; memo peak {})",
        file.display(),
        report.verdict.name(),
        report.model,
        format,
        report.ops.len(),
        report.partitions.len(),
        report.elapsed.as_secs_f64() * 1e3,
        mib(report.cache_bytes_peak)
    );
    let mut listed = 0;
    for partition in &report.partitions {
        let show = verbose
            || (partition.verdict != Verdict::Linearizable && listed < PARTITIONS_LISTED_MAX);
        if !show {
            continue;
        }
        listed += 1;
        println!(
            "  partition {}: {} ({} ops, {} steps, {:.2} ms{})",
            partition.label,
            partition.verdict.name(),
            partition.ops.len(),
            partition.steps,
            partition.elapsed.as_secs_f64() * 1e3,
            partition
                .reason
                .as_ref()
                .map(|r| format!("; {r}"))
                .unwrap_or_default()
        );
        let Some(e) = &partition.explanation else {
            continue;
        };
        let ops = &report.ops;
        println!(
            "    longest linearizable prefix: {} operations, ending in state {}",
            e.prefix.len(),
            e.state
        );
        let skip = e.prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
        if skip > 0 {
            println!("      ... {skip} earlier");
        }
        for step in &e.prefix[skip..] {
            println!(
                "      {} (line {}) => {}",
                ops[step.op].describe(),
                ops[step.op].line,
                step.state_after
            );
        }
        let blocking = &ops[e.blocking_op];
        println!(
            "    cannot linearize: {} (line {}) must take effect before it returns, but no pending operation can come next:",
            blocking.describe(),
            blocking.line
        );
        for stuck in e.stuck.iter().take(STUCK_SHOWN_MAX) {
            println!(
                "      {} (line {}): {}",
                ops[stuck.op].describe(),
                ops[stuck.op].line,
                stuck.reason
            );
        }
        if e.stuck.len() > STUCK_SHOWN_MAX {
            println!("      ... {} more", e.stuck.len() - STUCK_SHOWN_MAX);
        }
    }
}

fn report_json(file: &Path, report: &Report, format: Format) -> serde_json::Value {
    let ops = &report.ops;
    let op_json = |i: usize| serde_json::json!({"op": ops[i].describe(), "line": ops[i].line, "process": ops[i].process});
    let partitions: Vec<serde_json::Value> = report
        .partitions
        .iter()
        .map(|p| {
            let explanation = p.explanation.as_ref().map(|e| {
                serde_json::json!({
                    "prefix": e.prefix.iter().map(|s| {
                        let mut v = op_json(s.op);
                        v["state_after"] = serde_json::Value::String(s.state_after.clone());
                        v
                    }).collect::<Vec<_>>(),
                    "state": e.state,
                    "blocking": op_json(e.blocking_op),
                    "stuck": e.stuck.iter().map(|s| {
                        let mut v = op_json(s.op);
                        v["reason"] = serde_json::Value::String(s.reason.clone());
                        v
                    }).collect::<Vec<_>>(),
                })
            });
            serde_json::json!({
                "key": p.label,
                "verdict": p.verdict.name(),
                "ops": p.ops.len(),
                "steps": p.steps,
                "cache_entries": p.cache_entries,
                "cache_bytes": p.cache_bytes,
                "elapsed_ms": p.elapsed.as_secs_f64() * 1e3,
                "reason": p.reason,
                "explanation": explanation,
            })
        })
        .collect();
    serde_json::json!({
        "file": file.display().to_string(),
        "verdict": report.verdict.name(),
        "model": report.model.name(),
        "format": format.name(),
        "ops": report.ops.len(),
        "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
        "cache_bytes_peak": report.cache_bytes_peak,
        "partitions": partitions,
    })
}

/// Times `f` `iterations` times; returns (best, median).
fn time_it(
    iterations: u32,
    mut f: impl FnMut() -> Verdict,
    expect: Option<Verdict>,
) -> Result<(Duration, Duration), String> {
    let mut times = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations.max(1) {
        let started = Instant::now();
        let verdict = f();
        times.push(started.elapsed());
        if let Some(expect) = expect.filter(|e| *e != verdict) {
            return Err(format!(
                "benchmark case gave {} instead of {}",
                verdict.name(),
                expect.name()
            ));
        }
    }
    times.sort();
    Ok((times[0], times[times.len() / 2]))
}

fn bench(
    args: &Args,
    model: Option<Model>,
    format: Option<Format>,
    options: &Options,
) -> Result<i32, String> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if !args.paths.is_empty() {
        let files = expand(&args.paths)?;
        let mut histories = Vec::with_capacity(files.len());
        for file in &files {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let (history, _) =
                parse_history(&text, format).map_err(|e| format!("{}: {e}", file.display()))?;
            let model = model.unwrap_or_else(|| infer_model(&history));
            check(&history, model, options).map_err(|e| format!("{}: {e}", file.display()))?;
            histories.push((history, model));
        }
        let mut worst = Verdict::Linearizable;
        let (best, median) = time_it(
            args.bench_iterations,
            || {
                let mut verdict = Verdict::Linearizable;
                for (history, model) in &histories {
                    let report = check(history, *model, options).expect("checked above");
                    verdict = verdict.combine(report.verdict);
                }
                worst = verdict;
                verdict
            },
            None,
        )?;
        println!(
            "files: {} histories, verdict {}: best {:.2} ms, median {:.2} ms (all files, parsing excluded)",
            histories.len(),
            worst.name(),
            ms(best),
            ms(median)
        );
    }
    let cases: Vec<(&str, GenConfig, Model, bool)> = vec![
        (
            "register, 16 processes, 20% info, 400 ops",
            GenConfig {
                seed: 1,
                flavor: Flavor::CasRegister,
                processes: 16,
                ops: 400,
                info_percent: 20,
                ..GenConfig::default()
            },
            Model::CasRegister,
            true,
        ),
        (
            "register, 20 processes, 10% info, 1000 ops",
            GenConfig {
                seed: 2,
                flavor: Flavor::CasRegister,
                processes: 20,
                ops: 1000,
                info_percent: 10,
                ..GenConfig::default()
            },
            Model::CasRegister,
            true,
        ),
        (
            "kv, 10 clients, 8 keys, 1700 ops, unpartitioned",
            GenConfig {
                seed: 3,
                flavor: Flavor::Kv,
                processes: 10,
                ops: 1700,
                keys: 8,
                info_percent: 2,
                append_percent: 30,
                ..GenConfig::default()
            },
            Model::Kv,
            false,
        ),
        (
            "kv, 10 clients, 8 keys, 3000 ops, unpartitioned",
            GenConfig {
                seed: 4,
                flavor: Flavor::Kv,
                processes: 10,
                ops: 3000,
                keys: 8,
                info_percent: 2,
                append_percent: 30,
                ..GenConfig::default()
            },
            Model::Kv,
            false,
        ),
        (
            "kv, 10 clients, 8 keys, 3000 ops, per key",
            GenConfig {
                seed: 4,
                flavor: Flavor::Kv,
                processes: 10,
                ops: 3000,
                keys: 8,
                info_percent: 2,
                append_percent: 30,
                ..GenConfig::default()
            },
            Model::Kv,
            true,
        ),
    ];
    for (name, config, model, partition) in cases {
        let history = gen::linearizable(&config);
        // Generated histories start empty: --initial and --strict-nil apply to files only.
        let options = Options {
            partition,
            initial: None,
            strict_nil: false,
            ..options.clone()
        };
        let (best, median) = time_it(
            args.bench_iterations,
            || check(&history, model, &options).expect("generated").verdict,
            Some(Verdict::Linearizable),
        )?;
        println!(
            "{name} ({} events): best {:.2} ms, median {:.2} ms",
            history.len(),
            ms(best),
            ms(median)
        );
    }
    Ok(0)
}
