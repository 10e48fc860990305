//! The crate's one error type.
//!
//! Design decision: callers branch on a small `#[non_exhaustive]` [`ErrorKind`] (as with
//! `jsonwebtoken`'s `Error::kind()`), never on messages; the message is a `&'static str` on the
//! request path, so rejecting a flood of bad tokens does not allocate for the error.

use std::borrow::Cow;

/// What went wrong, coarsely enough to choose a response.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request carried no bearer token: no `Authorization` header, or one of another scheme
    /// (`401 missing_token`).
    MissingToken,
    /// Anything wrong with the token other than its age: malformed, too long, bad signature,
    /// unknown key id, wrong algorithm, `typ`, issuer or audience (`401 invalid_token`).
    Invalid,
    /// The signature and claims are good but the token is past its `exp` (or `softexp`): the
    /// client should refresh or renew (`401 token_expired`).
    Expired,
    /// A [`RevocationCheck`](crate::RevocationCheck) reported the token revoked
    /// (`401 invalid_token`: the client must sign in again).
    Revoked,
    /// Nothing can be verified right now: no signing keys could ever be loaded from the issuer,
    /// or a revocation check cannot tell (`503 temporarily_unavailable`, never `401`, which would
    /// sign every client out).
    Unavailable,
    /// The verifier was configured with an unusable value (builder only, never from `verify`).
    Config,
}

impl ErrorKind {
    /// The `error` code of the JSON body and `WWW-Authenticate` challenge (CONTRACT §4).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::MissingToken => "missing_token",
            ErrorKind::Expired => "token_expired",
            ErrorKind::Invalid | ErrorKind::Revoked => "invalid_token",
            ErrorKind::Unavailable | ErrorKind::Config => "temporarily_unavailable",
        }
    }
}

/// Why a token was not accepted, or a verifier could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
}

impl Error {
    /// An error of `kind` with a fixed message (lowercase, no trailing period).
    pub(crate) const fn new(kind: ErrorKind, message: &'static str) -> Self {
        Error { kind, message: Cow::Borrowed(message) }
    }

    pub(crate) fn config(message: String) -> Self {
        Error { kind: ErrorKind::Config, message: Cow::Owned(message) }
    }

    pub(crate) const fn invalid(why: &'static str) -> Self {
        Error::new(ErrorKind::Invalid, why)
    }

    pub(crate) const fn expired() -> Self {
        Error::new(ErrorKind::Expired, "token expired")
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A short description for logs; it may name the check that failed (`audience mismatch`), so
    /// it is not sent to clients.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        assert_eq!(ErrorKind::MissingToken.code(), "missing_token");
        assert_eq!(ErrorKind::Expired.code(), "token_expired");
        assert_eq!(ErrorKind::Invalid.code(), "invalid_token");
        assert_eq!(ErrorKind::Revoked.code(), "invalid_token");
        assert_eq!(ErrorKind::Unavailable.code(), "temporarily_unavailable");
        let e = Error::invalid("audience mismatch");
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(e.to_string(), "audience mismatch");
    }
}
