//! The protobuf wire format: varints, fixed-width values and length-delimited records.
//!
//! `prost` has these primitives, but only behind its `Message` trait for compile-time
//! types; decoding by a run-time schema into `serde_json::Value` needs the raw
//! key/value stream, which takes a few dozen lines to read and write by hand.

use super::ProtoError;

/// Wire types.
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// One field value as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Wire<'_> {
    /// The wire type number, for error messages.
    pub fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => VARINT,
            Wire::Fixed64(_) => FIXED64,
            Wire::Len(_) => LEN,
            Wire::Fixed32(_) => FIXED32,
        }
    }
}

/// Reads `(field number, value)` pairs from an encoded message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(ProtoError::Truncated)?;
            self.pos += 1;
            // The tenth byte may only carry the top bit of a 64-bit value.
            if i == 9 && byte > 1 {
                return Err(ProtoError::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).ok_or(ProtoError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(ProtoError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    pub fn fixed64(&mut self) -> Result<u64, ProtoError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    fn fixed32(&mut self) -> Result<u32, ProtoError> {
        let bytes = self.take(4)?;
        let mut array = [0u8; 4];
        array.copy_from_slice(bytes);
        Ok(u32::from_le_bytes(array))
    }

    /// The next field, or `None` at the end of the message.
    pub fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtoError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| ProtoError::InvalidFieldNumber)?;
        if number == 0 || number > 0x1fff_ffff {
            return Err(ProtoError::InvalidFieldNumber);
        }
        let value = match (key & 7) as u8 {
            VARINT => Wire::Varint(self.varint()?),
            FIXED64 => Wire::Fixed64(self.fixed64()?),
            LEN => {
                let len = usize::try_from(self.varint()?).map_err(|_| ProtoError::Truncated)?;
                Wire::Len(self.take(len)?)
            }
            FIXED32 => Wire::Fixed32(self.fixed32()?),
            other => return Err(ProtoError::UnsupportedWireType(other)),
        };
        Ok(Some((number, value)))
    }
}

/// Appends encoded fields to a buffer.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

pub(crate) fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn put_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_key(out, number, VARINT);
    put_varint(out, value);
}

pub(crate) fn put_fixed64_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_key(out, number, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX, (-1i64) as u64] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            let mut reader = Reader::new(&buf);
            assert_eq!(reader.varint(), Ok(value));
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: &[(&[u8], ProtoError)] = &[
            (&[0x08], ProtoError::Truncated),
            (&[0x08, 0x80], ProtoError::Truncated),
            (&[0x0a, 0x05, 1, 2], ProtoError::Truncated),
            (&[0x09, 1, 2, 3], ProtoError::Truncated),
            (&[0x0d, 1], ProtoError::Truncated),
            (&[0x0b], ProtoError::UnsupportedWireType(3)),
            (&[0x0f], ProtoError::UnsupportedWireType(7)),
            (&[0x00, 0x00], ProtoError::InvalidFieldNumber),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                ],
                ProtoError::VarintOverflow,
            ),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                ProtoError::VarintOverflow,
            ),
        ];
        for (bytes, want) in cases {
            let mut reader = Reader::new(bytes);
            assert_eq!(reader.field().err().as_ref(), Some(want), "{bytes:?}");
        }
    }

    #[test]
    fn fields_are_read_in_order() {
        let mut buf = Vec::new();
        put_varint_field(&mut buf, 1, 150);
        put_len(&mut buf, 2, b"abc");
        put_fixed64_field(&mut buf, 3, 7);
        let mut reader = Reader::new(&buf);
        assert_eq!(reader.field(), Ok(Some((1, Wire::Varint(150)))));
        assert_eq!(reader.field(), Ok(Some((2, Wire::Len(b"abc")))));
        assert_eq!(reader.field(), Ok(Some((3, Wire::Fixed64(7)))));
        assert_eq!(reader.field(), Ok(None));
    }
}
