//! Extractors and middleware for the `/api/` surface: who is calling (a verified IAP
//! assertion, nothing else), the XSRF header, and JSON bodies and queries refused in our
//! error shape.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::email::Email;
use crate::gcp::jwks::JwksCache;
use crate::http::ApiError;
use crate::iap::{IAP_ASSERTION_HEADER, IapIdentity, VerifiedAssertions};
use crate::timestamp::Timestamp;

/// Verifies IAP assertions for one audience, with IAP's cached keys.
#[derive(Debug, Clone)]
pub struct IapVerifier {
    keys: Arc<JwksCache>,
    seen: Arc<VerifiedAssertions>,
    audience: Arc<str>,
}

/// Distinct assertions remembered: a few hundred bytes each, one per user for ten minutes.
const REMEMBERED_ASSERTIONS: usize = 1024;

impl IapVerifier {
    pub fn new(keys: Arc<JwksCache>, audience: &str) -> IapVerifier {
        IapVerifier {
            keys,
            seen: Arc::new(VerifiedAssertions::new(REMEMBERED_ASSERTIONS)),
            audience: Arc::from(audience),
        }
    }

    /// IAP's keys from `IAP_JWKS_URL`, for the configured audience, fetched with a client of
    /// the backend's timeouts: what every function behind IAP starts with.
    pub fn from_settings(backend: &crate::config::BackendSettings, iap: &crate::config::IapSettings) -> IapVerifier {
        IapVerifier::new(Arc::new(JwksCache::iap(JwksCache::http_client(backend), backend)), &iap.audience)
    }
}

/// The caller, as IAP vouches for them. A handler that takes this cannot run without a valid
/// assertion for our audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IapUser(pub IapIdentity);

impl IapUser {
    pub fn email(&self) -> &Email {
        &self.0.email
    }
}

impl<S> FromRequestParts<S> for IapUser
where
    IapVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<IapUser, ApiError> {
        let verifier = IapVerifier::from_ref(state);
        // Only the signed assertion counts; X-Goog-Authenticated-User-Email and the like are
        // ignored, since anything that reaches us without IAP could set them.
        let mut assertions = parts.headers.get_all(IAP_ASSERTION_HEADER).iter();
        let assertion = assertions.next().and_then(|value| value.to_str().ok()).ok_or_else(|| {
            ApiError::unauthenticated(
                "iap_assertion_missing",
                "Identity-Aware Proxy must be enabled for this application: the request has no IAP assertion",
            )
        })?;
        // IAP sends exactly one. Two mean something else added one: which to believe is not
        // ours to guess, so neither is.
        if assertions.next().is_some() {
            return Err(ApiError::unauthenticated(
                "iap_assertion_ambiguous",
                "the request carries more than one IAP assertion",
            ));
        }
        let identity =
            verifier.keys.verify_iap(&verifier.seen, assertion, &verifier.audience, Timestamp::now()).await?;
        tracing::Span::current().record("user", identity.email.as_str());
        Ok(IapUser(identity))
    }
}

/// Refuses `/api/` calls without `X-JITACCESS: 1`, as the reference app does: a browser does not
/// send a custom header on a cross-site form post or navigation, so a forged request from
/// another site cannot act for a signed-in user.
pub async fn require_xsrf_header(request: Request, next: Next) -> Response {
    let present = request.headers().get("x-jitaccess").is_some_and(|v| v.as_bytes() == b"1");
    if !present {
        return ApiError::bad_request("xsrf_header_missing", "Missing header: X-JITACCESS").into_response();
    }
    next.run(request).await
}

/// API answers are personal and short-lived: never cached by a browser or proxy.
pub async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `axum::Json` with refusals in our error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => ApiError::bad_request("body_invalid", error.body_text()),
        JsonRejection::JsonSyntaxError(error) => ApiError::bad_request("body_malformed", error.body_text()),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("content_type_invalid", "the body must be JSON, with Content-Type: application/json")
        }
        JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::payload_too_large(format!("the body is larger than {} bytes", crate::http::MAX_BODY_BYTES))
        }
        other => ApiError::bad_request("body_invalid", other.body_text()),
    }
}

/// `axum::extract::Query` with refusals in our error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ApiQuery<T>, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::bad_request("query_invalid", rejection.body_text())),
        }
    }
}
