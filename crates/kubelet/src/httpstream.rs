//! A SPDY/3.1 server session over an upgraded connection (the kubelet's side of
//! client-go's `httpstream`): the client opens streams with SYN_STREAM, the
//! application accepts them, reads their data and writes its own.
//!
//! Flow control: received data is acknowledged with WINDOW_UPDATEs (per stream and
//! for the session) as the application consumes it. Sending respects the peer's
//! windows (initial 64 KiB, SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_UPDATE). Kubernetes
//! clients use `spdystream`, which does no flow control at all (it never sends a
//! WINDOW_UPDATE and ignores ours): a peer that lets a window run dry without having
//! sent a single WINDOW_UPDATE within [`FLOW_CONTROL_GRACE`] is treated as such a
//! peer and the windows stop being enforced for that session. Inbound data beyond
//! what the application has read is buffered up to [`INBOUND_HIGH_WATER`] bytes per
//! stream, after which reading the connection pauses (back-pressure through TCP).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::spdy::{self, Frame, Headers};

/// How long a sender waits for a first WINDOW_UPDATE before deciding the peer does
/// no flow control.
pub const FLOW_CONTROL_GRACE: Duration = Duration::from_millis(250);
/// Unread inbound bytes per stream before the session stops reading the connection.
pub const INBOUND_HIGH_WATER: usize = 8 << 20;
/// Largest data frame this side sends.
const CHUNK: usize = 32 * 1024;
/// Consumed bytes acknowledged per WINDOW_UPDATE (half the default window).
const ACK_THRESHOLD: u32 = 32 * 1024;
/// Streams open at once before new ones are refused.
const MAX_STREAMS: usize = 1000;

#[derive(Default)]
struct Inbound {
    queue: VecDeque<Bytes>,
    buffered: usize,
    /// The peer sent its last frame (FIN).
    fin: bool,
    /// Reset by either side, or the session ended without a FIN.
    broken: Option<String>,
    /// Consumed bytes not yet acknowledged with a stream WINDOW_UPDATE.
    unacked: u32,
}

struct StreamShared {
    id: u32,
    inbound: Mutex<Inbound>,
    /// Inbound data, FIN or reset arrived.
    readable: Notify,
    /// The application consumed inbound data.
    consumed: Notify,
    /// This side sent FIN (or a reset).
    local_done: std::sync::atomic::AtomicBool,
}

impl StreamShared {
    fn inbound(&self) -> MutexGuard<'_, Inbound> {
        self.inbound.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct State {
    streams: HashMap<u32, Arc<StreamShared>>,
    /// Send windows of open streams.
    send_windows: HashMap<u32, i64>,
    session_send_window: i64,
    initial_send_window: i64,
    /// The peer sent a WINDOW_UPDATE or SETTINGS_INITIAL_WINDOW_SIZE.
    peer_flow_control: bool,
    /// Windows are no longer enforced (the peer does no flow control).
    flow_control_off: bool,
    last_stream_id: u32,
    /// Consumed bytes not yet acknowledged with a session WINDOW_UPDATE.
    session_unacked: u32,
}

struct Shared {
    state: Mutex<State>,
    control: mpsc::UnboundedSender<Frame>,
    data: mpsc::Sender<Frame>,
    /// A window grew, or a stream/the session closed.
    window_changed: Notify,
    /// The connection ended (EOF, error or [`Session::shutdown`]).
    closed: CancellationToken,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send_control(&self, f: Frame) {
        let _ = self.control.send(f);
    }

    /// Forget a stream once both sides are done with it.
    fn maybe_remove(&self, s: &StreamShared) {
        let remote_done = {
            let i = s.inbound();
            i.fin || i.broken.is_some()
        };
        if remote_done && s.local_done.load(std::sync::atomic::Ordering::SeqCst) {
            let mut st = self.state();
            st.streams.remove(&s.id);
            st.send_windows.remove(&s.id);
        }
    }
}

/// A stream the client opened, not yet answered.
pub struct Stream {
    shared: Arc<StreamShared>,
    session: Arc<Shared>,
    headers: Headers,
}

impl Stream {
    /// The stream id (odd: client-initiated).
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// The headers of its SYN_STREAM.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Accept: send SYN_REPLY. The stream's halves follow.
    pub fn accept(self) -> (StreamReader, StreamWriter) {
        self.session.send_control(Frame::SynReply {
            stream_id: self.shared.id,
            flags: 0,
            headers: Headers::default(),
        });
        (
            StreamReader {
                shared: self.shared.clone(),
                session: self.session.clone(),
            },
            StreamWriter {
                shared: self.shared,
                session: self.session,
            },
        )
    }

    /// Refuse the stream as upstream does: a SYN_REPLY with FIN (this side will
    /// send nothing), then a reset.
    pub fn reject(self) {
        self.session.send_control(Frame::SynReply {
            stream_id: self.shared.id,
            flags: spdy::FLAG_FIN,
            headers: Headers::default(),
        });
        StreamWriter {
            shared: self.shared,
            session: self.session,
        }
        .reset(spdy::rst::REFUSED_STREAM);
    }
}

/// The receiving half of an accepted stream.
pub struct StreamReader {
    shared: Arc<StreamShared>,
    session: Arc<Shared>,
}

impl StreamReader {
    /// The next chunk of data; `Ok(None)` after the peer's FIN; an error when the
    /// stream was reset or the session ended first.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let notified = self.shared.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut i = self.shared.inbound();
                if let Some(b) = i.queue.pop_front() {
                    i.buffered -= b.len();
                    i.unacked = i.unacked.saturating_add(b.len() as u32);
                    let ack = (i.unacked >= ACK_THRESHOLD && !i.fin).then(|| {
                        let n = i.unacked;
                        i.unacked = 0;
                        n
                    });
                    drop(i);
                    self.shared.consumed.notify_waiters();
                    self.acknowledge(ack, b.len() as u32);
                    return Ok(Some(b));
                }
                if i.fin {
                    return Ok(None);
                }
                if let Some(why) = &i.broken {
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, why.clone()));
                }
            }
            notified.await;
        }
    }

    fn acknowledge(&self, stream_ack: Option<u32>, n: u32) {
        if let Some(delta) = stream_ack {
            self.session.send_control(Frame::WindowUpdate {
                stream_id: self.shared.id,
                delta,
            });
        }
        let session_ack = {
            let mut st = self.session.state();
            st.session_unacked = st.session_unacked.saturating_add(n);
            (st.session_unacked >= ACK_THRESHOLD).then(|| std::mem::take(&mut st.session_unacked))
        };
        if let Some(delta) = session_ack {
            self.session.send_control(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }

    /// Read everything up to the peer's FIN (at most `limit` bytes kept).
    pub async fn read_to_end(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = self.recv().await? {
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(&b[..b.len().min(room)]);
        }
        Ok(out)
    }
}

/// The sending half of an accepted stream (cheap to clone).
#[derive(Clone)]
pub struct StreamWriter {
    shared: Arc<StreamShared>,
    session: Arc<Shared>,
}

fn gone(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, what.to_string())
}

impl StreamWriter {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// Send `data` as DATA frames, within the peer's flow-control windows.
    pub async fn send(&self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.reserve(data.len()).await?;
            let chunk = data.split_to(n);
            self.session
                .data
                .send(Frame::Data {
                    stream_id: self.shared.id,
                    flags: 0,
                    data: chunk,
                })
                .await
                .map_err(|_| gone("session closed"))?;
        }
        Ok(())
    }

    /// Wait until up to `want` bytes may be sent; returns how many (≥ 1).
    async fn reserve(&self, want: usize) -> io::Result<usize> {
        let mut grace_over = false;
        loop {
            let notified = self.session.window_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let peer_flow_control = {
                if self.session.closed.is_cancelled() {
                    return Err(gone("session closed"));
                }
                if self
                    .shared
                    .local_done
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(gone("stream closed"));
                }
                if let Some(why) = &self.shared.inbound().broken
                    && why.starts_with("reset")
                {
                    return Err(gone(why));
                }
                let mut st = self.session.state();
                if grace_over && !st.peer_flow_control {
                    tracing::debug!("spdy peer does no flow control; windows not enforced");
                    st.flow_control_off = true;
                }
                let stream_window = st.send_windows.get(&self.shared.id).copied().unwrap_or(0);
                let allowed = if st.flow_control_off {
                    CHUNK as i64
                } else {
                    stream_window.min(st.session_send_window).min(CHUNK as i64)
                };
                if allowed > 0 {
                    let n = (allowed as usize).min(want);
                    st.session_send_window -= n as i64;
                    if let Some(w) = st.send_windows.get_mut(&self.shared.id) {
                        *w -= n as i64;
                    }
                    return Ok(n);
                }
                st.peer_flow_control
            };
            if peer_flow_control {
                tokio::select! {
                    _ = notified => {}
                    _ = self.session.closed.cancelled() => {}
                }
            } else {
                tokio::select! {
                    _ = notified => {}
                    _ = self.session.closed.cancelled() => {}
                    _ = tokio::time::sleep(FLOW_CONTROL_GRACE) => grace_over = true,
                }
            }
        }
    }

    /// Half-close: an empty DATA frame with FIN (once).
    pub async fn finish(&self) {
        if self
            .shared
            .local_done
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let _ = self
            .session
            .data
            .send(Frame::Data {
                stream_id: self.shared.id,
                flags: spdy::FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
        self.session.maybe_remove(&self.shared);
    }

    /// Abort both directions with RST_STREAM `status`.
    pub fn reset(&self, status: u32) {
        self.shared
            .local_done
            .store(true, std::sync::atomic::Ordering::SeqCst);
        {
            let mut i = self.shared.inbound();
            if !i.fin && i.broken.is_none() {
                i.broken = Some("reset by this side".into());
            }
            i.queue.clear();
            i.buffered = 0;
        }
        self.shared.readable.notify_waiters();
        self.shared.consumed.notify_waiters();
        self.session.send_control(Frame::RstStream {
            stream_id: self.shared.id,
            status,
        });
        let mut st = self.session.state();
        st.streams.remove(&self.shared.id);
        st.send_windows.remove(&self.shared.id);
    }
}

/// A running session: its incoming streams and its end.
pub struct Session {
    incoming: mpsc::Receiver<Stream>,
    shared: Arc<Shared>,
}

impl Session {
    /// Start serving SPDY/3.1 on `io` (already upgraded).
    pub fn start<IO>(io: IO) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (control, control_rx) = mpsc::unbounded_channel();
        let (data, data_rx) = mpsc::channel(64);
        let (incoming_tx, incoming) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                streams: HashMap::new(),
                send_windows: HashMap::new(),
                session_send_window: spdy::DEFAULT_WINDOW,
                initial_send_window: spdy::DEFAULT_WINDOW,
                peer_flow_control: false,
                flow_control_off: false,
                last_stream_id: 0,
                session_unacked: 0,
            }),
            control,
            data,
            window_changed: Notify::new(),
            closed: CancellationToken::new(),
        });
        let (r, w) = tokio::io::split(io);
        tokio::spawn(write_loop(w, control_rx, data_rx, shared.closed.clone()));
        tokio::spawn(read_loop(r, shared.clone(), incoming_tx));
        Self { incoming, shared }
    }

    /// The next stream the client opens; `None` once the session is over.
    pub async fn next_stream(&mut self) -> Option<Stream> {
        tokio::select! {
            s = self.incoming.recv() => s,
            _ = self.shared.closed.cancelled() => None,
        }
    }

    /// A token cancelled when the connection ends.
    pub fn closed(&self) -> CancellationToken {
        self.shared.closed.clone()
    }

    /// End the session: wait up to `linger` for the client to close the
    /// connection (so that it reads everything sent so far), then drop it.
    pub async fn shutdown(self, linger: Duration) {
        let _ = tokio::time::timeout(linger, self.shared.closed.cancelled()).await;
        self.shared.closed.cancel();
    }

    /// Tell the client no new streams will be accepted (GOAWAY).
    pub fn go_away(&self, status: u32) {
        let last = self.shared.state().last_stream_id;
        self.shared.send_control(Frame::GoAway {
            last_good_stream_id: last,
            status,
        });
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut control: mpsc::UnboundedReceiver<Frame>,
    mut data: mpsc::Receiver<Frame>,
    closed: CancellationToken,
) {
    let mut enc = spdy::Encoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            biased;
            f = control.recv() => f,
            f = data.recv() => f,
            _ = closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut frames = vec![first];
        // Batch what is queued already (control first).
        while frames.len() < 64 {
            match control.try_recv() {
                Ok(f) => frames.push(f),
                Err(_) => match data.try_recv() {
                    Ok(f) => frames.push(f),
                    Err(_) => break,
                },
            }
        }
        for f in &frames {
            if let Err(e) = enc.encode(f, &mut buf) {
                tracing::debug!("spdy encode: {e}");
                closed.cancel();
                return;
            }
        }
        let r = tokio::select! {
            r = w.write_all(&buf) => r.and(Ok(())),
            _ = closed.cancelled() => Err(gone("session closed")),
        };
        buf.clear();
        if let Err(e) = r.and(w.flush().await) {
            tracing::debug!("spdy write: {e}");
            closed.cancel();
            return;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<Stream>,
) {
    let mut dec = spdy::Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let why = 'session: loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(Frame::GoAway { status, .. })) => {
                    // The client ends the session (kubectl does when it is done).
                    break 'session format!("the client sent GOAWAY (status {status})");
                }
                Ok(Some(f)) => {
                    if let Err(e) = handle_frame(&shared, &incoming, f).await {
                        shared.send_control(Frame::GoAway {
                            last_good_stream_id: shared.state().last_stream_id,
                            status: spdy::goaway::PROTOCOL_ERROR,
                        });
                        break 'session e;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shared.send_control(Frame::GoAway {
                        last_good_stream_id: shared.state().last_stream_id,
                        status: spdy::goaway::PROTOCOL_ERROR,
                    });
                    break 'session e.to_string();
                }
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let n = tokio::select! {
            n = r.read_buf(&mut buf) => n,
            _ = shared.closed.cancelled() => break 'session "session shut down".into(),
        };
        match n {
            Ok(0) => break "connection closed by the client".into(),
            Ok(_) => {}
            Err(e) => break format!("reading the connection: {e}"),
        }
    };
    tracing::debug!("spdy session ends: {why}");
    // Give a GOAWAY a moment to leave before the writer stops.
    tokio::time::sleep(Duration::from_millis(20)).await;
    shared.closed.cancel();
    let streams: Vec<_> = shared.state().streams.drain().map(|(_, s)| s).collect();
    for s in streams {
        {
            let mut i = s.inbound();
            if !i.fin && i.broken.is_none() {
                i.broken = Some(format!("session ended: {why}"));
            }
        }
        s.readable.notify_waiters();
        s.consumed.notify_waiters();
    }
    shared.window_changed.notify_waiters();
}

/// Handle one frame; `Err` is a session error.
async fn handle_frame(
    shared: &Arc<Shared>,
    incoming: &mpsc::Sender<Stream>,
    f: Frame,
) -> Result<(), String> {
    match f {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            let refuse = {
                let mut st = shared.state();
                if stream_id == 0 || stream_id % 2 == 0 || stream_id <= st.last_stream_id {
                    return Err(format!("invalid new stream id {stream_id}"));
                }
                st.last_stream_id = stream_id;
                st.streams.len() >= MAX_STREAMS
            };
            if refuse {
                shared.send_control(Frame::RstStream {
                    stream_id,
                    status: spdy::rst::REFUSED_STREAM,
                });
                return Ok(());
            }
            let s = Arc::new(StreamShared {
                id: stream_id,
                inbound: Mutex::new(Inbound {
                    fin: flags & spdy::FLAG_FIN != 0,
                    ..Default::default()
                }),
                readable: Notify::new(),
                consumed: Notify::new(),
                local_done: std::sync::atomic::AtomicBool::new(
                    flags & spdy::FLAG_UNIDIRECTIONAL != 0,
                ),
            });
            {
                let mut st = shared.state();
                let w = st.initial_send_window;
                st.streams.insert(stream_id, s.clone());
                st.send_windows.insert(stream_id, w);
            }
            let stream = Stream {
                shared: s,
                session: shared.clone(),
                headers,
            };
            if incoming.send(stream).await.is_err() {
                shared.send_control(Frame::RstStream {
                    stream_id,
                    status: spdy::rst::REFUSED_STREAM,
                });
            }
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let s = shared.state().streams.get(&stream_id).cloned();
            let Some(s) = s else {
                shared.send_control(Frame::RstStream {
                    stream_id,
                    status: spdy::rst::INVALID_STREAM,
                });
                return Ok(());
            };
            let len = data.len();
            {
                let mut i = s.inbound();
                if i.fin {
                    drop(i);
                    shared.send_control(Frame::RstStream {
                        stream_id,
                        status: spdy::rst::STREAM_ALREADY_CLOSED,
                    });
                    return Ok(());
                }
                let unread = i.broken.is_some();
                if !unread && len > 0 {
                    i.buffered += len;
                    i.queue.push_back(data);
                }
                if flags & spdy::FLAG_FIN != 0 {
                    i.fin = true;
                }
                drop(i);
                if unread && len > 0 {
                    // Nobody will read it: count it as consumed at once.
                    let mut st = shared.state();
                    st.session_unacked = st.session_unacked.saturating_add(len as u32);
                }
            }
            s.readable.notify_waiters();
            if flags & spdy::FLAG_FIN != 0 {
                shared.maybe_remove(&s);
            }
            // Back-pressure: wait while too much is unread.
            loop {
                let consumed = s.consumed.notified();
                tokio::pin!(consumed);
                consumed.as_mut().enable();
                {
                    let i = s.inbound();
                    if i.buffered <= INBOUND_HIGH_WATER || i.broken.is_some() {
                        break;
                    }
                }
                tokio::select! {
                    _ = consumed => {}
                    _ = shared.closed.cancelled() => break,
                }
            }
        }
        Frame::WindowUpdate { stream_id, delta } => {
            {
                let mut st = shared.state();
                st.peer_flow_control = true;
                if stream_id == 0 {
                    st.session_send_window += delta as i64;
                } else if let Some(w) = st.send_windows.get_mut(&stream_id) {
                    *w += delta as i64;
                }
            }
            shared.window_changed.notify_waiters();
        }
        Frame::Settings { settings, .. } => {
            for s in settings {
                if s.id == spdy::SETTINGS_INITIAL_WINDOW_SIZE {
                    let mut st = shared.state();
                    st.peer_flow_control = true;
                    let diff = s.value as i64 - st.initial_send_window;
                    st.initial_send_window = s.value as i64;
                    for w in st.send_windows.values_mut() {
                        *w += diff;
                    }
                }
            }
            shared.window_changed.notify_waiters();
        }
        Frame::Ping { id } => {
            // Client pings have odd ids and are echoed; even ids would answer ours.
            if id % 2 == 1 {
                shared.send_control(Frame::Ping { id });
            }
        }
        Frame::RstStream { stream_id, status } => {
            let s = {
                let mut st = shared.state();
                st.send_windows.remove(&stream_id);
                st.streams.remove(&stream_id)
            };
            if let Some(s) = s {
                {
                    let mut i = s.inbound();
                    i.broken = Some(format!("reset by the client (status {status})"));
                    i.queue.clear();
                    i.buffered = 0;
                }
                s.local_done
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                s.readable.notify_waiters();
                s.consumed.notify_waiters();
                shared.window_changed.notify_waiters();
            }
        }
        // Handled by the read loop.
        Frame::GoAway { .. } => {}
        Frame::Headers {
            stream_id, flags, ..
        } => {
            if flags & spdy::FLAG_FIN != 0 {
                let s = shared.state().streams.get(&stream_id).cloned();
                if let Some(s) = s {
                    s.inbound().fin = true;
                    s.readable.notify_waiters();
                    shared.maybe_remove(&s);
                }
            }
        }
        // This server opens no streams; unknown control frames are ignored.
        Frame::SynReply { .. } | Frame::Unknown { .. } => {}
    }
    Ok(())
}

/// Adapt a WebSocket carrying a byte stream in binary messages (client-go's
/// SPDY-over-WebSocket tunnel) to `AsyncRead + AsyncWrite`.
pub fn websocket_bytes(
    socket: axum::extract::ws::WebSocket,
) -> impl AsyncRead + AsyncWrite + Send + 'static {
    use axum::extract::ws::{CloseFrame, Message, close_code};
    use futures::{SinkExt, StreamExt};
    let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let (mut sink, mut stream) = socket.split();
        let (mut rd, mut wr) = tokio::io::split(&mut theirs);
        let inbound = async {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = wr.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: close_code::NORMAL,
                    reason: "".into(),
                })))
                .await;
        };
        // Whichever side ends first, give the other a bounded time to finish.
        tokio::pin!(inbound);
        tokio::pin!(outbound);
        tokio::select! {
            _ = &mut inbound => {
                let _ = tokio::time::timeout(Duration::from_secs(30), outbound).await;
            }
            _ = &mut outbound => {
                let _ = tokio::time::timeout(Duration::from_secs(5), inbound).await;
            }
        }
    });
    ours
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::{Decoder, Encoder};

    /// A minimal client over an in-memory pipe.
    pub(crate) struct Client {
        io: tokio::io::DuplexStream,
        enc: Encoder,
        dec: Decoder,
        buf: BytesMut,
    }

    impl Client {
        pub(crate) fn new(io: tokio::io::DuplexStream) -> Self {
            Self {
                io,
                enc: Encoder::new(),
                dec: Decoder::new(),
                buf: BytesMut::new(),
            }
        }
        pub(crate) async fn send(&mut self, f: Frame) {
            let mut out = BytesMut::new();
            self.enc.encode(&f, &mut out).unwrap();
            self.io.write_all(&out).await.unwrap();
        }
        pub(crate) async fn recv(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                let n =
                    tokio::time::timeout(Duration::from_secs(10), self.io.read_buf(&mut self.buf))
                        .await
                        .expect("frame in time")
                        .unwrap();
                if n == 0 {
                    return None;
                }
            }
        }
    }

    fn syn(id: u32, pairs: &[(&str, &str)]) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: Headers(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    #[tokio::test]
    async fn echo_with_replies_pings_and_window_updates() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut session = Session::start(a);
        tokio::spawn(async move {
            while let Some(s) = session.next_stream().await {
                tokio::spawn(async move {
                    let (mut r, w) = s.accept();
                    while let Ok(Some(b)) = r.recv().await {
                        w.send(b).await.unwrap();
                    }
                    w.finish().await;
                });
            }
        });
        let mut c = Client::new(b);
        c.send(syn(1, &[("streamtype", "data")])).await;
        assert!(matches!(
            c.recv().await,
            Some(Frame::SynReply {
                stream_id: 1,
                flags: 0,
                ..
            })
        ));
        c.send(Frame::Ping { id: 1 }).await;
        assert_eq!(c.recv().await, Some(Frame::Ping { id: 1 }));
        // 200 KiB in 10 KiB frames: more than the default window, echoed back; the
        // client never sends WINDOW_UPDATE (like spdystream).
        let total = 200 * 1024;
        for i in 0..20 {
            c.send(Frame::Data {
                stream_id: 1,
                flags: if i == 19 { spdy::FLAG_FIN } else { 0 },
                data: Bytes::from(vec![i as u8; 10 * 1024]),
            })
            .await;
        }
        let (mut got, mut updates, mut fin) = (0, 0, false);
        while !fin {
            match c.recv().await.expect("frame") {
                Frame::Data { data, flags, .. } => {
                    got += data.len();
                    fin = flags & spdy::FLAG_FIN != 0;
                }
                Frame::WindowUpdate { delta, .. } => updates += delta as usize,
                f => panic!("unexpected {f:?}"),
            }
        }
        assert_eq!(got, total);
        // Stream and session updates together acknowledge most of what was read.
        assert!(updates >= total, "acknowledged {updates}");
    }

    #[tokio::test]
    async fn sending_respects_the_peer_window() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut session = Session::start(a);
        tokio::spawn(async move {
            let s = session.next_stream().await.unwrap();
            let (_r, w) = s.accept();
            w.send(Bytes::from(vec![1u8; 100 * 1024])).await.unwrap();
            w.finish().await;
            // Keep the session alive.
            let _keep = session;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let mut c = Client::new(b);
        // The client announces flow control with a small initial window.
        c.send(Frame::Settings {
            flags: 0,
            settings: vec![spdy::Setting {
                flags: 0,
                id: spdy::SETTINGS_INITIAL_WINDOW_SIZE,
                value: 16 * 1024,
            }],
        })
        .await;
        c.send(syn(1, &[])).await;
        let mut got = 0;
        loop {
            match tokio::time::timeout(Duration::from_millis(1500), c.recv()).await {
                Ok(Some(Frame::Data { data, .. })) => got += data.len(),
                Ok(Some(_)) => {}
                Ok(None) => panic!("closed"),
                Err(_) => break,
            }
        }
        assert_eq!(got, 16 * 1024, "stopped at the stream window");
        c.send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 200 * 1024,
        })
        .await;
        let mut fin = false;
        while !fin {
            if let Frame::Data { data, flags, .. } = c.recv().await.expect("frame") {
                got += data.len();
                fin = flags & spdy::FLAG_FIN != 0;
                // The session window (64 KiB) must be replenished as well.
                if got == 64 * 1024 {
                    c.send(Frame::WindowUpdate {
                        stream_id: 0,
                        delta: 64 * 1024,
                    })
                    .await;
                }
            }
        }
        assert_eq!(got, 100 * 1024);
    }

    #[tokio::test]
    async fn bad_stream_ids_end_the_session_with_goaway() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(a);
        let mut c = Client::new(b);
        c.send(syn(2, &[])).await;
        assert!(session.next_stream().await.is_none());
        assert!(matches!(
            c.recv().await,
            Some(Frame::GoAway {
                status: spdy::goaway::PROTOCOL_ERROR,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn client_goaway_ends_the_session_quietly() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(a);
        let mut c = Client::new(b);
        c.send(Frame::GoAway {
            last_good_stream_id: 0,
            status: spdy::goaway::OK,
        })
        .await;
        assert!(session.next_stream().await.is_none());
        assert_eq!(c.recv().await, None, "no GOAWAY answered, just the end");
    }

    #[tokio::test]
    async fn client_reset_breaks_the_reader() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(a);
        let mut c = Client::new(b);
        c.send(syn(1, &[])).await;
        let (mut r, _w) = session.next_stream().await.unwrap().accept();
        c.send(Frame::RstStream {
            stream_id: 1,
            status: spdy::rst::CANCEL,
        })
        .await;
        assert!(r.recv().await.is_err());
    }
}
