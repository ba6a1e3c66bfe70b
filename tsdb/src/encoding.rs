//! Byte-level encoding helpers shared by every on-disk format: big-endian integers, Go-style
//! unsigned and zig-zag varints, length-prefixed strings, and CRC-32C (Castagnoli). The decoder
//! never panics on short or malformed input; it reports where decoding stopped.

/// CRC-32C (Castagnoli) as used by every Prometheus checksum.
pub fn crc32(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// An append-only encoding buffer.
#[derive(Debug, Default, Clone)]
pub struct EncBuf {
    pub buf: Vec<u8>,
}

impl EncBuf {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn reset(&mut self) {
        self.buf.clear();
    }
    pub fn get(&self) -> &[u8] {
        &self.buf
    }
    pub fn put_byte(&mut self, b: u8) {
        self.buf.push(b);
    }
    pub fn put_bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn put_be32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn put_be64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn put_be64i(&mut self, v: i64) {
        self.put_be64(v as u64);
    }
    pub fn put_uvarint(&mut self, v: u64) {
        put_uvarint(&mut self.buf, v);
    }
    pub fn put_varint(&mut self, v: i64) {
        put_varint(&mut self.buf, v);
    }
    /// A uvarint length followed by the string's bytes.
    pub fn put_uvarint_str(&mut self, s: &str) {
        self.put_uvarint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }
    /// Appends the CRC-32C of `self.buf[from..]`, big-endian.
    pub fn put_crc32_of(&mut self, from: usize) {
        let c = crc32(&self.buf[from..]);
        self.put_be32(c);
    }
}

/// Appends `v` as a Go `binary.PutUvarint`.
#[inline]
pub fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `v` as a Go `binary.PutVarint` (zig-zag).
#[inline]
pub fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

/// Number of bytes `v` takes as a uvarint.
pub fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Decodes a uvarint at the start of `b`: `(value, bytes read)`, or `None` when truncated or
/// longer than 10 bytes.
#[inline]
pub fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x: u64 = 0;
    let mut s: u32 = 0;
    for (i, &c) in b.iter().enumerate() {
        if i == 10 {
            return None;
        }
        if c < 0x80 {
            if i == 9 && c > 1 {
                return None;
            }
            return Some((x | (c as u64) << s, i + 1));
        }
        x |= ((c & 0x7f) as u64) << s;
        s += 7;
    }
    None
}

/// Decodes a zig-zag varint at the start of `b`.
#[inline]
pub fn varint(b: &[u8]) -> Option<(i64, usize)> {
    let (ux, n) = uvarint(b)?;
    let mut x = (ux >> 1) as i64;
    if ux & 1 != 0 {
        x = !x;
    }
    Some((x, n))
}

/// Why a [`DecBuf`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the field needs; `at` is the offset of the field.
    Truncated { at: usize },
    /// A varint longer than 10 bytes or overflowing 64 bits.
    BadVarint { at: usize },
    /// A string that is not UTF-8.
    BadUtf8 { at: usize },
}

impl DecodeError {
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::Truncated { at }
            | DecodeError::BadVarint { at }
            | DecodeError::BadUtf8 { at } => *at,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { at } => write!(f, "unexpected end of data at byte {at}"),
            DecodeError::BadVarint { at } => write!(f, "invalid varint at byte {at}"),
            DecodeError::BadUtf8 { at } => write!(f, "invalid UTF-8 string at byte {at}"),
        }
    }
}

/// A cursor decoding from a borrowed byte slice.
#[derive(Debug, Clone)]
pub struct DecBuf<'a> {
    data: &'a [u8],
    pos: usize,
}

pub type DResult<T> = std::result::Result<T, DecodeError>;

impl<'a> DecBuf<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub fn skip(&mut self, n: usize) -> DResult<()> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { at: self.pos });
        }
        self.pos += n;
        Ok(())
    }
    pub fn bytes(&mut self, n: usize) -> DResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { at: self.pos });
        }
        let b = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }
    pub fn byte(&mut self) -> DResult<u8> {
        Ok(self.bytes(1)?[0])
    }
    pub fn be32(&mut self) -> DResult<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn be64(&mut self) -> DResult<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub fn uvarint(&mut self) -> DResult<u64> {
        match uvarint(self.rest()) {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => {
                if self.remaining() < 10 && !self.rest().iter().any(|&c| c < 0x80) {
                    Err(DecodeError::Truncated { at: self.pos })
                } else {
                    Err(DecodeError::BadVarint { at: self.pos })
                }
            }
        }
    }
    pub fn varint(&mut self) -> DResult<i64> {
        let at = self.pos;
        let ux = self.uvarint().map_err(|e| match e {
            DecodeError::Truncated { .. } => DecodeError::Truncated { at },
            _ => DecodeError::BadVarint { at },
        })?;
        let mut x = (ux >> 1) as i64;
        if ux & 1 != 0 {
            x = !x;
        }
        Ok(x)
    }
    /// A uvarint length followed by that many bytes.
    pub fn uvarint_bytes(&mut self) -> DResult<&'a [u8]> {
        let n = self.uvarint()?;
        if n > self.remaining() as u64 {
            return Err(DecodeError::Truncated { at: self.pos });
        }
        self.bytes(n as usize)
    }
    /// A uvarint length followed by that many bytes of UTF-8.
    pub fn uvarint_str(&mut self) -> DResult<&'a str> {
        let at = self.pos;
        let b = self.uvarint_bytes()?;
        std::str::from_utf8(b).map_err(|_| DecodeError::BadUtf8 { at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(b.len(), uvarint_len(v));
            assert_eq!(uvarint(&b), Some((v, b.len())));
        }
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(varint(&b), Some((v, b.len())));
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut d = DecBuf::new(&[0x80, 0x80]);
        assert_eq!(d.uvarint(), Err(DecodeError::Truncated { at: 0 }));
        let mut d = DecBuf::new(&[0, 0, 1]);
        assert!(d.be32().is_err());
        let mut d = DecBuf::new(&[5, b'a']);
        assert!(d.uvarint_str().is_err());
    }

    #[test]
    fn crc_is_castagnoli() {
        // Known CRC-32C of "123456789".
        assert_eq!(crc32(b"123456789"), 0xE306_9283);
    }
}
