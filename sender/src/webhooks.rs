//! The providers' webhooks, taken on `[webhooks] listen`: SendGrid's Event Webhook at
//! `POST /webhooks/sendgrid`.
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
//! - A new event of a message in doubt settles it: SendGrid has it, so it is `sent`.
//! - A body that is not a JSON array of events is refused with 400; a database that is down
//!   answers 503, so SendGrid posts again later.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use herald_core::config::WebhookSettings;
use herald_core::model::{Channel, DeliveryEvent};
use herald_core::store::NotifyDb;
use herald_core::telemetry::error_chain;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::SenderMetrics;

const SIGNATURE: &str = "X-Twilio-Email-Event-Webhook-Signature";
const TIMESTAMP: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

#[derive(Debug, thiserror::Error)]
#[error(
    "webhooks.sendgrid_verification_key is not a P-256 public key (base64 DER, as SendGrid shows it): {0}"
)]
pub struct KeyError(String);

pub struct Webhooks {
    store: Arc<dyn NotifyDb>,
    metrics: Arc<SenderMetrics>,
    /// `None`: not configured, every SendGrid post is refused.
    sendgrid_key: Option<VerifyingKey>,
    max_age: Duration,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn NotifyDb>,
        metrics: Arc<SenderMetrics>,
        settings: &WebhookSettings,
    ) -> Result<Self, KeyError> {
        let key = settings.sendgrid_verification_key.trim();
        let sendgrid_key = if key.is_empty() {
            tracing::warn!(
                "webhooks.sendgrid_verification_key is not set: SendGrid's events are refused"
            );
            None
        } else {
            let der = STANDARD
                .decode(key)
                .map_err(|error| KeyError(error.to_string()))?;
            Some(
                VerifyingKey::from_public_key_der(&der)
                    .map_err(|error| KeyError(error.to_string()))?,
            )
        };
        Ok(Webhooks {
            store,
            metrics,
            sendgrid_key,
            max_age: settings.max_age,
        })
    }

    /// Binds `listen` (a taken port is an error at startup) and takes webhooks until
    /// `cancel` fires.
    pub async fn serve(self, listen: SocketAddr, cancel: CancellationToken) -> std::io::Result<()> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "taking the providers' webhooks at /webhooks/sendgrid");
        let app = Router::new()
            .route("/webhooks/sendgrid", post(sendgrid))
            .with_state(Arc::new(self));
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, %address, "the webhook listener stopped");
            }
        });
        Ok(())
    }

    /// Whether SendGrid signed `body` with this timestamp, recently.
    fn verify_sendgrid(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
        let key = self
            .sendgrid_key
            .as_ref()
            .ok_or("no verification key is configured")?;
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
}

async fn sendgrid(
    State(webhooks): State<Arc<Webhooks>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if let Err(why) = webhooks.verify_sendgrid(&headers, &body) {
        webhooks.metrics.webhook_refused("sendgrid");
        tracing::warn!(reason = why, "SendGrid event post refused");
        return (StatusCode::UNAUTHORIZED, format!("refused: {why}\n"));
    }
    let events = match sendgrid_events(&body) {
        Ok(events) => events,
        Err(why) => {
            webhooks.metrics.webhook_refused("sendgrid");
            tracing::warn!(reason = %why, "SendGrid event post refused");
            return (StatusCode::BAD_REQUEST, format!("refused: {why}\n"));
        }
    };
    match webhooks.store.record_events(&events).await {
        Ok(done) => {
            webhooks.metrics.webhook_events("sendgrid", done.recorded);
            for _ in 0..done.settled {
                webhooks.metrics.settled(Channel::Email);
            }
            if done.settled > 0 {
                tracing::info!(
                    settled = done.settled,
                    "in-doubt emails settled: SendGrid reported events for them, so they are sent"
                );
            }
            if done.suppressed > 0 {
                tracing::info!(
                    suppressed = done.suppressed,
                    "addresses suppressed: bounced, complained or unsubscribed"
                );
            }
            let recorded = done.recorded;
            (
                StatusCode::OK,
                format!("recorded {recorded} new event(s)\n"),
            )
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "SendGrid events not recorded; SendGrid posts them again");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not recorded: try again later\n".into(),
            )
        }
    }
}

/// SendGrid's events as recorded: a JSON array of objects, each with its `event` and
/// `sg_event_id` (an event without them cannot be recorded once, and is skipped).
fn sendgrid_events(body: &[u8]) -> Result<Vec<DeliveryEvent>, String> {
    let events: Vec<Value> = serde_json::from_slice(body)
        .map_err(|error| format!("not a JSON array of events: {error}"))?;
    Ok(events
        .iter()
        .filter_map(|event| {
            let text = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
            let (Some(kind), Some(event_id)) = (text("event"), text("sg_event_id")) else {
                tracing::warn!(%event, "a SendGrid event without `event` or `sg_event_id`: skipped");
                return None;
            };
            let suppress = suppresses(&kind, text("type").as_deref(), text("reason").as_deref());
            Some(DeliveryEvent {
                provider: "sendgrid",
                event_id,
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
        let events = sendgrid_events(body).unwrap();
        assert_eq!(events.len(), 2, "the one without sg_event_id is skipped");
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
        assert!(sendgrid_events(b"{\"event\":\"open\"}").is_err());
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
