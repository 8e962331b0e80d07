//! Verification of signed JWTs against a key set, shared by activation tokens and IAP
//! assertions.
//!
//! Every check is explicit and runs against a `now` given by the caller: the algorithm is
//! pinned (the header cannot choose it), the key is found by `kid` only, the key must be of
//! the pinned kind, then signature, issuer, audience, expiry, not-before and issued-at.
//! jsonwebtoken checks only the signature here, so no library default decides a claim.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::timestamp::Timestamp;

/// Clocks on Google's side and ours may differ a little, never by much.
pub const MAX_LEEWAY_SECONDS: u64 = 60;

/// What a token must be to be accepted.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub algorithm: Algorithm,
    pub issuer: &'a str,
    pub audience: &'a str,
    pub now: Timestamp,
    /// Clamped to [`MAX_LEEWAY_SECONDS`].
    pub leeway_seconds: u64,
    /// Activation tokens carry `nbf`; IAP assertions do not.
    pub require_not_before: bool,
    /// `false` only for a signed record read back long after it was issued (an activation
    /// token stored in the ledger): its signature and content still prove what was asked,
    /// while its expiry only bounds approving it, which the caller decides.
    pub check_times: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token has no signature")]
    MissingSignature,
    #[error("the token's algorithm '{0}' is not accepted")]
    Algorithm(String),
    #[error("the token names no signing key")]
    MissingKeyId,
    #[error("the token was signed by an unknown key '{0}'")]
    UnknownKeyId(String),
    #[error("the token's key is not of the accepted kind")]
    KeyKind,
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token's claim '{0}' is missing or malformed")]
    Claim(&'static str),
    #[error("the token was issued by someone else")]
    Issuer,
    #[error("the token is meant for another audience")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
}

/// What Cloud Run puts in place of a token's signature once its invoker check has verified it
/// (Cloud Run troubleshooting, "signature-removed").
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

/// The claims of a token whose signature Cloud Run verified and then replaced with
/// [`SIGNATURE_REMOVED`]. Only for a caller that knows Cloud Run's invoker check ran on this very
/// request; every claim is still checked. A token with any other signature is refused here.
pub fn claims_checked_by_cloud_run(
    token: &str,
    expect: &Expectations<'_>,
) -> Result<serde_json::Map<String, serde_json::Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if signature != SIGNATURE_REMOVED {
        return Err(JwtError::Signature);
    }
    let decode = |part: &str| -> Result<serde_json::Value, JwtError> {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(JwtError::Malformed)
    };
    let algorithm = decode(header)?.get("alg").and_then(|a| a.as_str()).map(str::to_string);
    if algorithm.as_deref() != Some(algorithm_name(expect.algorithm)) {
        return Err(JwtError::Algorithm(algorithm.unwrap_or_default().chars().take(16).collect()));
    }
    let serde_json::Value::Object(claims) = decode(payload)? else {
        return Err(JwtError::Malformed);
    };
    check_claims(&claims, expect)?;
    Ok(claims)
}

/// Verifies `token` and returns its claims as JSON, for the caller to read into its own type.
pub fn verify(
    token: &str,
    keys: &JwkSet,
    expect: &Expectations<'_>,
) -> Result<serde_json::Map<String, serde_json::Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if signature.is_empty() {
        return Err(JwtError::MissingSignature);
    }

    // Read the header by hand: jsonwebtoken cannot even represent `alg: none`, and we want
    // to say which algorithm was refused.
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(JwtError::Malformed)?;
    let algorithm = header.get("alg").and_then(|a| a.as_str()).ok_or(JwtError::Malformed)?;
    if algorithm != algorithm_name(expect.algorithm) {
        return Err(JwtError::Algorithm(algorithm.chars().take(16).collect()));
    }
    let kid = header.get("kid").and_then(|k| k.as_str()).ok_or(JwtError::MissingKeyId)?;
    let jwk = keys.find(kid).ok_or_else(|| JwtError::UnknownKeyId(kid.chars().take(64).collect()))?;
    if !key_fits(jwk, expect.algorithm) {
        return Err(JwtError::KeyKind);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| JwtError::KeyKind)?;

    let mut signature_only = Validation::new(expect.algorithm);
    signature_only.required_spec_claims.clear();
    signature_only.validate_exp = false;
    signature_only.validate_nbf = false;
    signature_only.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &signature_only)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtError::Signature,
            _ => JwtError::Malformed,
        })?
        .claims;

    check_claims(&claims, expect)?;
    Ok(claims)
}

/// The claim checks of [`verify`] alone, for claims whose signature was verified earlier.
pub fn check_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
    expect: &Expectations<'_>,
) -> Result<(), JwtError> {
    let leeway = expect.leeway_seconds.min(MAX_LEEWAY_SECONDS) as i64;
    let now = expect.now.unix_seconds();
    let number = |name: &'static str| claims.get(name).and_then(|v| v.as_i64()).ok_or(JwtError::Claim(name));

    let issuer = claims.get("iss").and_then(|v| v.as_str()).ok_or(JwtError::Claim("iss"))?;
    if issuer != expect.issuer {
        return Err(JwtError::Issuer);
    }
    let audience_matches = match claims.get("aud") {
        Some(serde_json::Value::String(audience)) => audience == expect.audience,
        Some(serde_json::Value::Array(audiences)) => audiences.iter().any(|a| a.as_str() == Some(expect.audience)),
        _ => return Err(JwtError::Claim("aud")),
    };
    if !audience_matches {
        return Err(JwtError::Audience);
    }
    if !expect.check_times {
        return Ok(());
    }
    if now >= number("exp")?.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if expect.require_not_before && number("nbf")? > now.saturating_add(leeway) {
        return Err(JwtError::NotYetValid);
    }
    if number("iat")? > now.saturating_add(leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(())
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        // Only the two above are ever pinned; any other name is refused by comparison.
        _ => "unsupported",
    }
}

/// The key must be of the pinned kind, and if it names an algorithm, the pinned one.
fn key_fits(jwk: &Jwk, algorithm: Algorithm) -> bool {
    let declared_ok = matches!(
        (&jwk.common.key_algorithm, algorithm),
        (None, _) | (Some(KeyAlgorithm::RS256), Algorithm::RS256) | (Some(KeyAlgorithm::ES256), Algorithm::ES256)
    );
    let kind_ok = match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => ec.curve == EllipticCurve::P256,
        _ => false,
    };
    declared_ok && kind_ok
}
