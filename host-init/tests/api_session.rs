//! The web console's session (issue 19), attacked through the real API
//! process and the real control plane (tokens, scopes, revocation) with
//! curl: a cookie stands for its token and no more; a change needs the
//! session's CSRF token and a same-origin request; the session ends with
//! the token, with sign-out, and never works over plain HTTP; the pages
//! carry their policy. Loopback only.

use paddock_init::api::channel::{Call, Verdict};
use std::process::Command;

mod common;
use common::real_api::{mint, start, RealApi};

/// One request: (status, response headers lowercased, body).
fn curl(method: &str, url: &str, headers: &[String]) -> (u16, String, String) {
    let (status, head, body) = curl_raw(method, url, headers);
    (status, head.to_ascii_lowercase(), body)
}

/// One request: (status, response headers as sent, body).
fn curl_raw(method: &str, url: &str, headers: &[String]) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--max-time", "30", "-X", method, "-D", "-", url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if method == "POST" {
        cmd.args(["--data-binary", "@-"]);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn post_json(url: &str, headers: &[String], body: &str) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sk",
        "--max-time",
        "30",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        url,
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Signs in with `secret`: the Cookie header to send and the CSRF token.
fn sign_in(b: &RealApi, secret: &str) -> (String, String) {
    let (status, head, body) = curl_raw(
        "POST",
        &format!("{}/v1/session", b.base),
        &[format!("Authorization: Bearer {secret}")],
    );
    assert_eq!(status, 201, "{head}{body}");
    // The cookie's value is case-sensitive: only its flags are compared
    // lowercased.
    let raw = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a Set-Cookie")
        .to_string();
    let set = raw.to_ascii_lowercase();
    for part in [
        "__host-paddock_session=",
        "secure",
        "httponly",
        "samesite=strict",
        "path=/",
    ] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("domain"), "{set}");
    let session: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let value = raw
        .split_once(':')
        .expect("a header")
        .1
        .trim()
        .split(';')
        .next()
        .expect("pair")
        .split_once('=')
        .expect("name=value")
        .1
        .to_string();
    assert!(!body.contains(secret), "the secret is never echoed");
    (
        format!("Cookie: __Host-paddock_session={value}"),
        session["csrf_token"]
            .as_str()
            .expect("csrf_token")
            .to_string(),
    )
}

#[test]
fn a_session_stands_for_its_token_and_a_change_needs_the_csrf_token() {
    let b = start("csrf");
    let (cookie, csrf) = sign_in(&b, &b.admin);
    let list = format!("{}/v1/tokens", b.base);
    let (status, _, body) = curl("GET", &list, std::slice::from_ref(&cookie));
    assert_eq!(status, 200, "a read with the cookie alone: {body}");
    let (status, _, body) = curl(
        "GET",
        &format!("{}/v1/session", b.base),
        std::slice::from_ref(&cookie),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&csrf),
        "the page can get its CSRF token back: {body}"
    );

    let mint = r#"{"name": "by-console", "scopes": ["read"], "ttl_s": 600}"#;
    // The forged cross-site POST: the cookie, as a browser that ignored
    // SameSite would send it, and no CSRF token.
    let (status, body) = post_json(&list, std::slice::from_ref(&cookie), mint);
    assert_eq!(status, 403, "no CSRF token: {body}");
    assert!(body.contains("X-Paddock-CSRF"), "{body}");
    let (status, body) = post_json(
        &list,
        &[cookie.clone(), "X-Paddock-CSRF: not-the-token".into()],
        mint,
    );
    assert_eq!(status, 403, "a wrong CSRF token: {body}");
    let (status, body) = post_json(
        &list,
        &[
            cookie.clone(),
            format!("X-Paddock-CSRF: {csrf}"),
            "Sec-Fetch-Site: cross-site".into(),
        ],
        mint,
    );
    assert_eq!(
        status, 403,
        "another site's page, even with the token: {body}"
    );
    let (status, body) = post_json(
        &list,
        &[
            cookie.clone(),
            format!("X-Paddock-CSRF: {csrf}"),
            "Sec-Fetch-Site: same-origin".into(),
        ],
        mint,
    );
    assert_eq!(status, 201, "the console's own change: {body}");
    // Nothing the refused requests asked for happened.
    let tokens = b.control.call(&b.admin, Call::ListTokens).reply.body;
    let minted = tokens["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter(|t| t["name"] == "by-console")
        .count();
    assert_eq!(minted, 1, "{tokens}");
}

#[test]
fn a_session_may_do_only_what_its_token_may_and_ends_with_it() {
    let b = start("scope");
    let (reader_id, reader) = mint(&b, "reader", &["read"]);
    let (cookie, csrf) = sign_in(&b, &reader);
    let (status, _, body) = curl(
        "GET",
        &format!("{}/v1/session", b.base),
        std::slice::from_ref(&cookie),
    );
    assert_eq!(status, 200);
    let session: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(session["admin"], false);
    assert_eq!(session["scopes"], serde_json::json!(["read"]));
    // A user without the scope who forges the request the console would
    // not show it a button for.
    let with = [cookie.clone(), format!("X-Paddock-CSRF: {csrf}")];
    let (status, body) = post_json(
        &format!("{}/v1/workspaces", b.base),
        &with,
        r#"{"ttl_s": 60}"#,
    );
    assert_eq!(status, 403, "create without the create scope: {body}");
    let (status, _, body) = curl("GET", &format!("{}/v1/tokens", b.base), &with);
    assert_eq!(status, 403, "the token list without admin: {body}");
    let (status, _, body) = curl("GET", &format!("{}/v1/audit", b.base), &with);
    assert_eq!(status, 403, "the audit log without admin: {body}");

    // Revoked: the session ends at once, and stays ended.
    let out = b
        .control
        .call(&b.admin, Call::RevokeToken { id: reader_id });
    assert_eq!(out.reply.verdict, Verdict::Ok, "{}", out.reply.body);
    let (status, _, _) = curl("GET", &format!("{}/v1/workspaces", b.base), &with);
    assert_eq!(status, 401, "a revoked token's session");
    let (status, _, body) = curl("GET", &format!("{}/v1/workspaces", b.base), &with);
    assert_eq!(status, 401);
    assert!(
        body.contains("sign in again"),
        "the session itself is gone: {body}"
    );
}

#[test]
fn signing_out_ends_the_session_and_a_made_up_cookie_is_nobody() {
    let b = start("signout");
    let (cookie, csrf) = sign_in(&b, &b.admin);
    let out = format!("{}/v1/session", b.base);
    let (status, _, _) = curl("DELETE", &out, std::slice::from_ref(&cookie));
    assert_eq!(
        status, 403,
        "signing out is a change: it needs the CSRF token"
    );
    let (status, head, body) = curl(
        "DELETE",
        &out,
        &[cookie.clone(), format!("X-Paddock-CSRF: {csrf}")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("max-age=0"),
        "the cookie is taken back: {head}"
    );
    let (status, _, _) = curl(
        "GET",
        &format!("{}/v1/workspaces", b.base),
        std::slice::from_ref(&cookie),
    );
    assert_eq!(status, 401, "the old cookie after sign-out");
    // Both ends of the session are in the audit log, with the token.
    for event in ["console_signed_in", "console_signed_out"] {
        let out = b.control.call(
            &b.admin,
            Call::ReadAudit {
                filters: vec![("event".into(), event.into())],
                limit: 10,
            },
        );
        let events = out.reply.body["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(events.len(), 1, "{event}: {}", out.reply.body);
        assert!(events[0]["token"].as_str().is_some(), "{}", out.reply.body);
    }
    let made_up = format!("Cookie: __Host-paddock_session={}", "A".repeat(43));
    let (status, _, _) = curl("GET", &format!("{}/v1/workspaces", b.base), &[made_up]);
    assert_eq!(status, 401);
    // A bearer with no session: nothing to describe or end.
    let bearer = format!("Authorization: Bearer {}", b.admin);
    let (status, _, _) = curl("GET", &out, std::slice::from_ref(&bearer));
    assert_eq!(status, 404);
    // A wrong token opens nothing.
    let (status, head, _) = curl("POST", &out, &["Authorization: Bearer pdk_wrong".into()]);
    assert_eq!(status, 401);
    assert!(!head.contains("set-cookie"), "{head}");
}

#[test]
fn no_session_over_plain_http_and_the_pages_carry_their_policy() {
    let b = start("plain");
    let (status, head, body) = curl(
        "POST",
        &format!("{}/v1/session", b.plain),
        &[format!("Authorization: Bearer {}", b.admin)],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("HTTPS"), "{body}");
    assert!(!head.contains("set-cookie"), "{head}");

    let (status, head, body) = curl("GET", &format!("{}/", b.base), &[]);
    assert_eq!(status, 200);
    assert!(body.contains("/assets/app.js"), "{body}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(
        !head.contains("access-control-allow-origin"),
        "no CORS: {head}"
    );
    let (status, head, _) = curl("GET", &format!("{}/assets/app.js", b.base), &[]);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    let (status, _, _) = curl("GET", &format!("{}/assets/nope.js", b.base), &[]);
    assert_eq!(status, 404);
    // No page in the clear: a token typed there would cross the network
    // unencrypted.
    let (status, _, _) = curl("GET", &format!("{}/", b.plain), &[]);
    assert_eq!(status, 404, "the console over plain HTTP");
    // A session's cookie takes nothing but the API: E2B's paths ignore it.
    let (cookie, _) = sign_in(&b, &b.admin);
    let (status, _, _) = curl("GET", &format!("{}/sandboxes", b.base), &[cookie]);
    assert_eq!(status, 401);
}

#[test]
fn a_planted_look_alike_cookie_never_signs_the_browser_in_as_its_planter() {
    let b = start("planted");
    let (_, attacker) = mint(&b, "attacker", &["read", "create"]);
    let (theirs, _) = sign_in(&b, &attacker);
    let (mine, _) = sign_in(&b, &b.admin);
    let theirs = theirs.trim_start_matches("Cookie: __Host-paddock_session=");
    let mine = mine.trim_start_matches("Cookie: ");
    for planted in [
        format!("\u{2000}__Host-paddock_session={theirs}"),
        format!("__host-paddock_session={theirs}"),
        format!("__Host-paddock_session={theirs}"),
    ] {
        let jar = format!("Cookie: {planted}; {mine}");
        let (status, head, body) = curl("GET", &format!("{}/v1/session", b.base), &[jar]);
        assert_eq!(status, 401, "{planted}: {body}");
        assert!(head.contains("clear-site-data: \"cookies\""), "{head}");
        assert!(!body.contains("tok_"), "{body}");
    }
}

#[test]
fn a_tenant_signing_in_over_and_over_pushes_out_only_its_own_sessions() {
    let b = start("crowd");
    let (_, other) = mint(&b, "other", &["read"]);
    let (theirs, _) = sign_in(&b, &other);
    let (first, _) = sign_in(&b, &b.admin);
    for _ in 0..paddock_api_server::sessions::MAX_PER_TENANT {
        sign_in(&b, &b.admin);
    }
    let list = format!("{}/v1/workspaces", b.base);
    let (status, _, _) = curl("GET", &list, &[first]);
    assert_eq!(status, 401, "the admin's oldest session made room");
    let (status, _, _) = curl("GET", &list, &[theirs]);
    assert_eq!(status, 200, "another tenant's session stays");
}
