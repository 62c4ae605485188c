//! `GET /v1/system/backup` (admin): the box's state database and audit log
//! as one encrypted file, made by PID 1 in an unnamed file and sent from
//! its descriptor. `POST /v1/system/restore` (admin): such a file as the
//! body, streamed into a file PID 1 opens for it (never held whole here),
//! then opened with the box's TPM or with `X-Paddock-Recovery-Secret`,
//! verified whole, and put in place; PID 1 says what it restored or which
//! check failed.

use crate::bridge::Exchange;
use crate::handling::json_error;
use crate::http;
use crate::shared::{call, call_fd, Shared};
use crate::system_update::copy_exactly;
use paddock_api_channel::{Call, Verdict};
use serde_json::Value;

pub fn backup(shared: &Shared, req: &http::Request, io: &mut Exchange) -> Option<(u16, Value)> {
    let (reply, fd) = call_fd(shared, &req.bearer, Call::MakeBackup);
    let len = reply.body.get("bytes").and_then(Value::as_u64);
    let created = reply
        .body
        .get("created_at")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match (fd, len) {
        (Some(fd), Some(len)) if reply.verdict == Verdict::Ok => {
            let name = format!("paddock-backup-{created}.pdkbak");
            // A client gone mid-way gets a cut download; the file goes
            // with the descriptor.
            let _ = http::send_attachment(&mut io.out, &mut std::fs::File::from(fd), len, &name);
            None
        }
        _ => Some((http::status_of(reply.verdict), reply.body)),
    }
}

pub fn restore(shared: &Shared, req: &http::Request, io: &mut Exchange) -> Option<(u16, Value)> {
    let Some(bytes) = req.content_length else {
        return Some(json_error(
            411,
            "a backup needs a content-length (the box makes room for it first)",
        ));
    };
    if req.recovery_secret.is_some() && !req.tls {
        // Never across the LAN in the clear (like a console sign-in).
        return Some(json_error(
            403,
            "the recovery secret is taken over TLS only: use the https:// address",
        ));
    }
    let (reply, fd) = call_fd(shared, &req.bearer, Call::StageRestore { bytes });
    let staged_id = reply.body.get("staged").and_then(Value::as_u64);
    let (fd, staged_id) = match (fd, staged_id) {
        (Some(fd), Some(id)) if reply.verdict == Verdict::Ok => (fd, id),
        _ => return Some((http::status_of(reply.verdict), reply.body)),
    };
    let mut staged = std::fs::File::from(fd);
    let copied = copy_exactly(&mut io.body, &mut staged, bytes);
    drop(staged);
    if let Err(why) = copied {
        let _ = call(
            shared,
            &req.bearer,
            Call::AbandonRestore { staged: staged_id },
        );
        return Some(json_error(400, why));
    }
    let call_ = Call::ApplyRestore {
        staged: staged_id,
        recovery_secret: req.recovery_secret.clone(),
    };
    let (reply, _) = call(shared, &req.bearer, call_);
    Some((http::status_of(reply.verdict), reply.body))
}
