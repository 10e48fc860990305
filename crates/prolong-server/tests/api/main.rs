//! End-to-end tests: the real `prolong` binary, real HTTP, a real database (a fresh SQLite file or
//! PostgreSQL database per test). PostgreSQL tests fail, never skip, when the server is unreachable.

// Test and benchmark code may panic on a broken fixture; the libraries may not.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod accounts;
mod cli;
mod client;
mod feed;
mod flows;
mod interop;
mod policies;
mod replicas;
mod security;
mod support;
mod verify;

/// Instantiates `async fn name(postgres: bool)` tests for both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(false).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(true).await;
                }
            )*
        }
    };
}
