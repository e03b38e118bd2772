//! Client settings. Every limit carries its unit in its name.

use crate::error::Error;

/// The most endpoints a client tracks (configured plus learned from NOT_LEADER hints).
pub const ENDPOINTS_MAX: usize = 64;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `host:port` client addresses (an `http://` prefix is accepted and stripped).
    pub endpoints: Vec<String>,
    /// Default deadline for a whole call, retries included.
    pub call_timeout_ms: u64,
    /// Deadline for one attempt (one HTTP exchange); a node that accepts connections but
    /// never answers (SIGSTOPped) costs at most this much before the client tries another.
    pub attempt_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Attempts per call, redirects included.
    pub attempts_max: u32,
    /// Redirects (following a NOT_LEADER hint) per call. Redirects do not spend retry budget.
    pub redirects_max: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Retry budget: tokens earned per call, in thousandths (100 = one retry per 10 calls).
    pub retry_ratio_permille: u64,
    /// Retry budget: tokens available at start (the "small minimum").
    pub retry_reserve_tokens: u64,
    /// Retry budget: the bucket's capacity.
    pub retry_tokens_max: u64,
    /// Seed of the jitter generator (tests pass a fixed one; tools may pass anything).
    pub rng_seed: u64,
    /// Ask followers to forward writes to the leader (`?forward=true`) instead of answering
    /// NOT_LEADER.
    pub forward: bool,
    /// Sent as `X-Keel-Client-Id`: the identity the server's fair shares count in-flight
    /// requests by (at most 64 bytes; None: the server uses the connection's IP address).
    pub client_name: Option<String>,
    /// Bearer token for a node started with `--auth-tokens` (sent as `Authorization: Bearer`).
    pub token: Option<String>,
}

impl ClientConfig {
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> ClientConfig {
        ClientConfig {
            endpoints: endpoints.iter().map(|e| e.as_ref().to_string()).collect(),
            call_timeout_ms: 10_000,
            attempt_timeout_ms: 3_000,
            connect_timeout_ms: 500,
            attempts_max: 16,
            redirects_max: 8,
            backoff_base_ms: 25,
            backoff_max_ms: 1_000,
            retry_ratio_permille: 100,
            retry_reserve_tokens: 10,
            retry_tokens_max: 20,
            rng_seed: 0x6b65_656c,
            forward: false,
            client_name: None,
            token: None,
        }
    }

    /// Parses a comma-separated endpoint list (`KEEL_ENDPOINTS` form).
    pub fn parse_endpoints(text: &str) -> Result<Vec<String>, Error> {
        let endpoints: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(normalize_endpoint)
            .collect::<Result<_, _>>()?;
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".to_string()));
        }
        Ok(endpoints)
    }

    pub(crate) fn validate(&self) -> Result<Vec<String>, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".to_string()));
        }
        if self.endpoints.len() > ENDPOINTS_MAX {
            return Err(Error::InvalidArgument(format!(
                "{} endpoints given, at most {ENDPOINTS_MAX}",
                self.endpoints.len()
            )));
        }
        if let Some(name) = &self.client_name {
            let printable = name.bytes().all(|b| b.is_ascii_graphic());
            if name.is_empty() || name.len() > 64 || !printable {
                return Err(Error::InvalidArgument(
                    "client_name must be 1..=64 printable ASCII characters".to_string(),
                ));
            }
        }
        if let Some(token) = &self.token {
            let printable = token.bytes().all(|b| b.is_ascii_graphic());
            if token.is_empty() || token.len() > 256 || !printable {
                return Err(Error::InvalidArgument(
                    "token must be 1..=256 printable ASCII characters".to_string(),
                ));
            }
        }
        if self.attempts_max == 0 || self.call_timeout_ms == 0 || self.attempt_timeout_ms == 0 {
            return Err(Error::InvalidArgument(
                "attempts_max, call_timeout_ms and attempt_timeout_ms must be positive".to_string(),
            ));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err(Error::InvalidArgument(
                "backoff_base_ms above backoff_max_ms".to_string(),
            ));
        }
        if self.retry_ratio_permille > 1000 || self.retry_reserve_tokens > self.retry_tokens_max {
            return Err(Error::InvalidArgument(
                "retry budget: ratio above 1000 permille or reserve above max".to_string(),
            ));
        }
        self.endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect()
    }
}

/// `http://host:port/` -> `host:port`; rejects anything without a port.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, Error> {
    let trimmed = endpoint.trim();
    let without_scheme = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let host_port = without_scheme.trim_end_matches('/');
    let valid = match host_port.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    };
    if !valid || host_port.contains('/') {
        return Err(Error::InvalidArgument(format!(
            "bad endpoint {endpoint:?} (want host:port)"
        )));
    }
    Ok(host_port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let endpoints =
            ClientConfig::parse_endpoints("127.0.0.1:7379, http://localhost:7380/").unwrap();
        assert_eq!(endpoints, vec!["127.0.0.1:7379", "localhost:7380"]);
        assert!(ClientConfig::parse_endpoints("").is_err());
        assert!(ClientConfig::parse_endpoints("nohost").is_err());
        assert!(ClientConfig::parse_endpoints("a:99999").is_err());
    }
}
