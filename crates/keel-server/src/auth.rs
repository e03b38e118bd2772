//! Client authentication and authorization: bearer tokens with one of three roles.
//!
//! Off unless `keel serve --auth-tokens FILE` names a token file. Each line of the file is
//! `<role> <token>` (`#` starts a comment): `read` (reads, `GET /v1/members`), `write` (reads
//! and writes: KV, CAS, txn, sessions) or `admin` (everything, including membership changes,
//! leadership transfer and audit anchors). Clients send `Authorization: Bearer <token>`.
//! `/health`, `/metrics` and `/v1/status` stay open (they carry no user data), as etcd's
//! `/health` and `/version` do.
//!
//! Failures: no or malformed credentials → UNAUTHENTICATED (401); an unknown token →
//! UNAUTHENTICATED (401); a known token whose role does not allow the operation →
//! PERMISSION_DENIED (403). Each is counted in `keel_authz_failures_total{reason}` and audited
//! (`authz_failure`, one record per reason per second with the count, so a flood of bad
//! requests cannot flood the audit chain).
//!
//! Tokens are kept as SHA-256 digests and compared digest to digest, so the comparison's time
//! does not depend on how much of a guessed token matches. Every node of a cluster reads the
//! same file; a node forwarding a request to the leader (or an audit anchor) presents the
//! file's first admin token.

use axum::http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A token file is read whole; this bounds it.
pub const TOKEN_FILE_BYTES_MAX: u64 = 1 << 20;
/// Tokens per file at most.
pub const TOKENS_MAX: usize = 1024;
pub const TOKEN_BYTES_MIN: usize = 16;
pub const TOKEN_BYTES_MAX: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// Why a request was refused: the `reason` label of `keel_authz_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization: Bearer` header, or a malformed one.
    Missing,
    /// A token that is not in the file.
    Invalid,
    /// A known token whose role does not allow the operation.
    Forbidden { role: Role, needed: Role },
}

impl Failure {
    pub const REASONS: [&'static str; 3] = ["missing", "invalid", "forbidden"];

    pub fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Invalid => "invalid",
            Failure::Forbidden { .. } => "forbidden",
        }
    }

    pub fn reason_index(self) -> usize {
        let i = Failure::REASONS
            .iter()
            .position(|r| *r == self.reason())
            .expect("listed");
        assert!(i < Failure::REASONS.len());
        i
    }
}

#[derive(Clone)]
pub struct Tokens {
    /// (digest, role), in file order.
    entries: Vec<([u8; 32], Role)>,
    /// The first admin token, presented when this node forwards to the leader.
    service_token: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print tokens.
        write!(f, "Tokens({} entries)", self.entries.len())
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > TOKEN_FILE_BYTES_MAX {
            return Err(format!(
                "{}: a token file holds at most {TOKEN_FILE_BYTES_MAX} bytes",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        let mut service_token = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("line {}: expected `<role> <token>`", n + 1));
            };
            let role = Role::parse(role).ok_or_else(|| {
                format!(
                    "line {}: role must be read, write or admin, not {role:?}",
                    n + 1
                )
            })?;
            if !(TOKEN_BYTES_MIN..=TOKEN_BYTES_MAX).contains(&token.len())
                || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "line {}: a token is {TOKEN_BYTES_MIN}..={TOKEN_BYTES_MAX} printable ASCII characters",
                    n + 1
                ));
            }
            let d = digest(token.as_bytes());
            if entries.iter().any(|(e, _)| *e == d) {
                return Err(format!("line {}: duplicate token", n + 1));
            }
            if entries.len() == TOKENS_MAX {
                return Err(format!("at most {TOKENS_MAX} tokens"));
            }
            if role == Role::Admin && service_token.is_none() {
                service_token = Some(token.to_string());
            }
            entries.push((d, role));
        }
        let service_token =
            service_token.ok_or("no admin token (nodes forward with the first one)")?;
        assert!(!entries.is_empty());
        Ok(Tokens {
            entries,
            service_token,
        })
    }

    /// What `Authorization` header value this node presents when it forwards a request.
    pub fn service_authorization(&self) -> String {
        format!("Bearer {}", self.service_token)
    }

    /// The role of the request's bearer token.
    pub fn role_of(&self, headers: &HeaderMap) -> Result<Role, Failure> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(Failure::Missing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= TOKEN_BYTES_MAX)
            .ok_or(Failure::Missing)?;
        let d = digest(token.as_bytes());
        self.entries
            .iter()
            .find(|(e, _)| *e == d)
            .map(|(_, role)| *role)
            .ok_or(Failure::Invalid)
    }

    /// Allows or refuses a request to `path` by `method` (None: open, no credentials needed).
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Failure> {
        let Some(needed) = required_role(method, path) else {
            return Ok(());
        };
        let role = self.role_of(headers)?;
        if role >= needed {
            Ok(())
        } else {
            Err(Failure::Forbidden { role, needed })
        }
    }
}

/// The least role a request needs; None for the open endpoints.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    let kv = path.starts_with("/v1/kv/") || path.starts_with("/v1/kv-b64/");
    match (method.as_str(), path) {
        ("GET", "/health" | "/metrics" | "/v1/status") => None,
        ("GET", _) if kv => Some(Role::Read),
        ("POST", "/v1/range") | ("GET", "/v1/members") => Some(Role::Read),
        (_, _) if kv => Some(Role::Write),
        ("POST", "/v1/cas" | "/v1/txn" | "/v1/sessions") => Some(Role::Write),
        _ if path.starts_with("/v1/members") => Some(Role::Admin),
        ("POST", "/v1/leader/transfer" | "/v1/audit/anchor" | "/v1/cluster/finalize-upgrade") => {
            Some(Role::Admin)
        }
        // Unknown routes answer 404 / 405 whoever asks; they reveal nothing.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const FILE: &str = "# roles\nread  r-0123456789abcdef\nwrite w-0123456789abcdef # app\nadmin a-0123456789abcdef\n";

    fn with_token(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    #[test]
    fn roles_allow_what_they_name_and_nothing_more() {
        let t = Tokens::parse(FILE).unwrap();
        let get = (Method::GET, "/v1/kv/a");
        let put = (Method::PUT, "/v1/kv/a");
        let add = (Method::POST, "/v1/members");
        for (token, allowed) in [
            ("r-0123456789abcdef", [true, false, false]),
            ("w-0123456789abcdef", [true, true, false]),
            ("a-0123456789abcdef", [true, true, true]),
        ] {
            let h = with_token(token);
            let got = [&get, &put, &add].map(|(m, p)| t.check(m, p, &h).is_ok());
            assert_eq!(got, allowed, "{token}");
        }
        assert_eq!(
            t.check(&Method::PUT, "/v1/kv/a", &with_token("r-0123456789abcdef")),
            Err(Failure::Forbidden {
                role: Role::Read,
                needed: Role::Write
            })
        );
        assert_eq!(
            t.check(&Method::GET, "/v1/kv/a", &HeaderMap::new()),
            Err(Failure::Missing)
        );
        assert_eq!(
            t.check(&Method::GET, "/v1/kv/a", &with_token("x-0123456789abcdef")),
            Err(Failure::Invalid)
        );
        // Open endpoints need nothing.
        assert!(t.check(&Method::GET, "/health", &HeaderMap::new()).is_ok());
        assert!(t
            .check(&Method::GET, "/v1/status", &HeaderMap::new())
            .is_ok());
        assert_eq!(t.service_authorization(), "Bearer a-0123456789abcdef");
        assert_eq!(
            format!("{t:?}"),
            "Tokens(3 entries)",
            "tokens never printed"
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        for (text, needle) in [
            ("reader abcdefghijklmnopq\n", "line 1: role"),
            ("admin short\n", "line 1: a token"),
            ("admin a-0123456789abcdef extra\n", "line 1: expected"),
            (
                "admin a-0123456789abcdef\nread a-0123456789abcdef\n",
                "line 2: duplicate",
            ),
            ("read r-0123456789abcdef\n", "no admin token"),
            ("", "no admin token"),
        ] {
            let e = Tokens::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
