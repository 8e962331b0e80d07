//! Secret Manager: reading one secret version's text (the mailer's SendGrid key), through the
//! official client, with our credentials.

use crate::gcp::{GcpError, credentials_for};

/// The text of secret version `path` (`projects/P/secrets/S/versions/V`), trimmed.
pub async fn read_secret(endpoint: &str, path: &str) -> Result<String, GcpError> {
    let client = google_cloud_secretmanager_v1::client::SecretManagerService::builder()
        .with_endpoint(endpoint)
        .with_credentials(credentials_for(endpoint)?)
        .build()
        .await
        .map_err(|e| GcpError::Other(format!("building the Secret Manager client ({e})")))?;
    let version = client
        .access_secret_version()
        .set_name(path)
        .send()
        .await
        .map_err(|e| GcpError::from_sdk(&format!("reading {path}"), &e))?;
    let payload = version.payload.ok_or_else(|| GcpError::Other(format!("{path} has no payload")))?;
    String::from_utf8(payload.data.to_vec())
        .map(|text| text.trim().to_string())
        .map_err(|_| GcpError::Other(format!("{path} is not text")))
}
