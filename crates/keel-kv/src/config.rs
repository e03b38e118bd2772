//! Limits and session policy. Every replica must use the same `Config` (apart from the
//! test-only `dedup_disabled` mutant): the limits decide which commands fail, so they are part
//! of the deterministic behaviour.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Longest key accepted. Keys must also be non-empty where a single key is named.
    pub key_bytes_max: usize,
    /// Longest value accepted.
    pub value_bytes_max: usize,
    /// Most operations in each branch (`success`, `failure`) of a transaction.
    pub txn_ops_max: usize,
    /// Most compares in a transaction.
    pub txn_compares_max: usize,
    /// Most key-values a range returns; a request's `limit` of 0 means this value, a larger
    /// `limit` is refused.
    pub range_limit_max: u64,
    /// Most bytes (keys plus values) of key-values a range returns; at least one key-value is
    /// always returned if any is in range. The rest is reported through `more`.
    pub range_response_bytes_max: usize,
    /// Most live client sessions. Registering one more evicts the session idle the longest
    /// (smallest last activity time, then smallest client id).
    pub sessions_max: usize,
    /// Most cached results per session (results for seq >= the client's lowest unacknowledged
    /// seq). A new seq beyond this window is refused with BAD_REQUEST field=seq, not executed.
    pub session_results_max: usize,
    /// A session expires when no command has named it for this long, measured in the leader's
    /// time stamps carried by log entries.
    pub session_ttl_ms: u64,
    /// TEST ONLY (the server's `--mutant no-session-dedup`): when set, a duplicate (client id,
    /// seq) is applied again instead of answered from the session cache. Breaks exactly-once on
    /// purpose so tests can show they catch it. Never set in production.
    pub dedup_disabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            key_bytes_max: 4 * 1024,
            value_bytes_max: 1024 * 1024,
            txn_ops_max: 128,
            txn_compares_max: 128,
            range_limit_max: 10_000,
            range_response_bytes_max: 8 * 1024 * 1024,
            sessions_max: 10_000,
            session_results_max: 64,
            session_ttl_ms: 60_000,
            dedup_disabled: false,
        }
    }
}

impl Config {
    /// Checks the limits make sense; `StateMachine::new` asserts this.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.key_bytes_max == 0 {
            return Err("key_bytes_max must be at least 1");
        }
        if self.range_limit_max == 0 {
            return Err("range_limit_max must be at least 1");
        }
        if self.sessions_max == 0 {
            return Err("sessions_max must be at least 1");
        }
        if self.session_results_max == 0 {
            return Err("session_results_max must be at least 1");
        }
        if self.session_ttl_ms == 0 {
            return Err("session_ttl_ms must be at least 1");
        }
        Ok(())
    }
}
