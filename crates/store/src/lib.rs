//! The call log and outbound campaigns on SQLite (embedded default) or PostgreSQL (when one machine
//! is not enough).
//!
//! Why it is cut this way:
//! - **One set of migrations and queries for both databases.** sqlx's `Any` driver runs the same SQL on
//!   either; the schema sticks to types both understand (TEXT, BIGINT, DOUBLE PRECISION), times are
//!   milliseconds since the Unix epoch, booleans are 0/1, and ids are made in Rust (UUIDv7, so they sort
//!   by creation time) instead of by an auto-increment whose syntax differs.
//! - **Written as it happens.** A call row is created when the media stream starts, and every turn and
//!   event is written when it is known, so a crash loses at most the turn in flight. `mark_interrupted`
//!   at start-up closes the calls a crash of the same runtime left open; `close_abandoned_calls` those
//!   of a runtime that stopped keeping its calls alive (several runtimes can share a PostgreSQL).
//! - **No knowledge of the call pipeline.** The server converts the pipeline's records into the plain
//!   rows here, so this crate depends on nothing else in the workspace.
//! - API keys are stored as SHA-256 hashes of 256-bit random secrets: a fast hash is enough for secrets
//!   that cannot be guessed, and lookup by hash needs no comparison of secrets at all.
//!
//! What running the same SQL on both takes (each point is a difference that bit):
//! - Placeholders are `$1, $2, …` (SQLite accepts them too). sqlx's `QueryBuilder` writes `?` for
//!   `Any`, which PostgreSQL rejects, so dynamic WHERE clauses are built by `sql::Conditions`.
//! - Only types `Any` can decode come back from a query: PostgreSQL's `SUM(bigint)` is NUMERIC,
//!   so sums are cast back to BIGINT. Days are integer division in SQL and named in Rust (the date
//!   functions differ); percentiles are taken in Rust.
//! - NULL ordering differs (PostgreSQL sorts NULLs last, SQLite first), so result order never
//!   depends on it.
//! - SQLite settings travel in the URL for `Any`, and the URL has no pragmas: WAL mode is set once
//!   at open (it is stored in the file), busy timeout and foreign keys on every new connection.
//! - Deleting a call deletes its turns and events explicitly in the same transaction, besides the
//!   schema's `ON DELETE CASCADE`, so nothing depends on SQLite's per-connection foreign-key switch.
//!
//! - **Campaign state lives here, never only in memory**: campaigns, contacts, attempts (a claim is
//!   an attempt row, so `UNIQUE (contact_id, number)` makes a double dial of one attempt impossible),
//!   the do-not-call list and every scheduling decision with its reason. Claiming is one
//!   transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), the one
//!   place the two backends get different SQL.
//!
//! Layout: `store` opens and migrates, `calls` is the log itself, `stats` the aggregates, `keys`
//! the API keys, `campaigns` (+ `campaign_model`) the outbound side; `cursor`, `sql` and `time` are
//! the small pure pieces they share.

#[macro_use]
mod text_enum;

mod calls;
mod campaign_model;
mod campaigns;
mod cursor;
mod error;
mod keys;
mod model;
mod sql;
mod stats;
mod store;
mod time;

pub use calls::MAX_PAGE;
pub use campaign_model::*;
pub use cursor::CURSOR_PATTERN;
pub use error::StoreError;
pub use model::*;
pub use store::Store;
