//! `keel put|get|del|cas|txn|range`: key-value requests against a running cluster.
//!
//! Exit codes: 0 ok (a failed compare in `cas`/`txn` is an answer, not a failure: it prints
//! `succeeded=false`; `get` of an absent key prints `(key not found)`), 1 the request failed,
//! 2 usage. Writes from the CLI carry no session (one request per process): a write whose
//! answer is lost is reported as OUTCOME_UNKNOWN, never resent.

use std::io::Read;

use keel_client::{
    CasExpectation, KeyValue, RangeSpec, ReadLevel, ReadOptions, Served, WriteOptions,
};
use serde_json::Value;

use super::conn::{
    block_on, display_bytes, opt_u64, print_json, print_table, report, Conn, EXIT_OK, EXIT_USAGE,
};

/// Largest transaction document read from a file or stdin.
const TXN_BYTES_MAX: u64 = 8 << 20;

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    pub key: String,
    pub value: String,
    /// Also return the previous key-value.
    #[arg(long)]
    pub prev_kv: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
pub struct ReadFlags {
    /// Read level: linearizable | bounded:<ms> | any.
    #[arg(long, default_value = "linearizable")]
    pub read: String,
    /// Refuse if the serving node has not applied this revision (monotonic reads).
    #[arg(long)]
    pub min_revision: Option<u64>,
}

impl ReadFlags {
    fn options(&self, conn: &Conn) -> Result<ReadOptions, keel_client::Error> {
        Ok(ReadOptions {
            level: ReadLevel::parse(&self.read)?,
            min_revision: self.min_revision,
            timeout_ms: Some(conn.timeout_ms),
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    pub key: String,
    #[command(flatten)]
    pub read: ReadFlags,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
pub struct DelArgs {
    pub key: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("expectation").required(true).args(["expected", "expected_mod_revision"])))]
pub struct CasArgs {
    pub key: String,
    /// Swap only if the current value equals this.
    #[arg(long)]
    pub expected: Option<String>,
    /// Swap only if the key's mod revision equals this (0: the key is absent).
    #[arg(long)]
    pub expected_mod_revision: Option<u64>,
    /// The new value.
    pub value: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
pub struct TxnArgs {
    /// JSON file with {"compare": [...], "success": [...], "failure": [...]}; `-` or nothing
    /// reads stdin.
    pub file: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
pub struct RangeArgs {
    /// Keys starting with this prefix.
    #[arg(long, conflicts_with_all = ["start", "end"])]
    pub prefix: Option<String>,
    /// First key (inclusive).
    pub start: Option<String>,
    /// Last key (exclusive); omitted: to the end.
    pub end: Option<String>,
    /// At most this many keys.
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub read: ReadFlags,
    #[command(flatten)]
    pub conn: Conn,
}

fn write_options(conn: &Conn) -> WriteOptions {
    WriteOptions {
        timeout_ms: Some(conn.timeout_ms),
        ..WriteOptions::default()
    }
}

fn served_line(served: &Served) -> String {
    format!(
        "served: level={} node={} term={} revision={} applied_index={} leader={} staleness_ms={}",
        served.level,
        served.node,
        served.term,
        served.revision,
        served.applied_index,
        opt_u64(served.leader),
        opt_u64(served.staleness_ms)
    )
}

fn kv_rows(kvs: &[KeyValue]) -> Vec<Vec<String>> {
    kvs.iter()
        .map(|kv| {
            vec![
                display_bytes(&kv.key),
                display_bytes(&kv.value),
                kv.create_revision.to_string(),
                kv.mod_revision.to_string(),
                kv.version.to_string(),
            ]
        })
        .collect()
}

const KV_HEADER: [&str; 5] = ["KEY", "VALUE", "CREATE_REV", "MOD_REV", "VERSION"];

pub fn run_put(args: PutArgs) -> i32 {
    block_on(async move {
        let client = match args.conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, args.conn.json),
        };
        let mut options = write_options(&args.conn);
        options.prev_kv = args.prev_kv;
        match client.put(&args.key, &args.value, options).await {
            Ok(put) if args.conn.json => {
                print_json(&put.raw);
                EXIT_OK
            }
            Ok(put) => {
                println!("OK revision={}", put.revision);
                if let Some(prev) = put.prev_kv {
                    println!("previous:");
                    print_table(&KV_HEADER, &kv_rows(&[prev]));
                }
                EXIT_OK
            }
            Err(error) => report(&error, args.conn.json),
        }
    })
}

pub fn run_get(args: GetArgs) -> i32 {
    block_on(async move {
        let options = match args.read.options(&args.conn) {
            Ok(options) => options,
            Err(error) => return report(&error, args.conn.json),
        };
        let client = match args.conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, args.conn.json),
        };
        match client.get(&args.key, options).await {
            Ok(get) if args.conn.json => {
                print_json(&get.raw);
                EXIT_OK
            }
            Ok(get) => {
                match &get.kv {
                    Some(kv) => print_table(&KV_HEADER, &kv_rows(std::slice::from_ref(kv))),
                    None => println!("(key not found)"),
                }
                println!("{}", served_line(&get.served));
                EXIT_OK
            }
            Err(error) => report(&error, args.conn.json),
        }
    })
}

pub fn run_del(args: DelArgs) -> i32 {
    block_on(async move {
        let client = match args.conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, args.conn.json),
        };
        match client.delete(&args.key, write_options(&args.conn)).await {
            Ok(del) if args.conn.json => {
                print_json(&del.raw);
                EXIT_OK
            }
            Ok(del) => {
                println!("deleted={} revision={}", del.deleted, del.revision);
                EXIT_OK
            }
            Err(error) => report(&error, args.conn.json),
        }
    })
}

pub fn run_cas(args: CasArgs) -> i32 {
    let expected = match (&args.expected, args.expected_mod_revision) {
        (Some(value), None) => CasExpectation::Value(value.as_bytes().to_vec()),
        (None, Some(revision)) => CasExpectation::ModRevision(revision),
        _ => {
            eprintln!("error: give exactly one of --expected and --expected-mod-revision");
            return EXIT_USAGE;
        }
    };
    block_on(async move {
        let client = match args.conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, args.conn.json),
        };
        let options = write_options(&args.conn);
        match client.cas(&args.key, expected, &args.value, options).await {
            Ok(cas) if args.conn.json => {
                print_json(&cas.raw);
                EXIT_OK
            }
            Ok(cas) => {
                println!("succeeded={} revision={}", cas.succeeded, cas.revision);
                EXIT_OK
            }
            Err(error) => report(&error, args.conn.json),
        }
    })
}

fn read_txn(file: Option<&str>) -> Result<Value, String> {
    let mut text = String::new();
    let result = match file {
        None | Some("-") => std::io::stdin()
            .take(TXN_BYTES_MAX)
            .read_to_string(&mut text),
        Some(path) => {
            std::fs::File::open(path).and_then(|f| f.take(TXN_BYTES_MAX).read_to_string(&mut text))
        }
    };
    result.map_err(|e| format!("cannot read the transaction: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("the transaction is not valid JSON: {e}"))
}

pub fn run_txn(args: TxnArgs) -> i32 {
    let txn = match read_txn(args.file.as_deref()) {
        Ok(txn) => txn,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
    };
    block_on(async move {
        let client = match args.conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, args.conn.json),
        };
        match client.txn(txn, write_options(&args.conn)).await {
            Ok(txn) if args.conn.json => {
                print_json(&txn.raw);
                EXIT_OK
            }
            Ok(txn) => {
                let revision = txn.raw.get("revision").and_then(Value::as_u64);
                println!(
                    "{} revision={}",
                    if txn.succeeded { "SUCCESS" } else { "FAILURE" },
                    opt_u64(revision)
                );
                for response in &txn.responses {
                    println!("{response}");
                }
                EXIT_OK
            }
            Err(error) => report(&error, args.conn.json),
        }
    })
}

pub fn run_range(args: RangeArgs) -> i32 {
    let spec = match (&args.prefix, &args.start) {
        (Some(prefix), None) => RangeSpec::Prefix(prefix.as_bytes().to_vec()),
        (None, Some(start)) => RangeSpec::Span {
            start: start.as_bytes().to_vec(),
            end: args.end.as_ref().map(|end| end.as_bytes().to_vec()),
        },
        _ => {
            eprintln!("error: give --prefix P or START [END]");
            return EXIT_USAGE;
        }
    };
    block_on(async move {
        let options = match args.read.options(&args.conn) {
            Ok(options) => options,
            Err(error) => return report(&error, args.conn.json),
        };
        let client = match args.conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, args.conn.json),
        };
        match client.range(spec, args.limit, options).await {
            Ok(range) if args.conn.json => {
                print_json(&range.raw);
                EXIT_OK
            }
            Ok(range) => {
                print_table(&KV_HEADER, &kv_rows(&range.kvs));
                println!(
                    "{} keys{}",
                    range.kvs.len(),
                    if range.more { " (more)" } else { "" }
                );
                println!("{}", served_line(&range.served));
                EXIT_OK
            }
            Err(error) => report(&error, args.conn.json),
        }
    })
}
