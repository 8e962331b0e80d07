//! The page people use, served from this function so that no other host (no CDN) is involved:
//! `GET /` and its two assets, under a strict Content-Security-Policy. The load balancer
//! routes `/` here; the page then calls the three functions' `/api/` routes on the same host.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../static/index.html");
const SCRIPT: &str = include_str!("../static/app.js");
const STYLE: &str = include_str!("../static/app.css");

/// Same-origin only: no inline script or style, no frames, no other hosts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX, "no-cache") }))
        .route("/static/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT, "no-cache") }))
        .route("/static/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE, "no-cache") }))
}

fn asset(content_type: &'static str, body: &'static str, cache: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}
