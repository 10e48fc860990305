//! The extension point for strict mode: a check that may reject a token before it expires.
//!
//! Design decision: the check is a synchronous, in-memory decision consulted on every
//! verification, cache hits included. Whatever keeps its state current (CONTRACT §6's revocation
//! feed, followed by a background task) lives behind the trait, so the request path never waits
//! on the network and a cached token is never let through past its revocation.

use prolong_core::Millis;
use prolong_core::claims::AccessClaims;

/// What a [`RevocationCheck`] says about a token that passed every other check.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStatus {
    /// Not revoked as far as the check knows, and its knowledge is fresh enough.
    Valid,
    /// Revoked: the token is answered as [`ErrorKind::Revoked`](crate::ErrorKind::Revoked)
    /// (`401 invalid_token`).
    Revoked,
    /// The check cannot tell (for instance it has not heard from the issuer for longer than its
    /// `max_staleness`): the token is answered as
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (`503`), failing closed.
    Unavailable,
}

/// Decides whether a token that is otherwise valid has been revoked. Install one with
/// [`VerifierBuilder::revocation`](crate::VerifierBuilder::revocation).
///
/// It is called on the request path for every successful verification, whether the token came
/// from the cache or was just checked, after the signature, issuer, audience and expiry. It must
/// answer from memory and must not block or panic. `now` is Unix milliseconds, read once per
/// verification by the verifier.
///
/// A strict-mode implementation following CONTRACT §6 would hold, per session id, the `until` of
/// its revocation, and per subject the minimum token version (`min_ver`), dropping entries after
/// their `until`: a token is revoked when its `sid` is listed, or its `ver` is below its `sub`'s
/// `min_ver`; when the feed has been silent for longer than `max_staleness` every answer is
/// [`RevocationStatus::Unavailable`].
pub trait RevocationCheck: Send + Sync + 'static {
    /// The status of a token with these (already verified) claims at `now`.
    fn check(&self, claims: &AccessClaims, now: Millis) -> RevocationStatus;
}
