//! The `prolong` command line (CONTRACT §1). Errors end the process with one line on stderr and a
//! non-zero status.

use crate::config::{Overrides, Settings};
use crate::{keyring, password, service};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use prolong_core::Reason;
use prolong_store::{Store, User};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

/// Keeps users of a REST API signed in while they are active, and signs them out when they should be.
#[derive(Debug, Parser)]
#[command(name = "prolong", version)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL (sqlite://FILE or postgres://…); overrides the file and environment.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the token server.
    Serve {
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Create the user `demo` with a random password printed once on stderr.
        #[arg(long)]
        demo: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect and end sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Manage signing and refresh-MAC keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user.
    Add {
        /// The username.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Reset a user's password; every session of the user ends (re-authentication required).
    Passwd {
        /// The username.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Require re-authentication: every session of the user ends.
    Reauth {
        /// The username.
        username: String,
    },
    /// Bump the user's token version: every session ends ("log out everywhere").
    RevokeAll {
        /// The username.
        username: String,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List live sessions of a user.
    List {
        /// The username.
        username: Option<String>,
    },
    /// End a session.
    Revoke {
        /// The session id (32 hex characters).
        session_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List keys.
    List,
    /// Add a new signing key and a new refresh-MAC key; the old ones keep verifying until their
    /// tokens have expired.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate and print the effective configuration, secrets masked.
    Check,
}

/// Parses arguments and runs the command; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, as every other CLI error (`prolong --help` has the details).
            let text = e.render().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("{}", first.trim());
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .try_init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listen = match &cli.command {
        Command::Serve { listen, .. } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides { listen, database_url: cli.global.database_url.clone() };
    let settings = Settings::load(cli.global.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Serve { demo, .. } => crate::serve(settings, demo).await,
        Command::Config(ConfigCommand::Check) => {
            if let Some(issuer) = &settings.issuer
                && !issuer.starts_with("https://")
                && !crate::is_loopback_issuer(issuer)
            {
                bail!(
                    "issuer: {issuer} must be https unless it is a loopback address (only `serve --demo` accepts it)"
                );
            }
            print!("{}", settings.masked_toml());
            Ok(())
        }
        Command::User(cmd) => user(cmd, &settings).await,
        Command::Sessions(cmd) => sessions(cmd, &settings).await,
        Command::Keys(cmd) => keys(cmd, &settings).await,
    }
}

async fn open(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    prolong_store::connect(&settings.database_url)
        .await
        .with_context(|| format!("opening database {}", crate::config::mask_url(&settings.database_url)))
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("reading the password")?;
        let again = rpassword::prompt_password("again: ").context("reading the password")?;
        if first != again {
            bail!("the passwords do not match");
        }
        first
    } else {
        bail!("no password given: use --password-stdin or run in a terminal");
    };
    prolong_core::username::check_new_password(&pw)?;
    Ok(pw)
}

async fn find_user(store: &dyn Store, username: &str) -> anyhow::Result<User> {
    let name = prolong_core::username::normalize(username);
    store.user_by_name(&name).await?.ok_or_else(|| anyhow::anyhow!("unknown user {name:?}"))
}

/// Creates a user with an already validated password; returns its id.
pub async fn create_user(store: &dyn Store, username: &str, password: &str) -> anyhow::Result<String> {
    let name = prolong_core::username::normalize(username);
    prolong_core::username::check_username(&name)?;
    if store.user_by_name(&name).await?.is_some() {
        bail!("user {name:?} already exists");
    }
    prolong_core::username::check_new_password(password)?;
    let hash = password::hash_blocking(password)?;
    let id = service::hex(&prolong_core::keys::random_bytes::<16>()?);
    let user = User {
        id: id.clone(),
        username: name.clone(),
        password_hash: hash,
        token_version: 0,
        created_at: service::now_ms(),
    };
    match store.create_user(&user).await {
        Ok(()) => Ok(id),
        Err(prolong_store::StoreError::Conflict) => bail!("user {name:?} already exists"),
        Err(e) => Err(e.into()),
    }
}

/// Creates the `demo` user with a random password, printed once on stderr, if it does not exist.
pub async fn ensure_demo_user(store: &dyn Store) -> anyhow::Result<()> {
    if store.user_by_name("demo").await?.is_some() {
        return Ok(());
    }
    use base64::Engine;
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(prolong_core::keys::random_bytes::<12>()?);
    match create_user(store, "demo", &password).await {
        Ok(_) => {
            eprintln!("demo user created: username demo, password {password} (shown once)");
            Ok(())
        }
        // Another replica created it first.
        Err(_) if store.user_by_name("demo").await?.is_some() => Ok(()),
        Err(e) => Err(e),
    }
}

async fn user(cmd: UserCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = open(settings).await?;
    let now = service::now_ms();
    let until = now + settings.policy.access_ttl;
    let result = async {
        match cmd {
            UserCommand::Add { username, password_stdin } => {
                let name = prolong_core::username::normalize(&username);
                prolong_core::username::check_username(&name)?;
                if store.user_by_name(&name).await?.is_some() {
                    bail!("user {name:?} already exists");
                }
                let pw = read_password(password_stdin)?;
                let id = create_user(store.as_ref(), &username, &pw).await?;
                println!("{id}");
            }
            UserCommand::Passwd { username, password_stdin } => {
                let user = find_user(store.as_ref(), &username).await?;
                let pw = read_password(password_stdin)?;
                let hash = password::hash_blocking(&pw)?;
                let ended = store.set_password(&user.id, &hash, true, now, until).await?;
                println!("password reset; {} session(s) ended", ended.len());
            }
            UserCommand::Reauth { username } => {
                let user = find_user(store.as_ref(), &username).await?;
                let ended = store.end_user_sessions(&user.id, Reason::ReauthRequired, now, until).await?;
                println!("re-authentication required; {} session(s) ended", ended.len());
            }
            UserCommand::RevokeAll { username } => {
                let user = find_user(store.as_ref(), &username).await?;
                let v = store.bump_token_version(&user.id, now, until).await?.unwrap_or_default();
                println!("token version is now {v}; every session ended");
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

async fn sessions(cmd: SessionsCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = open(settings).await?;
    let result = async {
        match cmd {
            SessionsCommand::List { username } => {
                let sessions = match username {
                    Some(username) => {
                        let user = find_user(store.as_ref(), &username).await?;
                        store.sessions_of(&user.id).await?
                    }
                    None => store.live_sessions(1_000).await?,
                };
                println!(
                    "{:<32}  {:<32}  {:>12}  {:>12}  {:>5}  user agent",
                    "session", "user", "created", "last active", "gen"
                );
                for s in sessions {
                    println!(
                        "{:<32}  {:<32}  {:>12}  {:>12}  {:>5}  {}",
                        service::hex(&s.id),
                        s.user_id,
                        s.state.auth_time / 1000,
                        s.state.last_active / 1000,
                        s.state.generation,
                        s.user_agent.unwrap_or_default()
                    );
                }
            }
            SessionsCommand::Revoke { session_id } => {
                let id = service::parse_session_id(&session_id)
                    .ok_or_else(|| anyhow::anyhow!("{session_id:?} is not a session id"))?;
                if store.session(&id).await?.is_none() {
                    bail!("unknown session {session_id}");
                }
                let ended = store
                    .end_session(
                        &id,
                        Reason::Revoked,
                        service::now_ms(),
                        service::now_ms() + settings.policy.access_ttl,
                    )
                    .await?;
                println!("{}", if ended { "session revoked" } else { "session had already ended" });
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

async fn keys(cmd: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = open(settings).await?;
    let result = async {
        match cmd {
            KeysCommand::List => {
                println!("{:<12}  {:<11}  {:<6}  {:>13}  {:>13}  sealed", "kid", "kind", "alg", "created", "retired");
                for k in keyring::list(store.as_ref()).await? {
                    println!(
                        "{:<12}  {:<11}  {:<6}  {:>13}  {:>13}  {}",
                        k.kid,
                        k.kind,
                        k.alg,
                        k.created_at / 1000,
                        k.retired_at.map(|r| (r / 1000).to_string()).unwrap_or_else(|| "-".into()),
                        if k.encrypted { "yes" } else { "no" }
                    );
                }
            }
            KeysCommand::Rotate => {
                let sealer = settings.key_encryption_key.as_ref().map(keyring::Sealer::new).transpose()?;
                let (signing, mac) = keyring::rotate(store.as_ref(), sealer.as_ref(), settings.algorithm, service::now_ms()).await?;
                println!("new signing key {signing} ({}) and refresh MAC key {mac}; running servers pick them up within a minute", settings.algorithm.as_str());
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}
