//! The `sweeper` job: walks the projects under `RESOURCE_SCOPE` and removes activation
//! bindings (our title and expression form only) that ended more than a grace period ago, with
//! the same etag-safe update as activations. Expired bindings grant nothing, but IAM limits
//! how many conditional bindings a policy holds; the reference app only purged them on the
//! next activation of the same role.

use common::config::{BackendSettings, ConfigError, Env, ScopeSettings};
use common::entitlement::ProjectId;
use common::gcp::catalog::search_projects;
use common::gcp::iam::IamWriter;
use common::gcp::{GcpError, resource_manager};
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
}

impl Config {
    pub fn read(env: &mut Env<'_>) -> Config {
        Config {
            scope: ScopeSettings::read(env),
            backend: BackendSettings::read(env),
            grace_minutes: env.number("SWEEP_GRACE_PERIOD", 60, 0..=7 * 24 * 60),
            projects_query: env.text("SWEEP_PROJECTS_QUERY", "state:ACTIVE"),
            dry_run: env.boolean("SWEEP_DRY_RUN", false),
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
    pub bindings_removed: usize,
    pub conflicts_retried: u32,
    pub errors: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sweep: projects seen {}, bindings removed {}, conflicts retried {}, errors {}",
            self.projects_seen, self.bindings_removed, self.conflicts_retried, self.errors
        )
    }
}

pub async fn run(config: &Config, now: Timestamp) -> Result<Summary, GcpError> {
    let writer = IamWriter::new(&config.backend).await?;
    let projects = projects(config).await?;
    let ended_before = now.plus_seconds(-(config.grace_minutes as i64) * 60);
    let mut summary = Summary { projects_seen: projects.len(), ..Summary::default() };
    for project in &projects {
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
    Ok(summary)
}

/// The projects under the scope: the project itself, or every project the job can see that
/// matches `SWEEP_PROJECTS_QUERY` (its roles are granted on the scope, so it sees no other).
async fn projects(config: &Config) -> Result<Vec<ProjectId>, GcpError> {
    if let Some(id) = config.scope.resource_scope.strip_prefix("projects/") {
        return Ok(vec![ProjectId::parse(id).map_err(|e| GcpError::InvalidArgument(e.to_string()))?]);
    }
    let client = resource_manager(&config.backend, None).await?;
    search_projects(&client, &config.projects_query).await
}
