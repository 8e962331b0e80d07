//! Eligibility from Cloud Asset's Policy Analyzer (`analyzeIamPolicy`): a user's entitlements
//! and activations on a project, the holders of an entitlement (peers), and the projects a
//! user is eligible on.
//!
//! The analyzer resolves inheritance and nested groups; this module reads its answer with the
//! core's own rules (markers, resource conditions, activation bindings), so the decision
//! logic is the same whatever the source. Without a paid Security Command Center tier Google
//! allows 20 analysis queries a day per organization; past them the answer is 429, which the
//! caller gets as a clear error naming the fix (`RESOURCE_CATALOG=AssetInventory`).
//!
//! Every query names an access time (`conditionContext.accessTime`): without one, Google
//! evaluates a condition on `request.time` as CONDITIONAL (a missing input), so an
//! eligibility that has ended would still count. Google refuses an access time earlier than
//! its own clock, so ours is [`ACCESS_TIME_LEAD_SECONDS`] ahead. Each query also sets an
//! `executionTimeout` shorter than the call's own timeout ([`execution_timeout`]): then a slow
//! analysis comes back partial (flagged, with a warning) instead of timing out on our side and
//! being tried again, which would spend another of the 20 free queries a day. The project
//! listing asks only for bindings that grant `resourcemanager.projects.get`, so that an
//! organization-wide binding is not expanded to every resource below it.

use std::collections::{BTreeMap, BTreeSet};

use google_cloud_asset_v1::client::AssetService;
use google_cloud_asset_v1::model::condition_evaluation::EvaluationValue;
use google_cloud_asset_v1::model::iam_policy_analysis_query as query;
use google_cloud_asset_v1::model::{AnalyzeIamPolicyResponse, IamPolicyAnalysisQuery, IamPolicyAnalysisResult};
use google_cloud_resourcemanager_v3::client::Projects;

use super::{Reviewers, UserEntitlements, asset_service, search_projects};
use crate::activation::read_activation_binding;
use crate::condition::{ActivationType, eligibility, reviewer_condition};
use crate::config::{BackendSettings, ScopeSettings};
use crate::eligibility::Holding;
use crate::email::Email;
use crate::entitlement::{Entitlement, EntitlementId, ProjectId, ResourceId, eligible_entitlement, merge_entitlements};
use crate::gcp::{GcpError, resource_manager};
use crate::policy::Binding;

#[derive(Debug, Clone)]
pub struct PolicyAnalyzerCatalog {
    assets: AssetService,
    /// Built only for `AVAILABLE_PROJECTS_QUERY`: each SDK client costs a load of the TLS
    /// roots at start-up.
    projects: Option<Projects>,
    scope: ScopeSettings,
    execution_timeout: std::time::Duration,
}

const PROJECT_PREFIX: &str = "//cloudresourcemanager.googleapis.com/projects/";

/// How far ahead of our clock the access time is, so that Google, whose clock may be ahead,
/// never finds it in the past ("this value must not be earlier than the current time").
pub const ACCESS_TIME_LEAD_SECONDS: i64 = 30;

/// The permission every eligible role on a project carries, which limits the project listing.
const PROJECT_GET: &str = "resourcemanager.projects.get";

/// The analysis's own time limit, inside the call's timeout `attempt_timeout`: Google answers
/// with partial results "if this field is set with a value less than the RPC deadline"; at or
/// above it, the call times out. Five seconds less, or half of a short timeout.
pub fn execution_timeout(attempt_timeout: std::time::Duration) -> std::time::Duration {
    let margin = std::time::Duration::from_secs(5);
    attempt_timeout.saturating_sub(margin).max(attempt_timeout / 2)
}

impl PolicyAnalyzerCatalog {
    pub async fn new(backend: &BackendSettings, scope: &ScopeSettings) -> Result<PolicyAnalyzerCatalog, GcpError> {
        let assets = asset_service(backend).await?;
        let projects = match scope.available_projects_query {
            None => None,
            Some(_) => Some(resource_manager(backend, Some(backend.read_timeout)).await?),
        };
        Ok(PolicyAnalyzerCatalog {
            assets,
            projects,
            scope: scope.clone(),
            execution_timeout: execution_timeout(backend.read_timeout),
        })
    }

    /// The user's entitlements and activations on `project`, through inherited bindings and
    /// (nested) groups.
    pub async fn user_entitlements(&self, user: &Email, project: &ResourceId) -> Result<UserEntitlements, GcpError> {
        let query = self
            .query()
            .set_resource_selector(query::ResourceSelector::new().set_full_resource_name(project.full_resource_name()))
            // With an identity selector Google resolves the identity's groups itself, and
            // refuses `expandGroups` ("this flag is not allowed to set").
            .set_identity_selector(query::IdentitySelector::new().set_identity(user.iam_member()));
        let response = self.analyze("analyzeIamPolicy (entitlements)", query).await?;
        Ok(read_user_entitlements(&response, user, project))
    }

    /// The peers and the designated approvers, from one analysis of the role on the project.
    pub async fn reviewers(&self, entitlement: &Entitlement) -> Result<Reviewers, GcpError> {
        let id = &entitlement.id;
        let query = self
            .query()
            .set_resource_selector(
                query::ResourceSelector::new().set_full_resource_name(id.resource().full_resource_name()),
            )
            .set_access_selector(query::AccessSelector::new().set_roles([id.role().as_str()]))
            .set_options(query::Options::new().set_expand_groups(true));
        let response = self.analyze("analyzeIamPolicy (holders)", query).await?;
        Ok(Reviewers {
            peers: read_holders(&response, entitlement),
            designated: read_designated(&response, entitlement),
        })
    }

    /// Projects the user can activate something on, or every project matching
    /// `AVAILABLE_PROJECTS_QUERY` when that is set.
    pub async fn projects(&self, user: &Email) -> Result<Vec<ProjectId>, GcpError> {
        if let (Some(filter), Some(projects)) = (&self.scope.available_projects_query, &self.projects) {
            return search_projects(projects, filter).await;
        }
        let response = self.analyze("analyzeIamPolicy (projects)", self.listing(user)).await?;
        Ok(read_projects(&response))
    }

    /// A query on the one scope (configuration refuses several for this catalog), evaluating
    /// conditions at the access time.
    fn query(&self) -> IamPolicyAnalysisQuery {
        let at = crate::timestamp::Timestamp::now().plus_seconds(ACCESS_TIME_LEAD_SECONDS);
        IamPolicyAnalysisQuery::new()
            .set_scope(self.scope.resource_scopes.first().cloned().unwrap_or_default())
            .set_condition_context(
                query::ConditionContext::new()
                    .set_access_time(google_cloud_wkt::Timestamp::clamp(at.unix_seconds(), 0)),
            )
    }

    /// Where `user` holds something, expanded down to the projects: only bindings that
    /// grant `resourcemanager.projects.get`, which every role one activates on a project has.
    fn listing(&self, user: &Email) -> IamPolicyAnalysisQuery {
        self.query()
            .set_identity_selector(query::IdentitySelector::new().set_identity(user.iam_member()))
            .set_access_selector(query::AccessSelector::new().set_permissions([PROJECT_GET]))
            .set_options(query::Options::new().set_expand_resources(true))
    }

    async fn analyze(&self, what: &str, query: IamPolicyAnalysisQuery) -> Result<AnalyzeIamPolicyResponse, GcpError> {
        let seconds = self.execution_timeout.as_secs() as i64;
        let nanos = self.execution_timeout.subsec_nanos() as i32;
        self.assets
            .analyze_iam_policy()
            .set_analysis_query(query)
            .set_execution_timeout(google_cloud_wkt::Duration::clamp(seconds, nanos))
            .send()
            .await
            .map_err(|e| match GcpError::from_sdk(what, &e) {
                GcpError::RateLimited(cause) => GcpError::AnalysisQuota(cause),
                other => other,
            })
    }

    /// How each of `people` stands towards `id`: one analysis of the role on the resource
    /// answers for everyone.
    pub async fn standing(
        &self,
        id: &EntitlementId,
        kind: ActivationType,
        people: &[Email],
    ) -> Result<BTreeMap<Email, Holding>, GcpError> {
        // One analysis of the role on the resource answers for everyone: Google expands groups.
        let reviewers = self.reviewers(&Entitlement { id: id.clone(), activation_type: kind }).await?;
        Ok(people
            .iter()
            .map(|person| {
                let holds = reviewers.peers.contains(person);
                let holding = Holding {
                    jit: holds && kind == ActivationType::Jit,
                    mpa: holds && kind == ActivationType::Mpa,
                    designated: kind == ActivationType::Mpa && reviewers.designated.contains(person),
                };
                (person.clone(), holding)
            })
            .collect())
    }

    /// Projects, folders and the organization the user can activate something on.
    pub async fn resources(&self, user: &Email) -> Result<Vec<ResourceId>, GcpError> {
        if let (Some(filter), Some(projects)) = (&self.scope.available_projects_query, &self.projects) {
            return Ok(search_projects(projects, filter).await?.into_iter().map(ResourceId::Project).collect());
        }
        let response = self.analyze("analyzeIamPolicy (resources)", self.listing(user)).await?;
        let containers: BTreeSet<ResourceId> = results(&response)
            .filter(|result| {
                let eligible = result
                    .iam_binding
                    .as_ref()
                    .and_then(|b| b.condition.as_ref())
                    .is_some_and(|c| eligibility(&c.expression).is_some());
                eligible && !evaluated_false(result)
            })
            .filter_map(|result| {
                result.attached_resource_full_name.strip_prefix("//cloudresourcemanager.googleapis.com/")
            })
            .filter(|name| name.starts_with("folders/") || name.starts_with("organizations/"))
            .filter_map(|name| ResourceId::parse(name).ok())
            .collect();
        Ok(read_projects(&response).into_iter().map(ResourceId::Project).chain(containers).collect())
    }
}

fn results(response: &AnalyzeIamPolicyResponse) -> impl Iterator<Item = &IamPolicyAnalysisResult> {
    response.main_analysis.iter().flat_map(|analysis| analysis.analysis_results.iter())
}

fn core_binding(result: &IamPolicyAnalysisResult) -> Option<Binding> {
    result.iam_binding.as_ref().map(super::core_binding)
}

/// A binding whose condition Google evaluated to false (an eligibility with an expiry clause
/// that has passed, say) grants nothing.
fn evaluated_false(result: &IamPolicyAnalysisResult) -> bool {
    result
        .access_control_lists
        .iter()
        .any(|acl| acl.condition_evaluation.as_ref().is_some_and(|e| e.evaluation_value == EvaluationValue::False))
}

fn read_user_entitlements(response: &AnalyzeIamPolicyResponse, user: &Email, project: &ResourceId) -> UserEntitlements {
    let mut entitlements = Vec::new();
    let mut activations = Vec::new();
    for result in results(response) {
        let Some(binding) = core_binding(result) else {
            continue;
        };
        if let Some(entitlement) = eligible_entitlement(project, &binding) {
            if !evaluated_false(result) {
                entitlements.push(entitlement);
            }
        } else if let Some(activation) = read_activation_binding(&binding).filter(|a| &a.member == user) {
            activations.push(activation);
        }
    }
    let warnings = response
        .main_analysis
        .iter()
        .flat_map(|analysis| analysis.non_critical_errors.iter())
        .map(|state| state.cause.clone())
        .filter(|cause| !cause.is_empty())
        .collect();
    UserEntitlements { entitlements: merge_entitlements(entitlements), activations, warnings }
}

fn read_holders(response: &AnalyzeIamPolicyResponse, entitlement: &Entitlement) -> Vec<Email> {
    let mut holders = BTreeSet::new();
    for result in results(response) {
        let Some(binding) = core_binding(result) else {
            continue;
        };
        let same = eligible_entitlement(entitlement.id.resource(), &binding).is_some_and(|e| &e == entitlement);
        if !same || evaluated_false(result) {
            continue;
        }
        let identities = result.identity_list.iter().flat_map(|list| list.identities.iter());
        holders.extend(
            identities
                .filter_map(|identity| identity.name.strip_prefix("user:"))
                .filter_map(|email| Email::parse(email).ok()),
        );
    }
    holders.into_iter().collect()
}

fn read_designated(response: &AnalyzeIamPolicyResponse, entitlement: &Entitlement) -> Vec<Email> {
    let mut designated = BTreeSet::new();
    for result in results(response) {
        let Some(binding) = core_binding(result) else {
            continue;
        };
        let condition = binding.condition.as_ref().and_then(|c| reviewer_condition(&c.expression));
        let same = condition.is_some_and(|c| c.as_ref() == entitlement.id.resource_condition());
        if !same || evaluated_false(result) {
            continue;
        }
        let identities = result.identity_list.iter().flat_map(|list| list.identities.iter());
        designated.extend(
            identities.filter_map(|i| i.name.strip_prefix("user:")).filter_map(|email| Email::parse(email).ok()),
        );
    }
    designated.into_iter().collect()
}

fn read_projects(response: &AnalyzeIamPolicyResponse) -> Vec<ProjectId> {
    let mut projects = BTreeSet::new();
    for result in results(response) {
        let eligible = result
            .iam_binding
            .as_ref()
            .and_then(|b| b.condition.as_ref())
            .is_some_and(|c| eligibility(&c.expression).is_some());
        if !eligible || evaluated_false(result) {
            continue;
        }
        for acl in &result.access_control_lists {
            for resource in &acl.resources {
                let id = resource.full_resource_name.strip_prefix(PROJECT_PREFIX);
                if let Some(project) = id.and_then(|id| ProjectId::parse(id).ok()) {
                    projects.insert(project);
                }
            }
        }
    }
    projects.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_analysis_stops_before_the_call_times_out() {
        for (attempt, expected) in [(20, 15_000), (10, 5_000), (6, 3_000), (2, 1_000), (1, 500)] {
            let timeout = super::execution_timeout(Duration::from_secs(attempt));
            assert_eq!(timeout, Duration::from_millis(expected), "attempt timeout {attempt} s");
            assert!(timeout < Duration::from_secs(attempt));
        }
    }
}
