//! The `request-approval` function: activation requests.
//!
//! - `POST /api/projects/{project}/roles/self-activate`: self-approved (JIT) roles, written at
//!   once, all in one policy update; event `ActivationSelfApproved`.
//! - `POST /api/projects/{project}/roles/request`: a peer-approval (MPA) request, signed as an
//!   activation token and sent to the chosen reviewers; event `RequestActivation`. It needs as
//!   many reviewers as `APPROVAL_POLICY` asks approvals of.
//! - `POST /api/requests/{id}/withdraw`: the requester withdraws a pending request, or ends an
//!   active grant early (its binding is removed).
//!
//! Every request and self-activation is a record in the request ledger: the decision is
//! recorded first, then IAM is written, then the outcome.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::routing::post;
use common::activation::{Activation, Approval};
use common::condition::ActivationType;
use common::config::ConfigError;
use common::email::Email;
use common::entitlement::{Entitlement, EntitlementId, FOLDERS, ORGANIZATIONS, PROJECTS, ResourceId, resource_of};
use common::event;
use common::gcp::GcpError;
use common::gcp::catalog::{AnyCatalog, Catalog as _};
use common::gcp::events::{EventPublisher, publish_or_log, publisher_for};
use common::gcp::grants::{Completion, Grants};
use common::gcp::iam::IamWriter;
use common::gcp::jwks::JwksCache;
use common::gcp::ledger::Ledger;
use common::gcp::signer::IamCredentialsSigner;
use common::http::audit::{self, Decision};
use common::http::wire::{ActivationResponse, RequestJson};
use common::http::{ApiError, ApiJson, IapUser, IapVerifier, Routes, api_router};
use common::lifecycle::{Action, Effect, Entry, Record, Standing, available_actions, decide};
use common::rules;
use common::timestamp::Timestamp;
use common::token::{ActivationRequest, TokenSigner, to_url_form};
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
    catalog: AnyCatalog,
    grants: Grants,
    signer: Arc<dyn TokenSigner>,
    publisher: Arc<dyn EventPublisher>,
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
        // Every decision here writes IAM or approves: no cached policies or memberships.
        let catalog = AnyCatalog::new(&config.backend, &config.scope.fresh()).await?;
        let signer = Arc::new(IamCredentialsSigner::new(&config.backend, &config.token.service_account).await?);
        let publisher = publisher_for(&config.backend, &config.notification).await?;
        let ledger = Ledger::new(http, &config.ledger.endpoint, &config.ledger.database, config.ledger.retention_days)?;
        let grants = Grants {
            ledger,
            writer: IamWriter::new(&config.backend).await?,
            publisher: publisher.clone(),
            base_url: config.notification.base_url.clone(),
        };
        Ok(AppState { config: Arc::new(config), iap, catalog, grants, signer, publisher })
    }
}

pub fn routes() -> Routes<AppState> {
    vec![
        ("POST", "/api/projects/{project}/roles/self-activate", post(self_activate::<PROJECTS>)),
        ("POST", "/api/projects/{project}/roles/request", post(request::<PROJECTS>)),
        ("POST", "/api/folders/{folder}/roles/self-activate", post(self_activate::<FOLDERS>)),
        ("POST", "/api/folders/{folder}/roles/request", post(request::<FOLDERS>)),
        ("POST", "/api/organizations/{organization}/roles/self-activate", post(self_activate::<ORGANIZATIONS>)),
        ("POST", "/api/organizations/{organization}/roles/request", post(request::<ORGANIZATIONS>)),
        ("POST", "/api/requests/{id}/withdraw", post(withdraw)),
        ("POST", "/api/requests/{id}/extend", post(extend)),
    ]
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

/// An RFC 3339 time from a body.
fn parse_time(text: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(&common::condition::without_fraction(text.trim())).ok_or_else(|| {
        ApiError::bad_request(
            "time_invalid",
            format!("'{text}' is not an RFC 3339 UTC time such as 2026-11-24T16:00:00Z"),
        )
    })
}

async fn self_activate<const KIND: u8>(
    State(state): State<AppState>,
    caller: IapUser,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<SelfActivateBody>,
) -> Result<Json<ActivationResponse>, ApiError> {
    let activation_id = new_id("jit");
    let result = match resource_of(KIND, &project) {
        Ok(resource) => self_activate_checked(&state, caller.email(), &resource, &body, &activation_id).await,
        Err(error) => Err(error.into()),
    };
    let decision = Decision {
        event: "api.activateRole",
        user: caller.email().as_str(),
        project: &project,
        roles: body.entitlement_ids.join(", "),
        justification: &body.justification,
        activation_id: &activation_id,
        ..Decision::default()
    };
    audit::record(&decision, &result, "granted");
    result.map(Json)
}

async fn self_activate_checked(
    state: &AppState,
    caller: &Email,
    project: &ResourceId,
    body: &SelfActivateBody,
    activation_id: &str,
) -> Result<ActivationResponse, ApiError> {
    let settings = &state.config.activation;
    let ids = rules::entitlement_ids(project, &body.entitlement_ids, settings)?;
    let justification = settings.justification.check(&body.justification)?;
    let minutes = body.activation_timeout.unwrap_or(settings.default_activation_minutes);
    let start = body.start_time.as_deref().map(parse_time).transpose()?;
    let window = rules::scheduled_window(Timestamp::now(), start, minutes, settings)?;
    let held = state.catalog.user_entitlements(caller, project).await?;
    for id in &ids {
        rules::require_entitlement(&held.entitlements, id, ActivationType::Jit)?;
    }
    let activations: Vec<Activation> = ids
        .into_iter()
        .map(|entitlement| Activation {
            beneficiary: caller.clone(),
            entitlement,
            window,
            approval: Approval::SelfApproved,
            justification: justification.clone(),
        })
        .collect();
    // The decision first, then the binding, then the outcome: the ledger always knows.
    let first = &activations[0];
    let record = Record {
        id: activation_id.to_string(),
        activation_type: ActivationType::Jit,
        beneficiary: caller.clone(),
        reviewers: Vec::new(),
        entitlements: activations.iter().map(|a| a.entitlement.to_string()).collect(),
        justification: justification.to_string(),
        start: first.window.start().unix_seconds(),
        end: first.window.end().unix_seconds(),
        request_expiry: first.window.start().unix_seconds(),
        approvals_needed: 0,
        approver_reason_required: false,
        token: None,
        timeline: vec![Entry::Requested { at: Timestamp::now().unix_seconds(), actor: caller.clone() }],
    };
    let stored = state.grants.ledger.create(&record).await?;
    if let Completion::Failed(_) = state.grants.complete_activation(stored).await? {
        return Err(ApiError::backend("Google refused the binding; the request is recorded as failed"));
    }
    let mut response = ActivationResponse::self_approved(activation_id, &activations);
    // The roles are granted: a failed event must not turn that into an error.
    let event = event::activation_self_approved(activation_id, &activations, &state.config.notification.base_url);
    if publish_or_log(state.publisher.as_ref(), &event).await.is_err() {
        response.message = Some("Access granted. Sending the notification failed; it was logged.".into());
    }
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
    let result = match resource_of(KIND, &project) {
        Ok(resource) => request_checked(&state, caller.email(), &resource, &body, &activation_id).await,
        Err(error) => Err(error.into()),
    };
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
    audit::record(&decision, &result, "requested");
    result.map(Json)
}

async fn request_checked(
    state: &AppState,
    caller: &Email,
    project: &ResourceId,
    body: &RequestBody,
    activation_id: &str,
) -> Result<ActivationResponse, ApiError> {
    let settings = &state.config.activation;
    let id = EntitlementId::parse(&body.entitlement_id)?;
    if id.resource() != project {
        return Err(rules::Refusal::ProjectMismatch(body.entitlement_id.clone()).into());
    }
    settings.justification.check(&body.justification)?;
    let minutes = body.activation_timeout.unwrap_or(settings.default_activation_minutes);
    let now = Timestamp::now();
    let start = body.start_time.as_deref().map(parse_time).transpose()?;
    let window = rules::scheduled_window(now, start, minutes, settings)?;
    let chosen = body.peers.iter().map(|peer| Email::parse(peer)).collect::<Result<Vec<_>, _>>()?;

    // The requester's own entitlements and the entitlement's peers, asked at the same time.
    let entitlement = Entitlement { id: id.clone(), activation_type: ActivationType::Mpa };
    let (held, holders) =
        tokio::try_join!(state.catalog.user_entitlements(caller, project), state.catalog.reviewers(&entitlement))?;
    rules::require_entitlement(&held.entitlements, &id, ActivationType::Mpa)?;
    let reviewers = rules::reviewers(caller, &chosen, &holders.all(), settings)?;
    let requirement = state.config.approval.policy.requirement(id.role().as_str(), &project.resource_name());
    if (reviewers.len() as u32) < requirement.approvals {
        return Err(ApiError::bad_request(
            "reviewer_count",
            format!(
                "this role needs {} approvals: choose at least {} reviewers",
                requirement.approvals, requirement.approvals
            ),
        ));
    }
    if let Some(max) = requirement.max_duration_minutes
        && minutes > max
    {
        return Err(rules::Refusal::Duration { minutes, max }.into());
    }

    // The request can be approved until the earlier of its timeout and the window's end, and
    // a scheduled one only before it starts.
    let timeout_end = now.plus_seconds(settings.request_timeout_minutes as i64 * 60);
    let timeout_end = if window.start() > now { timeout_end.min(window.start()) } else { timeout_end };
    let request = ActivationRequest {
        id: activation_id.to_string(),
        beneficiary: caller.clone(),
        reviewers,
        entitlement: id,
        justification: body.justification.trim().to_string(),
        window,
        expires: timeout_end.min(window.end()),
        approvals_needed: requirement.approvals,
        approver_reason_required: requirement.approver_reason_required,
    };
    let token = state.signer.sign(&request.claims(state.signer.issuer(), now)).await?;
    let record = Record {
        id: request.id.clone(),
        activation_type: ActivationType::Mpa,
        beneficiary: caller.clone(),
        reviewers: request.reviewers.clone(),
        entitlements: vec![request.entitlement.to_string()],
        justification: request.justification.clone(),
        start: window.start().unix_seconds(),
        end: window.end().unix_seconds(),
        request_expiry: request.expires.unix_seconds(),
        approvals_needed: request.approvals_needed,
        approver_reason_required: request.approver_reason_required,
        token: Some(token.clone()),
        timeline: vec![Entry::Requested { at: now.unix_seconds(), actor: caller.clone() }],
    };
    state.grants.ledger.create(&record).await?;
    let base_url = &state.config.notification.base_url;
    let action_url = format!("{base_url}/?activation={}", to_url_form(&token));
    // Nothing is granted yet: if the reviewers cannot be told, the request has failed.
    publish_or_log(state.publisher.as_ref(), &event::request_activation(&request, base_url, &action_url)).await?;
    Ok(ActivationResponse::request(&request, caller, "ACTIVATION_PENDING", now))
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

/// The requester's own decision: recorded, then the binding of an active grant is removed.
async fn withdraw_checked(state: &AppState, caller: &Email, id: &str, reason: String) -> Result<RequestJson, ApiError> {
    let action = Action::Withdraw { reason };
    let stored = state.grants.ledger.get(id).await?.ok_or_else(|| ApiError::request_not_found(id))?;
    let (stored, entry, effect) = state
        .grants
        .ledger
        .record_decision::<ApiError>(stored, |record| {
            Ok(decide(record, caller, &action, Standing::default(), Timestamp::now())?)
        })
        .await?;
    if effect == Effect::RemoveBinding {
        state.grants.remove_binding(&stored.record, &format!("Ended early by {caller}")).await?;
    }
    state.grants.announce(&stored.record, &entry).await;
    let now = Timestamp::now();
    Ok(RequestJson::new(&stored.record, now, available_actions(&stored.record, caller, Standing::default(), now)))
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

/// Extends a grant without a gap: self-approval at once (up to the longest duration counted
/// from the original start), peer approval once a new quorum approves; the grant runs on
/// meanwhile.
async fn extend_checked(state: &AppState, caller: &Email, id: &str, minutes: u64) -> Result<RequestJson, ApiError> {
    let settings = &state.config.activation;
    let stored = state.grants.ledger.get(id).await?.ok_or_else(|| ApiError::request_not_found(id))?;
    let record = &stored.record;
    let role = record.entitlements.first().and_then(|e| EntitlementId::parse(e).ok());
    let policy_max = role
        .as_ref()
        .and_then(|id| {
            state
                .config
                .approval
                .policy
                .requirement(id.role().as_str(), &id.resource().resource_name())
                .max_duration_minutes
        })
        .filter(|_| record.activation_type == ActivationType::Mpa);
    let max = policy_max.map_or(settings.max_activation_minutes, |m| m.min(settings.max_activation_minutes));
    if minutes == 0 || minutes > max {
        return Err(rules::Refusal::Duration { minutes, max }.into());
    }
    let action = Action::Extend { end: record.start + minutes as i64 * 60 };
    let (written, entry, effect) = state
        .grants
        .ledger
        .record_decision::<ApiError>(stored.clone(), |current| {
            Ok(decide(current, caller, &action, Standing::default(), Timestamp::now())?)
        })
        .await?;
    let stored = if effect == Effect::Extend {
        state.grants.complete_extension(written).await?
    } else {
        state.grants.announce(&written.record, &entry).await;
        written
    };
    let now = Timestamp::now();
    Ok(RequestJson::new(&stored.record, now, available_actions(&stored.record, caller, Standing::default(), now)))
}
