//! The claims of an access token (CONTRACT §3) and their time, issuer and audience checks.

use crate::Millis;
use crate::keys::VerifyError;
use serde::{Deserialize, Serialize};

/// The claims Prolong puts in every access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The issuer URL.
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// The audience.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// A unique id, safe to log.
    pub jti: String,
    /// The session id.
    pub sid: String,
    /// The `client_id` of the token request.
    pub client_id: String,
    /// The user's token version at issue.
    pub ver: i64,
    /// When the session's login happened (Unix seconds).
    pub auth_time: i64,
    /// Renew mode: equal to `exp`, for code written against the seed's check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softexp: Option<i64>,
    /// Renew mode: the session generation this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#gen: Option<u64>,
    /// Renew mode: the last moment `/v1/renew` accepts this token (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_until: Option<i64>,
}

impl AccessClaims {
    /// Checks issuer, audience and expiry at `now`. A token is expired from its `exp` second on.
    pub fn check(&self, issuer: &str, audience: &str, now: Millis) -> Result<(), VerifyError> {
        if self.iss != issuer || self.aud != audience {
            return Err(VerifyError::Invalid);
        }
        if now >= self.exp.saturating_mul(1000) {
            return Err(VerifyError::Expired);
        }
        Ok(())
    }
}
