//! Public key sets (JWKS) fetched over HTTPS and cached: the signing service account's, for
//! activation tokens, and IAP's, for assertions.
//!
//! A token with an unknown `kid` may mean Google rotated its keys, so the set is fetched
//! again, but such forced refreshes happen at most once per [`REFRESH_FLOOR`]: a stream of
//! forged tokens with made-up key IDs cannot turn into a stream of fetches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

use crate::config::BackendSettings;
use crate::gcp::GcpError;
use crate::iap::{IapError, IapIdentity, VerifiedAssertions};
use crate::jwt::JwtError;
use crate::timestamp::Timestamp;
use crate::token::{ActivationRequest, TokenError, verify_activation_token};

pub const REFRESH_FLOOR: Duration = Duration::from_secs(30);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// Leeway for clock differences with Google, in seconds.
pub const CLOCK_LEEWAY_SECONDS: u64 = 30;

/// Why a token was not verified: its keys could not be had (`Keys`, a failure that passes:
/// 503, never the token's fault), or it was checked and `Refused`, for the reason `E`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified<E> {
    #[error(transparent)]
    Keys(#[from] GcpError),
    #[error("{0}")]
    Refused(E),
}

impl<E> Unverified<E> {
    /// The same failure, with the refusal's reason turned into another.
    pub fn map_refused<F>(self, f: impl FnOnce(E) -> F) -> Unverified<F> {
        match self {
            Unverified::Keys(error) => Unverified::Keys(error),
            Unverified::Refused(reason) => Unverified::Refused(f(reason)),
        }
    }
}

#[derive(Debug)]
pub struct JwksCache {
    http: reqwest::Client,
    url: String,
    cached: Mutex<Option<Cached>>,
    last_forced_refresh: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct Cached {
    keys: Arc<JwkSet>,
    expires_at: Instant,
}

impl JwksCache {
    pub fn new(http: reqwest::Client, url: &str) -> JwksCache {
        JwksCache { http, url: url.to_string(), cached: Mutex::new(None), last_forced_refresh: Mutex::new(None) }
    }

    /// IAP's keys, from `IAP_JWKS_URL`.
    pub fn iap(http: reqwest::Client, backend: &BackendSettings) -> JwksCache {
        JwksCache::new(http, &backend.iap_jwks_url)
    }

    /// The signing account's keys, from `SERVICE_ACCOUNT_JWKS_URL` with its `{email}`.
    pub fn service_account(http: reqwest::Client, backend: &BackendSettings, email: &str) -> JwksCache {
        JwksCache::new(http, &backend.service_account_jwks_url.replace("{email}", email))
    }

    /// A client with the backend timeouts, for key fetches.
    pub fn http_client(backend: &BackendSettings) -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(backend.connect_timeout)
            .timeout(backend.read_timeout)
            .build()
            .unwrap_or_default()
    }

    /// The cached keys, fetched first if there are none or they expired.
    pub async fn keys(&self) -> Result<Arc<JwkSet>, GcpError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref().filter(|c| c.expires_at > Instant::now()) {
            return Ok(current.keys.clone());
        }
        let fresh = self.fetch().await?;
        let keys = fresh.keys.clone();
        *cached = Some(fresh);
        Ok(keys)
    }

    /// Fetches again after an unknown `kid`, unless the last fetch was too recent; `None`
    /// then, and the caller keeps its refusal.
    pub async fn refresh_for_unknown_kid(&self) -> Result<Option<Arc<JwkSet>>, GcpError> {
        let mut last = self.last_forced_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFRESH_FLOOR) {
            return Ok(None);
        }
        *last = Some(Instant::now());
        let fresh = self.fetch().await?;
        let keys = fresh.keys.clone();
        *self.cached.lock().await = Some(fresh);
        Ok(Some(keys))
    }

    /// Runs `check` with the cached keys, and once more with fresh keys if it failed on an
    /// unknown `kid` (and no forced refresh happened lately).
    pub async fn verify<T, E>(
        &self,
        check: impl Fn(&JwkSet) -> Result<T, E>,
        is_unknown_kid: impl Fn(&E) -> bool,
    ) -> Result<T, Unverified<E>> {
        match check(&*self.keys().await?) {
            Err(error) if is_unknown_kid(&error) => match self.refresh_for_unknown_kid().await? {
                Some(keys) => check(&keys).map_err(Unverified::Refused),
                None => Err(Unverified::Refused(error)),
            },
            first => first.map_err(Unverified::Refused),
        }
    }

    /// Verifies an IAP assertion (its signature only once, see [`VerifiedAssertions`]),
    /// refreshing the keys once on an unknown `kid`.
    pub async fn verify_iap(
        &self,
        seen: &VerifiedAssertions,
        assertion: &str,
        audience: &str,
        now: Timestamp,
    ) -> Result<IapIdentity, Unverified<IapError>> {
        // A repeat needs no keys: answered before they are looked up (or fetched).
        if let Some(checked) = seen.remembered(assertion, audience, now, CLOCK_LEEWAY_SECONDS) {
            return checked.map_err(Unverified::Refused);
        }
        self.verify(
            |keys| seen.verify_and_remember(assertion, keys, audience, now, CLOCK_LEEWAY_SECONDS),
            |error| matches!(error, IapError::Jwt(JwtError::UnknownKeyId(_))),
        )
        .await
    }

    /// Verifies an activation token, refreshing the keys once on an unknown `kid`.
    pub async fn verify_token(
        &self,
        token: &str,
        service_account: &str,
        now: Timestamp,
    ) -> Result<ActivationRequest, Unverified<TokenError>> {
        self.verify(
            |keys| verify_activation_token(token, keys, service_account, now, CLOCK_LEEWAY_SECONDS),
            |error| matches!(error, TokenError::Jwt(JwtError::UnknownKeyId(_))),
        )
        .await
    }

    async fn fetch(&self) -> Result<Cached, GcpError> {
        let what = format!("fetching keys from {}", self.url);
        let response =
            self.http.get(&self.url).send().await.map_err(|e| GcpError::Unavailable(format!("{what} ({e})")))?;
        let status = response.status();
        if !status.is_success() {
            let error = format!("{what} (HTTP {status})");
            return Err(if status.is_server_error() { GcpError::Unavailable(error) } else { GcpError::Other(error) });
        }
        let max_age = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_MAX_AGE)
            .clamp(Duration::from_secs(60), Duration::from_secs(24 * 3600));
        let keys: JwkSet = response.json().await.map_err(|e| GcpError::Other(format!("{what} ({e})")))?;
        let now = Instant::now();
        Ok(Cached { keys: Arc::new(keys), expires_at: now + max_age })
    }
}

fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .find_map(|part| part.trim().strip_prefix("max-age="))
        .and_then(|seconds| seconds.parse().ok())
        .map(Duration::from_secs)
}
