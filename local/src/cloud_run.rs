//! What Cloud Run does in front of a service whose IAM invoker check is on, for the mailer in
//! the local run and the tests: it verifies the caller's Google-signed ID token, lets only the
//! service's invoker members through, and forwards the request with that token's signature
//! replaced by `SIGNATURE_REMOVED_BY_GOOGLE` (Cloud Run troubleshooting, "signature-removed").
//! When `X-Serverless-Authorization` is present, Cloud Run checks that header instead and
//! passes `Authorization` through untouched.
//!
//! Also [`PubSubSigner`]: what Google's Pub/Sub adds to a push that its emulator leaves out,
//! the subscription's OIDC token, so that pushes from the real emulator meet the same front.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::gcp::jwks::{CLOCK_LEEWAY_SECONDS, JwksCache, Unverified};
use common::http::ApiError;
use common::jwt::{Expectations, JwtError, SIGNATURE_REMOVED};
use common::timestamp::Timestamp;

/// One Cloud Run service's front: its URL (the token's audience), who may invoke it, and
/// where the container listens.
#[derive(Debug, Clone)]
pub struct CloudRunFront {
    upstream: SocketAddr,
    audience: Arc<str>,
    invokers: Arc<BTreeSet<String>>,
    keys: Arc<JwksCache>,
    http: reqwest::Client,
}

impl CloudRunFront {
    /// `invokers` are IAM members (`serviceAccount:EMAIL`) with `roles/run.invoker`;
    /// `jwks_url` serves Google's ID-token keys.
    pub fn new(upstream: SocketAddr, audience: &str, invokers: &[&str], jwks_url: &str) -> CloudRunFront {
        let http = reqwest::Client::new();
        CloudRunFront {
            upstream,
            audience: Arc::from(audience),
            invokers: Arc::new(invokers.iter().map(|m| m.to_string()).collect()),
            keys: Arc::new(JwksCache::new(http.clone(), jwks_url)),
            http,
        }
    }

    pub fn router(self) -> Router {
        Router::new().fallback(invoke).layer(axum::middleware::map_response(common::http::log_errors)).with_state(self)
    }

    /// Cloud Run's invoker check: 401 without a valid Google ID token for this service, 403
    /// for a valid one of someone who is not an invoker. Returns the header it checked.
    async fn check(&self, headers: &HeaderMap) -> Result<(HeaderName, String), ApiError> {
        let refuse = |message: String| ApiError::unauthenticated("cloud_run_unauthenticated", message);
        let name = if headers.contains_key("x-serverless-authorization") {
            HeaderName::from_static("x-serverless-authorization")
        } else {
            axum::http::header::AUTHORIZATION
        };
        let token = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| refuse(format!("the request has no Bearer token in {name}")))?
            .to_string();
        let mut last = JwtError::Issuer;
        for issuer in common::http::push::GOOGLE_ISSUERS {
            let expect = Expectations {
                algorithm: jsonwebtoken::Algorithm::RS256,
                issuer,
                audience: &self.audience,
                now: Timestamp::now(),
                leeway_seconds: CLOCK_LEEWAY_SECONDS,
                require_not_before: false,
                check_times: true,
            };
            let verified = self
                .keys
                .verify(|keys| common::jwt::verify(&token, keys, &expect), |e| matches!(e, JwtError::UnknownKeyId(_)))
                .await;
            match verified {
                Ok(claims) => {
                    let email = claims.get("email").and_then(|e| e.as_str()).unwrap_or_default().to_lowercase();
                    let member = if email.ends_with(".gserviceaccount.com") {
                        format!("serviceAccount:{email}")
                    } else {
                        format!("user:{email}")
                    };
                    if !self.invokers.contains(&member) {
                        return Err(ApiError::forbidden(
                            "cloud_run_forbidden",
                            format!("{member} may not invoke this service (roles/run.invoker)"),
                        ));
                    }
                    return Ok((name, token));
                }
                Err(Unverified::Refused(error)) => last = error,
                Err(Unverified::Keys(error)) => return Err(error.into()),
            }
        }
        Err(refuse(last.to_string()))
    }
}

/// The token with its signature replaced, as Cloud Run forwards it.
pub fn remove_signature(token: &str) -> String {
    match token.rsplit_once('.') {
        Some((signed_part, _)) => format!("{signed_part}.{SIGNATURE_REMOVED}"),
        None => token.to_string(),
    }
}

async fn invoke(
    State(front): State<CloudRunFront>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (checked, token) = match front.check(&headers).await {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    let mut forwarded = headers;
    let stripped = format!("Bearer {}", remove_signature(&token));
    if let Ok(value) = HeaderValue::from_str(&stripped) {
        forwarded.insert(checked, value);
    }
    forward(&front.http, front.upstream, method, &uri, forwarded, body).await
}

/// Google's Pub/Sub signs each push with the subscription's OIDC identity; its emulator does
/// not. This adds the token Google would add, then passes the push on.
#[derive(Debug, Clone)]
pub struct PubSubSigner {
    next: SocketAddr,
    account: Arc<str>,
    audience: Arc<str>,
    emulator: Arc<emulator::State>,
    http: reqwest::Client,
}

impl PubSubSigner {
    pub fn new(next: SocketAddr, account: &str, audience: &str, emulator: Arc<emulator::State>) -> PubSubSigner {
        PubSubSigner {
            next,
            account: Arc::from(account),
            audience: Arc::from(audience),
            emulator,
            http: reqwest::Client::new(),
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .fallback(sign_push)
            .layer(axum::middleware::map_response(common::http::log_errors))
            .with_state(self)
    }
}

async fn sign_push(
    State(signer): State<PubSubSigner>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match signer.emulator.oidc_token(&signer.account, &signer.audience) {
        Ok(token) => token,
        Err(error) => return ApiError::unavailable(format!("minting the push token: {error:?}")).into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(axum::http::header::AUTHORIZATION, value);
    }
    forward(&signer.http, signer.next, method, &uri, headers, body).await
}

async fn forward(
    http: &reqwest::Client,
    upstream: SocketAddr,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = format!("http://{upstream}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut request = http.request(method, target).body(body);
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "connection" | "content-length" | "transfer-encoding") {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = response.bytes().await.unwrap_or_default();
            (status, Body::from(bytes)).into_response()
        }
        Err(error) => ApiError::unavailable(format!("forwarding to {upstream}: {error}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_replaced_and_the_rest_kept() {
        assert_eq!(remove_signature("aaa.bbb.ccc"), format!("aaa.bbb.{SIGNATURE_REMOVED}"));
    }
}
