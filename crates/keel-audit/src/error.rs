//! Errors: each names the file and, for damage, the 1-based line.

use std::fmt;
use std::path::PathBuf;

use crate::verify::DamageKind;

#[derive(Debug)]
pub enum AuditError {
    /// The file could not be read, written or synced.
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    /// The file's chain is broken (`AuditLog::open` refuses it; `anchors_from` will not trust it).
    Damaged {
        path: PathBuf,
        line: u64,
        kind: DamageKind,
        detail: String,
    },
    /// `open` was given a node id or cluster id that does not fit the limits.
    BadIdentity { reason: String },
    /// `append` was given a record that breaks a limit or a format rule; nothing was written.
    InvalidRecord { reason: String },
    /// An earlier write or sync failed: the file's tail is uncertain. Reopen the log (open
    /// re-verifies it and cuts a torn final line).
    Poisoned { path: PathBuf },
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::Io { path, op, source } => {
                write!(f, "{}: cannot {op}: {source}", path.display())
            }
            AuditError::Damaged {
                path,
                line,
                kind,
                detail,
            } => write!(
                f,
                "{}: audit chain damaged at line {line} ({}): {detail}",
                path.display(),
                kind.as_str()
            ),
            AuditError::BadIdentity { reason } => write!(f, "bad audit identity: {reason}"),
            AuditError::InvalidRecord { reason } => write!(f, "invalid audit record: {reason}"),
            AuditError::Poisoned { path } => write!(
                f,
                "{}: an earlier audit write failed; reopen the log before appending",
                path.display()
            ),
        }
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuditError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
