//! Accepts host connections and runs one operation on each, each on its
//! own thread, so one slow or broken session never blocks another.

use crate::conn::{Conn, ConnError};
use crate::{exec, files, info, procs, sys};
use paddock_proto::vsock::{self, Listener};
use paddock_proto::{
    frame::write_frame, AgentMsg, ErrorKind, HealthInfo, HostMsg, ReadyInfo, AGENT_PORT,
    PROTOCOL_VERSION, READY_PORT,
};
use std::sync::atomic::Ordering;

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn serve() -> std::io::Result<()> {
    let listener = Listener::bind(AGENT_PORT)?;
    report_ready();
    loop {
        let stream = match listener.accept() {
            Ok(s) => s,
            Err(e) => {
                info!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        std::thread::spawn(move || {
            if let Ok(conn) = Conn::new(stream) {
                if let Err(e) = session(&conn) {
                    if !matches!(e, ConnError::Closed) {
                        info!("session ended: {e}");
                    }
                }
            }
        });
    }
}

/// Tells the host we serve: connects to its ready port and says so.
fn report_ready() {
    let ready = AgentMsg::Ready(ReadyInfo {
        agent_version: AGENT_VERSION.into(),
        protocol: PROTOCOL_VERSION,
        uptime_ms: sys::uptime_ms(),
    });
    match vsock::connect(vsock::HOST_CID, READY_PORT) {
        Ok(mut s) => {
            if let Err(e) = write_frame(&mut s, &ready) {
                info!("reporting readiness: {e}");
            }
        }
        // A host that doesn't listen for readiness can still connect to us.
        Err(e) => info!("no host listening on the ready port ({e})"),
    }
}

fn session(conn: &Conn) -> Result<(), ConnError> {
    match conn.recv() {
        Ok(HostMsg::Hello { protocol }) if protocol == PROTOCOL_VERSION => {
            conn.send(&AgentMsg::HelloOk {
                protocol: PROTOCOL_VERSION,
                agent_version: AGENT_VERSION.into(),
            })?;
        }
        Ok(HostMsg::Hello { protocol }) => {
            return conn.error(
                ErrorKind::UnsupportedVersion,
                format!("host speaks protocol {protocol}, this agent speaks {PROTOCOL_VERSION}"),
            );
        }
        Ok(other) => {
            return conn.error(
                ErrorKind::UnexpectedMessage,
                format!("expected Hello, got {}", crate::conn::name(&other)),
            );
        }
        Err(e) if e.is_protocol_error() => return conn.error(e.kind(), e.to_string()),
        Err(e) => return Err(e),
    }
    let next = || match conn.recv() {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_protocol_error() => conn.error(e.kind(), e.to_string()).map(|()| None),
        Err(e) => Err(e),
    };
    let Some(mut req) = next()? else {
        return Ok(());
    };
    // A file operation as a given user: this thread takes on that user's
    // credentials for good (it serves this one connection and ends).
    let mut privileged = true;
    if let HostMsg::AsUser(user) = req {
        if let Err(e) = crate::users::become_user(user) {
            return conn.error(ErrorKind::Io, format!("switching to {user:?}: {e}"));
        }
        privileged = user == paddock_proto::User::Root;
        req = match next()? {
            Some(
                HostMsg::Exec(_)
                | HostMsg::AsUser(_)
                | HostMsg::Spawn(_)
                | HostMsg::Attach(_)
                | HostMsg::Input { .. }
                | HostMsg::CloseInput(_)
                | HostMsg::SignalProc { .. }
                | HostMsg::Resize { .. }
                | HostMsg::ListProcs
                // Changes what every user trusts: the host's own, as root.
                | HostMsg::TrustCa { .. }
                // The pool, the clock and the machine's names: root's.
                | HostMsg::Renew { .. }
                | HostMsg::Provision { .. },
            ) => {
                return conn.error(
                    ErrorKind::UnexpectedMessage,
                    "AsUser comes before a file operation only".to_string(),
                )
            }
            Some(r) => r,
            None => return Ok(()),
        };
    }
    match req {
        HostMsg::Exec(r) => exec::run(conn, r),
        HostMsg::WriteFile { mode, .. } if !privileged && mode & 0o6000 != 0 => {
            // The upload's frames come anyway: take them so the host reads
            // this answer rather than a broken connection.
            while !matches!(conn.recv(), Ok(HostMsg::DataEnd) | Err(_)) {}
            conn.error(
                ErrorKind::InvalidRequest,
                format!("mode {mode:o}: setuid and setgid bits need the root user"),
            )
        }
        HostMsg::MakeDir { mode, .. } if !privileged && mode & 0o6000 != 0 => conn.error(
            ErrorKind::InvalidRequest,
            format!("mode {mode:o}: setuid and setgid bits need the root user"),
        ),
        HostMsg::WriteFile { path, mode } => files::write_file(conn, &path, mode),
        HostMsg::ReadFile { path } => files::read_file(conn, &path),
        HostMsg::Stat { path } => files::stat(conn, &path),
        HostMsg::ListDir { path } => files::list_dir(conn, &path),
        HostMsg::MakeDir {
            path,
            mode,
            parents,
        } => files::make_dir(conn, &path, mode, parents),
        HostMsg::Remove { path, recursive } => files::remove(conn, &path, recursive),
        HostMsg::Rename { from, to } => files::rename(conn, &from, &to),
        HostMsg::WatchDir { path, recursive } => crate::watch::watch(conn, &path, recursive),
        HostMsg::Changes => crate::changes::list(conn),
        HostMsg::TrustCa { pem } => crate::trust::trust(conn, &pem),
        HostMsg::Renew {
            entropy,
            realtime_ns,
            hostname,
            clone,
        } => crate::renew::renew(conn, &entropy, realtime_ns, &hostname, clone),
        HostMsg::Provision {
            entropy,
            realtime_ns,
            hostname,
            data_sectors,
            net,
        } => crate::provision::provision(
            conn,
            &crate::provision::Request {
                entropy: &entropy,
                realtime_ns,
                hostname: &hostname,
                data_sectors,
                net,
            },
        ),
        HostMsg::Spawn(r) => procs::spawn(conn, r),
        HostMsg::Attach(to) => procs::attach(conn, &to),
        op @ (HostMsg::Input { .. }
        | HostMsg::CloseInput(_)
        | HostMsg::SignalProc { .. }
        | HostMsg::Resize { .. }
        | HostMsg::ListProcs) => procs::operate(conn, op),
        HostMsg::Health => conn.send(&AgentMsg::Health(HealthInfo {
            agent_version: AGENT_VERSION.into(),
            uptime_ms: sys::uptime_ms(),
            running_execs: exec::RUNNING.load(Ordering::SeqCst),
        })),
        other => conn.error(
            ErrorKind::UnexpectedMessage,
            format!("{} is not a request", crate::conn::name(&other)),
        ),
    }
}
