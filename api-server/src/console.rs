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

/// Only this origin's own files, no inline script or style, no framing,
/// nothing sent elsewhere: a page that injected markup still could not
/// run it or send what it read anywhere but this API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// The headers every console page is served with.
pub fn security_headers() -> Vec<(HeaderName, String)> {
    vec![
        (header::CONTENT_SECURITY_POLICY, CSP.to_string()),
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
    if req.method != "GET" && req.method != "HEAD" {
        return None;
    }
    let path = if req.path == "/index.html" {
        "/"
    } else {
        req.path.as_str()
    };
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    let mut headers = security_headers();
    headers.push((header::CONTENT_TYPE, asset.content_type.to_string()));
    // Not cached without asking: an update of the box changes them.
    headers.push((header::CACHE_CONTROL, "no-cache".to_string()));
    let body = if req.method == "HEAD" {
        Vec::new()
    } else {
        asset.body.to_vec()
    };
    Some((
        Head {
            status: 200,
            headers,
        },
        body,
    ))
}

/// Bytes the console's files take, for the record (docs/console.md).
pub fn shipped_bytes() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(method: &str, path: &str) -> Option<(Head, Vec<u8>)> {
        page(&Request::from_head(method, path, std::iter::empty(), false).expect("request"))
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
