//! One error type for every function, mapped to a status and a stable JSON body:
//!
//! ```json
//! {"error": {"code": "justification_invalid", "message": "…", "status": 400}, "message": "…"}
//! ```
//!
//! `code` names the refusal, so clients and security tests can tell refusals apart; the
//! top-level `message` keeps the reference app's `{"message"}` shape for existing scripts.
//! A 5xx says only that a backend failed; its cause is logged once (by the [`log_errors`]
//! middleware), never sent. A 429 the caller can wait out carries `Retry-After` (seconds).

use crate::gcp::GcpError;
use crate::gcp::jwks::Unverified;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::email::EmailError;
use crate::entitlement::EntitlementError;
use crate::iap::IapError;
use crate::justification::JustificationError;
use crate::jwt::JwtError;
use crate::rules::Refusal;
use crate::token::TokenError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For the log only.
    cause: Option<String>,
    /// Seconds, sent as `Retry-After`.
    retry_after: Option<u64>,
}

impl ApiError {
    /// 400: the request is malformed or breaks a rule the caller can fix.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no verifiable identity.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: the caller is known but not allowed.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// No request `id` in the ledger.
    pub fn request_not_found(id: &str) -> ApiError {
        ApiError::not_found("request_not_found", format!("there is no request {id}"))
    }

    /// 409: a concurrent change won; trying again may succeed.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
    }

    /// 429: a Google API quota is exhausted.
    pub fn quota(cause: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            "a Google Cloud quota is exhausted, try again in a minute",
        )
        .with_cause(cause)
    }

    /// 429: Policy Analyzer's daily quota is used up; the message names the fix.
    pub fn analysis_quota(cause: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "analysis_quota_exhausted",
            "Policy Analyzer's quota is used up: without Security Command Center Premium or Enterprise, Google allows 20 analysis queries a day per organization. An administrator can set RESOURCE_CATALOG=AssetInventory (the default), which needs none.",
        )
        .with_cause(cause)
    }

    /// 429: the caller's own budget of uncached Google reads for listings is spent (not a
    /// Google quota: nobody else is affected); `seconds` until a read is regained.
    pub fn read_budget(seconds: u64) -> ApiError {
        let wait = if seconds == 1 { "1 second".to_string() } else { format!("{seconds} seconds") };
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "listing_budget_exhausted",
            format!("you have looked up more than your share of Google Cloud in a short time: try again in {wait}"),
        );
        error.retry_after = Some(seconds);
        error
    }

    /// 502: a backend answered with an error we cannot pass on.
    pub fn backend(cause: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, "backend_failed", "a Google Cloud API call failed, see the logs")
            .with_cause(cause)
    }

    /// 503: a backend is unavailable or timed out.
    /// The function's clients could not be built; the process is exiting.
    pub fn not_started() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "function_not_started",
            "the function could not start, see its logs",
        )
    }

    pub fn unavailable(cause: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend_unavailable",
            "a Google Cloud API is unavailable, try again shortly",
        )
        .with_cause(cause)
    }

    pub fn with_cause(mut self, cause: impl Into<String>) -> ApiError {
        self.cause = Some(cause.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Seconds the caller should wait, for a refusal that passes.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), cause: None, retry_after: None }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl ApiError {
    /// The one log line of an error answer: a refusal at `info`, a failure (5xx, or a Google
    /// quota) at `error` with its cause, a throttle at `debug`. Written by [`log_errors`].
    fn log(&self) {
        if let Some(seconds) = self.retry_after {
            // One person's doing, not an outage, and possibly thousands a second: whoever
            // throttles says so once (the listing budget logs when a person's runs out).
            tracing::debug!(
                code = self.code,
                status = self.status.as_u16(),
                retry_after = seconds,
                "request throttled"
            );
        } else if self.status.is_server_error() || self.status == StatusCode::TOO_MANY_REQUESTS {
            tracing::error!(
                code = self.code,
                status = self.status.as_u16(),
                cause = self.cause.as_deref().unwrap_or(""),
                "request failed"
            );
        } else {
            tracing::info!(code = self.code, status = self.status.as_u16(), message = %self.message, "request refused");
        }
    }
}

/// The error an answer was made from, in the response's extensions until [`log_errors`]
/// writes its log line.
#[derive(Debug, Clone)]
struct Unlogged(ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.code, "message": self.message, "status": self.status.as_u16()},
            "message": self.message,
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(Unlogged(self));
        response
    }
}

/// The middleware that logs API errors, once each: the error an answer was made from, inside
/// the request's span (its method, route, trace and user). [`crate::runner::app`] puts it
/// around every function's router; a router served another way adds it with
/// `.layer(axum::middleware::map_response(log_errors))`.
pub async fn log_errors(mut response: Response) -> Response {
    if let Some(Unlogged(error)) = response.extensions_mut().remove::<Unlogged>() {
        error.log();
    }
    response
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let message = refusal.to_string();
        match refusal {
            Refusal::Entitlement(error) => error.into(),
            Refusal::Justification(error) => error.into(),
            Refusal::Duration { .. } => ApiError::bad_request("duration_invalid", message),
            Refusal::NoEntitlements => ApiError::bad_request("entitlements_missing", message),
            Refusal::TooManyRoles { .. } => ApiError::bad_request("too_many_roles", message),
            Refusal::ProjectMismatch(_) => ApiError::bad_request("project_mismatch", message),
            Refusal::ReviewerCount { .. } => ApiError::bad_request("reviewer_count", message),
            Refusal::SelfReview => ApiError::bad_request("self_review", message),
            Refusal::NotEligible(_) => ApiError::forbidden("not_eligible", message),
            Refusal::WrongActivationType { .. } => ApiError::forbidden("wrong_activation_type", message),
            Refusal::ReviewerNotEligible(_) => ApiError::forbidden("reviewer_not_eligible", message),
            Refusal::SelfApproval => ApiError::forbidden("self_approval", message),
            Refusal::NotAReviewer => ApiError::forbidden("not_a_reviewer", message),
            Refusal::NotInvolved => ApiError::forbidden("not_involved", message),
            Refusal::BeneficiaryNotEligible(_) => ApiError::forbidden("beneficiary_not_eligible", message),
            Refusal::ApproverNotEligible => ApiError::forbidden("approver_not_eligible", message),
            Refusal::WindowEnded(_) => ApiError::forbidden("window_ended", message),
            Refusal::StartInPast(_) => ApiError::bad_request("start_in_past", message),
            Refusal::StartTooFar { .. } => ApiError::bad_request("start_too_far", message),
            Refusal::TooFewEligibleApprovers { .. } => ApiError::forbidden("approvers_not_eligible", message),
            Refusal::TooManyOpen { .. } => ApiError::conflict("too_many_open", message),
            Refusal::TooFewReviewers { .. } => ApiError::bad_request("reviewer_count", message),
            Refusal::NotTheRequester => ApiError::forbidden("not_the_requester", message),
            Refusal::MayNotRevoke => ApiError::forbidden("may_not_revoke", message),
            Refusal::AlreadyApprovedByYou => ApiError::conflict("already_approved", message),
            Refusal::ReasonRequired => ApiError::bad_request("reason_required", message),
            Refusal::Lengthening => ApiError::bad_request("window_lengthened", message),
            Refusal::TooLateToNarrow(_) => ApiError::conflict("too_late_to_narrow", message),
            Refusal::NotLonger => ApiError::bad_request("extension_not_longer", message),
            Refusal::ExtensionPending => ApiError::conflict("extension_pending", message),
            Refusal::NoExtensionPending => ApiError::conflict("no_extension_pending", message),
            Refusal::ExtensionEnd => ApiError::bad_request("extension_end_invalid", message),
            Refusal::WrongState(_) => ApiError::conflict("wrong_state", message),
            Refusal::NoBreakGlass(_) => ApiError::forbidden("no_break_glass", message),
            Refusal::BreakGlassLimit { next, .. } => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "break_glass_limit", message);
                let wait = next.unix_seconds() - crate::timestamp::Timestamp::now().unix_seconds();
                error.retry_after = Some(wait.max(1) as u64);
                error
            }
            Refusal::NobodyToReview(_) => ApiError::forbidden("nobody_to_review", message),
            Refusal::BreakGlassReviewOnly => ApiError::conflict("break_glass_review_only", message),
            Refusal::NotBreakGlass => ApiError::conflict("not_break_glass", message),
            Refusal::SelfReviewOfBreakGlass => ApiError::forbidden("self_approval", message),
            Refusal::ReviewClosed(_) => ApiError::conflict("review_closed", message),
            Refusal::MayNotReject => ApiError::forbidden("may_not_reject", message),
        }
    }
}

impl From<JustificationError> for ApiError {
    fn from(error: JustificationError) -> ApiError {
        ApiError::bad_request("justification_invalid", error.to_string())
    }
}

impl From<EmailError> for ApiError {
    fn from(error: EmailError) -> ApiError {
        ApiError::bad_request("email_invalid", error.to_string())
    }
}

impl From<EntitlementError> for ApiError {
    fn from(error: EntitlementError) -> ApiError {
        ApiError::bad_request("entitlement_invalid", error.to_string())
    }
}

impl From<IapError> for ApiError {
    fn from(error: IapError) -> ApiError {
        ApiError::unauthenticated("iap_assertion_invalid", error.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> ApiError {
        match error {
            TokenError::Jwt(JwtError::Expired) => {
                ApiError::forbidden("token_expired", "the activation request has expired")
            }
            other => ApiError::forbidden("token_invalid", other.to_string()),
        }
    }
}

impl From<crate::token::SignError> for ApiError {
    fn from(error: crate::token::SignError) -> ApiError {
        if error.retryable { ApiError::unavailable(error.to_string()) } else { ApiError::backend(error.to_string()) }
    }
}

/// A key fetch that failed as a backend failure; a refusal as its own reason says.
impl<E> From<Unverified<E>> for ApiError
where
    ApiError: From<E>,
{
    fn from(error: Unverified<E>) -> ApiError {
        match error {
            Unverified::Keys(error) => error.into(),
            Unverified::Refused(reason) => reason.into(),
        }
    }
}

impl From<GcpError> for ApiError {
    fn from(error: GcpError) -> ApiError {
        let cause = error.to_string();
        match error {
            GcpError::NotFound(_) => {
                ApiError::not_found("resource_not_found", "the project or resource does not exist or is not accessible")
                    .with_cause(cause)
            }
            GcpError::Denied(_) => {
                ApiError::forbidden("backend_denied", "this app is not allowed to do that on the project, see the logs")
                    .with_cause(cause)
            }
            GcpError::InvalidArgument(_) => ApiError::backend(cause),
            GcpError::Conflict(_) => ApiError::conflict(
                "concurrent_modification",
                "the project's IAM policy kept changing while we tried to update it; try again",
            )
            .with_cause(cause),
            GcpError::FailedPrecondition(_) => ApiError::backend(cause),
            GcpError::RateLimited(_) => ApiError::quota(cause),
            GcpError::AnalysisQuota(_) => ApiError::analysis_quota(cause),
            GcpError::Unavailable(_) => ApiError::unavailable(cause),
            GcpError::ReadBudget(seconds) => ApiError::read_budget(seconds),
            GcpError::Other(_) => ApiError::backend(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn refusals_carry_code_and_message_in_both_shapes() {
        let (status, body) = body_of(ApiError::forbidden("not_a_reviewer", "you are not a reviewer")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "not_a_reviewer");
        assert_eq!(body["error"]["message"], "you are not a reviewer");
        assert_eq!(body["message"], "you are not a reviewer");
    }

    #[tokio::test]
    async fn server_errors_never_reveal_their_cause() {
        let (status, body) = body_of(ApiError::backend("token=secret-value at line 3")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(!body.to_string().contains("secret-value"), "{body}");
        let (status, _) = body_of(ApiError::quota("quota")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn a_spent_listing_budget_says_when_to_try_again_in_the_header_and_the_message() {
        let response = ApiError::read_budget(12).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("12"));
        let (_, body) = body_of(ApiError::read_budget(12)).await;
        assert_eq!(body["error"]["code"], "listing_budget_exhausted");
        assert!(body["message"].as_str().is_some_and(|m| m.ends_with("try again in 12 seconds")), "{body}");
        let (_, body) = body_of(ApiError::read_budget(1)).await;
        assert!(body["message"].as_str().is_some_and(|m| m.ends_with("in 1 second")), "{body}");
        let google = ApiError::quota("quota").into_response();
        assert!(google.headers().get("retry-after").is_none(), "Google's quota names no time");
    }

    #[test]
    fn domain_errors_are_client_errors() {
        let checks: Vec<(ApiError, u16)> = vec![
            (JustificationError::TooLong.into(), 400),
            (crate::email::Email::parse("x").expect_err("invalid").into(), 400),
            (EntitlementError::Id("x".into()).into(), 400),
            (IapError::Email.into(), 401),
            (TokenError::Jwt(JwtError::Signature).into(), 403),
            (TokenError::Jwt(JwtError::Expired).into(), 403),
        ];
        for (error, status) in checks {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }
}
