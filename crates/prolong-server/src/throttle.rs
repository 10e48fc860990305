//! Login throttling (CONTRACT §2 `[login]`): failed attempts are counted per (username, client
//! address) within a sliding window; at the limit that pair gets 429 until the window passes,
//! whether the next password is right or wrong. Other users and addresses are never affected.
//!
//! Counts are kept in memory, per process, with bounded size: with several replicas the limit
//! applies per replica (documented in ARCHITECTURE.md).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_TRACKED: usize = 100_000;

/// The per-(username, address) failure counter.
pub struct LoginThrottle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<(String, IpAddr), VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// A throttle allowing `max_failures` within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginThrottle { max_failures: max_failures as usize, window, failures: Mutex::new(HashMap::new()) }
    }

    /// Counts an attempt for this pair before the password is checked, or refuses it with the
    /// time until the window lets one through. Checking and counting are one step under the lock,
    /// so parallel requests cannot all slip past the limit; a successful attempt is taken back
    /// with [`LoginThrottle::succeeded`], so only failures stay counted.
    pub fn attempt(&self, username: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(mut map) = self.failures.lock() else { return Ok(()) };
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < window));
            if map.len() >= MAX_TRACKED {
                // Still full of live entries: drop a tenth rather than grow without bound.
                let drop: Vec<_> = map.keys().take(MAX_TRACKED / 10).cloned().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
        let times = map.entry((username.to_owned(), ip)).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            times.pop_front();
        }
        if times.len() >= self.max_failures {
            let oldest = times.front().copied().unwrap_or(now);
            let retry = self.window.saturating_sub(now.duration_since(oldest));
            return Err(retry.max(Duration::from_secs(1)));
        }
        times.push_back(now);
        Ok(())
    }

    /// Takes back the attempt counted at `at`: the password was right.
    pub fn succeeded(&self, username: &str, ip: IpAddr, at: Instant) {
        let Ok(mut map) = self.failures.lock() else { return };
        let key = (username.to_owned(), ip);
        if let Some(times) = map.get_mut(&key) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                map.remove(&key);
            }
        }
    }
}

/// The client address: the peer, or — when the peer is a trusted proxy — the right-most address of
/// `X-Forwarded-For` that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut last = peer;
    for part in header.rsplit(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => last = ip,
            Ok(ip) => return ip,
            Err(_) => return last,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_the_pair_only_and_lets_it_go_after_the_window() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"));
        let start = Instant::now();
        // A success is taken back and does not count.
        assert!(t.attempt("alice", a, start).is_ok());
        t.succeeded("alice", a, start);
        for _ in 0..3 {
            assert!(t.attempt("alice", a, start).is_ok());
        }
        let retry = t.attempt("alice", a, start).expect_err("blocked");
        assert_eq!(retry, Duration::from_secs(60));
        assert!(t.attempt("alice", b, start).is_ok(), "another address");
        assert!(t.attempt("bob", a, start).is_ok(), "another user");
        assert!(t.attempt("alice", a, start + Duration::from_secs(60)).is_ok(), "window passed");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        let client: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(client_ip(client, Some("1.2.3.4"), &[proxy]), client);
        assert_eq!(client_ip(proxy, Some("1.2.3.4, 203.0.113.9"), &[proxy]), client);
        assert_eq!(client_ip(proxy, Some("203.0.113.9, 127.0.0.1"), &[proxy]), client);
        assert_eq!(client_ip(proxy, Some("garbage"), &[proxy]), proxy);
        assert_eq!(client_ip(proxy, None, &[proxy]), proxy);
    }
}
