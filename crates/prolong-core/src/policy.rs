//! The durations that govern sessions, validated once at startup.
//!
//! All durations are kept in milliseconds so that the rules compare like with like.

use crate::Millis;

/// How a session is prolonged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Short access tokens plus a rotating refresh token (the default).
    Refresh,
    /// One token renewed at `/v1/renew` inside its renewal window; no refresh token.
    Renew,
}

/// The session policy: every duration a rule of [`crate::session`] depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Refresh or renew mode.
    pub mode: Mode,
    /// Lifetime of an access token.
    pub access_ttl: Millis,
    /// A session whose last activity is older than this is dead (`expired_idle`).
    pub idle_timeout: Millis,
    /// A session older than this (from `auth_time`) is dead (`expired_absolute`).
    pub absolute_lifetime: Millis,
    /// How long after a rotation the previous token may be presented again.
    pub reuse_grace: Millis,
}

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `reuse_grace` must be positive and at most 60 s.
    #[error("session.reuse_grace must be greater than 0 and at most 60s")]
    ReuseGrace,
    /// The durations are not ordered `reuse_grace < access_ttl < idle_timeout <= absolute_lifetime`.
    #[error(
        "durations must satisfy reuse_grace < tokens.access_ttl < session.idle_timeout <= session.absolute_lifetime"
    )]
    Order,
}

impl Policy {
    /// Checks the constraints of CONTRACT §2.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.reuse_grace <= 0 || self.reuse_grace > 60_000 {
            return Err(PolicyError::ReuseGrace);
        }
        if !(self.reuse_grace < self.access_ttl
            && self.access_ttl < self.idle_timeout
            && self.idle_timeout <= self.absolute_lifetime)
        {
            return Err(PolicyError::Order);
        }
        Ok(())
    }

    /// The latest `exp` an access token issued at `iat` for a session that started at `auth_time`
    /// may carry: never past the session's absolute end.
    pub fn access_exp(&self, iat: Millis, auth_time: Millis) -> Millis {
        (iat + self.access_ttl).min(auth_time + self.absolute_lifetime)
    }

    /// In renew mode, the last moment a token issued at `iat` may be renewed.
    pub fn renew_until(&self, iat: Millis, auth_time: Millis) -> Millis {
        (iat + self.idle_timeout).min(auth_time + self.absolute_lifetime)
    }

    /// The longest time a token signed now can be accepted somewhere: its `exp` in refresh mode,
    /// its `renew_until` in renew mode. Retired signing keys stay published this long.
    pub fn max_token_life(&self) -> Millis {
        match self.mode {
            Mode::Refresh => self.access_ttl,
            Mode::Renew => self.idle_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(grace: Millis, ttl: Millis, idle: Millis, abs: Millis) -> Policy {
        Policy { mode: Mode::Refresh, access_ttl: ttl, idle_timeout: idle, absolute_lifetime: abs, reuse_grace: grace }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(p(10_000, 900_000, 1_800_000, 259_200_000).validate(), Ok(()));
    }

    #[test]
    fn grace_bounds() {
        assert_eq!(p(0, 900_000, 1_800_000, 259_200_000).validate(), Err(PolicyError::ReuseGrace));
        assert_eq!(p(60_001, 900_000, 1_800_000, 259_200_000).validate(), Err(PolicyError::ReuseGrace));
        assert_eq!(p(60_000, 900_000, 1_800_000, 259_200_000).validate(), Ok(()));
    }

    #[test]
    fn order_is_enforced() {
        assert_eq!(p(10_000, 10_000, 1_800_000, 259_200_000).validate(), Err(PolicyError::Order));
        assert_eq!(p(1_000, 1_800_000, 1_800_000, 259_200_000).validate(), Err(PolicyError::Order));
        assert_eq!(p(1_000, 2_000, 3_000, 2_999).validate(), Err(PolicyError::Order));
        assert_eq!(p(1_000, 2_000, 3_000, 3_000).validate(), Ok(()));
    }

    #[test]
    fn exp_never_passes_absolute_end() {
        let pol = p(1_000, 10_000, 20_000, 30_000);
        assert_eq!(pol.access_exp(0, 0), 10_000);
        assert_eq!(pol.access_exp(25_000, 0), 30_000);
        assert_eq!(pol.renew_until(15_000, 0), 30_000);
        assert_eq!(pol.renew_until(5_000, 0), 25_000);
    }
}
