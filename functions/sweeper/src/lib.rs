//! The `sweeper` job: walks the projects under `RESOURCE_SCOPE` and removes activation
//! bindings (our title and expression form only) that ended more than a grace period ago, with
//! the same etag-safe update as activations. Expired bindings grant nothing, but IAM limits
//! how many conditional bindings a policy holds; the reference app only purged them on the
//! next activation of the same role.
//!
//! Then it reconciles the request ledger with IAM: an activation a crash left half-done is
//! completed, a revoked or ended grant whose binding is still there loses it, and an active
//! grant whose binding was removed or changed by hand is flagged (`EXTERNALLY_MODIFIED`, as
//! Privileged Access Manager's `externallyModified`).

use std::collections::BTreeSet;

use common::config::{BackendSettings, ConfigError, Env, LedgerSettings, NotificationSettings, ScopeSettings};
use common::entitlement::{ProjectId, ResourceId};
use common::gcp::catalog::search_projects;
use common::gcp::events::publisher_for;
use common::gcp::grants::{Completion, Grants};
use common::gcp::iam::IamWriter;
use common::gcp::ledger::Ledger;
use common::gcp::{GcpError, resource_manager};
use common::lifecycle::{Entry, State};
use common::timestamp::Timestamp;

#[derive(Debug, Clone)]
pub struct Config {
    pub scope: ScopeSettings,
    pub backend: BackendSettings,
    /// `SWEEP_GRACE_PERIOD`: minutes after its end before a binding is removed.
    pub grace_minutes: u64,
    /// `SWEEP_PROJECTS_QUERY`: which projects to walk when the scope is a folder or an
    /// organization (Resource Manager search syntax).
    pub projects_query: String,
    /// `SWEEP_DRY_RUN` (or `--dry-run`): report, remove nothing.
    pub dry_run: bool,
    pub ledger: LedgerSettings,
    pub notification: NotificationSettings,
}

impl Config {
    pub fn read(env: &mut Env<'_>) -> Config {
        Config {
            scope: ScopeSettings::read(env),
            backend: BackendSettings::read(env),
            grace_minutes: env.number("SWEEP_GRACE_PERIOD", 60, 0..=7 * 24 * 60),
            projects_query: env.text("SWEEP_PROJECTS_QUERY", "state:ACTIVE"),
            dry_run: env.boolean("SWEEP_DRY_RUN", false),
            ledger: LedgerSettings::read(env),
            notification: NotificationSettings::read(env),
        }
    }
}

pub fn config_from_env() -> Result<Config, ConfigError> {
    let mut env = Env::from_process();
    let config = Config::read(&mut env);
    env.finish().map(|_| config)
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
    /// Ledger requests whose activation or removal this run completed.
    pub requests_completed: usize,
    /// Active grants found without their binding.
    pub requests_flagged: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sweep: projects seen {}, folders and organizations seen {}, bindings removed {}, conflicts retried {}, errors {}, requests completed {}, requests flagged {}",
            self.projects_seen,
            self.containers_seen,
            self.bindings_removed,
            self.conflicts_retried,
            self.errors,
            self.requests_completed,
            self.requests_flagged
        )
    }
}

pub async fn run(config: &Config, now: Timestamp) -> Result<Summary, GcpError> {
    let writer = IamWriter::new(&config.backend).await?;
    let projects = projects(config).await?;
    let containers = writer.containers_under(&config.scope.resource_scopes).await?;
    let ended_before = now.plus_seconds(-(config.grace_minutes as i64) * 60);
    let mut summary =
        Summary { projects_seen: projects.len(), containers_seen: containers.len(), ..Summary::default() };
    let policies = projects.into_iter().map(ResourceId::Project).chain(containers);
    for project in &policies.collect::<Vec<_>>() {
        match writer.sweep(project, ended_before, config.dry_run).await {
            Ok(sweep) => {
                summary.conflicts_retried += sweep.conflicts_retried;
                summary.bindings_removed += sweep.removed.len();
                for binding in &sweep.removed {
                    tracing::info!(
                        project = %project,
                        member = %binding.member,
                        role = %binding.role,
                        ended = %binding.window.end(),
                        dry_run = config.dry_run,
                        "{}",
                        if config.dry_run { "would remove expired activation" } else { "removed expired activation" }
                    );
                }
            }
            Err(error) => {
                summary.errors += 1;
                tracing::error!(project = %project, %error, "sweeping the project failed");
            }
        }
    }
    if !config.dry_run {
        reconcile(config, writer, now, &mut summary).await?;
    }
    Ok(summary)
}

/// How many open requests one run looks at: the newest.
const OPEN_REQUESTS: u32 = 1_000;

/// Brings each open request in the ledger in line with IAM.
async fn reconcile(config: &Config, writer: IamWriter, now: Timestamp, summary: &mut Summary) -> Result<(), GcpError> {
    let http = common::gcp::jwks::JwksCache::http_client(&config.backend);
    let ledger = Ledger::new(http, &config.ledger.endpoint, &config.ledger.database, config.ledger.retention_days)?;
    let grants = Grants {
        ledger: ledger.clone(),
        writer,
        publisher: publisher_for(&config.backend, &config.notification).await?,
        base_url: config.notification.base_url.clone(),
    };
    for stored in ledger.open(OPEN_REQUESTS).await? {
        let id = stored.record.id.clone();
        let outcome = match stored.record.state(now) {
            State::ApprovalAwaited => Ok(()),
            State::Activating => grants.complete_activation(stored).await.map(|completion| {
                if matches!(completion, Completion::Activated(_)) {
                    summary.requests_completed += 1;
                }
            }),
            State::Active | State::Scheduled => flag_if_modified(&grants, &stored.record, now, summary).await,
            State::Revoked | State::Ended => {
                match grants.remove_binding(&stored.record, "Completing a revocation").await {
                    Ok(removed) => {
                        summary.requests_completed += usize::from(removed > 0);
                        ledger.update(&stored.record, &stored.update_time).await.map(|_| ())
                    }
                    Err(error) => Err(error),
                }
            }
            // Closed: written again so that it is no longer listed as open.
            _ => ledger.update(&stored.record, &stored.update_time).await.map(|_| ()),
        };
        if let Err(error) = outcome {
            summary.errors += 1;
            tracing::error!(activation_id = %id, %error, "reconciling the request failed");
        }
    }
    Ok(())
}

async fn flag_if_modified(
    grants: &Grants,
    record: &common::lifecycle::Record,
    now: Timestamp,
    summary: &mut Summary,
) -> Result<(), GcpError> {
    if record.externally_modified() || grants.bindings_present(record).await? {
        return Ok(());
    }
    let entry = Entry::ExternallyModified { at: now.unix_seconds() };
    let written = grants
        .ledger
        .modify::<GcpError>(&record.id, |current| {
            if current.externally_modified() {
                return Ok(None);
            }
            let mut next = current.clone();
            next.timeline.push(entry.clone());
            Ok(Some(next))
        })
        .await?;
    summary.requests_flagged += 1;
    tracing::warn!(activation_id = %record.id, "an active grant's binding was removed or changed outside JIT access");
    if let Some(stored) = written {
        grants.announce(&stored.record, &entry).await;
    }
    Ok(())
}

/// The projects under the scopes: each scope that is a project, and, when any scope is a
/// folder or organization, every project the job can see that matches `SWEEP_PROJECTS_QUERY`
/// (its roles are granted on the scopes, so it sees no other).
async fn projects(config: &Config) -> Result<Vec<ProjectId>, GcpError> {
    let mut projects = BTreeSet::new();
    let mut containers = false;
    for scope in &config.scope.resource_scopes {
        match scope.strip_prefix("projects/") {
            Some(id) => {
                projects.insert(ProjectId::parse(id).map_err(|e| GcpError::InvalidArgument(e.to_string()))?);
            }
            None => containers = true,
        }
    }
    if containers {
        let client = resource_manager(&config.backend, None).await?;
        projects.extend(search_projects(&client, &config.projects_query).await?);
    }
    Ok(projects.into_iter().collect())
}
