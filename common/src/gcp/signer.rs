//! Signs activation tokens with IAM Credentials `signJwt`, as the app's service account, with
//! the account's Google-managed key: no private key is ever held by the functions.

use google_cloud_iam_credentials_v1::client::IAMCredentials;

use crate::config::BackendSettings;
use crate::gcp::{GcpError, credentials_for, retry_policy};
use crate::token::{ActivationClaims, SignError, SignFuture, TokenSigner};

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
            let payload =
                serde_json::to_string(claims).map_err(|e| SignError { message: e.to_string(), retryable: false })?;
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
