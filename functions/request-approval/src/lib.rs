//! The `request-approval` function: activation requests.
//!
//! - `POST /api/projects/{project}/roles/self-activate`: self-approved (JIT) roles, written at
//!   once, all in one policy update; event `ActivationSelfApproved`.
//! - `POST /api/projects/{project}/roles/request`: a peer-approval (MPA) request, signed as an
//!   activation token and sent to the chosen reviewers; event `RequestActivation`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, Path, State};
use axum::routing::post;
use common::activation::{Activation, Approval};
use common::condition::ActivationType;
use common::config::ConfigError;
use common::email::Email;
use common::entitlement::{Entitlement, EntitlementId, ProjectId};
use common::event;
use common::gcp::GcpError;
use common::gcp::catalog::{AnyCatalog, Catalog as _};
use common::gcp::events::{EventPublisher, publish_or_log, publisher_for};
use common::gcp::iam::IamWriter;
use common::gcp::jwks::JwksCache;
use common::gcp::signer::IamCredentialsSigner;
use common::http::audit::{self, Decision};
use common::http::wire::ActivationResponse;
use common::http::{ApiError, ApiJson, IapUser, IapVerifier, Routes, api_router};
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
    writer: IamWriter,
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
        let iap = IapVerifier::from_settings(JwksCache::http_client(&config.backend), &config.backend, &config.iap);
        // Every decision here writes IAM or approves: no cached policies or memberships.
        let catalog = AnyCatalog::new(&config.backend, &config.scope.fresh()).await?;
        let writer = IamWriter::new(&config.backend).await?;
        let signer = Arc::new(IamCredentialsSigner::new(&config.backend, &config.token.service_account).await?);
        let publisher = publisher_for(&config.backend, &config.notification).await?;
        Ok(AppState { config: Arc::new(config), iap, catalog, writer, signer, publisher })
    }
}

pub fn routes() -> Routes<AppState> {
    vec![
        ("POST", "/api/projects/{project}/roles/self-activate", post(self_activate)),
        ("POST", "/api/projects/{project}/roles/request", post(request)),
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
}

async fn self_activate(
    State(state): State<AppState>,
    caller: IapUser,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<SelfActivateBody>,
) -> Result<Json<ActivationResponse>, ApiError> {
    let activation_id = new_id("jit");
    let result = self_activate_checked(&state, caller.email(), &project, &body, &activation_id).await;
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
    project: &str,
    body: &SelfActivateBody,
    activation_id: &str,
) -> Result<ActivationResponse, ApiError> {
    let settings = &state.config.activation;
    let project = ProjectId::parse(project)?;
    let ids = rules::entitlement_ids(&project, &body.entitlement_ids, settings)?;
    let justification = settings.justification.check(&body.justification)?;
    let minutes = body.activation_timeout.unwrap_or(settings.default_activation_minutes);
    let window = rules::activation_window(Timestamp::now(), minutes, settings)?;
    let held = state.catalog.user_entitlements(caller, &project).await?;
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
    let reason = format!("Self-approved, justification: {justification}");
    state.writer.activate_all(&activations, &reason).await?;
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
}

async fn request(
    State(state): State<AppState>,
    caller: IapUser,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<RequestBody>,
) -> Result<Json<ActivationResponse>, ApiError> {
    let activation_id = new_id("mpa");
    let result = request_checked(&state, caller.email(), &project, &body, &activation_id).await;
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
    project: &str,
    body: &RequestBody,
    activation_id: &str,
) -> Result<ActivationResponse, ApiError> {
    let settings = &state.config.activation;
    let project = ProjectId::parse(project)?;
    let id = EntitlementId::parse(&body.entitlement_id)?;
    if id.project() != &project {
        return Err(rules::Refusal::ProjectMismatch(body.entitlement_id.clone()).into());
    }
    settings.justification.check(&body.justification)?;
    let minutes = body.activation_timeout.unwrap_or(settings.default_activation_minutes);
    let now = Timestamp::now();
    let window = rules::activation_window(now, minutes, settings)?;
    let chosen = body.peers.iter().map(|peer| Email::parse(peer)).collect::<Result<Vec<_>, _>>()?;

    // The requester's own entitlements and the entitlement's peers, asked at the same time.
    let entitlement = Entitlement { id: id.clone(), activation_type: ActivationType::Mpa };
    let (held, holders) =
        tokio::try_join!(state.catalog.user_entitlements(caller, &project), state.catalog.holders(&entitlement))?;
    rules::require_entitlement(&held.entitlements, &id, ActivationType::Mpa)?;
    let reviewers = rules::reviewers(caller, &chosen, &holders, settings)?;

    // The request can be approved until the earlier of its timeout and the window's end.
    let timeout_end = now.plus_seconds(settings.request_timeout_minutes as i64 * 60);
    let request = ActivationRequest {
        id: activation_id.to_string(),
        beneficiary: caller.clone(),
        reviewers,
        entitlement: id,
        justification: body.justification.trim().to_string(),
        window,
        expires: timeout_end.min(window.end()),
    };
    let token = state.signer.sign(&request.claims(state.signer.issuer(), now)).await?;
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
