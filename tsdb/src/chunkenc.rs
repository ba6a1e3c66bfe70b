//! Chunk encodings (Prometheus `tsdb/chunkenc`): the encoding ids, the XOR ("Gorilla") float
//! chunk, its decoding iterator, and the rule that decides when the head cuts a new chunk.
//!
//! # XOR chunk layout
//!
//! A 2-byte big-endian sample count, then a bit stream:
//!
//! * sample 0: timestamp as a zig-zag varint, value as 64 raw bits;
//! * sample 1: timestamp delta as a uvarint, value XORed with the previous value;
//! * later samples: delta-of-delta of the timestamp in buckets (`0`, `10`+14 bits, `110`+17,
//!   `1110`+20, `1111`+64), then the value XOR: `0` when equal, `10`+bits reusing the previous
//!   leading/trailing zero counts, or `11`+5 bits leading (capped at 31)+6 bits significant-bit
//!   count (64 written as 0)+the significant bits.
//!
//! # Byte identity
//!
//! The encoder reproduces Prometheus **2.42**'s bytes exactly, including one quirk of its
//! `bstream.writeByte`: when a whole-byte write starts on a byte boundary, 2.42 leaves an empty
//! trailing byte with 8 free bits (so e.g. a one-sample chunk ends in a `0x00` byte).
//! Prometheus 3 no longer does that, so its chunks can be one byte shorter; both decode to the
//! same samples, and every Prometheus reads both.
//!
//! Resuming appends on a chunk loaded from bytes ([`XorChunk::from_bytes`]) continues at the
//! exact bit where the data ends. (Prometheus' `FromData` resets the writer to a byte boundary,
//! which leaves padding bits that the decoder would misread; we do not copy that.) Like
//! Prometheus, the resumed appender takes its leading/trailing-zero state from the decoder,
//! so appending to a one-sample chunk writes the second value in the "reuse" form.

use crate::error::{Error, Result};
use crate::storage::SampleIterator;

/// A chunk encoding id as stored in chunk files (the byte before the chunk data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    None = 0,
    Xor = 1,
    Histogram = 2,
    FloatHistogram = 3,
    /// Thanos's downsampled aggregate chunk (`ChunkEncAggr`, 0xff): count, sum, min, max and
    /// counter sub-chunks; decoded by `strata_compactor::downsample::AggrChunk`.
    Aggr = 0xff,
}

impl Encoding {
    /// The encoding with this id, if it is one we know.
    pub fn from_u8(id: u8) -> Option<Encoding> {
        match id {
            0 => Some(Encoding::None),
            1 => Some(Encoding::Xor),
            2 => Some(Encoding::Histogram),
            3 => Some(Encoding::FloatHistogram),
            0xff => Some(Encoding::Aggr),
            _ => None,
        }
    }

    /// The id stored on disk.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Prometheus' name for the encoding (`XOR`, `histogram`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::None => "none",
            Encoding::Xor => "XOR",
            Encoding::Histogram => "histogram",
            Encoding::FloatHistogram => "floathistogram",
            Encoding::Aggr => "aggr",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Validates an encoding id read from disk: `Error::UnknownEncoding(id)` for ids we do not know.
pub fn check_encoding(enc: u8) -> Result<Encoding> {
    Encoding::from_u8(enc).ok_or(Error::UnknownEncoding(enc))
}

/// Validates that chunks with this encoding can be decoded by this build (only XOR today).
pub fn require_decodable(enc: Encoding) -> Result<()> {
    match enc {
        Encoding::Xor => Ok(()),
        other => Err(Error::InvalidChunk(format!(
            "chunk encoding {} ({}) is not supported: only XOR float chunks can be decoded",
            other.as_u8(),
            other.name()
        ))),
    }
}

/// Size of the sample-count header of a chunk.
pub const CHUNK_HEADER_SIZE: usize = 2;

// ---------------------------------------------------------------------------------------------
// Bit writer (the Prometheus 2.42 `bstream`)
// ---------------------------------------------------------------------------------------------

/// Appends `nbits` (0..=64) right-most bits of `u` to `b`, where `count` is the number of free
/// bits in the last byte (0..=8, 8 meaning an empty trailing byte as 2.42's writeByte leaves).
#[inline]
fn write_bits(b: &mut Vec<u8>, count: &mut u8, u: u64, nbits: u32) {
    if nbits == 0 {
        return;
    }
    let c0 = *count;
    let mut u = u << (64 - nbits);
    let mut n = nbits;
    if *count > 0 {
        let free = *count as u32;
        if let Some(last) = b.last_mut() {
            *last |= (u >> (64 - free)) as u8;
        }
        if n < free {
            *count = (free - n) as u8;
            return;
        }
        n -= free;
        u = if free == 64 { 0 } else { u << free };
        *count = 0;
    }
    while n >= 8 {
        b.push((u >> 56) as u8);
        u <<= 8;
        n -= 8;
    }
    if n > 0 {
        b.push((u >> 56) as u8);
        *count = (8 - n) as u8;
    }
    // 2.42's writeByte from a byte boundary leaves an empty byte with 8 free bits; writeBits
    // ends in that state when it wrote whole bytes only, starting from a boundary.
    if nbits & 7 == 0 && (c0 == 0 || c0 == 8) && *count == 0 {
        b.push(0);
        *count = 8;
    }
}

#[inline]
fn write_bit(b: &mut Vec<u8>, count: &mut u8, bit: bool) {
    if *count == 0 {
        b.push(0);
        *count = 8;
    }
    if bit {
        if let Some(last) = b.last_mut() {
            *last |= 1 << (*count - 1);
        }
    }
    *count -= 1;
}

/// Whether `x` fits the `nbits` delta-of-delta bucket (Prometheus' `bitRange`).
#[inline]
fn bit_range(x: i64, nbits: u32) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

// ---------------------------------------------------------------------------------------------
// XorChunk
// ---------------------------------------------------------------------------------------------

/// What the appender must know about the last sample(s) to append the next one.
#[derive(Debug, Clone, Copy)]
struct AppendState {
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

/// An XOR-encoded float chunk that owns its bytes and can be appended to.
#[derive(Debug, Clone)]
pub struct XorChunk {
    b: Vec<u8>,
    /// Free bits in the last byte (0..=8).
    count: u8,
    /// Appender state; `None` until computed for a chunk loaded from bytes.
    app: Option<AppendState>,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk (just the zero sample count).
    pub fn new() -> Self {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&[0, 0]);
        XorChunk {
            b,
            count: 0,
            app: Some(AppendState {
                t: i64::MIN,
                v: 0,
                t_delta: 0,
                leading: 0xff,
                trailing: 0,
            }),
        }
    }

    /// A chunk over existing bytes (e.g. read from a file). Only the header length is checked
    /// here; the data is validated when iterated or appended to.
    pub fn from_bytes(b: Vec<u8>) -> Result<Self> {
        if b.len() < CHUNK_HEADER_SIZE {
            return Err(Error::InvalidChunk(format!(
                "XOR chunk of {} bytes is shorter than its 2-byte header",
                b.len()
            )));
        }
        Ok(XorChunk {
            b,
            count: 0,
            app: None,
        })
    }

    /// The encoded bytes (header included), as written to chunk files.
    pub fn bytes(&self) -> &[u8] {
        &self.b
    }

    /// Gives up the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.b
    }

    /// The number of samples recorded in the header.
    pub fn num_samples(&self) -> usize {
        u16::from_be_bytes([self.b[0], self.b[1]]) as usize
    }

    /// The encoding of this chunk.
    pub fn encoding(&self) -> Encoding {
        Encoding::Xor
    }

    /// Releases spare capacity (Prometheus' `Compact`).
    pub fn compact(&mut self) {
        if self.b.capacity() > self.b.len() + 32 {
            self.b.shrink_to_fit();
        }
    }

    /// An iterator over the chunk's samples.
    pub fn iter(&self) -> XorIterator<&[u8]> {
        XorIterator::new(&self.b[..])
    }

    /// Prepares the chunk for appending and returns an appender borrowing it. For a chunk
    /// loaded with [`XorChunk::from_bytes`] this decodes it once, and fails when it is corrupt.
    pub fn appender(&mut self) -> Result<XorAppender<'_>> {
        self.ensure_app_state()?;
        Ok(XorAppender { chunk: self })
    }

    /// Appends a sample. Timestamps must increase (the caller checks order). Fails when the
    /// chunk already holds 65535 samples, or when a loaded chunk turns out to be corrupt.
    pub fn append(&mut self, t: i64, v: f64) -> Result<()> {
        let st = match self.app {
            Some(st) => st,
            None => self.ensure_app_state()?,
        };
        let num = u16::from_be_bytes([self.b[0], self.b[1]]);
        if num == u16::MAX {
            return Err(Error::InvalidChunk(
                "XOR chunk capacity of 65535 samples exceeded".into(),
            ));
        }
        let vb = v.to_bits();
        let mut st2 = st;
        let b = &mut self.b;
        let count = &mut self.count;
        let mut t_delta = 0u64;
        match num {
            0 => {
                let mut tmp = [0u8; 10];
                let n = put_varint_arr(&mut tmp, t);
                for &byte in &tmp[..n] {
                    write_bits(b, count, byte as u64, 8);
                }
                write_bits(b, count, vb, 64);
            }
            1 => {
                t_delta = t.wrapping_sub(st.t) as u64;
                let mut tmp = [0u8; 10];
                let n = put_uvarint_arr(&mut tmp, t_delta);
                for &byte in &tmp[..n] {
                    write_bits(b, count, byte as u64, 8);
                }
                xor_write(b, count, vb, st.v, &mut st2.leading, &mut st2.trailing);
            }
            _ => {
                t_delta = t.wrapping_sub(st.t) as u64;
                let dod = t_delta.wrapping_sub(st.t_delta) as i64;
                if dod == 0 {
                    write_bit(b, count, false);
                } else if bit_range(dod, 14) {
                    write_bits(b, count, 0b10, 2);
                    write_bits(b, count, dod as u64, 14);
                } else if bit_range(dod, 17) {
                    write_bits(b, count, 0b110, 3);
                    write_bits(b, count, dod as u64, 17);
                } else if bit_range(dod, 20) {
                    write_bits(b, count, 0b1110, 4);
                    write_bits(b, count, dod as u64, 20);
                } else {
                    write_bits(b, count, 0b1111, 4);
                    write_bits(b, count, dod as u64, 64);
                }
                xor_write(b, count, vb, st.v, &mut st2.leading, &mut st2.trailing);
            }
        }
        st2.t = t;
        st2.v = vb;
        st2.t_delta = t_delta;
        self.app = Some(st2);
        let n = (num + 1).to_be_bytes();
        self.b[0] = n[0];
        self.b[1] = n[1];
        Ok(())
    }

    /// Decodes the chunk to find the appender state and the exact bit where data ends.
    fn ensure_app_state(&mut self) -> Result<AppendState> {
        if let Some(st) = self.app {
            return Ok(st);
        }
        let mut it = XorIterator::new(&self.b[..]);
        while it.next() {}
        if let Some(e) = it.error() {
            return Err(e);
        }
        let st = if it.num_read == 0 {
            AppendState {
                t: i64::MIN,
                v: 0,
                t_delta: 0,
                leading: 0xff,
                trailing: 0,
            }
        } else {
            AppendState {
                t: it.s.t,
                v: it.s.v,
                t_delta: it.s.t_delta,
                leading: it.s.leading,
                trailing: it.s.trailing,
            }
        };
        let consumed = it.bits_consumed();
        let total = (self.b.len() - CHUNK_HEADER_SIZE) * 8;
        let free = total - consumed.min(total);
        if free <= 8 {
            self.count = free as u8;
        } else {
            // Garbage after the data: drop it so appends continue right after the data.
            let keep = consumed.div_ceil(8);
            self.b.truncate(CHUNK_HEADER_SIZE + keep);
            self.count = (keep * 8 - consumed) as u8;
        }
        if self.count > 0 && self.count < 8 {
            if let Some(last) = self.b.last_mut() {
                *last &= !((1u8 << self.count) - 1);
            }
        } else if self.count == 8 {
            if let Some(last) = self.b.last_mut() {
                *last = 0;
            }
        }
        self.app = Some(st);
        Ok(st)
    }
}

/// Appends to an [`XorChunk`]; obtained from [`XorChunk::appender`].
#[derive(Debug)]
pub struct XorAppender<'a> {
    chunk: &'a mut XorChunk,
}

impl XorAppender<'_> {
    /// Appends a sample (see [`XorChunk::append`]).
    pub fn append(&mut self, t: i64, v: f64) -> Result<()> {
        self.chunk.append(t, v)
    }
}

fn put_uvarint_arr(buf: &mut [u8; 10], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}

fn put_varint_arr(buf: &mut [u8; 10], v: i64) -> usize {
    put_uvarint_arr(buf, ((v << 1) ^ (v >> 63)) as u64)
}

#[inline]
fn xor_write(
    b: &mut Vec<u8>,
    count: &mut u8,
    new: u64,
    cur: u64,
    leading: &mut u8,
    trailing: &mut u8,
) {
    let delta = new ^ cur;
    if delta == 0 {
        write_bit(b, count, false);
        return;
    }
    write_bit(b, count, true);
    let mut new_leading = delta.leading_zeros() as u8;
    let new_trailing = delta.trailing_zeros() as u8;
    if new_leading >= 32 {
        new_leading = 31;
    }
    if *leading != 0xff && new_leading >= *leading && new_trailing >= *trailing {
        write_bit(b, count, false);
        let sig = 64 - *leading as u32 - *trailing as u32;
        write_bits(b, count, delta >> *trailing, sig);
        return;
    }
    *leading = new_leading;
    *trailing = new_trailing;
    write_bit(b, count, true);
    write_bits(b, count, new_leading as u64, 5);
    let sigbits = 64 - new_leading as u32 - new_trailing as u32;
    // 64 significant bits do not fit 6 bits; written as 0 and read back as 64.
    write_bits(b, count, (sigbits & 0x3f) as u64, 6);
    write_bits(b, count, delta >> new_trailing, sigbits);
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Why decoding stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeErr {
    ShortHeader(usize),
    Truncated,
    BadVarint,
    BadBits { leading: u8, sig: u8 },
}

#[inline]
fn mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// A decoding iterator over an XOR chunk's bytes, generic over who owns them (`Vec<u8>`,
/// `Arc<[u8]>`, `&[u8]`, a slice of a shared mmap...). Allocation-free; corrupt bytes stop
/// iteration and are reported by [`SampleIterator::err`] / [`XorIterator::error`].
pub struct XorIterator<B: AsRef<[u8]> + Send> {
    data: B,
    num_total: u16,
    num_read: u16,
    /// Offset (within the bytes after the header) of the next byte to load into `buf`.
    off: usize,
    buf: u64,
    /// Number of low bits of `buf` still unread.
    valid: u32,
    s: DecState,
    err: Option<DecodeErr>,
    /// Set once `next` returned false.
    done: bool,
}

impl<B: AsRef<[u8]> + Send> XorIterator<B> {
    /// An iterator over a whole chunk (2-byte header included).
    pub fn new(data: B) -> Self {
        let d = data.as_ref();
        let (num_total, err) = if d.len() < CHUNK_HEADER_SIZE {
            (0, Some(DecodeErr::ShortHeader(d.len())))
        } else {
            (u16::from_be_bytes([d[0], d[1]]), None)
        };
        XorIterator {
            data,
            num_total,
            num_read: 0,
            off: 0,
            buf: 0,
            valid: 0,
            s: DecState {
                t: i64::MIN,
                v: 0,
                t_delta: 0,
                leading: 0,
                trailing: 0,
            },
            err,
            done: false,
        }
    }

    /// The number of samples the header announces.
    pub fn num_samples(&self) -> usize {
        self.num_total as usize
    }

    /// The decoding error, if iteration stopped on corrupt data.
    pub fn error(&self) -> Option<Error> {
        self.err.map(|e| {
            Error::InvalidChunk(match e {
                DecodeErr::ShortHeader(n) => {
                    format!("XOR chunk of {n} bytes is shorter than its 2-byte header")
                }
                DecodeErr::Truncated => format!(
                    "XOR chunk data ends after {} of {} samples",
                    self.num_read, self.num_total
                ),
                DecodeErr::BadVarint => format!(
                    "invalid varint timestamp at sample {} of {}",
                    self.num_read, self.num_total
                ),
                DecodeErr::BadBits { leading, sig } => format!(
                    "invalid value encoding at sample {} of {}: {leading} leading zeros + {sig} significant bits exceed 64",
                    self.num_read, self.num_total
                ),
            })
        })
    }

    /// Consumes the iterator and hands back the bytes.
    pub fn into_inner(self) -> B {
        self.data
    }

    /// Restarts the iterator over other bytes, reusing it.
    pub fn reset(&mut self, data: B) {
        *self = XorIterator::new(data);
    }

    /// The current timestamp (valid after `next`/`seek` returned true).
    #[inline]
    pub fn at_t(&self) -> i64 {
        self.s.t
    }

    /// Bits consumed from the stream after the header.
    fn bits_consumed(&self) -> usize {
        self.off * 8 - self.valid as usize
    }

    /// Decodes every remaining sample into `out` (appending). Fails on corrupt data, after
    /// pushing the samples decoded before the corruption.
    pub fn decode_into(&mut self, out: &mut Vec<(i64, f64)>) -> Result<()> {
        out.reserve(self.num_total.saturating_sub(self.num_read) as usize);
        while self.next() {
            out.push((self.s.t, f64::from_bits(self.s.v)));
        }
        match self.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    #[inline]
    fn fail(&mut self, e: DecodeErr) -> bool {
        self.err = Some(e);
        self.done = true;
        false
    }

    fn next_inner(&mut self) -> bool {
        if self.done || self.err.is_some() || self.num_read == self.num_total {
            self.done = true;
            return false;
        }
        let data = self.data.as_ref();
        let d = if data.len() >= CHUNK_HEADER_SIZE {
            &data[CHUNK_HEADER_SIZE..]
        } else {
            &[][..]
        };
        let mut r = Reader {
            d,
            off: self.off,
            buf: self.buf,
            valid: self.valid,
        };
        let res = self.s.step(self.num_read, &mut r);
        self.off = r.off;
        self.buf = r.buf;
        self.valid = r.valid;
        match res {
            Ok(()) => {
                self.num_read += 1;
                true
            }
            Err(e) => self.fail(e),
        }
    }
}

/// The decoder's per-sample state.
#[derive(Debug, Clone, Copy)]
struct DecState {
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl DecState {
    #[inline(always)]
    fn step(&mut self, num_read: u16, r: &mut Reader<'_>) -> std::result::Result<(), DecodeErr> {
        if num_read == 0 {
            let ux = r.read_uvarint()?;
            let mut t = (ux >> 1) as i64;
            if ux & 1 != 0 {
                t = !t;
            }
            self.t = t;
            self.v = r.read_bits(64)?;
            return Ok(());
        }
        if num_read == 1 {
            self.t_delta = r.read_uvarint()?;
            self.t = self.t.wrapping_add(self.t_delta as i64);
            return self.read_value(r);
        }
        // Delta-of-delta prefix: up to four bits.
        let mut dod: i64 = 0;
        if r.read_bit()? {
            let sz: u32 = if !r.read_bit()? {
                14
            } else if !r.read_bit()? {
                17
            } else if !r.read_bit()? {
                20
            } else {
                64
            };
            let mut bits = r.read_bits(sz)?;
            if sz != 64 && bits > (1u64 << (sz - 1)) {
                bits = bits.wrapping_sub(1u64 << sz);
            }
            dod = bits as i64;
        }
        self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read_value(r)
    }

    #[inline(always)]
    fn read_value(&mut self, r: &mut Reader<'_>) -> std::result::Result<(), DecodeErr> {
        if !r.read_bit()? {
            return Ok(());
        }
        let (trailing, mbits) = if !r.read_bit()? {
            let m = 64 - self.leading as u32 - self.trailing as u32;
            (self.trailing, m)
        } else {
            let leading = r.read_bits(5)? as u8;
            let mut m = r.read_bits(6)? as u32;
            if m == 0 {
                m = 64;
            }
            if leading as u32 + m > 64 {
                return Err(DecodeErr::BadBits {
                    leading,
                    sig: m as u8,
                });
            }
            let trailing = (64 - leading as u32 - m) as u8;
            self.leading = leading;
            self.trailing = trailing;
            (trailing, m)
        };
        let bits = r.read_bits(mbits)?;
        self.v ^= bits << trailing;
        Ok(())
    }
}

/// A big-endian bit reader with a 64-bit buffer (the state lives in the iterator between
/// calls, so the iterator need not borrow its bytes).
struct Reader<'a> {
    d: &'a [u8],
    off: usize,
    buf: u64,
    valid: u32,
}

impl Reader<'_> {
    /// Loads up to 8 more bytes; false at the end of the data.
    #[inline]
    fn refill(&mut self) -> bool {
        let rest = &self.d[self.off.min(self.d.len())..];
        if rest.len() >= 8 {
            let mut a = [0u8; 8];
            a.copy_from_slice(&rest[..8]);
            self.buf = u64::from_be_bytes(a);
            self.off += 8;
            self.valid = 64;
            true
        } else if rest.is_empty() {
            false
        } else {
            let mut v = 0u64;
            for &c in rest {
                v = (v << 8) | c as u64;
            }
            self.off += rest.len();
            self.valid = rest.len() as u32 * 8;
            self.buf = v;
            true
        }
    }

    #[inline(always)]
    fn read_bit(&mut self) -> std::result::Result<bool, DecodeErr> {
        if self.valid == 0 && !self.refill() {
            return Err(DecodeErr::Truncated);
        }
        self.valid -= 1;
        Ok((self.buf >> self.valid) & 1 != 0)
    }

    /// Reads `n` (1..=64) bits.
    #[inline(always)]
    fn read_bits(&mut self, n: u32) -> std::result::Result<u64, DecodeErr> {
        if n <= self.valid {
            self.valid -= n;
            return Ok((self.buf >> self.valid) & mask(n));
        }
        let have = self.valid;
        let hi = self.buf & mask(have);
        let need = n - have;
        self.valid = 0;
        if !self.refill() || self.valid < need {
            return Err(DecodeErr::Truncated);
        }
        self.valid -= need;
        let lo = (self.buf >> self.valid) & mask(need);
        let hi = if need >= 64 { 0 } else { hi << need };
        Ok(hi | lo)
    }

    fn read_uvarint(&mut self) -> std::result::Result<u64, DecodeErr> {
        let mut x = 0u64;
        let mut s = 0u32;
        for i in 0..10 {
            let c = self.read_bits(8)? as u8;
            if c < 0x80 {
                if i == 9 && c > 1 {
                    return Err(DecodeErr::BadVarint);
                }
                return Ok(x | (c as u64) << s);
            }
            x |= ((c & 0x7f) as u64) << s;
            s += 7;
        }
        Err(DecodeErr::BadVarint)
    }
}

impl<B: AsRef<[u8]> + Send> SampleIterator for XorIterator<B> {
    #[inline]
    fn next(&mut self) -> bool {
        self.next_inner()
    }

    fn seek(&mut self, t: i64) -> bool {
        if self.done {
            return false;
        }
        if self.num_read > 0 && self.s.t >= t {
            return true;
        }
        while self.next_inner() {
            if self.s.t >= t {
                return true;
            }
        }
        false
    }

    #[inline]
    fn at(&self) -> (i64, f64) {
        (self.s.t, f64::from_bits(self.s.v))
    }

    fn err(&self) -> Option<String> {
        self.error().map(|e| e.to_string())
    }
}

/// Decodes a whole XOR chunk (header included) into `out`, appending.
pub fn decode_xor(bytes: &[u8], out: &mut Vec<(i64, f64)>) -> Result<()> {
    XorIterator::new(bytes).decode_into(out)
}

/// Encodes samples into a fresh XOR chunk (as the head would, without cutting).
pub fn encode_xor(samples: &[(i64, f64)]) -> Result<XorChunk> {
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.append(t, v)?;
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Chunk cutting
// ---------------------------------------------------------------------------------------------

/// Prometheus' target number of samples per chunk (`DefaultSamplesPerChunk`).
pub const SAMPLES_PER_CHUNK: u16 = 120;
/// Prometheus 3's maximum XOR chunk size (`MaxBytesPerXORChunk`).
pub const MAX_BYTES_PER_XOR_CHUNK: usize = 1024;
/// Prometheus 3 cuts before appending when the chunk is bigger than this: the limit minus one
/// maximal sample (19 bytes).
pub const MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND: usize = MAX_BYTES_PER_XOR_CHUNK - 19;
/// Default chunk range: 2h in milliseconds.
pub const DEFAULT_CHUNK_RANGE: i64 = 2 * 3600 * 1000;

/// The end of the chunk range containing `t` (Prometheus' `rangeForTimestamp`):
/// `(t / width) * width + width`, with Go's truncating division.
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    if width <= 0 {
        return i64::MAX;
    }
    (t / width).wrapping_mul(width).wrapping_add(width)
}

/// Prometheus 2.42's `computeChunkEndTime` (integer arithmetic): an end time for the chunk
/// starting at `start`, whose latest sample is `cur`, that spreads the samples until `max`
/// evenly over chunks of about 4 times the samples seen so far.
pub fn compute_chunk_end_time_v2(start: i64, cur: i64, max: i64) -> i64 {
    let div = cur.wrapping_sub(start).wrapping_add(1).wrapping_mul(4);
    if div == 0 {
        return max;
    }
    let n = max.wrapping_sub(start).wrapping_div(div);
    if n <= 1 {
        return max;
    }
    start.wrapping_add(max.wrapping_sub(start) / n)
}

/// Prometheus 3's `computeChunkEndTime` (float arithmetic, `ratio_to_full` = 4 for XOR).
pub fn compute_chunk_end_time_v3(start: i64, cur: i64, max: i64, ratio_to_full: f64) -> i64 {
    let n = (max.wrapping_sub(start)) as f64
        / ((cur.wrapping_sub(start).wrapping_add(1)) as f64 * ratio_to_full);
    if n.is_nan() || n <= 1.0 {
        return max;
    }
    (start as f64 + (max.wrapping_sub(start)) as f64 / n.floor()) as i64
}

/// Which Prometheus version's cutting rule to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutPolicy {
    /// Prometheus 2.42: cut at the predicted end time or at 2×samples_per_chunk; no byte limit;
    /// integer end-time prediction. What `promtool tsdb create-blocks-from` 2.42 does.
    Prometheus2,
    /// Prometheus 3: additionally cut when the chunk exceeds
    /// [`MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND`] bytes; float end-time prediction.
    Prometheus3,
}

/// The state of a series' open chunk the cutting rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub num_samples: usize,
    pub byte_len: usize,
}

/// The head's chunk-cutting rule (Prometheus' `appendPreprocessor`). The configuration is
/// shared; the per-series state is one `next_at: i64` that the caller keeps with the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkCutter {
    /// Chunk range in milliseconds (the head's block range; promtool uses 2 × block duration).
    pub chunk_range: i64,
    /// Target samples per chunk (120).
    pub samples_per_chunk: usize,
    pub policy: CutPolicy,
}

impl Default for ChunkCutter {
    fn default() -> Self {
        ChunkCutter {
            chunk_range: DEFAULT_CHUNK_RANGE,
            samples_per_chunk: SAMPLES_PER_CHUNK as usize,
            policy: CutPolicy::Prometheus3,
        }
    }
}

impl ChunkCutter {
    /// A cutter for `chunk_range` ms with 120 samples per chunk.
    pub fn new(chunk_range: i64, policy: CutPolicy) -> Self {
        ChunkCutter {
            chunk_range,
            samples_per_chunk: SAMPLES_PER_CHUNK as usize,
            policy,
        }
    }

    /// Decides whether the in-order sample at `t` (`t > chunk.max_time`, checked by the caller)
    /// starts a new chunk. `open` is the series' open chunk, `None` when it has none. Updates
    /// `next_at`; when this returns true the caller starts a new chunk whose first sample is
    /// `t` (and `next_at` already describes that new chunk).
    pub fn cut(&self, next_at: &mut i64, open: Option<&OpenChunk>, t: i64) -> bool {
        let c = match open {
            None => {
                *next_at = range_for_timestamp(t, self.chunk_range);
                return true;
            }
            Some(c) => c,
        };
        if self.policy == CutPolicy::Prometheus3
            && c.byte_len > MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND
        {
            *next_at = range_for_timestamp(t, self.chunk_range);
            return true;
        }
        if c.num_samples == 0 {
            *next_at = range_for_timestamp(t, self.chunk_range);
        }
        if c.num_samples == self.samples_per_chunk / 4 {
            *next_at = match self.policy {
                CutPolicy::Prometheus2 => {
                    compute_chunk_end_time_v2(c.min_time, c.max_time, *next_at)
                }
                CutPolicy::Prometheus3 => {
                    compute_chunk_end_time_v3(c.min_time, c.max_time, *next_at, 4.0)
                }
            };
        }
        if t >= *next_at || c.num_samples >= self.samples_per_chunk * 2 {
            *next_at = range_for_timestamp(t, self.chunk_range);
            return true;
        }
        false
    }

    /// Splits one series' in-order samples into chunks exactly as the head would (a helper
    /// for tests, backfill and tools). Returns the encoded chunks with their time ranges.
    pub fn chunk_samples(&self, samples: &[(i64, f64)]) -> Result<Vec<(i64, i64, XorChunk)>> {
        let mut out: Vec<(i64, i64, XorChunk)> = Vec::new();
        let mut next_at = 0i64;
        for &(t, v) in samples {
            let open = out.last().map(|(mint, maxt, c)| OpenChunk {
                min_time: *mint,
                max_time: *maxt,
                num_samples: c.num_samples(),
                byte_len: c.bytes().len(),
            });
            if let Some(o) = &open {
                if t <= o.max_time {
                    continue; // out of order or duplicate: the head rejects it
                }
            }
            if self.cut(&mut next_at, open.as_ref(), t) {
                out.push((t, t, XorChunk::new()));
            }
            if let Some(last) = out.last_mut() {
                last.2.append(t, v)?;
                last.1 = t;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
