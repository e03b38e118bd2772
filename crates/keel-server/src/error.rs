//! API errors: a machine-readable code, its HTTP status, a retry hint and details. Every error
//! the client API returns goes through here (see /openapi.yaml and docs of issue 6).

use axum::http::StatusCode;
use keel_core::{NodeId, ProposeError, Term};
use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    /// "same_node" | "other_node" | "leader" | "no"
    pub retry: &'static str,
    pub details: Map<String, Value>,
}

/// A leader reference for hints: its id and client address (if known).
pub fn leader_json(leader: Option<(NodeId, Option<String>)>) -> Value {
    match leader {
        Some((id, addr)) => json!({"id": id, "client_addr": addr}),
        None => Value::Null,
    }
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        let retry = match code {
            "NOT_LEADER" => "leader",
            "NO_LEADER" | "OVERLOADED" | "UNAVAILABLE" | "OUTCOME_UNKNOWN" => "same_node",
            "STALE_BOUND_UNMET" => "other_node",
            _ => "no",
        };
        ApiError {
            code,
            message: message.into(),
            retry,
            details: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn retry(mut self, retry: &'static str) -> ApiError {
        self.retry = retry;
        self
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new("BAD_REQUEST", message).with("field", field)
    }

    pub fn overloaded(
        scope: &'static str,
        retry_after_ms: u64,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::new("OVERLOADED", message)
            .with("scope", scope)
            .with("retry_after_ms", retry_after_ms)
            .retry(if scope == "node" {
                "other_node"
            } else {
                "same_node"
            })
    }

    pub fn not_leader(
        leader: Option<(NodeId, Option<String>)>,
        term: Term,
        last_contact_ms: Option<u64>,
    ) -> ApiError {
        match leader {
            Some((id, _)) => ApiError::new(
                "NOT_LEADER",
                format!("this node is not the leader; node {id} is (term {term})"),
            )
            .with("leader", leader_json(leader))
            .with("term", term),
            None => ApiError::new("NO_LEADER", format!("no leader is known in term {term}"))
                .with("term", term)
                .with("last_contact_ms", last_contact_ms)
                .with("retry_after_ms", 100u64),
        }
    }

    pub fn outcome_unknown(session: Option<(u64, u64)>, why: &str) -> ApiError {
        let mut e = ApiError::new(
            "OUTCOME_UNKNOWN",
            format!(
                "{why}: the write may or may not have committed; retry with the same session seq"
            ),
        );
        if let Some((client_id, seq)) = session {
            e = e.with("client_id", client_id).with("seq", seq);
        }
        e
    }

    /// This node's disk is full: it is read-only; writes go to another node (the leader hint
    /// says which, if known) or are retried after space returns.
    pub fn no_space(reason: &str, leader: Option<(NodeId, Option<String>)>) -> ApiError {
        ApiError::new(
            "NO_SPACE",
            format!("this node is read-only: {reason}; write through another node"),
        )
        .with("leader", leader_json(leader))
        .with("retry_after_ms", 1000u64)
        .retry("other_node")
    }

    /// An authorization failure (auth.rs); never retried with the same credentials.
    pub fn auth(failure: crate::auth::Failure) -> ApiError {
        use crate::auth::Failure;
        let e = match failure {
            Failure::Missing => ApiError::new(
                "UNAUTHENTICATED",
                "this node requires `Authorization: Bearer <token>`",
            ),
            Failure::Invalid => ApiError::new("UNAUTHENTICATED", "unknown token"),
            Failure::Forbidden { role, needed } => ApiError::new(
                "PERMISSION_DENIED",
                format!(
                    "role {} may not do this; it needs role {}",
                    role.name(),
                    needed.name()
                ),
            )
            .with("role", role.name())
            .with("needed", needed.name()),
        };
        e.retry("no")
    }

    /// The request is valid but the cluster is not in a state that allows it (e.g. finalizing
    /// an upgrade before every member runs the new binary); retrying as is will not help.
    pub fn failed_precondition(message: impl Into<String>) -> ApiError {
        ApiError::new("FAILED_PRECONDITION", message).retry("no")
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new("UNAVAILABLE", message).with("retry_after_ms", 200u64)
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            "BAD_REQUEST" => StatusCode::BAD_REQUEST,
            "NOT_FOUND" => StatusCode::NOT_FOUND,
            "METHOD_NOT_ALLOWED" => StatusCode::METHOD_NOT_ALLOWED,
            "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
            "NOT_LEADER" => StatusCode::MISDIRECTED_REQUEST,
            "NO_LEADER" | "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
            "OUTCOME_UNKNOWN" => StatusCode::GATEWAY_TIMEOUT,
            "OVERLOADED" => {
                if self.details.get("scope").and_then(Value::as_str) == Some("cluster") {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::TOO_MANY_REQUESTS
                }
            }
            "STALE_BOUND_UNMET" => StatusCode::PRECONDITION_FAILED,
            "NO_SPACE" => StatusCode::INSUFFICIENT_STORAGE,
            "SESSION_EXPIRED" => StatusCode::GONE,
            "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
            "PERMISSION_DENIED" => StatusCode::FORBIDDEN,
            "FAILED_PRECONDITION" => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), self.code.into());
        m.insert("message".into(), self.message.clone().into());
        m.insert("retry".into(), self.retry.into());
        for (k, v) in &self.details {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// Maps a core refusal to a proposal. `leader_addr` resolves a leader id to its client address.
    pub fn from_propose(
        e: ProposeError,
        leader_addr: impl Fn(NodeId) -> Option<String>,
        last_contact_ms: Option<u64>,
    ) -> ApiError {
        match e {
            ProposeError::NotLeader { leader, term } => ApiError::not_leader(
                leader.map(|id| (id, leader_addr(id))),
                term,
                last_contact_ms,
            ),
            ProposeError::Transferring => {
                ApiError::new("NOT_LEADER", "leadership transfer in progress")
                    .with("leader", Value::Null)
                    .with("retry_after_ms", 100u64)
            }
            ProposeError::UncommittedLimit { .. } => {
                ApiError::overloaded("cluster", 100, e.to_string())
            }
            ProposeError::TooLarge { .. } => ApiError::new("PAYLOAD_TOO_LARGE", e.to_string()),
            ProposeError::ConfChangeInProgress
            | ProposeError::NotCaughtUp { .. }
            | ProposeError::TermNotEstablished => ApiError::unavailable(e.to_string()),
            ProposeError::InvalidConfChange(_) | ProposeError::InvalidTransfer(_) => {
                ApiError::bad_request("id", e.to_string())
            }
        }
    }

    pub fn from_kv(e: &keel_kv::KvError) -> ApiError {
        let mut err = ApiError::new(e.code(), e.to_string());
        if let Some(field) = e.field() {
            err = err.with("field", field);
        }
        if let keel_kv::KvError::SessionExpired { client_id } = e {
            err = err.with("client_id", *client_id);
        }
        err
    }
}
