//! Adapters to Google Cloud through the official SDK clients. Only this module talks to
//! Google; every endpoint comes from [`BackendSettings`], so tests and the local run point the
//! same clients at the emulator.

pub mod catalog;
pub mod chat;
pub mod events;
pub mod groups;
pub mod iam;
pub mod jwks;
pub mod ledger;
pub mod rest;
pub mod secrets;
pub mod signer;

use std::future::Future;
use std::pin::Pin;

use google_cloud_auth::credentials::{CacheableResource, Credentials, CredentialsProvider, EntityTag};
use google_cloud_auth::errors::CredentialsError;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt as _};

use crate::config::BackendSettings;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A Google API call that failed, classified by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcpError {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: permission denied")]
    Denied(String),
    #[error("{0}: invalid argument")]
    InvalidArgument(String),
    /// An etag conflict that outlived our retries, or another concurrent change.
    #[error("{0}: conflicting concurrent change")]
    Conflict(String),
    /// Google refused for a reason a retry cannot change (`FAILED_PRECONDITION`): an
    /// organization policy refusing a member, an index a query needs, a stale precondition.
    /// Each caller says which it is; it is never an etag race.
    #[error("{0}: refused")]
    FailedPrecondition(String),
    #[error("{0}: quota exhausted")]
    RateLimited(String),
    /// Policy Analyzer's quota: 20 queries a day per organization without a paid tier.
    #[error("{0}: Policy Analyzer quota exhausted")]
    AnalysisQuota(String),
    #[error("{0}: unavailable")]
    Unavailable(String),
    /// Not Google's refusal but ours: the caller's budget of uncached reads for listings is
    /// spent ([`catalog::ReadBudget`]), so no call was made. Seconds until a read is regained.
    #[error("listing budget spent, a read is regained in {0} s")]
    ReadBudget(u64),
    #[error("{0}: failed")]
    Other(String),
}

impl GcpError {
    /// Classifies an SDK error; `what` names the call, for logs.
    pub fn from_sdk(what: &str, error: &google_cloud_gax::error::Error) -> GcpError {
        use google_cloud_gax::error::rpc::Code;
        let detail = format!("{what} ({error})");
        let code = error.status().map(|s| s.code);
        match (error.http_status_code(), code) {
            (Some(404), _) | (_, Some(Code::NotFound)) => GcpError::NotFound(detail),
            (Some(401 | 403), _) | (_, Some(Code::PermissionDenied | Code::Unauthenticated)) => {
                GcpError::Denied(detail)
            }
            (_, Some(Code::FailedPrecondition)) => GcpError::FailedPrecondition(detail),
            (Some(409 | 412), _) | (_, Some(Code::Aborted)) => GcpError::Conflict(detail),
            (Some(429), _) | (_, Some(Code::ResourceExhausted)) => GcpError::RateLimited(detail),
            (Some(400), _) | (_, Some(Code::InvalidArgument)) => GcpError::InvalidArgument(detail),
            (Some(500..=599), _) | (_, Some(Code::Unavailable | Code::DeadlineExceeded | Code::Internal)) => {
                GcpError::Unavailable(detail)
            }
            _ if error.is_timeout() || error.is_io() || error.is_connect() || error.is_exhausted() => {
                GcpError::Unavailable(detail)
            }
            _ => GcpError::Other(detail),
        }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, GcpError::Conflict(_))
    }
}

/// Credentials for an endpoint: none for a plain-http endpoint (the emulator, never Google),
/// the environment's default credentials otherwise (the metadata server on Cloud Run). Both
/// carry the request reason header, see [`with_request_reason`].
pub fn credentials_for(endpoint: &str) -> Result<Credentials, GcpError> {
    let inner = if endpoint.starts_with("http://") {
        google_cloud_auth::credentials::anonymous::Builder::new().build()
    } else {
        google_cloud_auth::credentials::Builder::default()
            .build()
            .map_err(|e| GcpError::Denied(format!("default credentials ({e})")))?
    };
    Ok(Credentials::from(ReasonCredentials { inner }))
}

/// A Resource Manager client with our credentials and retries; `attempt_timeout` bounds each
/// call when given. Each client loads the TLS roots when built: build one per use, not more.
pub async fn resource_manager(
    backend: &BackendSettings,
    attempt_timeout: Option<std::time::Duration>,
) -> Result<google_cloud_resourcemanager_v3::client::Projects, GcpError> {
    let mut builder = google_cloud_resourcemanager_v3::client::Projects::builder()
        .with_endpoint(&backend.resource_manager_endpoint)
        .with_credentials(credentials_for(&backend.resource_manager_endpoint)?)
        .with_retry_policy(retry_policy(backend));
    if let Some(timeout) = attempt_timeout {
        builder = builder.with_attempt_timeout(timeout);
    }
    builder.build().await.map_err(|e| GcpError::Other(format!("building the Resource Manager client ({e})")))
}

/// Bounded retries of what Google says is retryable (AIP-194): a few attempts within the
/// read timeout, never the SDK's default minute.
pub fn retry_policy(settings: &BackendSettings) -> impl Into<google_cloud_gax::retry_policy::RetryPolicyArg> {
    Aip194Strict.with_attempt_limit(3).with_time_limit(settings.read_timeout * 2)
}

tokio::task_local! {
    static REQUEST_REASON: String;
}

/// Runs `future` with `x-goog-request-reason` on every Google API request it makes, so
/// Cloud Audit Logs show why a policy changed. The SDK has no per-request headers; its
/// credentials are asked for headers on every request, inside the caller's task, which is
/// where this reason is picked up.
pub async fn with_request_reason<F: Future>(reason: &str, future: F) -> F::Output {
    let printable: String =
        reason.chars().take(256).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    REQUEST_REASON.scope(printable, future).await
}

#[derive(Debug)]
struct ReasonCredentials {
    inner: Credentials,
}

impl CredentialsProvider for ReasonCredentials {
    async fn headers(
        &self,
        extensions: http::Extensions,
    ) -> Result<CacheableResource<http::HeaderMap>, CredentialsError> {
        let headers = self.inner.headers(extensions).await?;
        let reason = REQUEST_REASON.try_with(Clone::clone).ok();
        let Some(reason) = reason else {
            return Ok(headers);
        };
        let (entity_tag, mut data) = match headers {
            CacheableResource::New { entity_tag, data } => (entity_tag, data),
            // Never cached by the SDK's HTTP client, which asks with empty extensions.
            CacheableResource::NotModified => (EntityTag::new(), http::HeaderMap::new()),
        };
        if let Ok(value) = http::HeaderValue::from_str(&reason) {
            data.insert("x-goog-request-reason", value);
        }
        Ok(CacheableResource::New { entity_tag, data })
    }

    async fn universe_domain(&self) -> Option<String> {
        self.inner.universe_domain().await
    }
}
