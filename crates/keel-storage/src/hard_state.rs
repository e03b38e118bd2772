//! Hard state (term, vote, commit, opaque extra bytes): durable and atomic.
//!
//! File `<dir>/hardstate`, two mirrored 4096-byte slots. A save writes slot A and fdatasyncs,
//! then writes slot B and fdatasyncs. A crash tears at most one slot, and damage to one synced
//! slot leaves the other holding the same value, so a completed save is never lost to one
//! damaged slot. Both slots invalid is damage, refused also in repair mode (a lost vote cannot be
//! recovered from peers).
//!
//! Slot layout (little-endian):
//! ```text
//!  0  [u8; 8] magic "KEELHS\0\0"
//!  8  u8  format_version (1)
//!  9  u8  vote_present (0 or 1)
//! 10  u16 reserved (0)
//! 12  u32 extra_len (<= 4044)
//! 16  u64 sequence (number of saves)
//! 24  u64 term
//! 32  u64 vote (0 when vote_present = 0)
//! 40  u64 commit
//! 48  extra bytes
//! 48+extra_len  u32 crc32c over bytes 0..48+extra_len
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::{Io, IoFile};
use crate::record::u64_at;

pub const HARD_STATE_FILE: &str = "hardstate";
pub const SLOT_BYTES: usize = 4096;
const SLOT_HEADER_BYTES: usize = 48;
pub const HARD_STATE_EXTRA_BYTES_MAX: usize = SLOT_BYTES - SLOT_HEADER_BYTES - 4;
const MAGIC: [u8; 8] = *b"KEELHS\0\0";
const FORMAT_VERSION: u8 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    /// The node voted for in `term`, if any.
    pub vote: Option<u64>,
    pub commit: u64,
    /// Opaque bytes owned by the caller (at most [`HARD_STATE_EXTRA_BYTES_MAX`]).
    pub extra: Vec<u8>,
}

fn encode_slot(state: &HardState, sequence: u64) -> Vec<u8> {
    assert!(state.extra.len() <= HARD_STATE_EXTRA_BYTES_MAX);
    let mut slot = vec![0u8; SLOT_BYTES];
    slot[0..8].copy_from_slice(&MAGIC);
    slot[8] = FORMAT_VERSION;
    slot[9] = u8::from(state.vote.is_some());
    slot[12..16].copy_from_slice(&(state.extra.len() as u32).to_le_bytes());
    slot[16..24].copy_from_slice(&sequence.to_le_bytes());
    slot[24..32].copy_from_slice(&state.term.to_le_bytes());
    slot[32..40].copy_from_slice(&state.vote.unwrap_or(0).to_le_bytes());
    slot[40..48].copy_from_slice(&state.commit.to_le_bytes());
    let end = SLOT_HEADER_BYTES + state.extra.len();
    slot[SLOT_HEADER_BYTES..end].copy_from_slice(&state.extra);
    let crc = crc32c::crc32c(&slot[..end]);
    slot[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// Decodes a slot; `Err` names what is wrong. Never panics on arbitrary bytes.
pub fn decode_slot(slot: &[u8]) -> std::result::Result<(HardState, u64), &'static str> {
    if slot.len() < SLOT_BYTES {
        return Err("slot shorter than 4096 bytes");
    }
    if slot[0..8] != MAGIC {
        return Err("bad hard-state magic");
    }
    let extra_len = u32::from_le_bytes(slot[12..16].try_into().expect("4 bytes")) as usize;
    if extra_len > HARD_STATE_EXTRA_BYTES_MAX {
        return Err("hard-state extra length above the limit");
    }
    let end = SLOT_HEADER_BYTES + extra_len;
    let stored = u32::from_le_bytes(slot[end..end + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&slot[..end]) != stored {
        return Err("hard-state checksum mismatch");
    }
    if slot[8] != FORMAT_VERSION {
        return Err("unknown hard-state format version");
    }
    if slot[9] > 1 {
        return Err("bad vote flag");
    }
    let state = HardState {
        term: u64_at(slot, 24),
        vote: (slot[9] == 1).then(|| u64_at(slot, 32)),
        commit: u64_at(slot, 40),
        extra: slot[SLOT_HEADER_BYTES..end].to_vec(),
    };
    Ok((state, u64_at(slot, 16)))
}

pub struct HardStateStore<I: Io> {
    path: PathBuf,
    file: I::File,
    sequence: u64,
    current: HardState,
    poisoned: Option<String>,
}

/// What loading the hard state found besides the value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HardStateRecovery {
    /// A slot was torn or damaged and rewritten from the other one.
    pub rewrote_slot: Option<String>,
    /// Repair mode reset an unreadable hard state to the default.
    pub repaired: Option<String>,
}

impl<I: Io> HardStateStore<I> {
    pub fn open(
        io: &I,
        dir: &Path,
        repair: bool,
    ) -> Result<(HardStateStore<I>, HardStateRecovery)> {
        let path = dir.join(HARD_STATE_FILE);
        let tmp = dir.join(format!("{HARD_STATE_FILE}.tmp"));
        let mut recovery = HardStateRecovery::default();
        if !io.exists(&path).map_err(|e| Error::io("stat", &path, e))? {
            create_file(io, dir, &tmp, &path, &HardState::default())?;
        } else if io.exists(&tmp).map_err(|e| Error::io("stat", &tmp, e))? {
            io.remove_file(&tmp)
                .map_err(|e| Error::io("remove", &tmp, e))?;
        }
        let file = io.open(&path).map_err(|e| Error::io("open", &path, e))?;
        let len = file.len_bytes().map_err(|e| Error::io("stat", &path, e))?;
        let mut bytes = vec![0u8; 2 * SLOT_BYTES];
        if len >= bytes.len() as u64 {
            file.read_exact_at(&mut bytes, 0)
                .map_err(|e| Error::io("read", &path, e))?;
        }
        let a = decode_slot(&bytes[..SLOT_BYTES]);
        let b = decode_slot(&bytes[SLOT_BYTES..]);
        let (state, sequence) = match (a, b) {
            (Ok(a), Ok(b)) => {
                if a.1 != b.1 {
                    // Crash between the two halves of a save: slot A holds the newer value.
                    recovery.rewrote_slot = Some(format!(
                        "slot B had sequence {} behind slot A's {}",
                        b.1, a.1
                    ));
                }
                if a.1 >= b.1 {
                    a
                } else {
                    b
                }
            }
            (Ok(a), Err(reason)) => {
                recovery.rewrote_slot = Some(format!("slot B at offset {SLOT_BYTES}: {reason}"));
                a
            }
            (Err(reason), Ok(b)) => {
                recovery.rewrote_slot = Some(format!("slot A at offset 0: {reason}"));
                b
            }
            (Err(ra), Err(rb)) => {
                // Refused even in repair mode: the vote this node gave is gone, and no peer can
                // say which terms it voted in, so a repaired node could vote twice in one term.
                // The operator replaces the member instead (docs/storage.md, section 4).
                let mut reason =
                    format!("both hard-state slots are invalid (slot A: {ra}; slot B: {rb})");
                if repair {
                    reason.push_str(
                        "; repair mode cannot recover a lost vote: remove this member and add a \
                         fresh one with an empty data directory",
                    );
                }
                return Err(Error::corrupt(&path, 0, reason));
            }
        };
        let mut store = HardStateStore {
            path,
            file,
            sequence,
            current: state.clone(),
            poisoned: None,
        };
        if recovery.rewrote_slot.is_some() || recovery.repaired.is_some() {
            store.save(&state)?;
        }
        Ok((store, recovery))
    }

    pub fn get(&self) -> &HardState {
        &self.current
    }

    /// Durably replaces the hard state (two fdatasyncs). Any failure is fatal.
    pub fn save(&mut self, state: &HardState) -> Result<()> {
        if let Some(msg) = &self.poisoned {
            return Err(Error::Poisoned(msg.clone()));
        }
        if state.extra.len() > HARD_STATE_EXTRA_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "hard-state extra of {} bytes exceeds {HARD_STATE_EXTRA_BYTES_MAX}",
                state.extra.len()
            )));
        }
        let sequence = self.sequence + 1;
        let slot = encode_slot(state, sequence);
        for offset in [0u64, SLOT_BYTES as u64] {
            let result = self
                .file
                .write_all_at(&slot, offset)
                .and_then(|()| self.file.sync_data());
            if let Err(e) = result {
                let error = Error::fatal("write+fdatasync hard state", self.path.clone(), e);
                self.poisoned = Some(error.to_string());
                return Err(error);
            }
        }
        self.sequence = sequence;
        self.current = state.clone();
        Ok(())
    }
}

fn create_file<I: Io>(
    io: &I,
    dir: &Path,
    tmp: &Path,
    path: &Path,
    state: &HardState,
) -> Result<()> {
    let mut file = io.create(tmp).map_err(|e| {
        if crate::error::is_no_space(&e) {
            Error::NoSpace {
                path: tmp.to_path_buf(),
            }
        } else {
            Error::io("create", tmp, e)
        }
    })?;
    let slot = encode_slot(state, 0);
    let mut both = slot.clone();
    both.extend_from_slice(&slot);
    file.write_all_at(&both, 0)
        .map_err(|e| Error::fatal("write", tmp, e))?;
    file.sync_data()
        .map_err(|e| Error::fatal("fdatasync", tmp, e))?;
    io.rename(tmp, path)
        .map_err(|e| Error::io("rename", tmp, e))?;
    io.sync_dir(dir)
        .map_err(|e| Error::fatal("sync dir", dir, e))?;
    Ok(())
}
