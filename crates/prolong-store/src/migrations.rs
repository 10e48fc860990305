//! Versioned schema migrations, applied at start inside one transaction per version.
//!
//! Each version has a SQLite and a PostgreSQL text; they differ only in column types. Replicas
//! starting together serialize on a lock (PostgreSQL advisory lock, SQLite `BEGIN IMMEDIATE`).

/// (version, SQLite, PostgreSQL)
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[(1, V1_SQLITE, V1_PG), (2, V2_SQLITE, V2_PG)];

const V1_SQLITE: &str = r#"
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    token_version INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE TABLE sessions (
    id            BLOB PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id     TEXT NOT NULL,
    salt          BLOB NOT NULL,
    mac_kid       BLOB NOT NULL,
    generation    INTEGER NOT NULL,
    rotated_at    INTEGER NOT NULL,
    last_active   INTEGER NOT NULL,
    auth_time     INTEGER NOT NULL,
    token_version INTEGER NOT NULL,
    ended_reason  TEXT,
    ended_at      INTEGER,
    user_agent    TEXT
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE TABLE keys (
    kid        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    alg        TEXT NOT NULL,
    material   BLOB NOT NULL,
    encrypted  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);
"#;

const V1_PG: &str = r#"
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    token_version BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);
CREATE TABLE sessions (
    id            BYTEA PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id     TEXT NOT NULL,
    salt          BYTEA NOT NULL,
    mac_kid       BYTEA NOT NULL,
    generation    BIGINT NOT NULL,
    rotated_at    BIGINT NOT NULL,
    last_active   BIGINT NOT NULL,
    auth_time     BIGINT NOT NULL,
    token_version BIGINT NOT NULL,
    ended_reason  TEXT,
    ended_at      BIGINT,
    user_agent    TEXT
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE TABLE keys (
    kid        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    alg        TEXT NOT NULL,
    material   BYTEA NOT NULL,
    encrypted  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
"#;

/// Indexes for the background purge, and the revocation feed (CONTRACT §6).
const V2_SQLITE: &str = r#"
CREATE INDEX sessions_by_last_active ON sessions(last_active);
CREATE INDEX sessions_by_auth_time ON sessions(auth_time);
CREATE INDEX sessions_by_ended_at ON sessions(ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    session_id BLOB,
    user_id    TEXT,
    min_ver    INTEGER,
    until      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX revocations_by_until ON revocations(until);
"#;

const V2_PG: &str = r#"
CREATE INDEX sessions_by_last_active ON sessions(last_active);
CREATE INDEX sessions_by_auth_time ON sessions(auth_time);
CREATE INDEX sessions_by_ended_at ON sessions(ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE revocations (
    seq        BIGSERIAL PRIMARY KEY,
    kind       TEXT NOT NULL,
    session_id BYTEA,
    user_id    TEXT,
    min_ver    BIGINT,
    until      BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX revocations_by_until ON revocations(until);
"#;

pub(crate) const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS prolong_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
