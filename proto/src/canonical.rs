//! A small canonical binary encoding for what Archipel signs.
//!
//! Why not protobuf: protobuf allows several encodings of one message, and a signature must
//! cover exactly one. Here every value has one encoding: fields in a fixed order, integers
//! big-endian with a fixed width, byte strings and lists prefixed by a u32 length. The decoder
//! is strict (bounded lengths, no trailing bytes), so that `decode(encode(x)) == x` and
//! `encode(decode(b)) == b` for every accepted `b`.

use thiserror::Error;

/// Why some bytes are not a valid canonical encoding.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated input while reading {0}")]
    Truncated(&'static str),
    #[error("{what} is {len} bytes long, over the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("wrong magic: not {0}")]
    Magic(&'static str),
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("{0} trailing bytes after the end")]
    Trailing(usize),
    #[error("invalid value for {0}")]
    Invalid(&'static str),
}

/// Appends canonical fields to a buffer.
#[derive(Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(magic: &[u8], version: u8) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(magic);
        buf.push(version);
        Writer { buf }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn fixed(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A length-prefixed byte string. Lengths over u32 cannot be encoded; callers bound
    /// their inputs far below that.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn opt_u32(&mut self, v: Option<u32>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(x) => self.u8(1).u32(x),
        }
    }
    pub fn len(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX))
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical fields; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the magic and returns the version byte.
    pub fn new(
        buf: &'a [u8],
        magic: &'static [u8],
        what: &'static str,
    ) -> Result<(Self, u8), DecodeError> {
        if buf.len() < magic.len() + 1 || &buf[..magic.len()] != magic {
            return Err(DecodeError::Magic(what));
        }
        let version = buf[magic.len()];
        Ok((
            Reader {
                buf: &buf[magic.len() + 1..],
            },
            version,
        ))
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(i64::from_be_bytes(a))
    }
    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        self.take(len, what)
    }
    pub fn str(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let b = self.bytes(what, max)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8(what))
    }
    pub fn opt_u32(&mut self, what: &'static str) -> Result<Option<u32>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.u32(what)?)),
            _ => Err(DecodeError::Invalid(what)),
        }
    }
    /// A list length, bounded before anything is allocated for it.
    pub fn len(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(DecodeError::TooLong { what, len: n, max });
        }
        Ok(n)
    }
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }
    /// What is left, for formats that end with a trailer (a signature).
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
}
