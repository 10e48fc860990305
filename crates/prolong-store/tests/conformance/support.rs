//! Fresh databases for tests: a temporary SQLite file, or a new PostgreSQL database.

use prolong_store::Store;
use sqlx::Connection;
use std::sync::Arc;

pub struct SqliteDb {
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl SqliteDb {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("prolong.db").display());
        let store = prolong_store::connect(&url).await.expect("open sqlite");
        SqliteDb { store, _dir: dir }
    }
}

pub fn admin_url() -> String {
    std::env::var("PROLONG_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub struct PgDb {
    pub store: Arc<dyn Store>,
    name: String,
}

impl PgDb {
    pub async fn new() -> Self {
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for these tests: {e}"));
        let suffix: String =
            prolong_core::keys::random_bytes::<6>().expect("rng").iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("prolong_test_{suffix}");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        let url = match admin.rfind('/') {
            Some(i) => format!("{}/{name}", &admin[..i]),
            None => panic!("bad PROLONG_TEST_POSTGRES"),
        };
        let store = prolong_store::connect(&url).await.expect("open postgres");
        PgDb { store, name }
    }

    pub async fn drop(self) {
        self.store.close().await;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
            let _ =
                sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn).await;
        }
    }
}
