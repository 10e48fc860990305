//! Verify Prolong access tokens in a resource server.
//!
//! A [`Verifier`] checks an access token the way CONTRACT §3 and §4 describe: at most 8 KiB, a
//! signature made with the algorithm pinned by the issuer's published key (never the one the token
//! header names), `typ: at+jwt`, the issuer, the audience and the expiry (`exp`, and `softexp` when
//! present). It finds the keys itself, by RFC 8414 discovery at
//! `{issuer}/.well-known/oauth-authorization-server` and then the `jwks_uri` it names, or is given
//! a fixed set of keys for in-process use. Tokens that passed are kept in a bounded cache, so a
//! token seen again costs a hash lookup rather than a signature check.
//!
//! ```no_run
//! # async fn demo() -> Result<(), prolong_verify::Error> {
//! use prolong_verify::Verifier;
//!
//! let verifier = Verifier::builder("https://auth.example.com", "prolong")
//!     .build()
//!     .await?;
//! let claims = verifier.verify("eyJhbGciOi...").await?;
//! println!("user {} in session {}", claims.sub, claims.sid);
//! # Ok(()) }
//! ```
//!
//! With the `axum` feature (on by default), [`VerifyLayer`] rejects requests without a valid
//! bearer token and [`Verified`] extracts the claims; failures answer as CONTRACT §4 says (`401`
//! with `WWW-Authenticate: Bearer …` and a JSON body, `503 temporarily_unavailable` while no keys
//! could be loaded, never `500`).
//!
//! HTTPS: the crate depends on `reqwest` without a TLS backend, so that it does not choose one for
//! you. For an `https://` issuer either enable one in your own `reqwest` dependency (Cargo unifies
//! the features, e.g. `reqwest = { version = "0.12", features = ["rustls-tls"] }`) or pass a
//! configured client with [`VerifierBuilder::http_client`].
//!
//! Strict mode (rejecting revoked tokens within about a second of their revocation): start a
//! [`RevocationFeed`] with a resource-server token and install it with
//! [`VerifierBuilder::revocation`]; any other [`RevocationCheck`] works too.

#![deny(missing_docs)]

mod cache;
mod claims;
mod error;
mod feed;
mod jwks;
#[cfg(feature = "axum")]
mod middleware;
mod revocation;
mod verifier;

pub use claims::Claims;
pub use error::{Error, ErrorKind};
pub use feed::{DEFAULT_MAX_STALENESS, FailMode, FeedStats, RevocationFeed, RevocationFeedBuilder};
#[cfg(feature = "axum")]
pub use middleware::{Verified, VerifyLayer, VerifyService, bearer_token};
pub use prolong_core::claims::AccessClaims;
pub use prolong_core::keys::VerifyingKey;
pub use revocation::{RevocationCheck, RevocationStatus};
pub use verifier::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_HTTP_TIMEOUT, DEFAULT_LEEWAY, DEFAULT_MIN_REFETCH_INTERVAL,
    DEFAULT_REFRESH_INTERVAL, Verifier, VerifierBuilder,
};
