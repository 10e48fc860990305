//! Refresh tokens: derived, never stored.
//!
//! The token of generation `g` is `plr1_` + base64url(key id ‖ session id ‖ g ‖ T) with
//! T = HMAC-SHA-256(refresh MAC key, label ‖ session id ‖ salt ‖ user id ‖ client id ‖ g). The
//! session row keeps only the salt and the generation, so a database dump yields no usable token,
//! and a refresh is one conditional update of that row. The server can re-derive the current token
//! to answer a retry within the grace with the very same string.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The textual prefix; the `1` versions the layout below.
pub const PREFIX: &str = "plr1_";
const LABEL: &[u8] = b"prolong/refresh-token/v1\0";
const RAW_LEN: usize = 8 + 16 + 8 + 32;

/// The id of a refresh MAC key: 8 random bytes.
pub type MacKeyId = [u8; 8];
/// A session id: 16 random bytes, never reused.
pub type SessionId = [u8; 16];

/// What a well-formed token claims before its MAC is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedRefreshToken {
    /// The MAC key it was made with.
    pub key_id: MacKeyId,
    /// The session it belongs to.
    pub session_id: SessionId,
    /// Its generation.
    pub generation: u64,
    tag: [u8; 32],
}

/// The fields a token's MAC binds.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The session id.
    pub session_id: &'a SessionId,
    /// The session's secret salt.
    pub salt: &'a [u8; 32],
    /// The session's user.
    pub user_id: &'a str,
    /// The `client_id` of the login.
    pub client_id: &'a str,
    /// The generation.
    pub generation: u64,
}

fn tag(key: &hmac::Key, b: &Binding<'_>) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(LABEL);
    ctx.update(b.session_id);
    ctx.update(b.salt);
    // Variable-length fields are length-prefixed so that no two bindings share an encoding.
    for field in [b.user_id.as_bytes(), b.client_id.as_bytes()] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field);
    }
    ctx.update(&b.generation.to_be_bytes());
    ctx.sign()
}

/// Makes the token for `binding` with the MAC key `key` (whose id is `key_id`).
pub fn issue(key_id: &MacKeyId, key: &hmac::Key, binding: &Binding<'_>) -> String {
    let mut raw = [0u8; RAW_LEN];
    raw[..8].copy_from_slice(key_id);
    raw[8..24].copy_from_slice(binding.session_id);
    raw[24..32].copy_from_slice(&binding.generation.to_be_bytes());
    raw[32..].copy_from_slice(tag(key, binding).as_ref());
    let mut out = String::with_capacity(PREFIX.len() + 86);
    out.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(raw, &mut out);
    out
}

/// Splits a presented token into its fields; `None` when it does not have the shape of one.
pub fn parse(token: &str) -> Option<ParsedRefreshToken> {
    let body = token.strip_prefix(PREFIX)?;
    if body.len() != 86 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
    let raw: [u8; RAW_LEN] = raw.try_into().ok()?;
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&raw[..8]);
    let mut session_id = [0u8; 16];
    session_id.copy_from_slice(&raw[8..24]);
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&raw[24..32]);
    let mut tag = [0u8; 32];
    tag.copy_from_slice(&raw[32..]);
    Some(ParsedRefreshToken { key_id, session_id, generation: u64::from_be_bytes(generation), tag })
}

impl ParsedRefreshToken {
    /// Checks the MAC in constant time against the session's binding.
    pub fn verify(&self, key: &hmac::Key, salt: &[u8; 32], user_id: &str, client_id: &str) -> bool {
        let binding = Binding { session_id: &self.session_id, salt, user_id, client_id, generation: self.generation };
        let expected = tag(key, &binding);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_ref(), &self.tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[b; 32])
    }

    #[test]
    fn round_trip_and_binding() {
        let sid = [7u8; 16];
        let salt = [9u8; 32];
        let b = Binding { session_id: &sid, salt: &salt, user_id: "u1", client_id: "prolong", generation: 42 };
        let t = issue(&[1; 8], &key(1), &b);
        assert!(t.starts_with(PREFIX));
        assert!(t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        let p = parse(&t).expect("well formed");
        assert_eq!((p.key_id, p.session_id, p.generation), ([1; 8], sid, 42));
        assert!(p.verify(&key(1), &salt, "u1", "prolong"));
        assert!(!p.verify(&key(2), &salt, "u1", "prolong"));
        assert!(!p.verify(&key(1), &[8; 32], "u1", "prolong"));
        assert!(!p.verify(&key(1), &salt, "u2", "prolong"));
        assert!(!p.verify(&key(1), &salt, "u1", "other"));
        // The length prefix keeps ("u1p", "rolong") apart from ("u1", "prolong").
        assert!(!p.verify(&key(1), &salt, "u1p", "rolong"));
    }

    #[test]
    fn tampered_generation_fails_the_mac() {
        let sid = [7u8; 16];
        let salt = [9u8; 32];
        let b = Binding { session_id: &sid, salt: &salt, user_id: "u", client_id: "c", generation: 1 };
        let mut p = parse(&issue(&[1; 8], &key(1), &b)).expect("well formed");
        p.generation = 2;
        assert!(!p.verify(&key(1), &salt, "u", "c"));
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        for t in [
            "",
            "plr1_",
            "plr2_AAAA",
            "plr1_!!!!",
            &format!("{PREFIX}{}", "A".repeat(85)),
            &format!("{PREFIX}{}", "A".repeat(87)),
        ] {
            assert_eq!(parse(t), None, "{t}");
        }
    }
}
