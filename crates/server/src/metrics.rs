//! Prometheus metrics at `/metrics`: calls active and finished by outcome, and how long each stage
//! of a caller turn took.
//!
//! prometheus-client (the Prometheus project's own crate) was chosen over the `metrics` facade
//! because its registry is a plain value in the server state: two servers in one test process do not
//! share counters through a global recorder.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use switchboard_call::CallReport;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// Seconds, from 50 ms to 5 s: a phone turn is judged in tenths of a second.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0].into_iter()
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls_active: Gauge,
    calls_total: Family<OutcomeLabel, Counter>,
    voice_to_voice: Histogram,
    transcript_after_turn_end: Histogram,
    first_token: Histogram,
    first_audio_after_transcript: Histogram,
    media_received: Counter,
    media_sent: Counter,
    sequence_gaps: Counter,
    out_of_order: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let calls_active = Gauge::default();
        registry.register("calls_active", "Calls in progress", calls_active.clone());
        let calls_total = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "calls",
            "Calls finished, by the flow's outcome (`none` when it reached none)",
            calls_total.clone(),
        );
        let histogram = || Histogram::new(latency_buckets());
        let voice_to_voice = histogram();
        registry.register(
            "turn_voice_to_voice_seconds",
            "Caller speech end to the first audio of the answer",
            voice_to_voice.clone(),
        );
        let transcript_after_turn_end = histogram();
        registry.register(
            "turn_transcript_seconds",
            "End of turn detected to the transcript being ready (speech-to-text left after speculation)",
            transcript_after_turn_end.clone(),
        );
        let first_token = histogram();
        registry.register(
            "turn_first_token_seconds",
            "Transcript ready to the language model's first token, for answers it phrased",
            first_token.clone(),
        );
        let first_audio_after_transcript = histogram();
        registry.register(
            "turn_answer_seconds",
            "Transcript ready to the first audio frame of the answer (flow, model, speech synthesis)",
            first_audio_after_transcript.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let media_received = counter(
            &mut registry,
            "media_frames_received",
            "Caller audio frames received on media streams",
        );
        let media_sent = counter(
            &mut registry,
            "media_frames_sent",
            "Bot audio frames sent on media streams",
        );
        let sequence_gaps = counter(
            &mut registry,
            "media_sequence_gaps",
            "Media stream messages missing from their stream's sequence (lost before they got here)",
        );
        let out_of_order = counter(
            &mut registry,
            "media_out_of_order",
            "Media stream messages that arrived after a later one of their stream",
        );
        Self {
            registry,
            calls_active,
            calls_total,
            voice_to_voice,
            transcript_after_turn_end,
            first_token,
            first_audio_after_transcript,
            media_received,
            media_sent,
            sequence_gaps,
            out_of_order,
        }
    }

    pub fn media_received(&self) {
        self.media_received.inc();
    }

    pub fn media_sent(&self) {
        self.media_sent.inc();
    }

    /// A stream's message numbered `seq` arrived after `last`.
    pub fn sequence(&self, last: u64, seq: u64) {
        if seq <= last {
            self.out_of_order.inc();
        } else if seq > last + 1 {
            self.sequence_gaps.inc_by(seq - last - 1);
        }
    }

    pub fn call_started(&self) {
        self.calls_active.inc();
    }

    pub fn call_finished(&self, report: Option<&CallReport>) {
        self.calls_active.dec();
        let outcome = report
            .and_then(|r| r.outcome)
            .map_or("none", |o| o.as_str())
            .to_string();
        self.calls_total.get_or_create(&OutcomeLabel { outcome }).inc();
        let Some(report) = report else { return };
        let since = |later: Option<Duration>, earlier: Option<Duration>| {
            Some(later?.saturating_sub(earlier?).as_secs_f64())
        };
        for t in report.turns.iter().filter_map(|t| t.timings.as_ref()) {
            if let Some(v) = t.voice_to_voice() {
                self.voice_to_voice.observe(v.as_secs_f64());
            }
            if let Some(s) = since(t.transcript_ready, Some(t.turn_end)) {
                self.transcript_after_turn_end.observe(s);
            }
            if let Some(s) = since(t.first_token, t.transcript_ready) {
                self.first_token.observe(s);
            }
            if let Some(s) = since(t.first_audio, t.transcript_ready) {
                self.first_audio_after_transcript.observe(s);
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
