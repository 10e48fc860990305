//! axum and tower integration: the [`Verified`] extractor, the [`VerifyLayer`] middleware and the
//! RFC 6750 responses for failures.
//!
//! Design decision: the layer verifies once and stores the [`Claims`] in the request extensions;
//! the extractor reuses claims found there (when they were verified for the same issuer and
//! audience) and otherwise verifies with the [`Verifier`] taken from the router state through
//! [`FromRef`]. Taking the verifier from state rather than from an extension makes a missing
//! verifier a compile error instead of a `500` at run time.

use crate::claims::Claims;
use crate::error::{Error, ErrorKind};
use crate::verifier::Verifier;
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The token of the request's `Authorization: Bearer` header.
///
/// No header, or one of another scheme (RFC 6750 §3.1), is [`ErrorKind::MissingToken`]; two
/// headers or an empty token are [`ErrorKind::Invalid`].
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, Error> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Error::new(ErrorKind::MissingToken, "no access token"));
    };
    if values.next().is_some() {
        return Err(Error::invalid("more than one Authorization header"));
    }
    let value = value.to_str().map_err(|_| Error::invalid("Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    // Another scheme (Basic, say) brings no bearer token: RFC 6750 §3.1 answers it as missing.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::new(ErrorKind::MissingToken, "no bearer token"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::invalid("empty bearer token"));
    }
    Ok(token)
}

/// CONTRACT §4: `401` with a `WWW-Authenticate: Bearer` challenge (an `error` attribute unless the
/// token is missing) and a JSON body; `503 temporarily_unavailable` with `Retry-After` when
/// nothing can be verified. Never `500`.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let (status, challenge, description) = match kind {
            ErrorKind::MissingToken => (StatusCode::UNAUTHORIZED, Some("Bearer"), "an access token is required"),
            ErrorKind::Expired => (
                StatusCode::UNAUTHORIZED,
                Some("Bearer error=\"invalid_token\", error_description=\"the access token expired\""),
                "the access token expired",
            ),
            ErrorKind::Unavailable | ErrorKind::Config => {
                (StatusCode::SERVICE_UNAVAILABLE, None, "the access token cannot be verified right now; retry shortly")
            }
            ErrorKind::Invalid | ErrorKind::Revoked => {
                (StatusCode::UNAUTHORIZED, Some("Bearer error=\"invalid_token\""), "the access token is not valid")
            }
        };
        tracing::debug!(target: "prolong_verify", error = %self, status = status.as_u16(), "request rejected");
        let body = serde_json::json!({"error": kind.code(), "error_description": description});
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match challenge {
            Some(challenge) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            None => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
        }
        response
    }
}

/// The claims of the request's verified bearer token.
///
/// Usable in any router whose state provides a [`Verifier`] (`Verifier: FromRef<S>`; a
/// `Router<Verifier>` qualifies). Behind a [`VerifyLayer`] it takes the claims the layer already
/// verified, without checking the token again. Rejects with [`Error`], which answers as
/// CONTRACT §4 says. As `Option<Verified>` it yields `None` when the request has no
/// `Authorization` header and still rejects a bad token.
#[derive(Debug, Clone)]
pub struct Verified(pub Claims);

impl<S> FromRequestParts<S> for Verified
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let verifier = Verifier::from_ref(state);
        if let Some(claims) = parts.extensions.get::<Claims>()
            && claims.iss == verifier.issuer()
            && claims.aud == verifier.audience()
        {
            return Ok(Verified(claims.clone()));
        }
        let claims = verifier.verify(bearer_token(&parts.headers)?).await?;
        parts.extensions.insert(claims.clone());
        Ok(Verified(claims))
    }
}

impl<S> OptionalFromRequestParts<S> for Verified
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Error> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(None);
        }
        <Verified as FromRequestParts<S>>::from_request_parts(parts, state).await.map(Some)
    }
}

/// A tower layer that lets through only requests with a valid bearer token, putting its
/// [`Claims`] in the request extensions (read them with [`Verified`] or
/// `axum::Extension<Claims>`). Other requests are answered with the [`Error`] response.
///
/// With axum, `Router::route_layer` applies it to matched routes only, so unknown paths still get
/// the router's `404`:
///
/// ```no_run
/// use axum::{Json, Router, routing::get};
/// use prolong_verify::{Claims, Verified, Verifier, VerifyLayer};
///
/// async fn whoami(Verified(claims): Verified) -> Json<Claims> {
///     Json(claims)
/// }
///
/// # async fn demo() -> Result<(), prolong_verify::Error> {
/// let verifier = Verifier::builder("https://auth.example.com", "prolong").build().await?;
/// let app: Router = Router::new()
///     .route("/api/whoami", get(whoami))
///     .route_layer(VerifyLayer::new(verifier.clone()))
///     .with_state(verifier);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
}

impl VerifyLayer {
    /// A layer verifying with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        VerifyLayer { verifier }
    }
}

impl<S> tower::Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> VerifyService<S> {
        VerifyService { inner, verifier: self.verifier.clone() }
    }
}

/// The service made by [`VerifyLayer`].
#[derive(Debug, Clone)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Verifier,
}

impl<S, B> tower::Service<Request<B>> for VerifyService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service that was polled ready handles this request; the clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let verified = match bearer_token(request.headers()) {
                Ok(token) => verifier.verify(token).await,
                Err(e) => Err(e),
            };
            match verified {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(e) => Ok(e.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use prolong_core::claims::AccessClaims;
    use prolong_core::keys::{Algorithm, SigningKey, generate};
    use tower::ServiceExt;

    const ISS: &str = "https://issuer.example";

    fn key() -> SigningKey {
        SigningKey::from_private("k1", Algorithm::ES256, &generate(Algorithm::ES256).expect("gen")).expect("key")
    }

    fn token(k: &SigningKey, exp_in: i64) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        k.sign(&AccessClaims {
            iss: ISS.into(),
            sub: "user-1".into(),
            aud: "prolong".into(),
            iat: now,
            exp: now + exp_in,
            jti: "j".into(),
            sid: "s".into(),
            client_id: "prolong".into(),
            ver: 0,
            auth_time: now,
            softexp: None,
            r#gen: None,
            renew_until: None,
        })
        .expect("sign")
    }

    async fn whoami(Verified(claims): Verified) -> axum::Json<Claims> {
        axum::Json(claims)
    }

    async fn maybe(v: Option<Verified>) -> String {
        v.map_or("anonymous".into(), |Verified(c)| c.sub.clone())
    }

    fn app(verifier: &Verifier) -> Router {
        Router::new()
            .route("/layered", get(whoami))
            .route_layer(VerifyLayer::new(verifier.clone()))
            .route("/extracted", get(whoami))
            .route("/optional", get(maybe))
            .with_state(verifier.clone())
    }

    async fn call(app: &Router, path: &str, auth: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::get(path);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let response = app.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn error_of(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert!(v["error_description"].is_string(), "{body}");
        v["error"].as_str().expect("error").to_owned()
    }

    #[tokio::test]
    async fn responses_follow_the_contract_for_layer_and_extractor() {
        let k = key();
        let verifier =
            Verifier::builder(ISS, "prolong").build_with_keys([k.verifying_key().clone()]).expect("verifier");
        let app = app(&verifier);
        let good = format!("Bearer {}", token(&k, 600));
        let expired = format!("Bearer {}", token(&k, -1));
        for path in ["/layered", "/extracted"] {
            let (status, headers, body) = call(&app, path, Some(&good)).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert!(body.contains("\"sub\":\"user-1\""), "{body}");

            let (status, headers2, body) = call(&app, path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(headers2[header::WWW_AUTHENTICATE], "Bearer", "{path}");
            assert_eq!(error_of(&body), "missing_token");
            assert_eq!(headers2[header::CONTENT_TYPE], "application/json");
            drop(headers);

            let (status, headers, body) = call(&app, path, Some(&expired)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(
                headers[header::WWW_AUTHENTICATE]
                    .to_str()
                    .expect("ascii")
                    .starts_with("Bearer error=\"invalid_token\"")
            );
            assert_eq!(error_of(&body), "token_expired");

            for bad in ["Bearer nonsense", "Bearer ", "Bearer", "bearer  "] {
                let (status, headers, body) = call(&app, path, Some(bad)).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
                assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"");
                assert_eq!(error_of(&body), "invalid_token");
            }
            // Another scheme carries no bearer token: a challenge without an error attribute.
            let (status, headers, body) = call(&app, path, Some("Basic dXNlcjpwYXNz")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
            assert_eq!(error_of(&body), "missing_token");
        }
        let (status, _, body) = call(&app, "/optional", None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
        let (status, _, body) = call(&app, "/optional", Some(&good)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "user-1"));
        let (status, _, _) = call(&app, "/optional", Some("Bearer nonsense")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn two_authorization_headers_are_invalid() {
        let mut headers = HeaderMap::new();
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        assert_eq!(bearer_token(&headers).map_err(|e| e.kind()), Ok("a"));
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(bearer_token(&headers).map_err(|e| e.kind()), Err(ErrorKind::Invalid));
    }

    #[test]
    fn unavailable_is_a_503_with_retry_after_never_a_500() {
        for kind in [ErrorKind::Unavailable, ErrorKind::Config] {
            let response = Error::new(kind, "x").into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key(header::RETRY_AFTER));
            assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
        }
        let response = Error::new(ErrorKind::Revoked, "x").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_layer_before_any_keys_load_answers_503() {
        // An issuer nobody listens on: the keys can never load.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let verifier = Verifier::builder(base, "prolong")
            .min_refetch_interval(std::time::Duration::from_millis(10))
            .build()
            .await
            .expect("built even though the issuer is down");
        let app = app(&verifier);
        let (status, headers, body) = call(&app, "/layered", Some(&format!("Bearer {}", token(&key(), 60)))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(error_of(&body), "temporarily_unavailable");
    }
}
