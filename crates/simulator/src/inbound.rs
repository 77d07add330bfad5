//! An inbound call as the provider places it (`switchboard call`, `switchboard bench calls`): the
//! signed voice webhook a ringing number triggers, then the media stream its TwiML connects.

use switchboard_telephony::AuthToken;
use tokio_util::sync::CancellationToken;

use crate::caller::{Caller, Played, StreamTarget, play};
use crate::http::{post_signed, sid};
use crate::{SimError, twiml};

/// Everything the provider's side needs to place one simulated inbound call.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The runtime (`http://host:port`); its voice webhook is `/twilio/voice`.
    pub base_url: String,
    pub token: AuthToken,
    /// Overrides the `flow` stream parameter the runtime picked.
    pub flow: Option<String>,
    pub from: String,
    pub to: String,
    pub caller: Caller,
}

/// Rings the runtime's number and plays the call out.
pub async fn simulate(sim: &Simulation) -> Result<Played, SimError> {
    let call_sid = sid("CA");
    let account_sid = sid("AC");
    let voice_url = format!("{}/twilio/voice", sim.base_url.trim_end_matches('/'));
    let form: Vec<(String, String)> = [
        ("AccountSid", account_sid.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid.as_str()),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", sim.from.as_str()),
        ("To", sim.to.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let answer = post_signed(&reqwest::Client::new(), &sim.token, &voice_url, &form).await?;
    if !answer.is_success() {
        return Err(SimError::Refused {
            url: voice_url,
            status: answer.status,
            body: answer.body,
        });
    }
    let verbs = twiml::parse(&answer.body)?;
    let (url, params) = twiml::stream_of(&verbs).ok_or_else(|| SimError::NoStream {
        twiml: answer.body.clone(),
    })?;
    let mut params = params.to_vec();
    if let Some(flow) = &sim.flow {
        params.retain(|(k, _)| k != "flow");
        params.push(("flow".into(), flow.clone()));
    }
    let target = StreamTarget {
        url: url.to_owned(),
        params,
        account_sid,
        call_sid,
        token: sim.token.clone(),
    };
    play(&target, &sim.caller, CancellationToken::new()).await
}
