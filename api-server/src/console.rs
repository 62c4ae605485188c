//! The web console's pages: built into the binary (the box may have no
//! internet, and nothing is fetched from another origin), served without a
//! token under `/`, beside the API under `/v1`. What the pages then do,
//! they do through the API with a session (crate::sessions), so they can
//! do no more than the token signed in with.
//!
//! The files are console/dist, built from console/src by `just console`
//! and checked against their sources by `just console-check`.

use crate::bridge::Head;
use crate::http::Request;
use ::http::header::{self, HeaderName};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../console/dist/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/dist/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/dist/app.css"),
    },
    Asset {
        path: "/assets/icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../console/dist/icon.svg"),
    },
];

/// Only this origin's own files, no inline script, no framing, nothing
/// sent elsewhere: a page that injected markup still could not run it or
/// send what it read anywhere but this API. Style elements only with the
/// page's nonce: the terminal library adds its own (console/src/nonce.ts).
pub fn csp(style_nonce: Option<&str>) -> String {
    let style = match style_nonce {
        Some(n) => format!("style-src 'self' 'nonce-{n}'"),
        None => "style-src 'self'".to_string(),
    };
    format!(
        "default-src 'none'; script-src 'self'; {style}; img-src 'self' data:; \
         font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// Where index.html carries the nonce for the page's code to read.
const NONCE_PLACEHOLDER: &str = "PADDOCK_STYLE_NONCE";

/// The headers every console page is served with.
pub fn security_headers(style_nonce: Option<&str>) -> Vec<(HeaderName, String)> {
    vec![
        (header::CONTENT_SECURITY_POLICY, csp(style_nonce)),
        (header::X_FRAME_OPTIONS, "DENY".to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (header::REFERRER_POLICY, "no-referrer".to_string()),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin".to_string(),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin".to_string(),
        ),
    ]
}

/// The page a request is for, if it is one: GET or HEAD of `/`,
/// `/index.html` or a built asset. Anything else (the API, E2B's paths) is
/// not the console's.
pub fn page(req: &Request) -> Option<(Head, Vec<u8>)> {
    // Never in the clear: a sign-in page over plain HTTP would have a
    // token typed into it and sent unencrypted (or its script swapped).
    if !req.tls || (req.method != "GET" && req.method != "HEAD") {
        return None;
    }
    let path = if req.path == "/index.html" {
        "/"
    } else {
        req.path.as_str()
    };
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    // The page itself gets a fresh nonce each time it is served.
    let (nonce, body) = if asset.path == "/" {
        let Ok(nonce) = crate::sessions::random_token() else {
            return Some(crate::http::json_answer(
                500,
                &crate::handling::json_error(500, "the system's random source failed").1,
            ));
        };
        let html = String::from_utf8_lossy(asset.body).replace(NONCE_PLACEHOLDER, &nonce);
        (Some(nonce), html.into_bytes())
    } else {
        (None, asset.body.to_vec())
    };
    let mut headers = security_headers(nonce.as_deref());
    headers.push((header::CONTENT_TYPE, asset.content_type.to_string()));
    // Never from a cache: the page's nonce is new each time, and an update
    // of the box changes the files.
    headers.push((header::CACHE_CONTROL, "no-store".to_string()));
    let body = if req.method == "HEAD" {
        Vec::new()
    } else {
        body
    };
    Some((
        Head {
            status: 200,
            headers,
        },
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(method: &str, path: &str) -> Option<(Head, Vec<u8>)> {
        let mut r = Request::from_head(method, path, std::iter::empty(), false).expect("request");
        r.tls = true;
        page(&r)
    }

    #[test]
    fn no_page_is_served_in_the_clear() {
        let r = Request::from_head("GET", "/", std::iter::empty(), false).expect("request");
        assert!(page(&r).is_none());
    }

    fn header<'a>(head: &'a Head, name: &HeaderName) -> Option<&'a str> {
        head.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_pages_are_served_with_a_strict_policy() {
        for path in [
            "/",
            "/index.html",
            "/assets/app.js",
            "/assets/app.css",
            "/assets/icon.svg",
        ] {
            let (head, body) = get("GET", path).expect(path);
            assert_eq!(head.status, 200);
            assert!(!body.is_empty(), "{path}");
            let csp = header(&head, &header::CONTENT_SECURITY_POLICY).expect("CSP");
            assert!(csp.contains("script-src 'self'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(header(&head, &header::X_FRAME_OPTIONS), Some("DENY"));
            assert_eq!(
                header(&head, &header::X_CONTENT_TYPE_OPTIONS),
                Some("nosniff")
            );
            assert!(header(&head, &header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        }
        let (head, body) = get("HEAD", "/").expect("HEAD");
        assert_eq!(head.status, 200);
        assert!(body.is_empty());
    }

    #[test]
    fn the_page_s_style_nonce_is_new_each_time_and_matches_its_policy() {
        let nonce_of = || {
            let (head, body) = get("GET", "/").expect("index");
            let csp = header(&head, &header::CONTENT_SECURITY_POLICY)
                .expect("CSP")
                .to_string();
            let html = String::from_utf8(body).expect("utf-8");
            let n = csp
                .split("'nonce-")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .expect("a nonce in the policy")
                .to_string();
            assert!(
                html.contains(&format!(
                    r#"<meta name="paddock-style-nonce" content="{n}">"#
                )),
                "{html}"
            );
            assert!(!html.contains(NONCE_PLACEHOLDER));
            n
        };
        let (a, b) = (nonce_of(), nonce_of());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let (head, _) = get("GET", "/assets/app.js").expect("asset");
        assert!(!header(&head, &header::CONTENT_SECURITY_POLICY)
            .expect("CSP")
            .contains("nonce"));
    }

    #[test]
    fn only_the_console_s_own_files_are_pages() {
        for (method, path) in [
            ("POST", "/"),
            ("GET", "/v1/health"),
            ("GET", "/assets/../Cargo.toml"),
            ("GET", "/assets/"),
            ("GET", "/sandboxes"),
            ("GET", "/files"),
        ] {
            assert!(get(method, path).is_none(), "{method} {path}");
        }
    }

    #[test]
    fn the_index_loads_no_inline_script_or_style() {
        let (_, body) = get("GET", "/").expect("index");
        let html = String::from_utf8(body).expect("utf-8");
        assert!(
            html.contains(r#"<script type="module" src="/assets/app.js"></script>"#),
            "{html}"
        );
        assert!(!html.contains("<style"), "{html}");
        assert!(!html.contains(" style="), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no other origin: {html}"
        );
    }
}
