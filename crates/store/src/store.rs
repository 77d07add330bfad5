//! Opening the database: which backend, connection settings, migrations.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::StoreError;

/// The schema, compiled into the binary so a deployment is one file.
static MIGRATOR: Migrator = sqlx::migrate!();

/// How long a SQLite connection waits for another's write lock before giving up: longer than any
/// write here takes, short enough that a stuck writer surfaces as an error.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// The call log. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    /// A pool rather than one connection, so API reads go on while calls write (SQLite in WAL mode
    /// lets readers run beside its one writer).
    pub(crate) pool: AnyPool,
    backend: Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Store {
    /// Opens (creating if need be) and migrates the database at `url`: `sqlite://path/to/file.db`
    /// (relative paths are relative to the working directory) or `postgres://user:pass@host/db`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        match scheme {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url).map_err(StoreError::Connect)?;
                Self::open_sqlite_with(options).await
            }
            "postgres" | "postgresql" => Self::open_postgres(url).await,
            _ => Err(StoreError::UnsupportedUrl {
                scheme: scheme.to_string(),
            }),
        }
    }

    /// Opens (creating if need be, with its directory) and migrates a SQLite file.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Self::open_sqlite_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// `"sqlite"` or `"postgres"`, for logs and health output.
    /// A transaction that will write. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that read first and then wrote would fail at once with
    /// SQLITE_BUSY, without the busy timeout's wait, whenever another writer got in between —
    /// which under load (calls writing their logs while a scheduler claims) is all the time.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Postgres => self.pool.begin().await,
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// One trivial query: whether the database answers (readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pool.execute("SELECT 1").await?;
        Ok(())
    }

    /// Closes every connection, waiting for those in use to come back; for a clean shutdown (and
    /// so a test can drop its PostgreSQL database).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn open_sqlite_with(options: SqliteConnectOptions) -> Result<Store, StoreError> {
        let options = options.create_if_missing(true);
        // Blocking, but once at start-up. An in-memory database's "file name" has no directory.
        if let Some(dir) = options
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // The `Any` driver takes only a URL, so the options go back into one; sqlx writes it (with
        // the path percent-encoded and `mode=rwc` for create-if-missing). sqlx 0.8.6 escapes `?`,
        // `#` and spaces but not `%`, which its parser then decodes: a `%20` in a directory name
        // would name another file. Escaping `%` first makes the round trip exact (the test
        // `open_sqlite_takes_any_path` notices if sqlx starts escaping it itself).
        let options = match options.get_filename().to_str() {
            Some(name) if name.contains('%') => {
                let escaped = name.replace('%', "%25");
                options.filename(escaped)
            }
            _ => options,
        };
        let any = AnyConnectOptions::from_url(&options.to_url_lossy()).map_err(StoreError::Connect)?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            // A URL carries no pragmas, so they are set on each new connection. sqlx sets both by
            // default today; saying so here keeps cascades and lock waits from depending on that.
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON")
                            .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(any)
            .await
            .map_err(StoreError::Connect)?;
        // WAL lets readers (the API) run while a call writes. The mode is stored in the file, so
        // setting it once is enough; it is a no-op on a file already in WAL mode.
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await
            .map_err(StoreError::Connect)?;
        Self::migrated(pool, Backend::Sqlite).await
    }

    async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let options = AnyConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        Self::migrated(pool, Backend::Postgres).await
    }

    async fn migrated(pool: AnyPool, backend: Backend) -> Result<Store, StoreError> {
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool, backend })
    }
}
