//! The `list-eligibility` function: lists a caller's eligible roles, the projects they can reach and the peers who may approve.
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
    ApiError::not_found("route_not_found", "no such route in list-eligibility")
}
