//! A writer that never blocks its caller: bytes go into a bounded in-memory
//! queue and a thread of their own writes them out.
//!
//! The serial console is written from a vCPU thread, one byte per guest
//! port write. If that thread wrote to the console's file itself, anything
//! that slows the file down (a throttled disk, writeback, a full pipe) would
//! stall the guest's CPU in the middle of a `printk`. Here a slow sink only
//! costs console output: past the queue's bound, bytes are dropped and the
//! loss is written out as a note once the sink catches up.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Console output held while the sink is slow. A boot's whole log is far less.
pub const QUEUE_BYTES: usize = 1 << 20;
/// How long `flush` waits for the sink before giving up on it.
const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// How long the writer thread lets bytes gather before it takes them. The
/// guest writes its console a byte per port write: taken one at a time,
/// each byte cost a wake-up of this thread, a write into the console pipe
/// and a wake-up of host-init's reader, on an emulated box several
/// context switches per byte. Console lines arrive this much later.
const LINGER: Duration = Duration::from_millis(10);
/// Past this much queued, the writer takes it without lingering.
const LINGER_BYTES: usize = 4096;

#[derive(Default)]
struct Queue {
    bytes: VecDeque<u8>,
    /// Bytes refused since the last note about it was queued.
    dropped: u64,
    /// The writer thread holds bytes it has taken but not yet written.
    writing: bool,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when bytes arrive (for the writer) and when the writer has
    /// emptied the queue (for `flush`).
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere must not take the console down with it; the
        // queue holds plain bytes, valid in any state.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Detached {
    shared: Arc<Shared>,
    capacity: usize,
}

impl Detached {
    /// Starts the thread that writes to `out`.
    pub fn spawn(out: Box<dyn Write + Send>) -> std::io::Result<Self> {
        Self::with_capacity(out, QUEUE_BYTES)
    }

    pub fn with_capacity(out: Box<dyn Write + Send>, capacity: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        crate::threads::spawn(
            "console-out".into(),
            crate::seccomp::ThreadKind::ConsoleOut,
            move || drain(&theirs, out),
        )?;
        Ok(Detached { shared, capacity })
    }
}

fn drain(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut chunk = Vec::new();
    loop {
        {
            let mut q = shared.lock();
            q.writing = false;
            shared.changed.notify_all();
            while q.bytes.is_empty() && !q.closed {
                q = shared.changed.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.bytes.is_empty() {
                return;
            }
            if !q.closed && q.bytes.len() < LINGER_BYTES {
                drop(q);
                std::thread::sleep(LINGER);
                q = shared.lock();
            }
            chunk.clear();
            chunk.extend(q.bytes.drain(..));
            q.writing = true;
        }
        // A sink that fails (closed pipe, full disk) must not stop the guest;
        // its output is lost, nothing else.
        let _ = out.write_all(&chunk);
        let _ = out.flush();
    }
}

impl Write for Detached {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut q = self.shared.lock();
        // The writer thread sleeps only on an empty queue: wake it when the
        // first bytes arrive (a loss note counts), not for every byte after.
        let was_empty = q.bytes.is_empty();
        if q.dropped > 0 {
            let note = format!("\r\n[paddock-vmm: {} bytes of console output dropped: the console sink was too slow]\r\n", q.dropped);
            if q.bytes.len() + note.len() + buf.len() <= self.capacity {
                q.bytes.extend(note.as_bytes());
                q.dropped = 0;
            }
        }
        if q.dropped == 0 && q.bytes.len() + buf.len() <= self.capacity {
            q.bytes.extend(buf);
        } else {
            q.dropped = q.dropped.saturating_add(buf.len() as u64);
        }
        if was_empty && !q.bytes.is_empty() {
            self.shared.changed.notify_all();
        }
        // The guest is told its bytes went out either way: a UART does not
        // fail a write because nobody is listening.
        Ok(buf.len())
    }

    /// Waits, for a bounded time, until the writer has taken and written
    /// everything queued so far.
    fn flush(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut q = self.shared.lock();
        while !q.bytes.is_empty() || q.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "console output still queued after 2 s",
                ));
            }
            q = self
                .shared
                .changed
                .wait_timeout(q, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        Ok(())
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.closed = true;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that blocks until the test lets it go, and records what it got.
    struct Gated {
        open: mpsc::Receiver<()>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.open.recv();
            self.got.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn everything_arrives_in_order() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (tx, open) = mpsc::channel();
        let mut w = Detached::spawn(Box::new(Gated {
            open,
            got: got.clone(),
        }))
        .expect("spawn");
        let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for b in &text {
            w.write_all(std::slice::from_ref(b)).expect("write");
        }
        for _ in 0..20_000 {
            let _ = tx.send(());
        }
        w.flush().expect("flush");
        assert_eq!(*got.lock().expect("lock"), text);
    }

    /// A sink that counts the writes it gets.
    struct Counting(Arc<Mutex<(usize, Vec<u8>)>>);

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut g = self.0.lock().expect("lock");
            g.0 += 1;
            g.1.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A boot's console comes a byte per port write, each a VM exit apart;
    /// the sink (the console pipe, and host-init behind it) must get it in
    /// batches, not a write and two thread wake-ups per byte.
    #[test]
    fn bytes_written_one_at_a_time_reach_the_sink_in_batches() {
        let seen = Arc::new(Mutex::new((0, Vec::new())));
        let mut w = Detached::spawn(Box::new(Counting(seen.clone()))).expect("spawn");
        let text: Vec<u8> = (0..200u32).map(|i| b'a' + (i % 26) as u8).collect();
        for b in &text {
            w.write_all(std::slice::from_ref(b)).expect("write");
            // A slow guest: bytes arrive apart, as exits do.
            std::thread::sleep(Duration::from_millis(1));
        }
        w.flush().expect("flush");
        let (writes, got) = seen.lock().expect("lock").clone();
        assert_eq!(got, text);
        // Taken as they came, that was one write per byte (200); gathered
        // for LINGER, about one per 10 bytes.
        assert!(writes < 100, "{writes} writes for 200 bytes");
    }

    #[test]
    fn a_stuck_sink_never_blocks_the_writer_and_the_loss_is_reported() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (tx, open) = mpsc::channel();
        let mut w = Detached::with_capacity(
            Box::new(Gated {
                open,
                got: got.clone(),
            }),
            4096,
        )
        .expect("spawn");
        // The sink is stuck: far more than the queue holds must still be
        // accepted at once.
        for _ in 0..100 {
            w.write_all(&[b'x'; 1000]).expect("write");
        }
        assert!(w.flush().is_err(), "flush must give up on a stuck sink");
        for _ in 0..1000 {
            let _ = tx.send(());
        }
        w.flush().expect("the sink caught up");
        w.write_all(b"after\n").expect("write");
        w.flush().expect("flush");
        let text = String::from_utf8(got.lock().expect("lock").clone()).expect("utf8");
        assert!(text.contains("bytes of console output dropped"), "{text}");
        assert!(text.ends_with("after\n"), "{text}");
        assert!(text.len() < 100_000);
    }
}
