//! The typed error enum and the decoding of the server's JSON error bodies.
//!
//! Every server error is `{"code", "message", "retry"?, "retry_after_ms"?, ...details}`; the
//! code is kept as an [`ErrorCode`] (unknown codes are preserved verbatim in
//! [`ErrorCode::Other`]) together with the HTTP status and the full body.

use std::fmt;

use serde_json::Value;

/// The server's machine-readable error codes (docs/client-retries.md lists what each means).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    NotLeader,
    NoLeader,
    OutcomeUnknown,
    Overloaded,
    StaleBoundUnmet,
    NoSpace,
    SessionExpired,
    Unavailable,
    /// No or an unknown bearer token (401); never retried.
    Unauthenticated,
    /// The token's role does not allow the request (403); never retried.
    PermissionDenied,
    /// The cluster is not in a state that allows the request (409); never retried as is.
    FailedPrecondition,
    Internal,
    /// A code this client version does not know; handled by the server's `retry` hint alone.
    Other(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "BAD_REQUEST" => ErrorCode::BadRequest,
            "NOT_FOUND" => ErrorCode::NotFound,
            "METHOD_NOT_ALLOWED" => ErrorCode::MethodNotAllowed,
            "PAYLOAD_TOO_LARGE" => ErrorCode::PayloadTooLarge,
            "NOT_LEADER" => ErrorCode::NotLeader,
            "NO_LEADER" => ErrorCode::NoLeader,
            "OUTCOME_UNKNOWN" => ErrorCode::OutcomeUnknown,
            "OVERLOADED" => ErrorCode::Overloaded,
            "STALE_BOUND_UNMET" => ErrorCode::StaleBoundUnmet,
            "NO_SPACE" => ErrorCode::NoSpace,
            "SESSION_EXPIRED" => ErrorCode::SessionExpired,
            "UNAVAILABLE" => ErrorCode::Unavailable,
            "UNAUTHENTICATED" => ErrorCode::Unauthenticated,
            "PERMISSION_DENIED" => ErrorCode::PermissionDenied,
            "FAILED_PRECONDITION" => ErrorCode::FailedPrecondition,
            "INTERNAL" => ErrorCode::Internal,
            other => ErrorCode::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::NoLeader => "NO_LEADER",
            ErrorCode::OutcomeUnknown => "OUTCOME_UNKNOWN",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::StaleBoundUnmet => "STALE_BOUND_UNMET",
            ErrorCode::NoSpace => "NO_SPACE",
            ErrorCode::SessionExpired => "SESSION_EXPIRED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's `retry` field: where (and whether) the request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryHint {
    SameNode,
    OtherNode,
    Leader,
    No,
}

impl RetryHint {
    pub fn parse(hint: &str) -> Option<RetryHint> {
        match hint {
            "same_node" => Some(RetryHint::SameNode),
            "other_node" => Some(RetryHint::OtherNode),
            "leader" => Some(RetryHint::Leader),
            "no" => Some(RetryHint::No),
            _ => None,
        }
    }
}

/// The leader a NOT_LEADER answer points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    pub id: u64,
    pub client_addr: String,
}

/// One error answer from a node, fully decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerError {
    pub code: ErrorCode,
    pub http_status: u16,
    pub message: String,
    /// The node that answered (an endpoint, `host:port`).
    pub endpoint: String,
    /// BAD_REQUEST: the request field at fault.
    pub field: Option<String>,
    pub retry: Option<RetryHint>,
    pub retry_after_ms: Option<u64>,
    /// NOT_LEADER / NO_LEADER: the answering node's term.
    pub term: Option<u64>,
    /// NOT_LEADER: the leader it knows, if any.
    pub leader: Option<LeaderHint>,
    /// OVERLOADED: "node" or "cluster".
    pub scope: Option<String>,
    /// The whole JSON body as the server sent it.
    pub body: Value,
}

impl ServerError {
    /// Decodes an error answer. A body that is not a JSON error object still yields an error,
    /// with a code derived from the HTTP status (`HTTP_<status>`).
    pub fn decode(endpoint: &str, http_status: u16, body_bytes: &[u8]) -> ServerError {
        let body: Value = serde_json::from_slice(body_bytes).unwrap_or(Value::Null);
        let code = match body.get("code").and_then(Value::as_str) {
            Some(code) => ErrorCode::parse(code),
            None => ErrorCode::Other(format!("HTTP_{http_status}")),
        };
        let message = match body.get("message").and_then(Value::as_str) {
            Some(message) => message.to_string(),
            None => {
                let text = String::from_utf8_lossy(body_bytes);
                let text_bytes_max = 200;
                let mut cut = text.len().min(text_bytes_max);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text[..cut].to_string()
            }
        };
        let leader = body.get("leader").and_then(|leader| {
            let id = leader.get("id").and_then(Value::as_u64)?;
            let client_addr = leader.get("client_addr").and_then(Value::as_str)?;
            Some(LeaderHint {
                id,
                client_addr: client_addr.to_string(),
            })
        });
        ServerError {
            code,
            http_status,
            message,
            endpoint: endpoint.to_string(),
            field: body
                .get("field")
                .and_then(Value::as_str)
                .map(str::to_string),
            retry: body
                .get("retry")
                .and_then(Value::as_str)
                .and_then(RetryHint::parse),
            retry_after_ms: body.get("retry_after_ms").and_then(Value::as_u64),
            term: body.get("term").and_then(Value::as_u64),
            leader,
            scope: body
                .get("scope")
                .and_then(Value::as_str)
                .map(str::to_string),
            body,
        }
    }
}

/// Everything a call can fail with.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// The server answered with an error code (after any retries the client made).
    Server(Box<ServerError>),
    /// No answer from an endpoint. `sent` is false when the request surely never reached it
    /// (connection refused): then it had no effect.
    Transport {
        endpoint: String,
        message: String,
        sent: bool,
    },
    /// A write without a session whose fate is unknown (it was sent, no answer came): it may or
    /// may not have been applied. Not retried, because a retry could apply it twice.
    OutcomeUnknown { endpoint: String, message: String },
    /// The per-call deadline passed. `last` is the last failure seen, if any.
    Timeout {
        timeout_ms: u64,
        last: Option<Box<Error>>,
    },
    /// The retry budget (token bucket) is empty: the client refuses to add retry load.
    RetryBudgetExhausted { last: Box<Error> },
    /// `attempts_max` attempts were made.
    AttemptsExhausted { attempts: u32, last: Box<Error> },
    /// The server answered 2xx with a body this client cannot read.
    Decode { endpoint: String, message: String },
    /// The caller's arguments are invalid (nothing was sent).
    InvalidArgument(String),
}

impl Error {
    /// The innermost server error, if the failure came from a server answer.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            Error::Server(server) => Some(server.as_ref()),
            Error::Timeout {
                last: Some(last), ..
            } => last.server(),
            Error::RetryBudgetExhausted { last } | Error::AttemptsExhausted { last, .. } => {
                last.server()
            }
            _ => None,
        }
    }

    /// A machine-readable code: the server's code for server errors, a client-side code
    /// (`UNREACHABLE`, `OUTCOME_UNKNOWN`, `TIMEOUT`, `RETRY_BUDGET_EXHAUSTED`, ...) otherwise.
    pub fn code(&self) -> String {
        match self {
            Error::Server(server) => server.code.as_str().to_string(),
            Error::Transport { .. } => "UNREACHABLE".to_string(),
            Error::OutcomeUnknown { .. } => "OUTCOME_UNKNOWN".to_string(),
            Error::Timeout { .. } => "TIMEOUT".to_string(),
            Error::RetryBudgetExhausted { .. } => "RETRY_BUDGET_EXHAUSTED".to_string(),
            Error::AttemptsExhausted { last, .. } => last.code(),
            Error::Decode { .. } => "DECODE".to_string(),
            Error::InvalidArgument(_) => "INVALID_ARGUMENT".to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server(server) => {
                write!(
                    f,
                    "{}: {} (HTTP {} from {})",
                    server.code, server.message, server.http_status, server.endpoint
                )?;
                if let Some(field) = &server.field {
                    write!(f, " field={field}")?;
                }
                Ok(())
            }
            Error::Transport {
                endpoint, message, ..
            } => write!(f, "UNREACHABLE: {endpoint}: {message}"),
            Error::OutcomeUnknown { endpoint, message } => write!(
                f,
                "OUTCOME_UNKNOWN: no answer from {endpoint} ({message}); the write may or may not \
                 have been applied"
            ),
            Error::Timeout { timeout_ms, last } => {
                write!(f, "TIMEOUT: no success within {timeout_ms} ms")?;
                if let Some(last) = last {
                    write!(f, "; last error: {last}")?;
                }
                Ok(())
            }
            Error::RetryBudgetExhausted { last } => {
                write!(
                    f,
                    "RETRY_BUDGET_EXHAUSTED: not retrying; last error: {last}"
                )
            }
            Error::AttemptsExhausted { attempts, last } => {
                write!(f, "{last} (gave up after {attempts} attempts)")
            }
            Error::Decode { endpoint, message } => {
                write!(f, "DECODE: bad answer from {endpoint}: {message}")
            }
            Error::InvalidArgument(message) => write!(f, "INVALID_ARGUMENT: {message}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_not_leader_with_hint() {
        let body = br#"{"code":"NOT_LEADER","message":"not the leader","leader":{"id":2,"client_addr":"127.0.0.1:9"},"term":7,"retry":"leader"}"#;
        let error = ServerError::decode("127.0.0.1:8", 421, body);
        assert_eq!(error.code, ErrorCode::NotLeader);
        assert_eq!(error.term, Some(7));
        assert_eq!(
            error.leader,
            Some(LeaderHint {
                id: 2,
                client_addr: "127.0.0.1:9".to_string()
            })
        );
        assert_eq!(error.retry, Some(RetryHint::Leader));
    }

    #[test]
    fn decodes_garbage_body_by_status() {
        let error = ServerError::decode("a:1", 502, b"<html>bad gateway</html>");
        assert_eq!(error.code, ErrorCode::Other("HTTP_502".to_string()));
        assert_eq!(error.message, "<html>bad gateway</html>");
        assert_eq!(error.retry, None);
    }

    #[test]
    fn unknown_code_is_preserved() {
        let error = ServerError::decode("a:1", 418, br#"{"code":"TEAPOT","message":"m"}"#);
        assert_eq!(error.code.as_str(), "TEAPOT");
        assert_eq!(Error::Server(Box::new(error)).code(), "TEAPOT");
    }
}
