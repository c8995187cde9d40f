//! SPDY/3.1 framing (server side), the transport of `kubectl exec`/`port-forward`
//! before WebSocket: frames, name/value header blocks and their zlib compression
//! with the SPDY/3 dictionary.
//!
//! Written by hand: no maintained Rust crate implements SPDY (the protocol was
//! superseded by HTTP/2), and Kubernetes clients (client-go's `spdystream`) still
//! speak it. Follows the SPDY Protocol Draft 3.1: every frame has an 8-byte header;
//! control frames start with the control bit and version 3, data frames with a
//! 31-bit stream id; header blocks are compressed with one zlib stream per
//! direction for the whole session, primed with [`DICTIONARY`], each block
//! ending on a sync flush.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version of control frames.
pub const VERSION: u16 = 3;
/// Largest frame payload the 24-bit length field allows.
pub const MAX_FRAME_LEN: usize = (1 << 24) - 1;
/// Largest decompressed header block accepted (a bound against zlib bombs).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Largest control frame accepted.
pub const MAX_CONTROL_LEN: usize = 1 << 20;
/// The initial flow-control window of streams and of the session (64 KiB).
pub const DEFAULT_WINDOW: i64 = 65_536;

/// Control frame types.
pub mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// SETTINGS ids this server reads.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// Flag of control frames (SYN_STREAM, SYN_REPLY, HEADERS) and data frames: the
/// sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM flag: the recipient may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// Name/value pairs of a header block, in order. Names are lowercase on the wire;
/// several values of one name are joined by NUL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }
}

/// One setting of a SETTINGS frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A SPDY/3.1 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        settings: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this implementation does not know (ignored, as
    /// the specification asks).
    Unknown {
        kind: u16,
    },
}

/// Framing errors: all of them end the session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0} (only 3 is supported)")]
    Version(u16),
    #[error("{kind} frame of {len} bytes is malformed")]
    Malformed { kind: &'static str, len: usize },
    #[error("control frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("header block: {0}")]
    HeaderBlock(String),
    #[error("compressing a header block: {0}")]
    Compress(String),
}

/// The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): 65 names
/// and values each preceded by its 32-bit length, then a run of common strings.
fn build_dictionary() -> Vec<u8> {
    const WORDS: [&str; 65] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: [&str; 8] = [
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,",
        "image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,",
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,",
        "*,enq=0.",
    ];
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    for t in TAIL {
        d.extend_from_slice(t.as_bytes());
    }
    d
}

/// The SPDY/3 zlib dictionary (1423 bytes, Adler-32 `0xe3c6a7c2`).
pub static DICTIONARY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(build_dictionary);

/// Encode a header block (uncompressed): count, then length-prefixed names and
/// values, all lengths 32-bit big-endian.
pub fn encode_header_block(h: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(h.0.len() as u32).to_be_bytes());
    for (k, v) in &h.0 {
        let k = k.to_ascii_lowercase();
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Decode an uncompressed header block.
pub fn decode_header_block(mut b: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |m: &str| SpdyError::HeaderBlock(m.to_string());
    let take = |b: &mut &[u8]| -> Result<String, SpdyError> {
        if b.len() < 4 {
            return Err(bad("truncated length"));
        }
        let n = b.get_u32() as usize;
        if b.len() < n {
            return Err(bad("truncated string"));
        }
        let s = String::from_utf8(b[..n].to_vec()).map_err(|_| bad("string is not UTF-8"))?;
        b.advance(n);
        Ok(s)
    };
    if b.len() < 4 {
        return Err(bad("truncated count"));
    }
    let count = b.get_u32() as usize;
    // Each pair takes at least 8 bytes: a count beyond that is a lie.
    if count > b.len() / 8 {
        return Err(bad("pair count exceeds the block"));
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        if k.is_empty() {
            return Err(bad("empty header name"));
        }
        pairs.push((k.to_ascii_lowercase(), v));
    }
    Ok(Headers(pairs))
}

/// The compression state of one direction of a session.
pub struct HeaderCompressor(Compress);

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    pub fn new() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        // Cannot fail on a fresh stream.
        let _ = c.set_dictionary(&DICTIONARY);
        Self(c)
    }

    /// Compress one header block, ending on a sync flush so that the peer can
    /// decode it alone.
    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let input = encode_header_block(headers);
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            let before = self.0.total_in();
            self.0
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compress(e.to_string()))?;
            pos += (self.0.total_in() - before) as usize;
            // Done when all input is in and the flush left spare room.
            if pos >= input.len() && out.capacity() > out.len() {
                return Ok(out);
            }
        }
    }
}

/// The decompression state of one direction of a session.
pub struct HeaderDecompressor(Decompress);

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        Self(Decompress::new(true))
    }

    /// Decompress one header block and parse it.
    pub fn decompress(&mut self, input: &[u8]) -> Result<Headers, SpdyError> {
        let err = |e: &dyn std::fmt::Display| SpdyError::HeaderBlock(e.to_string());
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlock(format!(
                        "decompressed block exceeds {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(4096);
            }
            let before_in = self.0.total_in();
            let before_out = self.0.total_out();
            let r = self
                .0
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.0.total_in() - before_in) as usize;
            match r {
                Ok(Status::StreamEnd) => return Err(err(&"zlib stream ended")),
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(_) => {
                        self.0.set_dictionary(&DICTIONARY).map_err(|e| err(&e))?;
                        continue;
                    }
                    None => return Err(err(&e)),
                },
            }
            let progressed = self.0.total_out() > before_out || self.0.total_in() > before_in;
            if pos >= input.len() && (out.capacity() > out.len() || !progressed) {
                break;
            }
            if !progressed && out.capacity() > out.len() {
                return Err(err(&"no progress decompressing"));
            }
        }
        decode_header_block(&out)
    }
}

/// Encodes frames for one direction of a session (owns its compressor).
#[derive(Default)]
pub struct Encoder {
    compressor: HeaderCompressor,
}

fn control_header(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32(((flags as u32) << 24) | (len as u32 & 0x00ff_ffff));
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = self.compressor.compress(headers)?;
                control_header(out, kind::SYN_STREAM, *flags, 10 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x7) << 5);
                out.put_u8(0);
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compressor.compress(headers)?;
                control_header(out, kind::SYN_REPLY, *flags, 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compressor.compress(headers)?;
                control_header(out, kind::HEADERS, *flags, 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, kind::RST_STREAM, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { flags, settings } => {
                control_header(out, kind::SETTINGS, *flags, 4 + 8 * settings.len());
                out.put_u32(settings.len() as u32);
                for s in settings {
                    out.put_u32(((s.flags as u32) << 24) | (s.id & 0x00ff_ffff));
                    out.put_u32(s.value);
                }
            }
            Frame::Ping { id } => {
                control_header(out, kind::PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, kind::GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, kind::WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_LEN {
                    return Err(SpdyError::TooLarge(data.len()));
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(((*flags as u32) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::Unknown { .. } => {}
        }
        Ok(())
    }
}

/// Decodes frames of one direction of a session (owns its decompressor).
#[derive(Default)]
pub struct Decoder {
    decompressor: HeaderDecompressor,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one whole frame off the front of `buf`; `Ok(None)` when more bytes
    /// are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let word = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        let control = word & 0x8000_0000 != 0;
        if control && len > MAX_CONTROL_LEN {
            return Err(SpdyError::TooLarge(len));
        }
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        buf.advance(8);
        let mut p = buf.split_to(len).freeze();
        if !control {
            return Ok(Some(Frame::Data {
                stream_id: word & 0x7fff_ffff,
                flags,
                data: p,
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = (word & 0xffff) as u16;
        let malformed = |kind: &'static str| SpdyError::Malformed { kind, len };
        let frame = match kind {
            kind::SYN_STREAM => {
                if len < 10 {
                    return Err(malformed("SYN_STREAM"));
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                let headers = self.decompressor.decompress(&p)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers,
                }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                if len < 4 {
                    return Err(malformed(if kind == kind::HEADERS {
                        "HEADERS"
                    } else {
                        "SYN_REPLY"
                    }));
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.decompressor.decompress(&p)?;
                if kind == kind::HEADERS {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            kind::RST_STREAM => {
                if len != 8 {
                    return Err(malformed("RST_STREAM"));
                }
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            kind::SETTINGS => {
                if len < 4 {
                    return Err(malformed("SETTINGS"));
                }
                let n = p.get_u32() as usize;
                if p.len() != n.saturating_mul(8) {
                    return Err(malformed("SETTINGS"));
                }
                let settings = (0..n)
                    .map(|_| {
                        let w = p.get_u32();
                        Setting {
                            flags: (w >> 24) as u8,
                            id: w & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, settings }
            }
            kind::PING => {
                if len != 4 {
                    return Err(malformed("PING"));
                }
                Frame::Ping { id: p.get_u32() }
            }
            kind::GOAWAY => {
                if len != 8 {
                    return Err(malformed("GOAWAY"));
                }
                Frame::GoAway {
                    last_good_stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            kind::WINDOW_UPDATE => {
                if len != 8 {
                    return Err(malformed("WINDOW_UPDATE"));
                }
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { kind: other },
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_matches_the_spdy3_dictionary_id() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(&DICTIONARY), 0xe3c6_a7c2);
    }

    #[test]
    fn control_frames_encode_to_spec_bytes() {
        let mut e = Encoder::new();
        let mut out = BytesMut::new();
        // RST_STREAM: 0x8003 0x0003, flags 0, length 8, stream 5, status CANCEL.
        e.encode(
            &Frame::RstStream {
                stream_id: 5,
                status: rst::CANCEL,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            &out[..],
            &[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 5]
        );
        out.clear();
        e.encode(
            &Frame::WindowUpdate {
                stream_id: 0,
                delta: 0x8000,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            &out[..],
            &[
                0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x80, 0
            ]
        );
        out.clear();
        e.encode(&Frame::Ping { id: 2 }, &mut out).unwrap();
        assert_eq!(&out[..], &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 2]);
        out.clear();
        e.encode(
            &Frame::GoAway {
                last_good_stream_id: 7,
                status: goaway::OK,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            &out[..],
            &[0x80, 0x03, 0x00, 0x07, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0]
        );
        out.clear();
        // DATA: stream id, flags FIN, length 3.
        e.encode(
            &Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"abc"),
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 3, 1, 0, 0, 3, b'a', b'b', b'c']);
        out.clear();
        e.encode(
            &Frame::Settings {
                flags: 0,
                settings: vec![Setting {
                    flags: 0,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                }],
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            &out[..],
            &[
                0x80, 0x03, 0x00, 0x04, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0x10, 0, 0
            ]
        );
    }

    #[test]
    fn control_frames_decode_from_spec_bytes() {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(
            &[
                // SETTINGS with INITIAL_WINDOW_SIZE = 0x20000, persisted flag
                0x80, 0x03, 0x00, 0x04, 0, 0, 0, 12, 0, 0, 0, 1, 2, 0, 0, 7, 0, 2, 0, 0,
                // WINDOW_UPDATE stream 1 delta 100 (reserved bit set: ignored)
                0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0, 0, 0, 1, 0x80, 0, 0, 100,
                // an unknown control type 0x0a (CREDENTIAL in SPDY/3), 2 bytes
                0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 2, 9, 9,
                // a data frame split: only its header
                0, 0, 0, 1, 0, 0, 0, 4,
            ][..],
        );
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Frame::Settings {
                flags: 0,
                settings: vec![Setting {
                    flags: 2,
                    id: 7,
                    value: 0x20000
                }]
            })
        );
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Frame::WindowUpdate {
                stream_id: 1,
                delta: 100
            })
        );
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Frame::Unknown { kind: 0x0a })
        );
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"wxyz");
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"wxyz")
            })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn wrong_version_and_bad_lengths_are_errors() {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(d.decode(&mut buf), Err(SpdyError::Version(2)));
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 3, 0, 0, 1][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(SpdyError::Malformed { kind: "PING", .. })
        ));
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&[0x80, 0x03, 0x00, 0x01, 0, 0xff, 0xff, 0xff][..]);
        assert_eq!(d.decode(&mut buf), Err(SpdyError::TooLarge(0xff_ffff)));
    }

    #[test]
    fn header_block_layout_follows_the_spec() {
        let block = encode_header_block(&h(&[("streamType", "error"), ("port", "80")]));
        let mut want = vec![0, 0, 0, 2];
        for s in ["streamtype", "error", "port", "80"] {
            want.extend_from_slice(&(s.len() as u32).to_be_bytes());
            want.extend_from_slice(s.as_bytes());
        }
        assert_eq!(block, want);
        let back = decode_header_block(&block).unwrap();
        assert_eq!(back.get("StreamType"), Some("error"));
        assert_eq!(back.get("port"), Some("80"));
        assert!(decode_header_block(&[0, 0, 0, 9, 0, 0]).is_err());
        assert!(decode_header_block(&[0, 0, 0, 1, 0, 0, 0, 5, b'a']).is_err());
    }

    #[test]
    fn compressed_blocks_start_with_the_dictionary_id() {
        let mut c = HeaderCompressor::new();
        let z = c.compress(&h(&[("a", "b")])).unwrap();
        // zlib header with FDICT, then the dictionary's Adler-32.
        assert_eq!(z[0] & 0x0f, 8);
        assert_ne!(z[1] & 0x20, 0);
        assert_eq!(&z[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        // A sync flush ends every block with an empty stored block.
        assert_eq!(&z[z.len() - 4..], &[0, 0, 0xff, 0xff]);
    }

    #[test]
    fn header_blocks_round_trip_across_one_session() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        for i in 0..50 {
            let hs = h(&[
                ("streamtype", if i % 2 == 0 { "data" } else { "error" }),
                ("port", &format!("{}", 8000 + i)),
                ("requestid", &i.to_string()),
                ("multi", "a\0b"),
            ]);
            let z = c.compress(&hs).unwrap();
            assert_eq!(d.decompress(&z).unwrap(), hs);
        }
        // An empty block and a large one.
        assert_eq!(
            d.decompress(&c.compress(&Headers::default()).unwrap())
                .unwrap(),
            Headers::default()
        );
        let big = "x".repeat(100_000);
        let hs = h(&[("big", &big)]);
        assert_eq!(d.decompress(&c.compress(&hs).unwrap()).unwrap(), hs);
    }

    #[test]
    fn frames_round_trip_through_encoder_and_decoder() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 2,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: Headers::default(),
            },
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: h(&[("x", "y")]),
            },
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from(vec![7u8; 70_000]),
            },
            Frame::Ping { id: 1 },
            Frame::RstStream {
                stream_id: 3,
                status: rst::REFUSED_STREAM,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: goaway::PROTOCOL_ERROR,
            },
        ];
        let mut e = Encoder::new();
        let mut wire = BytesMut::new();
        for f in &frames {
            e.encode(f, &mut wire).unwrap();
        }
        let mut d = Decoder::new();
        // Feed the bytes in odd-sized pieces.
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for chunk in wire.chunks(333) {
            buf.extend_from_slice(chunk);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }
}
