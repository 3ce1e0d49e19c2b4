//! SendGrid's Event Webhook, as the fake sends it: for each email it accepts, signed POSTs of
//! JSON arrays of events (`processed`, then what the recipient's [`Outcome`] makes:
//! `delivered` by default) to the Event Webhook URL of the account that sent it (its
//! `events_url`, else the configured `sendgrid_events_url`), each posted again until it is
//! answered 2xx, as SendGrid does. Each event
//! carries its `sg_event_id`, the `sg_message_id` (the `X-Message-Id` of the answer, then
//! `.filter…`), the recipient, a Unix `timestamp` and the request's `custom_args` as
//! top-level fields. The signature is SendGrid's: ECDSA P-256 with SHA-256 over the
//! timestamp header's text followed by the raw body, base64 DER in
//! `X-Twilio-Email-Event-Webhook-Signature`, the timestamp in
//! `X-Twilio-Email-Event-Webhook-Timestamp`. Each SendGrid account signs with a key pair of
//! its own, as on SendGrid: the default account with a fixed development key
//! ([`sendgrid_verification_key`] is its public half, as SendGrid's settings page shows it),
//! every other one with a key derived from its API key, so that the same API key always gets
//! the same pair ([`Accounts::sendgrid_verification_key`](crate::Accounts::sendgrid_verification_key)
//! and `GET /_fake/accounts` show its public half).
//!
//! Twilio's status callbacks, likewise: for each SMS it accepts with a `StatusCallback`, a
//! form-encoded POST per status (`sent`, then `delivered` by default) to that URL, with the
//! sending account's SID as `AccountSid`, signed as Twilio signs (`X-Twilio-Signature`:
//! HMAC-SHA1 keyed by that account's auth token over the URL followed by every parameter,
//! sorted by name, as name then value; base64).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use sha1::Sha1;

use crate::outcomes::{Outcome, REPORT_GAP, Report};

pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";
pub const TWILIO_SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The default SendGrid account's signing key: fixed, so that local settings can name its
/// public half. A test fixture, not a secret; it also keys the derivation of the other
/// accounts' keys.
const DEV_KEY: &[u8; 32] = b"herald-fake-provider-webhook-key";
/// A post not answered 2xx is made again after this long, for up to [`RETRY_FOR`] (SendGrid
/// retries for a day).
const RETRY_EVERY: Duration = Duration::from_millis(250);
const RETRY_FOR: Duration = Duration::from_secs(120);

/// A SendGrid account's Event Webhook signing key pair.
#[derive(Clone)]
pub(crate) struct EventKey(SigningKey);

impl EventKey {
    /// The default account's: the fixed development key.
    pub fn default_account() -> Self {
        Self(SigningKey::from_slice(DEV_KEY).expect("a valid P-256 scalar"))
    }

    /// Another account's, derived from its API key: the secret scalar is HMAC-SHA1 keyed by
    /// [`DEV_KEY`] over a round, a block number and the API key, two blocks cut to 32 bytes
    /// (the next round if that is no valid scalar). The same API key always gets the same
    /// pair, and none gets the default account's.
    pub fn derived(api_key: &str) -> Self {
        let key = (0..=u8::MAX)
            .find_map(|round| {
                let block = |n: u8| {
                    let mut mac =
                        Hmac::<Sha1>::new_from_slice(DEV_KEY).expect("HMAC takes any key length");
                    mac.update(b"sendgrid-event-webhook-key");
                    mac.update(&[round, n]);
                    mac.update(api_key.as_bytes());
                    mac.finalize().into_bytes()
                };
                let mut scalar = block(1).to_vec();
                scalar.extend_from_slice(&block(2));
                SigningKey::from_slice(&scalar[..32]).ok()
            })
            .expect("a valid P-256 scalar within 256 rounds");
        Self(key)
    }

    /// The public half, as receivers verify with it and SendGrid's settings page shows it:
    /// base64 DER (SubjectPublicKeyInfo).
    pub fn verification_key(&self) -> String {
        let der = self
            .0
            .verifying_key()
            .to_public_key_der()
            .expect("a P-256 key encodes");
        STANDARD.encode(der.as_bytes())
    }

    /// The signature header's value for `body` sent with `timestamp`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let signature: Signature = self.0.sign(&signed);
        STANDARD.encode(signature.to_der().as_bytes())
    }
}

/// Shows the public half only.
impl std::fmt::Debug for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EventKey")
            .field(&self.verification_key())
            .finish()
    }
}

/// The public key receivers verify the default SendGrid account's events with: base64 DER
/// (SubjectPublicKeyInfo). Another account's: [`Accounts::sendgrid_verification_key`](crate::Accounts::sendgrid_verification_key).
pub fn sendgrid_verification_key() -> String {
    EventKey::default_account().verification_key()
}

/// The signature header's value for `body` sent with `timestamp` by the default SendGrid
/// account: what SendGrid computes. Another account's:
/// [`Accounts::sign_sendgrid_events`](crate::Accounts::sign_sendgrid_events).
pub fn sign_sendgrid_events(timestamp: &str, body: &[u8]) -> String {
    EventKey::default_account().sign(timestamp, body)
}

/// The `X-Twilio-Signature` of a POST of `params` to `url`: what Twilio computes.
pub fn sign_twilio_request(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut signed = url.to_owned();
    for (name, value) in &sorted {
        signed.push_str(name);
        signed.push_str(value);
    }
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// An accepted SMS, as its status callbacks describe it.
pub(crate) struct AcceptedSms {
    pub sid: String,
    pub account_sid: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub to: Option<String>,
    pub callback: String,
    /// What becomes of it; `None`: delivered.
    pub outcome: Option<Outcome>,
}

/// Posts the SMS's statuses to its callback URL (`sent`, then `delivered`, `undelivered` or
/// `failed` as its outcome says), each signed with `auth_token` and posted again until
/// answered 2xx.
pub(crate) async fn post_twilio_statuses(
    client: reqwest::Client,
    auth_token: String,
    sms: AcceptedSms,
) {
    let report = sms.outcome.as_ref().map_or(Report::Delivered, |o| o.report);
    let code = sms.outcome.as_ref().and_then(|o| o.error_code);
    // The statuses posted, and the ErrorCode the last one carries.
    let (statuses, error_code): (&[&str], Option<u32>) = match report {
        Report::Undelivered => (&["sent", "undelivered"], Some(code.unwrap_or(30003))),
        Report::Failed => (&["failed"], Some(code.unwrap_or(30008))),
        _ => (&["sent", "delivered"], None),
    };
    let delay = sms.outcome.as_ref().map_or(REPORT_GAP, Outcome::delay);
    for (n, &status) in statuses.iter().enumerate() {
        tokio::time::sleep(if n == 0 { REPORT_GAP } else { delay }).await;
        let mut params = vec![
            ("AccountSid".to_owned(), sms.account_sid.clone()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
            ("MessageSid".to_owned(), sms.sid.clone()),
            ("MessageStatus".to_owned(), status.to_owned()),
            ("SmsSid".to_owned(), sms.sid.clone()),
            ("SmsStatus".to_owned(), status.to_owned()),
        ];
        params.extend(sms.from.clone().map(|from| ("From".to_owned(), from)));
        params.extend(
            sms.messaging_service_sid
                .clone()
                .map(|service| ("MessagingServiceSid".to_owned(), service)),
        );
        params.extend(sms.to.clone().map(|to| ("To".to_owned(), to)));
        if let Some(code) = error_code.filter(|_| n + 1 == statuses.len()) {
            params.push(("ErrorCode".to_owned(), code.to_string()));
        }
        let signature = sign_twilio_request(&auth_token, &sms.callback, &params);
        let body = serde_urlencoded::to_string(&params).expect("a form encodes");
        let request = client
            .post(&sms.callback)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(TWILIO_SIGNATURE_HEADER, signature)
            .body(body);
        post_until_taken(request, &sms.callback, "status callback").await;
    }
}

/// Sends `request` until it is answered 2xx, every [`RETRY_EVERY`] for up to [`RETRY_FOR`].
async fn post_until_taken(request: reqwest::RequestBuilder, url: &str, what: &str) {
    let give_up = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        let Some(attempt) = request.try_clone() else {
            return;
        };
        let answer = match attempt.send().await {
            Ok(answer) if answer.status().is_success() => {
                tracing::info!(%url, status = answer.status().as_u16(), what, "posted");
                return;
            }
            Ok(answer) => answer.status().to_string(),
            Err(error) => error.to_string(),
        };
        if tokio::time::Instant::now() >= give_up {
            tracing::warn!(%url, %answer, what, "not delivered; giving up");
            return;
        }
        tracing::debug!(%url, %answer, what, "not delivered; posting again");
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// An email accepted for one recipient, as its events describe it.
pub(crate) struct AcceptedEmail {
    pub message_id: String,
    pub to: String,
    pub custom_args: BTreeMap<String, String>,
    /// What becomes of it; `None`: delivered.
    pub outcome: Option<Outcome>,
}

/// The events after `processed` that an outcome makes, each as its own fields.
fn sendgrid_reports(outcome: Option<&Outcome>) -> Vec<Value> {
    let report = outcome.map_or(Report::Delivered, |o| o.report);
    let reason = |default: &str| {
        json!(
            outcome
                .and_then(|o| o.reason.clone())
                .unwrap_or_else(|| default.to_owned())
        )
    };
    let delivered = json!({ "event": "delivered", "response": "250 OK" });
    match report {
        Report::Deferred => vec![
            json!({ "event": "deferred", "response": reason("451 4.2.0 Mailbox temporarily unavailable"), "attempt": "1" }),
            delivered,
        ],
        Report::Bounce => vec![json!({
            "event": "bounce", "type": "bounce", "status": "5.1.1",
            "reason": reason("550 5.1.1 The email account that you tried to reach does not exist"),
            "bounce_classification": "Invalid Address",
        })],
        Report::Blocked => vec![json!({
            "event": "bounce", "type": "blocked", "status": "4.7.1",
            "reason": reason("421 4.7.1 Temporarily rate limited; try again later"),
            "bounce_classification": "Reputation",
        })],
        Report::Dropped => vec![json!({ "event": "dropped", "reason": reason("Bounced Address") })],
        Report::Spamreport => vec![delivered, json!({ "event": "spamreport" })],
        Report::Unsubscribe => vec![delivered, json!({ "event": "unsubscribe" })],
        Report::Delivered | Report::Undelivered | Report::Failed => vec![delivered],
    }
}

/// Posts the email's events to `url`: `processed` after a moment, the rest of what its
/// outcome makes after the outcome's delay, each post signed with `key` (the sending
/// account's) and made until taken.
pub(crate) async fn post_sendgrid_events(
    client: reqwest::Client,
    url: String,
    key: EventKey,
    email: AcceptedEmail,
) {
    let delay = email.outcome.as_ref().map_or(REPORT_GAP, Outcome::delay);
    let batches = [
        vec![json!({ "event": "processed" })],
        sendgrid_reports(email.outcome.as_ref()),
    ];
    for (n, batch) in batches.into_iter().enumerate() {
        tokio::time::sleep(if n == 0 { REPORT_GAP } else { delay }).await;
        let timestamp = chrono::Utc::now().timestamp();
        let events: Vec<Value> = batch
            .into_iter()
            .map(|mut fields| {
                fields["email"] = json!(email.to);
                fields["timestamp"] = json!(timestamp);
                fields["sg_event_id"] = json!(STANDARD.encode(rand::random::<[u8; 16]>()));
                fields["sg_message_id"] =
                    json!(format!("{}.filterdrecv-fake-1-0", email.message_id));
                fields["smtp-id"] = json!(format!("<{}@fake.sendgrid>", email.message_id));
                for (key, value) in &email.custom_args {
                    fields[key] = json!(value);
                }
                fields
            })
            .collect();
        let body = serde_json::to_vec(&events).expect("events serialize");
        let timestamp = timestamp.to_string();
        let signature = key.sign(&timestamp, &body);
        let request = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(TIMESTAMP_HEADER, timestamp)
            .body(body);
        post_until_taken(request, &url, "event webhook").await;
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;

    use super::*;

    #[test]
    fn a_signature_verifies_with_the_published_key_over_timestamp_and_body() {
        let key = STANDARD.decode(sendgrid_verification_key()).unwrap();
        let key = VerifyingKey::from_public_key_der(&key).unwrap();
        let signature = STANDARD
            .decode(sign_sendgrid_events("1700000000", b"[]"))
            .unwrap();
        let signature = Signature::from_der(&signature).unwrap();
        assert!(key.verify(b"1700000000[]", &signature).is_ok());
        assert!(key.verify(b"1700000001[]", &signature).is_err());
    }

    fn verifies(verification_key: &str, signature: &str) -> bool {
        let key = STANDARD.decode(verification_key).unwrap();
        let key = VerifyingKey::from_public_key_der(&key).unwrap();
        let signature = Signature::from_der(&STANDARD.decode(signature).unwrap()).unwrap();
        key.verify(b"1700000000[]", &signature).is_ok()
    }

    #[test]
    fn each_api_key_gets_a_key_pair_of_its_own_and_always_the_same() {
        let default = EventKey::default_account();
        let acme = EventKey::derived("SG.acme");
        let globex = EventKey::derived("SG.globex");
        assert_eq!(default.verification_key(), sendgrid_verification_key());
        assert_eq!(
            acme.verification_key(),
            EventKey::derived("SG.acme").verification_key()
        );
        assert_ne!(acme.verification_key(), globex.verification_key());
        assert_ne!(acme.verification_key(), default.verification_key());
        let signed = acme.sign("1700000000", b"[]");
        assert!(verifies(&acme.verification_key(), &signed));
        assert!(!verifies(&globex.verification_key(), &signed));
        assert!(!verifies(&default.verification_key(), &signed));
        assert!(format!("{acme:?}").contains(&acme.verification_key()));
    }
}
