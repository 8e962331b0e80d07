//! The `sweeper` job (Cloud Scheduler runs it every minute; the local run does too): it makes
//! IAM hold what the request ledger says, and removes what nothing owns.
//!
//! One run: every open request in the ledger, page by page; then each resource's policy under
//! `RESOURCE_SCOPE`, read once; then
//! - activation bindings (our title and form only) that ended more than a grace period ago
//!   are removed, with the same etag-safe update as activations (expired bindings grant
//!   nothing, but IAM bounds how many conditional bindings a policy holds);
//! - each open request goes through the one door (`common::door::Door::reconcile`): what a
//!   crash, a timeout or an outage left half-done is completed (activating, extending,
//!   revoking, ending), a live grant's binding is set to the ledger's window, a live grant
//!   whose binding was removed by hand is flagged (`EXTERNALLY_MODIFIED`, as Privileged
//!   Access Manager's `externallyModified`), and a closed request is written again as closed;
//! - a live binding that names a request the ledger does not hold as live (closed, unknown,
//!   or failing verification) is removed: no binding of ours belongs to no request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::activation::ActivationBinding;
use common::config::Env;
use common::door::{Door, Reconciled, grants_by_request};
use common::entitlement::{ProjectId, ResourceId};
use common::gcp::catalog::search_projects;
use common::gcp::{GcpError, resource_manager};
use common::policy::Policy;
use common::timestamp::Timestamp;

#[derive(Debug, Clone)]
pub struct Config {
    /// What the door decides with: the same settings as the HTTP functions, but IAP's.
    pub decisions: common::config::Config,
    /// `SWEEP_GRACE_PERIOD`: minutes after its end before a binding is removed.
    pub grace_minutes: u64,
    /// `SWEEP_PROJECTS_QUERY`: which projects to walk when the scope is a folder or an
    /// organization (Resource Manager search syntax).
    pub projects_query: String,
    /// `SWEEP_DRY_RUN` (or `--dry-run`): report, remove nothing.
    pub dry_run: bool,
    /// Open requests per ledger query; every page is read (not a setting: tests page small).
    pub page_size: u32,
}

impl Config {
    pub fn read(env: &mut Env<'_>) -> Config {
        Config {
            decisions: common::config::Config::read_without_iap(env),
            grace_minutes: env.number("SWEEP_GRACE_PERIOD", 60, 0..=7 * 24 * 60),
            projects_query: env.text("SWEEP_PROJECTS_QUERY", "state:ACTIVE"),
            dry_run: env.boolean("SWEEP_DRY_RUN", false),
            page_size: PAGE,
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub projects_seen: usize,
    /// Folders and the organization, when the scope is one.
    pub containers_seen: usize,
    pub bindings_removed: usize,
    pub conflicts_retried: u32,
    pub errors: usize,
    /// Open requests read from the ledger.
    pub requests_seen: usize,
    /// Requests whose activation, extension, revocation or end this run completed.
    pub requests_completed: usize,
    /// Active grants found without their binding.
    pub requests_flagged: usize,
    /// Live grants whose binding was set back to the ledger's window.
    pub bindings_rewritten: usize,
    /// Closed requests written again as closed.
    pub requests_closed: usize,
    /// Live bindings no live request owned, removed.
    pub unowned_removed: usize,
    /// Emergency grants not ratified by their deadline: escalated to the administrators.
    pub break_glass_escalated: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sweep: projects seen {}, folders and organizations seen {}, bindings removed {}, conflicts retried {}, errors {}, open requests {}, completed {}, flagged {}, rewritten {}, closed {}, unowned bindings removed {}, break glass escalated {}",
            self.projects_seen,
            self.containers_seen,
            self.bindings_removed,
            self.conflicts_retried,
            self.errors,
            self.requests_seen,
            self.requests_completed,
            self.requests_flagged,
            self.bindings_rewritten,
            self.requests_closed,
            self.unowned_removed,
            self.break_glass_escalated,
        )
    }
}

/// How many open requests one ledger query reads; every page is read.
const PAGE: u32 = 300;

pub async fn run(config: &Config, now: Timestamp) -> Result<Summary, GcpError> {
    let door = Door::new(Arc::new(config.decisions.clone()), None).await?;
    let writer = door.writer();
    let projects = projects(config).await?;
    let containers = writer.containers_under(&config.decisions.scope.resource_scopes).await?;
    let mut summary =
        Summary { projects_seen: projects.len(), containers_seen: containers.len(), ..Summary::default() };
    // The ledger first, the policies after: a grant the ledger calls active had its binding
    // written before, so a policy read later shows it unless it was removed.
    let open = if config.dry_run { Vec::new() } else { open_requests(&door, config.page_size, &mut summary).await? };
    let resources: Vec<ResourceId> = projects.into_iter().map(ResourceId::Project).chain(containers).collect();
    let mut policies = BTreeMap::new();
    for resource in resources {
        match writer.read(&resource).await {
            Ok(policy) => {
                policies.insert(resource, policy);
            }
            Err(error) => {
                summary.errors += 1;
                tracing::error!(resource = %resource, %error, "reading the policy failed");
            }
        }
    }
    sweep_expired(config, &door, &policies, now, &mut summary).await;
    if config.dry_run {
        return Ok(summary);
    }
    let mut live = BTreeSet::new();
    for (id, verified) in open {
        let Ok(verified) = verified else { continue };
        let snapshot = resource_of(verified.record()).and_then(|r| policies.get(&r)).map(ours).unwrap_or_default();
        match door.reconcile(verified.clone(), &snapshot).await {
            Ok(outcome) => count(&mut summary, outcome),
            Err(error) => {
                summary.errors += 1;
                tracing::error!(activation_id = %id, code = error.code(), reason = error.message(), "reconciling the request failed");
            }
        }
        if verified.record().state(Timestamp::now()).is_live() {
            live.insert(id);
        }
    }
    for (resource, policy) in &policies {
        for (id, bindings) in grants_by_request(policy) {
            let granting = bindings.iter().any(|b| b.window.end() > now);
            if !granting || live.contains(&id) {
                continue;
            }
            match door.remove_unowned(resource, &id).await {
                Ok(true) => {
                    summary.unowned_removed += 1;
                    tracing::warn!(resource = %resource, activation_id = %id, "removed a binding no live request owns");
                }
                Ok(false) => {}
                Err(error) => {
                    summary.errors += 1;
                    tracing::error!(resource = %resource, activation_id = %id, code = error.code(), reason = error.message(), "removing an unowned binding failed");
                }
            }
        }
    }
    Ok(summary)
}

/// Every open request, page by page: verified, or the reason it is not.
async fn open_requests(
    door: &Door,
    page_size: u32,
    summary: &mut Summary,
) -> Result<Vec<(String, Result<common::door::Verified, common::http::ApiError>)>, GcpError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = door
            .reader()
            .open_page(after.as_deref(), page_size)
            .await
            .map_err(|error| GcpError::Unavailable(format!("listing open requests ({})", error.message())))?;
        let full = page.len() as u32 == page_size;
        after = page.last().map(|(id, _)| id.clone());
        for (id, verified) in &page {
            if let Err(error) = verified {
                summary.errors += 1;
                tracing::error!(activation_id = %id, code = error.code(), "an open request failed verification; its bindings are removed as unowned");
            }
        }
        all.extend(page);
        if !full {
            break;
        }
    }
    summary.requests_seen = all.len();
    Ok(all)
}

fn count(summary: &mut Summary, outcome: Reconciled) {
    match outcome {
        Reconciled::Unchanged => {}
        Reconciled::Completed => summary.requests_completed += 1,
        Reconciled::Rewritten => summary.bindings_rewritten += 1,
        Reconciled::Flagged => summary.requests_flagged += 1,
        Reconciled::Closed => summary.requests_closed += 1,
        Reconciled::Escalated => summary.break_glass_escalated += 1,
    }
}

/// Removes, from each policy read, the bindings that ended more than the grace period ago.
async fn sweep_expired(
    config: &Config,
    door: &Door,
    policies: &BTreeMap<ResourceId, Policy>,
    now: Timestamp,
    summary: &mut Summary,
) {
    let ended_before = now.plus_seconds(-(config.grace_minutes as i64) * 60);
    for (resource, policy) in policies {
        match door.writer().sweep(resource, policy.clone(), ended_before, config.dry_run).await {
            Ok(sweep) => {
                summary.conflicts_retried += sweep.conflicts_retried;
                summary.bindings_removed += sweep.removed.len();
                for binding in &sweep.removed {
                    tracing::info!(
                        resource = %resource,
                        member = %binding.member,
                        role = %binding.role,
                        ended = %binding.window.end(),
                        activation_id = binding.request.as_deref().unwrap_or(""),
                        dry_run = config.dry_run,
                        "{}",
                        if config.dry_run { "would remove expired activation" } else { "removed expired activation" }
                    );
                }
            }
            Err(error) => {
                summary.errors += 1;
                tracing::error!(resource = %resource, %error, "sweeping the resource failed");
            }
        }
    }
}

/// Our activation bindings on a policy.
fn ours(policy: &Policy) -> Vec<ActivationBinding> {
    policy.bindings.iter().filter_map(common::activation::read_activation_binding).collect()
}

fn resource_of(record: &common::lifecycle::Record) -> Option<ResourceId> {
    let first = record.entitlements.first()?;
    common::entitlement::EntitlementId::parse(first).ok().map(|id| id.resource().clone())
}

/// The projects under the scopes: each scope that is a project, and, when any scope is a
/// folder or organization, every project the job can see that matches `SWEEP_PROJECTS_QUERY`
/// (its roles are granted on the scopes, so it sees no other).
async fn projects(config: &Config) -> Result<Vec<ProjectId>, GcpError> {
    let mut projects = BTreeSet::new();
    let mut containers = false;
    for scope in &config.decisions.scope.resource_scopes {
        match scope.strip_prefix("projects/") {
            Some(id) => {
                projects.insert(ProjectId::parse(id).map_err(|e| GcpError::InvalidArgument(e.to_string()))?);
            }
            None => containers = true,
        }
    }
    if containers {
        let client = resource_manager(&config.decisions.backend, None).await?;
        projects.extend(search_projects(&client, &config.projects_query).await?);
    }
    Ok(projects.into_iter().collect())
}
