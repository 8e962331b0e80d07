//! The `approve` function: reviewers decide on peer-approval requests, and grants are revoked.
//! Every decision goes through the request ledger.
//!
//! - `GET /api/requests/{id}`: the request, its true state, approvals so far and needed, the
//!   timeline and what the viewer may do; to its parties and administrators only.
//! - `POST /api/requests/{id}/approve` (`{"reason"}`, required where the approval policy says),
//!   `/deny` (reason required) and `/revoke` (reason required; an approver of the grant or an
//!   administrator).
//! - The reference app's `GET`/`POST /api/activation-request?activation=TOKEN` keep working:
//!   the token names the request.
//!
//! An approval is checked like this: the token (the request's content) must verify; the caller
//! must be listed and not the beneficiary (refused before any backend call); then, from a
//! fresh catalog read, the beneficiary must still hold the entitlement and the caller still
//! may review it, the justification must still match the policy and the window must not have
//! ended. The approval is recorded; the approval that completes the quorum writes the binding.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::routing::{get, post};
use common::condition::ActivationType;
use common::config::ConfigError;
use common::email::Email;
use common::entitlement::Entitlement;
use common::event;
use common::gcp::GcpError;
use common::gcp::catalog::{AnyCatalog, Catalog as _};
use common::gcp::events::{publish_or_log, publisher_for};
use common::gcp::grants::{Completion, Grants, is_administrator};
use common::gcp::iam::IamWriter;
use common::gcp::jwks::JwksCache;
use common::gcp::ledger::{Ledger, Stored};
use common::http::audit::{self, Decision};
use common::http::wire::{ActivationResponse, RequestJson};
use common::http::{ApiError, ApiJson, ApiQuery, IapUser, IapVerifier, Routes, api_router};
use common::lifecycle::{Action, Effect, Entry, Record, Standing, State as RequestState, available_actions, decide};
use common::rules;
use common::timestamp::Timestamp;
use common::token::{ActivationRequest, from_url_form};
use serde::Deserialize;

/// The settings this function reads: every section of the shared configuration.
pub use common::config::Config;

pub fn config_from_env() -> Result<Config, ConfigError> {
    Config::from_process_env()
}

#[derive(Debug, Clone)]
pub struct AppState {
    config: Arc<Config>,
    iap: IapVerifier,
    token_keys: Arc<JwksCache>,
    catalog: AnyCatalog,
    grants: Grants,
}

impl FromRef<AppState> for IapVerifier {
    fn from_ref(state: &AppState) -> IapVerifier {
        state.iap.clone()
    }
}

impl AppState {
    pub async fn new(config: Config) -> Result<AppState, GcpError> {
        let http = JwksCache::http_client(&config.backend);
        let iap = IapVerifier::from_settings(http.clone(), &config.backend, &config.iap);
        let token_keys =
            Arc::new(JwksCache::service_account(http.clone(), &config.backend, &config.token.service_account));
        // Every decision here writes IAM or approves: no cached policies or memberships.
        let catalog = AnyCatalog::new(&config.backend, &config.scope.fresh()).await?;
        let ledger = Ledger::new(http, &config.ledger.endpoint, &config.ledger.database, config.ledger.retention_days)?;
        let grants = Grants {
            ledger,
            writer: IamWriter::new(&config.backend).await?,
            publisher: publisher_for(&config.backend, &config.notification).await?,
            base_url: config.notification.base_url.clone(),
        };
        Ok(AppState { config: Arc::new(config), iap, token_keys, catalog, grants })
    }
}

pub fn routes() -> Routes<AppState> {
    vec![
        ("GET", "/api/activation-request", get(introspect)),
        ("POST", "/api/activation-request", post(approve_by_token)),
        ("GET", "/api/requests/{id}", get(view)),
        ("POST", "/api/requests/{id}/approve", post(approve)),
        ("POST", "/api/requests/{id}/deny", post(deny)),
        ("POST", "/api/requests/{id}/revoke", post(revoke)),
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

/// An RFC 3339 time from a body, to whole seconds.
fn parse_time(text: &str) -> Result<i64, ApiError> {
    common::timestamp::Timestamp::parse_rfc3339(&common::condition::without_fraction(text.trim()))
        .map(|t| t.unix_seconds())
        .ok_or_else(|| {
            ApiError::bad_request(
                "time_invalid",
                format!("'{text}' is not an RFC 3339 UTC time such as 2026-11-24T16:00:00Z"),
            )
        })
}

async fn verified_token(state: &AppState, token_text: &str, now: Timestamp) -> Result<ActivationRequest, ApiError> {
    let token = from_url_form(token_text.trim());
    let verified = state.token_keys.verify_token(&token, &state.config.token.service_account, now).await?;
    Ok(verified?)
}

/// The request in the ledger, with its content taken from its verified token: a document
/// written by anyone else cannot invent or change a peer-approval request.
async fn load(state: &AppState, id: &str, now: Timestamp) -> Result<Loaded, ApiError> {
    let stored = state.grants.ledger.get(id).await?.ok_or_else(|| ApiError::request_not_found(id))?;
    checked(state, stored, now).await
}

/// A request as read from the ledger, and the verified token it was checked against.
type Loaded = (Stored, Option<ActivationRequest>);

/// `stored`, checked against its own token (see `load`).
async fn checked(state: &AppState, stored: Stored, now: Timestamp) -> Result<Loaded, ApiError> {
    let Some(token) = stored.record.token.clone() else {
        return Ok((stored, None));
    };
    let request = verified_token(state, &token, now).await?;
    if request.id != stored.record.id || !matches_token(&stored.record, &request) {
        return Err(ApiError::forbidden("token_invalid", "the request in the ledger does not match its token"));
    }
    Ok((stored, Some(request)))
}

fn matches_token(record: &Record, request: &ActivationRequest) -> bool {
    record.beneficiary == request.beneficiary
        && record.reviewers == request.reviewers
        && record.entitlements == [request.entitlement.to_string()]
        && record.start == request.window.start().unix_seconds()
        && record.end == request.window.end().unix_seconds()
        && record.request_expiry == request.expires.unix_seconds()
        && record.approvals_needed == request.approvals_needed
        && record.approver_reason_required == request.approver_reason_required
        && record.justification == request.justification
}

/// A ledger record for a verified token: how requests made before the ledger (or whose
/// record was lost) are picked up. The token is the whole request.
pub fn record_from_token(request: &ActivationRequest, token: &str) -> Record {
    Record {
        id: request.id.clone(),
        activation_type: ActivationType::Mpa,
        beneficiary: request.beneficiary.clone(),
        reviewers: request.reviewers.clone(),
        entitlements: vec![request.entitlement.to_string()],
        justification: request.justification.clone(),
        start: request.window.start().unix_seconds(),
        end: request.window.end().unix_seconds(),
        request_expiry: request.expires.unix_seconds(),
        approvals_needed: request.approvals_needed,
        approver_reason_required: request.approver_reason_required,
        token: Some(token.to_string()),
        timeline: vec![Entry::Requested {
            at: request.window.start().unix_seconds(),
            actor: request.beneficiary.clone(),
        }],
    }
}

/// A token's request in the ledger, checked, creating the record if the token predates it.
async fn of_token(state: &AppState, token_text: &str, now: Timestamp) -> Result<Loaded, ApiError> {
    let request = verified_token(state, token_text, now).await?;
    if let Some(stored) = state.grants.ledger.get(&request.id).await? {
        return checked(state, stored, now).await;
    }
    let record = record_from_token(&request, &from_url_form(token_text.trim()));
    match state.grants.ledger.create(&record).await {
        Ok(stored) => checked(state, stored, now).await,
        Err(GcpError::Conflict(_)) => load(state, &request.id, now).await,
        Err(other) => Err(other.into()),
    }
}

/// Whether `caller` is an administrator (`ADMINISTRATORS`, directly or through a group).
async fn administrator(state: &AppState, caller: &Email) -> Result<bool, ApiError> {
    let administrators = &state.config.approval.administrators;
    if administrators.is_empty() {
        return Ok(false);
    }
    if administrators.contains(&caller.iam_member()) {
        return Ok(true);
    }
    if !administrators.iter().any(|a| a.starts_with("group:")) {
        return Ok(false);
    }
    let groups = state.catalog.groups_of(caller).await?;
    Ok(is_administrator(administrators, caller, &groups))
}

/// Finishes what a crash left half-done, then answers with the request as `caller` sees it.
async fn view_of(
    state: &AppState,
    stored: Stored,
    caller: &Email,
    standing: Standing,
) -> Result<RequestJson, ApiError> {
    let now = Timestamp::now();
    let stored = match stored.record.state(now) {
        RequestState::Activating => state.grants.complete_activation(stored).await?.stored().clone(),
        _ => stored,
    };
    let actions = available_actions(&stored.record, caller, standing, now);
    Ok(RequestJson::new(&stored.record, now, actions))
}

async fn view(
    State(state): State<AppState>,
    caller: IapUser,
    Path(id): Path<String>,
) -> Result<Json<RequestJson>, ApiError> {
    let now = Timestamp::now();
    let (stored, _) = load(&state, &id, now).await?;
    let admin = administrator(&state, caller.email()).await?;
    if !stored.record.is_party(caller.email()) && !admin {
        return Err(rules::Refusal::NotInvolved.into());
    }
    // Buttons only: every action is checked again, afresh, when taken.
    let standing = Standing { may_review: stored.record.reviewers.contains(caller.email()), administrator: admin };
    Ok(Json(view_of(&state, stored, caller.email(), standing).await?))
}

async fn introspect(
    State(state): State<AppState>,
    caller: IapUser,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = Timestamp::now();
    let request = verified_token(&state, &query.activation, now).await?;
    rules::may_view(&request, caller.email())?;
    let (stored, _) = of_token(&state, &query.activation, now).await?;
    let standing = Standing { may_review: stored.record.reviewers.contains(caller.email()), administrator: false };
    let view = view_of(&state, stored, caller.email(), standing).await?;
    Ok(Json(legacy(&request, caller.email(), &view, now)))
}

/// The reference app's answer, with the ledger's view of the request under `request`.
fn legacy(request: &ActivationRequest, caller: &Email, view: &RequestJson, now: Timestamp) -> serde_json::Value {
    let status = match view.state {
        "ACTIVE" | "SCHEDULED" => "ACTIVE",
        "APPROVAL_AWAITED" | "ACTIVATING" => "ACTIVATION_PENDING",
        other => other,
    };
    let status: &'static str = match status {
        "ACTIVE" => "ACTIVE",
        "ACTIVATION_PENDING" => "ACTIVATION_PENDING",
        "EXPIRED" => "EXPIRED",
        _ => "CLOSED",
    };
    let mut answer =
        serde_json::to_value(ActivationResponse::request(request, caller, status, now)).unwrap_or_default();
    answer["state"] = serde_json::json!(view.state);
    answer["request"] = serde_json::to_value(view).unwrap_or_default();
    answer
}

async fn approve_by_token(
    State(state): State<AppState>,
    caller: IapUser,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = Timestamp::now();
    let request = verified_token(&state, &query.activation, now).await;
    let result = match &request {
        Ok(_) => match of_token(&state, &query.activation, now).await {
            Ok(loaded) => {
                let id = loaded.0.record.id.clone();
                let action = Action::Approve { reason: String::new(), end: None };
                match decide_and_act_on(&state, caller.email(), loaded, action).await.map(|d| (d.view, d.message)) {
                    // The reference app answered a repeated approval with success: so does its route.
                    Err(error) if error.code() == "already_approved" => {
                        let (stored, _) = load(&state, &id, now).await?;
                        let standing = Standing { may_review: true, administrator: false };
                        let view = view_of(&state, stored, caller.email(), standing).await?;
                        Ok((view, Some("You had approved this request already; nothing changed.".to_string())))
                    }
                    other => other,
                }
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error.clone()),
    };
    let result = match (result, &request) {
        (Ok((view, message)), Ok(request)) => {
            let mut answer = legacy(request, caller.email(), &view, now);
            if let Some(message) = message {
                answer["message"] = serde_json::json!(message);
            }
            Ok(answer)
        }
        (Err(error), _) => Err(error),
        (Ok(_), Err(error)) => Err(error.clone()),
    };
    audit_decision("api.approveRole", caller.email(), request.as_ref().ok().map(|r| r.id.as_str()), &result);
    result.map(Json)
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

async fn deny(
    State(state): State<AppState>,
    caller: IapUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<RequestJson>, ApiError> {
    decided(&state, &caller, &id, Action::Deny { reason: body.reason }, "api.denyRole").await
}

async fn revoke(
    State(state): State<AppState>,
    caller: IapUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<RequestJson>, ApiError> {
    decided(&state, &caller, &id, Action::Revoke { reason: body.reason }, "api.revokeRole").await
}

/// A route's decision on request `id`, audited as `event`.
async fn decided(
    state: &AppState,
    caller: &IapUser,
    id: &str,
    action: Action,
    event: &'static str,
) -> Result<Json<RequestJson>, ApiError> {
    let result = decide_and_act(state, caller.email(), id, action).await.map(|decided| decided.view);
    audit_decision(event, caller.email(), Some(id), &result);
    result.map(Json)
}

/// The audit entry of a reviewer's decision (`api.approveRole`, `chat.denyRole`, …).
pub fn audit_decision<T>(event: &'static str, caller: &Email, id: Option<&str>, result: &Result<T, ApiError>) {
    let decision =
        Decision { event, approver: caller.as_str(), activation_id: id.unwrap_or(""), ..Decision::default() };
    audit::record(&decision, result, "recorded");
}

/// Decides `action` by the caller on request `id`, records it, and carries it out: the
/// binding for the approval that completes the quorum, its removal for a revocation. Returns
/// the request as the caller now sees it, and a note for them.
pub async fn decide_and_act(state: &AppState, caller: &Email, id: &str, action: Action) -> Result<Decided, ApiError> {
    let loaded = load(state, id, Timestamp::now()).await?;
    decide_and_act_on(state, caller, loaded, action).await
}

/// A decision carried out: the request as written, as the caller now sees it, and a note.
#[derive(Debug, Clone)]
pub struct Decided {
    pub stored: Stored,
    pub view: RequestJson,
    pub message: Option<String>,
}

/// The request `id` as the ledger holds it, checked against its token.
pub async fn request(state: &AppState, id: &str) -> Result<Record, ApiError> {
    Ok(load(state, id, Timestamp::now()).await?.0.record)
}

/// The base URL links are built from.
pub fn base_url(state: &AppState) -> &str {
    &state.grants.base_url
}

/// `decide_and_act` on a request already read and checked.
async fn decide_and_act_on(
    state: &AppState,
    caller: &Email,
    (stored, request): Loaded,
    action: Action,
) -> Result<Decided, ApiError> {
    let now = Timestamp::now();
    let standing = standing(state, &stored.record, request.as_ref(), caller, &action, now).await?;
    // Decided on the record as it is when written: a write that lost a race decides again.
    let (written, entry, effect) = state
        .grants
        .ledger
        .record_decision::<ApiError>(stored.clone(), |record| {
            Ok(decide(record, caller, &action, standing, Timestamp::now())?)
        })
        .await?;
    let mut message = None;
    let stored = match effect {
        Effect::Activate => match state.grants.complete_activation(written).await? {
            Completion::Activated(stored) => {
                if let Some(request) = &request {
                    let approvers: Vec<&Email> = stored.record.approvers().into_iter().collect();
                    let event = event::activation_approved(request, caller, &approvers, &state.grants.base_url);
                    if publish_or_log(state.grants.publisher.as_ref(), &event).await.is_err() {
                        message = Some("Access granted. Notifying the requester failed; it was logged.".to_string());
                    }
                }
                stored
            }
            Completion::AlreadyDone(stored) => stored,
            Completion::Failed(stored) => stored,
        },
        Effect::RemoveBinding => {
            let reason =
                format!("{} by {caller}", if matches!(action, Action::Revoke { .. }) { "Revoked" } else { "Ended" });
            state.grants.remove_binding(&written.record, &reason).await?;
            state.grants.announce(&written.record, &entry).await;
            written
        }
        Effect::Extend => state.grants.complete_extension(written).await?,
        Effect::Nothing => {
            let late = matches!(stored.record.state(now), RequestState::Active | RequestState::Scheduled);
            if late && written.record.pending_extension().is_none() {
                message = Some(
                    "This request had already been approved; the access is active. Your approval is recorded.".into(),
                );
            } else {
                state.grants.announce(&written.record, &entry).await;
            }
            written
        }
    };
    let actions = available_actions(&stored.record, caller, standing, Timestamp::now());
    let view = RequestJson::new(&stored.record, Timestamp::now(), actions);
    Ok(Decided { stored, view, message })
}

/// What the caller may do, from a fresh read: approving and denying need the caller to be a
/// listed reviewer (checked before any backend call), still eligible to review, with the
/// beneficiary still eligible, the justification still valid and the window open; revoking
/// needs an approver of the grant or an administrator.
async fn standing(
    state: &AppState,
    record: &Record,
    request: Option<&ActivationRequest>,
    caller: &Email,
    action: &Action,
    now: Timestamp,
) -> Result<Standing, ApiError> {
    match action {
        Action::Approve { .. } | Action::Deny { .. } => {
            let Some(request) = request else {
                return Err(rules::Refusal::NotAReviewer(caller.clone()).into());
            };
            if &request.beneficiary == caller {
                return Err(rules::Refusal::SelfApproval.into());
            }
            if !request.reviewers.contains(caller) {
                return Err(rules::Refusal::NotAReviewer(caller.clone()).into());
            }
            // A request that no longer awaits approval is refused by the decision itself,
            // with its state named: no need to ask the catalog.
            if record.state(now) != RequestState::ApprovalAwaited && matches!(action, Action::Deny { .. }) {
                return Ok(Standing { may_review: true, administrator: false });
            }
            let entitlement = Entitlement { id: request.entitlement.clone(), activation_type: ActivationType::Mpa };
            let reviewers = state.catalog.reviewers(&entitlement).await?;
            if matches!(action, Action::Approve { .. }) {
                rules::may_approve(request, caller, &reviewers.peers, &reviewers.all(), &state.config.activation, now)?;
            }
            Ok(Standing { may_review: reviewers.may_review(caller), administrator: false })
        }
        Action::Revoke { .. } => {
            let approved = record.approvers().contains(caller);
            let admin = !approved && administrator(state, caller).await?;
            Ok(Standing { may_review: false, administrator: admin })
        }
        Action::Withdraw { .. } | Action::Extend { .. } => Ok(Standing::default()),
    }
}
