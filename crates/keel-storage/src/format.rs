//! The data directory's format version: one small file, `FORMAT`, that says which release's
//! rules the directory follows (docs/storage.md, "Data format version").
//!
//! ```text
//!  0  [u8; 8] magic "KEELFMT\0"
//!  8  u32 LE  data format version
//! 12  u32 LE  crc32c over bytes 0..12
//! ```
//!
//! Each file inside (WAL segment and record, hard-state slot, snapshot) also carries its own
//! layout byte; `FORMAT` is what gates rollback. A binary reads every format from
//! [`DATA_FORMAT_MIN`] to [`DATA_FORMAT_MAX`] and refuses a directory whose format is newer
//! ([`crate::Error::NewerFormat`]) before it reads anything else. A new directory is created
//! at [`DATA_FORMAT_MIN`] (even by a binary that supports more), so that a node can be rolled
//! back to the previous release until the cluster finalizes the upgrade; only finalization
//! raises the format ([`crate::Storage::set_data_format`]), and nothing ever lowers it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::{Io, IoFile};

pub const FORMAT_FILE: &str = "FORMAT";
const FORMAT_TMP_FILE: &str = "FORMAT.tmp";
const FORMAT_MAGIC: [u8; 8] = *b"KEELFMT\0";
const FORMAT_FILE_BYTES: usize = 16;

/// The oldest data format this binary reads (and the one it creates directories in).
pub const DATA_FORMAT_MIN: u32 = 1;
/// The newest data format this binary reads and may switch a directory to. The test build
/// `--features next-version` stands in for the next release (docs/upgrades.md).
pub const DATA_FORMAT_MAX: u32 = if cfg!(feature = "next-version") { 2 } else { 1 };

pub(crate) fn encode(format: u32) -> [u8; FORMAT_FILE_BYTES] {
    assert!(format >= DATA_FORMAT_MIN);
    let mut out = [0u8; FORMAT_FILE_BYTES];
    out[0..8].copy_from_slice(&FORMAT_MAGIC);
    out[8..12].copy_from_slice(&format.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..12]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the file's bytes; `Err` says why they are not a format file.
pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<u32, &'static str> {
    if bytes.len() != FORMAT_FILE_BYTES {
        return Err("format file has the wrong size");
    }
    if bytes[0..8] != FORMAT_MAGIC {
        return Err("bad format file magic");
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[0..12]) != crc {
        return Err("format file checksum mismatch");
    }
    let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if format < DATA_FORMAT_MIN {
        return Err("format version 0 is not a format");
    }
    Ok(format)
}

/// Reads the directory's format (None: no `FORMAT` file yet). A format newer than
/// [`DATA_FORMAT_MAX`] is [`Error::NewerFormat`]; damage is [`Error::Corrupt`].
pub(crate) fn read<I: Io>(io: &I, dir: &Path) -> Result<Option<u32>> {
    let path = dir.join(FORMAT_FILE);
    if !io.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
        return Ok(None);
    }
    let file = io.open(&path).map_err(|e| Error::io("open", &path, e))?;
    let len = file.len_bytes().map_err(|e| Error::io("stat", &path, e))?;
    if len != FORMAT_FILE_BYTES as u64 {
        return Err(Error::corrupt(
            &path,
            0,
            format!("format file is {len} bytes, expected {FORMAT_FILE_BYTES}"),
        ));
    }
    let mut bytes = [0u8; FORMAT_FILE_BYTES];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io("read", &path, e))?;
    let format = decode(&bytes).map_err(|reason| Error::corrupt(&path, 0, reason))?;
    if format > DATA_FORMAT_MAX {
        return Err(Error::NewerFormat {
            path,
            found: format,
            supported_max: DATA_FORMAT_MAX,
        });
    }
    Ok(Some(format))
}

/// Writes the format durably and atomically: temporary file synced, renamed over `FORMAT`,
/// directory synced. A crash leaves either the old or the new format, never neither.
pub(crate) fn write<I: Io>(io: &I, dir: &Path, format: u32) -> Result<()> {
    assert!((DATA_FORMAT_MIN..=DATA_FORMAT_MAX).contains(&format));
    let tmp = dir.join(FORMAT_TMP_FILE);
    let path = dir.join(FORMAT_FILE);
    let mut file = io.create(&tmp).map_err(|e| {
        if crate::error::is_no_space(&e) {
            Error::NoSpace { path: tmp.clone() }
        } else {
            Error::io("create", &tmp, e)
        }
    })?;
    file.write_all_at(&encode(format), 0)
        .map_err(|e| Error::fatal("write", &tmp, e))?;
    file.sync_data()
        .map_err(|e| Error::fatal("fdatasync", &tmp, e))?;
    drop(file);
    io.rename(&tmp, &path)
        .map_err(|e| Error::fatal("rename", &path, e))?;
    io.sync_dir(dir)
        .map_err(|e| Error::fatal("fsync dir", dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        for format in DATA_FORMAT_MIN..=DATA_FORMAT_MAX {
            assert_eq!(decode(&encode(format)), Ok(format));
        }
        let good = encode(1);
        for at in 0..FORMAT_FILE_BYTES {
            let mut bad = good;
            bad[at] ^= 0x10;
            assert!(decode(&bad).is_err(), "flipped byte {at} accepted");
        }
        assert!(decode(&good[..15]).is_err());
    }
}
