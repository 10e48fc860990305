//! Configuration: defaults → TOML file → `PROLONG_*` environment → flags, merged once into one
//! validated [`Settings`].
//!
//! [`Config`] mirrors the file (CONTRACT §2) and carries every default in its `Default` impl;
//! [`Settings`] is what the server uses: parsed durations, the session policy, decoded secrets.
//! Unknown keys and invalid values are errors that name the key.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use prolong_core::keys::Algorithm;
use prolong_core::{Mode, Policy};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A duration written as a humantime string (`"15m"`) or an integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => match t.trim().parse::<u64>() {
                Ok(s) => Ok(Dur(Duration::from_secs(s))),
                Err(_) => humantime::parse_duration(t.trim())
                    .map(Dur)
                    .map_err(|e| serde::de::Error::custom(format!("invalid duration {t:?}: {e}"))),
            },
        }
    }
}

impl std::fmt::Display for Dur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

fn secs(s: u64) -> Dur {
    Dur(Duration::from_secs(s))
}

/// The configuration file, as CONTRACT §2 writes it. Every default is here.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// `sqlite://FILE` (created if missing) or `postgres://user@host/db`.
    pub database_url: String,
    /// The `iss` of tokens; empty means `http://<the address actually bound>`.
    pub issuer: String,
    /// The `aud` of tokens.
    pub audience: String,
    /// Bearer secret for `/v1/admin/*`, introspection and the feed; empty turns those off.
    pub admin_token: SecretString,
    /// Bearer secrets that may call only introspection and the revocation feed.
    pub resource_tokens: Vec<SecretString>,
    /// 32-byte base64 secret; when set, private keys are stored AES-256-GCM encrypted.
    pub key_encryption_key: SecretString,
    /// Exact origins allowed to call the user-facing endpoints from a browser.
    pub cors_allowed_origins: Vec<String>,
    /// Addresses whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Whether `/v1/signup` is open.
    pub allow_signup: bool,
    /// Access tokens.
    pub tokens: TokensConfig,
    /// Session lifetime.
    pub session: SessionConfig,
    /// Login throttling.
    pub login: LoginConfig,
}

/// `[tokens]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// ES256 (default), EdDSA, RS256 or HS256.
    pub algorithm: String,
    /// Access token lifetime.
    pub access_ttl: Dur,
}

/// `[session]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// `refresh` (default) or `renew`.
    pub mode: String,
    /// Sliding idle timeout.
    pub idle_timeout: Dur,
    /// Hard limit from login.
    pub absolute_lifetime: Dur,
    /// How long a rotated-away token may be presented again.
    pub reuse_grace: Dur,
}

/// `[login]`
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// Failed attempts per (username, client address) within `window` before 429.
    pub max_failures: u32,
    /// The throttling window.
    pub window: Dur,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://prolong.db".into(),
            issuer: String::new(),
            audience: "prolong".into(),
            admin_token: SecretString::from(""),
            resource_tokens: Vec::new(),
            key_encryption_key: SecretString::from(""),
            cors_allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            allow_signup: false,
            tokens: TokensConfig::default(),
            session: SessionConfig::default(),
            login: LoginConfig::default(),
        }
    }
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig { algorithm: "ES256".into(), access_ttl: secs(15 * 60) }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            mode: "refresh".into(),
            idle_timeout: secs(30 * 60),
            absolute_lifetime: secs(72 * 3600),
            reuse_grace: secs(10),
        }
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig { max_failures: 10, window: secs(15 * 60) }
    }
}

/// Flags that override file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--database-url`
    pub database_url: Option<String>,
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or a value has the wrong type, or a key is unknown.
    #[error("{0}")]
    Load(String),
    /// A value is out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

/// The validated configuration the server runs with.
#[derive(Debug)]
pub struct Settings {
    /// The merged file view (for `config check`).
    pub raw: Config,
    /// Parsed `listen`.
    pub listen: String,
    /// Database URL.
    pub database_url: String,
    /// Issuer, or `None` to derive it from the bound address.
    pub issuer: Option<String>,
    /// Audience.
    pub audience: String,
    /// Signing algorithm.
    pub algorithm: Algorithm,
    /// Session policy.
    pub policy: Policy,
    /// Admin secret, if the admin API is on.
    pub admin_token: Option<SecretString>,
    /// Resource-server secrets.
    pub resource_tokens: Vec<SecretString>,
    /// Key-encryption key.
    pub key_encryption_key: Option<[u8; 32]>,
    /// Allowed browser origins.
    pub cors_allowed_origins: Vec<String>,
    /// Proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Whether signup is open.
    pub allow_signup: bool,
    /// Login throttling: attempts.
    pub login_max_failures: u32,
    /// Login throttling: window.
    pub login_window: Duration,
}

fn ms(d: Dur) -> i64 {
    i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX)
}

impl Settings {
    /// Loads and validates: defaults, then `file` (if any), then `PROLONG_*`, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let mut fig = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Load(format!("config file {} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("PROLONG_").split("__"));
        if let Some(l) = &overrides.listen {
            fig = fig.merge(("listen", l.as_str()));
        }
        if let Some(u) = &overrides.database_url {
            fig = fig.merge(("database_url", u.as_str()));
        }
        let raw: Config = fig.extract().map_err(|e| ConfigError::Load(one_line(&e)))?;
        Settings::validate(raw)
    }

    fn validate(raw: Config) -> Result<Settings, ConfigError> {
        let algorithm = Algorithm::parse(&raw.tokens.algorithm)
            .ok_or_else(|| invalid("tokens.algorithm", "must be one of ES256, EdDSA, RS256, HS256"))?;
        let mode = match raw.session.mode.as_str() {
            "refresh" => Mode::Refresh,
            "renew" => Mode::Renew,
            _ => return Err(invalid("session.mode", "must be \"refresh\" or \"renew\"")),
        };
        let policy = Policy {
            mode,
            access_ttl: ms(raw.tokens.access_ttl),
            idle_timeout: ms(raw.session.idle_timeout),
            absolute_lifetime: ms(raw.session.absolute_lifetime),
            reuse_grace: ms(raw.session.reuse_grace),
        };
        policy.validate().map_err(|e| match e {
            prolong_core::policy::PolicyError::ReuseGrace => invalid("session.reuse_grace", e.to_string()),
            prolong_core::policy::PolicyError::Order => invalid("tokens.access_ttl", e.to_string()),
        })?;
        if raw.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid("listen", format!("{:?} is not an address like 127.0.0.1:8080", raw.listen)));
        }
        let issuer = if raw.issuer.is_empty() {
            None
        } else {
            let url = raw.issuer.trim_end_matches('/').to_string();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid("issuer", "must be an http(s) URL"));
            }
            Some(url)
        };
        if raw.audience.is_empty() {
            return Err(invalid("audience", "must not be empty"));
        }
        let admin_token = non_empty(&raw.admin_token);
        if let Some(t) = &admin_token
            && t.expose_secret().len() < 32
        {
            return Err(invalid("admin_token", "must be at least 32 bytes"));
        }
        for t in &raw.resource_tokens {
            if t.expose_secret().len() < 32 {
                return Err(invalid("resource_tokens", "each must be at least 32 bytes"));
            }
        }
        let key_encryption_key = match non_empty(&raw.key_encryption_key) {
            None => None,
            Some(k) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(k.expose_secret().trim())
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(k.expose_secret().trim()))
                    .map_err(|_| invalid("key_encryption_key", "must be base64"))?;
                Some(
                    <[u8; 32]>::try_from(bytes)
                        .map_err(|_| invalid("key_encryption_key", "must decode to exactly 32 bytes"))?,
                )
            }
        };
        for o in &raw.cors_allowed_origins {
            if o == "*" {
                return Err(invalid("cors_allowed_origins", "\"*\" is not allowed; list exact origins"));
            }
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                return Err(invalid(
                    "cors_allowed_origins",
                    format!("{o:?} is not an origin like https://app.example.com"),
                ));
            }
        }
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .map(|p| p.parse().map_err(|_| invalid("trusted_proxies", format!("{p:?} is not an IP address"))))
            .collect::<Result<Vec<_>, _>>()?;
        if raw.login.max_failures == 0 {
            return Err(invalid("login.max_failures", "must be at least 1"));
        }
        if raw.login.window.0.is_zero() {
            return Err(invalid("login.window", "must be positive"));
        }
        Ok(Settings {
            listen: raw.listen.clone(),
            database_url: raw.database_url.clone(),
            issuer,
            audience: raw.audience.clone(),
            algorithm,
            policy,
            admin_token,
            resource_tokens: raw.resource_tokens.clone(),
            key_encryption_key,
            cors_allowed_origins: raw.cors_allowed_origins.clone(),
            trusted_proxies,
            allow_signup: raw.allow_signup,
            login_max_failures: raw.login.max_failures,
            login_window: raw.login.window.0,
            raw,
        })
    }

    /// The effective configuration as TOML, secrets masked (for `config check`).
    pub fn masked_toml(&self) -> String {
        let mask = |s: &SecretString| {
            if s.expose_secret().is_empty() { String::new() } else { "********".into() }
        };
        let r = &self.raw;
        let list = |v: &[String]| format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "));
        let masked: Vec<String> = r.resource_tokens.iter().map(mask).collect();
        format!(
            "listen = {:?}\ndatabase_url = {:?}\nissuer = {:?}\naudience = {:?}\nadmin_token = {:?}\nresource_tokens = {}\n\
             key_encryption_key = {:?}\ncors_allowed_origins = {}\ntrusted_proxies = {}\nallow_signup = {}\n\n\
             [tokens]\nalgorithm = {:?}\naccess_ttl = \"{}\"\n\n[session]\nmode = {:?}\nidle_timeout = \"{}\"\n\
             absolute_lifetime = \"{}\"\nreuse_grace = \"{}\"\n\n[login]\nmax_failures = {}\nwindow = \"{}\"\n",
            r.listen,
            mask_url(&r.database_url),
            r.issuer,
            r.audience,
            mask(&r.admin_token),
            list(&masked),
            mask(&r.key_encryption_key),
            list(&r.cors_allowed_origins),
            list(&r.trusted_proxies),
            r.allow_signup,
            r.tokens.algorithm,
            r.tokens.access_ttl,
            r.session.mode,
            r.session.idle_timeout,
            r.session.absolute_lifetime,
            r.session.reuse_grace,
            r.login.max_failures,
            r.login.window,
        )
    }
}

/// Hides the passwords in a database URL: the userinfo's and any `password`-like query parameter.
pub fn mask_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.find("://") {
        Some(scheme_end) => {
            let rest = &base[scheme_end + 3..];
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            match authority.rfind('@').and_then(|at| authority[..at].find(':').map(|c| (c, at))) {
                Some((colon, at)) => format!("{}{}:********{}", &base[..scheme_end + 3], &rest[..colon], &rest[at..]),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.to_ascii_lowercase().contains("password") => format!("{key}=********"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

fn non_empty(s: &SecretString) -> Option<SecretString> {
    (!s.expose_secret().is_empty()).then(|| s.clone())
}

fn one_line(e: &figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e.clone() {
        let key = err.path.join(".");
        let src = err.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
        let msg = err.kind.to_string();
        parts.push(match (key.is_empty(), src.is_empty()) {
            (false, false) => format!("{key}: {msg} (from {src})"),
            (false, true) => format!("{key}: {msg}"),
            _ => msg,
        });
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(s: &str) -> Result<Settings, ConfigError> {
        let raw: Config =
            Figment::new().merge(Toml::string(s)).extract().map_err(|e| ConfigError::Load(one_line(&e)))?;
        Settings::validate(raw)
    }

    #[test]
    fn defaults_validate() {
        let s = from_toml("").expect("defaults");
        assert_eq!(s.algorithm, Algorithm::ES256);
        assert_eq!(s.policy.access_ttl, 900_000);
        assert_eq!(s.policy.absolute_lifetime, 72 * 3_600_000);
        assert!(s.admin_token.is_none());
    }

    #[test]
    fn durations_take_strings_and_integers() {
        let s =
            from_toml("[tokens]\naccess_ttl = 5\n[session]\nidle_timeout = \"1m\"\nreuse_grace = \"2s\"").expect("ok");
        assert_eq!((s.policy.access_ttl, s.policy.idle_timeout, s.policy.reuse_grace), (5_000, 60_000, 2_000));
    }

    #[test]
    fn errors_name_the_key() {
        let err = |s: &str| from_toml(s).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("bogus = 1").contains("bogus"));
        assert!(err("[session]\nnope = 1").contains("nope"));
        assert!(err("[tokens]\nalgorithm = \"none\"").contains("tokens.algorithm"));
        assert!(err("[tokens]\naccess_ttl = \"soon\"").contains("access_ttl"));
        assert!(err("[session]\nreuse_grace = \"61s\"").contains("reuse_grace"));
        assert!(err("[tokens]\naccess_ttl = \"1h\"").contains("access_ttl"));
        assert!(err("admin_token = \"short\"").contains("admin_token"));
        assert!(err("cors_allowed_origins = [\"*\"]").contains("cors_allowed_origins"));
        assert!(err("key_encryption_key = \"AAAA\"").contains("key_encryption_key"));
        assert!(err("listen = \"nowhere\"").contains("listen"));
    }

    #[test]
    fn masked_output_hides_secrets() {
        let s = from_toml(
            "admin_token = \"0123456789abcdef0123456789abcdef-secret\"\ndatabase_url = \"postgres://u:pw@h/db\"",
        )
        .expect("ok");
        let out = s.masked_toml();
        assert!(!out.contains("secret"));
        assert!(!out.contains("pw@"));
        assert!(out.contains("admin_token = \"********\""));
    }

    #[test]
    fn database_passwords_are_masked_wherever_the_url_holds_them() {
        assert_eq!(mask_url("postgres://u:pw@h/db"), "postgres://u:********@h/db");
        assert_eq!(
            mask_url("postgres://u:pw@h/db?password=other&sslmode=require"),
            "postgres://u:********@h/db?password=********&sslmode=require"
        );
        assert_eq!(mask_url("postgres://h/db?user=u&sslpassword=x"), "postgres://h/db?user=u&sslpassword=********");
        // An '@' after the host is not userinfo.
        assert_eq!(mask_url("postgres://h/db?application_name=a@b"), "postgres://h/db?application_name=a@b");
        assert_eq!(mask_url("sqlite://prolong.db"), "sqlite://prolong.db");
        assert_eq!(mask_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
