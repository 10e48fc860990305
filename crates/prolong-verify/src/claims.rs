//! The verified claims handed to applications.
//!
//! Design decision: [`Claims`] is a shared pointer to [`AccessClaims`], so handing the same
//! verified token out of the cache again costs a reference-count increment, not a copy of six
//! strings; it dereferences to the plain claims.

use prolong_core::claims::AccessClaims;
use std::sync::Arc;

/// The claims of a token that passed verification (only a [`Verifier`](crate::Verifier) makes
/// them). Dereferences to [`AccessClaims`]; serializes exactly as the token's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims(Arc<AccessClaims>);

impl Claims {
    pub(crate) fn new(claims: AccessClaims) -> Self {
        Claims(Arc::new(claims))
    }

    /// The plain claims.
    pub fn access_claims(&self) -> &AccessClaims {
        &self.0
    }

    /// The plain claims, copied only if this value is shared (for instance with the cache).
    pub fn into_access_claims(self) -> AccessClaims {
        Arc::unwrap_or_clone(self.0)
    }
}

impl std::ops::Deref for Claims {
    type Target = AccessClaims;

    fn deref(&self) -> &AccessClaims {
        &self.0
    }
}

impl serde::Serialize for Claims {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl AsRef<AccessClaims> for Claims {
    fn as_ref(&self) -> &AccessClaims {
        &self.0
    }
}
