//! Signing keys this process owns: the local stand-ins for Google's service account key
//! (activation tokens) and IAP's key (assertions), used by the emulator, the local run and
//! tests. Production signs through IAM Credentials `signJwt` and never holds a private key.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// A private key with its key ID, and its public half as a JWK.
pub struct LocalKey {
    kid: String,
    algorithm: Algorithm,
    encoding_key: EncodingKey,
    jwk: Jwk,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("local key: {0}")]
pub struct KeyError(String);

impl LocalKey {
    /// A fresh 2048-bit RSA key for RS256, as Google's service account keys are.
    pub fn generate_rs256(kid: &str) -> Result<LocalKey, KeyError> {
        let key_pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|e| KeyError(e.to_string()))?;
        let pkcs8 = key_pair.as_der().map_err(|e| KeyError(e.to_string()))?;
        // jsonwebtoken wants PKCS#1 DER for RSA; its PEM reader unwraps PKCS#8 for us.
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let encoding_key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| KeyError(e.to_string()))?;
        LocalKey::new(kid, Algorithm::RS256, encoding_key)
    }

    /// A fresh P-256 key for ES256, as IAP's keys are.
    pub fn generate_es256(kid: &str) -> Result<LocalKey, KeyError> {
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .map_err(|e| KeyError(e.to_string()))?;
        LocalKey::new(kid, Algorithm::ES256, EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    fn new(kid: &str, algorithm: Algorithm, encoding_key: EncodingKey) -> Result<LocalKey, KeyError> {
        let mut jwk = Jwk::from_encoding_key(&encoding_key, algorithm).map_err(|e| KeyError(e.to_string()))?;
        jwk.common.key_id = Some(kid.to_string());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match algorithm {
            Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => KeyAlgorithm::RS256,
        });
        Ok(LocalKey { kid: kid.to_string(), algorithm, encoding_key, jwk })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key, as Google publishes keys.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// A key set holding just this key.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk.clone()] }
    }

    /// Signs a JSON payload with this key, with `kid` in the header, as `signJwt` does.
    pub fn sign_json(&self, payload: &serde_json::Value) -> Result<String, KeyError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_string());
        jsonwebtoken::encode(&header, payload, &self.encoding_key).map_err(|e| KeyError(e.to_string()))
    }
}

impl fmt::Debug for LocalKey {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}
