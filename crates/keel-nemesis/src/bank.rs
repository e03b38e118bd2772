//! The bank: multi-key transactions with an invariant. `accounts` keys `b/<i>` start at
//! `BALANCE_INITIAL` each; a transfer moves an amount between two accounts in one `/v1/txn`
//! guarded by both accounts' `mod_revision` (so it applies only to the balances it read, and a
//! balance never goes negative). The total never changes: every read of all balances (a txn of
//! gets, which goes through the log, or a range read at any level, which is one applied state)
//! must sum to `accounts * BALANCE_INITIAL`, checked on every ok read and once at the end.

use keel_client::{Client, Error, RangeSpec, ReadLevel, ReadOptions, WriteOptions};
use serde_json::{json, Value};

/// Every account's balance at the start.
pub const BALANCE_INITIAL: i64 = 100;
/// Accounts one bank holds, at most (one txn reads them all: the server's per-branch op limit
/// is 128).
pub const ACCOUNTS_MAX: usize = 64;
/// Key prefix of the accounts (`b/<i>`), and the end of their range.
pub const PREFIX: &str = "b/";
const PREFIX_END: &str = "b0";

pub fn account_key(index: usize) -> String {
    format!("{PREFIX}{index:03}")
}

/// The total every full read must show.
pub fn total(accounts: usize) -> i64 {
    accounts as i64 * BALANCE_INITIAL
}

/// One account as read: balance and the revision that last changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub balance: i64,
    pub mod_revision: u64,
}

/// Checks one full read against the invariant. Err describes the violation.
pub fn check_read(accounts: usize, read: &[Option<Account>]) -> Result<(), String> {
    if read.len() != accounts {
        return Err(format!("read {} accounts of {accounts}", read.len()));
    }
    let mut sum: i64 = 0;
    for (index, account) in read.iter().enumerate() {
        let Some(account) = account else {
            return Err(format!("account {index} missing"));
        };
        if account.balance < 0 {
            return Err(format!("account {index} negative: {}", account.balance));
        }
        sum += account.balance;
    }
    if sum != total(accounts) {
        return Err(format!(
            "balances {:?} sum to {sum}, not {}",
            balances(read),
            total(accounts)
        ));
    }
    Ok(())
}

pub fn balances(read: &[Option<Account>]) -> Vec<Option<i64>> {
    read.iter().map(|a| a.as_ref().map(|a| a.balance)).collect()
}

fn parse_account(kv: &Value) -> Result<Option<Account>, String> {
    if kv.is_null() {
        return Ok(None);
    }
    let text = kv
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("account without a text value: {kv}"))?;
    let balance = text
        .parse::<i64>()
        .map_err(|_| format!("balance {text:?} is not a number"))?;
    let mod_revision = kv.get("mod_revision").and_then(Value::as_u64).unwrap_or(0);
    Ok(Some(Account {
        balance,
        mod_revision,
    }))
}

/// The txn body that reads every account (no compare: the success branch runs).
pub fn read_all_txn(accounts: usize) -> Value {
    assert!(accounts <= ACCOUNTS_MAX);
    let gets: Vec<Value> = (0..accounts)
        .map(|i| json!({"get": {"key": account_key(i)}}))
        .collect();
    json!({"compare": [], "success": gets, "failure": []})
}

/// Parses the answer of [`read_all_txn`].
pub fn parse_read_all(
    accounts: usize,
    responses: &[Value],
) -> Result<Vec<Option<Account>>, String> {
    if responses.len() != accounts {
        return Err(format!(
            "txn answered {} responses for {accounts} gets",
            responses.len()
        ));
    }
    responses
        .iter()
        .map(|r| {
            parse_account(
                r.get("get")
                    .and_then(|g| g.get("kv"))
                    .unwrap_or(&Value::Null),
            )
        })
        .collect()
}

/// The txn body of a transfer of `amount` from `from` to `to`, guarded by what was read.
pub fn transfer_txn(from: (usize, &Account), to: (usize, &Account), amount: i64) -> Value {
    assert!(from.0 != to.0, "a transfer joins two accounts");
    assert!(amount > 0 && amount <= from.1.balance);
    let guard = |(index, account): (usize, &Account)| {
        json!({"key": account_key(index), "target": "mod_revision", "op": "==",
               "number": account.mod_revision})
    };
    let put = |index: usize, balance: i64| json!({"put": {"key": account_key(index), "value": balance.to_string()}});
    json!({
        "compare": [guard(from), guard(to)],
        "success": [put(from.0, from.1.balance - amount), put(to.0, to.1.balance + amount)],
        "failure": [],
    })
}

/// The txn body that creates every account with `BALANCE_INITIAL` if none exists yet.
pub fn init_txn(accounts: usize) -> Value {
    assert!((2..=ACCOUNTS_MAX).contains(&accounts));
    let puts: Vec<Value> = (0..accounts)
        .map(|i| json!({"put": {"key": account_key(i), "value": BALANCE_INITIAL.to_string()}}))
        .collect();
    json!({
        "compare": [{"key": account_key(0), "target": "version", "op": "==", "number": 0}],
        "success": puts,
        "failure": [],
    })
}

/// Creates the accounts (idempotent: a second call finds them and changes nothing).
pub async fn init(client: &Client, accounts: usize) -> Result<(), Error> {
    client
        .txn(init_txn(accounts), WriteOptions::default())
        .await
        .map(|_| ())
}

/// Reads every account with one range read at `level`; returns the accounts and how the read
/// was served (`served.path`, `served.staleness_ms`).
pub async fn read_range(
    client: &Client,
    accounts: usize,
    level: ReadLevel,
) -> Result<(Vec<Option<Account>>, Value), Error> {
    let spec = RangeSpec::Span {
        start: PREFIX.as_bytes().to_vec(),
        end: Some(PREFIX_END.as_bytes().to_vec()),
    };
    let options = ReadOptions {
        level,
        ..Default::default()
    };
    let page = client
        .range(spec, Some(ACCOUNTS_MAX as u64 + 1), options)
        .await?;
    let mut read = vec![None; accounts];
    for kv in &page.kvs {
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let index = key
            .strip_prefix(PREFIX)
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&i| i < accounts);
        let balance = String::from_utf8_lossy(&kv.value).parse::<i64>().ok();
        if let (Some(index), Some(balance)) = (index, balance) {
            read[index] = Some(Account {
                balance,
                mod_revision: kv.mod_revision,
            });
        }
    }
    let served = page.raw.get("served").cloned().unwrap_or(Value::Null);
    Ok((read, served))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(balance: i64, mod_revision: u64) -> Option<Account> {
        Some(Account {
            balance,
            mod_revision,
        })
    }

    #[test]
    fn invariant_checks() {
        assert!(check_read(3, &[account(100, 1), account(100, 1), account(100, 1)]).is_ok());
        assert!(check_read(3, &[account(150, 2), account(50, 2), account(100, 1)]).is_ok());
        let lost = check_read(3, &[account(150, 2), account(100, 1), account(100, 1)]);
        assert!(lost.unwrap_err().contains("sum to 350"));
        assert!(check_read(3, &[account(100, 1), None, account(100, 1)])
            .unwrap_err()
            .contains("missing"));
        assert!(check_read(2, &[account(-1, 1), account(201, 1)])
            .unwrap_err()
            .contains("negative"));
        assert!(check_read(3, &[account(300, 1)]).is_err());
    }

    #[test]
    fn txn_bodies_and_parsing() {
        let body = transfer_txn(
            (
                0,
                &Account {
                    balance: 100,
                    mod_revision: 7,
                },
            ),
            (
                2,
                &Account {
                    balance: 100,
                    mod_revision: 9,
                },
            ),
            30,
        );
        assert_eq!(body["compare"][0]["number"], 7);
        assert_eq!(body["compare"][1]["key"], "b/002");
        assert_eq!(body["success"][0]["put"]["value"], "70");
        assert_eq!(body["success"][1]["put"]["value"], "130");
        assert_eq!(read_all_txn(4)["success"].as_array().unwrap().len(), 4);
        assert_eq!(init_txn(3)["compare"][0]["target"], "version");
        let responses = vec![
            json!({"get": {"kv": {"key": "b/000", "value": "60", "mod_revision": 5}}}),
            json!({"get": {"kv": null}}),
        ];
        let read = parse_read_all(2, &responses).unwrap();
        assert_eq!(read, vec![account(60, 5), None]);
        assert!(parse_read_all(3, &responses).is_err());
        let bad = vec![json!({"get": {"kv": {"value": "x"}}})];
        assert!(parse_read_all(1, &bad).is_err());
    }
}
