//! The Keel driver: HTTP/1.1 JSON (api-contract.md) over one keep-alive TCP connection per
//! client, with hyper's low-level client (no pool, no per-request allocation beyond the body).

use crate::config::ReadLevel;
use crate::driver::{Connection, OpError, Route, Target};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::time::Duration;

/// Largest response body the driver reads (a get returns one value).
pub const RESPONSE_BYTES_MAX: usize = 4 << 20;
/// Connect timeout.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Endpoints given to one run.
pub const ENDPOINTS_MAX: usize = 16;

pub struct KeelTarget {
    endpoints: Vec<String>,
    leader: String,
}

impl KeelTarget {
    /// Asks each endpoint's `/v1/status` for the leader's client address.
    pub async fn discover(endpoints: &[String]) -> Result<KeelTarget> {
        if endpoints.is_empty() || endpoints.len() > ENDPOINTS_MAX {
            bail!(
                "give 1..={ENDPOINTS_MAX} endpoints, got {}",
                endpoints.len()
            );
        }
        let endpoints: Vec<String> = endpoints.iter().map(|e| strip_scheme(e)).collect();
        let mut last_error = None;
        for endpoint in &endpoints {
            match status(endpoint).await {
                Ok(status) => {
                    if status["role"] == "leader" {
                        return Ok(KeelTarget {
                            leader: endpoint.clone(),
                            endpoints,
                        });
                    }
                    if let Some(addr) = status["leader"]["client_addr"].as_str() {
                        return Ok(KeelTarget {
                            leader: addr.to_string(),
                            endpoints,
                        });
                    }
                    last_error = Some(anyhow::anyhow!("{endpoint} knows no leader"));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one endpoint")).context("finding the Keel leader")
    }

    pub fn leader(&self) -> &str {
        &self.leader
    }
}

fn strip_scheme(endpoint: &str) -> String {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

async fn status(endpoint: &str) -> Result<Value> {
    let mut conn = KeelConn::open(endpoint.to_string()).await?;
    let (code, body) = conn
        .request(Method::GET, "/v1/status".to_string(), None)
        .await
        .map_err(|e| anyhow::anyhow!("{endpoint}: {}: {}", e.code, e.message))?;
    if code != StatusCode::OK {
        bail!("{endpoint}/v1/status answered {code}");
    }
    serde_json::from_slice(&body).context("decoding /v1/status")
}

impl Target for KeelTarget {
    type Conn = KeelConn;

    fn name(&self) -> &'static str {
        "keel"
    }

    async fn connect(&self, client_index: usize, route: Route) -> Result<KeelConn> {
        let addr = match route {
            Route::Leader => self.leader.clone(),
            Route::Spread => self.endpoints[client_index % self.endpoints.len()].clone(),
        };
        KeelConn::open(addr).await
    }
}

pub struct KeelConn {
    addr: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

async fn handshake(addr: &str) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .with_context(|| format!("connecting to {addr}: timed out"))?
    .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the peer closes; either is fine.
        let _ = connection.await;
    });
    Ok(sender)
}

impl KeelConn {
    pub async fn open(addr: String) -> Result<KeelConn> {
        let sender = handshake(&addr).await?;
        Ok(KeelConn {
            addr,
            sender: Some(sender),
        })
    }

    async fn request(
        &mut self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), OpError> {
        if self.sender.is_none() {
            let sender = handshake(&self.addr)
                .await
                .map_err(|e| OpError::new("TRANSPORT", format!("{e:#}")))?;
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected above");
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.as_str());
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| OpError::new("REQUEST", e.to_string()))?;
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| OpError::new("TRANSPORT", e.to_string()));
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        match result {
            Ok((status, Ok(collected))) => Ok((status, collected.to_bytes())),
            Ok((_, Err(e))) => {
                self.sender = None;
                Err(e)
            }
            Err(e) => {
                self.sender = None;
                Err(OpError::new("TRANSPORT", e.to_string()))
            }
        }
    }

    /// Turns a non-2xx answer into its error code; follows a NOT_LEADER hint for later requests.
    fn error_of(&mut self, status: StatusCode, body: &[u8]) -> OpError {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return OpError::new(
                format!("HTTP_{}", status.as_u16()),
                "undecodable error body",
            );
        };
        let code = value["code"].as_str().unwrap_or("UNKNOWN").to_string();
        if code == "NOT_LEADER" {
            if let Some(addr) = value["leader"]["client_addr"].as_str() {
                if addr != self.addr {
                    self.addr = addr.to_string();
                    self.sender = None;
                }
            }
        }
        let message = value["message"].as_str().unwrap_or("").to_string();
        OpError::new(code, message)
    }

    /// POSTs a CAS or txn body and returns its `succeeded` field.
    async fn post_succeeded(&mut self, path: &str, body: Vec<u8>) -> Result<bool, OpError> {
        let (status, response) = self
            .request(Method::POST, path.to_string(), Some(body))
            .await?;
        if !status.is_success() {
            return Err(self.error_of(status, &response));
        }
        let value: Value =
            serde_json::from_slice(&response).map_err(|e| OpError::new("DECODE", e.to_string()))?;
        value["succeeded"]
            .as_bool()
            .ok_or_else(|| OpError::new("DECODE", format!("{path} answer without succeeded")))
    }
}

fn text(bytes: &[u8]) -> Result<&str, OpError> {
    std::str::from_utf8(bytes).map_err(|_| OpError::new("REQUEST", "keys and values must be UTF-8"))
}

impl Connection for KeelConn {
    async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), OpError> {
        let path = format!("/v1/kv/{}", text(key)?);
        let body = serde_json::to_vec(&serde_json::json!({ "value": text(value)? }))
            .map_err(|e| OpError::new("REQUEST", e.to_string()))?;
        let (status, response) = self.request(Method::PUT, path, Some(body)).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.error_of(status, &response))
        }
    }

    async fn get(&mut self, key: &[u8], level: ReadLevel) -> Result<(), OpError> {
        let path = format!("/v1/kv/{}?read={}", text(key)?, level.as_query());
        let (status, response) = self.request(Method::GET, path, None).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.error_of(status, &response))
        }
    }

    async fn cas(&mut self, key: &[u8], expected: &[u8], value: &[u8]) -> Result<bool, OpError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "key": text(key)?,
            "expected_value": text(expected)?,
            "value": text(value)?,
        }))
        .map_err(|e| OpError::new("REQUEST", e.to_string()))?;
        self.post_succeeded("/v1/cas", body).await
    }

    async fn txn(
        &mut self,
        key: &[u8],
        key2: &[u8],
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, OpError> {
        let value = text(value)?;
        let body = serde_json::to_vec(&serde_json::json!({
            "compare": [{"key": text(key)?, "target": "value", "op": "==", "value": text(expected)?}],
            "success": [
                {"put": {"key": text(key)?, "value": value}},
                {"put": {"key": text(key2)?, "value": value}},
            ],
            "failure": [],
        }))
        .map_err(|e| OpError::new("REQUEST", e.to_string()))?;
        self.post_succeeded("/v1/txn", body).await
    }
}
