//! The call engine: choose an endpoint, send, decode, decide whether and where to retry.
//!
//! One loop per call ([`Client::execute`]), bounded by the call deadline, `attempts_max`,
//! `redirects_max` and the retry budget. The decision for each failure is a pure function of the
//! error, the request's retry safety and the last seen term ([`decide`]), documented in
//! docs/client-retries.md.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::config::{normalize_endpoint, ClientConfig, ENDPOINTS_MAX};
use crate::error::{Error, ErrorCode, RetryHint, ServerError};
use crate::session::SessionState;

/// Whether a request may be sent again when its first attempt's fate is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Reads and other requests without effects: always safe to resend.
    Idempotent,
    /// A write tagged with a session seq: the server deduplicates, so resending the same tag
    /// is safe.
    SessionWrite,
    /// A write without a session (or an admin change): resent only when the server said it was
    /// not executed, or the connection was refused.
    Unsafe,
}

/// Where the next attempt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Same,
    Other,
    Leader,
}

/// What to do after a failed attempt.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Next {
    /// Give this error to the caller.
    Surface(Error),
    /// Follow a NOT_LEADER hint at once (no backoff, no budget).
    Redirect { endpoint: String, term: u64 },
    /// Back off (at least `delay_floor_ms`), spend a budget token, try `target`.
    Retry { target: Target, delay_floor_ms: u64 },
}

/// Decides what to do with `error` (the attempt's failure). `term_seen` is the highest term
/// the client saw before this answer; a NOT_LEADER hint from an older term is stale (the
/// hinted node may have been deposed since) and is ignored.
pub(crate) fn decide(error: Error, safety: Safety, term_seen: u64, header_term: u64) -> Next {
    match &error {
        Error::Transport { sent: false, .. } => Next::Retry {
            target: Target::Other,
            delay_floor_ms: 0,
        },
        Error::Transport {
            sent: true,
            endpoint,
            message,
        } => match safety {
            Safety::Idempotent | Safety::SessionWrite => Next::Retry {
                target: Target::Other,
                delay_floor_ms: 0,
            },
            Safety::Unsafe => Next::Surface(Error::OutcomeUnknown {
                endpoint: endpoint.clone(),
                message: message.clone(),
            }),
        },
        Error::Server(server) => {
            decide_server(server, safety, term_seen, header_term).unwrap_or(Next::Surface(error))
        }
        _ => Next::Surface(error),
    }
}

fn decide_server(
    server: &ServerError,
    safety: Safety,
    term_seen: u64,
    header_term: u64,
) -> Option<Next> {
    if server.retry == Some(RetryHint::No) {
        return None;
    }
    let retry = |target: Target| {
        Some(Next::Retry {
            target,
            delay_floor_ms: server.retry_after_ms.unwrap_or(0),
        })
    };
    let hinted_target = match server.retry {
        Some(RetryHint::SameNode) => Some(Target::Same),
        Some(RetryHint::OtherNode) => Some(Target::Other),
        Some(RetryHint::Leader) => Some(Target::Leader),
        Some(RetryHint::No) | None => None,
    };
    match server.code {
        ErrorCode::NotLeader => {
            let hint_term = server.term.unwrap_or(header_term);
            match &server.leader {
                Some(leader) if hint_term >= term_seen && leader.client_addr != server.endpoint => {
                    Some(Next::Redirect {
                        endpoint: leader.client_addr.clone(),
                        term: hint_term,
                    })
                }
                _ => retry(Target::Other),
            }
        }
        ErrorCode::NoLeader | ErrorCode::Unavailable => {
            retry(hinted_target.unwrap_or(Target::Other))
        }
        ErrorCode::Overloaded => {
            let target = match server.scope.as_deref() {
                Some("cluster") => Target::Same,
                _ => Target::Other,
            };
            retry(hinted_target.unwrap_or(target))
        }
        ErrorCode::OutcomeUnknown => match safety {
            // Same seq, so the server answers a duplicate from its session cache.
            Safety::SessionWrite | Safety::Idempotent => {
                retry(hinted_target.unwrap_or(Target::Leader))
            }
            Safety::Unsafe => None,
        },
        ErrorCode::SessionExpired => None,
        // A full node refused the write before proposing it: another node may take it.
        ErrorCode::StaleBoundUnmet | ErrorCode::NoSpace => hinted_target.and_then(retry),
        ErrorCode::BadRequest
        | ErrorCode::NotFound
        | ErrorCode::MethodNotAllowed
        | ErrorCode::PayloadTooLarge
        | ErrorCode::Unauthenticated
        | ErrorCode::PermissionDenied
        | ErrorCode::FailedPrecondition
        | ErrorCode::Internal => None,
        ErrorCode::Other(_) => hinted_target.and_then(retry),
    }
}

/// Counters of what the client did (for tests and tools).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub calls: u64,
    pub attempts: u64,
    pub retries: u64,
    pub redirects: u64,
    pub budget_refusals: u64,
}

pub(crate) struct State {
    pub(crate) endpoints: Vec<String>,
    /// Index into `endpoints` of the node tried first for non-leader requests.
    cursor: usize,
    pub(crate) leader: Option<String>,
    pub(crate) term_seen: u64,
    pub(crate) revision_seen: u64,
    budget: RetryBudget,
    backoff: Backoff,
    pub(crate) session: Option<SessionState>,
    pub(crate) stats: ClientStats,
}

impl State {
    fn pick(&self, to_leader: bool) -> String {
        if to_leader {
            if let Some(leader) = &self.leader {
                return leader.clone();
            }
        }
        self.endpoints[self.cursor].clone()
    }

    /// The endpoint after `current` in the list (wrapping), skipping those in `avoid` unless
    /// all are; forgets `current` as leader.
    fn rotate_from(&mut self, current: &str, avoid: &BTreeMap<String, u64>) -> String {
        if self.leader.as_deref() == Some(current) {
            self.leader = None;
        }
        let count = self.endpoints.len();
        let position = self.endpoints.iter().position(|e| e == current);
        let start = position.map_or(self.cursor, |index| index + 1);
        // Another endpoint that has not failed; else this one again if it answers at all
        // (better than one known to be down); else simply the next.
        let pick = (0..count)
            .map(|step| (start + step) % count)
            .find(|&index| {
                let endpoint = &self.endpoints[index];
                endpoint != current && !avoid.contains_key(endpoint)
            })
            .or(position.filter(|_| !avoid.contains_key(current)))
            .unwrap_or(start % count);
        self.cursor = pick;
        assert!(self.cursor < self.endpoints.len());
        self.endpoints[self.cursor].clone()
    }

    fn learn_endpoint(&mut self, endpoint: &str) {
        if !self.endpoints.iter().any(|e| e == endpoint) && self.endpoints.len() < ENDPOINTS_MAX {
            self.endpoints.push(endpoint.to_string());
        }
    }
}

/// One request as the engine sees it.
pub(crate) struct Request {
    pub(crate) method: Method,
    /// Path and query, e.g. `/v1/kv/a?read=any`.
    pub(crate) path: String,
    pub(crate) body: Option<Value>,
    pub(crate) to_leader: bool,
    pub(crate) safety: Safety,
    pub(crate) timeout_ms: Option<u64>,
    /// Send only to this endpoint, never elsewhere (status of one node).
    pub(crate) pinned: Option<String>,
}

/// A successful answer.
pub(crate) struct Answer {
    pub(crate) body: Value,
    pub(crate) endpoint: String,
}

/// The async Keel client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Client {
    http: reqwest::Client,
    pub(crate) config: ClientConfig,
    pub(crate) state: Mutex<State>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let endpoints = config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("http client: {e}")))?;
        let state = State {
            endpoints,
            cursor: 0,
            leader: None,
            term_seen: 0,
            revision_seen: 0,
            budget: RetryBudget::new(
                config.retry_ratio_permille,
                config.retry_reserve_tokens,
                config.retry_tokens_max,
            ),
            backoff: Backoff::new(
                config.rng_seed,
                config.backoff_base_ms,
                config.backoff_max_ms,
            ),
            session: None,
            stats: ClientStats::default(),
        };
        Ok(Client {
            http,
            config,
            state: Mutex::new(state),
        })
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The leader endpoint the client currently believes in.
    pub fn leader(&self) -> Option<String> {
        self.lock().leader.clone()
    }

    /// The highest term seen in any answer.
    pub fn term_seen(&self) -> u64 {
        self.lock().term_seen
    }

    /// The highest revision seen in any answer (pass it as `min_revision` for monotonic reads).
    pub fn revision_seen(&self) -> u64 {
        self.lock().revision_seen
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.lock().endpoints.clone()
    }

    pub fn stats(&self) -> ClientStats {
        self.lock().stats
    }

    /// Whole retry tokens available now.
    pub fn retry_tokens(&self) -> u64 {
        self.lock().budget.tokens()
    }

    /// Runs one call to completion (success or a final error).
    pub(crate) async fn execute(&self, request: Request) -> Result<Answer, Error> {
        let timeout_ms = request.timeout_ms.unwrap_or(self.config.call_timeout_ms);
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mut endpoint = {
            let mut state = self.lock();
            state.budget.deposit();
            state.stats.calls += 1;
            match &request.pinned {
                Some(pinned) => pinned.clone(),
                None => state.pick(request.to_leader),
            }
        };
        let mut attempts: u32 = 0;
        let mut redirects: u32 = 0;
        let mut retries: u32 = 0;
        // Endpoints that did not answer during this call, with the term the client knew then.
        // Followers keep naming a crashed leader until their election timeout passes; a hint
        // to an endpoint that already failed at that term is not followed again (else the call
        // would bounce between a follower and the dead node without backing off).
        let mut unreachable: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            attempts += 1;
            self.lock().stats.attempts += 1;
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    timeout_ms,
                    last: None,
                });
            }
            let attempt_ms = (deadline - now)
                .as_millis()
                .min(u128::from(self.config.attempt_timeout_ms))
                as u64;
            let attempt_ms = attempt_ms.max(1);
            let (result, header_term) = self.send_once(&endpoint, &request, attempt_ms).await;
            let error = match result {
                Ok(body) => {
                    let mut state = self.lock();
                    if request.to_leader && request.safety != Safety::Idempotent {
                        state.leader = Some(endpoint.clone());
                    }
                    return Ok(Answer { body, endpoint });
                }
                Err(error) => error,
            };
            let term_seen_before = {
                let mut state = self.lock();
                let before = state.term_seen;
                state.term_seen = state.term_seen.max(header_term);
                before
            };
            let timed_out_at_deadline = Instant::now() >= deadline;
            if matches!(error, Error::Transport { .. }) && unreachable.len() < ENDPOINTS_MAX {
                unreachable.insert(endpoint.clone(), self.term_seen());
            }
            let next = match decide(error.clone(), request.safety, term_seen_before, header_term) {
                Next::Redirect {
                    endpoint: hinted,
                    term,
                } if unreachable
                    .get(&hinted)
                    .is_some_and(|&failed| term <= failed) =>
                {
                    Next::Retry {
                        target: Target::Other,
                        delay_floor_ms: 0,
                    }
                }
                next => next,
            };
            match next {
                Next::Surface(error) => return Err(error),
                _ if request.pinned.is_some() => return Err(error),
                _ if timed_out_at_deadline => {
                    return Err(Error::Timeout {
                        timeout_ms,
                        last: Some(Box::new(error)),
                    })
                }
                _ if attempts >= self.config.attempts_max => {
                    return Err(Error::AttemptsExhausted {
                        attempts,
                        last: Box::new(error),
                    })
                }
                Next::Redirect {
                    endpoint: hinted,
                    term,
                } => {
                    redirects += 1;
                    if redirects > self.config.redirects_max {
                        return Err(Error::AttemptsExhausted {
                            attempts,
                            last: Box::new(error),
                        });
                    }
                    let Ok(hinted) = normalize_endpoint(&hinted) else {
                        return Err(error);
                    };
                    let mut state = self.lock();
                    state.term_seen = state.term_seen.max(term);
                    state.learn_endpoint(&hinted);
                    state.leader = Some(hinted.clone());
                    state.stats.redirects += 1;
                    endpoint = hinted;
                }
                Next::Retry {
                    target,
                    delay_floor_ms,
                } => {
                    retries += 1;
                    let delay_ms = {
                        let mut state = self.lock();
                        if !state.budget.try_withdraw() {
                            state.stats.budget_refusals += 1;
                            return Err(Error::RetryBudgetExhausted {
                                last: Box::new(error),
                            });
                        }
                        state.stats.retries += 1;
                        let delay_ms = state.backoff.delay_ms(retries).max(delay_floor_ms);
                        endpoint = match target {
                            Target::Same => endpoint.clone(),
                            Target::Other => state.rotate_from(&endpoint, &unreachable),
                            Target::Leader => match state.leader.clone() {
                                Some(leader) if leader != endpoint => leader,
                                _ => state.rotate_from(&endpoint, &unreachable),
                            },
                        };
                        delay_ms
                    };
                    let wake = Instant::now() + Duration::from_millis(delay_ms);
                    if wake >= deadline {
                        return Err(Error::Timeout {
                            timeout_ms,
                            last: Some(Box::new(error)),
                        });
                    }
                    tokio::time::sleep_until(wake).await;
                }
            }
        }
    }

    /// One HTTP exchange. Returns the result and the term in the answer's headers (0 if none).
    async fn send_once(
        &self,
        endpoint: &str,
        request: &Request,
        attempt_ms: u64,
    ) -> (Result<Value, Error>, u64) {
        let url = format!("http://{endpoint}{}", request.path);
        let mut builder = self
            .http
            .request(request.method.clone(), url)
            .timeout(Duration::from_millis(attempt_ms));
        if let Some(name) = &self.config.client_name {
            builder = builder.header("x-keel-client-id", name.as_str());
        }
        if let Some(token) = &self.config.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => {
                let sent = !error.is_connect();
                return (
                    Err(Error::Transport {
                        endpoint: endpoint.to_string(),
                        message: error_chain(&error),
                        sent,
                    }),
                    0,
                );
            }
        };
        let header_u64 = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let header_term = header_u64("x-keel-term").unwrap_or(0);
        let header_revision = header_u64("x-keel-revision").unwrap_or(0);
        {
            let mut state = self.lock();
            state.revision_seen = state.revision_seen.max(header_revision);
        }
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => {
                return (
                    Err(Error::Transport {
                        endpoint: endpoint.to_string(),
                        message: error_chain(&error),
                        sent: true,
                    }),
                    header_term,
                )
            }
        };
        if !status.is_success() {
            let server = ServerError::decode(endpoint, status.as_u16(), &bytes);
            return (Err(Error::Server(Box::new(server))), header_term);
        }
        if status.is_success() {
            let mut state = self.lock();
            state.term_seen = state.term_seen.max(header_term);
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(body) => body,
                Err(error) => {
                    return (
                        Err(Error::Decode {
                            endpoint: endpoint.to_string(),
                            message: format!("{error}"),
                        }),
                        header_term,
                    )
                }
            }
        };
        (Ok(body), header_term)
    }
}

/// reqwest's Display hides the cause ("error sending request"); include the chain.
fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    let depth_max = 4;
    let mut depth = 0;
    while let Some(cause) = source {
        if depth >= depth_max {
            break;
        }
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
        depth += 1;
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LeaderHint;

    fn server_error(code: &str, term: Option<u64>, leader: Option<&str>) -> ServerError {
        let mut body = serde_json::json!({"code": code, "message": "m"});
        if let Some(term) = term {
            body["term"] = term.into();
        }
        if let Some(leader) = leader {
            body["leader"] = serde_json::json!({"id": 2, "client_addr": leader});
        }
        ServerError::decode("n1:1", 421, body.to_string().as_bytes())
    }

    #[test]
    fn stale_hint_is_not_followed() {
        let error = Error::Server(Box::new(server_error("NOT_LEADER", Some(4), Some("n2:2"))));
        let next = decide(error.clone(), Safety::Idempotent, 5, 4);
        assert_eq!(
            next,
            Next::Retry {
                target: Target::Other,
                delay_floor_ms: 0
            }
        );
        let next = decide(error, Safety::Idempotent, 4, 4);
        assert_eq!(
            next,
            Next::Redirect {
                endpoint: "n2:2".to_string(),
                term: 4
            }
        );
    }

    #[test]
    fn outcome_unknown_retried_only_with_session() {
        let error = Error::Server(Box::new(server_error("OUTCOME_UNKNOWN", None, None)));
        assert!(matches!(
            decide(error.clone(), Safety::Unsafe, 0, 0),
            Next::Surface(_)
        ));
        assert!(matches!(
            decide(error, Safety::SessionWrite, 0, 0),
            Next::Retry {
                target: Target::Leader,
                ..
            }
        ));
    }

    #[test]
    fn session_expired_and_bad_request_surface() {
        for code in [
            "SESSION_EXPIRED",
            "BAD_REQUEST",
            "PAYLOAD_TOO_LARGE",
            "INTERNAL",
        ] {
            let error = Error::Server(Box::new(server_error(code, None, None)));
            assert!(matches!(
                decide(error, Safety::SessionWrite, 0, 0),
                Next::Surface(_)
            ));
        }
    }

    #[test]
    fn unsent_unsafe_write_is_retried_but_sent_one_is_not() {
        let unsent = Error::Transport {
            endpoint: "a:1".into(),
            message: "refused".into(),
            sent: false,
        };
        assert!(matches!(
            decide(unsent, Safety::Unsafe, 0, 0),
            Next::Retry { .. }
        ));
        let sent = Error::Transport {
            endpoint: "a:1".into(),
            message: "reset".into(),
            sent: true,
        };
        assert!(matches!(
            decide(sent, Safety::Unsafe, 0, 0),
            Next::Surface(Error::OutcomeUnknown { .. })
        ));
    }

    #[test]
    fn hint_pointing_at_self_is_not_a_redirect() {
        let mut server = server_error("NOT_LEADER", Some(9), None);
        server.leader = Some(LeaderHint {
            id: 1,
            client_addr: "n1:1".to_string(),
        });
        assert!(matches!(
            decide(Error::Server(Box::new(server)), Safety::Idempotent, 0, 9),
            Next::Retry { .. }
        ));
    }
}
