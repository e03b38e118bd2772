//! `keel audit`: verify and show a node's hash-chained audit file (read-only; see docs/audit.md).
//!
//! - `keel audit verify FILE [--anchors-from OTHER_FILE ...] [--node N] [--cluster ID] [--json]`:
//!   exit 0 chain intact (with anchors: none contradicted), 1 damage found (the first bad line
//!   and its kind: modified, removed, inserted, reordered, truncated-before-anchor,
//!   anchor-mismatch), 2 usage error or a file cannot be read (or an anchors file is damaged).
//! - `keel audit show FILE`: every verified record, one per line; exit 0 intact, 1 damaged
//!   (records up to the damage are shown), 2 unreadable.

use std::path::PathBuf;

use keel_audit::{
    anchors_from, read_entries, verify_with, Anchor, Entry, Report, Value, VerifyOptions,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Verify a node's audit chain; exit 0 intact, 1 damaged, 2 usage or unreadable.
    Verify {
        /// The node's audit file.
        file: PathBuf,
        /// Another node's audit file: its anchor_committed records pin this node's chain head,
        /// so a cut tail is detected up to the newest anchor. Repeatable.
        #[arg(long = "anchors-from", value_name = "OTHER_FILE")]
        anchors_from: Vec<PathBuf>,
        /// The node id the file must belong to (default: what line 1 says).
        #[arg(long)]
        node: Option<u64>,
        /// The cluster id the file must belong to (default: what line 1 says).
        #[arg(long)]
        cluster: Option<String>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the records of an audit file.
    Show {
        /// The node's audit file.
        file: PathBuf,
    },
}

pub fn run(args: Args) -> i32 {
    match args.command {
        AuditCommand::Verify {
            file,
            anchors_from: others,
            node,
            cluster,
            json,
        } => run_verify(file, others, node, cluster, json),
        AuditCommand::Show { file } => run_show(file),
    }
}

fn run_verify(
    file: PathBuf,
    others: Vec<PathBuf>,
    node: Option<u64>,
    cluster: Option<String>,
    json: bool,
) -> i32 {
    let mut anchors: Vec<Anchor> = Vec::new();
    for other in &others {
        match anchors_from(other) {
            Ok(found) => anchors.extend(found),
            Err(e) => {
                eprintln!(
                    "keel audit verify: cannot take anchors from {}: {e}",
                    other.display()
                );
                return 2;
            }
        }
    }
    anchors.sort_unstable();
    anchors.dedup();
    let options = VerifyOptions {
        node,
        cluster_id: cluster,
    };
    let report = match verify_with(&file, &options, &anchors) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("keel audit verify: {e}");
            return 2;
        }
    };
    if json {
        match serde_json::to_string(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("keel audit verify: {e}");
                return 2;
            }
        }
    } else {
        print_report(&report, others.len());
    }
    if report.is_intact() {
        0
    } else {
        1
    }
}

fn print_report(report: &Report, anchor_files: usize) {
    println!("file: {}", report.path);
    let node = report
        .node
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    let cluster = report
        .cluster_id
        .as_deref()
        .map_or_else(|| "unknown".to_string(), |c| format!("{c:?}"));
    println!("node: {node}  cluster: {cluster}");
    println!(
        "records: {} verified of {} line(s)",
        report.records_verified, report.lines
    );
    match report.head {
        Some(head) => println!("head: seq {} hash {}", head.seq, hex(&head.hash)),
        None => println!("head: none (empty chain)"),
    }
    if report.torn_tail_bytes > 0 {
        println!(
            "note: torn final line of {} byte(s) without a newline (never acknowledged; the node cuts it on open)",
            report.torn_tail_bytes
        );
    }
    let through = report
        .anchored_through_seq
        .map_or_else(|| "none".to_string(), |s| s.to_string());
    println!(
        "anchors: {} checked from {anchor_files} file(s), anchored through seq {through}, {} ignored (other nodes)",
        report.anchors_checked, report.anchors_ignored
    );
    match &report.damage {
        Some(damage) => println!(
            "DAMAGED at line {} (seq {}): {}: {}",
            damage.line,
            damage.seq,
            damage.kind.as_str(),
            damage.detail
        ),
        None if report.is_fully_anchored() => {
            println!("intact: every record is covered by an anchor")
        }
        None if report.anchors_checked == 0 => println!(
            "intact but unanchored: a cut of the newest records would not be detected (pass --anchors-from OTHER_NODE_FILE)"
        ),
        None => println!(
            "intact: the newest {} record(s) are after the last anchor (a cut of those alone would not be detected)",
            report.unanchored_records
        ),
    }
}

fn run_show(file: PathBuf) -> i32 {
    let mut print = |entry: &Entry| println!("{}", format_entry(entry));
    match read_entries(&file, &mut print) {
        Ok(report) => match &report.damage {
            None => {
                println!("-- {} record(s), chain intact", report.records_verified);
                0
            }
            Some(damage) => {
                println!(
                    "-- DAMAGED at line {} (seq {}): {}: {}",
                    damage.line,
                    damage.seq,
                    damage.kind.as_str(),
                    damage.detail
                );
                1
            }
        },
        Err(e) => {
            eprintln!("keel audit show: {e}");
            2
        }
    }
}

/// One record per line; text values JSON-escaped so no user data reaches the terminal raw.
fn format_entry(entry: &Entry) -> String {
    let place = match (entry.record.term, entry.record.index) {
        (Some(term), Some(index)) => format!("term {term} index {index}"),
        (Some(term), None) => format!("term {term}"),
        (None, Some(index)) => format!("index {index}"),
        (None, None) => "local".to_string(),
    };
    let details: Vec<String> = entry
        .record
        .details
        .iter()
        .map(|(key, value)| match value {
            Value::Text(text) => format!(
                "{key}={}",
                serde_json::to_string(text).unwrap_or_else(|_| "?".to_string())
            ),
            Value::Uint(v) => format!("{key}={v}"),
            Value::Int(v) => format!("{key}={v}"),
        })
        .collect();
    format!(
        "{:>6}  {:<21} node {}  {:<24} wall_ms {}  {}  hash {}",
        entry.seq,
        entry.record.kind.as_str(),
        entry.node,
        place,
        entry.record.wall_ms,
        details.join(" "),
        &hex(&entry.hash)[..16]
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_audit::{AuditLog, Details, Kind, Record};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("keel-audit-cli-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Node 1's file (4 records, then its anchor committed) and node 2's (holding that anchor).
    fn two_nodes(dir: &TempDir) -> (PathBuf, PathBuf) {
        let (a, b) = (dir.0.join("1.audit"), dir.0.join("2.audit"));
        let mut log_a = AuditLog::open(&a, 1, "c").unwrap();
        let mut log_b = AuditLog::open(&b, 2, "c").unwrap();
        for i in 0..4 {
            let details = Details::new().text("user", &format!("u{i}\u{1b}[2J"));
            log_a
                .append(Record::local(Kind::AuthzFailure, i, details))
                .unwrap();
        }
        log_b
            .append(Record::local(Kind::NodeStarted, 0, Details::new()))
            .unwrap();
        let anchor = log_a.anchor().unwrap();
        log_a
            .append(Record::anchor_committed(2, 9, &anchor))
            .unwrap();
        log_b
            .append(Record::anchor_committed(2, 9, &anchor))
            .unwrap();
        (a, b)
    }

    fn cut_last_lines(path: &PathBuf, lines: usize) {
        let text = std::fs::read_to_string(path).unwrap();
        let kept: Vec<&str> = text.lines().collect();
        let kept = &kept[..kept.len() - lines];
        std::fs::write(path, format!("{}\n", kept.join("\n"))).unwrap();
    }

    #[test]
    fn verify_exit_codes() {
        let dir = TempDir::new("exit");
        let (a, b) = two_nodes(&dir);
        assert_eq!(run_verify(a.clone(), vec![], None, None, false), 0);
        assert_eq!(run_verify(a.clone(), vec![b.clone()], None, None, true), 0);
        assert_eq!(
            run_verify(a.clone(), vec![b.clone()], Some(2), None, false),
            1,
            "node 1's file is not node 2's"
        );
        assert_eq!(
            run_verify(a.clone(), vec![], None, Some("other".into()), false),
            1
        );
        // Cut the anchored record and what follows: intact alone, damaged with anchors.
        cut_last_lines(&a, 2);
        assert_eq!(run_verify(a.clone(), vec![], None, None, false), 0);
        assert_eq!(run_verify(a.clone(), vec![b.clone()], None, None, false), 1);
        // Unreadable file or damaged anchors file: 2.
        let missing = dir.0.join("missing.audit");
        assert_eq!(run_verify(missing.clone(), vec![], None, None, false), 2);
        assert_eq!(run_verify(a.clone(), vec![missing], None, None, false), 2);
        std::fs::write(&b, "not a record\n").unwrap();
        assert_eq!(run_verify(a, vec![b], None, None, false), 2);
    }

    #[test]
    fn show_exit_codes_and_escaped_output() {
        let dir = TempDir::new("show");
        let (a, _b) = two_nodes(&dir);
        assert_eq!(run_show(a.clone()), 0);
        let mut first = None;
        read_entries(&a, &mut |entry| {
            if first.is_none() {
                first = Some(format_entry(entry));
            }
        })
        .unwrap();
        let first = first.unwrap();
        assert!(!first.contains('\u{1b}'), "{first}");
        assert!(first.contains("\\u001b[2J") && first.contains("authz_failure"));
        let mut text = std::fs::read_to_string(&a).unwrap();
        text = text.replacen("u1", "u7", 1);
        std::fs::write(&a, text).unwrap();
        assert_eq!(run_show(a), 1);
        assert_eq!(run_show(dir.0.join("missing")), 2);
    }
}
