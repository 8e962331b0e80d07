//! Google REST APIs that have no official Rust crate (Cloud Identity, Firestore data, Chat), called with
//! `google-cloud-auth` credentials and our one `reqwest` client: no second auth or TLS stack.
//! Errors come back in Google's JSON shape and are sorted into [`GcpError`] as the SDK's are.
//!
//! Reads (`get`, and Firestore's `runQuery`) are tried again after a 503 (`UNAVAILABLE`, which
//! AIP-194 calls retryable), twice at most, after a jittered pause; writes are not, since only
//! their caller knows whether repeating one is safe. Path segments that carry our data (a
//! Firestore document ID) are percent-encoded with [`path_segment`].

use std::time::Duration;

use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde_json::Value;

use crate::gcp::GcpError;

/// How many times a read that met a 503 is tried again.
const READ_RETRIES: u32 = 2;

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

    /// `GET endpoint/path?query`, as JSON; `what` names the call in errors and logs. A 503 is
    /// tried again.
    pub async fn get(&self, what: &str, path: &str, query: &[(&str, String)]) -> Result<Value, GcpError> {
        let url = self.url(path);
        self.read(what, || self.http.get(&url).query(query)).await
    }

    /// `POST endpoint/path` with a JSON body, as JSON.
    pub async fn post(&self, what: &str, path: &str, body: &Value) -> Result<Value, GcpError> {
        self.with_body(reqwest::Method::POST, what, path, &[], body).await
    }

    /// `METHOD endpoint/path?query` with a JSON body (`POST`, `PATCH`), as JSON. Never tried
    /// again here.
    pub async fn with_body(
        &self,
        method: reqwest::Method,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, GcpError> {
        let request = self.http.request(method, self.url(path)).query(query).json(body);
        self.send(what, request).await.map_err(|failure| failure.error)
    }

    /// Firestore's `runQuery` (`POST …/documents:runQuery`), a read: the stream's items (each
    /// a `RunQueryResponse`). REST sends the stream as a JSON array, and an error in it as an
    /// item `{"error": …}`: part-way, after an HTTP 200, or as the only item, with the error's
    /// status. Either way the call fails: a part of a result is never taken for all of it. A
    /// `FAILED_PRECONDITION` here means the query's composite index is missing or still
    /// building, and the error says so.
    pub async fn run_query(&self, what: &str, path: &str, body: &Value) -> Result<Vec<Value>, GcpError> {
        let url = self.url(path);
        let answer = self.read(what, || self.http.post(&url).json(body)).await.map_err(|error| match error {
            GcpError::FailedPrecondition(detail) => GcpError::FailedPrecondition(format!(
                "{detail}; the composite index this query needs is missing or still building (declared in terraform/modules/jit-access/firestore-indexes.json)"
            )),
            other => other,
        })?;
        let items = answer
            .as_array()
            .cloned()
            .ok_or_else(|| GcpError::Other(format!("{what}: the answer is not a stream of results")))?;
        Ok(items)
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
        match self.answer(what, request).await.map_err(|failure| failure.error)? {
            (status, body) if (200..300).contains(&status) => Ok(Some(body)),
            (_, body) if body["error"]["status"].as_str() == Some(expected) => Ok(None),
            (status, body) => Err(classify(what, status, &body)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.endpoint, path.trim_start_matches('/'))
    }

    /// Sends the request `build` makes, and again after a 503, [`READ_RETRIES`] times at most.
    async fn read(&self, what: &str, build: impl Fn() -> reqwest::RequestBuilder) -> Result<Value, GcpError> {
        let mut attempt = 0;
        loop {
            match self.send(what, build()).await {
                Ok(body) => return Ok(body),
                Err(failure) if failure.unavailable && attempt < READ_RETRIES => {
                    tracing::debug!(what, attempt, error = %failure.error, "unavailable; trying again");
                    pause(attempt).await;
                    attempt += 1;
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    async fn send(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let (status, body) = self.answer(what, request).await?;
        // A stream's error is one of its items (see `run_query`), whatever the HTTP status.
        let streamed_error = body.as_array().and_then(|items| items.iter().find(|item| item.get("error").is_some()));
        if let Some(error) = streamed_error {
            let code = error["error"]["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(status);
            let code = if (200..300).contains(&code) { 500 } else { code };
            return Err(Failure::new(classify(what, code, error), code, error));
        }
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(Failure::new(classify(what, status, &body), status, &body))
    }

    /// Google's answer, its status and body; the error is a call that got no answer.
    async fn answer(&self, what: &str, request: reqwest::RequestBuilder) -> Result<(u16, Value), Failure> {
        let headers = match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(error) => {
                let error = GcpError::Unavailable(format!("{what}: credentials ({error})"));
                return Err(Failure { error, unavailable: false });
            }
        };
        let response = request
            .headers(headers)
            .send()
            .await
            .map_err(|e| Failure { error: GcpError::Unavailable(format!("{what} ({e})")), unavailable: false })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

/// A failed call, and whether it is the kind worth trying again (a 503 `UNAVAILABLE`).
struct Failure {
    error: GcpError,
    unavailable: bool,
}

impl Failure {
    fn new(error: GcpError, status: u16, body: &Value) -> Failure {
        let unavailable = status == 503 || body["error"]["status"].as_str() == Some("UNAVAILABLE");
        Failure { error, unavailable }
    }
}

/// A jittered pause before trying a read again: 100 ms, then 200 ms, plus up to as much again.
async fn pause(attempt: u32) {
    let base = 100u64 << attempt.min(4);
    let mut random = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut random);
    tokio::time::sleep(Duration::from_millis(base + base * u64::from(random[0]) / 255)).await;
}

/// `text` as one URL path segment: everything but unreserved characters percent-encoded, so
/// that a document ID holding `%`, `/`, `?` or `#` names that document and no other.
pub fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("alice@example.com"), "alice%40example.com");
        assert_eq!(path_segment("a%41b@example.com"), "a%2541b%40example.com");
        assert_eq!(path_segment("o'neil/x?y#z"), "o%27neil%2Fx%3Fy%23z");
        assert_eq!(path_segment("mpa-AZaz09_-.~"), "mpa-AZaz09_-.~");
    }

    #[test]
    fn a_streamed_error_is_classified_like_any_other() {
        let error = serde_json::json!({"error": {"code": 400, "message": "The query requires an index.", "status": "FAILED_PRECONDITION"}});
        assert!(matches!(classify("q", 400, &error), GcpError::FailedPrecondition(_)));
    }
}
