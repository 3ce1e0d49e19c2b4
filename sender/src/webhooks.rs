//! The providers' webhooks, taken on `[webhooks] listen`: SendGrid's Event Webhook at
//! `POST /webhooks/sendgrid`, and Twilio's status callbacks at `POST /webhooks/twilio`.
//!
//! - A request is believed only with SendGrid's signature: ECDSA P-256 with SHA-256 over the
//!   `X-Twilio-Email-Event-Webhook-Timestamp` header's text followed by the raw body, checked
//!   against the configured verification key, and a timestamp within `max_age` of now. A
//!   missing, forged or stale one is refused with 401 and changes nothing; SendGrid retries
//!   refused posts for a day, which gives an operator who set the wrong key time to fix it.
//! - Each event is recorded once (`sg_event_id`): a post repeated changes nothing. Events are
//!   matched to messages by the `herald_message_id` custom argument every email carries; an
//!   event that names no message of ours is recorded without one and answered 200, since a
//!   retry could not make it match.
//! - An event received since a message in doubt's last call began settles it
//!   (`NotifyDb::settle_by_events`, here and in every settler round): the provider has it,
//!   so it is `sent`, or `failed` if the provider reports it could not deliver it.
//! - A body that is not a JSON array of events is refused with 400; a database that is down
//!   answers 503, so SendGrid posts again later.
//! - Twilio signs each callback: `X-Twilio-Signature`, HMAC-SHA1 keyed by our auth token over
//!   the URL it posted to (`webhooks.public_url` and the path and query it called, which carry
//!   our message id) followed by every form parameter, sorted by name, as name then value.
//!   One without a valid signature gets 403 and changes nothing. Each status of a message
//!   (`MessageSid:MessageStatus`) is recorded once and settles it if in doubt; error 21610
//!   (the recipient replied STOP) suppresses the number for its tenant.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use herald_core::config::WebhookSettings;
use herald_core::listener;
use herald_core::model::{Channel, DeliveryEvent, EventsRecorded};
use herald_core::store::{NotifyDb, StoreResult};
use herald_core::telemetry::error_chain;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha1::Sha1;
use tokio_util::sync::CancellationToken;

use crate::metrics::SenderMetrics;
use crate::provider::Providers;
use crate::unsubscribe::{self, OneClick};

const SIGNATURE: &str = "X-Twilio-Email-Event-Webhook-Signature";
const TIMESTAMP: &str = "X-Twilio-Email-Event-Webhook-Timestamp";
const TWILIO_SIGNATURE: &str = "X-Twilio-Signature";
/// The largest post taken: SendGrid batches events, a few MiB at most.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Twilio: the recipient replied STOP; nothing more may be sent to the number.
const TWILIO_UNSUBSCRIBED: &str = "21610";

#[derive(Debug, thiserror::Error)]
#[error(
    "webhooks.sendgrid_verification_key is not a P-256 public key (base64 DER, as SendGrid shows it): {0}"
)]
pub struct KeyError(String);

/// A Signed Event Webhook verification key, as SendGrid shows it (base64 DER); or why it is
/// not one.
pub(crate) fn verifying_key(key: &str) -> Result<VerifyingKey, String> {
    let der = STANDARD
        .decode(key.trim())
        .map_err(|error| error.to_string())?;
    VerifyingKey::from_public_key_der(&der).map_err(|error| error.to_string())
}

pub struct Webhooks {
    store: Arc<dyn NotifyDb>,
    metrics: Arc<SenderMetrics>,
    /// `None`: not configured, every SendGrid post is refused.
    sendgrid_key: Option<VerifyingKey>,
    max_age: Duration,
    /// Twilio signs callbacks with the auth token of the account they are about (the
    /// providers know them), over the URL it posted to (`webhooks.public_url`; empty: every
    /// callback is refused).
    providers: Arc<Providers>,
    public_url: String,
    /// One-click unsubscribe links are served here too, when emails carry them.
    one_click: Option<OneClick>,
}

impl Webhooks {
    /// `providers`: their Twilio accounts' auth tokens key Twilio's signatures.
    pub fn new(
        store: Arc<dyn NotifyDb>,
        metrics: Arc<SenderMetrics>,
        settings: &WebhookSettings,
        providers: Arc<Providers>,
        one_click: Option<OneClick>,
    ) -> Result<Self, KeyError> {
        let key = settings.sendgrid_verification_key.trim();
        let sendgrid_key = if key.is_empty() {
            tracing::warn!(
                "webhooks.sendgrid_verification_key is not set: SendGrid's events are refused"
            );
            None
        } else {
            Some(verifying_key(key).map_err(KeyError)?)
        };
        let public_url = settings.public_url.trim().trim_end_matches('/').to_owned();
        Ok(Webhooks {
            store,
            metrics,
            sendgrid_key,
            max_age: settings.max_age,
            providers,
            public_url,
            one_click,
        })
    }

    /// Binds `listen` (a taken port is an error at startup) and takes webhooks (and one-click
    /// unsubscribes) until `cancel` fires.
    pub async fn serve(
        mut self,
        listen: SocketAddr,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        let unsubscribe = self.one_click.take().map(|one_click| {
            unsubscribe::router(one_click, self.store.clone(), self.metrics.clone())
        });
        let mut app = Router::new()
            .route("/webhooks/sendgrid", post(sendgrid))
            .route("/webhooks/sendgrid/{account}", post(sendgrid))
            .route("/webhooks/twilio", post(twilio))
            .route("/webhooks/twilio/{account}", post(twilio))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(Arc::new(self));
        let mut what = "the providers' webhooks at /webhooks/sendgrid and /webhooks/twilio";
        if let Some(unsubscribe) = unsubscribe {
            app = app.merge(unsubscribe);
            what = "the providers' webhooks at /webhooks/sendgrid and /webhooks/twilio, and one-click unsubscribes at /unsubscribe/…";
        }
        listener::serve(listen, app, what, cancel).await?;
        Ok(())
    }

    /// Whether SendGrid signed `body` with this timestamp, recently, as `account` (a defined
    /// one, else the default).
    fn verify_sendgrid(
        &self,
        account: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), &'static str> {
        let key = match account {
            None => self.sendgrid_key,
            Some(name) => self.providers.sendgrid_event_key(name),
        };
        let key = key.ok_or("no verification key is configured for this account")?;
        let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
        let (Some(signature), Some(timestamp)) = (header(SIGNATURE), header(TIMESTAMP)) else {
            return Err("the signature or timestamp header is missing");
        };
        let signed_at = timestamp
            .parse::<i64>()
            .ok()
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or("the timestamp is not a Unix time")?;
        let age = (Utc::now() - signed_at)
            .abs()
            .to_std()
            .unwrap_or(Duration::MAX);
        if age > self.max_age {
            return Err("the timestamp is too old (or ahead): a replay");
        }
        let signature = STANDARD
            .decode(signature)
            .ok()
            .and_then(|der| Signature::from_der(&der).ok())
            .ok_or("the signature is not base64 DER")?;
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        key.verify(&signed, &signature)
            .map_err(|_| "the signature does not match")
    }

    /// Whether Twilio signed this callback as `account` (a defined one, else the default):
    /// the URL it posted to and its sorted parameters.
    fn verify_twilio(
        &self,
        account: Option<&str>,
        uri: &Uri,
        headers: &HeaderMap,
        params: &[(String, String)],
    ) -> Result<(), &'static str> {
        if self.public_url.is_empty() {
            return Err("webhooks.public_url is not set");
        }
        // The default account posts to /webhooks/twilio only, never under its name.
        let token = match account {
            None => self.providers.twilio_auth_token(Channel::Sms.as_str()),
            Some(name) if name == Channel::Sms.as_str() => None,
            Some(name) => self.providers.twilio_auth_token(name),
        }
        .ok_or("no auth token is set for this account")?;
        let public_url = &self.public_url;
        let signature = headers
            .get(TWILIO_SIGNATURE)
            .and_then(|value| value.to_str().ok())
            .ok_or("the signature header is missing")?;
        let signature = STANDARD
            .decode(signature)
            .map_err(|_| "the signature is not base64")?;
        let mut signed = format!(
            "{public_url}{}",
            uri.path_and_query().map_or("", |path| path.as_str())
        );
        let mut sorted = params.to_vec();
        sorted.sort();
        for (name, value) in &sorted {
            signed.push_str(name);
            signed.push_str(value);
        }
        let mut mac = Hmac::<Sha1>::new_from_slice(token.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| "the signature does not match")
    }
}

async fn twilio(
    State(webhooks): State<Arc<Webhooks>>,
    account: Option<Path<String>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        webhooks.metrics.webhook_refused("twilio");
        return (StatusCode::BAD_REQUEST, "refused: not a form\n".into());
    };
    let account = account.map(|Path(name)| name);
    if let Err(why) = webhooks.verify_twilio(account.as_deref(), &uri, &headers, &params) {
        webhooks.metrics.webhook_refused("twilio");
        tracing::warn!(reason = why, "Twilio status callback refused");
        return (StatusCode::FORBIDDEN, format!("refused: {why}\n"));
    }
    // Checked as sent; kept as the databases take it.
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(key, value)| (without_nul(key), without_nul(value)))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let (Some(sid), Some(status)) = (param("MessageSid"), param("MessageStatus")) else {
        webhooks.metrics.webhook_refused("twilio");
        return (
            StatusCode::BAD_REQUEST,
            "refused: no MessageSid or MessageStatus\n".into(),
        );
    };
    let message_id = uri.query().and_then(|query| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(key, _)| key == "message_id")
            .and_then(|(_, id)| id.parse().ok())
    });
    let error_code = param("ErrorCode").filter(|code| !code.is_empty());
    let payload: serde_json::Map<String, Value> = params
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect();
    let event = DeliveryEvent {
        provider: "twilio",
        account: account
            .clone()
            .unwrap_or_else(|| Channel::Sms.as_str().into()),
        event_id: event_id(account.as_deref(), format!("{sid}:{status}")),
        message_id,
        provider_message_id: Some(sid),
        suppress: error_code.as_deref() == Some(TWILIO_UNSUBSCRIBED),
        reason: error_code,
        // Twilio posts each status as it happens.
        occurred_at: Some(Utc::now()),
        address: param("To"),
        event: status,
        payload: Value::Object(payload).to_string(),
    };
    record(&webhooks, "twilio", &[event]).await
}

async fn sendgrid(
    State(webhooks): State<Arc<Webhooks>>,
    account: Option<Path<String>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let account = account.map(|Path(name)| name);
    if let Err(why) = webhooks.verify_sendgrid(account.as_deref(), &headers, &body) {
        webhooks.metrics.webhook_refused("sendgrid");
        tracing::warn!(reason = why, "SendGrid event post refused");
        return (StatusCode::UNAUTHORIZED, format!("refused: {why}\n"));
    }
    let events = match sendgrid_events(account.as_deref(), &body) {
        Ok(events) => events,
        Err(why) => {
            webhooks.metrics.webhook_refused("sendgrid");
            tracing::warn!(reason = %why, "SendGrid event post refused");
            return (StatusCode::BAD_REQUEST, format!("refused: {why}\n"));
        }
    };
    record(&webhooks, "sendgrid", &events).await
}

/// Records the events and answers the provider: 200, or 503 (it posts again) when the
/// database is down.
async fn record(
    webhooks: &Webhooks,
    provider: &'static str,
    events: &[DeliveryEvent],
) -> (StatusCode, String) {
    let recorded = match record_each(webhooks, provider, events).await {
        Ok(done) => done,
        Err(error) => {
            tracing::warn!(provider, error = %error_chain(&error), "provider events not recorded; the provider posts them again");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not recorded: try again later\n".into(),
            );
        }
    };
    webhooks.metrics.webhook_events(provider, recorded.recorded);
    if recorded.suppressed > 0 {
        tracing::info!(
            provider,
            suppressed = recorded.suppressed,
            "addresses suppressed: bounced, complained or unsubscribed"
        );
    }
    // Recorded: settling what the events prove can wait for the settler if it fails now.
    settle_by_events(&webhooks.store, &webhooks.metrics).await;
    let new = recorded.recorded;
    (StatusCode::OK, format!("recorded {new} new event(s)\n"))
}

/// Records the events in one statement; if the database refuses it (a value it cannot take),
/// one by one, so that one bad event is logged and skipped rather than blocking the others
/// while the provider posts them again. Errs only when the database is unavailable.
async fn record_each(
    webhooks: &Webhooks,
    provider: &'static str,
    events: &[DeliveryEvent],
) -> StoreResult<EventsRecorded> {
    let error = match webhooks.store.record_events(events).await {
        Err(error) if !error.is_unavailable() && events.len() > 1 => error,
        done => return done,
    };
    tracing::warn!(provider, error = %error_chain(&error), "a batch of provider events was refused; recording them one by one");
    let mut total = EventsRecorded::default();
    for event in events {
        match webhooks
            .store
            .record_events(std::slice::from_ref(event))
            .await
        {
            Ok(done) => {
                total.recorded += done.recorded;
                total.suppressed += done.suppressed;
            }
            Err(error) if error.is_unavailable() => return Err(error),
            Err(error) => {
                webhooks.metrics.webhook_refused(provider);
                tracing::error!(provider, event_id = %event.event_id, error = %error_chain(&error), "provider event refused by the database: skipped");
            }
        }
    }
    Ok(total)
}

/// Settles the messages in doubt their providers have reported on; logs what it did.
pub async fn settle_by_events(store: &Arc<dyn NotifyDb>, metrics: &SenderMetrics) {
    match store.settle_by_events().await {
        Ok(settled) => {
            for message in settled {
                metrics.settled(message.channel);
                tracing::info!(
                    message_id = message.message_id,
                    status = %message.status,
                    "in-doubt message settled by its provider's report"
                );
            }
        }
        Err(error) => tracing::warn!(
            error = %error_chain(&error),
            "could not settle messages by their providers' reports; trying again later"
        ),
    }
}

/// A provider's event id as recorded: a defined account's after its name, so that one
/// account's posts can never take the id of another's event.
fn event_id(account: Option<&str>, id: String) -> String {
    match account {
        Some(name) => format!("{name}/{id}"),
        None => id,
    }
}

/// `account`'s SendGrid events (a defined account's, else the default's) as recorded: a JSON array of objects, each with its `event` and
/// `sg_event_id` (an event without them cannot be recorded once, and is skipped).
fn sendgrid_events(account: Option<&str>, body: &[u8]) -> Result<Vec<DeliveryEvent>, String> {
    let events: Vec<Value> = serde_json::from_slice(body)
        .map_err(|error| format!("not a JSON array of events: {error}"))?;
    Ok(events
        .iter()
        .filter_map(|event| {
            let text = |name: &str| event.get(name).and_then(Value::as_str).map(without_nul);
            let (Some(kind), Some(event_id)) = (text("event"), text("sg_event_id")) else {
                tracing::warn!(%event, "a SendGrid event without `event` or `sg_event_id`: skipped");
                return None;
            };
            let suppress = suppresses(&kind, text("type").as_deref(), text("reason").as_deref());
            Some(DeliveryEvent {
                provider: "sendgrid",
                account: account.unwrap_or(Channel::Email.as_str()).into(),
                event_id: self::event_id(account, event_id),
                address: text("email"),
                suppress,
                message_id: text("herald_message_id").and_then(|id| id.parse().ok()),
                // `sg_message_id` is the `X-Message-Id` of the answer, then `.filter…`.
                provider_message_id: text("sg_message_id")
                    .map(|id| id.split('.').next().unwrap_or_default().to_owned()),
                reason: text("reason").or_else(|| text("response")),
                occurred_at: event
                    .get("timestamp")
                    .and_then(Value::as_i64)
                    .and_then(|seconds| DateTime::from_timestamp(seconds, 0)),
                event: kind,
                payload: event.to_string(),
            })
        })
        .collect())
}

/// Text as the databases take it: PostgreSQL refuses NUL characters.
fn without_nul(text: &str) -> String {
    text.replace('\0', "")
}

/// Whether a SendGrid event means the address must not be mailed again: a hard bounce (a
/// `blocked` bounce is temporary), a spam report, an unsubscribe, or a drop because SendGrid
/// itself has the address as bounced, invalid, reported or unsubscribed.
fn suppresses(event: &str, kind: Option<&str>, reason: Option<&str>) -> bool {
    const ADDRESS_DROPS: [&str; 4] = [
        "Bounced Address",
        "Invalid",
        "Spam Reporting Address",
        "Unsubscribed Address",
    ];
    match event {
        "bounce" => kind != Some("blocked"),
        "spamreport" | "unsubscribe" | "group_unsubscribe" => true,
        "dropped" => {
            reason.is_some_and(|reason| ADDRESS_DROPS.iter().any(|drop| reason.contains(drop)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_with_our_message_and_the_providers_id() {
        let body = br#"[
            {"email":"a@example.com","timestamp":1700000000,"event":"bounce","sg_event_id":"e1",
             "sg_message_id":"abc123.filterdrecv-1-0","herald_message_id":"42","reason":"550 no such user"},
            {"event":"delivered","sg_event_id":"e2","response":"250 OK"},
            {"event":"open"}
        ]"#;
        let events = sendgrid_events(None, body).unwrap();
        assert_eq!(events.len(), 2, "the one without sg_event_id is skipped");
        assert_eq!(
            (events[0].account.as_str(), events[0].event_id.as_str()),
            ("email", "e1")
        );
        // A defined account's event ids are its own: no other account's post can take them.
        let acme = sendgrid_events(Some("acme-sendgrid"), body).unwrap();
        assert_eq!(
            (acme[0].account.as_str(), acme[0].event_id.as_str()),
            ("acme-sendgrid", "acme-sendgrid/e1")
        );
        assert_eq!(events[0].message_id, Some(42));
        assert_eq!(events[0].provider_message_id.as_deref(), Some("abc123"));
        assert_eq!(events[0].reason.as_deref(), Some("550 no such user"));
        assert_eq!(
            events[0].occurred_at,
            DateTime::from_timestamp(1_700_000_000, 0)
        );
        assert_eq!(
            (events[1].message_id, events[1].reason.as_deref()),
            (None, Some("250 OK"))
        );
        assert!(sendgrid_events(None, b"{\"event\":\"open\"}").is_err());
        assert!(events[0].suppress && !events[1].suppress);
        assert_eq!(events[0].address.as_deref(), Some("a@example.com"));
    }

    #[test]
    fn hard_bounces_complaints_unsubscribes_and_address_drops_suppress() {
        assert!(suppresses("bounce", Some("bounce"), None));
        assert!(suppresses("bounce", None, None));
        assert!(!suppresses("bounce", Some("blocked"), None), "temporary");
        assert!(suppresses("spamreport", None, None));
        assert!(suppresses("unsubscribe", None, None));
        assert!(suppresses("dropped", None, Some("Bounced Address")));
        assert!(!suppresses("dropped", None, Some("Spam Content")));
        for event in ["processed", "delivered", "deferred", "open", "click"] {
            assert!(!suppresses(event, None, None), "{event}");
        }
    }
}
