//! The floors of the performance figures, on `$PORT`: `/hello`, a bare axum "hello world"
//! (what any Rust function on Cloud Run costs at least), and `/call`, a handler that makes one
//! HTTP call to `FLOOR_CALL_URL` (the emulator, in `scripts/perf`) and returns its JSON: the
//! least a function that calls Google can do. `scripts/perf` measures every function against
//! both.

use std::sync::OnceLock;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Built on the first `/call`, so that `/hello`'s cold start stays a bare one.
static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

async fn call() -> Response {
    let Ok(url) = std::env::var("FLOOR_CALL_URL") else {
        return (StatusCode::NOT_FOUND, "FLOOR_CALL_URL is not set").into_response();
    };
    let client = CLIENT.get_or_init(reqwest::Client::new);
    match client.get(url).send().await {
        Ok(response) => match response.json::<serde_json::Value>().await {
            Ok(body) => axum::Json(body).into_response(),
            Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
        },
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let app = Router::new()
        .route("/health/alive", get(|| async { "{\"healthy\":true}" }))
        .route("/health/ready", get(|| async { "{\"healthy\":true}" }))
        .route("/hello", get(|| async { "hello" }))
        .route("/call", get(call));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    axum::serve(listener, app).await
}
