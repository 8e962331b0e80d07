//! The `approve` function: reviewers decide on peer-approval requests, extensions are
//! approved, and grants are revoked. Every route is a door to the request's one path
//! (`common::door`); this crate holds only the routes and their wire shapes.
//!
//! - `GET /api/requests/{id}`: the request, its true state, approvals so far and needed, the
//!   timeline and what the viewer may do; to its parties and administrators only.
//! - `POST /api/requests/{id}/approve` (`{"reason", "endTime"}`: a reason where the approval
//!   policy asks for one; `endTime` shortens the window while the request awaits approval),
//!   `/deny` (reason required), `/approve-extension` (`{"endTime", "reason"}`: the extension's
//!   end, named explicitly, at most what was asked) and `/revoke` (reason required; an
//!   approver of the grant or an administrator; a revocation is taken at any time while the
//!   grant is live, long after the request's own deadline).
//! - Emergency access (break glass), after the fact: `POST /api/requests/{id}/ratify`
//!   (`{"reason"}`, where the approval policy asks approvers for one) and `/reject` (reason
//!   required; revokes a live grant at once), by its reviewers (and, to reject, an
//!   administrator), until its review deadline.
//! - The reference app's `GET`/`POST /api/activation-request?activation=TOKEN` keep working:
//!   the token names the request, and approves only the original request, before it expires.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{MethodRouter, get, post};
use common::door::{Door, Outcome};
use common::email::Email;
use common::gcp::GcpError;
use common::http::audit;
use common::http::wire::{ActivationResponse, RequestJson};
use common::http::{ApiError, ApiJson, ApiQuery, IapUser, IapVerifier, Routes, api_router};
use common::rules::Action;
use common::timestamp::Timestamp;
use common::token::ActivationRequest;
use serde::Deserialize;

/// The settings this function reads: every section of the shared configuration.
pub use common::config::Config;

#[derive(Debug, Clone)]
pub struct AppState {
    iap: IapVerifier,
    door: Door,
}

impl AppState {
    pub async fn new(config: Config) -> Result<AppState, GcpError> {
        let iap = IapVerifier::from_settings(&config.backend, &config.iap);
        let door = Door::new(Arc::new(config), None).await?;
        Ok(AppState { iap, door })
    }
}

common::function!("approve", iap = iap);

pub fn routes() -> Routes<AppState> {
    vec![
        ("GET", "/api/activation-request", get(introspect)),
        ("POST", "/api/activation-request", post(approve_by_token)),
        ("GET", "/api/requests/{id}", get(view)),
        ("POST", "/api/requests/{id}/approve", post(approve)),
        ("POST", "/api/requests/{id}/deny", reasoned(|reason| Action::Deny { reason }, "api.denyRole")),
        ("POST", "/api/requests/{id}/approve-extension", post(approve_extension)),
        ("POST", "/api/requests/{id}/revoke", reasoned(|reason| Action::Revoke { reason }, "api.revokeRole")),
        ("POST", "/api/requests/{id}/ratify", reasoned(|reason| Action::Ratify { reason }, "api.ratifyRole")),
        ("POST", "/api/requests/{id}/reject", reasoned(|reason| Action::Reject { reason }, "api.rejectRole")),
    ]
}

pub fn router(state: AppState) -> Router {
    api_router("approve", routes()).with_state(state)
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    activation: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApproveBody {
    #[serde(default)]
    reason: String,
    /// RFC 3339: the approver shortens the window to end then (never lengthens it).
    #[serde(default)]
    end_time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApproveExtensionBody {
    #[serde(default)]
    reason: String,
    /// RFC 3339: the end the approver approves, at most the one asked for.
    end_time: String,
}

/// An RFC 3339 time from a body, to whole seconds.
pub fn parse_time(text: &str) -> Result<i64, ApiError> {
    common::http::parse_time(text).map(|t| t.unix_seconds())
}

async fn view(
    State(state): State<AppState>,
    caller: IapUser,
    Path(id): Path<String>,
) -> Result<Json<RequestJson>, ApiError> {
    Ok(Json(state.door.view(caller.email(), &id).await?.json()))
}

async fn introspect(
    State(state): State<AppState>,
    caller: IapUser,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (request, outcome) = state.door.view_token(caller.email(), &query.activation).await?;
    Ok(Json(legacy(&request, caller.email(), &outcome)))
}

/// The reference app's answer, with the ledger's view of the request under `request`.
fn legacy(request: &ActivationRequest, caller: &Email, outcome: &Outcome) -> serde_json::Value {
    let view = outcome.json();
    let status: &'static str = match view.state {
        "ACTIVE" | "SCHEDULED" | "EXTENDING" => "ACTIVE",
        "APPROVAL_AWAITED" | "ACTIVATING" => "ACTIVATION_PENDING",
        "EXPIRED" => "EXPIRED",
        _ => "CLOSED",
    };
    let mut answer = serde_json::to_value(ActivationResponse::request(request, caller, status, Timestamp::now()))
        .unwrap_or_default();
    if let Some(entitlement) = answer["entitlements"].get_mut(0) {
        // The granted window: narrowed or extended since the token was signed.
        entitlement["endTime"] = serde_json::json!(view.end_time);
    }
    answer["state"] = serde_json::json!(view.state);
    if let Some(message) = &view.message {
        answer["message"] = serde_json::json!(message);
    }
    answer["request"] = serde_json::to_value(&view).unwrap_or_default();
    answer
}

async fn approve_by_token(
    State(state): State<AppState>,
    caller: IapUser,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let result = match state.door.approve_token(caller.email(), &query.activation).await {
        Ok((request, outcome)) => Ok((request, outcome)),
        // The reference app answered a repeated approval with success, and a request granted
        // already is no error to whoever clicks its link again: show it as it stands.
        Err(error) if matches!(error.code(), "already_approved" | "wrong_state") => {
            match state.door.view_token(caller.email(), &query.activation).await {
                Ok((request, mut outcome)) => {
                    outcome.message = Some(format!("Nothing changed: {}", error.message()));
                    Ok((request, outcome))
                }
                Err(_) => Err(error),
            }
        }
        Err(error) => Err(error),
    };
    let id = result.as_ref().ok().map(|(request, _)| request.id.clone()).unwrap_or_default();
    let answer = result.map(|(request, outcome)| legacy(&request, caller.email(), &outcome));
    audit::request_decision("api.approveRole", caller.email(), &id, &answer);
    answer.map(Json)
}

async fn approve(
    State(state): State<AppState>,
    caller: IapUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Json<RequestJson>, ApiError> {
    let end = body.end_time.as_deref().map(parse_time).transpose()?;
    decided(&state, &caller, &id, Action::Approve { reason: body.reason, end }, "api.approveRole").await
}

async fn approve_extension(
    State(state): State<AppState>,
    caller: IapUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproveExtensionBody>,
) -> Result<Json<RequestJson>, ApiError> {
    let end = parse_time(&body.end_time)?;
    let action = Action::ApproveExtension { reason: body.reason, end };
    decided(&state, &caller, &id, action, "api.approveExtension").await
}

/// A route whose body is only a reason (`{"reason"}`): the decision `action` makes of it,
/// audited as `event`.
fn reasoned(action: fn(String) -> Action, event: &'static str) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              caller: IapUser,
              Path(id): Path<String>,
              ApiJson(body): ApiJson<ReasonBody>| async move {
            decided(&state, &caller, &id, action(body.reason), event).await
        },
    )
}

/// A route's decision on request `id`, audited as `event`.
async fn decided(
    state: &AppState,
    caller: &IapUser,
    id: &str,
    action: Action,
    event: &'static str,
) -> Result<Json<RequestJson>, ApiError> {
    let result = state.door.act(caller.email(), id, action).await.map(|outcome| outcome.json());
    audit::request_decision(event, caller.email(), id, &result);
    result.map(Json)
}
