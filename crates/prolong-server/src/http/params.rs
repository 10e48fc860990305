//! Request parameters for `/oauth/*` and `/v1/renew`: the `Content-Type` alone picks the parser
//! (form or JSON), a query string or a repeated parameter is `invalid_request`, unknown parameters
//! are ignored, and bodies over 16 KiB are 413.

use super::error::ApiError;
use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, header};
use serde::de::{Deserializer, MapAccess, Visitor};
use std::collections::HashMap;

/// The largest body any endpoint reads.
pub const MAX_BODY: usize = 16 * 1024;

/// Flat string parameters of an OAuth-style request.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, Option<String>>);

impl Params {
    /// A parameter's value: `None` when absent, an error when it is not a string or number.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Some(v)) => Ok(Some(v.as_str())),
            Some(None) => Err(ApiError::InvalidRequest(format!("parameter {name} must be a string"))),
        }
    }

    /// A required, non-empty parameter.
    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::InvalidRequest(format!("missing parameter {name}"))),
        }
    }

    /// The `idle` parameter: a decimal integer 0..=2147483647; absent or empty is 0.
    pub fn idle(&self) -> Result<u32, ApiError> {
        match self.get("idle")? {
            None | Some("") => Ok(0),
            Some(v) => parse_idle(v),
        }
    }
}

/// Parses an `idle` value.
pub fn parse_idle(v: &str) -> Result<u32, ApiError> {
    let bad = || ApiError::InvalidRequest("idle must be a whole number of seconds from 0 to 2147483647".into());
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Leading zeros do not change the number; past them, more than ten digits is out of range.
    let digits = v.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    if digits.len() > 10 {
        return Err(bad());
    }
    match digits.parse::<u32>() {
        Ok(n) if n <= i32::MAX as u32 => Ok(n),
        _ => Err(bad()),
    }
}

/// Reads a whole body, refusing more than [`MAX_BODY`] bytes.
pub async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge;
            }
            source = s.source();
        }
        ApiError::InvalidRequest("could not read the request body".into())
    })
}

enum Kind {
    Form,
    Json,
}

fn content_kind(req: &Request<Body>) -> Result<Kind, ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match ct.as_deref() {
        Some("application/x-www-form-urlencoded") => Ok(Kind::Form),
        Some("application/json") => Ok(Kind::Json),
        _ => Err(ApiError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded or application/json".into(),
        )),
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        if req.uri().query().is_some() {
            return Err(ApiError::InvalidRequest("parameters must be sent in the body, not the query string".into()));
        }
        let kind = content_kind(&req)?;
        let bytes = read_body(req.into_body()).await?;
        match kind {
            Kind::Form => parse_form(&bytes),
            Kind::Json => parse_json(&bytes),
        }
    }
}

fn parse_form(bytes: &[u8]) -> Result<Params, ApiError> {
    let mut map = HashMap::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        if map.insert(k.to_string(), Some(v.into_owned())).is_some() {
            return Err(ApiError::InvalidRequest(format!("parameter {k} is repeated")));
        }
    }
    Ok(Params(map))
}

/// Parses a flat JSON object, refusing repeated keys (serde_json would keep the last silently).
pub fn parse_json(bytes: &[u8]) -> Result<Params, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let map = de.deserialize_map(FlatVisitor).map_err(|e| ApiError::InvalidRequest(sanitize(e)))?;
    de.end().map_err(|_| ApiError::InvalidRequest("trailing characters after the JSON body".into()))?;
    map.map(Params)
}

fn sanitize(e: serde_json::Error) -> String {
    if let Some(dup) = e.to_string().strip_prefix("repeated:") {
        let name = dup.split(" at line").next().unwrap_or(dup);
        return format!("parameter {name} is repeated");
    }
    format!("the body is not a JSON object ({})", e.classify_message())
}

trait Classify {
    fn classify_message(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_message(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong shape",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

struct FlatVisitor;

impl<'de> Visitor<'de> for FlatVisitor {
    type Value = Result<HashMap<String, Option<String>>, ApiError>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = HashMap::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: serde_json::Value = access.next_value()?;
            let scalar = match value {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            if map.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("repeated:{key}")));
            }
            map.insert(key, scalar);
        }
        Ok(Ok(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_rejects_repeats() {
        assert!(parse_form(b"a=1&b=2").is_ok());
        assert!(matches!(parse_form(b"a=1&a=2"), Err(ApiError::InvalidRequest(m)) if m.contains("repeated")));
    }

    #[test]
    fn json_rejects_repeats_and_non_objects() {
        let p = parse_json(br#"{"a":"x","idle":5,"o":{"n":1}}"#).expect("ok");
        assert_eq!(p.get("a").expect("a"), Some("x"));
        assert_eq!(p.idle().expect("idle"), 5);
        assert!(p.get("o").is_err());
        assert!(
            matches!(parse_json(br#"{"a":"1","a":"2"}"#), Err(ApiError::InvalidRequest(m)) if m.contains("repeated"))
        );
        assert!(parse_json(b"[1]").is_err());
        assert!(parse_json(b"{").is_err());
        assert!(parse_json(b"{} x").is_err());
    }

    #[test]
    fn idle_values() {
        assert_eq!(parse_idle("0").expect("0"), 0);
        assert_eq!(parse_idle("2147483647").expect("max"), 2_147_483_647);
        assert_eq!(parse_idle("00000000001").expect("leading zeros"), 1);
        assert_eq!(parse_idle("000").expect("zeros"), 0);
        for bad in ["-1", "2147483648", "1.5", "abc", " 1", "99999999999"] {
            assert!(parse_idle(bad).is_err(), "{bad}");
        }
    }
}
