//! The vocabulary every other switchboard crate speaks: the traits the engines implement
//! ([`stt::SpeechToText`], [`llm::LanguageModel`]) and the plain data that crosses them.
//!
//! This crate depends on no runtime, web framework or inference library on purpose: the call pipeline,
//! the flow engine and the campaign scheduler are written against these traits and are tested with small
//! fakes, while only the binary and the server wire the real engines in.

pub mod llm;
pub mod stt;
pub mod tts;
