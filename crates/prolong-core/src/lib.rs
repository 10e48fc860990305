//! Prolong's pure core: the session rules, token formats and key handling.
//!
//! Nothing in this crate reads the clock, touches the network or a database: the current time is
//! always a parameter (`now`, Unix milliseconds) and randomness comes from the caller, so every rule
//! can be tested exhaustively with a fixed clock.

pub mod claims;
pub mod keys;
pub mod policy;
pub mod refresh_token;
pub mod session;
pub mod username;

/// Unix time in milliseconds. Session times are kept at millisecond precision.
pub type Millis = i64;

pub use policy::{Mode, Policy};
pub use session::{Decision, Reason, SessionState};
