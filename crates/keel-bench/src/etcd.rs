//! The etcd driver (feature `etcd`): etcd's native v3 gRPC API through the `etcd-client` crate,
//! one HTTP/2 channel per client. Reads: `linearizable` is etcd's default quorum read; every
//! other level is its serializable (member-local) read.

use crate::config::ReadLevel;
use crate::driver::{Connection, OpError, Route, Target};
use anyhow::{bail, Context, Result};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

/// Endpoints given to one run.
pub const ENDPOINTS_MAX: usize = 16;

pub struct EtcdTarget {
    endpoints: Vec<String>,
    leader: String,
}

fn with_scheme(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

impl EtcdTarget {
    /// Asks each endpoint's maintenance status which member leads; writes and linearizable reads
    /// go straight to it (as Keel's do), so neither system pays a forwarding hop.
    pub async fn discover(endpoints: &[String]) -> Result<EtcdTarget> {
        if endpoints.is_empty() || endpoints.len() > ENDPOINTS_MAX {
            bail!(
                "give 1..={ENDPOINTS_MAX} endpoints, got {}",
                endpoints.len()
            );
        }
        let endpoints: Vec<String> = endpoints.iter().map(|e| with_scheme(e)).collect();
        for endpoint in &endpoints {
            let mut client = Client::connect([endpoint.as_str()], None)
                .await
                .with_context(|| format!("connecting to etcd at {endpoint}"))?;
            let status = client
                .status()
                .await
                .with_context(|| format!("etcd status of {endpoint}"))?;
            let member = status.header().map(|h| h.member_id()).unwrap_or(0);
            if member != 0 && member == status.leader() {
                return Ok(EtcdTarget {
                    leader: endpoint.clone(),
                    endpoints,
                });
            }
        }
        bail!("no etcd endpoint says it is the leader")
    }

    pub fn leader(&self) -> &str {
        &self.leader
    }
}

impl Target for EtcdTarget {
    type Conn = EtcdConn;

    fn name(&self) -> &'static str {
        "etcd"
    }

    async fn connect(&self, client_index: usize, route: Route) -> Result<EtcdConn> {
        let endpoint = match route {
            Route::Leader => self.leader.clone(),
            Route::Spread => self.endpoints[client_index % self.endpoints.len()].clone(),
        };
        let client = Client::connect([endpoint.as_str()], None)
            .await
            .with_context(|| format!("connecting to etcd at {endpoint}"))?;
        Ok(EtcdConn { client })
    }
}

pub struct EtcdConn {
    client: Client,
}

fn op_error(e: etcd_client::Error) -> OpError {
    match e {
        etcd_client::Error::GRpcStatus(status) => OpError::new(
            format!("GRPC_{:?}", status.code()).to_uppercase(),
            status.message().to_string(),
        ),
        other => OpError::new("TRANSPORT", other.to_string()),
    }
}

impl Connection for EtcdConn {
    async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), OpError> {
        self.client
            .put(key, value, None)
            .await
            .map(|_| ())
            .map_err(op_error)
    }

    async fn get(&mut self, key: &[u8], level: ReadLevel) -> Result<(), OpError> {
        let options = match level {
            ReadLevel::Linearizable => None,
            ReadLevel::Bounded { .. } | ReadLevel::Any => {
                Some(GetOptions::new().with_serializable())
            }
        };
        self.client
            .get(key, options)
            .await
            .map(|_| ())
            .map_err(op_error)
    }

    async fn cas(&mut self, key: &[u8], expected: &[u8], value: &[u8]) -> Result<bool, OpError> {
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)]);
        self.client
            .txn(txn)
            .await
            .map(|r| r.succeeded())
            .map_err(op_error)
    }

    async fn txn(
        &mut self,
        key: &[u8],
        key2: &[u8],
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, OpError> {
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None), TxnOp::put(key2, value, None)]);
        self.client
            .txn(txn)
            .await
            .map(|r| r.succeeded())
            .map_err(op_error)
    }
}
