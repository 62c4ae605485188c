//! A watched process's events streamed to a client, in the framing its
//! API uses (envd's Connect messages, or the native NDJSON), until the
//! process ends or the client leaves; a client leaving ends the watch,
//! never the process.

use crate::bridge::Exchange;
use crate::http;
use paddock_agent_client::{Event, Watch};
use paddock_proto::ExitStatus;

/// How one API writes a process stream.
pub trait WatchFormat {
    fn content_type(&self) -> &'static str;
    /// What comes first: which process it is.
    fn started(&mut self, pid: u32) -> Vec<u8>;
    /// A piece of its output (`Stdout` or `Stderr`).
    fn output(&mut self, event: Event) -> Vec<u8>;
    /// The last piece: how it ended, or why the watch broke.
    fn end(&mut self, result: &Result<ExitStatus, String>) -> Vec<u8>;
}

/// Streams `watch` to the client; its exit status when it ended while
/// watched, None when the client left first (the process goes on).
pub fn stream(
    io: &mut Exchange,
    mut watch: Watch,
    format: &mut dyn WatchFormat,
) -> Option<ExitStatus> {
    if http::start_stream(&mut io.out, format.content_type()).is_err()
        || io.out.send(&format.started(watch.pid)).is_err()
    {
        return None;
    }
    // The client hanging up ends the watch even while the process is
    // silent; `done` stops the watcher once the stream is over.
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let Ok(agent) = watch.stream().try_clone() else {
        // Without it a client that leaves would go unnoticed while the
        // process is silent: end the stream now instead.
        let last = format.end(&Err("out of descriptors; watch again shortly".into()));
        if io.out.send(&last).is_ok() {
            io.out.finish();
        }
        return None;
    };
    if let Some(gone) = io.out.gone() {
        io.out.runtime().spawn(async move {
            tokio::select! {
                _ = gone => {
                    let _ = agent.shutdown(std::net::Shutdown::Both);
                }
                _ = finished => {}
            }
        });
    }
    let result = loop {
        let piece = match watch.next_event() {
            Ok(Event::Exited(st)) => break Ok(st),
            Ok(output) => format.output(output),
            Err(e) => break Err(format!("watching the process: {e}")),
        };
        if io.out.send(&piece).is_err() {
            let _ = watch.stream().shutdown(std::net::Shutdown::Both);
            drop(done);
            return None;
        }
    };
    drop(done);
    let last = format.end(&result);
    if io.out.send(&last).is_ok() {
        io.out.finish();
    }
    result.ok()
}
