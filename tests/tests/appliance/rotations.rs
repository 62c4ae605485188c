//! Rotating the API's TLS identity and a token's secret on a running box.

use super::*;

/// Rotations an operator needs in an incident, each in force at once: the
/// API's TLS identity (served and shown on the console within seconds) and
/// the bootstrap admin credential (the old secret refused from the next
/// request). Returns the new admin secret and the new fingerprint.
pub(crate) fn rotations(
    app: &mut Appliance,
    admin: &str,
    old_fingerprint: &str,
) -> (String, String) {
    let (code, body) = app
        .api(
            "POST",
            "/v1/tokens",
            admin,
            Some(br#"{"name": "ops", "scopes": ["read", "exec"], "ttl_s": 600}"#),
        )
        .expect("curl");
    assert_eq!(code, 201);
    let ops = json(&body)["secret"].as_str().expect("secret").to_string();
    assert_eq!(
        app.api("POST", "/v1/tls/rotate", &ops, None)
            .expect("curl")
            .0,
        403
    );
    assert_eq!(
        app.api("POST", "/v1/tokens/tok_bootstrap/rotate", &ops, None)
            .expect("curl")
            .0,
        403
    );

    let (code, body) = app
        .api("POST", "/v1/tls/rotate", admin, None)
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let fingerprint = json(&body)["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    assert_eq!(fingerprint.len(), 95);
    assert_ne!(fingerprint, old_fingerprint);
    let started = std::time::Instant::now();
    loop {
        if app.served_fingerprint().ok().as_deref() == Some(fingerprint.as_str()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the API never served the rotated certificate"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "rotations: new certificate served after {:?}",
        started.elapsed()
    );
    app.wait_for(&fingerprint, Duration::from_secs(30))
        .expect("the status screen shows the new fingerprint");

    let (code, body) = app
        .api("POST", "/v1/tokens/tok_bootstrap/rotate", admin, None)
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let new_admin = json(&body)["secret"].as_str().expect("secret").to_string();
    assert_ne!(new_admin, admin);
    assert_eq!(
        app.api("GET", "/v1/workspaces", admin, None)
            .expect("curl")
            .0,
        401
    );
    assert_eq!(
        app.api("GET", "/v1/workspaces", &new_admin, None)
            .expect("curl")
            .0,
        200
    );
    // Tokens the old secret's holder minted stay valid: same token, new secret.
    assert_eq!(
        app.api("GET", "/v1/workspaces", &ops, None)
            .expect("curl")
            .0,
        200
    );
    let (_, body) = app
        .api("GET", "/v1/audit?event=tls_rotated", &new_admin, None)
        .expect("curl");
    assert!(String::from_utf8_lossy(&body).contains(&fingerprint));
    let (_, body) = app
        .api("GET", "/v1/audit?event=token_rotated", &new_admin, None)
        .expect("curl");
    assert!(String::from_utf8_lossy(&body).contains("tok_bootstrap"));
    (new_admin, fingerprint)
}
