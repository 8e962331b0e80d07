//! The `mailer` function: turns activation events from a Pub/Sub push subscription into email.
//!
//! The function is its router; `main.rs` serves it with `common::runner`, and tests and the
//! local run mount the same router.

use axum::Router;
use common::http::ApiError;

/// This function's routes. Health routes and the platform layers come from the runner.
pub fn router() -> Router {
    Router::new().fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::not_found("route_not_found", "no such route in mailer")
}
