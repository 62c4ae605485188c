//! Web console sessions. A browser signs in once with a token (sent as a
//! bearer on `POST /v1/session`) and from then on carries only an
//! HttpOnly, Secure, SameSite=Strict cookie that stands for it: the page's
//! script never holds the secret after sign-in, and nothing in the
//! browser's readable storage does.
//!
//! A session is only a handle: every request made with it goes to host-init
//! as the token's own, so it may do exactly what the token may, and ends the
//! moment the token is revoked, rotated or expires (host-init refuses it,
//! and the session is dropped). Changes made with a session also need the
//! session's CSRF token in `X-Paddock-CSRF`, which only a page of this
//! origin can have read.
//!
//! Sessions live in the API process's memory, not on disk: a restart of the
//! API process signs every browser out, which is the safe way to fail.

use crate::handling::json_error;
use crate::http::Request;
use paddock_api_types::{Scope, Session, WhoAmI};
use serde_json::Value;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Mutex;

/// The cookie's name. `__Host-` makes browsers take it only when Secure,
/// for path `/`, with no Domain: no other host can set or read it.
pub const COOKIE: &str = "__Host-paddock_session";
/// The header that must carry the session's CSRF token on every change.
pub const CSRF_HEADER: &str = "x-paddock-csrf";
/// The longest a session lasts, however long its token does.
pub const SESSION_MAX_S: u64 = 12 * 3600;
/// Sessions open at once, and per tenant: a tenant signing in over and over
/// replaces its own oldest sessions and cannot crowd out another's.
pub const MAX_SESSIONS: usize = 4096;
pub const MAX_PER_TENANT: usize = 32;
/// Of `MAX_SESSIONS`, the places only admins may take.
pub const ADMIN_ROOM: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("too many console sessions are open on this box ({MAX_SESSIONS}); retry later")]
    Full,
    #[error("the token has expired")]
    Expired,
    #[error("the system's random source failed: {0}")]
    Random(String),
}

struct Entry {
    bearer: String,
    csrf: String,
    /// Order of opening (seconds tie), for replacing a tenant's oldest.
    serial: u64,
    who: WhoAmI,
    expires_at: u64,
}

/// What a request made with a session cookie is, when the session is open.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    pub bearer: String,
    pub csrf: String,
}

#[derive(Default)]
pub struct Sessions {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// Keyed by the SHA-256 of the cookie's value, so that what a lookup
    /// compares is not the secret itself.
    by_key: HashMap<[u8; 32], Entry>,
    opened: u64,
}

fn key(cookie: &str) -> [u8; 32] {
    sha2::Sha256::digest(cookie.as_bytes()).into()
}

/// A cookie value or CSRF token (crate::random).
pub(crate) fn random_token() -> Result<String, SessionError> {
    crate::random::token().map_err(|e| SessionError::Random(e.to_string()))
}

/// The header that tells a browser to drop this host's cookies.
pub fn clear_site_data() -> (::http::header::HeaderName, String) {
    (
        ::http::header::HeaderName::from_static("clear-site-data"),
        "\"cookies\"".to_string(),
    )
}

/// Equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sessions {
    /// Opens a session for `bearer`, whom host-init knows as `who`. Returns
    /// the cookie's value and what the console is told.
    pub fn open(
        &self,
        bearer: &str,
        who: &WhoAmI,
        now: u64,
    ) -> Result<(String, Session), SessionError> {
        let expires_at = who
            .expires_at
            .map_or(now + SESSION_MAX_S, |e| e.min(now + SESSION_MAX_S));
        if expires_at <= now {
            return Err(SessionError::Expired);
        }
        let cookie = random_token()?;
        let csrf = random_token()?;
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let Open {
            by_key: open,
            opened,
        } = &mut *guard;
        open.retain(|_, e| e.expires_at > now);
        let mine: Vec<([u8; 32], u64)> = open
            .iter()
            .filter(|(_, e)| e.who.tenant == who.tenant)
            .map(|(k, e)| (*k, e.serial))
            .collect();
        if mine.len() >= MAX_PER_TENANT {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, serial)| *serial) {
                open.remove(oldest);
            }
        }
        // The last few places are an admin's, so that tenants filling the
        // table cannot keep the box's administrator out.
        let room = if who.admin {
            MAX_SESSIONS
        } else {
            MAX_SESSIONS - ADMIN_ROOM
        };
        if open.len() >= room {
            return Err(SessionError::Full);
        }
        *opened += 1;
        open.insert(
            key(&cookie),
            Entry {
                bearer: bearer.to_string(),
                csrf: csrf.clone(),
                serial: *opened,
                who: who.clone(),
                expires_at,
            },
        );
        let view = view(&who.token, who, expires_at, &csrf);
        Ok((cookie, view))
    }

    /// The open session a cookie names, if any (an ended one is dropped).
    pub fn find(&self, cookie: &str, now: u64) -> Option<Found> {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let open = &mut guard.by_key;
        let k = key(cookie);
        match open.get(&k) {
            Some(e) if e.expires_at > now => Some(Found {
                bearer: e.bearer.clone(),
                csrf: e.csrf.clone(),
            }),
            Some(_) => {
                open.remove(&k);
                None
            }
            None => None,
        }
    }

    /// What the console is told about its open session.
    pub fn describe(&self, cookie: &str, now: u64) -> Option<Session> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.by_key
            .get(&key(cookie))
            .filter(|e| e.expires_at > now)
            .map(|e| view(&e.who.token, &e.who, e.expires_at, &e.csrf))
    }

    /// Ends a session; whether it was open.
    pub fn close(&self, cookie: &str) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.by_key.remove(&key(cookie)).is_some()
    }

    /// Sessions open now (for tests and metrics).
    pub fn count(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .len()
    }
}

fn view(token: &str, who: &WhoAmI, expires_at: u64, csrf: &str) -> Session {
    let mut scopes: Vec<Scope> = who.scopes.clone();
    scopes.sort();
    scopes.dedup();
    Session {
        token: token.to_string(),
        tenant: who.tenant.clone(),
        admin: who.admin,
        scopes,
        expires_at,
        csrf_token: csrf.to_string(),
    }
}

/// The `Set-Cookie` value that hands a browser its session.
pub fn set_cookie(cookie: &str, expires_at: u64, now: u64) -> String {
    format!(
        "{COOKIE}={cookie}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        expires_at.saturating_sub(now)
    )
}

/// The `Set-Cookie` value that takes it back.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// What a request's `Cookie` headers say about the session cookie.
///
/// Cookies are not kept apart by port, and only the exact `__Host-` name
/// gets the browser's protections: a page served on another port of this
/// host (a workspace's published port) can set a cookie whose name differs
/// only by a leading Unicode space or by case, with a longer path so that
/// it is sent first. Such a look-alike, or a second session cookie, is
/// never read as the session: the request is refused and the browser told
/// to clear its cookies.
#[derive(Default)]
pub struct CookieScan {
    found: Vec<Option<String>>,
    look_alike: bool,
}

impl CookieScan {
    /// One `Cookie` header's pairs (HTTP/2 may send several headers).
    pub fn scan(&mut self, header: &str) {
        for pair in header.split(';') {
            let Some((name, value)) = pair.trim_matches([' ', '\t']).split_once('=') else {
                continue;
            };
            if name == COOKIE {
                self.found
                    .push(well_formed(value).then(|| value.to_string()));
            } else if name
                .to_ascii_lowercase()
                .contains(&COOKIE.to_ascii_lowercase()[2..])
            {
                self.look_alike = true;
            }
        }
    }

    /// The session cookie's value, when there is exactly one, well formed,
    /// and no look-alike beside it.
    pub fn value(&self) -> Option<String> {
        match self.found.as_slice() {
            [Some(v)] if !self.look_alike => Some(v.clone()),
            _ => None,
        }
    }

    pub fn conflict(&self) -> bool {
        self.look_alike || self.found.len() > 1
    }
}

/// What `random_token` makes: 43 base64url characters.
fn well_formed(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The session cookie's value in one `Cookie` header, if it holds exactly
/// one well-formed session cookie and nothing that looks like it.
pub fn cookie_of(header: &str) -> Option<String> {
    let mut scan = CookieScan::default();
    scan.scan(header);
    scan.value()
}

/// Settles a request's session cookie before anything else looks at it: a
/// request with no bearer, to the API, with an open session's cookie is
/// made with that session's token; a change made so must carry the
/// session's CSRF token. Err: the refusal to answer with.
///
/// SameSite=Strict already keeps the cookie off other sites' requests; the
/// CSRF token and `Sec-Fetch-Site` are the second and third locks, for a
/// browser that gets the first wrong.
pub fn authenticate(sessions: &Sessions, req: &mut Request, now: u64) -> Result<(), (u16, Value)> {
    // Only the API takes a session, only over TLS (the cookie is Secure:
    // one that arrives in the clear was not set by this box's sign-in).
    if !req.bearer.is_empty() || !req.path.starts_with("/v1/") || !req.tls {
        return Ok(());
    }
    if req.session_conflict {
        return Err(json_error(
            401,
            "conflicting session cookies (one was set by another page on this host); \
             they were cleared: sign in again",
        ));
    }
    let Some(cookie) = req.session_cookie.as_deref() else {
        return Ok(());
    };
    let Some(found) = sessions.find(cookie, now) else {
        return Err(json_error(
            401,
            "the console session has ended; sign in again",
        ));
    };
    if let Some(site) = req.fetch_site.as_deref() {
        if site != "same-origin" && site != "none" {
            return Err(json_error(
                403,
                format!("a console session is used only by the console's own pages, not from {site} requests"),
            ));
        }
    }
    let safe = matches!(req.method.as_str(), "GET" | "HEAD");
    if !safe
        && !req
            .csrf
            .as_deref()
            .is_some_and(|c| same_secret(c, &found.csrf))
    {
        return Err(json_error(
            403,
            "a change made with a console session needs the session's CSRF token in X-Paddock-CSRF",
        ));
    }
    req.bearer = found.bearer;
    req.via_session = true;
    Ok(())
}

/// The answer to a request `authenticate` refused: with conflicting
/// cookies, the browser is also told to drop this host's cookies, the
/// planted one with them.
pub fn refusal(req: &Request, status: u16, value: &Value) -> (crate::bridge::Head, Vec<u8>) {
    let (mut head, body) = crate::http::json_answer(status, value);
    if req.session_conflict {
        head.headers.push(clear_site_data());
    }
    (head, body)
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
