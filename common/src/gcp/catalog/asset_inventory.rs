//! Eligibility without Policy Analyzer: a project's effective policies from Cloud Asset
//! (`batchGetEffectiveIamPolicies`: the project's and every ancestor's within the scope, 100 a
//! minute, no daily cap), the user's groups and a group's users from Cloud Identity (nested,
//! every page), and every decision made by the pure core ([`crate::eligibility`]).
//!
//! Calls per question: entitlements 1 Cloud Asset + 1 Cloud Identity (with transitive search);
//! peers 1 Cloud Asset + 2 Cloud Identity per group holding the role; projects 1 Cloud
//! Identity + 1 `searchAllIamPolicies` per 16 principals (+1 `searchAllResources` per folder
//! or organization with an eligible binding). Listings may reuse group memberships and the
//! project list for `RESOURCE_CACHE_TIMEOUT`, and a resource's effective policies for the
//! shorter `POLICY_CACHE_TIMEOUT` (they hold the activation a person has just made: the page
//! asks afresh after a change), each key fetched by one caller at a time while the others
//! wait for its answer. Every uncached read of a listing is charged to its caller's
//! [`ReadBudget`]: one per Cloud Asset call (each page, each scope asked), one per Cloud
//! Identity lookup (a person's groups, a group's members) and one per project search.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use google_cloud_asset_v1::client::AssetService;
use google_cloud_gax::paginator::Paginator as _;
use google_cloud_resourcemanager_v3::client::Projects;

use super::{Cache, Freshness, ReadBudget, Reviewers, UserEntitlements, asset_service, core_binding, search_projects};
use crate::condition::ActivationType;
use crate::config::{BackendSettings, ScopeSettings};
use crate::eligibility;
use crate::eligibility::Holding;
use crate::email::Email;
use crate::entitlement::EntitlementId;
use crate::entitlement::{Entitlement, ProjectId, ResourceId};
use crate::gcp::groups::GroupDirectory;
use crate::gcp::rest::RestClient;
use crate::gcp::{GcpError, resource_manager};
use crate::policy::Binding;
use crate::timestamp::Timestamp;

const RESOURCE_MANAGER: &str = "//cloudresourcemanager.googleapis.com/";
const PROJECT_TYPE: &str = "cloudresourcemanager.googleapis.com/Project";

/// Principals per `searchAllIamPolicies` query, so that a user in many groups still gets a
/// query of reasonable length.
const PRINCIPALS_PER_QUERY: usize = 16;

/// How long the scope a resource was found in is remembered: projects rarely move.
const SCOPE_MEMORY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Resources whose effective policies are remembered at most: a large organization's can be
/// a few hundred KiB each.
const POLICIES_REMEMBERED: usize = 256;

#[derive(Debug, Clone)]
pub struct AssetInventoryCatalog {
    assets: AssetService,
    groups: Arc<GroupDirectory>,
    /// Built only for `AVAILABLE_PROJECTS_QUERY`.
    projects: Option<Projects>,
    scope: ScopeSettings,
    /// Effective policies by resource name, for `POLICY_CACHE_TIMEOUT`.
    policies: Arc<Cache<Arc<Vec<Binding>>>>,
    groups_of: Arc<Cache<BTreeSet<String>>>,
    places_of: Arc<Cache<(Vec<ProjectId>, Vec<String>)>>,
    members_of: Arc<Cache<BTreeSet<Email>>>,
    /// With several scopes: the scope a resource was found in. Never a decision: Google
    /// checks that a resource is within the scope asked, so a stale entry costs one call.
    scope_of: Arc<Cache<String>>,
    /// A listing's purse; `None` outside listings (requests, approvals, the sweeper).
    budget: Option<ReadBudget>,
    freshness: Freshness,
}

impl AssetInventoryCatalog {
    pub async fn new(backend: &BackendSettings, scope: &ScopeSettings) -> Result<AssetInventoryCatalog, GcpError> {
        let assets = asset_service(backend).await?;
        let http = crate::gcp::jwks::JwksCache::http_client(backend);
        let rest = RestClient::new(http, &backend.cloud_identity_endpoint, &[crate::gcp::groups::SCOPE])?;
        let projects = match scope.available_projects_query {
            None => None,
            Some(_) => Some(resource_manager(backend, Some(backend.read_timeout)).await?),
        };
        let timeout = scope.cache_timeout;
        Ok(AssetInventoryCatalog {
            assets,
            groups: Arc::new(GroupDirectory::new(rest)),
            projects,
            scope: scope.clone(),
            policies: Arc::new(Cache::with_capacity(scope.policy_cache_timeout, POLICIES_REMEMBERED)),
            groups_of: Arc::new(Cache::new(timeout)),
            places_of: Arc::new(Cache::new(timeout)),
            members_of: Arc::new(Cache::new(timeout)),
            scope_of: Arc::new(Cache::new(SCOPE_MEMORY)),
            budget: None,
            freshness: Freshness::Stored,
        })
    }

    /// The same catalog (the same caches) for one listing: see [`super::AnyCatalog::for_listing`].
    pub fn for_listing(&self, budget: ReadBudget, freshness: Freshness) -> AssetInventoryCatalog {
        AssetInventoryCatalog { budget: Some(budget), freshness, ..self.clone() }
    }

    /// Charges one Google read to the listing's caller, before it is made.
    fn spend(&self) -> Result<(), GcpError> {
        self.budget.as_ref().map_or(Ok(()), ReadBudget::spend)
    }

    /// Every binding that applies to `resource`, stored for `POLICY_CACHE_TIMEOUT`: from the
    /// store unless the listing asks afresh, one caller fetching while the others wait.
    async fn effective_policies(&self, resource: &ResourceId) -> Result<Arc<Vec<Binding>>, GcpError> {
        let name = resource.resource_name();
        let read = || async { self.effective_bindings(resource).await.map(Arc::new) };
        match self.freshness {
            Freshness::Stored => self.policies.get_or_fetch(&name, read).await,
            Freshness::Reload => {
                let bindings = read().await?;
                self.policies.put(&name, bindings.clone());
                Ok(bindings)
            }
        }
    }

    /// Every binding that applies to `resource`: its own policy's and its ancestors' up to the
    /// scope that holds it. With several scopes, the scope it was last found in is asked
    /// first, and a scope that answers "not here" hands on to the next.
    async fn effective_bindings(&self, resource: &ResourceId) -> Result<Vec<Binding>, GcpError> {
        let name = resource.resource_name();
        let known = self.scope_of.get(&name);
        let mut last = None;
        for scope in scope_order(&name, &self.scope.resource_scopes, known.as_deref()) {
            match self.effective_bindings_in(scope, resource).await {
                Ok(bindings) => {
                    self.remember(&name, scope);
                    return Ok(bindings);
                }
                Err(error @ (GcpError::InvalidArgument(_) | GcpError::NotFound(_) | GcpError::Denied(_))) => {
                    last = Some(error)
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| GcpError::InvalidArgument(format!("{name} is in no RESOURCE_SCOPE"))))
    }

    async fn effective_bindings_in(&self, scope: &str, resource: &ResourceId) -> Result<Vec<Binding>, GcpError> {
        self.spend()?;
        let response = self
            .assets
            .batch_get_effective_iam_policies()
            .set_scope(scope)
            .set_names([resource.full_resource_name()])
            .send()
            .await
            .map_err(|e| GcpError::from_sdk("batchGetEffectiveIamPolicies", &e))?;
        let bindings: Vec<Binding> = response
            .policy_results
            .iter()
            .flat_map(|result| result.policies.iter())
            .filter_map(|info| info.policy.as_ref())
            .flat_map(|policy| policy.bindings.iter().map(core_binding))
            .collect();
        Ok(bindings)
    }

    /// The groups the user is in, nested ones included.
    pub async fn groups_of(&self, user: &Email) -> Result<BTreeSet<String>, GcpError> {
        let lookup = || async {
            self.spend()?;
            self.groups.groups_of(user).await
        };
        self.groups_of.get_or_fetch(user.as_str(), lookup).await
    }

    async fn members_of(&self, group: &str) -> Result<BTreeSet<Email>, GcpError> {
        let lookup = || async {
            self.spend()?;
            self.groups.members_of(group).await
        };
        self.members_of.get_or_fetch(group, lookup).await
    }

    /// The projects, and the folders and organization, where the user holds something
    /// eligible: from `searchAllIamPolicies`, folders and organization expanded to the projects
    /// below them.
    async fn places(&self, user: &Email) -> Result<(Vec<ProjectId>, Vec<String>), GcpError> {
        self.places_of.get_or_fetch(user.as_str(), || self.find_places(user)).await
    }

    async fn find_places(&self, user: &Email) -> Result<(Vec<ProjectId>, Vec<String>), GcpError> {
        let groups = self.groups_of(user).await?;
        let principals = eligibility::principals(user, &groups);
        let now = Timestamp::now();
        let mut projects = BTreeSet::new();
        let mut containers = BTreeSet::new();
        for scope in &self.scope.resource_scopes {
            let mut numbers = BTreeSet::new();
            let mut found = BTreeSet::new();
            let listed: Vec<&String> = principals.iter().collect();
            for chunk in listed.chunks(PRINCIPALS_PER_QUERY) {
                let terms: Vec<String> = chunk.iter().map(|p| format!("\"{p}\"")).collect();
                let mut pages = self
                    .assets
                    .search_all_iam_policies()
                    .set_scope(scope)
                    .set_query(format!("policy:({})", terms.join(" OR ")))
                    .by_page();
                let mut results = Vec::new();
                self.spend()?;
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| GcpError::from_sdk("searchAllIamPolicies", &e))?;
                    if !page.next_page_token.is_empty() {
                        self.spend()?;
                    }
                    results.extend(page.results);
                }
                for result in results {
                    let bindings: Vec<Binding> =
                        result.policy.iter().flat_map(|p| p.bindings.iter().map(core_binding)).collect();
                    if !eligibility::eligible_in(&bindings, &principals, now) {
                        continue;
                    }
                    match attached(&result.resource) {
                        Attached::Project(id) => {
                            found.insert(id);
                        }
                        Attached::ProjectNumber(number) => {
                            numbers.insert(number);
                        }
                        Attached::Container(name) => {
                            found.extend(self.projects_under(&name).await?.into_values());
                            self.remember(&name, scope);
                            containers.insert(name);
                        }
                        Attached::Other => {}
                    }
                }
            }
            if !numbers.is_empty() {
                let by_number = self.projects_under(scope).await?;
                found.extend(numbers.iter().filter_map(|n| by_number.get(n).cloned()));
            }
            for project in &found {
                self.remember(&format!("projects/{project}"), scope);
            }
            projects.extend(found);
        }
        Ok((projects.into_iter().collect(), containers.into_iter().collect()))
    }

    /// With several scopes, which one holds a resource, so that reading its policies asks
    /// that one first.
    fn remember(&self, resource: &str, scope: &str) {
        if self.scope.resource_scopes.len() > 1 {
            self.scope_of.put(resource, scope.to_string());
        }
    }

    /// Every project under a folder or organization (or the scope), by ID and by number.
    async fn projects_under(&self, container: &str) -> Result<BTreeMap<String, ProjectId>, GcpError> {
        let mut pages =
            self.assets.search_all_resources().set_scope(container).set_asset_types([PROJECT_TYPE]).by_page();
        let mut found = BTreeMap::new();
        self.spend()?;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| GcpError::from_sdk("searchAllResources", &e))?;
            if !page.next_page_token.is_empty() {
                self.spend()?;
            }
            found.extend(page.results.iter().filter_map(project_of));
        }
        Ok(found)
    }
}

/// A project found by `searchAllResources`: its number and its ID.
fn project_of(resource: &google_cloud_asset_v1::model::ResourceSearchResult) -> Option<(String, ProjectId)> {
    let id = resource
        .additional_attributes
        .as_ref()
        .and_then(|attributes| attributes.get("projectId"))
        .and_then(|id| id.as_str())
        .and_then(|id| ProjectId::parse(id).ok())?;
    let number = resource.project.strip_prefix("projects/").unwrap_or_default().to_string();
    Some((number, id))
}

/// Where a policy found by `searchAllIamPolicies` is attached.
enum Attached {
    Project(ProjectId),
    ProjectNumber(String),
    Container(String),
    Other,
}

/// The scopes to ask about `resource`, best guess first: the one it was found in, then a
/// scope that is the resource itself, then the rest in their configured order.
fn scope_order<'a>(resource: &str, scopes: &'a [String], known: Option<&str>) -> Vec<&'a str> {
    let mut order: Vec<&str> = scopes.iter().map(String::as_str).collect();
    order.sort_by_key(|scope| (Some(*scope) != known, *scope != resource));
    order
}

fn attached(resource: &str) -> Attached {
    let Some(name) = resource.strip_prefix(RESOURCE_MANAGER) else {
        return Attached::Other;
    };
    match name.split_once('/') {
        Some(("projects", id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            Attached::ProjectNumber(id.to_string())
        }
        Some(("projects", id)) => ProjectId::parse(id).map(Attached::Project).unwrap_or(Attached::Other),
        Some(("folders" | "organizations", _)) => Attached::Container(name.to_string()),
        _ => Attached::Other,
    }
}

// The questions `AnyCatalog` asks, answered from effective policies and groups.
impl AssetInventoryCatalog {
    pub async fn user_entitlements(&self, user: &Email, project: &ResourceId) -> Result<UserEntitlements, GcpError> {
        let (bindings, groups) = tokio::try_join!(self.effective_policies(project), self.groups_of(user))?;
        let principals = eligibility::principals(user, &groups);
        let (entitlements, activations) =
            eligibility::user_entitlements(project, user, &principals, bindings.iter(), Timestamp::now());
        Ok(UserEntitlements { entitlements, activations, warnings: Vec::new() })
    }

    pub async fn reviewers(&self, entitlement: &Entitlement) -> Result<Reviewers, GcpError> {
        let bindings = self.effective_policies(entitlement.id.resource()).await?;
        let now = Timestamp::now();
        let mut sides = [
            eligibility::holders(entitlement, bindings.iter(), now),
            eligibility::designated_approvers(entitlement, bindings.iter(), now),
        ];
        for (users, groups) in &mut sides {
            for group in groups.iter() {
                users.extend(self.members_of(group).await?);
            }
        }
        let [(peers, _), (designated, _)] = sides;
        Ok(Reviewers { peers: peers.into_iter().collect(), designated: designated.into_iter().collect() })
    }

    pub async fn standing(
        &self,
        id: &EntitlementId,
        _kind: ActivationType,
        people: &[Email],
    ) -> Result<BTreeMap<Email, Holding>, GcpError> {
        let groups = futures::future::try_join_all(people.iter().map(|person| self.groups_of(person)));
        let (bindings, groups) = tokio::try_join!(self.effective_bindings(id.resource()), groups)?;
        let now = Timestamp::now();
        Ok(people
            .iter()
            .zip(groups)
            .map(|(person, groups)| {
                let principals = eligibility::principals(person, &groups);
                (person.clone(), eligibility::standing(id, &principals, &bindings, now))
            })
            .collect())
    }

    pub async fn projects(&self, user: &Email) -> Result<Vec<ProjectId>, GcpError> {
        if let (Some(filter), Some(projects)) = (&self.scope.available_projects_query, &self.projects) {
            self.spend()?;
            return search_projects(projects, filter).await;
        }
        Ok(self.places(user).await?.0)
    }

    pub async fn resources(&self, user: &Email) -> Result<Vec<ResourceId>, GcpError> {
        let (projects, containers) =
            if let (Some(filter), Some(projects)) = (&self.scope.available_projects_query, &self.projects) {
                self.spend()?;
                (search_projects(projects, filter).await?, Vec::new())
            } else {
                self.places(user).await?
            };
        let containers = containers.iter().filter_map(|c| ResourceId::parse(c).ok());
        Ok(projects.into_iter().map(ResourceId::Project).chain(containers).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_a_resource_was_found_in_is_asked_first_then_itself_then_the_rest() {
        let scopes: Vec<String> = ["folders/1", "projects/p", "organizations/9"].map(String::from).to_vec();
        assert_eq!(scope_order("projects/q", &scopes, None), ["folders/1", "projects/p", "organizations/9"]);
        assert_eq!(scope_order("projects/p", &scopes, None), ["projects/p", "folders/1", "organizations/9"]);
        assert_eq!(
            scope_order("projects/q", &scopes, Some("organizations/9")),
            ["organizations/9", "folders/1", "projects/p"]
        );
        // A remembered scope that is no longer configured is never asked.
        assert_eq!(scope_order("projects/q", &scopes, Some("folders/7")).len(), 3);
    }
}
