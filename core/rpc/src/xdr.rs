//! A small typed XDR (RFC 4506) codec.
//!
//! Types implement [`XdrEncode`] and [`XdrDecode`]; the generated protocol structs do so
//! with plain hand-readable impls (see `tools/gen_protocol.py`). Values whose XDR type
//! carries a bound (`string<N>`, `opaque<N>`, `T<N>`) and optional data (`T *`) are
//! written and read through the [`Encoder`]/[`Decoder`] helpers that take that bound, so
//! a bound is checked in both directions.
//!
//! Decoding untrusted input never allocates more than the input could describe: a
//! length is checked against its bound *and* against the bytes left before any buffer
//! is reserved, so a 4-byte length word cannot make the decoder reserve gigabytes.
//!
//! ```
//! use qvisor_rpc::xdr::{Decoder, Encoder};
//!
//! let mut e = Encoder::new();
//! e.put_string("vm1", 64).unwrap();
//! e.put_option(Some(&7u32), |e, v| e.put_u32(*v)).unwrap();
//! let bytes = e.into_bytes();
//! assert_eq!(bytes.len(), 4 + 4 + 4 + 4);
//!
//! let mut d = Decoder::new(&bytes);
//! assert_eq!(d.string(64).unwrap(), "vm1");
//! assert_eq!(d.option(|d| d.u32()).unwrap(), Some(7));
//! d.finish().unwrap();
//! ```

/// Why encoding or decoding XDR data failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    /// The input ended inside an item.
    #[error("XDR data truncated at offset {offset}: {needed} more bytes needed")]
    Truncated {
        /// Where the item started.
        offset: usize,
        /// Bytes missing.
        needed: usize,
    },
    /// A `string<N>`, `opaque<N>` or array is longer than its bound.
    #[error("XDR {what} of length {len} at offset {offset} exceeds its limit of {max}")]
    TooLong {
        /// `string`, `opaque` or `array`.
        what: &'static str,
        /// The length found (decoding) or given (encoding).
        len: u64,
        /// The bound from the protocol definition.
        max: u32,
        /// Where the length word is (0 when encoding).
        offset: usize,
    },
    /// A string is not UTF-8.
    #[error("XDR string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string's length word is.
        offset: usize,
    },
    /// A boolean or optional-data flag is neither 0 nor 1.
    #[error("XDR {what} at offset {offset} has invalid value {value}")]
    InvalidFlag {
        /// `bool` or `optional-data flag`.
        what: &'static str,
        /// The word found.
        value: u32,
        /// Its offset.
        offset: usize,
    },
    /// A union's discriminant has no arm.
    #[error("XDR union {union} has no arm for discriminant {value}")]
    UnknownDiscriminant {
        /// The XDR name of the union.
        union: &'static str,
        /// The discriminant found.
        value: i32,
    },
    /// Bytes were left after the value a message should hold.
    #[error("{trailing} unexpected bytes after the XDR value at offset {offset}")]
    TrailingBytes {
        /// Where the value ended.
        offset: usize,
        /// How many bytes followed.
        trailing: usize,
    },
}

/// Shorthand for this module's results.
pub type Result<T> = std::result::Result<T, XdrError>;

/// A value with an XDR encoding.
pub trait XdrEncode {
    /// Appends this value's encoding to `e`.
    fn encode(&self, e: &mut Encoder) -> Result<()>;
}

/// A value that can be read from its XDR encoding.
pub trait XdrDecode: Sized {
    /// Reads one value from `d`.
    fn decode(d: &mut Decoder<'_>) -> Result<Self>;
}

/// Encodes `value` into a fresh buffer.
pub fn to_bytes<T: XdrEncode + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut e = Encoder::new();
    value.encode(&mut e)?;
    Ok(e.into_bytes())
}

/// Decodes exactly one `T` from `bytes` (trailing bytes are an error).
pub fn from_bytes<T: XdrDecode>(bytes: &[u8]) -> Result<T> {
    let mut d = Decoder::new(bytes);
    let value = T::decode(&mut d)?;
    d.finish()?;
    Ok(value)
}

fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Appends XDR items to a growable buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An encoder that appends to `buf` (e.g. after a reserved header).
    pub fn from_vec(buf: Vec<u8>) -> Self {
        Self { buf }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// XDR `unsigned int`.
    pub fn put_u32(&mut self, v: u32) -> Result<()> {
        self.buf.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// XDR `int`.
    pub fn put_i32(&mut self, v: i32) -> Result<()> {
        self.buf.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// XDR `unsigned hyper`.
    pub fn put_u64(&mut self, v: u64) -> Result<()> {
        self.buf.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// XDR `hyper`.
    pub fn put_i64(&mut self, v: i64) -> Result<()> {
        self.buf.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn put_len(&mut self, what: &'static str, len: usize, max: u32) -> Result<()> {
        match u32::try_from(len) {
            Ok(n) if n <= max => self.put_u32(n),
            _ => Err(XdrError::TooLong {
                what,
                len: len as u64,
                max,
                offset: 0,
            }),
        }
    }

    fn put_padded(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.buf
            .extend_from_slice(&[0u8; 3][..padding(bytes.len())]);
    }

    /// XDR `string<max>`.
    pub fn put_string(&mut self, s: &str, max: u32) -> Result<()> {
        self.put_len("string", s.len(), max)?;
        self.put_padded(s.as_bytes());
        Ok(())
    }

    /// XDR `opaque<max>`.
    pub fn put_opaque(&mut self, bytes: &[u8], max: u32) -> Result<()> {
        self.put_len("opaque", bytes.len(), max)?;
        self.put_padded(bytes);
        Ok(())
    }

    /// XDR `opaque[N]`.
    pub fn put_fixed_opaque(&mut self, bytes: &[u8]) -> Result<()> {
        self.put_padded(bytes);
        Ok(())
    }

    /// XDR `T name<max>`: a count, then each item written by `f`.
    pub fn put_array<T>(
        &mut self,
        items: &[T],
        max: u32,
        mut f: impl FnMut(&mut Self, &T) -> Result<()>,
    ) -> Result<()> {
        self.put_len("array", items.len(), max)?;
        items.iter().try_for_each(|item| f(self, item))
    }

    /// XDR `T name[N]`: each item written by `f`, no count.
    pub fn put_fixed_array<T>(
        &mut self,
        items: &[T],
        mut f: impl FnMut(&mut Self, &T) -> Result<()>,
    ) -> Result<()> {
        items.iter().try_for_each(|item| f(self, item))
    }

    /// XDR optional data `T *name`: a flag, then the value written by `f`.
    pub fn put_option<T: ?Sized>(
        &mut self,
        value: Option<&T>,
        f: impl FnOnce(&mut Self, &T) -> Result<()>,
    ) -> Result<()> {
        match value {
            None => self.put_u32(0),
            Some(v) => {
                self.put_u32(1)?;
                f(self, v)
            }
        }
    }
}

/// Reads XDR items from a byte slice.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Checks that every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(XdrError::TrailingBytes {
                offset: self.pos,
                trailing,
            }),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        if rest.len() < n {
            return Err(XdrError::Truncated {
                offset: self.pos,
                needed: n - rest.len(),
            });
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn word<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// XDR `unsigned int`.
    pub fn u32(&mut self) -> Result<u32> {
        self.word().map(u32::from_be_bytes)
    }

    /// XDR `int`.
    pub fn i32(&mut self) -> Result<i32> {
        self.word().map(i32::from_be_bytes)
    }

    /// XDR `unsigned hyper`.
    pub fn u64(&mut self) -> Result<u64> {
        self.word().map(u64::from_be_bytes)
    }

    /// XDR `hyper`.
    pub fn i64(&mut self) -> Result<i64> {
        self.word().map(i64::from_be_bytes)
    }

    /// Reads a length word and checks it against `max` and against what is left,
    /// given that each item takes at least `min_wire` bytes.
    fn len(&mut self, what: &'static str, max: u32, min_wire: usize) -> Result<usize> {
        let offset = self.pos;
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong {
                what,
                len: len.into(),
                max,
                offset,
            });
        }
        let len = len as usize;
        let needed = len.saturating_mul(min_wire);
        if needed > self.remaining() {
            return Err(XdrError::Truncated {
                offset,
                needed: needed - self.remaining(),
            });
        }
        Ok(len)
    }

    fn padded(&mut self, len: usize) -> Result<&'a [u8]> {
        let bytes = self.take(len)?;
        self.take(padding(len))?;
        Ok(bytes)
    }

    /// XDR `string<max>` (must be UTF-8).
    pub fn string(&mut self, max: u32) -> Result<String> {
        let offset = self.pos;
        let len = self.len("string", max, 1)?;
        let bytes = self.padded(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| XdrError::InvalidUtf8 { offset })
    }

    /// XDR `opaque<max>`.
    pub fn opaque(&mut self, max: u32) -> Result<Vec<u8>> {
        let len = self.len("opaque", max, 1)?;
        Ok(self.padded(len)?.to_vec())
    }

    /// XDR `opaque[N]`.
    pub fn fixed_opaque<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.padded(N)?);
        Ok(out)
    }

    /// XDR `T name<max>`; `min_wire` is the smallest encoding of one item (at least 1),
    /// which bounds the allocation by the input's size.
    pub fn array<T>(
        &mut self,
        max: u32,
        min_wire: usize,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let len = self.len("array", max, min_wire.max(1))?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(f(self)?);
        }
        Ok(items)
    }

    /// XDR `T name[N]`.
    pub fn fixed_array<T, const N: usize>(
        &mut self,
        min_wire: usize,
        mut f: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<[T; N]> {
        let needed = N.saturating_mul(min_wire);
        if needed > self.remaining() {
            return Err(XdrError::Truncated {
                offset: self.pos,
                needed: needed - self.remaining(),
            });
        }
        let mut items = Vec::with_capacity(N);
        for _ in 0..N {
            items.push(f(self)?);
        }
        // The loop pushed exactly N items.
        items.try_into().map_err(|_: Vec<T>| XdrError::Truncated {
            offset: self.pos,
            needed: 0,
        })
    }

    /// XDR optional data `T *name`.
    pub fn option<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        let offset = self.pos;
        match self.u32()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            value => Err(XdrError::InvalidFlag {
                what: "optional-data flag",
                value,
                offset,
            }),
        }
    }
}

macro_rules! xdr_word {
    ($($t:ty => $put:ident, $get:ident, $wide:ty;)*) => {$(
        impl XdrEncode for $t {
            fn encode(&self, e: &mut Encoder) -> Result<()> {
                e.$put(<$wide>::from(*self))
            }
        }
        impl XdrDecode for $t {
            fn decode(d: &mut Decoder<'_>) -> Result<Self> {
                // XDR widens small integers to a word; keep the low bits like rpcgen does.
                #[allow(clippy::cast_possible_truncation)]
                d.$get().map(|v| v as $t)
            }
        }
    )*};
}

xdr_word! {
    i32 => put_i32, i32, i32;
    u32 => put_u32, u32, u32;
    i64 => put_i64, i64, i64;
    u64 => put_u64, u64, u64;
    i8 => put_i32, i32, i32;
    u8 => put_u32, u32, u32;
    i16 => put_i32, i32, i32;
    u16 => put_u32, u32, u32;
}

impl XdrEncode for bool {
    fn encode(&self, e: &mut Encoder) -> Result<()> {
        e.put_u32(u32::from(*self))
    }
}

impl XdrDecode for bool {
    fn decode(d: &mut Decoder<'_>) -> Result<Self> {
        let offset = d.position();
        match d.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(XdrError::InvalidFlag {
                what: "bool",
                value,
                offset,
            }),
        }
    }
}

impl XdrEncode for f64 {
    fn encode(&self, e: &mut Encoder) -> Result<()> {
        e.put_u64(self.to_bits())
    }
}

impl XdrDecode for f64 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self> {
        d.u64().map(f64::from_bits)
    }
}

impl XdrEncode for f32 {
    fn encode(&self, e: &mut Encoder) -> Result<()> {
        e.put_u32(self.to_bits())
    }
}

impl XdrDecode for f32 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self> {
        d.u32().map(f32::from_bits)
    }
}

/// `void`: the body of procedures without arguments or reply.
impl XdrEncode for () {
    fn encode(&self, _e: &mut Encoder) -> Result<()> {
        Ok(())
    }
}

impl XdrDecode for () {
    fn decode(_d: &mut Decoder<'_>) -> Result<Self> {
        Ok(())
    }
}

/// A C string as libvirt sends it in a `char name<N>` field: its bytes and a NUL.
///
/// ```
/// assert_eq!(qvisor_rpc::xdr::c_chars("ab"), [97, 98, 0]);
/// ```
pub fn c_chars(s: &str) -> Vec<i8> {
    s.bytes()
        .map(|b| b as i8)
        .chain(std::iter::once(0))
        .collect()
}

/// A C string in a fixed `char name[N]` field, NUL-padded (cut to `N - 1` bytes).
pub fn c_char_array<const N: usize>(s: &str) -> [i8; N] {
    let mut out = [0i8; N];
    for (slot, b) in out.iter_mut().zip(s.bytes().take(N.saturating_sub(1))) {
        *slot = b as i8;
    }
    out
}

/// The text of a C string from a `char` field, up to its first NUL.
pub fn c_chars_to_string(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_words() {
        let mut e = Encoder::new();
        e.put_u32(0x0102_0304).unwrap();
        (-2i32).encode(&mut e).unwrap();
        7u8.encode(&mut e).unwrap();
        0x1122_3344_5566_7788u64.encode(&mut e).unwrap();
        let b = e.into_bytes();
        assert_eq!(
            b,
            [
                1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 7, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
                0x77, 0x88
            ]
        );
        let mut d = Decoder::new(&b);
        assert_eq!(d.u32().unwrap(), 0x0102_0304);
        assert_eq!(i32::decode(&mut d).unwrap(), -2);
        assert_eq!(u8::decode(&mut d).unwrap(), 7);
        assert_eq!(u64::decode(&mut d).unwrap(), 0x1122_3344_5566_7788);
        d.finish().unwrap();
    }

    #[test]
    fn string_is_length_prefixed_and_padded_to_four_bytes() {
        let mut e = Encoder::new();
        e.put_string("hello", 10).unwrap();
        assert_eq!(
            e.into_bytes(),
            [0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]
        );
    }

    #[test]
    fn string_round_trips_for_every_padding_length() {
        for s in ["", "a", "ab", "abc", "abcd", "äöü€"] {
            let mut e = Encoder::new();
            e.put_string(s, 100).unwrap();
            let b = e.into_bytes();
            assert_eq!(b.len() % 4, 0);
            let mut d = Decoder::new(&b);
            assert_eq!(d.string(100).unwrap(), s);
            d.finish().unwrap();
        }
    }

    #[test]
    fn string_over_its_bound_is_rejected_both_ways() {
        let mut e = Encoder::new();
        assert!(matches!(
            e.put_string("abcdef", 5),
            Err(XdrError::TooLong {
                what: "string",
                len: 6,
                max: 5,
                ..
            })
        ));
        let b = [0, 0, 0, 6, b'a', b'b', b'c', b'd', b'e', b'f', 0, 0];
        assert!(matches!(
            Decoder::new(&b).string(5),
            Err(XdrError::TooLong { len: 6, .. })
        ));
    }

    #[test]
    fn huge_declared_length_fails_without_allocating() {
        // 4 GiB - 1 declared, 4 bytes present.
        let b = [0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        assert!(matches!(
            Decoder::new(&b).opaque(u32::MAX),
            Err(XdrError::Truncated { .. })
        ));
        assert!(matches!(
            Decoder::new(&b).array(u32::MAX, 4, |d| d.u32()),
            Err(XdrError::Truncated { .. })
        ));
    }

    #[test]
    fn invalid_utf8_string_is_rejected() {
        let b = [0, 0, 0, 1, 0xff, 0, 0, 0];
        assert_eq!(
            Decoder::new(&b).string(10),
            Err(XdrError::InvalidUtf8 { offset: 0 })
        );
    }

    #[test]
    fn optional_flag_other_than_zero_or_one_is_rejected() {
        let b = [0, 0, 0, 2];
        assert!(matches!(
            Decoder::new(&b).option(|d| d.u32()),
            Err(XdrError::InvalidFlag { value: 2, .. })
        ));
    }

    #[test]
    fn bool_accepts_only_zero_and_one() {
        assert_eq!(from_bytes::<bool>(&[0, 0, 0, 1]), Ok(true));
        assert!(from_bytes::<bool>(&[0, 0, 0, 3]).is_err());
    }

    #[test]
    fn fixed_opaque_is_padded_and_has_no_length() {
        let mut e = Encoder::new();
        e.put_fixed_opaque(&[1, 2, 3, 4, 5]).unwrap();
        let b = e.into_bytes();
        assert_eq!(b, [1, 2, 3, 4, 5, 0, 0, 0]);
        let mut d = Decoder::new(&b);
        assert_eq!(d.fixed_opaque::<5>().unwrap(), [1, 2, 3, 4, 5]);
        d.finish().unwrap();
    }

    #[test]
    fn arrays_round_trip_with_and_without_count() {
        let items = [1i32, -1, 3];
        let mut e = Encoder::new();
        e.put_array(&items, 3, |e, v| v.encode(e)).unwrap();
        e.put_fixed_array(&items, |e, v| v.encode(e)).unwrap();
        let b = e.into_bytes();
        assert_eq!(b.len(), 4 + 12 + 12);
        let mut d = Decoder::new(&b);
        assert_eq!(d.array(3, 4, i32::decode).unwrap(), items);
        assert_eq!(d.fixed_array::<_, 3>(4, i32::decode).unwrap(), items);
        d.finish().unwrap();
    }

    #[test]
    fn array_over_its_bound_is_rejected() {
        let mut e = Encoder::new();
        assert!(e.put_array(&[1u32, 2], 1, |e, v| v.encode(e)).is_err());
        let b = [0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        assert!(matches!(
            Decoder::new(&b).array(1, 4, u32::decode),
            Err(XdrError::TooLong { what: "array", .. })
        ));
    }

    #[test]
    fn doubles_round_trip_bit_exact() {
        for v in [0.0, -1.5, f64::MAX, f64::MIN_POSITIVE] {
            assert_eq!(from_bytes::<f64>(&to_bytes(&v).unwrap()), Ok(v));
        }
    }

    #[test]
    fn trailing_bytes_are_reported() {
        assert!(matches!(
            from_bytes::<u32>(&[0, 0, 0, 1, 0]),
            Err(XdrError::TrailingBytes {
                offset: 4,
                trailing: 1
            })
        ));
    }

    #[test]
    fn truncated_word_reports_missing_bytes() {
        assert_eq!(
            from_bytes::<u64>(&[0, 0, 0]),
            Err(XdrError::Truncated {
                offset: 0,
                needed: 5
            })
        );
    }

    #[test]
    fn c_char_helpers_round_trip_and_pad() {
        assert_eq!(c_chars_to_string(&c_chars("apparmor")), "apparmor");
        let model: [i8; 8] = c_char_array("x86_64_long_name");
        assert_eq!(c_chars_to_string(&model), "x86_64_");
        assert_eq!(model[7], 0);
    }
}
