//! Reading an audit file line by line with bounded memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::AuditError;
use crate::record::RECORD_LINE_BYTES_MAX;

/// Read buffer size for audit files.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// One line as read: bytes without the newline (empty if the line was too long).
pub(crate) struct RawLine {
    pub bytes: Vec<u8>,
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// Bytes the line occupies in the file, newline included when present.
    pub file_bytes: u64,
    /// False for a final line without a newline (a torn append).
    pub terminated: bool,
    /// The line exceeded `RECORD_LINE_BYTES_MAX`; its bytes were skipped, not kept.
    pub too_long: bool,
}

pub(crate) struct LineReader {
    reader: BufReader<File>,
    path: PathBuf,
    offset: u64,
}

impl LineReader {
    pub(crate) fn open(path: &Path) -> Result<LineReader, AuditError> {
        let file = File::open(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            op: "open for reading",
            source,
        })?;
        // Only regular files: a device or pipe could stream forever.
        let is_file = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        if !is_file {
            return Err(AuditError::Io {
                path: path.to_path_buf(),
                op: "read (not a regular file)",
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        Ok(LineReader {
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            path: path.to_path_buf(),
            offset: 0,
        })
    }

    fn io_error(path: &Path, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.to_path_buf(),
            op: "read",
            source,
        }
    }

    /// The next line, or None at the end of the file.
    pub(crate) fn next_line(&mut self) -> Result<Option<RawLine>, AuditError> {
        let offset = self.offset;
        let mut bytes = Vec::new();
        let limit = RECORD_LINE_BYTES_MAX as u64 + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| Self::io_error(&self.path, e))?;
        if read == 0 {
            return Ok(None);
        }
        let mut file_bytes = read as u64;
        let mut terminated = bytes.last() == Some(&b'\n');
        let mut too_long = false;
        if terminated {
            bytes.pop();
        } else if read as u64 == limit {
            // Over the limit: skip to the end of this line without keeping it.
            too_long = true;
            bytes = Vec::new();
            loop {
                let path = &self.path;
                let buffer = self
                    .reader
                    .fill_buf()
                    .map_err(|e| Self::io_error(path, e))?;
                if buffer.is_empty() {
                    break;
                }
                match buffer.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        self.reader.consume(at + 1);
                        file_bytes += at as u64 + 1;
                        terminated = true;
                        break;
                    }
                    None => {
                        let len = buffer.len();
                        self.reader.consume(len);
                        file_bytes += len as u64;
                    }
                }
            }
        }
        self.offset += file_bytes;
        assert!(bytes.len() <= RECORD_LINE_BYTES_MAX);
        Ok(Some(RawLine {
            bytes,
            offset,
            file_bytes,
            terminated,
            too_long,
        }))
    }
}
