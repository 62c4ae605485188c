//! What the broker does to one request, decided without I/O: where a
//! secret goes in, and when a request must not go at all.
//!
//! A secret goes in only on a connection whose name (SNI, or Host on
//! plain HTTP) is one of the secret's hosts, whose every request names
//! that same host (checked by `intercept` before this), and which the
//! proxy opened to what *our* resolver says that name is. A placeholder
//! found on a request to any other host, or over plain HTTP to a secret
//! that does not allow it, stops the request: it is refused and reported
//! as misuse, never sent on.

use super::Brokered;
use http::{HeaderMap, HeaderName, HeaderValue};
use paddock_api_types::SecretPlace;

/// What was done to a request that may go on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Names of the secrets put into it.
    pub used: Vec<String>,
    /// Indexes (into the secrets) whose placeholder is to be replaced in
    /// the body as well.
    pub in_body: Vec<usize>,
}

/// The longest request head (target and headers) with secrets in.
pub const MAX_HEAD: usize = 64 * 1024;

/// Why a request may not go.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Misuse(Misuse),
    /// With its secrets in it would be over MAX_HEAD (a value may be 87
    /// times its placeholder: checked before anything grows).
    TooLarge,
}

/// A request refused for carrying a placeholder where it may not go.
#[derive(Debug, PartialEq, Eq)]
pub struct Misuse {
    pub secret: String,
    pub kind: super::events::Misuse,
    pub why: String,
}

/// Characters of a value escaped when it replaces a placeholder in a
/// query string (everything but the unreserved ones).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why `s`'s placeholder may not go to `host` this way.
pub fn misuse_why(s: &Brokered, host: &str, tls: bool) -> String {
    if s.hosts.iter().any(|h| h == host) && !tls {
        format!(
            "secret {}'s placeholder may go to {host} over HTTPS only",
            s.name
        )
    } else {
        format!(
            "secret {}'s placeholder was sent to {host}, which is not one of its hosts",
            s.name
        )
    }
}

/// Which kind of misuse sending `s`'s placeholder to `host` is.
pub fn misuse_kind(s: &Brokered, host: &str, tls: bool) -> super::events::Misuse {
    if s.hosts.iter().any(|h| h == host) && !tls {
        super::events::Misuse::PlainHttp
    } else {
        super::events::Misuse::OtherHost
    }
}

fn misuse(s: &Brokered, host: &str, tls: bool) -> Misuse {
    Misuse {
        secret: s.name.clone(),
        kind: misuse_kind(s, host, tls),
        why: misuse_why(s, host, tls),
    }
}

/// The first secret whose placeholder `text` holds.
pub fn placeholder_in<'a>(secrets: &'a [Brokered], text: &[u8]) -> Option<&'a Brokered> {
    secrets.iter().find(|s| {
        let p = s.placeholder.as_bytes();
        !p.is_empty() && text.windows(p.len()).any(|w| w == p)
    })
}

/// Applies the secrets to a request for `host` (lower case) on a TLS
/// connection or not: `target` is its path and query, `headers` its
/// headers, both changed in place.
pub fn apply(
    secrets: &[Brokered],
    host: &str,
    tls: bool,
    target: &mut String,
    headers: &mut HeaderMap,
) -> Result<Applied, Refusal> {
    // Refusals first, so nothing is changed on a request that will not go.
    for s in secrets.iter().filter(|s| !s.goes_to(host, tls)) {
        let in_target = target.contains(&s.placeholder);
        let in_headers = headers
            .values()
            .any(|v| placeholder_in(std::slice::from_ref(s), v.as_bytes()).is_some());
        if in_target || in_headers {
            return Err(Refusal::Misuse(misuse(s, host, tls)));
        }
    }
    let mut size = target.len()
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    for s in secrets.iter().filter(|s| s.goes_to(host, tls)) {
        let grows = s.value.expose().len().saturating_sub(s.placeholder.len());
        let mut found = 0;
        if s.replace_in.contains(&SecretPlace::Headers) {
            found += headers
                .values()
                .map(|v| occurrences(v.as_bytes(), s.placeholder.as_bytes()))
                .sum::<usize>();
        }
        if s.replace_in.contains(&SecretPlace::Query) {
            // Percent-encoded, a value is at most three times as long.
            found += occurrences(target.as_bytes(), s.placeholder.as_bytes()) * 3;
        }
        if s.header.is_some() {
            found += 1;
        }
        size = size.saturating_add(found.saturating_mul(grows.saturating_add(s.format.len())));
    }
    if size > MAX_HEAD {
        return Err(Refusal::TooLarge);
    }
    let mut applied = Applied::default();
    for (i, s) in secrets.iter().enumerate() {
        if !s.goes_to(host, tls) {
            continue;
        }
        let mut used = false;
        if s.replace_in.contains(&SecretPlace::Headers) {
            used |= replace_in_headers(s, headers);
        }
        if s.replace_in.contains(&SecretPlace::Query) {
            if let Some((path, query)) = target.split_once('?') {
                if query.contains(&s.placeholder) {
                    let value: String =
                        percent_encoding::utf8_percent_encode(s.value.expose(), QUERY_VALUE)
                            .collect();
                    *target = format!("{path}?{}", query.replace(&s.placeholder, &value));
                    used = true;
                }
            }
        }
        if let Some(name) = &s.header {
            // Checked when the secret was set; a bad one is skipped.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&s.formatted()),
            ) {
                let mut value = value;
                value.set_sensitive(true);
                headers.insert(name, value);
                used = true;
            }
        }
        if s.replace_in.contains(&SecretPlace::Body) {
            applied.in_body.push(i);
        }
        if used {
            applied.used.push(s.name.clone());
        }
    }
    Ok(applied)
}

/// Replaces the placeholder in every header value; whether it found one.
fn replace_in_headers(s: &Brokered, headers: &mut HeaderMap) -> bool {
    let mut found = false;
    for value in headers.values_mut() {
        let Ok(text) = value.to_str() else { continue };
        if !text.contains(&s.placeholder) {
            continue;
        }
        if let Ok(mut new) = HeaderValue::from_str(&text.replace(&s.placeholder, s.value.expose()))
        {
            new.set_sensitive(true);
            *value = new;
            found = true;
        }
    }
    found
}

/// How many times `needle` occurs in `hay` (not overlapping).
fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    let (mut n, mut i) = (0, 0);
    while i + needle.len() <= hay.len() {
        if hay[i..].starts_with(needle) {
            n += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    n
}

/// Replaces the placeholders of `secrets[i]` for each `i` in `which` in a
/// body; whether any was there. Refused (None), before anything grows,
/// when the result would be over `max` bytes.
pub fn replace_in_body(
    secrets: &[Brokered],
    which: &[usize],
    body: &mut Vec<u8>,
    max: usize,
) -> Option<bool> {
    let mut size = body.len();
    for s in which.iter().filter_map(|&i| secrets.get(i)) {
        let grows = s.value.expose().len().saturating_sub(s.placeholder.len());
        size =
            size.saturating_add(occurrences(body, s.placeholder.as_bytes()).saturating_mul(grows));
    }
    if size > max {
        return None;
    }
    let mut found = false;
    for s in which.iter().filter_map(|&i| secrets.get(i)) {
        let p = s.placeholder.as_bytes();
        if p.is_empty() || !body.windows(p.len()).any(|w| w == p) {
            continue;
        }
        found = true;
        *body = replace_bytes(body, p, s.value.expose().as_bytes());
    }
    Some(found)
}

fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = memchr::memmem::find(rest, from).filter(|_| !from.is_empty()) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// What is scrubbed from answers, and what replaces it: each value as
/// it is and in the forms a host echoing it is likely to use (percent-
/// encoded, as the query replacement sends it; JSON-escaped).
fn needles(secrets: &[Brokered]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for s in secrets {
        let v = s.value.expose();
        if v.is_empty() {
            continue;
        }
        let placeholder = s.placeholder.as_bytes().to_vec();
        let encoded: String = percent_encoding::utf8_percent_encode(v, QUERY_VALUE).collect();
        let json = serde_json::to_string(v).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        let slashes = json.replace('/', "\\/");
        for form in [v.to_string(), encoded, json, slashes] {
            let form = form.into_bytes();
            if !form.is_empty() && !out.iter().any(|(f, _)| *f == form) {
                out.push((form, placeholder.clone()));
            }
        }
    }
    out
}

/// Puts the placeholder back wherever an answer header holds a value:
/// an endpoint that echoes what it was sent must not hand the value to
/// the workspace.
pub fn scrub_headers(secrets: &[Brokered], headers: &mut HeaderMap) {
    let needles = needles(secrets);
    for value in headers.values_mut() {
        let mut bytes = value.as_bytes().to_vec();
        let mut changed = false;
        for (v, placeholder) in &needles {
            if bytes.windows(v.len()).any(|w| w == v.as_slice()) {
                bytes = replace_bytes(&bytes, v, placeholder);
                changed = true;
            }
        }
        if changed {
            if let Ok(new) = HeaderValue::from_bytes(&bytes) {
                *value = new;
            }
        }
    }
}

/// Scrubs values out of a streamed answer body, chunk by chunk: a value
/// split across two chunks is found too, because the last bytes of each
/// chunk (one fewer than the longest value) wait for the next.
pub struct Scrubber {
    /// (value, placeholder)
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    keep: usize,
    tail: Vec<u8>,
}

impl Scrubber {
    pub fn new(secrets: &[Brokered]) -> Scrubber {
        let pairs = needles(secrets);
        let keep = pairs.iter().map(|(v, _)| v.len()).max().unwrap_or(1) - 1;
        Scrubber {
            pairs,
            keep,
            tail: Vec::new(),
        }
    }

    /// The bytes of `chunk` (and what waited before it) that can go on.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(chunk);
        for (value, placeholder) in &self.pairs {
            // memchr's search: this runs over every byte of every answer
            // on a brokered connection.
            if memchr::memmem::find(&buf, value).is_some() {
                buf = replace_bytes(&buf, value, placeholder);
            }
        }
        let cut = buf.len().saturating_sub(self.keep);
        self.tail = buf.split_off(cut);
        buf
    }

    /// What is left at the end.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tail)
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
