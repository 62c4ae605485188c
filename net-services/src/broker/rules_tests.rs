use super::*;
use crate::broker::SecretValue;

fn secret(name: &str, hosts: &[&str]) -> Brokered {
    Brokered {
        name: name.into(),
        placeholder: format!("paddock_secret_{name}_0123456789abcdef"),
        value: SecretValue::new(format!("VALUE-of-{name}")),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        header: None,
        format: "{}".into(),
        replace_in: vec![SecretPlace::Headers],
        allow_plain_http: false,
        upstream_ca: None,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

#[test]
fn the_placeholder_becomes_the_value_for_its_own_host_over_tls() {
    let s = [secret("OPENAI", &["api.openai.test"])];
    let mut h = headers(&[(
        "authorization",
        "Bearer paddock_secret_OPENAI_0123456789abcdef",
    )]);
    let mut target = "/v1/models".to_string();
    let a = apply(&s, "api.openai.test", true, &mut target, &mut h).expect("allowed");
    assert_eq!(a.used, vec!["OPENAI".to_string()]);
    assert_eq!(h["authorization"], "Bearer VALUE-of-OPENAI");
    assert!(h["authorization"].is_sensitive());
}

#[test]
fn a_placeholder_for_another_host_is_refused_and_nothing_changes() {
    let s = [secret("A", &["a.test"]), secret("B", &["b.test"])];
    // B's placeholder on a request to a.test: refused, even though A's
    // would have gone in.
    let mut h = headers(&[
        ("x-a", "paddock_secret_A_0123456789abcdef"),
        ("x-b", "paddock_secret_B_0123456789abcdef"),
    ]);
    let mut target = "/".to_string();
    let Err(Refusal::Misuse(m)) = apply(&s, "a.test", true, &mut target, &mut h) else {
        panic!("not refused as misuse")
    };
    assert_eq!(m.secret, "B");
    assert!(m.why.contains("not one of its hosts"), "{}", m.why);
    assert_eq!(h["x-a"], "paddock_secret_A_0123456789abcdef");
    // In the target too.
    let mut h = headers(&[]);
    let mut target = "/?k=paddock_secret_B_0123456789abcdef".to_string();
    assert!(apply(&s, "a.test", true, &mut target, &mut h).is_err());
}

#[test]
fn plain_http_gets_nothing_unless_the_secret_allows_it() {
    let mut s = [secret("A", &["a.test"])];
    let mut h = headers(&[("authorization", "paddock_secret_A_0123456789abcdef")]);
    let mut target = "/".to_string();
    let Err(Refusal::Misuse(m)) = apply(&s, "a.test", false, &mut target, &mut h) else {
        panic!("not refused as misuse")
    };
    assert!(m.why.contains("over HTTPS only"), "{}", m.why);
    s[0].allow_plain_http = true;
    let a = apply(&s, "a.test", false, &mut target, &mut h).expect("allowed");
    assert_eq!(a.used, vec!["A".to_string()]);
    assert_eq!(h["authorization"], "VALUE-of-A");
}

#[test]
fn a_header_secret_is_set_on_every_request_to_its_hosts() {
    let mut s = secret("GH", &["api.github.test"]);
    s.header = Some("Authorization".into());
    s.format = "token {}".into();
    let s = [s];
    // Whatever the client sent there is replaced.
    let mut h = headers(&[("authorization", "token forged")]);
    let mut target = "/user".to_string();
    let a = apply(&s, "api.github.test", true, &mut target, &mut h).expect("ok");
    assert_eq!(a.used, vec!["GH".to_string()]);
    assert_eq!(h.get_all("authorization").iter().count(), 1);
    assert_eq!(h["authorization"], "token VALUE-of-GH");
    // Not to another host, and nothing is refused there without a
    // placeholder.
    let mut h = headers(&[]);
    let a = apply(&s, "other.test", true, &mut target, &mut h).expect("ok");
    assert!(a.used.is_empty() && h.is_empty());
}

#[test]
fn query_and_body_only_when_asked_for() {
    let mut s = secret("K", &["maps.test"]);
    let mut target = "/geo?key=paddock_secret_K_0123456789abcdef&q=1".to_string();
    let mut h = headers(&[]);
    let a = apply(
        std::slice::from_ref(&s),
        "maps.test",
        true,
        &mut target,
        &mut h,
    )
    .expect("ok");
    // Headers only by default: the query keeps the placeholder.
    assert!(a.used.is_empty());
    assert!(target.contains("paddock_secret_K"));
    s.value = SecretValue::new("a&b=c d".into());
    s.replace_in = vec![SecretPlace::Query, SecretPlace::Body];
    let s = [s];
    let a = apply(&s, "maps.test", true, &mut target, &mut h).expect("ok");
    assert_eq!(target, "/geo?key=a%26b%3Dc%20d&q=1");
    assert_eq!(a.in_body, vec![0]);
    let mut body = b"{\"key\":\"paddock_secret_K_0123456789abcdef\"}".to_vec();
    assert_eq!(
        replace_in_body(&s, &a.in_body, &mut body, 1 << 20),
        Some(true)
    );
    assert_eq!(body, b"{\"key\":\"a&b=c d\"}");
}

#[test]
fn values_are_scrubbed_from_answers_even_across_chunks() {
    let s = [secret("A", &["a.test"]), secret("LONGER", &["a.test"])];
    let mut h = headers(&[("x-echo", "got VALUE-of-A here")]);
    scrub_headers(&s, &mut h);
    assert_eq!(h["x-echo"], "got paddock_secret_A_0123456789abcdef here");
    let text = b"head VALUE-of-A middle VALUE-of-LONGER tail VALUE-of-A".to_vec();
    // Every split point, in chunks of every size.
    for size in 1..text.len() {
        let mut sc = Scrubber::new(&s);
        let mut out = Vec::new();
        for chunk in text.chunks(size) {
            out.extend(sc.feed(chunk));
        }
        out.extend(sc.finish());
        let out = String::from_utf8(out).expect("utf8");
        assert!(!out.contains("VALUE-of"), "chunk {size}: {out}");
        assert_eq!(out.matches("paddock_secret_").count(), 3, "{out}");
    }
}

#[test]
fn the_placeholder_scan_finds_any_secrets_placeholder() {
    let s = [secret("A", &["a.test"]), secret("B", &["b.test"])];
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX: paddock_secret_B_0123456789abcdef\r\n\r\n";
    assert_eq!(placeholder_in(&s, head).map(|s| s.name.as_str()), Some("B"));
    assert!(placeholder_in(&s, b"GET / HTTP/1.1\r\n\r\n").is_none());
}

#[test]
fn growth_is_refused_before_anything_grows() {
    let mut s = secret("BIG", &["a.test"]);
    s.value = SecretValue::new("v".repeat(4096));
    s.replace_in = vec![SecretPlace::Headers, SecretPlace::Body];
    let s = [s];
    // 40 placeholders in a header: 2 KiB sent, 160 KiB with the value in.
    let many = s[0].placeholder.repeat(40);
    let mut h = headers(&[("x-many", &many)]);
    let mut target = "/".to_string();
    assert_eq!(
        apply(&s, "a.test", true, &mut target, &mut h),
        Err(Refusal::TooLarge)
    );
    assert_eq!(h["x-many"], many.as_str(), "nothing replaced");
    let mut body = s[0].placeholder.repeat(300).into_bytes();
    let before = body.clone();
    assert_eq!(replace_in_body(&s, &[0], &mut body, 1 << 20), None);
    assert_eq!(body, before);
}

#[test]
fn encoded_forms_of_a_value_are_scrubbed_too() {
    let mut s = secret("Q", &["a.test"]);
    s.value = SecretValue::new("sk/live+q=1&x\"y".into());
    let s = [s];
    for echoed in [
        "sk/live+q=1&x\"y",
        "sk%2Flive%2Bq%3D1%26x%22y",
        "sk/live+q=1&x\\\"y",
        "sk\\/live+q=1&x\\\"y",
    ] {
        let mut sc = Scrubber::new(&s);
        let mut out = sc.feed(format!("[{echoed}]").as_bytes());
        out.extend(sc.finish());
        let out = String::from_utf8(out).expect("utf8");
        assert_eq!(out, format!("[{}]", s[0].placeholder), "{echoed}");
    }
}
