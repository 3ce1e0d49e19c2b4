//! A fake SendGrid v3 Mail Send and Twilio Messages server for herald's tests, demo
//! stack and benchmarks.
//!
//! It speaks both wire protocols (auth, validation errors, success bodies and headers) for
//! several provider [`Account`]s (SendGrid API keys, Twilio accounts: the [`Config`]'s
//! default ones and more, each of which can be revoked), records every provider request as a
//! [`Received`] with the account it was made as, and injects [`Fault`]s (rate limits, 5xx,
//! slow answers, dropped connections, 401), on any account or on one. It posts SendGrid's
//! signed Event Webhook for each email it accepts to the sending account's `events_url` (else
//! to `sendgrid_events_url`, if set), signed with that account's own key (its public half:
//! `event_verification_key` in `GET /_fake/accounts`,
//! [`Accounts::sendgrid_verification_key`]; the default account's is
//! [`sendgrid_verification_key`]); for each SMS sent with a `StatusCallback`, Twilio's status
//! callbacks, signed with the sending account's auth token. What they report is `delivered` unless an [`Outcome`]
//! for the recipient says otherwise (a bounce, a drop, a spam report, an unsubscribe, an
//! undelivered SMS with its error code, and when). The control API lives under `/_fake/`:
//! `GET /_fake/health`,
//! `GET|DELETE /_fake/messages[?channel=email|sms&accepted=true|false&account=KEY_OR_SID]`,
//! `GET|POST /_fake/accounts`, `DELETE /_fake/accounts/{key_or_sid}`,
//! `GET|POST|DELETE /_fake/faults` and `GET|POST|DELETE /_fake/outcomes`.
//!
//! Start it with [`serve`] on a listener of your own, or with [`FakeProvider::start`] on a
//! free loopback port.

mod accounts;
mod control;
mod events;
mod faults;
mod outcomes;
mod provider;
mod sendgrid;
mod server;
mod store;
mod twilio;

pub use accounts::{Account, AccountState, Accounts, parse_accounts};
pub use events::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, TWILIO_SIGNATURE_HEADER, sendgrid_verification_key,
    sign_sendgrid_events, sign_twilio_request,
};
pub use faults::{Fault, FaultKind, FaultQueue, parse_faults};
pub use outcomes::{Outcome, Outcomes, Report, parse_outcomes};
pub use server::{Config, FakeProvider, serve};
pub use store::{Channel, Received, Store};
pub use twilio::{OPTED_OUT_NUMBER, is_account_sid, is_messaging_service_sid};

/// What `--account`, `--fault`, `--outcome` and the control API take: one JSON object, or an
/// array of them; `what` names them in errors.
fn parse_one_or_many<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &str,
) -> Result<Vec<T>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))?;
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<T>, _>>(),
        other => serde_json::from_value(other).map(|one| vec![one]),
    }
    .map_err(|e| format!("invalid {what}: {e}"))
}
