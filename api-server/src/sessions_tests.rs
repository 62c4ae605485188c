//! The session store's and the session checks' tests (crate::sessions).

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
