//! Where eligibility comes from: [`AnyCatalog`], one of two implementations, chosen by
//! `RESOURCE_CATALOG`. Handlers hold it and never know which one answers.
//!
//! - [`AssetInventoryCatalog`] (the default): effective policies from Cloud Asset
//!   (`batchGetEffectiveIamPolicies`, `searchAllIamPolicies`), nested groups from Cloud
//!   Identity, and the decisions made by the pure core ([`crate::eligibility`]). No daily quota.
//! - [`PolicyAnalyzerCatalog`]: `analyzeIamPolicy`, 20 queries a day per organization without
//!   a paid Security Command Center tier.
//!
//! list-eligibility asks through [`AnyCatalog::for_listing`]: its uncached reads are charged to
//! the caller's [`ReadBudget`], and stored policies answer unless the caller asks afresh.

mod asset_inventory;
mod budget;
mod cache;
mod policy_analyzer;

use std::collections::{BTreeMap, BTreeSet};

use google_cloud_asset_v1::client::AssetService;
use google_cloud_gax::paginator::ItemPaginator as _;
use google_cloud_resourcemanager_v3::client::Projects;

pub use asset_inventory::AssetInventoryCatalog;
pub use budget::{ReadBudget, ReadBudgets};
pub use cache::Cache;
pub use policy_analyzer::PolicyAnalyzerCatalog;

use crate::activation::ActivationBinding;
use crate::condition::ActivationType;
use crate::config::{BackendSettings, CatalogKind, ScopeSettings};
use crate::eligibility::Holding;
use crate::email::Email;
use crate::entitlement::{Entitlement, EntitlementId, ProjectId, ResourceId};
use crate::gcp::{GcpError, credentials_for, retry_policy};
use crate::policy::{Binding, Expr};

/// What a user holds on one project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserEntitlements {
    /// Sorted by ID, one per ID (self-approval wins over peer approval).
    pub entitlements: Vec<Entitlement>,
    /// The user's activation bindings on the project, active or not.
    pub activations: Vec<ActivationBinding>,
    /// Parts of the answer Google could not complete.
    pub warnings: Vec<String>,
}

/// Who may review requests for an entitlement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reviewers {
    /// Holders of the same entitlement with peer approval: they approve each other.
    pub peers: Vec<Email>,
    /// Holders of the designated-approver marker for it: they approve, never activate.
    pub designated: Vec<Email>,
}

impl Reviewers {
    /// Everyone who may review, once each, sorted.
    pub fn all(&self) -> Vec<Email> {
        self.peers.iter().chain(&self.designated).cloned().collect::<BTreeSet<_>>().into_iter().collect()
    }
}

/// Whether a listing may be answered from stored effective policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within `POLICY_CACHE_TIMEOUT`, a stored policy answers.
    Stored,
    /// Read afresh (the caller has just changed something, `Cache-Control: no-cache`); the
    /// answer is stored for the others.
    Reload,
}

/// The configured catalog.
#[derive(Debug, Clone)]
pub enum AnyCatalog {
    AssetInventory(AssetInventoryCatalog),
    PolicyAnalyzer(PolicyAnalyzerCatalog),
}

impl AnyCatalog {
    /// The catalog `RESOURCE_CATALOG` names. Its caches live as long as
    /// `RESOURCE_CACHE_TIMEOUT` says; a function that writes IAM or approves passes
    /// [`ScopeSettings::fresh`] so that it always reads current data.
    pub async fn new(backend: &BackendSettings, scope: &ScopeSettings) -> Result<AnyCatalog, GcpError> {
        Ok(match scope.catalog {
            CatalogKind::AssetInventory => {
                AnyCatalog::AssetInventory(AssetInventoryCatalog::new(backend, scope).await?)
            }
            CatalogKind::PolicyAnalyzer => {
                AnyCatalog::PolicyAnalyzer(PolicyAnalyzerCatalog::new(backend, scope).await?)
            }
        })
    }
}

impl AnyCatalog {
    /// This catalog for one listing: every uncached Google read is charged to `budget`, and
    /// `freshness` says whether stored policies may answer. The Policy Analyzer catalog keeps
    /// no budget: its quota is a daily one per organization, which no per-person budget fits.
    pub fn for_listing(&self, budget: ReadBudget, freshness: Freshness) -> AnyCatalog {
        match self {
            AnyCatalog::AssetInventory(catalog) => AnyCatalog::AssetInventory(catalog.for_listing(budget, freshness)),
            AnyCatalog::PolicyAnalyzer(catalog) => AnyCatalog::PolicyAnalyzer(catalog.clone()),
        }
    }
}

/// Asks whichever catalog is configured the same question.
macro_rules! either {
    ($catalog:expr, $inner:ident => $question:expr) => {
        match $catalog {
            AnyCatalog::AssetInventory($inner) => $question,
            AnyCatalog::PolicyAnalyzer($inner) => $question,
        }
    };
}

/// The questions every handler asks about eligibility, answered by the configured catalog.
impl AnyCatalog {
    /// The user's entitlements and activations on `project`, through inherited bindings and
    /// nested groups.
    pub async fn user_entitlements(&self, user: &Email, project: &ResourceId) -> Result<UserEntitlements, GcpError> {
        either!(self, catalog => catalog.user_entitlements(user, project).await)
    }

    /// The peers and the designated approvers of `entitlement`, from one read.
    pub async fn reviewers(&self, entitlement: &Entitlement) -> Result<Reviewers, GcpError> {
        either!(self, catalog => catalog.reviewers(entitlement).await)
    }

    /// How each of `people` stands towards `id` now, for a decision about a request of kind
    /// `kind`: from one read of the resource's policies and each person's groups, all at once
    /// (no group's members are listed).
    pub async fn standing(
        &self,
        id: &EntitlementId,
        kind: ActivationType,
        people: &[Email],
    ) -> Result<BTreeMap<Email, Holding>, GcpError> {
        either!(self, catalog => catalog.standing(id, kind, people).await)
    }

    /// Projects the user can activate something on, or every project matching
    /// `AVAILABLE_PROJECTS_QUERY` when that is set.
    pub async fn projects(&self, user: &Email) -> Result<Vec<ProjectId>, GcpError> {
        either!(self, catalog => catalog.projects(user).await)
    }

    /// Projects, folders and the organization the user can activate something on.
    pub async fn resources(&self, user: &Email) -> Result<Vec<ResourceId>, GcpError> {
        either!(self, catalog => catalog.resources(user).await)
    }

    /// The groups the user is in, nested ones included (for `ADMINISTRATORS`); the Policy
    /// Analyzer catalog reads no groups and answers none.
    pub async fn groups_of(&self, user: &Email) -> Result<BTreeSet<String>, GcpError> {
        match self {
            AnyCatalog::AssetInventory(catalog) => catalog.groups_of(user).await,
            AnyCatalog::PolicyAnalyzer(_) => Ok(BTreeSet::new()),
        }
    }
}

/// The Cloud Asset client with our credentials, retries and timeout.
async fn asset_service(backend: &BackendSettings) -> Result<AssetService, GcpError> {
    AssetService::builder()
        .with_endpoint(&backend.cloud_asset_endpoint)
        .with_credentials(credentials_for(&backend.cloud_asset_endpoint)?)
        .with_retry_policy(retry_policy(backend))
        .with_attempt_timeout(backend.read_timeout)
        .build()
        .await
        .map_err(|e| GcpError::Other(format!("building the Cloud Asset client ({e})")))
}

/// Every project Resource Manager's `searchProjects` finds for `filter`, sorted, once each.
pub async fn search_projects(projects: &Projects, filter: &str) -> Result<Vec<ProjectId>, GcpError> {
    let mut items = projects.search_projects().set_query(filter).by_item();
    let mut found = BTreeSet::new();
    while let Some(project) = items.next().await {
        let project = project.map_err(|e| GcpError::from_sdk("searchProjects", &e))?;
        if let Ok(id) = ProjectId::parse(&project.project_id) {
            found.insert(id);
        }
    }
    Ok(found.into_iter().collect())
}

/// The core's binding for the SDK's.
fn core_binding(binding: &google_cloud_iam_v1::model::Binding) -> Binding {
    Binding {
        role: binding.role.clone(),
        members: binding.members.clone(),
        condition: binding.condition.as_ref().map(|c| Expr {
            expression: c.expression.clone(),
            title: c.title.clone(),
            description: c.description.clone(),
            location: c.location.clone(),
        }),
    }
}
