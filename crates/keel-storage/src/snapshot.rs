//! Snapshots in `<dir>/snap/`: written to `<name>.tmp`, fdatasynced, renamed, directory synced;
//! older snapshots are removed only after the new one is durable. Streaming in bounded chunks
//! both ways; an install is verified (length and CRC32C from the sender) before it is published.
//!
//! File `<index:016x>-<term:016x>.snap` (little-endian):
//! ```text
//! header (64 bytes)
//!  0  [u8; 8] magic "KEELSNAP"
//!  8  u8  format_version (1)
//!  9  [u8; 3] reserved (0)
//! 12  u32 metadata_len   (<= 16 MiB)
//! 16  u64 index
//! 24  u64 term
//! 32  u64 data_len
//! 40  [u8; 20] reserved (0)
//! 60  u32 crc32c over bytes 0..60
//! metadata  [metadata_len]
//! data      [data_len]
//! trailer (16 bytes)
//!  0  u32 crc32c of metadata
//!  4  u32 crc32c of data
//!  8  [u8; 8] magic "KEELSEND"
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::{Io, IoFile};
use crate::record::u64_at;

pub const SNAPSHOT_HEADER_BYTES: usize = 64;
pub const SNAPSHOT_TRAILER_BYTES: usize = 16;
pub const SNAPSHOT_METADATA_BYTES_MAX: usize = 16 << 20;
pub const SNAPSHOT_DATA_BYTES_MAX: u64 = 1 << 40;
/// Chunk size used when verifying a snapshot at open.
const VERIFY_CHUNK_BYTES: usize = 1 << 20;
const MAGIC: [u8; 8] = *b"KEELSNAP";
const TRAILER_MAGIC: [u8; 8] = *b"KEELSEND";
const FORMAT_VERSION: u8 = 1;

/// A durable snapshot's description. `metadata` is opaque (the core's configuration, session
/// table, last entry stamp...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
    pub metadata: Vec<u8>,
    pub data_bytes: u64,
    pub data_crc32c: u32,
}

fn file_name(index: u64, term: u64) -> String {
    format!("{index:016x}-{term:016x}.snap")
}

fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".snap")?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

fn encode_header(
    index: u64,
    term: u64,
    metadata_len: u32,
    data_len: u64,
) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut h = [0u8; SNAPSHOT_HEADER_BYTES];
    h[0..8].copy_from_slice(&MAGIC);
    h[8] = FORMAT_VERSION;
    h[12..16].copy_from_slice(&metadata_len.to_le_bytes());
    h[16..24].copy_from_slice(&index.to_le_bytes());
    h[24..32].copy_from_slice(&term.to_le_bytes());
    h[32..40].copy_from_slice(&data_len.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a snapshot header: (index, term, metadata_len, data_len). Never panics.
pub fn decode_header(h: &[u8]) -> std::result::Result<(u64, u64, usize, u64), &'static str> {
    if h.len() < SNAPSHOT_HEADER_BYTES {
        return Err("snapshot shorter than its header");
    }
    if h[0..8] != MAGIC {
        return Err("bad snapshot magic");
    }
    if crc32c::crc32c(&h[0..60]) != u32::from_le_bytes(h[60..64].try_into().expect("4 bytes")) {
        return Err("snapshot header checksum mismatch");
    }
    if h[8] != FORMAT_VERSION {
        return Err("unknown snapshot format version");
    }
    let metadata_len = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes")) as usize;
    let data_len = u64_at(h, 32);
    if metadata_len > SNAPSHOT_METADATA_BYTES_MAX || data_len > SNAPSHOT_DATA_BYTES_MAX {
        return Err("snapshot lengths above the limits");
    }
    Ok((u64_at(h, 16), u64_at(h, 24), metadata_len, data_len))
}

/// Reads and fully verifies a snapshot file; returns its description.
pub(crate) fn verify_file<I: Io>(io: &I, path: &Path) -> Result<SnapshotMeta> {
    let file = io
        .open(path)
        .map_err(|e| Error::io("open snapshot", path, e))?;
    let len = file
        .len_bytes()
        .map_err(|e| Error::io("stat snapshot", path, e))?;
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    if len < (SNAPSHOT_HEADER_BYTES + SNAPSHOT_TRAILER_BYTES) as u64 {
        return Err(Error::corrupt(
            path,
            0,
            format!("snapshot file of {len} bytes is shorter than header and trailer"),
        ));
    }
    file.read_exact_at(&mut header, 0)
        .map_err(|e| Error::io("read snapshot", path, e))?;
    let (index, term, metadata_len, data_len) =
        decode_header(&header).map_err(|r| Error::corrupt(path, 0, r))?;
    let expected_len =
        (SNAPSHOT_HEADER_BYTES + metadata_len + SNAPSHOT_TRAILER_BYTES) as u64 + data_len;
    if len != expected_len {
        return Err(Error::corrupt(
            path,
            0,
            format!("snapshot is {len} bytes, header says {expected_len}"),
        ));
    }
    let mut metadata = vec![0u8; metadata_len];
    file.read_exact_at(&mut metadata, SNAPSHOT_HEADER_BYTES as u64)
        .map_err(|e| Error::io("read snapshot", path, e))?;
    let data_start = (SNAPSHOT_HEADER_BYTES + metadata_len) as u64;
    let mut crc = 0u32;
    let mut chunk = vec![0u8; VERIFY_CHUNK_BYTES];
    let mut done = 0u64;
    while done < data_len {
        let n = (data_len - done).min(VERIFY_CHUNK_BYTES as u64) as usize;
        file.read_exact_at(&mut chunk[..n], data_start + done)
            .map_err(|e| Error::io("read snapshot", path, e))?;
        crc = crc32c::crc32c_append(crc, &chunk[..n]);
        done += n as u64;
    }
    let trailer_at = data_start + data_len;
    let mut trailer = [0u8; SNAPSHOT_TRAILER_BYTES];
    file.read_exact_at(&mut trailer, trailer_at)
        .map_err(|e| Error::io("read snapshot", path, e))?;
    if trailer[8..16] != TRAILER_MAGIC {
        return Err(Error::corrupt(
            path,
            trailer_at,
            "bad snapshot trailer magic",
        ));
    }
    let metadata_crc = u32::from_le_bytes(trailer[0..4].try_into().expect("4 bytes"));
    let data_crc = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(&metadata) != metadata_crc {
        return Err(Error::corrupt(
            path,
            SNAPSHOT_HEADER_BYTES as u64,
            "snapshot metadata checksum mismatch",
        ));
    }
    if crc != data_crc {
        return Err(Error::corrupt(
            path,
            data_start,
            "snapshot data checksum mismatch",
        ));
    }
    Ok(SnapshotMeta {
        index,
        term,
        metadata,
        data_bytes: data_len,
        data_crc32c: crc,
    })
}

/// What opening the snapshot directory found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotRecovery {
    /// Leftover temporary or superseded files removed.
    pub removed: Vec<PathBuf>,
    /// Repair mode discarded a damaged snapshot: the reason.
    pub repaired: Option<String>,
}

pub struct SnapshotStore<I: Io> {
    io: I,
    dir: PathBuf,
    latest: Option<SnapshotMeta>,
    poisoned: Option<String>,
}

impl<I: Io> SnapshotStore<I> {
    pub fn open(
        io: I,
        snap_dir: &Path,
        repair: bool,
    ) -> Result<(SnapshotStore<I>, SnapshotRecovery)> {
        io.create_dir_all(snap_dir)
            .map_err(|e| Error::io("create dir", snap_dir, e))?;
        let names = io
            .list_dir(snap_dir)
            .map_err(|e| Error::io("list", snap_dir, e))?;
        let mut recovery = SnapshotRecovery::default();
        let mut snaps: Vec<(u64, u64, String)> = Vec::new();
        for name in names {
            if name.ends_with(".tmp") {
                let path = snap_dir.join(&name);
                io.remove_file(&path)
                    .map_err(|e| Error::io("remove", &path, e))?;
                recovery.removed.push(path);
            } else if let Some((index, term)) = parse_file_name(&name) {
                snaps.push((index, term, name));
            }
        }
        snaps.sort();
        let mut latest = None;
        while let Some((_, _, name)) = snaps.pop() {
            let path = snap_dir.join(&name);
            match verify_file(&io, &path) {
                Ok(meta) => {
                    latest = Some(meta);
                    break;
                }
                Err(e @ Error::Corrupt { .. }) if repair => {
                    recovery.repaired = Some(e.to_string());
                    io.remove_file(&path)
                        .map_err(|e| Error::io("remove", &path, e))?;
                    recovery.removed.push(path);
                }
                Err(e) => return Err(e),
            }
        }
        // Anything older than the verified snapshot was superseded before a crash.
        for (_, _, name) in snaps {
            let path = snap_dir.join(&name);
            io.remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
            recovery.removed.push(path);
        }
        if !recovery.removed.is_empty() {
            io.sync_dir(snap_dir)
                .map_err(|e| Error::fatal("sync dir", snap_dir, e))?;
        }
        Ok((
            SnapshotStore {
                io,
                dir: snap_dir.to_path_buf(),
                latest,
                poisoned: None,
            },
            recovery,
        ))
    }

    pub fn latest(&self) -> Option<&SnapshotMeta> {
        self.latest.as_ref()
    }

    /// Starts writing a snapshot of `data_bytes` bytes (streamed with [`SnapshotWriter::write`]).
    pub fn begin(
        &self,
        index: u64,
        term: u64,
        metadata: &[u8],
        data_bytes: u64,
    ) -> Result<SnapshotWriter<I>> {
        if let Some(msg) = &self.poisoned {
            return Err(Error::Poisoned(msg.clone()));
        }
        if metadata.len() > SNAPSHOT_METADATA_BYTES_MAX || data_bytes > SNAPSHOT_DATA_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "snapshot metadata {} bytes / data {data_bytes} bytes above the limits",
                metadata.len()
            )));
        }
        if let Some(latest) = &self.latest {
            if index <= latest.index {
                return Err(Error::InvalidArgument(format!(
                    "snapshot at index {index} is not newer than the current one at {}",
                    latest.index
                )));
            }
        }
        let final_path = self.dir.join(file_name(index, term));
        let tmp_path = self.dir.join(format!("{}.tmp", file_name(index, term)));
        let mut file = self.io.create(&tmp_path).map_err(|e| {
            if crate::error::is_no_space(&e) {
                Error::NoSpace {
                    path: tmp_path.clone(),
                }
            } else {
                Error::io("create", &tmp_path, e)
            }
        })?;
        let header = encode_header(index, term, metadata.len() as u32, data_bytes);
        let write = file
            .write_all_at(&header, 0)
            .and_then(|()| file.write_all_at(metadata, SNAPSHOT_HEADER_BYTES as u64));
        if let Err(e) = write {
            let _ = self.io.remove_file(&tmp_path);
            return Err(if crate::error::is_no_space(&e) {
                Error::NoSpace { path: tmp_path }
            } else {
                Error::io("write", &tmp_path, e)
            });
        }
        Ok(SnapshotWriter {
            file,
            tmp_path,
            final_path,
            index,
            term,
            metadata: metadata.to_vec(),
            data_bytes,
            written: 0,
            crc: 0,
        })
    }

    /// Writes a whole snapshot at once.
    pub fn save(
        &mut self,
        index: u64,
        term: u64,
        metadata: &[u8],
        data: &[u8],
    ) -> Result<SnapshotMeta> {
        let mut writer = self.begin(index, term, metadata, data.len() as u64)?;
        writer.write(0, data)?;
        self.finish(writer, None)
    }

    /// Verifies (all bytes received; CRC32C equal to `expected_data_crc32c` when the sender
    /// provided one), makes the snapshot durable, publishes it, then removes older ones.
    pub fn finish(
        &mut self,
        mut writer: SnapshotWriter<I>,
        expected_data_crc32c: Option<u32>,
    ) -> Result<SnapshotMeta> {
        if writer.written != writer.data_bytes {
            let _ = self.io.remove_file(&writer.tmp_path);
            return Err(Error::InvalidArgument(format!(
                "snapshot incomplete: {} of {} data bytes received",
                writer.written, writer.data_bytes
            )));
        }
        if let Some(expected) = expected_data_crc32c {
            if expected != writer.crc {
                let _ = self.io.remove_file(&writer.tmp_path);
                return Err(Error::corrupt(
                    &writer.tmp_path,
                    0,
                    format!(
                        "received snapshot data checksum {:08x} != sender's {expected:08x}",
                        writer.crc
                    ),
                ));
            }
        }
        let mut trailer = [0u8; SNAPSHOT_TRAILER_BYTES];
        trailer[0..4].copy_from_slice(&crc32c::crc32c(&writer.metadata).to_le_bytes());
        trailer[4..8].copy_from_slice(&writer.crc.to_le_bytes());
        trailer[8..16].copy_from_slice(&TRAILER_MAGIC);
        let trailer_at = (SNAPSHOT_HEADER_BYTES + writer.metadata.len()) as u64 + writer.data_bytes;
        if let Err(e) = writer.file.write_all_at(&trailer, trailer_at) {
            let _ = self.io.remove_file(&writer.tmp_path);
            return Err(Error::io("write", &writer.tmp_path, e));
        }
        let durable = writer
            .file
            .sync_data()
            .map_err(|e| Error::fatal("fdatasync", &writer.tmp_path, e))
            .and_then(|()| {
                self.io
                    .rename(&writer.tmp_path, &writer.final_path)
                    .map_err(|e| Error::io("rename", &writer.tmp_path, e))
            })
            .and_then(|()| {
                self.io
                    .sync_dir(&self.dir)
                    .map_err(|e| Error::fatal("sync dir", &self.dir, e))
            });
        if let Err(e) = durable {
            if e.is_fatal() {
                self.poisoned = Some(e.to_string());
            }
            return Err(e);
        }
        let meta = SnapshotMeta {
            index: writer.index,
            term: writer.term,
            metadata: writer.metadata,
            data_bytes: writer.data_bytes,
            data_crc32c: writer.crc,
        };
        // The new snapshot is durable: only now remove the older ones.
        let names = self
            .io
            .list_dir(&self.dir)
            .map_err(|e| Error::io("list", &self.dir, e))?;
        let mut removed = false;
        for name in names {
            if let Some((index, _)) = parse_file_name(&name) {
                if index < meta.index {
                    let path = self.dir.join(&name);
                    self.io
                        .remove_file(&path)
                        .map_err(|e| Error::io("remove", &path, e))?;
                    removed = true;
                }
            }
        }
        if removed {
            if let Err(e) = self.io.sync_dir(&self.dir) {
                let error = Error::fatal("sync dir", &self.dir, e);
                self.poisoned = Some(error.to_string());
                return Err(error);
            }
        }
        self.latest = Some(meta.clone());
        Ok(meta)
    }

    /// Opens the latest snapshot for streaming its data in bounded chunks.
    pub fn reader(&self) -> Result<Option<SnapshotReader<I>>> {
        let Some(meta) = self.latest.clone() else {
            return Ok(None);
        };
        let path = self.dir.join(file_name(meta.index, meta.term));
        let file = self
            .io
            .open(&path)
            .map_err(|e| Error::io("open snapshot", &path, e))?;
        Ok(Some(SnapshotReader {
            file,
            path,
            data_start: (SNAPSHOT_HEADER_BYTES + meta.metadata.len()) as u64,
            meta,
            read: 0,
            crc: 0,
        }))
    }
}

/// A snapshot being written (locally or by an install); durable only after `finish`.
pub struct SnapshotWriter<I: Io> {
    file: I::File,
    tmp_path: PathBuf,
    final_path: PathBuf,
    index: u64,
    term: u64,
    metadata: Vec<u8>,
    data_bytes: u64,
    written: u64,
    crc: u32,
}

impl<I: Io> SnapshotWriter<I> {
    /// Appends the chunk that starts at data offset `offset` (must equal the bytes written so far).
    pub fn write(&mut self, offset: u64, chunk: &[u8]) -> Result<()> {
        if offset != self.written {
            return Err(Error::InvalidArgument(format!(
                "snapshot chunk at offset {offset}, expected {}",
                self.written
            )));
        }
        if self.written + chunk.len() as u64 > self.data_bytes {
            return Err(Error::InvalidArgument(format!(
                "snapshot chunk past the announced {} data bytes",
                self.data_bytes
            )));
        }
        let at = (SNAPSHOT_HEADER_BYTES + self.metadata.len()) as u64 + offset;
        self.file.write_all_at(chunk, at).map_err(|e| {
            if crate::error::is_no_space(&e) {
                Error::NoSpace {
                    path: self.tmp_path.clone(),
                }
            } else {
                Error::io("write", &self.tmp_path, e)
            }
        })?;
        self.crc = crc32c::crc32c_append(self.crc, chunk);
        self.written += chunk.len() as u64;
        Ok(())
    }

    pub fn written_bytes(&self) -> u64 {
        self.written
    }

    pub fn data_crc32c(&self) -> u32 {
        self.crc
    }
}

/// Streams a durable snapshot's data; the final chunk is returned only if the CRC matches.
pub struct SnapshotReader<I: Io> {
    file: I::File,
    path: PathBuf,
    data_start: u64,
    meta: SnapshotMeta,
    read: u64,
    crc: u32,
}

impl<I: Io> SnapshotReader<I> {
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Next chunk of at most `bytes_max` bytes (`None` at the end). Damage is reported as
    /// `Corrupt` when the last chunk is reached.
    pub fn next_chunk(&mut self, bytes_max: usize) -> Result<Option<(u64, Vec<u8>)>> {
        if self.read == self.meta.data_bytes {
            return Ok(None);
        }
        let n = (self.meta.data_bytes - self.read).min(bytes_max.max(1) as u64) as usize;
        let mut chunk = vec![0u8; n];
        self.file
            .read_exact_at(&mut chunk, self.data_start + self.read)
            .map_err(|e| Error::io("read snapshot", &self.path, e))?;
        self.crc = crc32c::crc32c_append(self.crc, &chunk);
        let offset = self.read;
        self.read += n as u64;
        if self.read == self.meta.data_bytes && self.crc != self.meta.data_crc32c {
            return Err(Error::corrupt(
                &self.path,
                self.data_start,
                "snapshot data checksum mismatch while streaming",
            ));
        }
        Ok(Some((offset, chunk)))
    }
}
