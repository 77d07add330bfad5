//! The provider's REST side for outbound calls, on loopback: a runtime places calls with
//! `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` and the simulator plays each call's life as the
//! real provider would — status callbacks, the voice webhook once someone answers (with `AnsweredBy`
//! when machine detection was asked), then whatever the TwiML says: a media stream played by a
//! [`crate::caller::Caller`], `<Say>`/`<Play>` heard and recorded, `<Dial>` recorded as a transfer.
//!
//! How each number answers comes from a [`Plan`] (see [`crate::numbers`]). Everything the simulator
//! sees goes into a [`Record`], served at `GET /sim/calls`.
//!
//! # Shape
//!
//! [`Provider`] is a cheap handle on the shared state. Each placed call is one task (owned by a
//! `TaskTracker`, so shutdown ends every call on purpose and waits for them) that alone decides what
//! happens next in the call; the REST handlers reach a live call only through its bounded control
//! channel (hang up, new TwiML, redirect). The book of requests and calls is a plain mutex held for
//! reads and small updates, never across an await.

mod api;
mod life;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use switchboard_telephony::AuthToken;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::SimError;
use crate::numbers::{Behaviour, Plan};
use crate::record::{CallRecord, CreateRequest, Record};

/// What the simulated provider account is and does.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The account the runtime authenticates as (`AC…`), with `auth_token`; the token also signs
    /// every webhook, callback and stream upgrade, so it must be the one the runtime checks with.
    pub account_sid: String,
    pub auth_token: AuthToken,
    pub plan: Plan,
    /// No ringing or greeting delays, `<Say>` not waited for, and caller audio sent faster than real
    /// time.
    pub fast: bool,
    /// Calls alive at once; a create request beyond it answers 429, as the provider does when an
    /// account exceeds its concurrency.
    pub max_live_calls: usize,
}

impl ProviderConfig {
    pub fn new(account_sid: impl Into<String>, auth_token: AuthToken, plan: Plan) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token,
            plan,
            fast: false,
            max_live_calls: 200,
        }
    }
}

/// A change to a live call, from the REST API to the call's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Hangup,
    Twiml(String),
    Redirect(String),
}

/// A call as the book keeps it: the public record, and what the API needs besides.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) record: CallRecord,
    pub(crate) created: Timestamp,
    pub(crate) updated: Timestamp,
    pub(crate) started: Option<Timestamp>,
    pub(crate) ended: Option<Timestamp>,
    /// Bounded: a runtime hammering one call is told so by dropped updates, not by memory growth.
    pub(crate) control: mpsc::Sender<Control>,
}

#[derive(Debug, Default)]
struct Book {
    requests: Vec<CreateRequest>,
    calls: Vec<Entry>,
    by_sid: HashMap<String, usize>,
    /// Create requests so far per number: picks the number's next behaviour.
    dialed: HashMap<String, usize>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ProviderConfig,
    /// For webhooks and callbacks to the runtime.
    pub(crate) http: reqwest::Client,
    /// A std mutex: every use is a short read or update with no await inside.
    book: Mutex<Book>,
    tasks: TaskTracker,
    /// Cancelled at shutdown: every live call ends (streams get `stop`).
    pub(crate) stop: CancellationToken,
    /// One permit per live call, moved into its task.
    lines: Arc<Semaphore>,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the book half-written in a way that matters
        // more than losing the record, so a poisoned lock is used as it is.
        self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the call `sid`, if there is one, and marks it updated.
    pub(crate) fn with_call<R>(&self, sid: &str, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let mut book = self.book();
        let i = *book.by_sid.get(sid)?;
        let entry = &mut book.calls[i];
        entry.updated = Timestamp::now();
        Some(f(entry))
    }

    /// Reads the call `sid`.
    pub(crate) fn read_call<R>(&self, sid: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let book = self.book();
        book.by_sid.get(sid).map(|&i| f(&book.calls[i]))
    }

    /// Calls newest first, for the list API.
    pub(crate) fn newest_first<R>(&self, mut f: impl FnMut(&Entry) -> Option<R>) -> Vec<R> {
        self.book().calls.iter().rev().filter_map(&mut f).collect()
    }

    fn log_request(&self, request: CreateRequest) {
        self.book().requests.push(request);
    }

    /// The behaviour for the next create request to `to`, and which request it is (from 1).
    fn next_behaviour(&self, to: &str) -> (Behaviour, usize) {
        let mut book = self.book();
        let n = book.dialed.entry(to.to_owned()).or_insert(0);
        *n += 1;
        (self.config.plan.behaviour(to, *n - 1).clone(), *n)
    }

    fn add_call(&self, entry: Entry) {
        let mut book = self.book();
        let i = book.calls.len();
        book.by_sid.insert(entry.record.sid.clone(), i);
        book.calls.push(entry);
    }

    fn record(&self) -> Record {
        let book = self.book();
        Record {
            requests: book.requests.clone(),
            calls: book.calls.iter().map(|e| e.record.clone()).collect(),
        }
    }
}

/// The simulated provider: a handle to clone into a server, a test, or a shutdown hook.
#[derive(Debug, Clone)]
pub struct Provider {
    shared: Arc<Shared>,
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Result<Self, SimError> {
        let http = reqwest::Client::builder()
            // The provider gives a webhook 15 s to answer.
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SimError::Setup(e.to_string()))?;
        let lines = Arc::new(Semaphore::new(config.max_live_calls.max(1)));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                http,
                book: Mutex::new(Book::default()),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
                lines,
            }),
        })
    }

    /// The REST API and `GET /sim/calls`, for a server or for `oneshot` in tests.
    pub fn router(&self) -> axum::Router {
        api::router(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then ends the calls still going (see
    /// [`Provider::end_calls`]).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        self.end_calls(Duration::from_secs(10)).await;
        Ok(())
    }

    /// Hangs up every live call (streams get `stop`, callbacks are still sent) and waits up to
    /// `grace` for their tasks to finish.
    pub async fn end_calls(&self, grace: Duration) {
        self.shared.stop.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("calls still running after {grace:?}: leaving them");
        }
    }

    /// Everything seen so far.
    pub fn record(&self) -> Record {
        self.shared.record()
    }
}
