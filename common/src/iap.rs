//! Identity-Aware Proxy assertions: the only source of a caller's identity.
//!
//! IAP signs `x-goog-iap-jwt-assertion` with ES256 keys it publishes. A plain header such as
//! `X-Goog-Authenticated-User-Email` is never trusted: anyone who reaches the function
//! without passing IAP could set it. There is no debug bypass; the local run puts an IAP
//! emulator at its front door instead, so this code path is the one that runs everywhere.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;

use crate::email::Email;
use crate::jwt::{self, Expectations, JwtError};
use crate::timestamp::Timestamp;

pub const IAP_ASSERTION_HEADER: &str = "x-goog-iap-jwt-assertion";
pub const IAP_ISSUER: &str = "https://cloud.google.com/iap";

/// Who IAP says is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IapIdentity {
    /// Lowercased.
    pub email: Email,
    /// IAP's stable user ID (`accounts.google.com:1234…`), for logs.
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IapError {
    #[error("the IAP assertion is not valid: {0}")]
    Jwt(#[from] JwtError),
    #[error("the IAP assertion carries no usable email")]
    Email,
    #[error("the IAP assertion carries no subject")]
    Subject,
}

/// Verifies an IAP assertion for `audience`: `/projects/NUMBER/global/backendServices/ID`
/// behind a load balancer, `/projects/NUMBER/apps/PROJECT_ID` on App Engine, or
/// `/projects/NUMBER/locations/REGION/services/NAME` with Cloud Run's own IAP.
pub fn verify_iap_assertion(
    assertion: &str,
    keys: &JwkSet,
    audience: &str,
    now: Timestamp,
    leeway_seconds: u64,
) -> Result<IapIdentity, IapError> {
    let expect = Expectations {
        algorithm: Algorithm::ES256,
        issuer: IAP_ISSUER,
        audience,
        now,
        leeway_seconds,
        require_not_before: false,
    };
    let claims = jwt::verify(assertion, keys, &expect)?;
    let email =
        claims.get("email").and_then(|e| e.as_str()).and_then(|e| Email::parse(e).ok()).ok_or(IapError::Email)?;
    let subject = claims.get("sub").and_then(|s| s.as_str()).filter(|s| !s.is_empty()).ok_or(IapError::Subject)?;
    Ok(IapIdentity { email, subject: subject.to_string() })
}

/// The claims IAP puts in an assertion; used by the emulator and tests to mint one.
pub fn assertion_claims(email: &str, subject: &str, audience: &str, issued_at: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "iss": IAP_ISSUER,
        "aud": audience,
        "sub": subject,
        "email": email,
        "iat": issued_at.unix_seconds(),
        "exp": issued_at.unix_seconds() + 600,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::LocalKey;
    use base64::Engine as _;
    use std::sync::OnceLock;

    const AUDIENCE: &str = "/projects/123/global/backendServices/456";
    const NOW: i64 = 1_700_000_000;

    fn iap_key() -> &'static LocalKey {
        static KEY: OnceLock<LocalKey> = OnceLock::new();
        KEY.get_or_init(|| LocalKey::generate_es256("iap-1").expect("key"))
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).expect("in range")
    }

    fn claims() -> serde_json::Value {
        assertion_claims("Alice@Example.com", "accounts.google.com:1", AUDIENCE, at(NOW))
    }

    fn verify(assertion: &str) -> Result<IapIdentity, IapError> {
        verify_iap_assertion(assertion, &iap_key().jwks(), AUDIENCE, at(NOW + 10), 30)
    }

    fn with(name: &str, value: serde_json::Value) -> String {
        let mut claims = claims();
        claims[name] = value;
        iap_key().sign_json(&claims).expect("signs")
    }

    #[test]
    fn valid_assertion_yields_lowercased_identity() {
        let identity = verify(&iap_key().sign_json(&claims()).expect("signs")).expect("valid");
        assert_eq!(identity.email.as_str(), "alice@example.com");
        assert_eq!(identity.subject, "accounts.google.com:1");
    }

    #[test]
    fn refuses_forged_assertion() {
        let forger = LocalKey::generate_es256("iap-1").expect("key");
        let forged = forger.sign_json(&claims()).expect("signs");
        assert_eq!(verify(&forged), Err(IapError::Jwt(JwtError::Signature)));
        let unknown = LocalKey::generate_es256("iap-9").expect("key").sign_json(&claims()).expect("signs");
        assert_eq!(verify(&unknown), Err(IapError::Jwt(JwtError::UnknownKeyId("iap-9".into()))));
    }

    #[test]
    fn refuses_expired_assertion() {
        let assertion = with("exp", (NOW - 31).into());
        assert_eq!(verify(&assertion), Err(IapError::Jwt(JwtError::Expired)));
        let assertion = with("iat", (NOW + 600).into());
        assert_eq!(verify(&assertion), Err(IapError::Jwt(JwtError::IssuedInFuture)));
    }

    #[test]
    fn refuses_wrong_audience() {
        let assertion = with("aud", "/projects/123/global/backendServices/999".into());
        assert_eq!(verify(&assertion), Err(IapError::Jwt(JwtError::Audience)));
    }

    #[test]
    fn refuses_wrong_issuer() {
        let assertion = with("iss", "https://accounts.google.com".into());
        assert_eq!(verify(&assertion), Err(IapError::Jwt(JwtError::Issuer)));
    }

    #[test]
    fn refuses_rs256_assertions() {
        let rsa = LocalKey::generate_rs256("iap-1").expect("key");
        let assertion = rsa.sign_json(&claims()).expect("signs");
        assert_eq!(verify(&assertion), Err(IapError::Jwt(JwtError::Algorithm("RS256".into()))));
    }

    #[test]
    fn refuses_unsigned_assertion() {
        let encode = |json: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).expect("json"))
        };
        let header = serde_json::json!({"alg": "none", "kid": "iap-1"});
        let assertion = format!("{}.{}.", encode(&header), encode(&claims()));
        assert_eq!(verify(&assertion), Err(IapError::Jwt(JwtError::MissingSignature)));
    }

    #[test]
    fn refuses_assertion_without_usable_email_or_subject() {
        assert_eq!(verify(&with("email", serde_json::Value::Null)), Err(IapError::Email));
        assert_eq!(verify(&with("email", "Alice <alice@example.com>".into())), Err(IapError::Email));
        assert_eq!(verify(&with("sub", "".into())), Err(IapError::Subject));
    }
}
