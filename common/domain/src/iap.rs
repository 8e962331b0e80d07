//! Identity-Aware Proxy assertions: the only source of a caller's identity.
//!
//! IAP signs `x-goog-iap-jwt-assertion` with ES256 keys it publishes. A plain header such as
//! `X-Goog-Authenticated-User-Email` is never trusted: anyone who reaches the function
//! without passing IAP could set it. There is no debug bypass; the local run puts an IAP
//! emulator at its front door instead, so this code path is the one that runs everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    verify_keeping_claims(assertion, keys, audience, now, leeway_seconds).map(|verified| verified.identity)
}

fn expectations(audience: &str, now: Timestamp, leeway_seconds: u64) -> Expectations<'_> {
    Expectations {
        algorithm: Algorithm::ES256,
        issuer: IAP_ISSUER,
        audience,
        now,
        leeway_seconds,
        require_not_before: false,
        check_times: true,
    }
}

fn verify_keeping_claims(
    assertion: &str,
    keys: &JwkSet,
    audience: &str,
    now: Timestamp,
    leeway_seconds: u64,
) -> Result<Verified, IapError> {
    let claims = jwt::verify(assertion, keys, &expectations(audience, now, leeway_seconds))?;
    let email =
        claims.get("email").and_then(|e| e.as_str()).and_then(|e| Email::parse(e).ok()).ok_or(IapError::Email)?;
    let subject = claims.get("sub").and_then(|s| s.as_str()).filter(|s| !s.is_empty()).ok_or(IapError::Subject)?;
    let identity = IapIdentity { email, subject: subject.to_string() };
    Ok(Verified { identity, claims: Arc::new(claims) })
}

#[derive(Debug, Clone)]
struct Verified {
    identity: IapIdentity,
    claims: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl Verified {
    fn expired(&self, now: Timestamp) -> bool {
        self.claims.get("exp").and_then(|exp| exp.as_i64()).is_none_or(|exp| exp <= now.unix_seconds())
    }
}

/// Assertions that passed every check, by their exact text. An IAP assertion lives up to ten
/// minutes and the same one may come with many of a user's requests, while checking its
/// ES256 signature is the largest part of a request's CPU. If every request brought a fresh
/// assertion this would only cost a lookup. A hit skips only the signature: the
/// issuer, audience and times are checked again with the same rules, so an entry stops
/// counting when its assertion expires, and any changed byte is a miss. Only verified
/// assertions enter; when full, expired entries leave, then all of them.
#[derive(Debug)]
pub struct VerifiedAssertions {
    entries: Mutex<HashMap<Box<str>, Verified>>,
    capacity: usize,
}

impl VerifiedAssertions {
    pub fn new(capacity: usize) -> VerifiedAssertions {
        VerifiedAssertions { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// [`verify_iap_assertion`], without the signature check for an assertion seen before.
    pub fn verify(
        &self,
        assertion: &str,
        keys: &JwkSet,
        audience: &str,
        now: Timestamp,
        leeway_seconds: u64,
    ) -> Result<IapIdentity, IapError> {
        match self.remembered(assertion, audience, now, leeway_seconds) {
            Some(checked) => checked,
            None => self.verify_and_remember(assertion, keys, audience, now, leeway_seconds),
        }
    }

    /// An assertion verified here before, its claims checked again at `now`; `None` if it is
    /// new. Needs no keys, so a caller can ask before fetching them.
    pub fn remembered(
        &self,
        assertion: &str,
        audience: &str,
        now: Timestamp,
        leeway_seconds: u64,
    ) -> Option<Result<IapIdentity, IapError>> {
        let seen = self.lock().get(assertion).cloned()?;
        let checked = jwt::check_claims(&seen.claims, &expectations(audience, now, leeway_seconds));
        Some(checked.map(|()| seen.identity).map_err(IapError::from))
    }

    /// The full verification; a success is remembered.
    pub fn verify_and_remember(
        &self,
        assertion: &str,
        keys: &JwkSet,
        audience: &str,
        now: Timestamp,
        leeway_seconds: u64,
    ) -> Result<IapIdentity, IapError> {
        let verified = verify_keeping_claims(assertion, keys, audience, now, leeway_seconds)?;
        let identity = verified.identity.clone();
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, entry| !entry.expired(now));
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(assertion.into(), verified);
        Ok(identity)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Verified>> {
        // The map is always whole between statements, so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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

    #[test]
    fn a_remembered_assertion_skips_only_the_signature() {
        let seen = VerifiedAssertions::new(8);
        let assertion = iap_key().sign_json(&claims()).expect("signs");
        let keys = iap_key().jwks();
        let no_keys = JwkSet { keys: vec![] };
        assert!(seen.verify(&assertion, &keys, AUDIENCE, at(NOW + 10), 30).is_ok());
        assert_eq!(seen.len(), 1);
        // A hit needs no key: the signature was checked when it entered...
        let identity = seen.verify(&assertion, &no_keys, AUDIENCE, at(NOW + 20), 30).expect("remembered");
        assert_eq!(identity.email.as_str(), "alice@example.com");
        // ...but its audience and times are checked again, with the same rules.
        let other = "/projects/123/global/backendServices/999";
        assert_eq!(seen.verify(&assertion, &no_keys, other, at(NOW + 20), 30), Err(IapError::Jwt(JwtError::Audience)));
        assert_eq!(
            seen.verify(&assertion, &no_keys, AUDIENCE, at(NOW + 600 + 30), 30),
            Err(IapError::Jwt(JwtError::Expired))
        );
    }

    #[test]
    fn a_changed_byte_is_a_miss_and_refusals_are_never_remembered() {
        let seen = VerifiedAssertions::new(8);
        let keys = iap_key().jwks();
        let assertion = iap_key().sign_json(&claims()).expect("signs");
        assert!(seen.verify(&assertion, &keys, AUDIENCE, at(NOW + 10), 30).is_ok());
        let mut changed = assertion.clone().into_bytes();
        let last = changed.len() - 2;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).expect("ascii");
        assert_eq!(seen.verify(&changed, &keys, AUDIENCE, at(NOW + 10), 30), Err(IapError::Jwt(JwtError::Signature)));
        let forged = LocalKey::generate_es256("iap-1").expect("key").sign_json(&claims()).expect("signs");
        assert!(seen.verify(&forged, &keys, AUDIENCE, at(NOW + 10), 30).is_err());
        assert!(seen.verify(&forged, &keys, AUDIENCE, at(NOW + 10), 30).is_err(), "still refused the second time");
        assert_eq!(seen.len(), 1, "only the valid assertion is remembered");
    }

    #[test]
    fn stays_bounded_dropping_expired_entries_first() {
        let seen = VerifiedAssertions::new(2);
        let keys = iap_key().jwks();
        let old = with("exp", (NOW + 12).into());
        let a = with("sub", "accounts.google.com:2".into());
        let b = with("sub", "accounts.google.com:3".into());
        assert!(seen.verify(&old, &keys, AUDIENCE, at(NOW + 10), 30).is_ok());
        assert!(seen.verify(&a, &keys, AUDIENCE, at(NOW + 10), 30).is_ok());
        // Full, and `old` has expired by now (its leeway aside): it leaves, `a` stays.
        assert!(seen.verify(&b, &keys, AUDIENCE, at(NOW + 13), 30).is_ok());
        assert_eq!(seen.len(), 2);
        let no_keys = JwkSet { keys: vec![] };
        assert!(seen.verify(&a, &no_keys, AUDIENCE, at(NOW + 14), 30).is_ok(), "a is still remembered");
        let c = with("sub", "accounts.google.com:4".into());
        assert!(seen.verify(&c, &keys, AUDIENCE, at(NOW + 14), 30).is_ok());
        assert!(seen.len() <= 2);
    }
}
