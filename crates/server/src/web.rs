//! The call log's web page: `GET /` and its script and stylesheet under `/assets/`.
//!
//! The three files are compiled into the binary (`include_str!`), so the page needs no directory at
//! run time and always matches the API it was built with. They are plain HTML, CSS and JavaScript
//! with no build step and load nothing from anywhere else; the Content-Security-Policy holds the page
//! to that. The page itself is public — it holds no data — and asks for an API key before it calls
//! `/api`, which checks it.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// Only this origin's script, styles and API; recordings play from `blob:` URLs made of what the
/// API returned; no forms are submitted anywhere (the page handles them in script), and it cannot be
/// framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; media-src blob:; img-src 'self' data: blob:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page's routes; merge them into the app.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        // Revalidated on every load: a new binary must never run with an old script.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String, String, String) {
        let response = routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (content_type, cache) = (header(header::CONTENT_TYPE), header(header::CACHE_CONTROL));
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (
            status,
            content_type,
            cache,
            String::from_utf8(body.to_vec()).expect("utf-8"),
        )
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types_and_no_cache() {
        for (path, content_type, marker) in [
            ("/", "text/html; charset=utf-8", "<script src=\"assets/app.js\""),
            (
                "/assets/app.js",
                "text/javascript; charset=utf-8",
                "Authorization: `Bearer",
            ),
            ("/assets/style.css", "text/css; charset=utf-8", ".transcript"),
        ] {
            let (status, ty, cache, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(ty, content_type, "{path}");
            assert_eq!(cache, "no-cache", "{path}");
            assert!(body.contains(marker), "{path} lacks {marker:?}");
        }
        assert_eq!(get("/assets/missing.js").await.0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_loads_nothing_from_other_origins() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            for line in text.lines() {
                // The SVG namespace is a name, not something that is fetched.
                let line = line.replace("http://www.w3.org/2000/svg", "");
                for remote in ["http://", "https://", "src=\"//", "href=\"//", "url(", "@import"] {
                    assert!(!line.contains(remote), "{name}: {remote} in {line:?}");
                }
            }
        }
    }
}
