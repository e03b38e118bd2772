//! The public operations: one method per route of the HTTP contract (docs: /work/api-contract.md,
//! openapi.yaml at the repo root).

use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::{Client, Request, Safety};
use crate::error::Error;
use crate::session::SessionState;
use crate::types::{
    parse_cas, parse_delete, parse_get, parse_header, parse_members, parse_put, parse_range,
    parse_status, parse_txn, put_bytes, u32_field, AdminResponse, CasExpectation, CasResponse,
    DeleteResponse, FinalizeUpgrade, GetResponse, MembersResponse, PutResponse, RangeResponse,
    RangeSpec, ReadOptions, SessionTag, Status, TxnResponse, WriteOptions,
};

/// Bytes left as they are in a path segment: RFC 3986 unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The route for one key: `/v1/kv/{percent-encoded}` for UTF-8 keys, `/v1/kv-b64/{base64url}`
/// for other bytes and for `.`/`..` (which URL normalization would eat).
pub fn kv_path(key: &[u8]) -> Result<String, Error> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("empty key".to_string()));
    }
    match std::str::from_utf8(key) {
        Ok(text) if text != "." && text != ".." => Ok(format!(
            "/v1/kv/{}",
            utf8_percent_encode(text, PATH_SEGMENT)
        )),
        _ => Ok(format!(
            "/v1/kv-b64/{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
        )),
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl Client {
    /// Registers an exactly-once session (a log entry on the server); later writes from this
    /// client carry (client_id, seq, lowest_unacked_seq). Returns the client id.
    pub async fn register_session(&self) -> Result<u64, Error> {
        let answer = self
            .execute(Request {
                method: Method::POST,
                path: "/v1/sessions".to_string(),
                body: Some(json!({})),
                to_leader: true,
                // A duplicate registration only leaves an idle session that expires.
                safety: Safety::Idempotent,
                timeout_ms: None,
                pinned: None,
            })
            .await?;
        let client_id = answer
            .body
            .get("client_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Decode {
                endpoint: answer.endpoint.clone(),
                message: "no client_id in session answer".to_string(),
            })?;
        self.lock().session = Some(SessionState::new(client_id));
        Ok(client_id)
    }

    /// The session's client id, if one is registered.
    pub fn session_client_id(&self) -> Option<u64> {
        self.lock().session.as_ref().map(|s| s.client_id)
    }

    /// Runs a write: tags it with the session (or the override), executes, releases the seq.
    async fn write(
        &self,
        method: Method,
        path: String,
        mut body: Map<String, Value>,
        options: &WriteOptions,
    ) -> Result<Value, Error> {
        let (tag, owned_seq): (Option<SessionTag>, Option<u64>) = match options.session_override {
            Some(tag) => (Some(tag), None),
            None => {
                let mut state = self.lock();
                match state.session.as_mut() {
                    Some(session) => {
                        let tag = session.begin().ok_or_else(|| {
                            Error::InvalidArgument("too many session writes in flight".to_string())
                        })?;
                        (Some(tag), Some(tag.seq))
                    }
                    None => (None, None),
                }
            }
        };
        if let Some(tag) = tag {
            body.insert("session".to_string(), tag.to_json());
        }
        let path = if self.config.forward {
            let separator = if path.contains('?') { '&' } else { '?' };
            format!("{path}{separator}forward=true")
        } else {
            path
        };
        let result = self
            .execute(Request {
                method,
                path,
                body: Some(Value::Object(body)),
                to_leader: true,
                safety: if tag.is_some() {
                    Safety::SessionWrite
                } else {
                    Safety::Unsafe
                },
                timeout_ms: options.timeout_ms,
                pinned: None,
            })
            .await;
        if let Some(seq) = owned_seq {
            if let Some(session) = self.lock().session.as_mut() {
                session.finish(seq);
            }
        }
        result.map(|answer| answer.body)
    }

    async fn read(
        &self,
        method: Method,
        path: String,
        body: Option<Value>,
        options: &ReadOptions,
    ) -> Result<Value, Error> {
        let answer = self
            .execute(Request {
                method,
                path,
                body,
                to_leader: options.level.needs_leader(),
                safety: Safety::Idempotent,
                timeout_ms: options.timeout_ms,
                pinned: None,
            })
            .await?;
        Ok(answer.body)
    }

    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: WriteOptions,
    ) -> Result<PutResponse, Error> {
        let path = kv_path(key.as_ref())?;
        let mut body = Map::new();
        put_bytes(&mut body, "value", value.as_ref());
        if options.prev_kv {
            body.insert("prev_kv".to_string(), Value::Bool(true));
        }
        let answer = self.write(Method::PUT, path, body, &options).await?;
        Ok(parse_put(answer))
    }

    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        options: ReadOptions,
    ) -> Result<GetResponse, Error> {
        let mut path = kv_path(key.as_ref())?;
        path.push_str(&format!("?read={}", options.level.as_query()));
        if let Some(min_revision) = options.min_revision {
            path.push_str(&format!("&min_revision={min_revision}"));
        }
        let answer = self.read(Method::GET, path, None, &options).await?;
        Ok(parse_get(answer))
    }

    pub async fn delete(
        &self,
        key: impl AsRef<[u8]>,
        options: WriteOptions,
    ) -> Result<DeleteResponse, Error> {
        let path = kv_path(key.as_ref())?;
        let answer = self
            .write(Method::DELETE, path, Map::new(), &options)
            .await?;
        Ok(parse_delete(answer))
    }

    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expected: CasExpectation,
        value: impl AsRef<[u8]>,
        options: WriteOptions,
    ) -> Result<CasResponse, Error> {
        if key.as_ref().is_empty() {
            return Err(Error::InvalidArgument("empty key".to_string()));
        }
        let mut body = Map::new();
        put_bytes(&mut body, "key", key.as_ref());
        match expected {
            CasExpectation::Value(expected) => put_bytes(&mut body, "expected_value", &expected),
            CasExpectation::ModRevision(revision) => {
                body.insert("expected_mod_revision".to_string(), revision.into());
            }
        }
        put_bytes(&mut body, "value", value.as_ref());
        let answer = self
            .write(Method::POST, "/v1/cas".to_string(), body, &options)
            .await?;
        Ok(parse_cas(answer))
    }

    /// A multi-key transaction; `txn` is the JSON body of `POST /v1/txn` without `session`.
    pub async fn txn(&self, txn: Value, options: WriteOptions) -> Result<TxnResponse, Error> {
        if !txn.is_object() {
            return Err(Error::InvalidArgument(
                "a transaction is a JSON object {compare, success, failure}".to_string(),
            ));
        }
        let answer = self
            .write(Method::POST, "/v1/txn".to_string(), object(txn), &options)
            .await?;
        Ok(parse_txn(answer))
    }

    pub async fn range(
        &self,
        spec: RangeSpec,
        limit: Option<u64>,
        options: ReadOptions,
    ) -> Result<RangeResponse, Error> {
        let mut body = Map::new();
        match &spec {
            RangeSpec::Prefix(prefix) => put_bytes(&mut body, "prefix", prefix),
            RangeSpec::Span { start, end } => {
                put_bytes(&mut body, "start", start);
                if let Some(end) = end {
                    put_bytes(&mut body, "end", end);
                }
            }
        }
        if let Some(limit) = limit {
            body.insert("limit".to_string(), limit.into());
        }
        body.insert("read".to_string(), options.level.as_query().into());
        if let Some(min_revision) = options.min_revision {
            body.insert("min_revision".to_string(), min_revision.into());
        }
        let answer = self
            .read(
                Method::POST,
                "/v1/range".to_string(),
                Some(Value::Object(body)),
                &options,
            )
            .await?;
        Ok(parse_range(answer))
    }

    /// Status of the first endpoint that answers.
    pub async fn status(&self) -> Result<Status, Error> {
        let answer = self
            .execute(Request {
                method: Method::GET,
                path: "/v1/status".to_string(),
                body: None,
                to_leader: false,
                safety: Safety::Idempotent,
                timeout_ms: None,
                pinned: None,
            })
            .await?;
        Ok(parse_status(answer.body))
    }

    /// Status of one endpoint (no retry elsewhere).
    pub async fn status_of(&self, endpoint: &str) -> Result<Status, Error> {
        let endpoint = crate::config::normalize_endpoint(endpoint)?;
        let answer = self
            .execute(Request {
                method: Method::GET,
                path: "/v1/status".to_string(),
                body: None,
                to_leader: false,
                safety: Safety::Idempotent,
                timeout_ms: Some(self.config.attempt_timeout_ms),
                pinned: Some(endpoint),
            })
            .await?;
        Ok(parse_status(answer.body))
    }

    pub async fn members(&self) -> Result<MembersResponse, Error> {
        let answer = self
            .execute(Request {
                method: Method::GET,
                path: "/v1/members".to_string(),
                body: None,
                to_leader: true,
                safety: Safety::Idempotent,
                timeout_ms: None,
                pinned: None,
            })
            .await?;
        let body = answer.body;
        Ok(MembersResponse {
            members: parse_members(&body),
            config_version: body
                .get("config_version")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            raw: body,
        })
    }

    async fn admin(
        &self,
        method: Method,
        path: String,
        body: Option<Value>,
    ) -> Result<AdminResponse, Error> {
        let answer = self
            .execute(Request {
                method,
                path,
                body,
                to_leader: true,
                safety: Safety::Unsafe,
                timeout_ms: None,
                pinned: None,
            })
            .await?;
        Ok(AdminResponse {
            header: parse_header(&answer.body),
            raw: answer.body,
        })
    }

    /// Adds a learner.
    pub async fn add_learner(
        &self,
        id: u64,
        peer_addr: &str,
        client_addr: &str,
    ) -> Result<AdminResponse, Error> {
        let body = json!({"id": id, "peer_addr": peer_addr, "client_addr": client_addr});
        self.admin(Method::POST, "/v1/members".to_string(), Some(body))
            .await
    }

    /// Promotes a learner to voter.
    pub async fn promote(&self, id: u64) -> Result<AdminResponse, Error> {
        self.admin(Method::POST, format!("/v1/members/{id}/promote"), None)
            .await
    }

    pub async fn remove_member(&self, id: u64) -> Result<AdminResponse, Error> {
        self.admin(Method::DELETE, format!("/v1/members/{id}"), None)
            .await
    }

    /// Transfers leadership to `target` (None: the best caught-up voter).
    pub async fn transfer_leader(&self, target: Option<u64>) -> Result<AdminResponse, Error> {
        let body = match target {
            Some(target) => json!({"target": target}),
            None => json!({}),
        };
        self.admin(Method::POST, "/v1/leader/transfer".to_string(), Some(body))
            .await
    }

    /// Finalizes a rolling upgrade (docs/upgrades.md): raises the cluster version to `version`
    /// (None: the highest every member's binary supports). Refused with
    /// `ErrorCode::FailedPrecondition` while some member runs an older or unknown binary.
    pub async fn finalize_upgrade(&self, version: Option<u32>) -> Result<FinalizeUpgrade, Error> {
        let body = match version {
            Some(version) => json!({"version": version}),
            None => json!({}),
        };
        let answer = self
            .admin(
                Method::POST,
                "/v1/cluster/finalize-upgrade".to_string(),
                Some(body),
            )
            .await?;
        Ok(FinalizeUpgrade {
            cluster_version: u32_field(&answer.raw, "cluster_version"),
            previous: u32_field(&answer.raw, "previous"),
            header: answer.header,
            raw: answer.raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths() {
        assert_eq!(kv_path(b"a/b c").unwrap(), "/v1/kv/a%2Fb%20c");
        assert_eq!(kv_path(b"x-y_z.~").unwrap(), "/v1/kv/x-y_z.~");
        assert_eq!(kv_path(&[0xff]).unwrap(), "/v1/kv-b64/_w");
        assert_eq!(kv_path(b"..").unwrap(), "/v1/kv-b64/Li4");
        assert!(kv_path(b"").is_err());
    }
}
