//! Attaching to a running container: the wire protocol between a client (the kubelet,
//! `flotilla ctr`, tests) and the container's shim, which serves it on the unix socket
//! `<container-dir>/attach.sock` for as long as the container runs. The socket lives in
//! the container's directory, so a kubelet started after the shim attaches the same way.
//!
//! Frames in both directions: one kind byte, the payload length as a big-endian `u32`,
//! the payload. The client starts with [`HELLO`] (which streams it wants), then sends
//! [`STDIN`] data, [`CLOSE_STDIN`] when its input ends and [`RESIZE`] for terminal size
//! changes; the shim sends [`STDOUT`] and [`STDERR`] output (with a terminal, everything
//! is `STDOUT`) and closes the connection once the container has exited and its output
//! has been delivered, or when the client's stdin ends and the container is not
//! `stdinOnce` (the client then detaches, as with containerd).
//!
//! Socket paths of deep data directories exceed `sun_path` (108 bytes): both sides name
//! the socket through `/proc/self/fd/<directory fd>/attach.sock`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// File name of the attach socket in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// Client → shim: the first frame; payload one byte of [`AttachOptions`] flags.
pub const HELLO: u8 = 0;
/// Client → shim: input bytes for the container's stdin.
pub const STDIN: u8 = 1;
/// Client → shim: the client's input ended.
pub const CLOSE_STDIN: u8 = 2;
/// Client → shim: terminal size, width and height as big-endian `u16`s.
pub const RESIZE: u8 = 3;
/// Shim → client: standard output (the terminal's output with a tty).
pub const STDOUT: u8 = 1;
/// Shim → client: standard error.
pub const STDERR: u8 = 2;

/// Largest payload accepted in one frame.
pub const MAX_FRAME: usize = 1 << 20;

/// Which streams an attaching client wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Send input to the container (ignored when the container has no stdin).
    pub stdin: bool,
    /// Receive standard output.
    pub stdout: bool,
    /// Receive standard error.
    pub stderr: bool,
}

impl AttachOptions {
    /// The [`HELLO`] payload.
    pub fn to_byte(self) -> u8 {
        u8::from(self.stdin) | (u8::from(self.stdout) << 1) | (u8::from(self.stderr) << 2)
    }

    /// Parse a [`HELLO`] payload.
    pub fn from_byte(b: u8) -> AttachOptions {
        AttachOptions {
            stdin: b & 1 != 0,
            stdout: b & 2 != 0,
            stderr: b & 4 != 0,
        }
    }
}

/// Encode one frame.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encode a [`RESIZE`] frame.
pub fn resize_frame(width: u16, height: u16) -> Vec<u8> {
    let mut p = width.to_be_bytes().to_vec();
    p.extend_from_slice(&height.to_be_bytes());
    encode(RESIZE, &p)
}

/// Decode a [`RESIZE`] payload into (width, height).
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    let p: [u8; 4] = payload.try_into().ok()?;
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Read one frame; `None` at a clean end of stream (before a frame).
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes is too large"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

fn via_dir_fd<T>(dir: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let d = File::open(dir)?;
    let p = format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd());
    let r = f(Path::new(&p));
    drop(d);
    r
}

/// Bind the attach socket of container directory `dir` (replacing a stale one).
pub fn bind(dir: &Path) -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(dir.join(SOCKET));
    via_dir_fd(dir, |p| UnixListener::bind(p))
}

/// Connect to the attach socket of container directory `dir` and say [`HELLO`].
pub fn connect(dir: &Path, opts: AttachOptions) -> io::Result<AttachConn> {
    let mut s = via_dir_fd(dir, |p| UnixStream::connect(p))?;
    s.write_all(&encode(HELLO, &[opts.to_byte()]))?;
    Ok(AttachConn { stream: s })
}

/// A blocking client connection to a container's shim.
#[derive(Debug)]
pub struct AttachConn {
    stream: UnixStream,
}

impl AttachConn {
    /// Send input.
    pub fn send_stdin(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(64 * 1024) {
            self.stream.write_all(&encode(STDIN, chunk))?;
        }
        Ok(())
    }

    /// Say that the input ended.
    pub fn close_stdin(&mut self) -> io::Result<()> {
        self.stream.write_all(&encode(CLOSE_STDIN, &[]))
    }

    /// Set the terminal size.
    pub fn resize(&mut self, width: u16, height: u16) -> io::Result<()> {
        self.stream.write_all(&resize_frame(width, height))
    }

    /// Next output frame: ([`STDOUT`] or [`STDERR`], bytes); `None` once the shim closed
    /// the connection.
    pub fn read_output(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        read_frame(&mut self.stream)
    }

    /// A second handle on the same connection (e.g. one thread reads, one writes).
    pub fn try_clone(&self) -> io::Result<AttachConn> {
        Ok(AttachConn {
            stream: self.stream.try_clone()?,
        })
    }

    /// The socket, e.g. to drive it asynchronously.
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = encode(STDIN, b"hello");
        buf.extend(resize_frame(80, 24));
        buf.extend(encode(CLOSE_STDIN, &[]));
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDIN, b"hello".to_vec()))
        );
        let (k, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((k, parse_resize(&p)), (RESIZE, Some((80, 24))));
        assert_eq!(read_frame(&mut r).unwrap(), Some((CLOSE_STDIN, vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        // A truncated frame is an error, not a clean end.
        let mut short = &encode(STDOUT, b"abc")[..6];
        assert!(read_frame(&mut short).is_err());
        let mut huge = &[STDOUT, 0xff, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut huge).is_err());
        assert_eq!(parse_resize(&[1, 2, 3]), None);
    }

    #[test]
    fn options_round_trip() {
        for b in 0..8 {
            assert_eq!(AttachOptions::from_byte(b).to_byte(), b);
        }
    }

    #[test]
    fn long_directory_paths_bind_and_connect() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("x".repeat(100)).join("y".repeat(100));
        std::fs::create_dir_all(&deep).unwrap();
        let l = bind(&deep).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            read_frame(&mut s).unwrap()
        });
        let opts = AttachOptions {
            stdin: true,
            stdout: true,
            stderr: false,
        };
        let _c = connect(&deep, opts).unwrap();
        assert_eq!(t.join().unwrap(), Some((HELLO, vec![opts.to_byte()])));
        assert!(deep.join(SOCKET).exists());
    }
}
