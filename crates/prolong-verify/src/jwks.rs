//! Finding the issuer's signing keys: RFC 8414 discovery, then the JWKS it points to.
//!
//! Design decision: a key set is only ever replaced by a complete, successfully parsed one; any
//! failure (network, status, size, JSON, an `issuer` that is not the configured one) leaves the
//! keys in use untouched, so an issuer outage never empties a resource server's key set. Keys are
//! built with [`VerifyingKey::from_jwk`], which pins each key's algorithm from the JWK's own `alg`.

use prolong_core::keys::VerifyingKey;
use std::collections::HashMap;
use std::time::Duration;

/// Larger discovery or JWKS documents are refused (a JWKS of a few keys is a few KiB).
const MAX_DOCUMENT: usize = 1024 * 1024;

/// The verification keys published by the issuer, by key id.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    pub(crate) by_kid: HashMap<String, VerifyingKey>,
}

impl KeySet {
    pub(crate) fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut by_kid = HashMap::new();
        for key in keys {
            by_kid.entry(key.kid().to_owned()).or_insert(key);
        }
        KeySet { by_kid }
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.by_kid.get(kid)
    }
}

/// Parses a JWKS document. Keys Prolong cannot verify with (another `kty`, an `alg` Prolong does
/// not issue, no `kid`, `use` other than `sig`) are skipped rather than failing the whole set, so
/// one odd key does not hide the others; a key id listed twice is refused altogether, since which
/// key it means would be a guess.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid: {e}"))?;
    let mut by_kid: HashMap<String, VerifyingKey> = HashMap::new();
    let mut duplicates = Vec::new();
    for value in doc.keys {
        if value.get("use").and_then(|u| u.as_str()).is_some_and(|u| u != "sig") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(value) else {
            continue;
        };
        let Some(key) = VerifyingKey::from_jwk(&jwk) else {
            continue;
        };
        let kid = key.kid().to_owned();
        if by_kid.insert(kid.clone(), key).is_some() {
            duplicates.push(kid);
        }
    }
    for kid in duplicates {
        tracing::warn!(%kid, "the issuer's JWKS lists a key id twice; ignoring that key id");
        by_kid.remove(&kid);
    }
    Ok(KeySet { by_kid })
}

/// Where and how to fetch keys.
pub(crate) struct Remote {
    pub(crate) http: reqwest::Client,
    pub(crate) issuer: String,
    pub(crate) metadata_url: String,
}

impl Remote {
    pub(crate) fn new(http: reqwest::Client, issuer: &str) -> Self {
        Remote {
            http,
            issuer: issuer.to_owned(),
            metadata_url: format!("{}/.well-known/oauth-authorization-server", issuer.trim_end_matches('/')),
        }
    }

    /// Fetches the key set, discovering `jwks_uri` first when it is not known yet. On failure
    /// `jwks_uri` is forgotten, so the next attempt discovers again (the issuer may have moved it).
    pub(crate) async fn fetch(&self, jwks_uri: &mut Option<String>) -> Result<KeySet, String> {
        let result = async {
            let uri = match jwks_uri.take() {
                Some(uri) => uri,
                None => self.discover().await?,
            };
            let body = self.get(&uri).await?;
            let set = parse_jwks(&body)?;
            *jwks_uri = Some(uri);
            Ok(set)
        }
        .await;
        if result.is_err() {
            *jwks_uri = None;
        }
        result
    }

    async fn discover(&self) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: Option<String>,
        }
        let body = self.get(&self.metadata_url).await?;
        let meta: Metadata =
            serde_json::from_slice(&body).map_err(|e| format!("authorization server metadata is not valid: {e}"))?;
        if meta.issuer != self.issuer {
            return Err(format!(
                "authorization server metadata names issuer {:?}, not the configured {:?}",
                meta.issuer, self.issuer
            ));
        }
        let uri = meta.jwks_uri.ok_or("authorization server metadata has no jwks_uri")?;
        if !(uri.starts_with("https://") || uri.starts_with("http://")) {
            return Err(format!("jwks_uri {uri:?} is not an http(s) URL"));
        }
        Ok(uri)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        if response.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
            return Err(format!("GET {url}: document larger than {MAX_DOCUMENT} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {}", error_chain(&e)))? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(format!("GET {url}: document larger than {MAX_DOCUMENT} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// reqwest's top-level messages ("error sending request") hide the cause; operators need it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The HTTP client used when the application does not provide one.
pub(crate) fn default_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("prolong-verify/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prolong_core::keys::{Algorithm, SigningKey, generate};

    fn jwk(alg: Algorithm, kid: &str) -> serde_json::Value {
        let key = SigningKey::from_private(kid, alg, &generate(alg).expect("generate")).expect("key");
        key.public_jwk().cloned().expect("public jwk")
    }

    #[test]
    fn parses_every_algorithm_and_skips_what_it_cannot_use() {
        let mut enc = jwk(Algorithm::ES256, "enc");
        enc["use"] = "enc".into();
        let mut no_alg = jwk(Algorithm::ES256, "no-alg");
        if let Some(o) = no_alg.as_object_mut() {
            o.remove("alg");
        }
        let mut wrong_alg = jwk(Algorithm::ES256, "wrong-alg");
        wrong_alg["alg"] = "RS256".into();
        let doc = serde_json::json!({"keys": [
            jwk(Algorithm::ES256, "es"),
            jwk(Algorithm::EdDSA, "ed"),
            jwk(Algorithm::RS256, "rs"),
            enc, no_alg, wrong_alg,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "nonsense"},
        ]});
        let set = parse_jwks(&serde_json::to_vec(&doc).expect("json")).expect("parse");
        let mut kids: Vec<&str> = set.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["ed", "es", "rs"]);
        assert_eq!(set.get("es").expect("es").alg(), Algorithm::ES256);
    }

    #[test]
    fn a_duplicated_key_id_is_dropped() {
        let doc = serde_json::json!({"keys": [
            jwk(Algorithm::ES256, "dup"), jwk(Algorithm::ES256, "dup"), jwk(Algorithm::ES256, "ok")
        ]});
        let set = parse_jwks(&serde_json::to_vec(&doc).expect("json")).expect("parse");
        assert!(set.get("dup").is_none());
        assert!(set.get("ok").is_some());
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_an_error() {
        assert!(parse_jwks(b"not json").is_err());
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(br#"{"keys": 3}"#).is_err());
        let empty = parse_jwks(br#"{"keys": []}"#).expect("an empty set is a set");
        assert!(empty.by_kid.is_empty());
    }
}
