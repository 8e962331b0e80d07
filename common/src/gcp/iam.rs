//! Writes activation bindings with Resource Manager: read the policy (version 3), apply the
//! core's pure update, write it back with the etag, and on a conflict read again and retry,
//! with jittered backoff and a bounded number of attempts. Projects, folders and the
//! organization each have their own client; the last two are built on first use, since each
//! client loads the TLS roots and most functions never touch a folder.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use google_cloud_gax::paginator::ItemPaginator as _;
use google_cloud_iam_v1::model::{GetPolicyOptions, Policy as SdkPolicy};
use google_cloud_resourcemanager_v3::client::{Folders, Organizations, Projects};
use tokio::sync::OnceCell;

use crate::activation::{ActivationBinding, read_activation_binding};
use crate::config::BackendSettings;
use crate::entitlement::ResourceId;
use crate::gcp::{GcpError, credentials_for, resource_manager, retry_policy, with_request_reason};
use crate::policy::{Binding, CONDITIONAL_POLICY_VERSION, GrantKey, Policy, remove_expired_activations, set_grant};
use crate::timestamp::Timestamp;

/// A Resource Manager client as every writer here builds it; the SDK's clients share no
/// builder trait, hence a macro.
macro_rules! build_client {
    ($client:ident, $backend:expr, $what:literal) => {
        $client::builder()
            .with_endpoint(&$backend.resource_manager_endpoint)
            .with_credentials(credentials_for(&$backend.resource_manager_endpoint)?)
            .with_retry_policy(retry_policy($backend))
            .with_attempt_timeout($backend.read_timeout.max($backend.write_timeout))
            .build()
            .await
            .map_err(|e| GcpError::Other(format!("building the {} client ({e})", $what)))
    };
}

/// Four attempts, as the reference app; each re-reads the policy.
pub const MAX_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone)]
pub struct IamWriter {
    client: Projects,
    folders: std::sync::Arc<OnceCell<Folders>>,
    organizations: std::sync::Arc<OnceCell<Organizations>>,
    backend: BackendSettings,
    max_attempts: u32,
    base_delay: Duration,
}

/// What sweeping one project did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    pub removed: Vec<ActivationBinding>,
    pub conflicts_retried: u32,
}

impl IamWriter {
    pub async fn new(backend: &BackendSettings) -> Result<IamWriter, GcpError> {
        let client = resource_manager(backend, Some(backend.read_timeout.max(backend.write_timeout))).await?;
        Ok(IamWriter {
            client,
            folders: Default::default(),
            organizations: Default::default(),
            backend: backend.clone(),
            max_attempts: MAX_ATTEMPTS,
            base_delay: Duration::from_millis(200),
        })
    }

    /// Makes `grant`'s bindings on `resource` exactly `bindings` (none removes them), and
    /// removes those of the `superseded` grants in the same write: read the policy (or start
    /// from `prefetched`, read moments ago), apply the pure update, write it with the etag,
    /// and on a conflict read again. `true` when it wrote. `reason` goes to Cloud Audit Logs
    /// as `x-goog-request-reason`. A refusal Google means (an organization policy refusing
    /// the member: `FAILED_PRECONDITION`) is returned at once, never retried as a race.
    pub async fn set_grant(
        &self,
        resource: &ResourceId,
        grant: &GrantKey,
        bindings: &[Binding],
        superseded: &[GrantKey],
        reason: &str,
        prefetched: Option<Policy>,
    ) -> Result<bool, GcpError> {
        self.set_grant_within(resource, grant, bindings, superseded, reason, prefetched, self.max_attempts).await
    }

    /// As `set_grant`, one attempt: a conflict is returned, for a caller that reads the
    /// request ledger again before it writes again (the door: the policy may have changed
    /// because the request was revoked meanwhile).
    pub async fn set_grant_once(
        &self,
        resource: &ResourceId,
        grant: &GrantKey,
        bindings: &[Binding],
        superseded: &[GrantKey],
        reason: &str,
        prefetched: Option<Policy>,
    ) -> Result<bool, GcpError> {
        self.set_grant_within(resource, grant, bindings, superseded, reason, prefetched, 1).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn set_grant_within(
        &self,
        resource: &ResourceId,
        grant: &GrantKey,
        bindings: &[Binding],
        superseded: &[GrantKey],
        reason: &str,
        prefetched: Option<Policy>,
        max_attempts: u32,
    ) -> Result<bool, GcpError> {
        let mut prefetched = prefetched;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let policy = match prefetched.take() {
                Some(policy) => policy,
                None => self.read(resource).await?,
            };
            let Some((updated, _)) = set_grant(&policy, grant, bindings, superseded) else {
                return Ok(false);
            };
            match with_request_reason(reason, self.write(resource, updated)).await {
                Ok(()) => return Ok(true),
                Err(error) if error.is_conflict() && attempt < max_attempts => {
                    tracing::info!(resource = %resource, attempt, "policy changed underneath us, retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(error) if error.is_conflict() => {
                    return Err(GcpError::Conflict(format!(
                        "setIamPolicy on {resource}: still conflicting after {attempt} attempts"
                    )));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The jittered pause before the `attempt`-th write after a conflict.
    pub fn conflict_pause(&self, attempt: u32) -> Duration {
        self.backoff(attempt)
    }

    /// The folders and organizations whose policies may hold activations under `scopes`: each
    /// scope that is a folder or an organization, and every folder below one, each once.
    /// `folders.search` (one listing for all scopes) lists the folders the caller may see; the
    /// ancestry is walked here.
    pub async fn containers_under(&self, scopes: &[String]) -> Result<Vec<ResourceId>, GcpError> {
        let roots: Vec<&String> =
            scopes.iter().filter(|s| s.starts_with("folders/") || s.starts_with("organizations/")).collect();
        if roots.is_empty() {
            return Ok(Vec::new());
        }
        let mut parents = BTreeMap::new();
        // Deleted folders (DELETE_REQUESTED) are listed too unless the query asks for active ones.
        let mut folders = self.folders().await?.search_folders().set_query("state=ACTIVE").by_item();
        while let Some(folder) = folders.next().await {
            let folder = folder.map_err(|e| GcpError::from_sdk("searchFolders", &e))?;
            parents.insert(folder.name, folder.parent);
        }
        let mut found = BTreeSet::new();
        for root in roots {
            found.insert(root.as_str());
            found.extend(crate::entitlement::descendants(root, &parents));
        }
        Ok(found.into_iter().filter_map(|name| ResourceId::parse(name).ok()).collect())
    }

    /// Removes activation bindings that ended before `ended_before`, starting from the policy
    /// the sweeper read. With `dry_run`, reports what it would remove and writes nothing.
    pub async fn sweep(
        &self,
        project: &ResourceId,
        policy: Policy,
        ended_before: Timestamp,
        dry_run: bool,
    ) -> Result<Sweep, GcpError> {
        self.remove(
            project,
            |policy| remove_expired_activations(policy, ended_before),
            dry_run,
            "Removing expired JIT access activations",
            Some(policy),
        )
        .await
    }

    /// The activation bindings on a resource, ours by title and form.
    pub async fn activations(&self, resource: &ResourceId) -> Result<Vec<ActivationBinding>, GcpError> {
        Ok(self.read(resource).await?.bindings.iter().filter_map(read_activation_binding).collect())
    }

    /// Removes what `update` selects, starting from `prefetched` when given.
    async fn remove(
        &self,
        project: &ResourceId,
        update: impl Fn(&Policy) -> Option<(Policy, Vec<ActivationBinding>)>,
        dry_run: bool,
        reason: &str,
        mut prefetched: Option<Policy>,
    ) -> Result<Sweep, GcpError> {
        let mut conflicts_retried = 0;
        loop {
            let policy = match prefetched.take() {
                Some(policy) => policy,
                None => self.read(project).await?,
            };
            let Some((updated, removed)) = update(&policy) else {
                return Ok(Sweep { removed: Vec::new(), conflicts_retried });
            };
            if dry_run {
                return Ok(Sweep { removed, conflicts_retried });
            }
            match with_request_reason(reason, self.write(project, updated)).await {
                Ok(()) => {
                    return Ok(Sweep { removed, conflicts_retried });
                }
                Err(error) if error.is_conflict() && conflicts_retried + 1 < self.max_attempts => {
                    conflicts_retried += 1;
                    tokio::time::sleep(self.backoff(conflicts_retried)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The resource's policy, version 3.
    pub async fn read(&self, resource: &ResourceId) -> Result<Policy, GcpError> {
        // Without version 3, conditional bindings would come back mangled.
        let options = GetPolicyOptions::new().set_requested_policy_version(CONDITIONAL_POLICY_VERSION);
        let name = resource.resource_name();
        let policy = match resource {
            ResourceId::Project(_) => self.client.get_iam_policy().set_resource(name).set_options(options).send().await,
            ResourceId::Folder(_) => {
                self.folders().await?.get_iam_policy().set_resource(name).set_options(options).send().await
            }
            ResourceId::Organization(_) => {
                self.organizations().await?.get_iam_policy().set_resource(name).set_options(options).send().await
            }
        }
        .map_err(|e| GcpError::from_sdk("getIamPolicy", &e))?;
        from_sdk(&policy)
    }

    async fn write(&self, resource: &ResourceId, policy: Policy) -> Result<(), GcpError> {
        let name = resource.resource_name();
        let policy = to_sdk(&policy)?;
        match resource {
            ResourceId::Project(_) => self.client.set_iam_policy().set_resource(name).set_policy(policy).send().await,
            ResourceId::Folder(_) => {
                self.folders().await?.set_iam_policy().set_resource(name).set_policy(policy).send().await
            }
            ResourceId::Organization(_) => {
                self.organizations().await?.set_iam_policy().set_resource(name).set_policy(policy).send().await
            }
        }
        .map(|_| ())
        .map_err(|e| GcpError::from_sdk("setIamPolicy", &e))
    }

    async fn folders(&self) -> Result<&Folders, GcpError> {
        self.folders.get_or_try_init(|| async { build_client!(Folders, &self.backend, "Folders") }).await
    }

    async fn organizations(&self) -> Result<&Organizations, GcpError> {
        self.organizations
            .get_or_try_init(|| async { build_client!(Organizations, &self.backend, "Organizations") })
            .await
    }

    /// Exponential from the base delay, with full jitter so that writers that collided once
    /// do not collide again in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.base_delay * 2u32.saturating_pow(attempt.saturating_sub(1)).min(16);
        let mut random = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut random);
        let fraction = f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX);
        ceiling.mul_f64(0.5 + fraction / 2.0)
    }
}

/// The SDK's policy and ours share Google's JSON shape; going through it keeps every field.
fn from_sdk(policy: &SdkPolicy) -> Result<Policy, GcpError> {
    serde_json::to_value(policy)
        .and_then(serde_json::from_value)
        .map_err(|e| GcpError::Other(format!("reading the IAM policy ({e})")))
}

fn to_sdk(policy: &Policy) -> Result<SdkPolicy, GcpError> {
    serde_json::to_value(policy)
        .and_then(serde_json::from_value)
        .map_err(|e| GcpError::Other(format!("writing the IAM policy ({e})")))
}
