//! Error type. Three classes matter to callers:
//! - [`Error::Fatal`]: an fsync/fdatasync or a write after preallocation failed. The kernel may have
//!   dropped dirty pages, so the process must stop; never retry (the store refuses further work).
//! - [`Error::NoSpace`]: preallocating a new segment hit ENOSPC. Nothing was written; the caller may
//!   enter a read-only degraded mode and retry the same `sync` once space returns.
//! - [`Error::Corrupt`]: damage to data that was (or may have been) synced; names file and offset.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// A failed fsync/fdatasync or write: the store is poisoned, the process must stop.
    Fatal {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// ENOSPC while preallocating a segment or creating a file; nothing was written, retry later.
    NoSpace { path: PathBuf },
    /// Damage to durable data: refuse to start (or open in repair mode).
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Another process (or another open in this process) holds the data directory lock.
    Locked { path: PathBuf },
    /// An ordinary IO error that did not touch durability (open, read, list).
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The caller broke an API precondition (index not contiguous, too large, ...).
    InvalidArgument(String),
    /// The store was poisoned by an earlier fatal error.
    Poisoned(String),
    /// The data directory's format (its `FORMAT` file) is newer than this binary reads: the
    /// cluster finalized an upgrade to a later release. Nothing was read or changed.
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported_max: u32,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// True for errors after which the process must stop (never retry).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Fatal { .. } | Error::Poisoned(_))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn fatal(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Fatal {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

pub(crate) fn is_no_space(e: &io::Error) -> bool {
    e.raw_os_error() == Some(28) // ENOSPC on Linux
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Fatal { op, path, source } => write!(
                f,
                "fatal storage error: {op} failed on {}: {source} (the process must stop; a failed sync is never retried)",
                path.display()
            ),
            Error::NoSpace { path } => write!(f, "no space left on device while preallocating {}", path.display()),
            Error::Corrupt { path, offset, reason } => {
                write!(f, "corruption in {} at offset {offset}: {reason}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "data directory is locked by another process (lock file {})",
                path.display()
            ),
            Error::Io { op, path, source } => write!(f, "{op} failed on {}: {source}", path.display()),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Poisoned(msg) => write!(f, "storage is stopped after an earlier fatal error: {msg}"),
            Error::NewerFormat { path, found, supported_max } => write!(
                f,
                "data format {found} ({}) is newer than this binary supports (up to {supported_max}): \
                 the cluster finalized an upgrade to a later release, so this node cannot be rolled \
                 back; run the newer binary",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Fatal { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
