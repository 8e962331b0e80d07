//! The `request-approval` function: activation requests.
//!
//! - `POST /api/projects/{project}/roles/self-activate`: self-approved (JIT) roles, written at
//!   once, all in one policy update; event `ActivationSelfApproved`.
//! - `POST /api/projects/{project}/roles/request`: a peer-approval (MPA) request, signed as an
//!   activation token and sent to the chosen reviewers; event `RequestActivation`. It needs as
//!   many reviewers as `APPROVAL_POLICY` asks approvals of.
//! - `POST /api/projects/{project}/roles/break-glass`: emergency access to a peer-approved
//!   role whose approval policy rule opens break glass: granted at once, ratified after the
//!   fact by the role's quorum (`BREAK_GLASS_LIMIT` caps how often); event
//!   `BreakGlassActivated`. Answers as a self-activation does.
//! - `POST /api/requests/{id}/withdraw`: the requester withdraws a pending request, or ends an
//!   active grant early (its binding is removed).
//! - `POST /api/requests/{id}/extend`: the requester asks for a longer grant.
//!
//! Every route is a door to the request's one path (`common::door`): the decision is
//! recorded first, then IAM is written, then the outcome. This crate holds the routes, the
//! wire shapes and the checks of what was typed.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use common::config::{Env, ListingBudgetSettings};
use common::door::{BreakGlassAsk, Door, Outcome, PeerRequest, SelfActivation};
use common::email::Email;
use common::entitlement::{ResourceId, resource_of};
use common::gcp::GcpError;
use common::gcp::catalog::ReadBudgets;
use common::gcp::signer::IamCredentialsSigner;
use common::http::audit::{self, Decision};
use common::http::wire::{ActivationResponse, RequestJson};
use common::http::{ApiError, ApiJson, IapUser, IapVerifier, Routes, api_router, parse_time};
use common::rules;
use common::rules::Action;
use common::timestamp::Timestamp;
use serde::Deserialize;

/// The settings this function reads: every section of the shared configuration, and each
/// person's budget of uncached reads, which every ask is charged to.
#[derive(Debug, Clone)]
pub struct Config {
    pub decisions: common::config::Config,
    pub budget: ListingBudgetSettings,
}

impl Config {
    pub fn read(env: &mut Env<'_>) -> Config {
        Config { decisions: common::config::Config::read(env), budget: ListingBudgetSettings::read(env) }
    }
}

#[derive(Debug, Clone)]
pub struct AppState {
    config: Arc<common::config::Config>,
    iap: IapVerifier,
    door: Door,
    /// Every caller's budget of uncached Google reads, for this instance: each ask costs one.
    budgets: Arc<ReadBudgets>,
}

impl AppState {
    pub async fn new(config: Config) -> Result<AppState, GcpError> {
        let budgets = Arc::new(ReadBudgets::new(&config.budget));
        let config = config.decisions;
        let iap = IapVerifier::from_settings(&config.backend, &config.iap);
        let signer = Arc::new(IamCredentialsSigner::new(&config.backend, &config.token.service_account).await?);
        let config = Arc::new(config);
        let door = Door::new(config.clone(), Some(signer)).await?;
        Ok(AppState { config, iap, door, budgets })
    }
}

common::function!("request-approval", iap = iap);

pub fn routes() -> Routes<AppState> {
    [
        common::resource_routes!(post "/roles/self-activate" => self_activate),
        common::resource_routes!(post "/roles/request" => request),
        common::resource_routes!(post "/roles/break-glass" => break_glass),
    ]
    .into_iter()
    .flatten()
    .chain([
        ("POST", "/api/requests/{id}/withdraw", post(withdraw)),
        ("POST", "/api/requests/{id}/extend", post(extend)),
    ])
    .collect()
}

pub fn router(state: AppState) -> Router {
    api_router("request-approval", routes()).with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SelfActivateBody {
    entitlement_ids: Vec<String>,
    justification: String,
    /// Minutes; the policy's default when absent.
    #[serde(default)]
    activation_timeout: Option<u64>,
    /// RFC 3339: start later (up to `ACTIVATION_MAX_SCHEDULE` ahead); now when absent.
    #[serde(default)]
    start_time: Option<String>,
}

async fn self_activate<const KIND: u8>(
    State(state): State<AppState>,
    caller: IapUser,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<SelfActivateBody>,
) -> Result<Json<ActivationResponse>, ApiError> {
    let activation_id = new_id("jit");
    let decision = Decision {
        event: "api.activateRole",
        user: caller.email().as_str(),
        project: &project,
        roles: body.entitlement_ids.join(", "),
        justification: &body.justification,
        activation_id: &activation_id,
        ..Decision::default()
    };
    let checked = async |resource: &ResourceId| {
        self_activate_checked(&state, caller.email(), resource, &body, &activation_id).await
    };
    on_resource(KIND, &project, checked, &decision, "granted").await
}

async fn self_activate_checked(
    state: &AppState,
    caller: &Email,
    resource: &ResourceId,
    body: &SelfActivateBody,
    activation_id: &str,
) -> Result<ActivationResponse, ApiError> {
    let settings = &state.config.activation;
    let ids = rules::entitlement_ids(resource, &body.entitlement_ids, settings)?;
    let justification = settings.justification.check(&body.justification)?;
    let minutes = body.activation_timeout.unwrap_or(settings.default_activation_minutes);
    let start = body.start_time.as_deref().map(parse_time).transpose()?;
    let window = rules::scheduled_window(Timestamp::now(), start, minutes, settings)?;
    let asked = SelfActivation {
        id: activation_id.to_string(),
        entitlements: ids,
        justification: justification.to_string(),
        window,
        starts_now: start.is_none(),
    };
    state.budgets.charge_ask(caller)?;
    let outcome = state.door.self_activate(caller, resource, asked).await?;
    let mut response = granted(activation_id, &outcome)?;
    response.message = outcome.message.clone();
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestBody {
    entitlement_id: String,
    justification: String,
    peers: Vec<String>,
    #[serde(default)]
    activation_timeout: Option<u64>,
    /// RFC 3339: start later; approvals must come before the start.
    #[serde(default)]
    start_time: Option<String>,
}

async fn request<const KIND: u8>(
    State(state): State<AppState>,
    caller: IapUser,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<RequestBody>,
) -> Result<Json<ActivationResponse>, ApiError> {
    let activation_id = new_id("mpa");
    let decision = Decision {
        event: "api.requestRole",
        user: caller.email().as_str(),
        project: &project,
        roles: body.entitlement_id.clone(),
        justification: &body.justification,
        reviewers: body.peers.join(", "),
        activation_id: &activation_id,
        ..Decision::default()
    };
    let checked =
        async |resource: &ResourceId| request_checked(&state, caller.email(), resource, &body, &activation_id).await;
    on_resource(KIND, &project, checked, &decision, "requested").await
}

async fn request_checked(
    state: &AppState,
    caller: &Email,
    resource: &ResourceId,
    body: &RequestBody,
    activation_id: &str,
) -> Result<ActivationResponse, ApiError> {
    let settings = &state.config.activation;
    let id = rules::entitlement_id(resource, &body.entitlement_id)?;
    settings.justification.check(&body.justification)?;
    let minutes = body.activation_timeout.unwrap_or(settings.default_activation_minutes);
    let start = body.start_time.as_deref().map(parse_time).transpose()?;
    let reviewers = body.peers.iter().map(|peer| Email::parse(peer)).collect::<Result<Vec<_>, _>>()?;
    let asked = PeerRequest {
        id: activation_id.to_string(),
        entitlement: id,
        justification: body.justification.clone(),
        reviewers,
        minutes,
        start,
    };
    state.budgets.charge_ask(caller)?;
    let (request, _) = state.door.request(caller, resource, asked).await?;
    Ok(ActivationResponse::request(&request, caller, "ACTIVATION_PENDING", Timestamp::now()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BreakGlassBody {
    entitlement_id: String,
    justification: String,
    /// Minutes; the rule's `breakGlass.maxDuration` when absent.
    #[serde(default)]
    activation_timeout: Option<u64>,
}

async fn break_glass<const KIND: u8>(
    State(state): State<AppState>,
    caller: IapUser,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<BreakGlassBody>,
) -> Result<Json<ActivationResponse>, ApiError> {
    let activation_id = new_id("mpa");
    let decision = Decision {
        event: "api.breakGlass",
        user: caller.email().as_str(),
        project: &project,
        roles: body.entitlement_id.clone(),
        justification: &body.justification,
        activation_id: &activation_id,
        ..Decision::default()
    };
    let checked = async |resource: &ResourceId| {
        break_glass_checked(&state, caller.email(), resource, &body, &activation_id).await
    };
    on_resource(KIND, &project, checked, &decision, "granted at once, awaiting review").await
}

async fn break_glass_checked(
    state: &AppState,
    caller: &Email,
    resource: &ResourceId,
    body: &BreakGlassBody,
    activation_id: &str,
) -> Result<ActivationResponse, ApiError> {
    let settings = &state.config.activation;
    let id = rules::entitlement_id(resource, &body.entitlement_id)?;
    let justification = settings.justification.check(&body.justification)?;
    let requirement = state.config.approval.policy.requirement(id.role().as_str(), &resource.resource_name());
    let longest = rules::longest(settings, &requirement, rules::Path::BreakGlass);
    let asked = BreakGlassAsk {
        id: activation_id.to_string(),
        entitlement: id,
        justification: justification.to_string(),
        minutes: body.activation_timeout.unwrap_or(longest),
    };
    state.budgets.charge_ask(caller)?;
    let outcome = state.door.break_glass(caller, resource, asked).await?;
    let record = outcome.record();
    let mut response = granted(activation_id, &outcome)?;
    response.reviewers = record.reviewers.iter().map(common::http::wire::UserJson::from).collect();
    response.break_glass = common::http::wire::break_glass_json(record, Timestamp::now());
    response.message = Some(
        outcome
            .message
            .clone()
            .unwrap_or_else(|| "Emergency access granted; its reviewers and the administrators are told.".into()),
    );
    Ok(response)
}

/// A new activation on the resource that `kind` (a route's `KIND`) and `project` name:
/// `checked` on it, audited with `decision` (`success` when it succeeds), whatever the outcome.
async fn on_resource<T>(
    kind: u8,
    project: &str,
    checked: impl AsyncFnOnce(&ResourceId) -> Result<T, ApiError>,
    decision: &Decision<'_>,
    success: &'static str,
) -> Result<Json<T>, ApiError> {
    let result = match resource_of(kind, project) {
        Ok(resource) => checked(&resource).await,
        Err(error) => Err(error.into()),
    };
    audit::record(decision, &result, success);
    result.map(Json)
}

/// The answer to an activation granted at once (self-approved, or emergency access): the
/// bindings of its window as they were written.
fn granted(activation_id: &str, outcome: &Outcome) -> Result<ActivationResponse, ApiError> {
    let record = outcome.record();
    let activations = common::door::activations(record, record.start, record.effective_end())?;
    Ok(ActivationResponse::self_approved(activation_id, &activations))
}

/// `jit-…` or `mpa-…` and 16 random URL-safe characters.
fn new_id(prefix: &str) -> String {
    let mut random = [0u8; 12];
    // The system RNG does not fail on supported platforms; an all-zero ID would still be
    // only a label, never a secret.
    let _ = aws_lc_rs::rand::fill(&mut random);
    common::token::activation_id(prefix, random)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawBody {
    #[serde(default)]
    reason: String,
}

async fn withdraw(
    State(state): State<AppState>,
    caller: IapUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WithdrawBody>,
) -> Result<Json<RequestJson>, ApiError> {
    let result = withdraw_checked(&state, caller.email(), &id, body.reason).await;
    let decision = Decision {
        event: "api.withdrawRole",
        user: caller.email().as_str(),
        activation_id: &id,
        ..Decision::default()
    };
    audit::record(&decision, &result, "withdrawn");
    result.map(Json)
}

/// The requester's own decision: a pending request is withdrawn, a grant ended early (its
/// binding removed).
async fn withdraw_checked(state: &AppState, caller: &Email, id: &str, reason: String) -> Result<RequestJson, ApiError> {
    Ok(state.door.act(caller, id, Action::Withdraw { reason }).await?.json())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExtendBody {
    /// The new duration, minutes, counted from the grant's original start.
    activation_timeout: u64,
}

async fn extend(
    State(state): State<AppState>,
    caller: IapUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExtendBody>,
) -> Result<Json<RequestJson>, ApiError> {
    let result = extend_checked(&state, caller.email(), &id, body.activation_timeout).await;
    let decision =
        Decision { event: "api.extendRole", user: caller.email().as_str(), activation_id: &id, ..Decision::default() };
    audit::record(&decision, &result, "extended");
    result.map(Json)
}

/// Extends a grant without a gap: self-approval at once, after the same checks as a new
/// activation (eligibility read afresh, the justification policy, the longest duration
/// counted from the original start); peer approval once a new quorum approves it, naming its
/// end. The grant runs on meanwhile.
async fn extend_checked(state: &AppState, caller: &Email, id: &str, minutes: u64) -> Result<RequestJson, ApiError> {
    // An extension reads eligibility afresh, as a new ask does, and is charged as one.
    state.budgets.charge_ask(caller)?;
    Ok(state.door.extend(caller, id, minutes).await?.json())
}
