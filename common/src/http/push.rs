//! Requests Google makes to our services with a Google-signed token: Pub/Sub pushes (the
//! mailer and the Chat app take the events topic's messages this way) and Google Chat's
//! calls to a Chat app. What is delivered ([`parse_envelope`]), and who may deliver it
//! ([`PushAuth`], [`verify_google_id_token`]).

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::Value;

use crate::config::Env;
use crate::gcp::jwks::{CLOCK_LEEWAY_SECONDS, JwksCache, Unverified};
use crate::http::ApiError;
use crate::jwt::{Expectations, JwtError};
use crate::timestamp::Timestamp;

/// Google signs ID tokens with either form of its issuer, and its own verifiers take both
/// (google-auth-library's `verifyIdToken`, google-api-java-client's `GoogleIdTokenVerifier`;
/// OpenID Connect Core 1.0, 15.6.2, lists `accounts.google.com` without the scheme). Which one
/// Pub/Sub and Google Chat put in their tokens is not documented.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// One delivered Pub/Sub message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub subscription: String,
    pub data: Vec<u8>,
}

/// The push envelope `{"message": {"data", "attributes", "messageId", "publishTime"},
/// "subscription"}`, or the same message inside a CloudEvent, as Eventarc delivers it
/// (structured mode; in binary mode the body is the envelope itself).
pub fn parse_envelope(body: &[u8]) -> Result<Delivery, String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON ({e})"))?;
    // A structured CloudEvent wraps the envelope in `data`.
    let envelope = if json.get("message").is_some() { &json } else { &json["data"] };
    let message = envelope.get("message").ok_or("the body holds no Pub/Sub message")?;
    let message_id = message["messageId"].as_str().or(message["message_id"].as_str()).unwrap_or_default().to_string();
    let data = base64::engine::general_purpose::STANDARD
        .decode(message["data"].as_str().unwrap_or_default())
        .map_err(|_| format!("message {message_id}: data is not base64"))?;
    Ok(Delivery { message_id, subscription: envelope["subscription"].as_str().unwrap_or_default().to_string(), data })
}

/// Who may push: Google-signed OIDC tokens for this audience, for this service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAuth {
    pub audience: String,
    pub service_account: String,
    pub jwks_url: String,
    pub check: SignatureCheck,
}

/// Who checks the push token's signature: exactly one full check happens on every push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// `PUSH_AUTH=verify`: we do, against Google's keys (Cloud Run's invoker check off, or not
    /// on Cloud Run at all).
    Ours,
    /// `PUSH_AUTH=cloud-run`: Cloud Run's invoker check did, and replaced the signature with
    /// its marker; we check every claim. Refused unless the process runs on Cloud Run.
    CloudRun,
}

impl PushAuth {
    /// `PUSH_AUTH` (`verify`, `cloud-run`, or `false` off Cloud Run only), with
    /// `PUSH_AUDIENCE`, `PUSH_SERVICE_ACCOUNT` and `PUSH_JWKS_URL`. `default` is the mode
    /// when unset on Cloud Run; elsewhere it is `verify`. `None` when checks are off.
    pub fn read(env: &mut Env<'_>, what: &str, default: &str) -> Option<PushAuth> {
        let on_cloud_run = env.optional("K_SERVICE").is_some();
        let mode = env.text("PUSH_AUTH", if on_cloud_run { default } else { "verify" });
        let check = match mode.to_ascii_lowercase().as_str() {
            "verify" | "true" => Some(SignatureCheck::Ours),
            "cloud-run" if on_cloud_run => Some(SignatureCheck::CloudRun),
            "cloud-run" => {
                env.problem(
                    "PUSH_AUTH=cloud-run needs Cloud Run's invoker check in front (K_SERVICE is not set)".into(),
                );
                None
            }
            // Off is for a local run only: Cloud Run sets K_SERVICE.
            "false" if on_cloud_run => {
                env.problem(format!("PUSH_AUTH=false is refused on Cloud Run: anyone could make {what}"));
                None
            }
            "false" => None,
            other => {
                env.problem(format!("PUSH_AUTH must be verify, cloud-run or false, not '{other}'"));
                None
            }
        };
        check.map(|check| PushAuth {
            audience: env.required("PUSH_AUDIENCE", "the URL the push subscription's OIDC token is addressed to"),
            service_account: env.required("PUSH_SERVICE_ACCOUNT", "the service account the push subscription signs as"),
            jwks_url: google_keys_url(env),
            check,
        })
    }
}

/// `PUSH_JWKS_URL`: Google's ID-token keys.
pub fn google_keys_url(env: &mut Env<'_>) -> String {
    env.text("PUSH_JWKS_URL", "https://www.googleapis.com/oauth2/v3/certs")
}

/// The one bearer token in `name`, if any; two headers of the same name are refused.
pub fn bearer<'h>(
    headers: &'h HeaderMap,
    name: &str,
    refuse: &dyn Fn(String) -> ApiError,
) -> Result<Option<&'h str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(refuse(format!("a request carries one {name} header, not several")));
    }
    Ok(first.and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")))
}

/// Checks a Pub/Sub push's Google-signed OIDC token: its signature (ours to check, or Cloud
/// Run's, see [`SignatureCheck`]), then issuer, audience, times, account and `email_verified`.
pub async fn authenticate(auth: &PushAuth, keys: &JwksCache, headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |message: String| ApiError::unauthenticated("push_unauthenticated", message);
    // Cloud Run checks X-Serverless-Authorization when it is present, and then passes
    // Authorization through unchecked: the token it vouches for is the one it read.
    let token = match auth.check {
        SignatureCheck::CloudRun => bearer(headers, "x-serverless-authorization", &refuse)?
            .map_or_else(|| bearer(headers, "authorization", &refuse), |t| Ok(Some(t)))?,
        SignatureCheck::Ours => bearer(headers, "authorization", &refuse)?,
    }
    .ok_or_else(|| refuse("a push needs Authorization: Bearer with the subscription's OIDC token".into()))?;
    let signature_removed = token.rsplit('.').next() == Some(crate::jwt::SIGNATURE_REMOVED);
    match (auth.check, signature_removed) {
        (SignatureCheck::CloudRun, true) => {
            let claims =
                with_google_issuer(&auth.audience, |expect| crate::jwt::claims_checked_by_cloud_run(token, expect))
                    .map_err(|e| refuse(e.to_string()))?;
            check_account(&claims, &auth.service_account).map_err(refuse)
        }
        (SignatureCheck::Ours, true) => Err(refuse(
            "the push token's signature was removed, and nothing here checked it: behind Cloud Run's invoker check set PUSH_AUTH=cloud-run".into(),
        )),
        // A signature still in place means nobody checked it yet: we do, fully.
        (_, false) => verify_google_id_token(keys, token, &auth.audience, &auth.service_account)
            .await
            .map_err(|error| error.map_refused(refuse).into()),
    }
}

/// Verifies a Google-signed ID token fully: signature, issuer, audience, times, that it was
/// issued to `account` and that the address is verified: refused with the reason why, or
/// unverified because the keys could not be fetched (503).
pub async fn verify_google_id_token(
    keys: &JwksCache,
    token: &str,
    audience: &str,
    account: &str,
) -> Result<(), Unverified<String>> {
    let claims = keys
        .verify(
            |keys| with_google_issuer(audience, |expect| crate::jwt::verify(token, keys, expect)),
            |e| matches!(e, JwtError::UnknownKeyId(_)),
        )
        .await
        .map_err(|error| error.map_refused(|e| e.to_string()))?;
    check_account(&claims, account).map_err(Unverified::Refused)
}

/// Runs `check` with the expectations of each of [`GOOGLE_ISSUERS`] in turn: the token is
/// taken under either; any refusal but the issuer's is final.
fn with_google_issuer<T>(
    audience: &str,
    check: impl Fn(&Expectations<'_>) -> Result<T, JwtError>,
) -> Result<T, JwtError> {
    for issuer in GOOGLE_ISSUERS {
        let expect = Expectations {
            algorithm: jsonwebtoken::Algorithm::RS256,
            issuer,
            audience,
            now: Timestamp::now(),
            leeway_seconds: CLOCK_LEEWAY_SECONDS,
            require_not_before: false,
            check_times: true,
        };
        match check(&expect) {
            Err(JwtError::Issuer) => continue,
            other => return other,
        }
    }
    Err(JwtError::Issuer)
}

fn check_account(claims: &serde_json::Map<String, Value>, account: &str) -> Result<(), String> {
    let email_matches = claims.get("email").and_then(|e| e.as_str()).is_some_and(|e| e.eq_ignore_ascii_case(account));
    let verified = claims.get("email_verified").and_then(|v| v.as_bool()).unwrap_or(false);
    if email_matches && verified { Ok(()) } else { Err(format!("the token is not from {account}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_push_envelope_and_the_cloud_event() {
        let push = br#"{"message": {"data": "eyJhIjoxfQ==", "attributes": {"type": "X"}, "messageId": "7", "publishTime": "2026-01-01T00:00:00Z"}, "subscription": "projects/p/subscriptions/s"}"#;
        let delivery = parse_envelope(push).expect("valid");
        assert_eq!(delivery.message_id, "7");
        assert_eq!(delivery.data, br#"{"a":1}"#);
        let cloud_event = br#"{"specversion": "1.0", "type": "google.cloud.pubsub.topic.v1.messagePublished", "data": {"message": {"data": "eyJhIjoxfQ==", "messageId": "8"}, "subscription": "s"}}"#;
        assert_eq!(parse_envelope(cloud_event).expect("valid").message_id, "8");
    }

    #[test]
    fn refuses_what_is_not_a_message() {
        for body in [&b"not json"[..], b"{}", br#"{"message": {"data": "%%%"}}"#] {
            assert!(parse_envelope(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
