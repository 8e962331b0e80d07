//! The `list-eligibility` function: what the caller may activate. Reads only; never writes.
//!
//! - `GET /api/policy`: justification hint and pattern, the caller, durations, version;
//! - `GET /api/projects`: projects the caller is eligible on (or `AVAILABLE_PROJECTS_QUERY`);
//! - `GET /api/projects/{project}/roles`: eligible entitlements with type and status;
//! - `GET /api/projects/{project}/peers?id=ENTITLEMENT`: qualified reviewers (peers and
//!   designated approvers), for callers who are themselves eligible for peer approval of that
//!   entitlement (no enumeration);
//! - `GET /api/requests?view=mine|review`: the caller's requests, or those waiting for the
//!   caller's review, with their true state, from the request ledger;
//! - `GET /`, `/static/…`: the page people use ([`page`]).
//!
//! Each caller's uncached Google reads come out of their own budget
//! (`LISTING_BUDGET_BURST`, `LISTING_BUDGET_PER_MINUTE`); past it, 429 with `Retry-After`.
//! Effective policies are reused for `POLICY_CACHE_TIMEOUT` unless the request says
//! `Cache-Control: no-cache` (the page does, after the person changed something).

pub mod page;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use common::activation::WindowStatus;
use common::condition::ActivationType;
use common::config::{
    ActivationSettings, ApprovalSettings, BackendSettings, Env, IapSettings, LedgerSettings, ListingBudgetSettings,
    ScopeSettings, TokenSettings,
};
use common::door::LedgerReader;
use common::entitlement::{Entitlement, resource_of};
use common::gcp::GcpError;
use common::gcp::catalog::{AnyCatalog, Freshness, ReadBudgets};
use common::http::wire::{RequestJson, UserJson};
use common::http::{ApiError, ApiQuery, IapUser, IapVerifier, Routes, api_router};
use common::lifecycle::{Record, State as RequestState};
use common::rules;
use common::rules::{Standing, available_actions};
use common::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// The settings this function reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub activation: ActivationSettings,
    pub approval: ApprovalSettings,
    pub scope: ScopeSettings,
    pub iap: IapSettings,
    pub backend: BackendSettings,
    pub ledger: LedgerSettings,
    pub budget: ListingBudgetSettings,
    /// The signing account, whose tokens every peer-approval record is verified against.
    pub token: TokenSettings,
}

impl Config {
    pub fn read(env: &mut Env<'_>) -> Config {
        Config {
            activation: ActivationSettings::read(env),
            approval: ApprovalSettings::read(env),
            scope: ScopeSettings::read(env),
            iap: IapSettings::read(env),
            backend: BackendSettings::read(env),
            ledger: LedgerSettings::read(env),
            budget: ListingBudgetSettings::read(env),
            token: TokenSettings::read(env),
        }
    }
}

/// What the handlers share: plain handles, cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    config: Arc<Config>,
    iap: IapVerifier,
    catalog: AnyCatalog,
    /// Read only: every record verified, never changed from here.
    ledger: LedgerReader,
    /// Every caller's budget of uncached Google reads, for this instance.
    budgets: Arc<ReadBudgets>,
}

impl AppState {
    pub async fn new(config: Config) -> Result<AppState, GcpError> {
        let iap = IapVerifier::from_settings(&config.backend, &config.iap);
        let catalog = AnyCatalog::new(&config.backend, &config.scope).await?;
        let ledger = LedgerReader::new(&config.backend, &config.ledger, &config.token)?;
        let budgets = Arc::new(ReadBudgets::new(&config.budget));
        Ok(AppState { config: Arc::new(config), iap, catalog, ledger, budgets })
    }

    /// The catalog for one listing by `caller`: uncached reads charged to their budget.
    fn catalog_for(&self, caller: &IapUser, headers: &HeaderMap) -> AnyCatalog {
        self.catalog.for_listing(self.budgets.listing(caller.email()), freshness(headers))
    }
}

/// `Cache-Control: no-cache` asks for the policies as they are now, as HTTP means it.
fn freshness(headers: &HeaderMap) -> Freshness {
    let no_cache = headers
        .get_all(axum::http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"));
    if no_cache { Freshness::Reload } else { Freshness::Stored }
}

/// Every route: method, path, handler. The OpenAPI test reads this list.
pub fn routes() -> Routes<AppState> {
    [common::resource_routes!(get "/roles" => roles), common::resource_routes!(get "/peers" => peers)]
        .into_iter()
        .flatten()
        .chain([
            ("GET", "/api/policy", get(policy)),
            ("GET", "/api/projects", get(projects)),
            ("GET", "/api/resources", get(resources)),
            ("GET", "/api/requests", get(requests)),
        ])
        .collect()
}

pub fn router(state: AppState) -> Router {
    api_router("list-eligibility", routes()).merge(page::router()).with_state(state)
}

common::function!("list-eligibility", iap = iap);

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyResponse {
    justification_hint: String,
    justification_pattern: String,
    signed_in_user: UserJson,
    application_version: &'static str,
    default_activation_timeout: u64,
    max_activation_timeout: u64,
    min_reviewers: u64,
    max_reviewers: u64,
    max_roles: u64,
}

async fn policy(State(state): State<AppState>, caller: IapUser) -> Json<PolicyResponse> {
    let activation = &state.config.activation;
    Json(PolicyResponse {
        justification_hint: activation.justification.hint().to_string(),
        justification_pattern: activation.justification.pattern().to_string(),
        signed_in_user: UserJson::from(caller.email()),
        application_version: env!("CARGO_PKG_VERSION"),
        default_activation_timeout: activation.default_activation_minutes,
        max_activation_timeout: activation.max_activation_minutes,
        min_reviewers: activation.min_reviewers,
        max_reviewers: activation.max_reviewers,
        max_roles: activation.max_roles,
    })
}

#[derive(Debug, Serialize)]
struct ProjectsResponse {
    projects: Vec<String>,
}

async fn projects(
    State(state): State<AppState>,
    caller: IapUser,
    headers: HeaderMap,
) -> Result<Json<ProjectsResponse>, ApiError> {
    let projects = state.catalog_for(&caller, &headers).projects(caller.email()).await?;
    Ok(Json(ProjectsResponse { projects: projects.iter().map(ToString::to_string).collect() }))
}

#[derive(Debug, Serialize)]
struct ResourcesResponse {
    resources: Vec<ResourceJson>,
}

#[derive(Debug, Serialize)]
struct ResourceJson {
    /// `project-1`, `folders/123` or `organizations/456`: as in entitlement IDs.
    id: String,
    /// `project`, `folder` or `organization`.
    kind: &'static str,
}

/// Projects, folders and the organization the caller holds something eligible on.
async fn resources(
    State(state): State<AppState>,
    caller: IapUser,
    headers: HeaderMap,
) -> Result<Json<ResourcesResponse>, ApiError> {
    let found = state.catalog_for(&caller, &headers).resources(caller.email()).await?;
    let resources = found
        .iter()
        .map(|resource| ResourceJson {
            id: resource.to_string(),
            kind: match resource {
                common::entitlement::ResourceId::Project(_) => "project",
                common::entitlement::ResourceId::Folder(_) => "folder",
                common::entitlement::ResourceId::Organization(_) => "organization",
            },
        })
        .collect();
    Ok(Json(ResourcesResponse { resources }))
}

#[derive(Debug, Serialize)]
struct RolesResponse {
    warnings: Vec<String>,
    entitlements: Vec<EntitlementJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EntitlementJson {
    id: String,
    name: String,
    resource_condition: Option<String>,
    activation_type: ActivationType,
    /// `ACTIVE` or `INACTIVE`.
    status: &'static str,
    /// End of the current activation, epoch seconds.
    valid_until: Option<i64>,
    /// The request that granted the current activation: the page offers to extend it.
    #[serde(skip_serializing_if = "Option::is_none")]
    activation_id: Option<String>,
    /// Peer approval: distinct approvals a request needs (`APPROVAL_POLICY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    approvals_needed: Option<u32>,
    /// Peer approval: approvers must give a reason.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    approver_reason_required: bool,
    /// Peer approval: the emergency path, where the approval policy opens one.
    #[serde(skip_serializing_if = "Option::is_none")]
    break_glass: Option<BreakGlassOffer>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BreakGlassOffer {
    /// Minutes an emergency grant may last.
    max_duration: u64,
    /// Minutes its reviewers have to ratify it.
    review_within: u64,
}

async fn roles<const KIND: u8>(
    State(state): State<AppState>,
    caller: IapUser,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Result<Json<RolesResponse>, ApiError> {
    let project = resource_of(KIND, &project)?;
    let catalog = state.catalog_for(&caller, &headers);
    let found = catalog.user_entitlements(caller.email(), &project).await.map_err(project_error)?;
    let now = Timestamp::now();
    let entitlements = found
        .entitlements
        .iter()
        .map(|entitlement| {
            let id = &entitlement.id;
            // The latest active activation of this exact entitlement, if any, and its request.
            let current = found
                .activations
                .iter()
                .filter(|a| &a.role == id.role() && a.resource_condition.as_ref() == id.resource_condition())
                .filter(|a| a.window.status(now) == WindowStatus::Active)
                .max_by_key(|a| a.window.end());
            let valid_until = current.map(|a| a.window.end().unix_seconds());
            let activation_id = current.and_then(|a| a.request.clone());
            let requirement = state.config.approval.policy.requirement(id.role().as_str(), &project.resource_name());
            let peer_approval = entitlement.activation_type == ActivationType::Mpa;
            EntitlementJson {
                id: id.to_string(),
                name: id.role().to_string(),
                resource_condition: id.resource_condition().map(ToString::to_string),
                activation_type: entitlement.activation_type,
                status: if valid_until.is_some() { "ACTIVE" } else { "INACTIVE" },
                valid_until,
                activation_id,
                approvals_needed: peer_approval.then_some(requirement.approvals),
                approver_reason_required: peer_approval && requirement.approver_reason_required,
                break_glass: requirement.break_glass.filter(|_| peer_approval).map(|rule| BreakGlassOffer {
                    max_duration: rules::longest(&state.config.activation, &requirement, rules::Path::BreakGlass),
                    review_within: rule.review_within_minutes,
                }),
            }
        })
        .collect();
    Ok(Json(RolesResponse { warnings: found.warnings, entitlements }))
}

#[derive(Debug, Deserialize)]
struct PeersQuery {
    id: String,
}

#[derive(Debug, Serialize)]
struct PeersResponse {
    peers: Vec<UserJson>,
}

async fn peers<const KIND: u8>(
    State(state): State<AppState>,
    caller: IapUser,
    headers: HeaderMap,
    Path(project): Path<String>,
    ApiQuery(query): ApiQuery<PeersQuery>,
) -> Result<Json<PeersResponse>, ApiError> {
    let project = resource_of(KIND, &project)?;
    let id = rules::entitlement_id(&project, &query.id)?;
    let entitlement = Entitlement { id, activation_type: ActivationType::Mpa };
    let catalog = state.catalog_for(&caller, &headers);
    // Only a peer may see the peers: anyone else learns nothing about who holds what, and
    // costs no expansion of the holders' groups. The caller's own standing comes first, from
    // the same (often stored) policies and the caller's own groups.
    let own = catalog.user_entitlements(caller.email(), &project).await.map_err(project_error)?;
    rules::may_see_peers(&own.entitlements, &entitlement.id)?;
    let reviewers = catalog.reviewers(&entitlement).await.map_err(project_error)?;
    let peers = reviewers.all().iter().filter(|peer| *peer != caller.email()).map(UserJson::from).collect();
    Ok(Json(PeersResponse { peers }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RequestsQuery {
    view: String,
    /// `true`: emergency access (break glass) only.
    #[serde(default)]
    break_glass: bool,
}

#[derive(Debug, Serialize)]
struct RequestsResponse {
    requests: Vec<RequestJson>,
}

/// How many requests a list shows: the newest.
const LISTED: u32 = 50;

/// `view=mine`: the caller's requests, newest first. `view=review`: requests that name the
/// caller as a reviewer and await approval now. States are computed now, not as last written.
async fn requests(
    State(state): State<AppState>,
    caller: IapUser,
    ApiQuery(query): ApiQuery<RequestsQuery>,
) -> Result<Json<RequestsResponse>, ApiError> {
    let now = Timestamp::now();
    let me = caller.email();
    let found = match query.view.as_str() {
        "mine" => state.ledger.made_by(me, LISTED).await?,
        "review" => state.ledger.naming_reviewer(me, LISTED).await?,
        other => {
            return Err(ApiError::bad_request("query_invalid", format!("view must be mine or review, not '{other}'")));
        }
    };
    // A decision, an extension's approval, or an emergency grant's ratification.
    let awaits_review = |record: &Record| {
        let state = record.state(now);
        match record.break_glass {
            Some(_) => RequestJson::awaits_review_by(record, me, now),
            None => state == RequestState::ApprovalAwaited || (state.is_live() && record.pending_extension().is_some()),
        }
    };
    let requests = found
        .iter()
        .map(|verified| verified.record())
        .filter(|record| query.view == "mine" || awaits_review(record))
        .filter(|record| !query.break_glass || record.break_glass.is_some())
        .map(|record| {
            // Buttons only; every action is checked afresh when taken.
            let standing = Standing {
                may_review: record.reviewers.contains(me),
                administrator: false,
                beneficiary_eligible: true,
            };
            RequestJson::new(record, now, available_actions(record, me, standing, now))
        })
        .collect();
    Ok(Json(RequestsResponse { requests }))
}

/// An analysis Google refused for the project means the project is unknown or out of scope.
fn project_error(error: GcpError) -> ApiError {
    match error {
        GcpError::InvalidArgument(cause) | GcpError::NotFound(cause) => ApiError::not_found(
            "project_not_found",
            "the project does not exist or is outside this application's scope",
        )
        .with_cause(cause),
        other => other.into(),
    }
}
