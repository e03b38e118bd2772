//! `keel status`, `keel members list|add|promote|remove`, `keel transfer-leader`,
//! `keel upgrade status|finalize` (docs/upgrades.md).
//!
//! Exit codes: 0 ok, 1 the request failed (for `status`: no endpoint answered), 2 usage.

use keel_client::{Client, Member, Status};
use serde_json::{json, Value};

use super::conn::{block_on, opt_u64, print_json, print_table, report, Conn, EXIT_FAILED, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
pub struct MembersArgs {
    #[command(subcommand)]
    pub action: MembersAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum MembersAction {
    /// List the configuration in effect.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Add a node as a learner (it receives the log but does not vote).
    Add {
        id: u64,
        /// The new node's peer (Raft) address, host:port.
        peer_addr: String,
        /// The new node's client (HTTP) address, host:port.
        client_addr: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Promote a learner to voter.
    Promote {
        id: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a node from the configuration.
    Remove {
        id: u64,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Args, Debug)]
pub struct TransferLeaderArgs {
    /// The voter to hand leadership to; omitted: the best caught-up voter.
    pub target: Option<u64>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args, Debug)]
pub struct UpgradeArgs {
    #[command(subcommand)]
    pub action: UpgradeAction,
}

#[derive(clap::Subcommand, Debug)]
pub enum UpgradeAction {
    /// Every endpoint's binary (protocol, highest cluster version) and the cluster version
    /// and data format it applied.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Finalize a rolling upgrade: commit the new cluster version once every member runs a
    /// binary that supports it. After this no node can be rolled back to the older release.
    Finalize {
        /// The cluster version to finalize; omitted: the highest every member supports.
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        conn: Conn,
    },
}

fn status_row(endpoint: &str, status: &Status) -> Vec<String> {
    vec![
        endpoint.to_string(),
        status.node_id.to_string(),
        status.role.clone(),
        status.term.to_string(),
        opt_u64(status.leader.as_ref().map(|(id, _)| *id)),
        status.commit_index.to_string(),
        status.applied_index.to_string(),
        status.revision.to_string(),
        status.config_version.to_string(),
        status.mode.clone(),
        cluster_version_cell(status),
    ]
}

fn version_row(endpoint: &str, status: &Status) -> Vec<String> {
    vec![
        endpoint.to_string(),
        status.node_id.to_string(),
        status.protocol.clone(),
        status.cluster_version_max.to_string(),
        status.cluster_version.to_string(),
        status.data_format.to_string(),
    ]
}

/// "applied/max" cluster version (docs/upgrades.md), or "-" from a server without versions.
fn cluster_version_cell(status: &Status) -> String {
    if status.cluster_version == 0 {
        return "-".to_string();
    }
    format!("{}/{}", status.cluster_version, status.cluster_version_max)
}

pub fn run_status(args: StatusArgs) -> i32 {
    let headers = [
        "ENDPOINT",
        "ID",
        "ROLE",
        "TERM",
        "LEADER",
        "COMMIT",
        "APPLIED",
        "REVISION",
        "CONFIG",
        "MODE",
        "CLUSTER_V",
    ];
    status_table(&args.conn, &headers, status_row, |status| {
        ("status", status.raw.clone())
    })
}

/// Asks every endpoint for its status and prints one row per endpoint (or, with `--json`,
/// one object per endpoint: `field` from `answer`, or the error). Exit 1 if none answered.
fn status_table(
    conn: &Conn,
    headers: &[&str],
    row: fn(&str, &Status) -> Vec<String>,
    answer: fn(&Status) -> (&'static str, Value),
) -> i32 {
    block_on(async move {
        let client = match conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, conn.json),
        };
        let mut rows = Vec::new();
        let mut answers = Vec::new();
        let mut answered = 0;
        for endpoint in client.endpoints() {
            match client.status_of(&endpoint).await {
                Ok(status) => {
                    answered += 1;
                    rows.push(row(&endpoint, &status));
                    let (field, value) = answer(&status);
                    answers.push(json!({"endpoint": endpoint, (field): value}));
                }
                Err(error) => {
                    let mut cells = vec![endpoint.clone()];
                    cells.extend(std::iter::repeat_n("-".to_string(), headers.len() - 2));
                    cells.push(format!("unreachable: {}", error.code()));
                    rows.push(cells);
                    answers.push(json!({"endpoint": endpoint,
                                        "error": {"code": error.code(), "message": error.to_string()}}));
                }
            }
        }
        if conn.json {
            print_json(&Value::Array(answers));
        } else {
            print_table(headers, &rows);
        }
        if answered == 0 {
            eprintln!("error: no endpoint answered");
            return EXIT_FAILED;
        }
        EXIT_OK
    })
}

fn print_members(members: &[Member], config_version: u64) {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.role.clone(),
                m.peer_addr.clone(),
                m.client_addr.clone(),
            ]
        })
        .collect();
    print_table(&["ID", "ROLE", "PEER_ADDR", "CLIENT_ADDR"], &rows);
    println!("config_version={config_version}");
}

fn print_admin_members(raw: &Value, json_out: bool) {
    if json_out {
        print_json(raw);
        return;
    }
    let members = raw
        .get("members")
        .and_then(Value::as_array)
        .map(|members| {
            members
                .iter()
                .map(|m| Member {
                    id: m.get("id").and_then(Value::as_u64).unwrap_or(0),
                    role: m.get("role").and_then(Value::as_str).unwrap_or("").into(),
                    peer_addr: m
                        .get("peer_addr")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    client_addr: m
                        .get("client_addr")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let config_version = raw
        .get("config_version")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    println!("OK");
    print_members(&members, config_version);
}

async fn members_action(client: &Client, action: &MembersAction, json_out: bool) -> i32 {
    let result = match action {
        MembersAction::List { .. } => match client.members().await {
            Ok(members) => {
                if json_out {
                    print_json(&members.raw);
                } else {
                    print_members(&members.members, members.config_version);
                }
                return EXIT_OK;
            }
            Err(error) => Err(error),
        },
        MembersAction::Add {
            id,
            peer_addr,
            client_addr,
            ..
        } => client.add_learner(*id, peer_addr, client_addr).await,
        MembersAction::Promote { id, .. } => client.promote(*id).await,
        MembersAction::Remove { id, .. } => client.remove_member(*id).await,
    };
    match result {
        Ok(answer) => {
            print_admin_members(&answer.raw, json_out);
            EXIT_OK
        }
        Err(error) => report(&error, json_out),
    }
}

pub fn run_members(args: MembersArgs) -> i32 {
    let conn = match &args.action {
        MembersAction::List { conn }
        | MembersAction::Add { conn, .. }
        | MembersAction::Promote { conn, .. }
        | MembersAction::Remove { conn, .. } => conn.clone(),
    };
    block_on(async move {
        let client = match conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, conn.json),
        };
        members_action(&client, &args.action, conn.json).await
    })
}

pub fn run_transfer_leader(args: TransferLeaderArgs) -> i32 {
    block_on(async move {
        let client = match args.conn.client() {
            Ok(client) => client,
            Err(error) => return report(&error, args.conn.json),
        };
        match client.transfer_leader(args.target).await {
            Ok(answer) if args.conn.json => {
                print_json(&answer.raw);
                EXIT_OK
            }
            Ok(answer) => {
                let target = answer.raw.get("target").and_then(Value::as_u64);
                println!("leadership transfer to node {} started", opt_u64(target));
                EXIT_OK
            }
            Err(error) => report(&error, args.conn.json),
        }
    })
}

pub fn run_upgrade(args: UpgradeArgs) -> i32 {
    match args.action {
        UpgradeAction::Status { conn } => {
            let headers = [
                "ENDPOINT",
                "ID",
                "PROTOCOL",
                "SUPPORTS",
                "CLUSTER_VERSION",
                "DATA_FORMAT",
            ];
            status_table(&conn, &headers, version_row, |status| {
                let version = status.raw.get("version").cloned().unwrap_or(Value::Null);
                ("version", version)
            })
        }
        UpgradeAction::Finalize { version, conn } => block_on(async move {
            let client = match conn.client() {
                Ok(client) => client,
                Err(error) => return report(&error, conn.json),
            };
            match client.finalize_upgrade(version).await {
                Ok(answer) if conn.json => {
                    print_json(&answer.raw);
                    EXIT_OK
                }
                Ok(answer) if answer.cluster_version == answer.previous => {
                    println!("cluster version {} (unchanged)", answer.cluster_version);
                    EXIT_OK
                }
                Ok(answer) => {
                    println!(
                        "cluster version {} -> {}: finalized (nodes can no longer be rolled back)",
                        answer.previous, answer.cluster_version
                    );
                    EXIT_OK
                }
                Err(error) => report(&error, conn.json),
            }
        }),
    }
}
