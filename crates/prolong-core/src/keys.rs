//! Signing and verification keys, parsed once and kept in memory.
//!
//! Signing uses aws-lc-rs key pairs parsed once at load (jsonwebtoken's `encode` would re-parse the
//! PKCS#8 document on every call); verification goes through `jsonwebtoken` with the algorithm
//! pinned per key, never taken from the token header.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use aws_lc_rs::{encoding::AsDer, hmac, rsa::KeySize};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// The signing algorithms Prolong issues tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256 (the default: the most widely verifiable asymmetric choice).
    ES256,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
    /// HMAC-SHA-256 with a 32-byte secret: only for a service that verifies its own tokens.
    HS256,
}

impl Algorithm {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
            Algorithm::HS256 => "HS256",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(s: &str) -> Option<Self> {
        [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::HS256].into_iter().find(|a| a.as_str() == s)
    }

    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

/// A key that could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The stored private key does not parse for its algorithm.
    #[error("stored {0} key is malformed")]
    Malformed(&'static str),
    /// The crypto library refused (key generation or signing).
    #[error("crypto operation failed")]
    Crypto,
    /// The claims could not be serialized.
    #[error("claims could not be serialized")]
    Claims,
}

/// Fresh private key material for `alg`: PKCS#8 DER for the asymmetric algorithms, a 32-byte secret
/// for HS256. Randomness comes from the operating system.
pub fn generate(alg: Algorithm) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let doc = match alg {
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Crypto)?
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Crypto)?.as_ref().to_vec(),
        Algorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
            .and_then(|k| k.as_der())
            .map_err(|_| KeyError::Crypto)?
            .as_ref()
            .to_vec(),
        Algorithm::HS256 => random_bytes::<32>()?.to_vec(),
    };
    Ok(doc)
}

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| KeyError::Crypto)?;
    Ok(out)
}

/// A new key id: 8 random bytes, base64url.
pub fn new_kid() -> Result<String, KeyError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<8>()?))
}

// The variants hold key pairs of different sizes; one signer per key, so size does not matter.
#[allow(clippy::large_enum_variant)]
enum Signer {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(Box<RsaKeyPair>),
    Hmac(hmac::Key),
}

/// A private key ready to sign, with its precomputed JWS header.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    signer: Signer,
    header_b64: String,
    verifying: VerifyingKey,
    jwk: Option<serde_json::Value>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// The media type of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

impl SigningKey {
    /// Parses stored private key material once.
    pub fn from_private(kid: &str, alg: Algorithm, private: &[u8]) -> Result<Self, KeyError> {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let (signer, decoding, jwk) = match alg {
            Algorithm::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, private)
                    .map_err(|_| KeyError::Malformed("ES256"))?;
                // Uncompressed point: 0x04 ‖ x ‖ y.
                let point = kp.public_key().as_ref();
                if point.len() != 65 {
                    return Err(KeyError::Malformed("ES256"));
                }
                let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
                let decoding =
                    jsonwebtoken::DecodingKey::from_ec_components(&x, &y).map_err(|_| KeyError::Malformed("ES256"))?;
                let jwk = serde_json::json!({"kty":"EC","crv":"P-256","x":x,"y":y,"kid":kid,"alg":"ES256","use":"sig"});
                (Signer::Ec(kp), decoding, Some(jwk))
            }
            Algorithm::EdDSA => {
                let kp =
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(private).map_err(|_| KeyError::Malformed("EdDSA"))?;
                let x = b64(kp.public_key().as_ref());
                let decoding =
                    jsonwebtoken::DecodingKey::from_ed_components(&x).map_err(|_| KeyError::Malformed("EdDSA"))?;
                let jwk = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":x,"kid":kid,"alg":"EdDSA","use":"sig"});
                (Signer::Ed(kp), decoding, Some(jwk))
            }
            Algorithm::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(private).map_err(|_| KeyError::Malformed("RS256"))?;
                let public = kp.public_key();
                let n = public.modulus().big_endian_without_leading_zero().to_vec();
                let e = public.exponent().big_endian_without_leading_zero().to_vec();
                let decoding = jsonwebtoken::DecodingKey::from_rsa_raw_components(&n, &e);
                let jwk = serde_json::json!({"kty":"RSA","n":b64(&n),"e":b64(&e),"kid":kid,"alg":"RS256","use":"sig"});
                (Signer::Rsa(Box::new(kp)), decoding, Some(jwk))
            }
            Algorithm::HS256 => {
                if private.len() < 32 {
                    return Err(KeyError::Malformed("HS256"));
                }
                let key = hmac::Key::new(hmac::HMAC_SHA256, private);
                (Signer::Hmac(key), jsonwebtoken::DecodingKey::from_secret(private), None)
            }
        };
        let header = serde_json::to_vec(&Header { alg: alg.as_str(), kid, typ: ACCESS_TOKEN_TYP })
            .map_err(|_| KeyError::Claims)?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            alg,
            signer,
            header_b64: b64(&header),
            verifying: VerifyingKey::new(kid, alg, decoding),
            jwk,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (none for HS256, whose key is secret).
    pub fn public_jwk(&self) -> Option<&serde_json::Value> {
        self.jwk.as_ref()
    }

    /// The matching verification key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Signs `claims` as a compact JWS with this key's `alg`, `kid` and `typ: at+jwt`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Claims)?;
        let mut out = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 400);
        out.push_str(&self.header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let sig: Vec<u8> = match &self.signer {
            Signer::Ec(kp) => {
                kp.sign(&SystemRandom::new(), out.as_bytes()).map_err(|_| KeyError::Crypto)?.as_ref().to_vec()
            }
            Signer::Ed(kp) => kp.sign(out.as_bytes()).as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), out.as_bytes(), &mut sig)
                    .map_err(|_| KeyError::Crypto)?;
                sig
            }
            Signer::Hmac(key) => hmac::sign(key, out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// A public (or, for HS256, secret) key that verifies tokens of exactly one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    alg: Algorithm,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
    /// ES256 and EdDSA public keys parsed once (aws-lc-rs), so a verification does not re-parse
    /// and re-validate the curve point; RS256 and HS256 go through `jsonwebtoken`.
    parsed: Option<signature::ParsedPublicKey>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature is good but the token is past its `exp`: the client should refresh or renew.
    #[error("token expired")]
    Expired,
    /// Anything else: bad signature, wrong algorithm, issuer or audience, malformed, unknown key.
    #[error("invalid token")]
    Invalid,
}

/// Tokens longer than this are invalid without being parsed (CONTRACT §3).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

impl VerifyingKey {
    fn new(kid: &str, alg: Algorithm, key: jsonwebtoken::DecodingKey) -> Self {
        let mut validation = jsonwebtoken::Validation::new(alg.jwt());
        // Time is checked by the caller against its own `now`, so that `exp` can be told apart
        // from every other failure and the core never reads the clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let parsed = match alg {
            Algorithm::ES256 => {
                signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.as_bytes()).ok()
            }
            Algorithm::EdDSA => signature::ParsedPublicKey::new(&signature::ED25519, key.as_bytes()).ok(),
            Algorithm::RS256 | Algorithm::HS256 => None,
        };
        VerifyingKey { kid: kid.to_owned(), alg, key, validation, parsed }
    }

    /// Builds a verifying key from a public JWK (as served at the JWKS endpoint). Only keys whose
    /// `alg` is one Prolong issues are accepted; the JWK's `alg` pins the algorithm.
    pub fn from_jwk(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Self> {
        let kid = jwk.common.key_id.as_deref()?;
        let alg = match jwk.common.key_algorithm? {
            jsonwebtoken::jwk::KeyAlgorithm::ES256 => Algorithm::ES256,
            jsonwebtoken::jwk::KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            jsonwebtoken::jwk::KeyAlgorithm::RS256 => Algorithm::RS256,
            _ => return None,
        };
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).ok()?;
        let family_ok = matches!(
            (alg, key.family()),
            (Algorithm::ES256, jsonwebtoken::AlgorithmFamily::Ec)
                | (Algorithm::EdDSA, jsonwebtoken::AlgorithmFamily::Ed)
                | (Algorithm::RS256, jsonwebtoken::AlgorithmFamily::Rsa)
        );
        family_ok.then(|| VerifyingKey::new(kid, alg, key))
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key accepts.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Checks the signature with this key's algorithm (a token whose header names another one is
    /// invalid), the `typ`, and returns the claims. Time, issuer and audience are the caller's
    /// business: see [`crate::claims::AccessClaims::check`].
    pub fn verify<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Invalid);
        }
        let Some(parsed) = &self.parsed else {
            let data =
                jsonwebtoken::decode::<T>(token, &self.key, &self.validation).map_err(|_| VerifyError::Invalid)?;
            self.check_header(&data.header)?;
            return Ok(data.claims);
        };
        // Compact JWS: exactly three base64url parts; the header is parsed by `jsonwebtoken`,
        // the signature checked with the key parsed at load, then the claims decoded.
        let (signing_input, sig_b64) = token.rsplit_once('.').ok_or(VerifyError::Invalid)?;
        let (_, payload_b64) = signing_input.split_once('.').ok_or(VerifyError::Invalid)?;
        if payload_b64.contains('.') {
            return Err(VerifyError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid)?;
        self.check_header(&header)?;
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| VerifyError::Invalid)?;
        parsed.verify_sig(signing_input.as_bytes(), &sig).map_err(|_| VerifyError::Invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| VerifyError::Invalid)?;
        serde_json::from_slice(&payload).map_err(|_| VerifyError::Invalid)
    }

    /// The header must name this key's algorithm and id, and `typ: at+jwt`.
    fn check_header(&self, header: &jsonwebtoken::Header) -> Result<(), VerifyError> {
        if header.alg != self.alg.jwt() || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(VerifyError::Invalid);
        }
        if !header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)) {
            return Err(VerifyError::Invalid);
        }
        Ok(())
    }
}

/// Reads the `kid` of a compact JWS without trusting anything else in it.
pub fn peek_kid(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    jsonwebtoken::decode_header(token).ok()?.kid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct C {
        sub: String,
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::HS256] {
            let der = generate(alg).expect("generate");
            let k = SigningKey::from_private("k1", alg, &der).expect("parse");
            let t = k.sign(&C { sub: "x".into() }).expect("sign");
            assert_eq!(peek_kid(&t).as_deref(), Some("k1"));
            let c: C = k.verifying_key().verify(&t).expect("verify");
            assert_eq!(c.sub, "x");
            assert_eq!(k.public_jwk().is_some(), alg != Algorithm::HS256);
            // A flipped signature byte is invalid.
            let mut bad = t.clone().into_bytes();
            let last = bad.len() - 2;
            bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(bad).expect("ascii");
            assert_eq!(k.verifying_key().verify::<C>(&bad), Err(VerifyError::Invalid));
        }
    }

    #[test]
    fn headers_and_shapes_are_checked_on_every_path() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::HS256] {
            let k = SigningKey::from_private("k1", alg, &generate(alg).expect("gen")).expect("parse");
            let other = SigningKey::from_private("k2", alg, &generate(alg).expect("gen")).expect("parse");
            let t = k.sign(&C { sub: "x".into() }).expect("sign");
            let v = k.verifying_key();
            // Another key's token (another kid), extra parts, a missing part.
            assert_eq!(v.verify::<C>(&other.sign(&C { sub: "x".into() }).expect("sign")), Err(VerifyError::Invalid));
            assert_eq!(v.verify::<C>(&format!("{t}.extra")), Err(VerifyError::Invalid));
            let (head, _) = t.rsplit_once('.').expect("parts");
            assert_eq!(v.verify::<C>(head), Err(VerifyError::Invalid));
            // A header re-signed would need the key; a header swapped under the same signature fails.
            let parts: Vec<&str> = t.split('.').collect();
            for header in [
                serde_json::json!({"alg": alg.as_str(), "kid": "k1", "typ": "JWT"}),
                serde_json::json!({"alg": alg.as_str(), "kid": "k1"}),
                serde_json::json!({"alg": "none", "kid": "k1", "typ": "at+jwt"}),
            ] {
                let swapped = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), parts[1], parts[2]);
                assert_eq!(v.verify::<C>(&swapped), Err(VerifyError::Invalid), "{alg:?} {header}");
            }
        }
    }

    #[test]
    fn jwk_round_trip_verifies() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let k = SigningKey::from_private("k", alg, &generate(alg).expect("gen")).expect("parse");
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(k.public_jwk().cloned().expect("jwk")).expect("jwk");
            let v = VerifyingKey::from_jwk(&jwk).expect("from jwk");
            let t = k.sign(&C { sub: "y".into() }).expect("sign");
            assert_eq!(v.verify::<C>(&t).expect("verify").sub, "y");
        }
    }

    #[test]
    fn malformed_material_is_an_error() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::HS256] {
            assert!(SigningKey::from_private("k", alg, b"short").is_err());
        }
    }
}
