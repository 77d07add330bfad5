//! The provider's requests to a runtime: signed form POSTs (voice webhooks, redirects, status
//! callbacks), and the SIDs that name calls, streams and accounts.

use switchboard_telephony::{AuthToken, signature};

use crate::SimError;

/// A provider-style SID: a two-letter prefix and 32 hex digits. Random, so that SIDs from two
/// simulators (or two runs against the same call log) never collide.
pub fn sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

/// What a runtime answered to a signed POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// POSTs `form` to `url` exactly as the provider does: form-encoded, with `X-Twilio-Signature` computed
/// over that URL (query included) and the pairs.
pub async fn post_signed(
    http: &reqwest::Client,
    token: &AuthToken,
    url: &str,
    form: &[(String, String)],
) -> Result<Reply, SimError> {
    let signed = signature::sign(token, url, form);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = async {
        let response = http
            .post(url)
            .header(signature::HEADER, signed)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok::<_, reqwest::Error>(Reply {
            status,
            body: response.text().await?,
        })
    };
    request.await.map_err(|source| SimError::Http {
        url: url.to_owned(),
        source,
    })
}
