//! Google REST APIs that have no official Rust crate (Cloud Identity, Firestore data, Chat), called with
//! `google-cloud-auth` credentials and our one `reqwest` client: no second auth or TLS stack.
//! Errors come back in Google's JSON shape and are sorted into [`GcpError`] as the SDK's are.

use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde_json::Value;

use crate::gcp::GcpError;

/// One API's endpoint, the credentials for it, and the shared HTTP client.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    endpoint: String,
    credentials: Credentials,
}

impl RestClient {
    /// `scopes` are the OAuth scopes the API needs; unused against a plain-http endpoint (the
    /// emulator), which gets anonymous credentials.
    pub fn new(http: reqwest::Client, endpoint: &str, scopes: &[&str]) -> Result<RestClient, GcpError> {
        let credentials = if endpoint.starts_with("http://") {
            google_cloud_auth::credentials::anonymous::Builder::new().build()
        } else {
            google_cloud_auth::credentials::Builder::default()
                .with_scopes(scopes.iter().map(|s| s.to_string()))
                .build()
                .map_err(|e| GcpError::Denied(format!("default credentials ({e})")))?
        };
        Ok(RestClient { http, endpoint: endpoint.trim_end_matches('/').to_string(), credentials })
    }

    /// `GET endpoint/path?query`, as JSON; `what` names the call in errors and logs.
    pub async fn get(&self, what: &str, path: &str, query: &[(&str, String)]) -> Result<Value, GcpError> {
        let request = self.http.get(self.url(path)).query(query);
        self.send(what, request).await
    }

    /// `POST endpoint/path` with a JSON body, as JSON.
    pub async fn post(&self, what: &str, path: &str, body: &Value) -> Result<Value, GcpError> {
        self.with_body(reqwest::Method::POST, what, path, &[], body).await
    }

    /// `METHOD endpoint/path?query` with a JSON body (`POST`, `PATCH`), as JSON.
    pub async fn with_body(
        &self,
        method: reqwest::Method,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, GcpError> {
        let request = self.http.request(method, self.url(path)).query(query).json(body);
        self.send(what, request).await
    }

    /// As [`RestClient::with_body`], but a refusal whose Google status is `expected`
    /// (`ALREADY_EXISTS`, say) is an answer the caller gives its own meaning: `Ok(None)`.
    pub async fn with_body_expecting(
        &self,
        method: reqwest::Method,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
        expected: &str,
    ) -> Result<Option<Value>, GcpError> {
        let request = self.http.request(method, self.url(path)).query(query).json(body);
        match self.answer(what, request).await? {
            Ok(body) => Ok(Some(body)),
            Err((_, body)) if body["error"]["status"].as_str() == Some(expected) => Ok(None),
            Err((status, body)) => Err(classify(what, status, &body)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.endpoint, path.trim_start_matches('/'))
    }

    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value, GcpError> {
        self.answer(what, request).await?.map_err(|(status, body)| classify(what, status, &body))
    }

    /// Google's answer: the body of a success, or the status and body of a refusal. The
    /// outer error is a call that got no answer.
    async fn answer(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Result<Value, (u16, Value)>, GcpError> {
        let headers = match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(error) => return Err(GcpError::Unavailable(format!("{what}: credentials ({error})"))),
        };
        let response =
            request.headers(headers).send().await.map_err(|e| GcpError::Unavailable(format!("{what} ({e})")))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Ok(if (200..300).contains(&status) { Ok(body) } else { Err((status, body)) })
    }
}

/// Sorts a Google JSON error (`{"error": {"code", "message", "status"}}`) by what a caller can do.
pub fn classify(what: &str, status: u16, body: &Value) -> GcpError {
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    let detail = format!("{what} ({status}: {message})");
    // Races are conflicts, whatever HTTP status carries them; a failed precondition is the
    // caller's to name (a stale `updateTime` to the ledger, a missing index to a query).
    match body["error"]["status"].as_str() {
        Some("ABORTED" | "ALREADY_EXISTS") => return GcpError::Conflict(detail),
        Some("FAILED_PRECONDITION") => return GcpError::FailedPrecondition(detail),
        _ => {}
    }
    match status {
        404 => GcpError::NotFound(detail),
        401 | 403 => GcpError::Denied(detail),
        409 | 412 => GcpError::Conflict(detail),
        429 => GcpError::RateLimited(detail),
        400 => GcpError::InvalidArgument(detail),
        500..=599 => GcpError::Unavailable(detail),
        _ => GcpError::Other(detail),
    }
}
