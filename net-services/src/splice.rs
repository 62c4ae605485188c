//! A proxied connection's two directions, copied by one task on the
//! network services' tokio runtime.
//!
//! A connection holds no thread and, while quiet, no buffer: each
//! direction waits for its socket to be readable and only then takes a
//! buffer for what arrived. It ends when both sides are done, when it has
//! been quiet both ways for `IDLE` (a peer that stops reading makes no
//! progress, so it counts as quiet), or as soon as the workspace's policy
//! stops allowing its name and port: policy changes wake every connection
//! through a watch channel, so nothing polls.
//!
//! On plain HTTP every request from the client is checked (`http_stream`)
//! before it goes up; after a refused one nothing more goes up, and the
//! client is told why once the upstream has answered what came before it
//! (answers come in request order).

use crate::http_stream::{Refused, RequestStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// A connection quiet this long in both directions is closed. Longer than
/// the keep-alive servers give (nginx 75 s, most CDNs 60-120 s) and the
/// usual long poll (<= 60 s), so a live client is not cut; short enough
/// that idle connections a workspace leaves open give their slots back
/// within two minutes. (A client that needs longer sends keepalives.)
pub const IDLE: Duration = Duration::from_secs(120);
/// After a refused request, how long the upstream may stay quiet before
/// the client is told and cut, even if the upstream has not closed: the
/// answers to the requests before it come first, and an upstream may be
/// slow (over a second on an emulated box).
const ANSWER_WAIT: Duration = Duration::from_secs(30);
/// Bytes read at once. Taken only while data is in hand.
const CHUNK: usize = 16 * 1024;

/// Whether the workspace's policy allows (name, port).
pub type Allowed = Box<dyn Fn(&str, u16) -> bool + Send + Sync>;

/// What one spliced connection is.
pub struct Splice {
    pub allowed: Allowed,
    /// Ticks when any workspace's policy changes (`policy_table::changes`).
    pub changes: watch::Receiver<u64>,
    pub id: String,
    pub name: String,
    pub port: u16,
    /// Quiet this long both ways, it ends (`IDLE`; tests take less).
    pub idle: Duration,
    /// Plain HTTP: the request checker and the client's bytes it has not
    /// passed yet (those read to learn the name).
    pub requests: Option<(RequestStream, Vec<u8>)>,
}

/// How a direction ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ended {
    /// Its source is done (or it refused a request): the other direction
    /// goes on.
    Done,
    /// Both directions end now.
    Cut,
}

/// When either direction last moved a byte.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The refusal the client gets once the upstream has answered what it
/// was sent before it.
#[derive(Default)]
struct LastWords {
    refusal: Mutex<Option<(Vec<u8>, Instant)>>,
    posted: Notify,
}

impl LastWords {
    fn post(&self, response: Vec<u8>) {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some((response, Instant::now()));
        self.posted.notify_one();
    }
    fn since(&self) -> Option<Instant> {
        self.refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, at)| *at)
    }
    fn take(&self) -> Option<Vec<u8>> {
        self.refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(|(r, _)| r)
    }
}

/// Copies both ways until the connection ends (see the module's doc). The
/// bytes that went up and came down.
pub async fn splice(client: TcpStream, upstream: TcpStream, conn: Splice) -> (u64, u64) {
    let Splice {
        allowed,
        mut changes,
        id,
        name,
        port,
        idle,
        requests,
    } = conn;
    let (mut client_r, mut client_w) = client.into_split();
    let (mut up_r, mut up_w) = upstream.into_split();
    let activity = Activity::new();
    let words = LastWords::default();
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut checker = requests.map(|(requests, pending)| Checker {
        requests,
        pending,
        id,
        name: name.clone(),
        words: &words,
    });
    let ups = async {
        match checker.as_mut() {
            Some(c) => c.copy(&mut client_r, &mut up_w, &up, &activity).await,
            None => copy(&mut client_r, &mut up_w, &up, &activity).await,
        }
    };
    let downs = answers(&mut up_r, &mut client_w, &words, &down, &activity, idle);
    tokio::pin!(ups, downs);
    // Asked once before anything is relayed: the policy may have changed
    // since the connection was looked up (found by review: a revocation
    // while the name was resolved and the upstream dialled was never
    // seen, and the connection relayed until some other change).
    changes.mark_changed();
    let (mut ups_done, mut downs_done, mut watching) = (false, false, true);
    while !(ups_done && downs_done) {
        tokio::select! {
            end = &mut ups, if !ups_done => {
                ups_done = true;
                if end == Ended::Cut { break }
            }
            end = &mut downs, if !downs_done => {
                downs_done = true;
                if end == Ended::Cut { break }
            }
            changed = changes.changed(), if watching => {
                // A sender that is gone sends no more changes; the policy
                // as it was stands.
                watching = changed.is_ok();
                if !allowed(&name, port) { break }
            }
            () = tokio::time::sleep_until((activity.last() + idle).into()) => {
                if activity.last().elapsed() >= idle { break }
            }
        }
    }
    // Dropping the directions and the sockets ends both sides.
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed))
}

/// Waits until `from` has data and reads it into a buffer taken for it;
/// None at its end (or on an error, which ends it too).
async fn read_some(from: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    loop {
        from.readable().await.ok()?;
        // Into spare capacity: no 16 KiB zeroed on every read.
        let mut buf = Vec::with_capacity(CHUNK);
        match from.try_read_buf(&mut buf) {
            Ok(0) => return None,
            Ok(_) => return Some(buf),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// Writes all of `data`; each step forward counts as activity (a peer
/// that takes nothing leaves the connection idle).
async fn write_all(to: &mut OwnedWriteHalf, mut data: &[u8], activity: &Activity) -> bool {
    while !data.is_empty() {
        match to.write(data).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                data = &data[n..];
                activity.touch();
            }
        }
    }
    true
}

/// Bytes it cannot read (TLS), as they come.
async fn copy(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    bytes: &AtomicU64,
    activity: &Activity,
) -> Ended {
    while let Some(data) = read_some(from).await {
        bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        activity.touch();
        if !write_all(to, &data, activity).await {
            return Ended::Cut;
        }
    }
    let _ = to.shutdown().await;
    Ended::Done
}

/// From the upstream to the client; once a request was refused, the
/// refusal goes last: when the upstream closes, or has been quiet for
/// ANSWER_WAIT since the refusal.
async fn answers(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    words: &LastWords,
    bytes: &AtomicU64,
    activity: &Activity,
    idle: Duration,
) -> Ended {
    let mut refused_at: Option<Instant> = None;
    let mut last_read = Instant::now();
    loop {
        let due = refused_at.map(|at| at.max(last_read) + ANSWER_WAIT);
        let far = Instant::now() + idle;
        tokio::select! {
            data = read_some(from) => {
                let Some(data) = data else {
                    if let Some(response) = words.take() {
                        let _ = write_all(to, &response, activity).await;
                        return Ended::Cut;
                    }
                    let _ = to.shutdown().await;
                    return Ended::Done;
                };
                last_read = Instant::now();
                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                activity.touch();
                if !write_all(to, &data, activity).await {
                    return Ended::Cut;
                }
            }
            () = words.posted.notified(), if refused_at.is_none() => {
                refused_at = words.since();
            }
            () = tokio::time::sleep_until(due.unwrap_or(far).into()), if due.is_some() => {
                if let Some(response) = words.take() {
                    let _ = write_all(to, &response, activity).await;
                }
                return Ended::Cut;
            }
        }
    }
}

/// The client side of a plain-HTTP connection: what checks its requests.
struct Checker<'a> {
    requests: RequestStream,
    pending: Vec<u8>,
    id: String,
    name: String,
    words: &'a LastWords,
}

/// What became of the client's bytes.
enum Forwarded {
    Sent,
    /// A request was refused: nothing more goes up.
    Refused,
    /// The upstream stopped taking them.
    Failed,
}

impl Checker<'_> {
    /// The client's requests, each checked before it goes up.
    async fn copy(
        &mut self,
        from: &mut OwnedReadHalf,
        to: &mut OwnedWriteHalf,
        bytes: &AtomicU64,
        activity: &Activity,
    ) -> Ended {
        // What the client sent before the splice (the bytes that named
        // the host) goes first, checked like the rest.
        let mut next = Some(Vec::new());
        while let Some(data) = next {
            match self.forward(&data, to, activity).await {
                Forwarded::Sent => {}
                Forwarded::Refused => break,
                Forwarded::Failed => return Ended::Cut,
            }
            next = read_some(from).await;
            if let Some(d) = &next {
                bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                activity.touch();
            }
        }
        let _ = to.shutdown().await;
        Ended::Done
    }

    /// Sends on what may go; on a refusal stops and leaves the client its
    /// last words.
    async fn forward(
        &mut self,
        data: &[u8],
        upstream: &mut OwnedWriteHalf,
        activity: &Activity,
    ) -> Forwarded {
        self.pending.extend_from_slice(data);
        let (vetted, refused) = vet(&mut self.requests, &mut self.pending);
        if self.pending.is_empty() {
            // An idle keep-alive connection keeps no buffer.
            self.pending = Vec::new();
        }
        if !write_all(upstream, &vetted, activity).await {
            return Forwarded::Failed;
        }
        match refused {
            None => Forwarded::Sent,
            Some(refused) => {
                crate::egress_refusals::refused_request(&self.id, &self.name, &refused);
                self.words.post(refused.response());
                Forwarded::Refused
            }
        }
    }
}

/// Takes the bytes of `pending` that `requests` allows to go upstream,
/// and the refusal of what follows them, if any.
fn vet(requests: &mut RequestStream, pending: &mut Vec<u8>) -> (Vec<u8>, Option<Refused>) {
    let mut vetted = Vec::new();
    loop {
        match requests.check(pending) {
            Ok(0) => return (vetted, None),
            Ok(n) => vetted.extend(pending.drain(..n)),
            Err(refused) => return (vetted, Some(refused)),
        }
    }
}

#[cfg(test)]
#[path = "splice_tests.rs"]
pub(crate) mod tests;
