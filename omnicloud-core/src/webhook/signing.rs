//! Standard Webhooks signatures: signing secrets (`whsec_…`), signing and verification.
//!
//! A delivery carries three headers: `webhook-id` (the message id, stable across retries),
//! `webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`, a
//! space-separated list of `v1,<base64 HMAC-SHA256>` entries over `"{id}.{timestamp}.{body}"`,
//! keyed with the base64-decoded part of the secret after `whsec_`. During a secret rotation
//! the header carries one entry per live secret, so receivers holding either secret accept
//! the delivery. Any Standard Webhooks verifier (Svix's, the `standardwebhooks` packages)
//! accepts what [`sign`] produces.
//!
//! This module owns the secret's format and the cryptography. It never reads a clock (the
//! caller passes the timestamp and "now"), never stores secrets and never prints a key: the
//! [`Debug`](std::fmt::Debug) form of [`WebhookSecret`] is redacted.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::WebhookError;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// The fewest key bytes a secret may hold (Standard Webhooks: 24 to 64 bytes).
pub const MIN_SECRET_BYTES: usize = 24;
/// The most key bytes a secret may hold.
pub const MAX_SECRET_BYTES: usize = 64;
/// How many random bytes [`WebhookSecret::generate`] draws.
pub const GENERATED_SECRET_BYTES: usize = 32;
/// The signature scheme version this module writes and reads (`v1` = HMAC-SHA256).
pub const SIGNATURE_VERSION: &str = "v1";
/// The timestamp tolerance Standard Webhooks verifiers use by default: 5 minutes either way.
pub const DEFAULT_TOLERANCE_S: i64 = 300;

/// A signing secret: 24 to 64 key bytes, written `whsec_` + standard base64 of the key.
///
/// Its [`Debug`](fmt::Debug) form never shows the key; [`as_str`](Self::as_str) and
/// [`Display`](fmt::Display) give the full `whsec_…` text, for storing and for showing the
/// tenant once, at registration.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
    text: String,
}

impl WebhookSecret {
    /// A new secret of 32 bytes from the operating system's random source.
    ///
    /// # Errors
    ///
    /// [`WebhookError::RandomUnavailable`] if the random source fails.
    pub fn generate() -> Result<Self, WebhookError> {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        getrandom::fill(&mut key).map_err(|e| WebhookError::RandomUnavailable {
            reason: e.to_string(),
        })?;
        Self::from_bytes(&key)
    }

    /// Parses `whsec_` followed by the standard (padded) base64 of 24 to 64 key bytes.
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidSecret`] saying what is wrong: no `whsec_` prefix, an empty key,
    /// malformed base64, or a key of the wrong length. The reason never repeats the text.
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let invalid = |reason: String| WebhookError::InvalidSecret { reason };
        let Some(encoded) = text.strip_prefix(SECRET_PREFIX) else {
            return Err(invalid(format!(
                "a secret must start with {SECRET_PREFIX:?} followed by base64"
            )));
        };
        if encoded.is_empty() {
            return Err(invalid(format!("nothing follows {SECRET_PREFIX:?}")));
        }
        let key = STANDARD.decode(encoded).map_err(|e| {
            invalid(format!(
                "the part after {SECRET_PREFIX:?} is not standard base64: {e}"
            ))
        })?;
        Self::from_bytes(&key)
    }

    /// A secret holding `key` (24 to 64 bytes).
    ///
    /// # Errors
    ///
    /// [`WebhookError::InvalidSecret`] if the key is shorter or longer than allowed.
    pub fn from_bytes(key: &[u8]) -> Result<Self, WebhookError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(WebhookError::InvalidSecret {
                reason: format!(
                    "the key is {} bytes long; it must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes",
                    key.len()
                ),
            });
        }
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(key));
        Ok(Self {
            key: key.to_vec(),
            text,
        })
    }

    /// The secret's text form, `whsec_` + base64 of the key.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How many key bytes the secret holds.
    pub fn key_len(&self) -> usize {
        self.key.len()
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; ours are 24 to 64 bytes.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSecret")
            .field("key", &format_args!("<{} bytes redacted>", self.key.len()))
            .finish()
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for WebhookSecret {
    type Err = WebhookError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl PartialEq for WebhookSecret {
    /// Compares keys without an early exit on the first differing byte.
    fn eq(&self, other: &Self) -> bool {
        self.key.len() == other.key.len()
            && self
                .key
                .iter()
                .zip(&other.key)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for WebhookSecret {}

/// The signature of one delivery under one secret: `v1,` + base64(HMAC-SHA256(key,
/// `"{msg_id}.{timestamp}.{body}"`)).
///
/// `timestamp` is the attempt's unix time in seconds, as sent in `webhook-timestamp`.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(msg_id, timestamp, body).finalize().into_bytes();
    format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header value: one [`sign`] entry per secret, space-separated.
///
/// Pass the current secret and, during a rotation's grace period, the previous one: a
/// receiver that still holds the old secret and one that already holds the new one both
/// accept the delivery. With no secrets the header is empty.
pub fn signature_header(
    secrets: &[&WebhookSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a delivery is authentic: some `v1` entry of `header` is the signature of
/// `msg_id`, `timestamp` and `body` under `secret`, and `timestamp` lies within
/// `tolerance_s` seconds of `now_unix` (either way; a negative tolerance accepts nothing).
///
/// The comparison is constant-time (the MAC crate's `verify_slice`). Entries of other
/// versions, entries without a comma and entries that are not base64 are skipped, as
/// Standard Webhooks verifiers do.
pub fn verify(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now_unix: i64,
    tolerance_s: i64,
) -> bool {
    if tolerance_s < 0 || now_unix.abs_diff(timestamp) > tolerance_s.unsigned_abs() {
        return false;
    }
    let mac = secret.mac(msg_id, timestamp, body);
    header.split_whitespace().any(|entry| {
        let Some((version, encoded)) = entry.split_once(',') else {
            return false;
        };
        if version != SIGNATURE_VERSION {
            return false;
        }
        match STANDARD.decode(encoded) {
            Ok(tag) => mac.clone().verify_slice(&tag).is_ok(),
            Err(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_secret() -> WebhookSecret {
        WebhookSecret::parse(SPEC_SECRET).expect("the spec's secret parses")
    }

    #[test]
    fn standard_webhooks_vector() {
        let secret = spec_secret();
        assert_eq!(secret.key_len(), 24);
        assert_eq!(sign(&secret, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
        assert!(verify(
            &secret,
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TS,
            DEFAULT_TOLERANCE_S
        ));
    }

    #[test]
    fn text_round_trips() {
        let secret = spec_secret();
        assert_eq!(secret.as_str(), SPEC_SECRET);
        assert_eq!(secret.to_string(), SPEC_SECRET);
        let again: WebhookSecret = SPEC_SECRET.parse().expect("parses");
        assert_eq!(again, secret);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = spec_secret();
        let debug = format!("{secret:?}");
        assert!(!debug.contains("MfKQ9r8G"), "{debug}");
        assert!(!debug.contains(SECRET_PREFIX), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn generated_secrets_are_32_random_bytes() {
        let a = WebhookSecret::generate().expect("random source works");
        let b = WebhookSecret::generate().expect("random source works");
        assert_eq!(a.key_len(), GENERATED_SECRET_BYTES);
        assert!(a.as_str().starts_with(SECRET_PREFIX));
        assert_ne!(a, b);
        let reparsed = WebhookSecret::parse(a.as_str()).expect("a generated secret parses");
        assert_eq!(reparsed, a);
        assert_eq!(reparsed.as_str(), a.as_str());
    }

    fn reason(text: &str) -> String {
        match WebhookSecret::parse(text) {
            Err(WebhookError::InvalidSecret { reason }) => reason,
            other => panic!("expected InvalidSecret for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn bad_secrets_are_rejected_with_reasons() {
        assert!(reason("").contains("must start with"));
        assert!(reason("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").contains("must start with"));
        assert!(reason("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").contains("must start with"));
        assert!(reason("whsec_").contains("nothing follows"));
        assert!(reason("whsec_not base64!").contains("not standard base64"));
        assert!(reason("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS").contains("not standard base64"));
        assert!(reason(" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").contains("must start with"));
        // URL-safe alphabet is not standard base64.
        assert!(reason("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa_w").contains("not standard base64"));
        // 16 bytes: too short; 65 bytes: too long.
        let short = format!("whsec_{}", STANDARD.encode([7u8; 16]));
        assert!(reason(&short).contains("16 bytes"), "{}", reason(&short));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert!(reason(&long).contains("65 bytes"), "{}", reason(&long));
        // The bounds themselves are fine.
        for len in [MIN_SECRET_BYTES, MAX_SECRET_BYTES] {
            let text = format!("whsec_{}", STANDARD.encode(vec![1u8; len]));
            assert_eq!(
                WebhookSecret::parse(&text).expect("in range").key_len(),
                len
            );
        }
        // Reasons never echo the secret.
        assert!(!reason("whsec_not base64!").contains("not base64!"));
    }

    #[test]
    fn from_bytes_checks_the_length() {
        assert!(WebhookSecret::from_bytes(&[0u8; 23]).is_err());
        assert!(WebhookSecret::from_bytes(&[]).is_err());
        assert!(WebhookSecret::from_bytes(&[0u8; 64]).is_ok());
        assert!(WebhookSecret::from_bytes(&[0u8; 65]).is_err());
    }

    #[test]
    fn verify_rejects_tampering_and_stale_timestamps() {
        let secret = spec_secret();
        let ok = |id: &str, ts: i64, body: &[u8], header: &str, now: i64| {
            verify(&secret, id, ts, body, header, now, DEFAULT_TOLERANCE_S)
        };
        assert!(!ok(
            SPEC_ID,
            SPEC_TS,
            br#"{"test": 2432232315}"#,
            SPEC_SIGNATURE,
            SPEC_TS
        ));
        assert!(!ok(
            "msg_other",
            SPEC_TS,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TS
        ));
        assert!(!ok(
            SPEC_ID,
            SPEC_TS + 1,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TS
        ));
        // Timestamp tolerance, both directions, bounds included.
        assert!(ok(
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TS + 300
        ));
        assert!(ok(
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TS - 300
        ));
        assert!(!ok(
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TS + 301
        ));
        assert!(!ok(
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TS - 301
        ));
        assert!(!verify(
            &secret,
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TS,
            -1
        ));
        assert!(!ok(SPEC_ID, SPEC_TS, SPEC_BODY, SPEC_SIGNATURE, i64::MIN));
        // Malformed or foreign entries.
        for header in [
            "",
            "   ",
            "v1",
            "v1,",
            "v1,!!!",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O==",
        ] {
            assert!(
                !ok(SPEC_ID, SPEC_TS, SPEC_BODY, header, SPEC_TS),
                "{header:?}"
            );
        }
        // Any matching entry is enough, in any position.
        let mixed = format!("v1a,xyz v1,AAAA {SPEC_SIGNATURE}");
        assert!(ok(SPEC_ID, SPEC_TS, SPEC_BODY, &mixed, SPEC_TS));
    }

    #[test]
    fn rotation_header_verifies_under_both_secrets() {
        let old = spec_secret();
        let new = WebhookSecret::generate().expect("random source works");
        let header = signature_header(&[&new, &old], SPEC_ID, SPEC_TS, SPEC_BODY);
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], sign(&new, SPEC_ID, SPEC_TS, SPEC_BODY));
        assert_eq!(entries[1], SPEC_SIGNATURE);
        for secret in [&old, &new] {
            assert!(verify(
                secret,
                SPEC_ID,
                SPEC_TS,
                SPEC_BODY,
                &header,
                SPEC_TS,
                DEFAULT_TOLERANCE_S
            ));
        }
        let stranger = WebhookSecret::generate().expect("random source works");
        assert!(!verify(
            &stranger,
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            &header,
            SPEC_TS,
            DEFAULT_TOLERANCE_S
        ));
        assert_eq!(signature_header(&[], SPEC_ID, SPEC_TS, SPEC_BODY), "");
    }

    #[test]
    fn negative_and_large_timestamps_sign_as_decimal_text() {
        let secret = spec_secret();
        for ts in [0, -1, i64::MAX] {
            let signature = sign(&secret, SPEC_ID, ts, SPEC_BODY);
            assert!(verify(&secret, SPEC_ID, ts, SPEC_BODY, &signature, ts, 0));
        }
    }
}
