//! The telephony provider's side of a call, on loopback, for tests and demos of the runtime.
//!
//! - [`caller`]: the party on the line over a media stream — the signed WebSocket upgrade,
//!   `connected`/`start`, caller audio turn by turn, marks echoed, keypad digits, `stop`.
//! - [`inbound`]: an inbound call (`switchboard call`): the signed voice webhook, then the caller.
//! - [`provider`]: the REST side for outbound calls (`switchboard simulate-provider`): `Calls.json`
//!   with the provider's auth, validation and errors, and each placed call's life — status callbacks,
//!   the voice webhook, its TwiML followed, the caller on the stream.
//! - [`numbers`]: the numbers file that says how each called number answers (and which API faults
//!   it injects), resolved into a [`Plan`] with its audio loaded.
//! - [`record`]: everything the provider saw, as `GET /sim/calls` serves it; its field names are an
//!   interface for black-box tests.
//! - [`twiml`]: the verbs of a runtime's TwiML answer, in the order the provider carries them out.
//! - [`http`]: signed form POSTs as the provider sends them, and SIDs.
//!
//! # Why the crate is cut here
//!
//! Everything here plays the *provider*, never the runtime: it depends on the telephony crate for the
//! wire formats (so a format change breaks the runtime and its stand-in together, at compile time)
//! and on the audio crate for mu-law, and on nothing that knows about flows, models or the call log.
//! The runtime is reached only over loopback HTTP and WebSocket, exactly as a real provider reaches
//! it, so what passes against the simulator passes on the wire.
//!
//! Speech for the callers is brought in, not made here: [`numbers::NumbersFile::resolve`] takes the
//! audio for each text, so this crate does not link a synthesizer and its tests run on tones; the
//! binary synthesizes with the runtime's own voice engine. The caller was moved here from the
//! `switchboard call` command so that the inbound simulator and the outbound provider play streams
//! with one implementation of the protocol.

pub mod caller;
pub mod http;
pub mod inbound;
pub mod numbers;
pub mod provider;
pub mod record;
pub mod twiml;

pub use caller::{Caller, Played, StreamEnd, StreamTarget, Turn};
pub use inbound::{Simulation, simulate};
pub use numbers::{ConfigError, NumbersFile, Plan};
pub use provider::{Provider, ProviderConfig};
pub use record::{CallRecord, EndedBy, Record};

/// Why a simulated call could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("POST {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error(transparent)]
    Twiml(#[from] twiml::TwimlError),
    #[error("the server did not connect a media stream:\n{twiml}")]
    NoStream { twiml: String },
    #[error("media stream {url}: {reason}")]
    Stream { url: String, reason: String },
    #[error("cannot start the simulator: {0}")]
    Setup(String),
}
