//! Activation tokens: the signed JWT that carries a peer-approval request, so that no
//! database is needed.
//!
//! A token is not a credential. Holding one lets nobody approve anything: the approver must
//! also be authenticated by IAP, listed in the token, not the beneficiary, and still
//! eligible. The token only proves that this system issued the request as written.

use std::future::Future;
use std::pin::Pin;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

use crate::activation::{ActivationWindow, WindowError};
use crate::condition::ResourceCondition;
use crate::email::Email;
use crate::entitlement::{EntitlementError, EntitlementId, ResourceId, RoleName};
use crate::jwt::{self, Expectations, JwtError};
use crate::keys::LocalKey;
use crate::timestamp::Timestamp;

/// `signJwt` refuses a token that expires more than 12 hours after it is signed.
pub const MAX_TOKEN_LIFETIME_SECONDS: i64 = 12 * 3600;

/// How far inside [`MAX_TOKEN_LIFETIME_SECONDS`] a request's deadline stays, for clock skew.
pub const TOKEN_LIFETIME_MARGIN_SECONDS: i64 = 5 * 60;

/// The claims of an activation token, as they are signed.
///
/// `iss` and `aud` are both the signing service account, as in the reference app: the token is
/// issued by this system for this system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationClaims {
    pub jti: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub beneficiary: Email,
    pub reviewers: Vec<Email>,
    pub entitlement: TokenEntitlement,
    pub justification: String,
    pub start: i64,
    pub end: i64,
    /// Distinct approvals needed, signed so that the ledger's copy cannot lower it. Tokens
    /// issued before approval policies need one.
    #[serde(default = "one_approval")]
    pub approvals: u32,
    /// Approvers must give a reason.
    #[serde(default, rename = "approverReason")]
    pub approver_reason_required: bool,
    /// An emergency grant: its reviewers ratify it until then (Unix seconds).
    #[serde(default, rename = "reviewDeadline", skip_serializing_if = "Option::is_none")]
    pub review_deadline: Option<i64>,
}

fn one_approval() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenEntitlement {
    /// The project ID, or `folders/N` / `organizations/N` for an activation on one.
    pub project: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_condition: Option<String>,
}

/// A peer-approval request, as issued or as read from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationRequest {
    /// `mpa-` and 16 URL-safe characters; also the token's `jti`.
    pub id: String,
    pub beneficiary: Email,
    pub reviewers: Vec<Email>,
    pub entitlement: EntitlementId,
    /// As the requester typed it; re-checked against the policy when approved.
    pub justification: String,
    pub window: ActivationWindow,
    /// When the request itself stops being approvable (the token's `exp`).
    pub expires: Timestamp,
    /// Distinct approvals needed (`APPROVAL_POLICY`), 1 to 10; for an emergency grant, the
    /// ratifications.
    pub approvals_needed: u32,
    pub approver_reason_required: bool,
    /// Emergency access (break glass): granted at once, ratified until then.
    pub review_deadline: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error("the token's request is not valid: {0}")]
    Request(String),
}

/// Signs activation tokens. Production: IAM Credentials `signJwt` as the app's service
/// account, so no private key is ever held by the functions.
pub trait TokenSigner: Send + Sync + std::fmt::Debug {
    /// The service account email: the tokens' issuer and audience.
    fn issuer(&self) -> &str;

    fn sign<'a>(&'a self, claims: &'a ActivationClaims) -> SignFuture<'a>;
}

pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<String, SignError>> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing the activation token failed: {message}")]
pub struct SignError {
    pub message: String,
    /// Worth trying again later (the signing service was unavailable or rate limited).
    pub retryable: bool,
}

impl ActivationRequest {
    /// A peer-approval request ID from 12 random bytes the caller supplies.
    pub fn new_id(random: [u8; 12]) -> String {
        activation_id("mpa", random)
    }

    /// The claims to sign. `issued_at` is now; the request expires at `expires`.
    pub fn claims(&self, issuer: &str, issued_at: Timestamp) -> ActivationClaims {
        ActivationClaims {
            jti: self.id.clone(),
            iss: issuer.to_string(),
            aud: issuer.to_string(),
            iat: issued_at.unix_seconds(),
            nbf: issued_at.unix_seconds(),
            exp: self.expires.unix_seconds(),
            beneficiary: self.beneficiary.clone(),
            reviewers: self.reviewers.clone(),
            entitlement: TokenEntitlement {
                project: self.entitlement.resource().to_string(),
                role: self.entitlement.role().to_string(),
                resource_condition: self.entitlement.resource_condition().map(|c| c.to_string()),
            },
            justification: self.justification.clone(),
            start: self.window.start().unix_seconds(),
            end: self.window.end().unix_seconds(),
            approvals: self.approvals_needed,
            approver_reason_required: self.approver_reason_required,
            review_deadline: self.review_deadline.map(Timestamp::unix_seconds),
        }
    }

    pub fn from_claims(claims: ActivationClaims) -> Result<ActivationRequest, TokenError> {
        let invalid = |message: String| TokenError::Request(message);
        let condition = claims
            .entitlement
            .resource_condition
            .as_deref()
            .map(ResourceCondition::parse)
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        let entitlement = EntitlementId::new(
            ResourceId::parse(&claims.entitlement.project).map_err(|e: EntitlementError| invalid(e.to_string()))?,
            RoleName::parse(&claims.entitlement.role).map_err(|e| invalid(e.to_string()))?,
            condition,
        );
        let time = |seconds: i64| {
            Timestamp::from_unix_seconds(seconds).ok_or_else(|| invalid("a time is out of range".into()))
        };
        let window = ActivationWindow::new(time(claims.start)?, time(claims.end)?)
            .map_err(|e: WindowError| invalid(e.to_string()))?;
        if claims.reviewers.is_empty() {
            return Err(invalid("it lists no reviewers".into()));
        }
        if !(1..=10).contains(&claims.approvals) {
            return Err(invalid(format!("it needs {} approvals; 1 to 10 are possible", claims.approvals)));
        }
        Ok(ActivationRequest {
            id: claims.jti,
            beneficiary: claims.beneficiary,
            reviewers: claims.reviewers,
            entitlement,
            justification: claims.justification,
            window,
            expires: time(claims.exp)?,
            approvals_needed: claims.approvals,
            approver_reason_required: claims.approver_reason_required,
            review_deadline: claims.review_deadline.map(time).transpose()?,
        })
    }
}

/// An activation ID, `jit-…` (self-approval) or `mpa-…` (peer approval), from 12 random bytes
/// the caller supplies (the core has no random number generator): 16 URL-safe characters.
pub fn activation_id(prefix: &str, random: [u8; 12]) -> String {
    format!("{prefix}-{}", URL_SAFE_NO_PAD.encode(random))
}

/// Verifies an activation token signed by `service_account` (issuer and audience), against
/// that account's public keys, as a link or a card presents it: it must not have expired.
pub fn verify_activation_token(
    token: &str,
    keys: &JwkSet,
    service_account: &str,
    now: Timestamp,
    leeway_seconds: u64,
) -> Result<ActivationRequest, TokenError> {
    verify_claims(token, keys, service_account, Some(now), leeway_seconds)
}

/// Verifies the token a ledger record was written with: its signature and its request, at any
/// time. The request's expiry bounds approving it (the record's `request_expiry`), never
/// reading, revoking or ending it.
pub fn verify_stored_token(token: &str, keys: &JwkSet, service_account: &str) -> Result<ActivationRequest, TokenError> {
    verify_claims(token, keys, service_account, None, 0)
}

fn verify_claims(
    token: &str,
    keys: &JwkSet,
    service_account: &str,
    now: Option<Timestamp>,
    leeway_seconds: u64,
) -> Result<ActivationRequest, TokenError> {
    let expect = Expectations {
        algorithm: Algorithm::RS256,
        issuer: service_account,
        audience: service_account,
        now: now.unwrap_or(Timestamp::UNIX_EPOCH),
        leeway_seconds,
        require_not_before: true,
        check_times: now.is_some(),
    };
    let claims = jwt::verify(token, keys, &expect)?;
    let claims: ActivationClaims =
        serde_json::from_value(serde_json::Value::Object(claims)).map_err(|e| TokenError::Request(e.to_string()))?;
    ActivationRequest::from_claims(claims)
}

/// The token as it goes into a link: the reference app's obfuscation (`ey` dropped, `.ey`
/// as `~~`, `.` as `~`), which keeps naive phishing filters from flagging the JWT. It is
/// not a security measure; the signature is.
pub fn to_url_form(token: &str) -> String {
    token.strip_prefix("ey").unwrap_or(token).replace(".ey", "~~").replace('.', "~")
}

/// Reverses [`to_url_form`]. A plain JWT is accepted as it is.
pub fn from_url_form(text: &str) -> String {
    if text.starts_with("ey") && text.contains('.') {
        return text.to_string();
    }
    format!("ey{}", text.replace("~~", ".ey").replace('~', "."))
}

/// Signs with a key this process holds: the emulator's stand-in for `signJwt`, the local run,
/// and tests.
#[derive(Debug)]
pub struct LocalTokenSigner {
    service_account: String,
    key: LocalKey,
}

impl LocalTokenSigner {
    pub fn new(service_account: &str, key: LocalKey) -> LocalTokenSigner {
        LocalTokenSigner { service_account: service_account.to_string(), key }
    }

    pub fn jwks(&self) -> JwkSet {
        self.key.jwks()
    }
}

impl TokenSigner for LocalTokenSigner {
    fn issuer(&self) -> &str {
        &self.service_account
    }

    fn sign<'a>(&'a self, claims: &'a ActivationClaims) -> SignFuture<'a> {
        let signed = serde_json::to_value(claims)
            .map_err(|e| e.to_string())
            .and_then(|payload| self.key.sign_json(&payload).map_err(|e| e.to_string()))
            .map_err(|message| SignError { message, retryable: false });
        Box::pin(std::future::ready(signed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    const SERVICE_ACCOUNT: &str = "jitaccess@project-1.iam.gserviceaccount.com";
    const NOW: i64 = 1_700_000_000;

    /// RSA key generation takes a moment; the tests share two keys.
    fn our_key() -> &'static LocalKey {
        static KEY: OnceLock<LocalKey> = OnceLock::new();
        KEY.get_or_init(|| LocalKey::generate_rs256("our-key-1").expect("key"))
    }

    fn other_account_key() -> &'static LocalKey {
        static KEY: OnceLock<LocalKey> = OnceLock::new();
        KEY.get_or_init(|| LocalKey::generate_rs256("other-key-1").expect("key"))
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(seconds).expect("in range")
    }

    fn request() -> ActivationRequest {
        ActivationRequest {
            id: ActivationRequest::new_id([7; 12]),
            beneficiary: Email::parse("alice@example.com").expect("email"),
            reviewers: vec![Email::parse("bob@example.com").expect("email")],
            entitlement: EntitlementId::parse("project-1:roles/compute.admin").expect("id"),
            justification: "BUG-12345".into(),
            window: ActivationWindow::new(at(NOW), at(NOW + 3_600)).expect("window"),
            expires: at(NOW + 3_600),
            approvals_needed: 1,
            approver_reason_required: false,
            review_deadline: None,
        }
    }

    fn claims_json() -> serde_json::Value {
        serde_json::to_value(request().claims(SERVICE_ACCOUNT, at(NOW))).expect("json")
    }

    fn signed_by(key: &LocalKey, payload: &serde_json::Value) -> String {
        key.sign_json(payload).expect("signs")
    }

    fn verify_at(token: &str, now: i64) -> Result<ActivationRequest, TokenError> {
        verify_activation_token(token, &our_key().jwks(), SERVICE_ACCOUNT, at(now), 30)
    }

    fn verify(token: &str) -> Result<ActivationRequest, TokenError> {
        verify_at(token, NOW + 60)
    }

    fn refused_with(token: &str, expected: JwtError) {
        assert_eq!(verify(token), Err(TokenError::Jwt(expected)), "{token}");
    }

    fn b64(json: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).expect("json"))
    }

    fn with_claim(name: &str, value: serde_json::Value) -> serde_json::Value {
        let mut claims = claims_json();
        claims[name] = value;
        claims
    }

    #[test]
    fn signed_token_verifies_and_round_trips() {
        let signer = LocalTokenSigner::new(SERVICE_ACCOUNT, LocalKey::generate_rs256("k1").expect("key"));
        let claims = request().claims(signer.issuer(), at(NOW));
        let token = futures_ready(signer.sign(&claims)).expect("signed");
        let verified =
            verify_activation_token(&token, &signer.jwks(), SERVICE_ACCOUNT, at(NOW + 1), 30).expect("verifies");
        assert_eq!(verified, request());
        assert!(request().id.starts_with("mpa-") && request().id.len() == 20);
    }

    #[test]
    fn claims_carry_the_whole_request() {
        let json = claims_json();
        for claim in [
            "jti",
            "iss",
            "aud",
            "iat",
            "nbf",
            "exp",
            "beneficiary",
            "reviewers",
            "entitlement",
            "justification",
            "start",
            "end",
        ] {
            assert!(json.get(claim).is_some(), "missing {claim} in {json}");
        }
        assert_eq!(json["entitlement"]["role"], "roles/compute.admin");
        assert_eq!(json["iss"], SERVICE_ACCOUNT);
        assert_eq!(json["aud"], SERVICE_ACCOUNT);
    }

    #[test]
    fn refuses_alg_none() {
        let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": "our-key-1"});
        let token = format!("{}.{}.", b64(&header), b64(&claims_json()));
        refused_with(&token, JwtError::MissingSignature);
        let token = format!("{}.{}.AAAA", b64(&header), b64(&claims_json()));
        refused_with(&token, JwtError::Algorithm("none".into()));
    }

    #[test]
    fn refuses_hs256_signed_with_the_public_key() {
        // The classic confusion attack: use the published RSA key as an HMAC secret.
        let public_key = serde_json::to_vec(our_key().jwk()).expect("json");
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("our-key-1".into());
        let token = jsonwebtoken::encode(&header, &claims_json(), &jsonwebtoken::EncodingKey::from_secret(&public_key))
            .expect("signs");
        refused_with(&token, JwtError::Algorithm("HS256".into()));
    }

    #[test]
    fn refuses_tampered_payload() {
        let token = signed_by(our_key(), &claims_json());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = b64(&with_claim("beneficiary", "eve@example.com".into()));
        let token = format!("{}.{}.{}", parts[0], tampered, parts[2]);
        refused_with(&token, JwtError::Signature);
    }

    #[test]
    fn refuses_one_changed_character() {
        let token = signed_by(our_key(), &claims_json());
        let middle = token.len() / 2;
        let replacement = if &token[middle..=middle] == "A" { "B" } else { "A" };
        let changed = format!("{}{}{}", &token[..middle], replacement, &token[middle + 1..]);
        assert!(verify(&changed).is_err());
    }

    #[test]
    fn refuses_stripped_signature() {
        let token = signed_by(our_key(), &claims_json());
        let stripped = &token[..token.rfind('.').expect("dot") + 1];
        refused_with(stripped, JwtError::MissingSignature);
        let two_parts = &token[..token.rfind('.').expect("dot")];
        refused_with(two_parts, JwtError::Malformed);
    }

    #[test]
    fn refuses_expired_token() {
        let token = signed_by(our_key(), &claims_json());
        assert!(verify_at(&token, NOW + 3_600 + 29).is_ok(), "within leeway");
        assert_eq!(verify_at(&token, NOW + 3_600 + 30), Err(TokenError::Jwt(JwtError::Expired)));
    }

    #[test]
    fn refuses_token_not_yet_valid() {
        let token = signed_by(our_key(), &with_claim("nbf", (NOW + 600).into()));
        refused_with(&token, JwtError::NotYetValid);
        let token = signed_by(our_key(), &with_claim("iat", (NOW + 600).into()));
        refused_with(&token, JwtError::IssuedInFuture);
        let mut claims = claims_json();
        claims.as_object_mut().expect("object").remove("nbf");
        refused_with(&signed_by(our_key(), &claims), JwtError::Claim("nbf"));
    }

    #[test]
    fn refuses_wrong_issuer_or_audience() {
        let token = signed_by(our_key(), &with_claim("iss", "other@project-1.iam.gserviceaccount.com".into()));
        refused_with(&token, JwtError::Issuer);
        let token = signed_by(our_key(), &with_claim("aud", "other@project-1.iam.gserviceaccount.com".into()));
        refused_with(&token, JwtError::Audience);
    }

    #[test]
    fn refuses_unknown_or_missing_kid() {
        let token = signed_by(other_account_key(), &claims_json());
        refused_with(&token, JwtError::UnknownKeyId("other-key-1".into()));
        // Whatever the signature, a token without kid is refused before any key is tried.
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        let body = format!("{}.{}.AAAA", b64(&header), b64(&claims_json()));
        refused_with(&body, JwtError::MissingKeyId);
    }

    #[test]
    fn refuses_key_of_another_service_account_under_our_kid() {
        // Another account's key, presented with our key's ID: the signature does not verify.
        let impostor = LocalKey::generate_rs256("our-key-1").expect("key");
        let token = signed_by(&impostor, &claims_json());
        refused_with(&token, JwtError::Signature);
    }

    #[test]
    fn refuses_es256_even_with_a_known_kid() {
        let ec = LocalKey::generate_es256("our-key-1").expect("key");
        refused_with(&signed_by(&ec, &claims_json()), JwtError::Algorithm("ES256".into()));
        // And an EC key in the set cannot stand in for RSA.
        let token = signed_by(our_key(), &claims_json());
        let keys = ec.jwks();
        assert_eq!(
            verify_activation_token(&token, &keys, SERVICE_ACCOUNT, at(NOW), 30),
            Err(TokenError::Jwt(JwtError::KeyKind))
        );
    }

    #[test]
    fn refuses_garbage() {
        for token in ["", "a", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30.AAAA"] {
            assert!(verify(token).is_err(), "{token:?}");
        }
    }

    #[test]
    fn refuses_signed_but_invalid_request() {
        let token = signed_by(our_key(), &with_claim("end", NOW.into()));
        assert!(matches!(verify(&token), Err(TokenError::Request(_))));
        let token = signed_by(our_key(), &with_claim("reviewers", serde_json::json!([])));
        assert!(matches!(verify(&token), Err(TokenError::Request(_))));
        let token = signed_by(our_key(), &with_claim("beneficiary", "Eve <eve@example.com>".into()));
        assert!(matches!(verify(&token), Err(TokenError::Request(_))));
    }

    #[test]
    fn leeway_is_bounded() {
        let token = signed_by(our_key(), &claims_json());
        let far_later = NOW + 3_600 + 3_600;
        assert_eq!(
            verify_activation_token(&token, &our_key().jwks(), SERVICE_ACCOUNT, at(far_later), 86_400),
            Err(TokenError::Jwt(JwtError::Expired))
        );
    }

    #[test]
    fn url_form_round_trips() {
        let token = signed_by(our_key(), &claims_json());
        let url = to_url_form(&token);
        assert!(!url.contains('.') && !url.starts_with("ey"), "{url}");
        assert!(url.chars().all(|c| c.is_ascii_alphanumeric() || "-_~".contains(c)));
        assert_eq!(from_url_form(&url), token);
        assert_eq!(from_url_form(&token), token);
        assert!(verify(&from_url_form(&url)).is_ok());
    }

    proptest::proptest! {
        /// Fuzz: arbitrary text never panics the verifier and never verifies.
        #[test]
        fn fuzz_arbitrary_tokens_never_verify(text in "\\PC{0,300}") {
            proptest::prop_assert!(verify(&text).is_err());
            proptest::prop_assert!(verify(&from_url_form(&text)).is_err());
        }

        /// Fuzz: any single-character change to a valid token is refused.
        #[test]
        fn fuzz_mutated_tokens_never_verify(position in 0usize..2_000, replacement in proptest::char::range('-', 'z')) {
            let token = signed_by(our_key(), &claims_json());
            let position = position % token.len();
            let original = token.as_bytes()[position] as char;
            proptest::prop_assume!(original != replacement);
            let mutated = format!("{}{}{}", &token[..position], replacement, &token[position + 1..]);
            // A few base64url changes decode to the same bytes (the last character's unused
            // bits); everything else must fail.
            if let Ok(request) = verify(&mutated) {
                proptest::prop_assert_eq!(request, verify(&token).expect("valid"));
            }
        }
    }

    /// The local signer is synchronous; poll its ready future once.
    fn futures_ready<T>(future: Pin<Box<dyn Future<Output = T> + Send + '_>>) -> T {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        let mut future = future;
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("local signing never waits"),
        }
    }
}
