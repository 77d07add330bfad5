//! `X-Twilio-Signature`: how the provider proves a webhook or a media-stream upgrade came from it.
//!
//! The signature is `base64(HMAC-SHA1(auth token, url + sorted params))`. The URL must be the public URL
//! the provider requested, rebuilt from configuration (never from the `Host` header, which the caller
//! controls). Validation accepts the URL with and without its port, as the provider's SDK does: the
//! provider sometimes signs `https://host/…` and sometimes `https://host:443/…` for the same request.
//!
//! Comparison is constant time (`Mac::verify_slice`), so the check does not leak how many leading bytes
//! of a forged signature were right.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::AuthToken;

/// The header that carries the signature.
pub const HEADER: &str = "X-Twilio-Signature";

type HmacSha1 = Hmac<Sha1>;

/// Why a request's signature was not accepted. Every variant means "reject the request" (the server maps
/// them all to 403); they differ only so that logs say why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no {HEADER} header")]
    Missing,
    #[error("the {HEADER} header is not base64")]
    Malformed,
    #[error("the {HEADER} header does not match the request")]
    Mismatch,
    #[error("cannot validate a signature for {url:?}: not an absolute URL")]
    BadUrl { url: String },
    #[error("the URL of a JSON webhook has no bodySHA256 parameter")]
    BodyHashMissing,
    #[error("the body does not match the URL's bodySHA256")]
    BodyHashMismatch,
}

/// The exact string the provider signs: the URL, then for each parameter in ascending order of name (and,
/// for a repeated name, of value) the name and the value, decoded, with no separators.
pub fn string_to_sign<K: AsRef<str>, V: AsRef<str>>(url: &str, params: &[(K, V)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    // Byte order of UTF-8 is code point order, which is what the SDKs sort by.
    sorted.sort_unstable();
    let len = url.len() + sorted.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut s = String::with_capacity(len);
    s.push_str(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

fn mac(token: &AuthToken, message: &str) -> HmacSha1 {
    let mut mac =
        HmacSha1::new_from_slice(token.expose().as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    mac
}

/// The signature the provider would send for `url` and form `params` (empty for a GET or a WebSocket
/// upgrade). Used by tests and by stand-in providers; servers call [`validate`].
pub fn sign<K: AsRef<str>, V: AsRef<str>>(token: &AuthToken, url: &str, params: &[(K, V)]) -> String {
    STANDARD.encode(mac(token, &string_to_sign(url, params)).finalize().into_bytes())
}

/// Checks the `X-Twilio-Signature` header (`header`, `None` when absent) of a form POST to `url` with the
/// decoded form `params`, or of a GET with no params.
pub fn validate<K: AsRef<str>, V: AsRef<str>>(
    token: &AuthToken,
    url: &str,
    params: &[(K, V)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let expected = STANDARD
        .decode(header.trim())
        .map_err(|_| SignatureError::Malformed)?;
    let [with_port, without_port] = port_variants(url)?;
    let matches = |u: &str| {
        mac(token, &string_to_sign(u, params))
            .verify_slice(&expected)
            .is_ok()
    };
    // Both are always computed so the time taken does not depend on which form matched.
    let a = matches(&with_port);
    let b = matches(&without_port);
    if a | b {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Checks the signature of a media-stream WebSocket upgrade: the `wss://` URL alone, no parameters.
pub fn validate_websocket(token: &AuthToken, url: &str, header: Option<&str>) -> Result<(), SignatureError> {
    validate::<&str, &str>(token, url, &[], header)
}

/// Checks a webhook with a JSON body: the provider puts `bodySHA256=<hex sha256 of the body>` in the URL's
/// query and signs the URL alone.
pub fn validate_json(
    token: &AuthToken,
    url: &str,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    validate_websocket(token, url, header)?;
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let claimed = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
        .ok_or(SignatureError::BodyHashMissing)?;
    let actual = hex::encode(Sha256::digest(body));
    if claimed.eq_ignore_ascii_case(&actual) {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

/// `[url with its port, url without its port]`, as the SDK builds them: an explicit port is kept in the
/// first and removed from the second; a missing one is added (the scheme's default) to the first.
fn port_variants(url: &str) -> Result<[String; 2], SignatureError> {
    let bad = || SignatureError::BadUrl { url: url.to_owned() };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // Skip user info, then an IPv6 literal's brackets, before looking for the port's colon.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let bracket_end = authority[host_start..]
        .rfind(']')
        .map_or(host_start, |i| host_start + i + 1);
    let port_colon = authority[bracket_end..].rfind(':').map(|i| bracket_end + i);
    if authority[host_start..].is_empty() || scheme.is_empty() {
        return Err(bad());
    }
    let prefix = &url[..scheme.len() + 3];
    let path = &rest[authority_len..];
    match port_colon {
        Some(colon) => {
            let port = &authority[colon + 1..];
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let without = format!("{prefix}{}{path}", &authority[..colon]);
            Ok([url.to_owned(), without])
        }
        None => {
            let default = match scheme.to_ascii_lowercase().as_str() {
                "https" | "wss" => Some(443),
                "http" | "ws" => Some(80),
                _ => None,
            };
            let with = match default {
                Some(port) => format!("{prefix}{authority}:{port}{path}"),
                None => url.to_owned(),
            };
            Ok([with, url.to_owned()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn token() -> AuthToken {
        AuthToken::new("12345")
    }

    fn vector_a() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
    }

    fn vector_d() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ]
    }

    fn vector_b() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AccountSid", "AC00000000000000000000000000000001"),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", "CA00000000000000000000000000000001"),
            ("CallStatus", "ringing"),
            ("Called", "+15005550006"),
            ("Caller", "+14155550100"),
            ("Direction", "inbound"),
            ("From", "+14155550100"),
            ("To", "+15005550006"),
        ]
    }

    #[test]
    fn vector_a_string_to_sign_and_signature() {
        assert_eq!(
            string_to_sign(URL, &vector_a()),
            "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+12349013030\
             Digits1234From+12349013030To+18005551212"
        );
        assert_eq!(sign(&token(), URL, &vector_a()), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert_eq!(
            validate(&token(), URL, &vector_a(), Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Ok(())
        );
    }

    #[test]
    fn vector_b_realistic_inbound_call() {
        let token = AuthToken::new("test_auth_token_0123456789abcdef");
        let url = "https://voice.example.com/twilio/voice";
        assert_eq!(sign(&token, url, &vector_b()), "8pPNfufjxypDRJOJWWYplASyt00=");
        assert_eq!(
            validate(&token, url, &vector_b(), Some("8pPNfufjxypDRJOJWWYplASyt00=")),
            Ok(())
        );
    }

    #[test]
    fn vector_b_sha256_variant_signs_the_same_string() {
        let token = "test_auth_token_0123456789abcdef";
        let s = string_to_sign("https://voice.example.com/twilio/voice", &vector_b());
        let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("any key length");
        mac.update(s.as_bytes());
        assert_eq!(
            STANDARD.encode(mac.finalize().into_bytes()),
            "0D016nswNikBUzDU2aT15fLAw0HO5FmO2KPupqYvvPc="
        );
    }

    #[test]
    fn vector_d_both_port_forms_validate() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(sign(&token(), URL, &vector_d()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(
            sign(&token(), with_port, &vector_d()),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        for url in [URL, with_port] {
            for sig in ["RSOYDt4T1cUTdK1PDd93/VVr8B8=", "kvajT1Ptam85bY51eRf/AJRuM3w="] {
                assert_eq!(
                    validate(&token(), url, &vector_d(), Some(sig)),
                    Ok(()),
                    "{url} {sig}"
                );
            }
        }
    }

    #[test]
    fn vector_e_repeated_keys_sort_by_value() {
        let params = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ];
        assert_eq!(
            string_to_sign(URL, &params),
            format!("{URL}Digits1234Digits5678SidCA123SidAccountAC123")
        );
        assert_eq!(sign(&token(), URL, &params), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
        assert_eq!(
            validate(&token(), URL, &params, Some("IK+Dwps556ElfBT0I3Rgjkr1wJU=")),
            Ok(())
        );
    }

    #[test]
    fn vector_c_json_body() {
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        let body = br#"{"property": "value", "boolean": true}"#;
        let url = format!("{URL}&bodySHA256={hash}");
        let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
        assert_eq!(hex::encode(Sha256::digest(body)), hash);
        assert_eq!(sign::<&str, &str>(&token(), &url, &[]), sig);
        assert_eq!(validate_json(&token(), &url, body, Some(sig)), Ok(()));
        assert_eq!(
            validate_json(
                &token(),
                &url,
                br#"{"property": "other", "boolean": true}"#,
                Some(sig)
            ),
            Err(SignatureError::BodyHashMismatch)
        );
        let no_hash_sig = sign::<&str, &str>(&token(), URL, &[]);
        assert_eq!(
            validate_json(&token(), URL, body, Some(&no_hash_sig)),
            Err(SignatureError::BodyHashMissing)
        );
    }

    #[test]
    fn vector_f_websocket_upgrade() {
        let url = "wss://voice.example.com/media";
        assert_eq!(
            sign::<&str, &str>(&token(), url, &[]),
            "jFDHVhI8XO69C49uXR3xmdZPylY="
        );
        assert_eq!(
            validate_websocket(&token(), url, Some("jFDHVhI8XO69C49uXR3xmdZPylY=")),
            Ok(())
        );
        // The same signature also validates against the URL with wss's default port spelled out.
        assert_eq!(
            validate_websocket(
                &token(),
                "wss://voice.example.com:443/media",
                Some("jFDHVhI8XO69C49uXR3xmdZPylY=")
            ),
            Ok(())
        );
        assert_eq!(
            validate_websocket(
                &token(),
                "wss://voice.example.com/other",
                Some("jFDHVhI8XO69C49uXR3xmdZPylY=")
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampered_param_is_rejected() {
        let mut params = vector_a();
        params[3].1 = "+19999999999";
        assert_eq!(
            validate(&token(), URL, &params, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Err(SignatureError::Mismatch)
        );
        let mut extra = vector_a();
        extra.push(("Evil", "1"));
        assert_eq!(
            validate(&token(), URL, &extra, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampered_url_is_rejected() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=3";
        assert_eq!(
            validate(&token(), url, &vector_a(), Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_token_is_rejected() {
        assert_eq!(
            validate(
                &AuthToken::new("54321"),
                URL,
                &vector_a(),
                Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_rejected() {
        assert_eq!(
            validate(&token(), URL, &vector_a(), None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            validate(&token(), URL, &vector_a(), Some("not base64!")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            validate(&token(), URL, &vector_a(), Some("")),
            Err(SignatureError::Mismatch)
        );
        // A valid signature cut short is base64 but the wrong length.
        assert_eq!(
            validate(&token(), URL, &vector_a(), Some("0/KCTR6D")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn port_variants_follow_the_sdk() -> Result<(), SignatureError> {
        assert_eq!(
            port_variants("https://a.example/x?y=1")?,
            [
                "https://a.example:443/x?y=1".to_owned(),
                "https://a.example/x?y=1".to_owned()
            ]
        );
        assert_eq!(
            port_variants("http://a.example")?,
            ["http://a.example:80".to_owned(), "http://a.example".to_owned()]
        );
        assert_eq!(
            port_variants("https://a.example:8443/x")?,
            [
                "https://a.example:8443/x".to_owned(),
                "https://a.example/x".to_owned()
            ]
        );
        assert_eq!(
            port_variants("https://u:p@[::1]:443/x")?,
            [
                "https://u:p@[::1]:443/x".to_owned(),
                "https://u:p@[::1]/x".to_owned()
            ]
        );
        assert_eq!(
            port_variants("https://[::1]/x?a=b:c")?,
            [
                "https://[::1]:443/x?a=b:c".to_owned(),
                "https://[::1]/x?a=b:c".to_owned()
            ]
        );
        assert!(matches!(
            port_variants("/relative/path"),
            Err(SignatureError::BadUrl { .. })
        ));
        assert!(matches!(
            port_variants("https://host:notaport/"),
            Err(SignatureError::BadUrl { .. })
        ));
        assert!(matches!(
            port_variants("https:///path"),
            Err(SignatureError::BadUrl { .. })
        ));
        Ok(())
    }

    #[test]
    fn non_ascii_params_sign_as_utf8() {
        let params = [("SpeechResult", "café ☕"), ("Digits", "1")];
        let sig = sign(&token(), URL, &params);
        assert_eq!(validate(&token(), URL, &params, Some(&sig)), Ok(()));
        assert_eq!(
            string_to_sign(URL, &params),
            format!("{URL}Digits1SpeechResultcafé ☕")
        );
    }
}
