//! The telephony provider's wire formats for switchboard: how Twilio (and the providers that copy its API:
//! SignalWire's LaML, Telnyx's TeXML) talk to the runtime, and how the runtime talks back.
//!
//! - [`signature`]: `X-Twilio-Signature` validation for webhooks, JSON webhooks and the media-stream
//!   WebSocket upgrade.
//! - [`webhook`]: the form bodies the provider posts (voice webhook, status and machine-detection
//!   callbacks) as typed structs that keep their raw pairs for the signature.
//! - [`twiml`]: a small, escaping TwiML builder for the instructions the runtime answers with.
//! - [`media`]: the Media Streams WebSocket messages, both directions, as serde enums.
//! - [`rest`]: one async client for call control (place, redirect, hang up) with retries.
//!
//! # Why the crate is cut here
//!
//! This crate knows the *formats* and nothing about what a call *means*. It has no notion of flows,
//! models, turn-taking or campaigns, and does not depend on any other switchboard crate. That keeps the
//! parts that must be byte-exact with a third party (signatures, form encodings, JSON field names and
//! casing) in one place, tested against vectors computed by the provider's own SDK, where a change in a
//! flow or in the call loop cannot break them, and lets the call loop be tested with provider-neutral
//! frames and no provider at all.
//!
//! Everything except [`rest`] is pure and synchronous: parsing a frame or building TwiML is a function
//! from bytes to a value, so it is unit-tested without sockets and can run inline in any task. The REST
//! client is the one piece of I/O, because retry and timeout rules are part of speaking the provider's API
//! correctly (a retried "create call" can ring someone twice; see [`rest`]), and it takes a configurable
//! base URL so tests and local runs point it at a stand-in on loopback.
//!
//! Errors are one `thiserror` enum per module, named by what the caller does about them
//! ([`signature::SignatureError`] means reject, [`webhook::WebhookError`] means the body was bad,
//! [`rest::RestError::Rejected`] means do not retry). Mapping them to HTTP statuses is the server crate's
//! job, by an exhaustive match, so that a new variant is a compile error there rather than a silent 500.
//!
//! Other providers (Telnyx media streaming, Plivo, Vonage, Asterisk AudioSocket) would add their own
//! modules beside these; the server maps each provider's frames to the same call events.

mod token;

pub mod media;
pub mod rest;
pub mod signature;
pub mod twiml;
pub mod webhook;

pub use token::AuthToken;
