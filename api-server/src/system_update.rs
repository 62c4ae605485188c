//! `POST /v1/system/update[?at=now|next-boot|UNIX][&force=true]` (admin):
//! the body, an update bundle, streamed into a file PID 1 opens for it
//! (never held whole here), then handed over for verification. PID 1
//! answers with the update's status once every check passed and the
//! writing started, or says which check failed; GET /v1/system follows it.

use crate::bridge::Exchange;
use crate::handling::{json_error, query};
use crate::http;
use crate::shared::{call, call_fd, Shared};
use paddock_api_channel::{Call, Verdict};
use serde_json::Value;
use std::io::{Read, Write};

/// `at`: None for the next reboot, Some(0) for now, Some(t) at Unix t.
fn when(req: &http::Request) -> Result<Option<u64>, (u16, Value)> {
    match query(req, "at") {
        None | Some("next-boot") => Ok(None),
        Some("now") => Ok(Some(0)),
        Some(t) if !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()) => t
            .parse()
            .map(Some)
            .map_err(|_| json_error(422, "at: now, next-boot or Unix seconds")),
        Some(_) => Err(json_error(422, "at: now, next-boot or Unix seconds")),
    }
}

pub fn update(shared: &Shared, req: &http::Request, io: &mut Exchange) -> Option<(u16, Value)> {
    let reboot_at = match when(req) {
        Ok(w) => w,
        Err(e) => return Some(e),
    };
    let force = match query(req, "force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Some(json_error(422, "force: true or false")),
    };
    let Some(bytes) = req.content_length else {
        return Some(json_error(
            411,
            "an update bundle needs a content-length (the box makes room for it first)",
        ));
    };
    let (reply, fd) = call_fd(shared, &req.bearer, Call::StageUpdate { bytes });
    let fd = match fd {
        Some(fd) if reply.verdict == Verdict::Ok => fd,
        _ => return Some((http::status_of(reply.verdict), reply.body)),
    };
    let mut staged = std::fs::File::from(fd);
    let copied = copy_exactly(&mut io.body, &mut staged, bytes);
    drop(staged);
    if let Err(why) = copied {
        let _ = call(shared, &req.bearer, Call::AbandonUpdate);
        return Some(json_error(400, why));
    }
    let (reply, _) = call(shared, &req.bearer, Call::ApplyUpdate { reboot_at, force });
    Some((http::status_of(reply.verdict), reply.body))
}

/// Copies exactly `len` bytes of the body: a body that ends early or runs
/// past its length is an error (the file then holds no bundle).
pub(crate) fn copy_exactly(
    body: &mut crate::bridge::BodyReader,
    to: &mut impl Write,
    len: u64,
) -> Result<(), String> {
    let mut buf = vec![0u8; 256 << 10];
    let mut left = len;
    while left > 0 {
        let n = body
            .read(&mut buf[..left.min(256 << 10) as usize])
            .map_err(|e| format!("reading the body: {e}"))?;
        if n == 0 {
            return Err(format!(
                "the body ended after {} of its {len} bytes",
                len - left
            ));
        }
        to.write_all(&buf[..n])
            .map_err(|e| format!("staging the upload: {e}"))?;
        left -= n as u64;
    }
    if !body.ended() {
        let mut one = [0u8; 1];
        if body
            .read(&mut one)
            .map_err(|e| format!("reading the body: {e}"))?
            != 0
        {
            return Err(format!("the body is longer than its content-length {len}"));
        }
    }
    Ok(())
}
