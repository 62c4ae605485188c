//! The secret broker's decisions on a request a guest shaped (target and
//! header values it chose, on a TLS or plain connection, for one host or
//! another), and its scrubbing of answers split anywhere. Whatever the
//! input: no panic; a request that may go carries no placeholder of a
//! secret that may not go there, and no value of one; an answer that
//! went through the scrubber holds no value.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use paddock_api_types::SecretPlace;
use paddock_net_services::broker::rules::{apply, Scrubber};
use paddock_net_services::broker::{Brokered, SecretValue};

fn secrets() -> Vec<Brokered> {
    let one = |name: &str, host: &str, value: &str, places: Vec<SecretPlace>, header| Brokered {
        name: name.into(),
        placeholder: format!("paddock_secret_{name}"),
        value: SecretValue::new(value.into()),
        hosts: vec![host.into()],
        header,
        format: "x {}".into(),
        replace_in: places,
        allow_plain_http: name == "B",
        upstream_ca: None,
    };
    vec![
        one("A", "a.test", "VALUE/a+1&=\"", vec![SecretPlace::Headers, SecretPlace::Query], None),
        one("B", "b.test", "VALUE-b-22222", vec![SecretPlace::Headers], Some("x-b".into())),
    ]
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let s = secrets();
    let host = if flags & 1 == 0 { "a.test" } else { "b.test" };
    let tls = flags & 2 == 0;
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split('\n');
    let mut target = parts.next().unwrap_or("/").to_string();
    let mut headers = HeaderMap::new();
    for (i, line) in parts.take(16).enumerate() {
        if let Ok(v) = HeaderValue::from_str(line) {
            if let Ok(n) = HeaderName::from_bytes(format!("h{i}").as_bytes()) {
                headers.append(n, v);
            }
        }
    }
    let holds = |target: &str, headers: &HeaderMap, needle: &str| {
        target.contains(needle)
            || headers
                .values()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(needle))
    };
    // A value the guest wrote itself it knew already: only what the
    // broker put in counts.
    let had: Vec<bool> = s
        .iter()
        .map(|x| holds(&target, &headers, x.value.expose()))
        .collect();
    if apply(&s, host, tls, &mut target, &mut headers).is_ok() {
        for (other, had) in s.iter().zip(had) {
            if other.goes_to(host, tls) {
                continue;
            }
            assert!(
                !holds(&target, &headers, &other.placeholder),
                "secret {}'s placeholder went where it may not",
                other.name
            );
            assert!(
                had || !holds(&target, &headers, other.value.expose()),
                "secret {}'s value went where it may not",
                other.name
            );
        }
    }
    // The scrubber: the input with the values spliced in, cut where the
    // flags say.
    let mut answer = rest.to_vec();
    answer.extend_from_slice(b"VALUE/a+1&=\"");
    answer.extend_from_slice(rest);
    answer.extend_from_slice(b"VALUE-b-22222");
    let step = usize::from(flags >> 2).max(1);
    let mut sc = Scrubber::new(&s);
    let mut out = Vec::new();
    for chunk in answer.chunks(step) {
        out.extend(sc.feed(chunk));
    }
    out.extend(sc.finish());
    for v in ["VALUE/a+1&=\"", "VALUE-b-22222"] {
        assert!(
            !out.windows(v.len()).any(|w| w == v.as_bytes()),
            "a value survived scrubbing"
        );
    }
});
