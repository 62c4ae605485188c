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

/// 32 bytes from the kernel's CSPRNG, base64url without padding.
pub(crate) fn random_token() -> Result<String, SessionError> {
    use base64::Engine as _;
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most the given length into the
        // buffer, which lives for the call.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SessionError::Random(e.to_string()));
        }
        filled += n as usize;
    }
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
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
        head.headers.push((
            ::http::header::HeaderName::from_static("clear-site-data"),
            "\"cookies\"".to_string(),
        ));
    }
    (head, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(tenant: &str, expires_at: Option<u64>) -> WhoAmI {
        WhoAmI {
            token: format!("tok_{tenant}"),
            admin: false,
            tenant: tenant.into(),
            scopes: vec![Scope::Read, Scope::Create, Scope::Read],
            expires_at,
        }
    }

    #[test]
    fn a_session_stands_for_its_bearer_until_it_ends() {
        let s = Sessions::default();
        let (cookie, view) = s
            .open("pdk_secret", &who("t1", Some(5000)), 1000)
            .expect("open");
        assert_eq!(
            view.expires_at, 5000,
            "the token's expiry, sooner than the cap"
        );
        assert_eq!(view.scopes, vec![Scope::Create, Scope::Read]);
        let found = s.find(&cookie, 4999).expect("open session");
        assert_eq!(found.bearer, "pdk_secret");
        assert_eq!(found.csrf, view.csrf_token);
        assert_ne!(found.csrf, cookie);
        assert_eq!(s.find(&cookie, 5000), None, "ended with the token");
        assert_eq!(s.count(), 0, "an ended session is dropped when met");
    }

    #[test]
    fn a_session_lasts_at_most_the_cap_and_an_expired_token_opens_none() {
        let s = Sessions::default();
        let (_, view) = s.open("pdk_a", &who("t1", None), 1000).expect("open");
        assert_eq!(view.expires_at, 1000 + SESSION_MAX_S);
        assert_eq!(
            s.open("pdk_b", &who("t1", Some(1000)), 1000).map(|_| ()),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn closing_ends_it_and_an_unknown_cookie_finds_nothing() {
        let s = Sessions::default();
        let (cookie, _) = s.open("pdk_a", &who("t1", None), 1).expect("open");
        assert!(s.describe(&cookie, 2).is_some());
        assert!(s.close(&cookie));
        assert!(!s.close(&cookie));
        assert_eq!(s.find(&cookie, 2), None);
        assert_eq!(s.find(&random_token().expect("random"), 2), None);
    }

    #[test]
    fn a_tenant_signing_in_over_and_over_replaces_only_its_own_sessions() {
        let s = Sessions::default();
        let (other, _) = s.open("pdk_other", &who("t2", None), 1).expect("open");
        let (first, _) = s.open("pdk_a", &who("t1", None), 2).expect("open");
        for i in 0..(MAX_PER_TENANT * 3) {
            s.open("pdk_a", &who("t1", None), 3 + i as u64)
                .expect("open");
        }
        assert_eq!(s.count(), MAX_PER_TENANT + 1);
        assert_eq!(s.find(&first, 10), None, "its oldest went first");
        assert!(s.find(&other, 10).is_some(), "another tenant's stays");
    }

    #[test]
    fn the_box_holds_at_most_its_cap_of_sessions_and_keeps_room_for_admins() {
        let s = Sessions::default();
        for i in 0..(MAX_SESSIONS - ADMIN_ROOM) {
            s.open("pdk", &who(&format!("t{i}"), None), 1)
                .expect("open");
        }
        assert_eq!(
            s.open("pdk", &who("late", None), 1).map(|_| ()),
            Err(SessionError::Full)
        );
        let mut boss = who("boss", None);
        boss.admin = true;
        s.open("pdk_admin", &boss, 1)
            .expect("an admin still signs in");
        // Once they end, there is room again.
        s.open("pdk", &who("late", None), 2 + SESSION_MAX_S)
            .expect("room after the others ended");
    }

    #[test]
    fn the_cookie_is_found_among_others_and_only_in_its_own_shape() {
        let v = random_token().expect("random");
        assert_eq!(v.len(), 43);
        let header = format!("a=b; {COOKIE}={v}; c=d");
        assert_eq!(cookie_of(&header), Some(v.clone()));
        assert_eq!(cookie_of(&format!("{COOKIE}={v}x")), None);
        assert_eq!(cookie_of(&format!("{COOKIE}={}", "%".repeat(43))), None);
        assert_eq!(cookie_of(&format!("x{COOKIE}={v}")), None);
        assert_eq!(cookie_of(""), None);
    }

    #[test]
    fn the_cookie_is_secure_http_only_and_strict() {
        let c = set_cookie("abc", 1100, 1000);
        for part in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=100",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Domain"), "{c}");
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut r = Request::from_head(
            method,
            path,
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            false,
        )
        .expect("request");
        r.tls = true;
        r
    }

    #[test]
    fn look_alike_names_and_a_second_session_cookie_are_refused_not_read() {
        let s = Sessions::default();
        let (mine, _) = s.open("pdk_admin", &who("adm", None), 1).expect("open");
        let (theirs, _) = s.open("pdk_evil", &who("t2", None), 1).expect("open");
        for prefix in ["\u{2000}", "\u{a0}", "\u{85}", "\u{3000}", "x", "lower"] {
            let name = if prefix == "lower" {
                COOKIE.to_ascii_lowercase()
            } else {
                format!("{prefix}{COOKIE}")
            };
            let alone = format!("{name}={theirs}");
            assert_eq!(cookie_of(&alone), None, "{prefix:?}");
            let jar = format!("{name}={theirs}; {COOKIE}={mine}");
            let mut r = request("GET", "/v1/workspaces", &[("cookie", &jar)]);
            assert!(r.session_conflict, "{prefix:?}");
            assert_eq!(
                authenticate(&s, &mut r, 2).map_err(|e| e.0),
                Err(401),
                "{prefix:?}"
            );
            assert_eq!(r.bearer, "", "{prefix:?}");
        }
        // Two of the real name, over two headers (HTTP/2 splits cookies).
        let (a, b) = (format!("{COOKIE}={theirs}"), format!("{COOKIE}={mine}"));
        let mut r = request("GET", "/v1/workspaces", &[("cookie", &a), ("cookie", &b)]);
        assert_eq!(authenticate(&s, &mut r, 2).map_err(|e| e.0), Err(401));
        assert_eq!(r.bearer, "");
    }

    #[test]
    fn a_session_cookie_in_the_clear_is_nobody() {
        let s = Sessions::default();
        let (cookie, _) = s.open("pdk_secret", &who("t1", None), 1).expect("open");
        let jar = format!("{COOKIE}={cookie}");
        let mut r = request("GET", "/v1/workspaces", &[("cookie", &jar)]);
        r.tls = false;
        authenticate(&s, &mut r, 2).expect("not refused here: with no bearer a 401 follows");
        assert_eq!(r.bearer, "");
        assert!(!r.via_session);
    }

    #[test]
    fn a_cookie_stands_for_its_token_on_reads_and_with_the_csrf_token_on_changes() {
        let s = Sessions::default();
        let (cookie, view) = s.open("pdk_secret", &who("t1", None), 1).expect("open");
        let jar = format!("{COOKIE}={cookie}");
        let mut get = request("GET", "/v1/workspaces", &[("cookie", &jar)]);
        authenticate(&s, &mut get, 2).expect("a read");
        assert_eq!(get.bearer, "pdk_secret");
        assert!(get.via_session);

        let mut post = request("POST", "/v1/workspaces", &[("cookie", &jar)]);
        let (status, body) = authenticate(&s, &mut post, 2).expect_err("no CSRF token");
        assert_eq!(status, 403, "{body}");
        assert_eq!(post.bearer, "", "a refused request gets no bearer");
        let wrong = format!("{}x", &view.csrf_token[1..]);
        let mut post = request(
            "POST",
            "/v1/workspaces",
            &[("cookie", &jar), (CSRF_HEADER, &wrong)],
        );
        assert_eq!(authenticate(&s, &mut post, 2).map_err(|e| e.0), Err(403));
        let mut post = request(
            "POST",
            "/v1/workspaces",
            &[
                ("cookie", &jar),
                (CSRF_HEADER, &view.csrf_token),
                ("sec-fetch-site", "same-origin"),
            ],
        );
        authenticate(&s, &mut post, 2).expect("with the CSRF token");
        assert_eq!(post.bearer, "pdk_secret");
    }

    #[test]
    fn a_cross_site_request_with_the_cookie_is_refused_even_with_the_token() {
        let s = Sessions::default();
        let (cookie, view) = s.open("pdk_secret", &who("t1", None), 1).expect("open");
        let jar = format!("{COOKIE}={cookie}");
        for site in ["cross-site", "same-site"] {
            let mut r = request(
                "DELETE",
                "/v1/workspaces/ws1",
                &[
                    ("cookie", &jar),
                    (CSRF_HEADER, &view.csrf_token),
                    ("sec-fetch-site", site),
                ],
            );
            assert_eq!(
                authenticate(&s, &mut r, 2).map_err(|e| e.0),
                Err(403),
                "{site}"
            );
        }
    }

    #[test]
    fn an_ended_session_is_told_to_sign_in_and_a_bearer_wins_over_a_cookie() {
        let s = Sessions::default();
        let (cookie, _) = s.open("pdk_secret", &who("t1", Some(10)), 1).expect("open");
        let jar = format!("{COOKIE}={cookie}");
        let mut r = request("GET", "/v1/workspaces", &[("cookie", &jar)]);
        assert_eq!(authenticate(&s, &mut r, 10).map_err(|e| e.0), Err(401));
        let (cookie, _) = s.open("pdk_secret", &who("t1", None), 1).expect("open");
        let jar = format!("{COOKIE}={cookie}");
        let mut r = request(
            "GET",
            "/v1/workspaces",
            &[("cookie", &jar), ("authorization", "Bearer pdk_other")],
        );
        authenticate(&s, &mut r, 2).expect("bearer");
        assert_eq!(r.bearer, "pdk_other");
        assert!(!r.via_session);
        // Not the API (E2B's and envd's paths take no cookie).
        let mut r = request("GET", "/sandboxes", &[("cookie", &jar)]);
        authenticate(&s, &mut r, 2).expect("ignored");
        assert_eq!(r.bearer, "");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
