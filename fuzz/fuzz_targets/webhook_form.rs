//! A webhook form body and its `X-Twilio-Signature`: the typed webhooks never panic and keep the exact
//! pairs the signature covers; signature validation over any URL, params and header never panics, a
//! genuine signature validates, and nothing but a genuine signature (for the URL with or without its
//! port) ever does.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use switchboard_telephony::AuthToken;
use switchboard_telephony::signature::{self, SignatureError};
use switchboard_telephony::webhook::{AmdCallback, FormParams, StatusCallback, VoiceWebhook, WebhookError};

#[derive(Debug, Arbitrary)]
struct Input {
    token: String,
    url: String,
    header: Option<String>,
    flip: u16,
    json_body: Vec<u8>,
    form_body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let Input {
        token,
        url,
        header,
        flip,
        json_body,
        form_body,
    } = input;
    let params = FormParams::parse(&form_body);
    check_bounded(
        VoiceWebhook::parse(&form_body).map(|w| w.params().clone()),
        &params,
    );
    check_bounded(
        StatusCallback::parse(&form_body).map(|w| w.params().clone()),
        &params,
    );
    check_bounded(
        AmdCallback::parse(&form_body).map(|w| w.params().clone()),
        &params,
    );

    let token = AuthToken::new(token);
    let pairs = params.pairs();
    // Whatever header arrives, acceptance means it is one of the genuine signatures.
    if signature::validate(&token, &url, pairs, header.as_deref()).is_ok() {
        let header = header.as_deref().expect("no header never validates");
        assert!(
            is_genuine(&token, &url, pairs, header),
            "forged signature accepted"
        );
    }
    if signature::validate_websocket(&token, &url, header.as_deref()).is_ok() {
        let header = header.as_deref().expect("no header never validates");
        let none: &[(String, String)] = &[];
        assert!(
            is_genuine(&token, &url, none, header),
            "forged upgrade signature accepted"
        );
    }
    if signature::validate_json(&token, &url, &json_body, header.as_deref()).is_ok() {
        let claimed = url
            .split_once('?')
            .map(|(_, q)| q.split_once('#').map_or(q, |(q, _)| q))
            .unwrap_or("");
        let actual = hex::encode(Sha256::digest(&json_body));
        let hash_ok = form_pairs(claimed)
            .iter()
            .any(|(k, v)| k == "bodySHA256" && v.eq_ignore_ascii_case(&actual));
        assert!(hash_ok, "a JSON body that does not match bodySHA256 was accepted");
    }

    // The genuine signature validates (unless the URL is not absolute), and any one-bit change of it not.
    let genuine = signature::sign(&token, &url, pairs);
    match signature::validate(&token, &url, pairs, Some(&genuine)) {
        Ok(()) | Err(SignatureError::BadUrl { .. }) => {}
        Err(e) => panic!("a genuine signature was refused: {e}"),
    }
    let mut mac = STANDARD.decode(&genuine).expect("our own base64");
    let bit = usize::from(flip) % (mac.len() * 8);
    mac[bit / 8] ^= 1 << (bit % 8);
    let tampered = STANDARD.encode(&mac);
    if signature::validate(&token, &url, pairs, Some(&tampered)).is_ok() {
        assert!(
            is_genuine(&token, &url, pairs, &tampered),
            "a tampered signature was accepted"
        );
    }
});

/// The typed parse either keeps every raw pair or fails with an error whose echoed value is bounded.
fn check_bounded(parsed: Result<FormParams, WebhookError>, raw: &FormParams) {
    match parsed {
        Ok(kept) => assert_eq!(&kept, raw, "the signed pairs changed"),
        Err(WebhookError::Invalid { value, .. }) => assert!(value.chars().count() <= 64),
        Err(WebhookError::Missing { .. }) => {}
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    FormParams::parse(query.as_bytes()).pairs().to_vec()
}

/// Whether `header` is the signature of `url` or of a port variant of it (a superset of the variants
/// the validator tries: every `:port` suffix of the authority removed, 80 and 443 added).
fn is_genuine<K: AsRef<str>, V: AsRef<str>>(
    token: &AuthToken,
    url: &str,
    params: &[(K, V)],
    header: &str,
) -> bool {
    let Ok(given) = STANDARD.decode(header.trim()) else {
        return false;
    };
    let mut candidates = vec![url.to_owned()];
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if let Some(colon) = authority.rfind(':') {
            candidates.push(format!("{scheme}://{}{path}", &authority[..colon]));
        }
        for port in [80, 443] {
            candidates.push(format!("{scheme}://{authority}:{port}{path}"));
        }
    }
    candidates.iter().any(|u| {
        STANDARD
            .decode(signature::sign(token, u, params))
            .is_ok_and(|mac| mac == given)
    })
}
