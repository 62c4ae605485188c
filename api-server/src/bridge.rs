//! Where hyper's asynchronous request meets the API's blocking handlers.
//!
//! A handler talks to host-init over a blocking channel and to an agent
//! over a blocking client, so each request runs on tokio's blocking pool
//! with a [`BodyReader`] (the request body as `std::io::Read`) and a
//! [`Responder`] (the answer's head once, then its bytes). Both ends are
//! bounded channels, so a slow client or agent pushes back instead of
//! filling memory, and every wait has a limit, so a client that stops
//! reading or sending never holds a handler for ever.
//!
//! The body is not touched until the handler first reads it: hyper sends
//! `100 Continue` and reads body bytes only then, which is after the
//! request is authenticated and admitted.

use bytes::Bytes;
use http_body::Frame;
use std::io::{Error, ErrorKind, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// Body pieces buffered between hyper and a handler, each way.
const DEPTH: usize = 4;

/// The request body, read from a blocking handler.
pub struct BodyReader {
    start: Option<oneshot::Sender<()>>,
    /// Bytes read so far, and how many the head promised.
    received: u64,
    expected: Option<u64>,
    rx: mpsc::Receiver<Result<Bytes, String>>,
    piece: Bytes,
    rt: Handle,
    /// Limit on each wait for the next piece.
    idle: Duration,
    /// Limit on all reads from now on, when set.
    deadline: Option<Instant>,
    taken: bool,
    ended: bool,
}

impl BodyReader {
    /// A reader over `incoming`, and the task that feeds it once the
    /// handler first reads (run it on the runtime).
    pub fn new(
        incoming: hyper::body::Incoming,
        rt: Handle,
        idle: Duration,
    ) -> (BodyReader, impl std::future::Future<Output = ()> + Send) {
        let (start, started) = oneshot::channel();
        let (tx, rx) = mpsc::channel(DEPTH);
        let pump = async move {
            use http_body_util::BodyExt as _;
            // Dropped unread: the body is never polled, so hyper neither
            // sends 100 Continue nor keeps the connection for another request.
            if started.await.is_err() {
                return;
            }
            let mut incoming = incoming;
            while let Some(frame) = incoming.frame().await {
                let piece = match frame {
                    Ok(f) => match f.into_data() {
                        Ok(data) => Ok(data),
                        Err(_trailers) => continue,
                    },
                    Err(e) => Err(e.to_string()),
                };
                let failed = piece.is_err();
                if tx.send(piece).await.is_err() || failed {
                    return;
                }
            }
        };
        let reader = BodyReader {
            start: Some(start),
            received: 0,
            expected: None,
            rx,
            piece: Bytes::new(),
            rt,
            idle,
            deadline: None,
            taken: false,
            ended: false,
        };
        (reader, pump)
    }

    /// The length the head promised: a body that ends short of it is an
    /// error, however it ended (an HTTP/2 stream reset with NO_ERROR ends
    /// it as cleanly as END_STREAM would).
    pub fn expect_length(&mut self, len: Option<u64>) {
        self.expected = len;
    }

    /// Whether a handler has read (or begun to read) the body.
    pub fn taken(&self) -> bool {
        self.taken
    }

    /// Whether the body ended as its framing says (all of its
    /// Content-Length, or the last chunk): only then is it complete.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Bounds all further reads to `within` from now.
    pub fn set_deadline(&mut self, within: Duration) {
        self.deadline = Some(Instant::now() + within);
    }

    /// Reads and drops up to `cap` bytes of a body nobody took, so that an
    /// answer given before reading it reaches a client still sending it
    /// rather than a reset. Returns whether the whole body was read.
    pub fn drain(&mut self, cap: u64, within: Duration) -> bool {
        self.set_deadline(within);
        let mut sink = std::io::sink();
        match std::io::copy(&mut Read::take(&mut *self, cap + 1), &mut sink) {
            Ok(n) => n <= cap && self.ended,
            Err(_) => false,
        }
    }

    /// `drain` for the asynchronous side (answers given before a handler
    /// would run).
    pub async fn drain_async(&mut self, cap: u64, within: Duration) -> bool {
        if let Some(start) = self.start.take() {
            self.taken = true;
            let _ = start.send(());
        }
        let until = tokio::time::Instant::now() + within;
        let mut read = self.piece.len() as u64;
        self.piece = Bytes::new();
        while read <= cap {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(Ok(piece))) => read += piece.len() as u64,
                Ok(None) => {
                    self.ended = true;
                    return true;
                }
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
        false
    }

    fn next_piece(&mut self) -> std::io::Result<Option<Bytes>> {
        if let Some(start) = self.start.take() {
            self.taken = true;
            let _ = start.send(());
        }
        let wait = match self.deadline {
            None => self.idle,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::new(ErrorKind::TimedOut, "request deadline passed"));
                }
                left.min(self.idle)
            }
        };
        let rx = &mut self.rx;
        match self
            .rt
            .block_on(async { tokio::time::timeout(wait, rx.recv()).await })
        {
            Err(_) => Err(Error::new(
                ErrorKind::TimedOut,
                "the client sent nothing more of the body in time",
            )),
            Ok(None) => Ok(None),
            Ok(Some(Ok(piece))) => Ok(Some(piece)),
            Ok(Some(Err(e))) => Err(Error::new(ErrorKind::UnexpectedEof, e)),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.piece.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.next_piece()? {
                Some(p) => {
                    self.received += p.len() as u64;
                    self.piece = p;
                }
                None => {
                    if let Some(short) = self
                        .expected
                        .and_then(|n| n.checked_sub(self.received))
                        .filter(|short| *short > 0)
                    {
                        return Err(Error::new(
                            ErrorKind::UnexpectedEof,
                            format!("the body ended {short} bytes short of its Content-Length"),
                        ));
                    }
                    self.ended = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece.split_to(n));
        Ok(n)
    }
}

/// The status and headers of an answer.
pub struct Head {
    pub status: u16,
    pub headers: Vec<(http::header::HeaderName, String)>,
}

type Piece = Result<Frame<Bytes>, Error>;

/// The answer, written from a blocking handler: a head, then (for a
/// streamed answer) its bytes.
pub struct Responder {
    head: Option<oneshot::Sender<(Head, ApiBody)>>,
    tx: Option<mpsc::Sender<Piece>>,
    /// Set by `finish`: only then does a stream end as complete.
    finished: Arc<AtomicBool>,
    /// Kept with the answer's body until hyper has sent it (or the client
    /// is gone): the request's tenant slot and its connection's activity.
    held: Option<Held>,
    rt: Handle,
    /// Limit on each wait for the client to take more.
    idle: Duration,
}

impl Responder {
    /// A responder, and where its head and body arrive.
    pub fn new(rt: Handle, idle: Duration) -> (Responder, oneshot::Receiver<(Head, ApiBody)>) {
        let (head, arrives) = oneshot::channel();
        let r = Responder {
            head: Some(head),
            tx: None,
            finished: Arc::new(AtomicBool::new(false)),
            held: None,
            rt,
            idle,
        };
        (r, arrives)
    }

    /// Whether the head has gone out.
    pub fn started(&self) -> bool {
        self.head.is_none()
    }

    /// Keeps `held` until the answer's body is gone.
    pub fn hold(&mut self, held: Held) {
        self.held = Some(held);
    }

    /// A whole answer at once.
    pub fn full(&mut self, head: Head, body: Vec<u8>) {
        if let Some(tx) = self.head.take() {
            let body = ApiBody {
                kind: Kind::Full(Some(Bytes::from(body))),
                _held: self.held.take(),
            };
            let _ = tx.send((head, body));
        }
    }

    /// Starts a streamed answer; send its bytes with [`Responder::send`].
    pub fn start(&mut self, head: Head) -> std::io::Result<()> {
        let Some(tx) = self.head.take() else {
            return Err(Error::other("the answer has already started"));
        };
        let (body_tx, rx) = mpsc::channel(DEPTH);
        self.tx = Some(body_tx);
        let body = ApiBody {
            kind: Kind::Stream {
                rx,
                finished: self.finished.clone(),
                cut: false,
            },
            _held: self.held.take(),
        };
        tx.send((head, body))
            .map_err(|_| Error::new(ErrorKind::BrokenPipe, "the client is gone"))
    }

    /// Ends a streamed answer as complete (the last chunk, or END_STREAM).
    /// A stream its handler leaves without this ends as cut off.
    pub fn finish(&mut self) {
        self.finished.store(true, Ordering::SeqCst);
        self.tx = None;
    }

    /// Sends bytes of a streamed answer, waiting (within the idle limit)
    /// while the client is slow to take them.
    pub fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.push(Ok(Frame::data(Bytes::copy_from_slice(data))))
    }

    /// Ends a streamed answer as broken: the client sees it cut off (no
    /// last chunk, or a stream reset), never as complete. (Dropping the
    /// responder unfinished does the same.)
    pub fn abort(&mut self) {
        self.tx = None;
    }

    fn push(&mut self, piece: Piece) -> std::io::Result<()> {
        let Some(tx) = &self.tx else {
            return Err(Error::other("the answer has not started"));
        };
        let idle = self.idle;
        match self
            .rt
            .block_on(async { tokio::time::timeout(idle, tx.send(piece)).await })
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::new(ErrorKind::BrokenPipe, "the client is gone")),
            Err(_) => Err(Error::new(
                ErrorKind::TimedOut,
                "the client took nothing of the answer in time",
            )),
        }
    }

    /// Resolves when the client can no longer receive this answer (it hung
    /// up or reset the stream); for watching it while a handler waits on
    /// something else.
    pub fn gone(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let tx = self.tx.clone()?;
        Some(async move { tx.closed().await })
    }

    /// The runtime, for watchers a handler starts.
    pub fn runtime(&self) -> &Handle {
        &self.rt
    }
}

/// What an answer's body keeps alive until hyper drops it.
pub type Held = Box<dyn Send + Sync>;

/// An answer's body: whole, or streamed from a handler.
pub struct ApiBody {
    kind: Kind,
    _held: Option<Held>,
}

enum Kind {
    Full(Option<Bytes>),
    Stream {
        rx: mpsc::Receiver<Piece>,
        finished: Arc<AtomicBool>,
        /// The cut has been reported.
        cut: bool,
    },
}

impl ApiBody {
    /// A whole answer built on the async side.
    pub fn full(body: Vec<u8>) -> ApiBody {
        ApiBody {
            kind: Kind::Full(Some(Bytes::from(body))),
            _held: None,
        }
    }
}

impl http_body::Body for ApiBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream { rx, finished, cut } => match rx.poll_recv(cx) {
                Poll::Ready(None) if !finished.load(Ordering::SeqCst) && !*cut => {
                    // The handler left without finishing (an error, a
                    // client too slow to take the answer): hyper then ends
                    // the answer as broken, never with a last chunk.
                    *cut = true;
                    Poll::Ready(Some(Err(Error::other("the answer was cut off"))))
                }
                other => other,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => http_body::SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => http_body::SizeHint::with_exact(0),
            Kind::Stream { .. } => http_body::SizeHint::default(),
        }
    }
}

/// Where a blocking handler reads the request body and writes its answer.
pub struct Exchange {
    pub body: BodyReader,
    pub out: Responder,
}
