//! One host connection: framed messages in both directions, shareable
//! between the threads of an exec session.

use paddock_proto::frame::{decode, read_frame_bytes, write_frame};
use paddock_proto::{AgentMsg, ErrorKind, ErrorReply, FrameError, HostMsg, Tagged};
use std::fs::File;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("host closed the connection")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ConnError {
    pub fn is_protocol_error(&self) -> bool {
        matches!(self, ConnError::Frame(f) if f.is_protocol_error())
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnError::Frame(FrameError::TooLarge(_)) => ErrorKind::FrameTooLarge,
            ConnError::Frame(FrameError::UnknownOperation(_)) => ErrorKind::UnknownOperation,
            ConnError::Frame(FrameError::Malformed(_)) => ErrorKind::Malformed,
            _ => ErrorKind::Io,
        }
    }
}

#[derive(Clone)]
pub struct Conn {
    reader: Arc<Mutex<File>>,
    writer: Arc<Mutex<File>>,
    /// The writer's descriptor, for socket options and shutdown without
    /// waiting for a send in progress; open as long as `writer` is.
    raw: std::os::fd::RawFd,
}

impl Conn {
    pub fn new(stream: File) -> std::io::Result<Conn> {
        use std::os::fd::AsRawFd;
        let writer = stream.try_clone()?;
        let raw = writer.as_raw_fd();
        Ok(Conn {
            reader: Arc::new(Mutex::new(stream)),
            writer: Arc::new(Mutex::new(writer)),
            raw,
        })
    }

    pub fn send(&self, msg: &AgentMsg) -> Result<(), ConnError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *w, msg).map_err(|e| match e {
            FrameError::Io(_) => ConnError::Closed,
            other => ConnError::Frame(other),
        })
    }

    pub fn recv(&self) -> Result<HostMsg, ConnError> {
        let mut r = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        match read_frame_bytes(&mut *r) {
            Ok(body) => Ok(decode(&body, HostMsg::VARIANTS)?),
            Err(FrameError::Closed) | Err(FrameError::Io(_)) => Err(ConnError::Closed),
            Err(e) => Err(e.into()),
        }
    }

    /// The connection's descriptor, to wait for the host to close it.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.raw
    }

    /// Ends the connection both ways (whoever else holds it).
    pub fn shutdown(&self) {
        // SAFETY: shutdown on a descriptor this connection keeps open; no
        // memory is passed.
        unsafe { libc::shutdown(self.raw, libc::SHUT_RDWR) };
    }

    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Result<(), ConnError> {
        self.send(&AgentMsg::Error(ErrorReply {
            kind,
            message: message.into(),
        }))
    }
}

/// A message's name for error replies (never its contents).
pub fn name(m: &HostMsg) -> &'static str {
    match m {
        HostMsg::Hello { .. } => "Hello",
        HostMsg::Exec(_) => "Exec",
        HostMsg::Stdin(_) => "Stdin",
        HostMsg::StdinEof => "StdinEof",
        HostMsg::Signal(_) => "Signal",
        HostMsg::WriteFile { .. } => "WriteFile",
        HostMsg::Data(_) => "Data",
        HostMsg::DataEnd => "DataEnd",
        HostMsg::ReadFile { .. } => "ReadFile",
        HostMsg::Stat { .. } => "Stat",
        HostMsg::ListDir { .. } => "ListDir",
        HostMsg::MakeDir { .. } => "MakeDir",
        HostMsg::Remove { .. } => "Remove",
        HostMsg::Health => "Health",
        HostMsg::AsUser(_) => "AsUser",
        HostMsg::Spawn(_) => "Spawn",
        HostMsg::Attach(_) => "Attach",
        HostMsg::Input { .. } => "Input",
        HostMsg::CloseInput(_) => "CloseInput",
        HostMsg::SignalProc { .. } => "SignalProc",
        HostMsg::Resize { .. } => "Resize",
        HostMsg::ListProcs => "ListProcs",
        HostMsg::Rename { .. } => "Rename",
        HostMsg::WatchDir { .. } => "WatchDir",
        HostMsg::Changes => "Changes",
        HostMsg::TrustCa { .. } => "TrustCa",
        HostMsg::Renew { .. } => "Renew",
        HostMsg::Provision { .. } => "Provision",
    }
}
