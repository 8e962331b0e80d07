//! A bare axum "hello world" on `$PORT`: what any Rust function on Cloud Run costs at least.
//! `scripts/perf` measures every function against it.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let app = Router::new()
        .route("/health/alive", get(|| async { "{\"healthy\":true}" }))
        .route("/health/ready", get(|| async { "{\"healthy\":true}" }))
        .route("/hello", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    axum::serve(listener, app).await
}
