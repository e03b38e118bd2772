//! The byte-level codec shared by commands, results and snapshots.
//!
//! Primitives (see docs/kv.md, "Command encoding"):
//! - `varint`: unsigned LEB128, 1 to 10 bytes, canonical (no redundant trailing zero groups).
//! - `bool`: one byte, exactly 0 or 1.
//! - `bytes`: varint length, then that many bytes.
//! - `count` (of a list): varint number of elements, then the elements.
//!
//! Decoding never panics and never allocates more than the input it was given: every length
//! and count is checked against the bytes that remain before anything is allocated, and every
//! element consumes at least one byte.

use std::fmt;

/// Why a byte string could not be decoded. `offset` is where in the input decoding stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed encoding at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for DecodeError {}

/// Longest canonical LEB128 encoding of a u64.
const VARINT_BYTES_MAX: usize = 10;

/// Appends encoded values to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    pub(crate) fn with_capacity(capacity_bytes: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity_bytes),
        }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.buf.push(u8::from(value));
    }

    pub(crate) fn varint(&mut self, mut value: u64) {
        let len_before = self.buf.len();
        while value >= 0x80 {
            self.buf.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
        assert!(self.buf.len() - len_before <= VARINT_BYTES_MAX);
    }

    pub(crate) fn count(&mut self, count: usize) {
        self.varint(count as u64);
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn opt_bytes(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            None => self.u8(0),
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
        }
    }

    pub(crate) fn u32_le(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads encoded values from a byte slice, checking every step.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn error(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        assert!(self.pos <= self.buf.len());
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let byte = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.error("unexpected end of input"))?;
        self.pos += 1;
        Ok(byte)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error("bool must be 0 or 1")),
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..VARINT_BYTES_MAX {
            let byte = self.u8()?;
            if i == VARINT_BYTES_MAX - 1 && byte > 1 {
                return Err(self.error("varint overflows u64"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(self.error("varint is not canonical"));
                }
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    /// A list length. Each element takes at least one byte, so a count larger than the bytes
    /// left is malformed; this bounds every loop and allocation by the input size.
    pub(crate) fn count(&mut self) -> Result<usize, DecodeError> {
        let count = self.varint()?;
        if count > self.remaining() as u64 {
            return Err(self.error("count exceeds remaining input"));
        }
        Ok(count as usize)
    }

    pub(crate) fn slice(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(self.error("length exceeds remaining input"));
        }
        let slice = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return Err(self.error("length exceeds remaining input"));
        }
        Ok(self.slice(len as usize)?.to_vec())
    }

    pub(crate) fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            _ => Err(self.error("option tag must be 0 or 1")),
        }
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes).map_err(|_| self.error("string is not UTF-8"))
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32, DecodeError> {
        let slice = self.slice(4)?;
        Ok(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
    }

    /// Succeeds only if every byte was consumed: trailing bytes are malformed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.error("trailing bytes after the value"));
        }
        Ok(())
    }
}

/// A value with a canonical binary form.
pub(crate) trait Wire: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

impl Wire for u64 {
    fn write(&self, w: &mut Writer) {
        w.varint(*self);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.varint()
    }
}

impl Wire for bool {
    fn write(&self, w: &mut Writer) {
        w.bool(*self);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.bool()
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn write(&self, w: &mut Writer) {
        w.count(self.len());
        for item in self {
            item.write(w);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = r.count()?;
        // No with_capacity from an untrusted count: growth is bounded by the bytes consumed.
        let mut items = Vec::new();
        for _ in 0..count {
            items.push(T::read(r)?);
        }
        Ok(items)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn write(&self, w: &mut Writer) {
        match self {
            None => w.u8(0),
            Some(value) => {
                w.u8(1);
                value.write(w);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::read(r)?)),
            _ => Err(r.error("option tag must be 0 or 1")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edges() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut w = Writer::new();
            w.varint(value);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.varint().unwrap(), value);
            r.finish().unwrap();
        }
    }

    #[test]
    fn varint_rejects_non_canonical_and_overflow() {
        assert!(Reader::new(&[0x80, 0x00]).varint().is_err());
        assert!(Reader::new(&[0xff; 10]).varint().is_err());
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert!(Reader::new(&overflow).varint().is_err());
        assert!(Reader::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn huge_length_is_rejected_without_allocation() {
        let mut w = Writer::new();
        w.varint(u64::MAX);
        let bytes = w.into_bytes();
        assert!(Reader::new(&bytes).bytes().is_err());
        assert!(Reader::new(&bytes).count().is_err());
    }

    #[test]
    fn bool_rejects_other_values() {
        assert!(Reader::new(&[2]).bool().is_err());
        assert!(Reader::new(&[1]).bool().unwrap());
    }
}
