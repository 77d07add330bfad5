//! The campaign scheduler's view of the provider: placing calls through its REST API
//! ([`RestDialer`]) and finding calls whose creation ended in doubt ([`RestReconciler`]).
//!
//! The mapping of errors is the point of this module: only a 4xx means "no call was placed";
//! a 5xx, a timeout or a broken connection leave the attempt in doubt, and the scheduler then asks
//! the provider's call list instead of dialing again (see `switchboard_campaign`). A rate limit that
//! outlasted the client's patience is neither: nothing was placed, and the scheduler gives the
//! attempt back without counting it and pauses dialing.
//!
//! Answering-machine detection runs synchronously (`MachineDetection=DetectMessageEnd` without an
//! async callback): the provider holds the answered call until it knows, then posts the voice
//! webhook with `AnsweredBy`, so the runtime decides once between the flow and the voicemail action,
//! after the beep.

use jiff::Timestamp;
use switchboard_campaign::{DialError, DialRequest, DialStarted, Dialer, Reconciler};
use switchboard_store::AttemptResult;
use switchboard_telephony::rest::{
    AmdMode, CallInstructions, CreateCall, MachineDetection, RestClient, RestError, StatusCallbackEvent,
};
use switchboard_telephony::webhook::CallStatus;

/// Seconds an outbound call rings before it counts as not answered.
const RING_SECONDS: u32 = 25;

/// Places campaign calls; the provider then calls back `{public_url}/twilio/voice?attempt=…`.
#[derive(Debug, Clone)]
pub struct RestDialer {
    rest: RestClient,
    /// Where the provider reaches this runtime (`https://voice.example.com`).
    public_url: String,
}

impl RestDialer {
    pub fn new(rest: RestClient, public_url: impl Into<String>) -> Self {
        Self {
            rest,
            public_url: public_url.into().trim_end_matches('/').to_string(),
        }
    }

    /// The provider's request for the call, as sent.
    pub fn create_call(&self, request: &DialRequest) -> CreateCall {
        CreateCall {
            // The attempt in both URLs: a callback can arrive before the create request's answer.
            status_callback: Some(format!(
                "{}/twilio/status?attempt={}",
                self.public_url, request.attempt_id
            )),
            status_callback_events: StatusCallbackEvent::ALL.to_vec(),
            timeout: Some(RING_SECONDS),
            machine_detection: request.machine_detection.then_some(MachineDetection {
                mode: AmdMode::DetectMessageEnd,
                async_callback: None,
            }),
            ..CreateCall::new(
                request.to.clone(),
                request.from.clone(),
                CallInstructions::Url(format!(
                    "{}/twilio/voice?attempt={}",
                    self.public_url, request.attempt_id
                )),
            )
        }
    }
}

/// What a REST failure means for the attempt.
fn dial_error(e: RestError) -> DialError {
    match e {
        RestError::Rejected { .. } | RestError::Config(_) | RestError::InvalidSid { .. } => {
            DialError::Rejected {
                reason: e.to_string(),
            }
        }
        // Every try was refused with a 429 (or could not connect): certainly not placed.
        RestError::RateLimited { retry_after } => DialError::RateLimited { retry_after },
        RestError::Unavailable { .. } | RestError::Timeout | RestError::BadResponse { .. } => {
            DialError::Unavailable {
                reason: e.to_string(),
            }
        }
    }
}

impl Dialer for RestDialer {
    async fn dial(&self, request: DialRequest) -> Result<DialStarted, DialError> {
        let call = self.create_call(&request);
        let created = self.rest.create_call(&call).await.map_err(dial_error)?;
        Ok(DialStarted {
            provider_call_id: created.sid,
        })
    }
}

/// Finds calls in the provider's call list.
#[derive(Debug, Clone)]
pub struct RestReconciler {
    rest: RestClient,
}

impl RestReconciler {
    pub fn new(rest: RestClient) -> Self {
        Self { rest }
    }
}

impl Reconciler for RestReconciler {
    async fn find_call(&self, to: &str, since: Timestamp) -> Result<Option<String>, DialError> {
        let calls = self
            .rest
            .find_calls(to, since.as_second())
            .await
            .map_err(dial_error)?;
        // Newest first: an attempt places at most one call, and a later one is not older.
        Ok(calls.into_iter().next().map(|c| c.sid))
    }

    async fn call_ended(&self, provider_call_id: &str) -> Result<Option<AttemptResult>, DialError> {
        let call = self.rest.fetch_call(provider_call_id).await.map_err(dial_error)?;
        Ok(ended(call.status))
    }
}

/// The attempt result a provider call status stands for, once the call is over.
pub(crate) fn ended(status: CallStatus) -> Option<AttemptResult> {
    match status {
        CallStatus::Queued | CallStatus::Initiated | CallStatus::Ringing | CallStatus::InProgress => None,
        CallStatus::Completed => Some(AttemptResult::Completed),
        CallStatus::Busy => Some(AttemptResult::Busy),
        CallStatus::NoAnswer => Some(AttemptResult::NoAnswer),
        CallStatus::Failed | CallStatus::Canceled => Some(AttemptResult::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_or_a_rate_limit_means_no_call_was_placed() {
        let rejected = RestError::Rejected {
            status: 400,
            code: Some(21211),
            message: "bad number".into(),
        };
        assert!(matches!(dial_error(rejected), DialError::Rejected { .. }));
        for doubt in [
            RestError::Timeout,
            RestError::Unavailable {
                attempts: 1,
                last: "HTTP 500".into(),
            },
            RestError::BadResponse {
                status: 200,
                message: "not JSON".into(),
            },
        ] {
            assert!(
                matches!(dial_error(doubt), DialError::Unavailable { .. }),
                "in doubt"
            );
        }
        let wait = Some(std::time::Duration::from_secs(30));
        assert_eq!(
            dial_error(RestError::RateLimited { retry_after: wait }),
            DialError::RateLimited { retry_after: wait },
            "refused for now: nothing placed, nothing in doubt"
        );
    }
}
