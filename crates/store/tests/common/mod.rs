//! The test harness shared by the store's tests (and the campaign crate's, which include this file
//! by path): a database per test on SQLite (a file in a temporary directory) or PostgreSQL (a fresh
//! database made through the server named by `SWITCHBOARD_TEST_POSTGRES_URL`;
//! `scripts/test-postgres.sh` starts one and prints its URL). Without that variable the PostgreSQL
//! tests fail rather than skip: a green run must mean both backends were exercised.
// Each test file uses its own part of the harness.
#![allow(dead_code, clippy::unwrap_used)]

use sqlx::{AnyPool, Connection, Executor};
use switchboard_store::Store;
use tempfile::TempDir;

pub const PG_ENV: &str = "SWITCHBOARD_TEST_POSTGRES_URL";

/// A database for one test, and how to get rid of it.
pub struct TestDb {
    pub url: String,
    backend: Backend,
}

enum Backend {
    Sqlite { _dir: TempDir },
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: opening must make it.
        let url = format!("sqlite://{}/log/dir/calls.db", dir.path().display());
        TestDb {
            url,
            backend: Backend::Sqlite { _dir: dir },
        }
    }

    pub async fn postgres() -> TestDb {
        let admin_url = std::env::var(PG_ENV).unwrap_or_else(|_| {
            panic!(
                "{PG_ENV} is not set, so the PostgreSQL half of the store tests cannot run. Start the \
                 test server and export its URL:\n  export {PG_ENV}=\"$(scripts/test-postgres.sh)\""
            )
        });
        let name = format!("sb_{}", uuid::Uuid::now_v7().simple());
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach {PG_ENV} (run scripts/test-postgres.sh): {e}"));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        admin.close().await.unwrap();
        TestDb {
            url: with_database(&admin_url, &name),
            backend: Backend::Postgres { admin_url, name },
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }

    /// Plain SQL access, to look at what the store wrote.
    pub async fn raw(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.url).await.unwrap()
    }

    pub async fn drop_database(self) {
        if let Backend::Postgres { admin_url, name } = &self.backend {
            let mut admin = sqlx::AnyConnection::connect(admin_url).await.unwrap();
            admin
                .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
                .await
                .unwrap();
            admin.close().await.unwrap();
        }
    }
}

/// `postgres://u:p@host:port/db?x` with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").unwrap() + 3;
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// Each scenario becomes `sqlite::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let db = $crate::common::TestDb::sqlite();
                    super::$scenario(&db).await;
                    db.drop_database().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let db = $crate::common::TestDb::postgres().await;
                    super::$scenario(&db).await;
                    db.drop_database().await;
                }
            )*
        }
    };
}
