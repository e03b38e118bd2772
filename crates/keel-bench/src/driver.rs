//! What a system under test must provide: connections that put, get and compare-and-swap.
//! Each client task owns one connection (one TCP connection for Keel, one HTTP/2 channel for
//! etcd), so N clients are N connections, as in etcd's own benchmark tool.

use crate::config::ReadLevel;
use std::future::Future;

/// A failed operation, by its code: the server's error code (`NOT_LEADER`, `OVERLOADED`, a gRPC
/// status name), or the client's (`TRANSPORT`, `TIMEOUT`, `DECODE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    pub code: String,
    pub message: String,
}

impl OpError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> OpError {
        OpError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Where a connection should point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The current leader (writes, linearizable reads, mixes with writes).
    Leader,
    /// Spread clients over every member: client i uses member i mod n (local reads).
    Spread,
}

pub trait Connection: Send + 'static {
    fn put(&mut self, key: &[u8], value: &[u8])
        -> impl Future<Output = Result<(), OpError>> + Send;

    fn get(
        &mut self,
        key: &[u8],
        level: ReadLevel,
    ) -> impl Future<Output = Result<(), OpError>> + Send;

    /// Ok(true) when the swap happened, Ok(false) when the comparison failed.
    fn cas(
        &mut self,
        key: &[u8],
        expected: &[u8],
        value: &[u8],
    ) -> impl Future<Output = Result<bool, OpError>> + Send;

    /// If `key` holds `expected`, writes `value` to `key` and `key2` atomically. Ok(true) when
    /// the writes happened, Ok(false) when the comparison failed.
    fn txn(
        &mut self,
        key: &[u8],
        key2: &[u8],
        expected: &[u8],
        value: &[u8],
    ) -> impl Future<Output = Result<bool, OpError>> + Send;
}

pub trait Target: Send + Sync + 'static {
    type Conn: Connection;

    /// A short name for reports (`keel`, `etcd`).
    fn name(&self) -> &'static str;

    fn connect(
        &self,
        client_index: usize,
        route: Route,
    ) -> impl Future<Output = anyhow::Result<Self::Conn>> + Send;
}
