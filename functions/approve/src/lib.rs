//! The `approve` function: a reviewer opens a peer-approval request from the emailed link and
//! approves it.
//!
//! - `GET /api/activation-request?activation=TOKEN`: the request, for its beneficiary and its
//!   reviewers only;
//! - `POST /api/activation-request?activation=TOKEN`: approve. The token must verify, the
//!   caller (IAP) must be listed and not the beneficiary, both must still hold the
//!   entitlement with peer approval, the justification must still match the policy and the
//!   window must not have ended. Then the binding is written with the token's window and
//!   event `ActivationApproved` is published. Approving again is harmless and says so.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::get;
use common::activation::{Activation, Approval};
use common::condition::ActivationType;
use common::config::ConfigError;
use common::entitlement::Entitlement;
use common::event;
use common::gcp::GcpError;
use common::gcp::catalog::{AnyCatalog, Catalog as _};
use common::gcp::events::{EventPublisher, publish_or_log, publisher_for};
use common::gcp::iam::{ActivationWrite, IamWriter};
use common::gcp::jwks::JwksCache;
use common::http::audit::{self, Decision};
use common::http::wire::ActivationResponse;
use common::http::{ApiError, ApiQuery, IapUser, IapVerifier, Routes, api_router};
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
    writer: IamWriter,
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
        let token_keys = Arc::new(JwksCache::service_account(http, &config.backend, &config.token.service_account));
        // Every decision here writes IAM or approves: no cached policies or memberships.
        let catalog = AnyCatalog::new(&config.backend, &config.scope.fresh()).await?;
        let writer = IamWriter::new(&config.backend).await?;
        let publisher = publisher_for(&config.backend, &config.notification).await?;
        Ok(AppState { config: Arc::new(config), iap, token_keys, catalog, writer, publisher })
    }
}

pub fn routes() -> Routes<AppState> {
    vec![
        ("GET", "/api/activation-request", get(introspect)),
        ("POST", "/api/activation-request", axum::routing::post(approve)),
    ]
}

pub fn router(state: AppState) -> Router {
    api_router("approve", routes()).with_state(state)
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    activation: String,
}

async fn verified_request(state: &AppState, token_text: &str, now: Timestamp) -> Result<ActivationRequest, ApiError> {
    let token = from_url_form(token_text.trim());
    let verified = state.token_keys.verify_token(&token, &state.config.token.service_account, now).await?;
    Ok(verified?)
}

async fn introspect(
    State(state): State<AppState>,
    caller: IapUser,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<ActivationResponse>, ApiError> {
    let now = Timestamp::now();
    let request = verified_request(&state, &query.activation, now).await?;
    rules::may_view(&request, caller.email())?;
    Ok(Json(ActivationResponse::request(&request, caller.email(), "ACTIVATION_PENDING", now)))
}

async fn approve(
    State(state): State<AppState>,
    caller: IapUser,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<ActivationResponse>, ApiError> {
    let now = Timestamp::now();
    let request = verified_request(&state, &query.activation, now).await;
    let result = match &request {
        Ok(request) => approve_checked(&state, &caller, request, now).await,
        Err(error) => Err(error.clone()),
    };
    let request = request.as_ref().ok();
    let decision = Decision {
        event: "api.approveRole",
        user: request.map(|r| r.beneficiary.as_str()).unwrap_or(""),
        project: request.map(|r| r.entitlement.project().as_str()).unwrap_or(""),
        roles: request.map(|r| r.entitlement.to_string()).unwrap_or_default(),
        justification: request.map(|r| r.justification.as_str()).unwrap_or(""),
        reviewers: request
            .map(|r| r.reviewers.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        approver: caller.email().as_str(),
        activation_id: request.map(|r| r.id.as_str()).unwrap_or(""),
    };
    audit::record(&decision, &result, "granted");
    result.map(Json)
}

async fn approve_checked(
    state: &AppState,
    caller: &IapUser,
    request: &ActivationRequest,
    now: Timestamp,
) -> Result<ActivationResponse, ApiError> {
    let caller = caller.email();
    // Refusals that need no backend call come first, then the current peers decide.
    if &request.beneficiary == caller {
        return Err(rules::Refusal::SelfApproval.into());
    }
    if !request.reviewers.contains(caller) {
        return Err(rules::Refusal::NotAReviewer(caller.clone()).into());
    }
    let entitlement = Entitlement { id: request.entitlement.clone(), activation_type: ActivationType::Mpa };
    let holders = state.catalog.holders(&entitlement).await?;
    let justification = rules::may_approve(request, caller, &holders, &state.config.activation, now)?;
    let activation = Activation {
        beneficiary: request.beneficiary.clone(),
        entitlement: request.entitlement.clone(),
        window: request.window,
        approval: Approval::ApprovedBy(caller.clone()),
        justification,
    };
    let reason = format!("Approved by {caller}, justification: {}", request.justification);
    let written = state.writer.activate(&activation, &reason).await?;
    let mut response = ActivationResponse::request(request, caller, "ACTIVE", now);
    if written == ActivationWrite::AlreadyPresent {
        response.message = Some("This request had already been approved; the access is active.".into());
        return Ok(response);
    }
    let event = event::activation_approved(request, caller, &state.config.notification.base_url);
    if publish_or_log(state.publisher.as_ref(), &event).await.is_err() {
        response.message = Some("Access granted. Notifying the requester failed; it was logged.".into());
    }
    Ok(response)
}
