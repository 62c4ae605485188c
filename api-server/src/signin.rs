//! `/v1/session`: the web console signs in with a token, asks who it is,
//! and signs out (crate::sessions keeps the sessions).

use crate::bridge::Exchange;
use crate::handling::json_error;
use crate::http::{self, status_of, Request};
use crate::sessions::{clear_cookie, now_s, set_cookie, SessionError};
use crate::shared::{call, Shared};
use ::http::header::SET_COOKIE;
use paddock_api_channel::{Call, Verdict};
use serde_json::Value;

/// `POST /v1/session`, made with the token as a bearer: opens a session and
/// hands the browser its cookie. None: answered.
pub fn open(shared: &Shared, req: &Request, io: &mut Exchange) -> Option<(u16, Value)> {
    if req.via_session {
        return Some(json_error(
            400,
            "sign in with a token (Authorization: Bearer), not with a session",
        ));
    }
    if !req.tls {
        return Some(json_error(
            400,
            "sign in over HTTPS: the console's session cookie is only ever sent over TLS",
        ));
    }
    let (reply, _) = call(shared, &req.bearer, Call::ConsoleSession { opened: true });
    if reply.verdict != Verdict::Ok {
        return Some((status_of(reply.verdict), reply.body));
    }
    let Ok(who) = serde_json::from_value::<paddock_api_types::WhoAmI>(reply.body) else {
        return Some(json_error(503, "host-init gave no identity"));
    };
    let now = now_s();
    match shared.sessions.open(&req.bearer, &who, now) {
        Ok((cookie, session)) => {
            let set = set_cookie(&cookie, session.expires_at, now);
            http::json_with(
                &mut io.out,
                201,
                &serde_json::json!(session),
                vec![(SET_COOKIE, set)],
            );
            None
        }
        Err(e @ SessionError::Full) => Some(json_error(503, e.to_string())),
        Err(e @ SessionError::Expired) => Some(json_error(401, e.to_string())),
        Err(e @ SessionError::Random(_)) => Some(json_error(500, e.to_string())),
    }
}

/// `GET /v1/session`: the open session this browser signed in with.
pub fn describe(shared: &Shared, req: &Request) -> (u16, Value) {
    let session = req
        .session_cookie
        .as_deref()
        .filter(|_| req.via_session)
        .and_then(|c| shared.sessions.describe(c, now_s()));
    match session {
        Some(s) => (200, serde_json::json!(s)),
        None => json_error(
            404,
            "no console session: this request was made with a bearer token",
        ),
    }
}

/// `DELETE /v1/session`: signs this browser out (the token itself stays
/// valid; revoke it to end everything made with it).
pub fn close(shared: &Shared, req: &Request, io: &mut Exchange) -> Option<(u16, Value)> {
    match req.session_cookie.as_deref().filter(|_| req.via_session) {
        Some(cookie) => {
            shared.sessions.close(cookie);
            // For the audit log only: the session has ended whatever the
            // answer.
            let _ = call(shared, &req.bearer, Call::ConsoleSession { opened: false });
            http::json_with(
                &mut io.out,
                200,
                &serde_json::json!({"signed_out": true}),
                // Every cookie of this host goes, not only ours: one that
                // another page on it planted would otherwise outlive this.
                vec![
                    (SET_COOKIE, clear_cookie()),
                    crate::sessions::clear_site_data(),
                ],
            );
            None
        }
        None => Some(json_error(
            404,
            "no console session: this request was made with a bearer token",
        )),
    }
}
