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

/// An RFC 3339 time from a request body, to whole seconds (a fraction is dropped).
pub fn parse_time(text: &str) -> Result<crate::timestamp::Timestamp, ApiError> {
    crate::timestamp::Timestamp::parse_rfc3339(&crate::condition::without_fraction(text.trim())).ok_or_else(|| {
        ApiError::bad_request(
            "time_invalid",
            format!("'{text}' is not an RFC 3339 UTC time such as 2026-11-24T16:00:00Z"),
        )
    })
}

/// A route's three forms, one per kind of resource (`/api/projects/{project}…`,
/// `/api/folders/{folder}…`, `/api/organizations/{organization}…`), each to `handler` with its
/// kind ([`crate::entitlement::PROJECTS`], …): `common::resource_routes!(post "/roles/request"
/// => request)`.
#[macro_export]
macro_rules! resource_routes {
    (get $suffix:literal => $handler:ident) => {
        $crate::resource_routes!(@ "GET", get, $suffix, $handler)
    };
    (post $suffix:literal => $handler:ident) => {
        $crate::resource_routes!(@ "POST", post, $suffix, $handler)
    };
    (@ $method:literal, $routing:ident, $suffix:literal, $handler:ident) => {
        [
            (
                $method,
                concat!("/api/projects/{project}", $suffix),
                ::axum::routing::$routing($handler::<{ $crate::entitlement::PROJECTS }>),
            ),
            (
                $method,
                concat!("/api/folders/{folder}", $suffix),
                ::axum::routing::$routing($handler::<{ $crate::entitlement::FOLDERS }>),
            ),
            (
                $method,
                concat!("/api/organizations/{organization}", $suffix),
                ::axum::routing::$routing($handler::<{ $crate::entitlement::ORGANIZATIONS }>),
            ),
        ]
    };
}
