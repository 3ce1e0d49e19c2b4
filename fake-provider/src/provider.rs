//! The request flow shared by both providers: auth, faults, validation, recording.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::events::{AcceptedEmail, AcceptedSms, post_sendgrid_events, post_twilio_statuses};
use crate::faults::FaultKind;
use crate::server::{App, ConnKill};
use crate::store::{Channel, Received};

/// The message fields a record shows, pulled from a request body on a best-effort basis.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub to: Vec<String>,
    pub from: Option<String>,
    /// Twilio's `MessagingServiceSid`.
    pub messaging_service_sid: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub custom_args: BTreeMap<String, String>,
    /// Email headers asked for (`headers`, merged as `custom_args`).
    pub headers: BTreeMap<String, String>,
}

/// A non-success JSON answer and the error message recorded for it.
pub(crate) struct Rejection {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    pub message: String,
}

impl Rejection {
    pub fn new(status: StatusCode, body: Value, message: String) -> Self {
        Self {
            status,
            body,
            headers: Vec::new(),
            message,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// One fake provider's wire protocol.
pub(crate) trait Provider: 'static {
    const CHANNEL: Channel;
    /// Decodes the body; `None` when it is not well-formed.
    fn parse(body: &[u8]) -> Option<Value>;
    fn summarize(raw: &Value) -> Summary;
    fn validate(raw: Option<&Value>) -> Result<(), Rejection>;
    /// The answer to credentials the provider does not take.
    fn unauthorized() -> Rejection;
    fn rate_limited(reset_after_secs: u64) -> Rejection;
    fn server_error(status: StatusCode) -> Rejection;
    /// The success answer to a request made as `account` and the provider message id it
    /// carries.
    fn accept(account: &str, raw: &Value, summary: &Summary) -> (String, Response);
}

/// Handles one provider request made as `account` (the SendGrid API key or Twilio Account SID
/// it names, recorded as it is). `access` is `Err` with the answer when the request is refused
/// before its body counts (unknown or revoked account, wrong credentials); no fault applies
/// to it then. The work runs in its own task so the record is kept even if the client goes
/// away mid-request (e.g. times out on a `slow` fault).
pub(crate) async fn handle<P: Provider>(
    app: Arc<App>,
    kill: ConnKill,
    account: Option<String>,
    access: Result<(), Rejection>,
    body: Bytes,
) -> Response {
    let task = tokio::spawn(process::<P>(app, account, access, body));
    match task.await {
        Ok(Some(response)) => response,
        Ok(None) => kill.drop_connection().await,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Returns the response to send, or `None` to drop the connection.
async fn process<P: Provider>(
    app: Arc<App>,
    account: Option<String>,
    access: Result<(), Rejection>,
    body: Bytes,
) -> Option<Response> {
    let (seq, received_at) = app.store.arrive();
    if !app.config.latency.is_zero() {
        tokio::time::sleep(app.config.latency).await;
    }
    let parsed = P::parse(&body);
    let summary = parsed.as_ref().map(P::summarize).unwrap_or_default();
    let account_id = account.as_deref().unwrap_or_default();
    let fault = access
        .is_ok()
        .then(|| app.faults.take(P::CHANNEL, account_id))
        .flatten();
    if let Some(fault) = &fault {
        tracing::info!(seq, channel = ?P::CHANNEL, ?fault, "applying fault");
    }
    let verdict = match fault {
        _ if access.is_err() => access,
        Some(FaultKind::Unauthorized) => Err(P::unauthorized()),
        Some(FaultKind::RateLimit { reset_after_secs }) => Err(P::rate_limited(reset_after_secs)),
        Some(FaultKind::ServerError { status }) => Err(P::server_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )),
        Some(FaultKind::Slow { delay_ms }) => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            P::validate(parsed.as_ref())
        }
        Some(FaultKind::Drop) | None => P::validate(parsed.as_ref()),
    };
    let dropped = fault == Some(FaultKind::Drop);
    let raw = parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned()));

    let (response, provider_message_id, error) = match verdict {
        Ok(()) => {
            let (id, response) = P::accept(account_id, &raw, &summary);
            (response, Some(id), None)
        }
        Err(rejection) => {
            let message = rejection.message.clone();
            (rejection.into_response(), None, Some(message))
        }
    };
    let status = (!dropped).then(|| response.status().as_u16());
    tracing::info!(seq, channel = ?P::CHANNEL, ?status, dropped, error = error.as_deref(), "request handled");
    let Summary {
        to,
        from,
        messaging_service_sid,
        subject,
        text,
        html,
        custom_args,
        headers,
    } = summary;
    // To the sending account's Event Webhook, signed with its key; both are taken now, so
    // that revoking the account later does not stop them.
    let webhook = (P::CHANNEL == Channel::Email && provider_message_id.is_some())
        .then(|| app.accounts.sendgrid_event_webhook(account_id))
        .flatten()
        .and_then(|(url, key)| {
            url.or_else(|| app.config.sendgrid_events_url.clone())
                .map(|url| (url, key))
        });
    if let (Some((url, key)), Some(id)) = (webhook, &provider_message_id) {
        for recipient in &to {
            let email = AcceptedEmail {
                message_id: id.clone(),
                to: recipient.clone(),
                custom_args: custom_args.clone(),
                outcome: app.outcomes.for_recipient(Channel::Email, recipient),
            };
            tokio::spawn(post_sendgrid_events(
                app.client.clone(),
                url.clone(),
                key.clone(),
                email,
            ));
        }
    }
    // Signed with the auth token of the account that sent the message.
    if let (Channel::Sms, Some(sid), Some(callback), Some(token)) = (
        P::CHANNEL,
        &provider_message_id,
        raw.get("StatusCallback").and_then(Value::as_str),
        app.accounts.twilio_token(account_id),
    ) {
        let sms = AcceptedSms {
            sid: sid.clone(),
            account_sid: account_id.to_owned(),
            from: from.clone(),
            messaging_service_sid: messaging_service_sid.clone(),
            to: to.first().cloned(),
            callback: callback.to_owned(),
            outcome: to
                .first()
                .and_then(|to| app.outcomes.for_recipient(Channel::Sms, to)),
        };
        tokio::spawn(post_twilio_statuses(app.client.clone(), token, sms));
    }
    app.store.insert(Received {
        seq,
        received_at,
        answered_at: chrono::Utc::now(),
        channel: P::CHANNEL,
        account,
        status,
        accepted: provider_message_id.is_some(),
        dropped,
        provider_message_id,
        to,
        from,
        messaging_service_sid,
        subject,
        text,
        html,
        custom_args,
        headers,
        error,
        raw,
    });
    (!dropped).then_some(response)
}
