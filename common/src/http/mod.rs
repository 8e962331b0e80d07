//! The HTTP edge shared by the functions: the one error type, extractors for identity and
//! bodies, audit logging, and the JSON shapes of the API.

pub mod audit;
pub mod error;
pub mod extract;
pub mod push;
pub mod wire;

pub use error::{ApiError, log_errors};

/// Request bodies are small JSON documents; anything larger is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

use axum::Router;
use axum::middleware;
use axum::routing::MethodRouter;

/// A function's `/api/` routes: method (for the OpenAPI check), path, handler.
pub type Routes<S> = Vec<(&'static str, &'static str, MethodRouter<S>)>;

/// Assembles a function's router: its routes behind the XSRF check and `no-store`, and a
/// JSON 404 for anything else.
pub fn api_router<S: Clone + Send + Sync + 'static>(function: &'static str, routes: Routes<S>) -> Router<S> {
    let api = routes.into_iter().fold(Router::new(), |router, (_, path, handler)| router.route(path, handler));
    api.layer(middleware::from_fn(extract::require_xsrf_header))
        .layer(middleware::from_fn(extract::no_store))
        .fallback(move || async move { ApiError::not_found("route_not_found", format!("no such route in {function}")) })
}

/// A router for what Google calls (pushes, Chat): its routes as they are, no XSRF check (no
/// browser calls them), and a JSON 404 for anything else.
pub fn service_router<S: Clone + Send + Sync + 'static>(function: &'static str, routes: Routes<S>) -> Router<S> {
    routes
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| router.route(path, handler))
        .fallback(move || async move { ApiError::not_found("route_not_found", format!("no such route in {function}")) })
}
pub use extract::{ApiJson, ApiQuery, IapUser, IapVerifier};
