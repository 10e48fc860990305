//! The session state machine: every rule of CONTRACT §5 as pure functions.
//!
//! The store keeps one row per session (generation, times, token version, end reason); this module
//! decides what a refresh, renew or bearer request may do with that row. The store then applies the
//! decision with one conditional update, so the rules live here and only here.

use crate::{Millis, Policy};

/// Why a session ended, or why a grant was refused. The wire names are CONTRACT §4's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Wrong username or password.
    BadCredentials,
    /// The token is not one this server issued, or is ahead of its session.
    UnknownToken,
    /// An old token was presented again: the session was revoked.
    ReuseDetected,
    /// The session was ended by logout, revoke or an admin.
    Revoked,
    /// No activity for longer than `idle_timeout`.
    ExpiredIdle,
    /// Older than `absolute_lifetime`.
    ExpiredAbsolute,
    /// A re-authentication requirement ended the session.
    ReauthRequired,
    /// The user's token version moved on ("logout everywhere").
    VersionMismatch,
}

impl Reason {
    /// Every reason, for tables and tests.
    pub const ALL: [Reason; 8] = [
        Reason::BadCredentials,
        Reason::UnknownToken,
        Reason::ReuseDetected,
        Reason::Revoked,
        Reason::ExpiredIdle,
        Reason::ExpiredAbsolute,
        Reason::ReauthRequired,
        Reason::VersionMismatch,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadCredentials => "bad_credentials",
            Reason::UnknownToken => "unknown_token",
            Reason::ReuseDetected => "reuse_detected",
            Reason::Revoked => "revoked",
            Reason::ExpiredIdle => "expired_idle",
            Reason::ExpiredAbsolute => "expired_absolute",
            Reason::ReauthRequired => "reauth_required",
            Reason::VersionMismatch => "version_mismatch",
        }
    }

    /// Whether ending a session for this reason revokes its access tokens in strict mode (an
    /// explicit act), rather than letting them run out (idle, absolute).
    pub fn is_revocation(self) -> bool {
        matches!(self, Reason::Revoked | Reason::ReuseDetected | Reason::ReauthRequired)
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the rules need to know of a stored session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// The current generation: the only one whose token rotates the session.
    pub generation: u64,
    /// When the session moved to `generation` (its login for generation 0).
    pub rotated_at: Millis,
    /// The last user activity the server knows of.
    pub last_active: Millis,
    /// When the login that started the session happened.
    pub auth_time: Millis,
    /// The user's token version when the session started.
    pub token_version: i64,
    /// Set once the session has ended, with the reason; never cleared.
    pub ended: Option<Reason>,
}

/// The outcome of presenting a token of generation `presented` to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Move the session from `from` to `from + 1`, at `now`, with this `last_active`.
    Rotate {
        /// The generation the session must still be at for the update to apply.
        from: u64,
        /// The new `last_active`.
        last_active: Millis,
    },
    /// The previous token, again, inside the grace: answer with the current generation's tokens.
    Replay,
    /// End the session with this reason (and answer with it).
    End(Reason),
    /// Refuse without changing anything.
    Deny(Reason),
}

/// The `last_active` a refresh or renew at `now` reporting `idle` seconds of inactivity leaves:
/// `max(last_active, now - min(idle, now))`.
pub fn next_last_active(last_active: Millis, idle_secs: u32, now: Millis) -> Millis {
    let idle_ms = Millis::from(idle_secs).saturating_mul(1000).min(now.max(0));
    last_active.max(now - idle_ms)
}

/// Whether a session that has not ended is still alive at `now`; the first failing rule in the
/// contract's order otherwise. (Ended sessions carry their own reason; reuse is decided by the
/// caller before this, since it depends on the token presented.)
pub fn liveness(s: &SessionState, user_version: i64, policy: &Policy, now: Millis) -> Result<(), Reason> {
    if let Some(reason) = s.ended {
        return Err(reason);
    }
    if s.token_version != user_version {
        return Err(Reason::VersionMismatch);
    }
    if now - s.auth_time > policy.absolute_lifetime {
        return Err(Reason::ExpiredAbsolute);
    }
    if now - s.last_active > policy.idle_timeout {
        return Err(Reason::ExpiredIdle);
    }
    Ok(())
}

/// Decides a refresh (refresh mode) or renew (renew mode) presenting generation `presented`.
///
/// - a generation ahead of the session is unknown and changes nothing;
/// - an ended session answers with the reason it ended;
/// - the previous generation inside `reuse_grace` replays the current tokens, any other older
///   generation ends the session with `reuse_detected`;
/// - otherwise every liveness rule is checked, and a dead session is ended with its reason.
pub fn decide_refresh(
    s: &SessionState,
    user_version: i64,
    policy: &Policy,
    presented: u64,
    idle_secs: u32,
    now: Millis,
) -> Decision {
    if presented > s.generation {
        return Decision::Deny(Reason::UnknownToken);
    }
    if let Some(reason) = s.ended {
        return Decision::Deny(reason);
    }
    let replay = if presented < s.generation {
        let previous = presented + 1 == s.generation;
        if !(previous && now - s.rotated_at <= policy.reuse_grace) {
            return Decision::End(Reason::ReuseDetected);
        }
        true
    } else {
        false
    };
    if let Err(reason) = liveness(s, user_version, policy, now) {
        return Decision::End(reason);
    }
    if replay {
        Decision::Replay
    } else {
        Decision::Rotate { from: s.generation, last_active: next_last_active(s.last_active, idle_secs, now) }
    }
}

/// Decides a renew (renew mode): [`decide_refresh`], plus the presented token's own window. The
/// current generation's token renews only until its `renew_until` (then `expired_idle`); the
/// previous generation's, presented again inside `reuse_grace`, replays the current tokens even
/// past its own window — the rotation it lost happened inside that window, and the session is
/// checked again by every rule — so two tabs renewing at the edge never sign the user out.
pub fn decide_renew(
    s: &SessionState,
    user_version: i64,
    policy: &Policy,
    presented: u64,
    idle_secs: u32,
    now: Millis,
    renew_until: Millis,
) -> Decision {
    match decide_refresh(s, user_version, policy, presented, idle_secs, now) {
        Decision::Rotate { .. } if now > renew_until => Decision::Deny(Reason::ExpiredIdle),
        d => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use proptest::prelude::*;

    const POLICY: Policy = Policy {
        mode: Mode::Refresh,
        access_ttl: 10_000,
        idle_timeout: 30_000,
        absolute_lifetime: 100_000,
        reuse_grace: 2_000,
    };

    fn fresh(now: Millis) -> SessionState {
        SessionState { generation: 0, rotated_at: now, last_active: now, auth_time: now, token_version: 0, ended: None }
    }

    #[test]
    fn current_generation_rotates() {
        let s = fresh(0);
        assert_eq!(decide_refresh(&s, 0, &POLICY, 0, 0, 5_000), Decision::Rotate { from: 0, last_active: 5_000 });
    }

    #[test]
    fn reported_idle_moves_last_active_back_but_never_before_its_value() {
        let s = SessionState { last_active: 4_000, ..fresh(0) };
        assert_eq!(decide_refresh(&s, 0, &POLICY, 0, 3, 10_000), Decision::Rotate { from: 0, last_active: 7_000 });
        assert_eq!(decide_refresh(&s, 0, &POLICY, 0, 9, 10_000), Decision::Rotate { from: 0, last_active: 4_000 });
        assert_eq!(next_last_active(0, u32::MAX, 5), 0);
        assert_eq!(next_last_active(0, 0, 5), 5);
    }

    #[test]
    fn ahead_is_unknown() {
        assert_eq!(decide_refresh(&fresh(0), 0, &POLICY, 1, 0, 1), Decision::Deny(Reason::UnknownToken));
    }

    #[test]
    fn previous_inside_grace_replays_and_after_grace_is_reuse() {
        let s = SessionState { generation: 3, rotated_at: 10_000, last_active: 10_000, ..fresh(0) };
        assert_eq!(decide_refresh(&s, 0, &POLICY, 2, 0, 12_000), Decision::Replay);
        assert_eq!(decide_refresh(&s, 0, &POLICY, 2, 0, 12_001), Decision::End(Reason::ReuseDetected));
        assert_eq!(decide_refresh(&s, 0, &POLICY, 1, 0, 10_001), Decision::End(Reason::ReuseDetected));
        assert_eq!(decide_refresh(&s, 0, &POLICY, 0, 0, 10_001), Decision::End(Reason::ReuseDetected));
    }

    #[test]
    fn replay_rechecks_every_rule() {
        let s = SessionState { generation: 1, rotated_at: 10_000, last_active: 10_000, ..fresh(0) };
        assert_eq!(decide_refresh(&s, 1, &POLICY, 0, 0, 11_000), Decision::End(Reason::VersionMismatch));
    }

    #[test]
    fn ended_sessions_keep_their_reason() {
        for reason in Reason::ALL {
            let s = SessionState { ended: Some(reason), ..fresh(0) };
            assert_eq!(decide_refresh(&s, 0, &POLICY, 0, 0, 1), Decision::Deny(reason));
        }
    }

    #[test]
    fn idle_and_absolute_limits_are_inclusive() {
        let s = fresh(0);
        assert!(matches!(decide_refresh(&s, 0, &POLICY, 0, 0, 30_000), Decision::Rotate { .. }));
        assert_eq!(decide_refresh(&s, 0, &POLICY, 0, 0, 30_001), Decision::End(Reason::ExpiredIdle));
        let active = SessionState { last_active: 99_000, ..fresh(0) };
        assert!(matches!(decide_refresh(&active, 0, &POLICY, 0, 0, 100_000), Decision::Rotate { .. }));
        assert_eq!(decide_refresh(&active, 0, &POLICY, 0, 0, 100_001), Decision::End(Reason::ExpiredAbsolute));
    }

    #[test]
    fn reason_order_follows_the_contract() {
        // Old, idle, of an old version, and reused: reuse wins, then version, absolute, idle.
        let s = SessionState { generation: 5, rotated_at: 0, ..fresh(0) };
        assert_eq!(decide_refresh(&s, 1, &POLICY, 1, 0, 200_000), Decision::End(Reason::ReuseDetected));
        assert_eq!(decide_refresh(&s, 1, &POLICY, 5, 0, 200_000), Decision::End(Reason::VersionMismatch));
        assert_eq!(decide_refresh(&s, 0, &POLICY, 5, 0, 200_000), Decision::End(Reason::ExpiredAbsolute));
        assert_eq!(decide_refresh(&s, 0, &POLICY, 5, 0, 50_000), Decision::End(Reason::ExpiredIdle));
    }

    #[test]
    fn renew_window_limits_the_current_token_only() {
        let mut s = fresh(0);
        // The current token, inside and past its window.
        assert!(matches!(decide_renew(&s, 0, &POLICY, 0, 0, 5_000, 5_000), Decision::Rotate { .. }));
        assert_eq!(decide_renew(&s, 0, &POLICY, 0, 0, 5_001, 5_000), Decision::Deny(Reason::ExpiredIdle));
        // Rotated at 4_900 by another tab; the token it replaced, again at 5_500 (past its own
        // window, inside the grace), gets the current tokens.
        s.generation = 1;
        s.rotated_at = 4_900;
        s.last_active = 4_900;
        assert_eq!(decide_renew(&s, 0, &POLICY, 0, 0, 5_500, 5_000), Decision::Replay);
        // After the grace it is reuse, window or not; an older one always is.
        assert_eq!(decide_renew(&s, 0, &POLICY, 0, 0, 6_901, 5_000), Decision::End(Reason::ReuseDetected));
        s.generation = 2;
        assert_eq!(decide_renew(&s, 0, &POLICY, 0, 0, 5_500, 5_000), Decision::End(Reason::ReuseDetected));
    }

    #[test]
    fn reason_names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("nope"), None);
    }

    /// One step a client or the world can take.
    #[derive(Debug, Clone)]
    enum Step {
        /// Present the token `back` generations behind the newest one handed out.
        Present { back: u8, idle: u32 },
        /// The clock moves forward.
        Wait(Millis),
        /// Logout, admin revoke.
        Revoke,
        /// Logout everywhere.
        BumpVersion,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u8..3, 0u32..40).prop_map(|(back, idle)| Step::Present { back, idle }),
            3 => (0i64..40_000).prop_map(Step::Wait),
            1 => Just(Step::Revoke),
            1 => Just(Step::BumpVersion),
        ]
    }

    /// Applies a decision the way a store does: a conditional update on the generation.
    fn apply(s: &mut SessionState, d: Decision, now: Millis) {
        match d {
            Decision::Rotate { from, last_active } => {
                assert_eq!(s.generation, from);
                s.generation += 1;
                s.rotated_at = now;
                s.last_active = last_active;
            }
            Decision::End(r) => {
                if s.ended.is_none() {
                    s.ended = Some(r);
                }
            }
            Decision::Replay | Decision::Deny(_) => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// For random interleavings: at most one live generation (only the current one rotates and
        /// nothing else changes it), a dead session never comes back, and every denial carries the
        /// reason the rules give.
        #[test]
        fn interleavings_keep_the_invariants(steps in proptest::collection::vec(step(), 1..60)) {
            let mut now: Millis = 1_000;
            let mut s = fresh(now);
            let mut user_version = 0;
            let mut dead: Option<Reason> = None;
            let mut was_unlive = false;
            for st in steps {
                match st {
                    Step::Wait(d) => now += d,
                    Step::Revoke => apply(&mut s, Decision::End(Reason::Revoked), now),
                    Step::BumpVersion => user_version += 1,
                    Step::Present { back, idle } => {
                        let presented = s.generation.saturating_sub(u64::from(back));
                        let before = s;
                        let d = decide_refresh(&s, user_version, &POLICY, presented, idle, now);
                        match d {
                            Decision::Rotate { from, .. } => {
                                prop_assert!(dead.is_none());
                                prop_assert_eq!(presented, from);
                                prop_assert_eq!(from, s.generation);
                                prop_assert!(liveness(&s, user_version, &POLICY, now).is_ok());
                            }
                            Decision::Replay => {
                                prop_assert!(dead.is_none());
                                prop_assert_eq!(presented + 1, s.generation);
                                prop_assert!(now - s.rotated_at <= POLICY.reuse_grace);
                            }
                            Decision::End(r) => {
                                prop_assert!(s.ended.is_none());
                                if presented < s.generation {
                                    let in_grace = presented + 1 == s.generation && now - s.rotated_at <= POLICY.reuse_grace;
                                    if !in_grace {
                                        prop_assert_eq!(r, Reason::ReuseDetected);
                                    }
                                }
                                if r != Reason::ReuseDetected {
                                    prop_assert_eq!(Err(r), liveness(&s, user_version, &POLICY, now));
                                }
                            }
                            Decision::Deny(r) => {
                                prop_assert_eq!(Some(r), s.ended);
                            }
                        }
                        apply(&mut s, d, now);
                        prop_assert!(s.generation >= before.generation);
                    }
                }
                // A persisted end is final and never changes its reason.
                if let Some(r) = dead {
                    prop_assert_eq!(s.ended, Some(r));
                }
                dead = s.ended;
                // A session the rules call dead stays dead as time passes and versions move on.
                let unlive = liveness(&s, user_version, &POLICY, now).is_err();
                prop_assert!(!was_unlive || unlive);
                was_unlive = unlive;
            }
        }
    }
}
