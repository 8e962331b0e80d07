//! Signs activation tokens with IAM Credentials `signJwt`, as the app's service account, with
//! the account's Google-managed key: no private key is ever held by the functions.
//!
//! `signJwt` refuses an `exp` "more than 12 hours in the future" by Google's clock. A request
//! may expire up to `ACTIVATION_REQUEST_TIMEOUT` (720 minutes at most) from now, and our clock
//! may run ahead of Google's, so the signed `exp` is kept [`EXP_MARGIN_SECONDS`] inside the
//! limit: the token then expires a few minutes before the request would.

use google_cloud_iam_credentials_v1::client::IAMCredentials;

use crate::config::BackendSettings;
use crate::gcp::{GcpError, credentials_for, retry_policy};
use crate::timestamp::Timestamp;
use crate::token::{ActivationClaims, SignError, SignFuture, TokenSigner};

/// `signJwt`'s limit on `exp`, from the core.
pub const MAX_EXP_SECONDS: i64 = crate::token::MAX_TOKEN_LIFETIME_SECONDS;

/// How far inside it a signed `exp` stays, for clock skew.
pub const EXP_MARGIN_SECONDS: i64 = crate::token::TOKEN_LIFETIME_MARGIN_SECONDS;

/// The claims as sent to `signJwt` at `now`: `exp` no later than the limit minus the margin.
pub fn within_sign_jwt_limit(claims: &ActivationClaims, now: Timestamp) -> ActivationClaims {
    let latest = now.unix_seconds() + MAX_EXP_SECONDS - EXP_MARGIN_SECONDS;
    ActivationClaims { exp: claims.exp.min(latest), ..claims.clone() }
}

#[derive(Debug, Clone)]
pub struct IamCredentialsSigner {
    client: IAMCredentials,
    service_account: String,
}

impl IamCredentialsSigner {
    pub async fn new(backend: &BackendSettings, service_account: &str) -> Result<IamCredentialsSigner, GcpError> {
        let client = IAMCredentials::builder()
            .with_endpoint(&backend.iam_credentials_endpoint)
            .with_credentials(credentials_for(&backend.iam_credentials_endpoint)?)
            .with_retry_policy(retry_policy(backend))
            .with_attempt_timeout(backend.read_timeout)
            .build()
            .await
            .map_err(|e| GcpError::Other(format!("building the IAM Credentials client ({e})")))?;
        Ok(IamCredentialsSigner { client, service_account: service_account.to_string() })
    }
}

impl TokenSigner for IamCredentialsSigner {
    fn issuer(&self) -> &str {
        &self.service_account
    }

    fn sign<'a>(&'a self, claims: &'a ActivationClaims) -> SignFuture<'a> {
        Box::pin(async move {
            let claims = within_sign_jwt_limit(claims, Timestamp::now());
            let payload =
                serde_json::to_string(&claims).map_err(|e| SignError { message: e.to_string(), retryable: false })?;
            let response = self
                .client
                .sign_jwt()
                .set_name(format!("projects/-/serviceAccounts/{}", self.service_account))
                .set_payload(payload)
                .send()
                .await
                .map_err(|e| {
                    let error = GcpError::from_sdk("signJwt", &e);
                    let retryable = matches!(error, GcpError::Unavailable(_) | GcpError::RateLimited(_));
                    SignError { message: error.to_string(), retryable }
                })?;
            Ok(response.signed_jwt)
        })
    }
}
