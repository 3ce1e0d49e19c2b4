//! The pipeline's nouns, shared by every service and every storage engine.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            other => Err(format!("unknown channel `{other}`")),
        }
    }
}

/// A notification schedule, as an admin defined it in the notification database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub id: i64,
    pub tenant: String,
    pub name: String,
    pub channel: Channel,
    pub source: SourceTable,
    pub merge: MergeFunction,
    pub template_name: String,
    pub active: bool,
    /// The detector's last verdict on this schedule, if it was invalid.
    pub error: Option<String>,
}

/// The watched table, by the names the admin gave (not yet checked against the catalog).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceTable {
    pub schema: String,
    pub table: String,
    pub key_column: String,
    pub change_column: String,
}

impl SourceTable {
    /// The four names as one text, to tell whether a detection mark belongs to them.
    pub fn definition(&self) -> String {
        serde_json::to_string(&[
            &self.schema,
            &self.table,
            &self.key_column,
            &self.change_column,
        ])
        .expect("names always serialize")
    }
}

/// The merge function or procedure on the source, by the names the admin gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MergeFunction {
    pub schema: String,
    pub name: String,
}

/// Where detection stands for one schedule, persisted in `detector_watermark` and moved only
/// after Kafka acknowledged every event it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The hold-back line W, on the source's clock: every row whose change value is below it
    /// has been emitted (exact under the engine's stated assumption; the sweep catches what
    /// breaks it). Each pass reads again from here.
    pub hold_back: DateTime<Utc>,
    /// The frontier: the highest `(change, key)` a pass read with everything below it read
    /// too. Rows above it are new to the detector; rows between the hold-back line and it
    /// are read again only if they may have committed since (see `position`).
    pub frontier: Option<RowPosition>,
    /// Engine-specific progress, as text. PostgreSQL: `system_identifier:xmin` of the last
    /// pass's snapshot; SQL Server `cdc` mode: the change-table row read up to.
    pub position: Option<String>,
    /// When the detector started the schedule: changes from before are not its to notify
    /// (nothing is backfilled), so the sweep and audits never look below it. `None` for a
    /// schedule started before this was recorded.
    pub watching_since: Option<DateTime<Utc>>,
    /// The watched table, key and change column the mark belongs to
    /// ([`SourceTable::definition`]): a schedule whose definition changed starts afresh.
    pub definition: Option<String>,
}

impl Mark {
    /// A new schedule's mark: changes from `start` on, nothing read yet.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Mark {
            hold_back: start,
            frontier: None,
            position: None,
            watching_since: Some(start),
            definition: None,
        }
    }
}

/// Who found a change that the detector's passes missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateFinder {
    /// The detector's periodic sweep.
    Sweep,
    /// An operator's `heraldctl audit --repair`.
    Audit,
}

impl LateFinder {
    pub fn as_str(self) -> &'static str {
        match self {
            LateFinder::Sweep => "sweep",
            LateFinder::Audit => "audit",
        }
    }
}

/// A row's place in a watched table's `(change column, key)` order, in the source's own text
/// forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RowPosition {
    pub change: String,
    pub key: String,
}

/// A row whose change column moved, as read from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedRow {
    pub key: String,
    pub change: String,
    /// The change value as an instant, to compare with the hold-back line.
    pub at: DateTime<Utc>,
}

impl ChangedRow {
    pub fn position(&self) -> RowPosition {
        RowPosition {
            change: self.change.clone(),
            key: self.key.clone(),
        }
    }
}

/// What one detection pass read: one consistent view of the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// In the order read; some may have been emitted by an earlier pass.
    pub rows: Vec<ChangedRow>,
    /// The mark to persist once every row's event is acknowledged.
    pub next: Mark,
    /// False when the pass stopped at its row budget: there is more to read at once.
    pub complete: bool,
    /// How far the replica had applied the primary's commits, on the primary's clock (`None`:
    /// not known yet). The hold-back line trails it by the engine's assumption, or by as much
    /// as the oldest transaction still open holds it back.
    pub horizon: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub id: i64,
    pub locale: String,
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub body_text: String,
    pub updated_at: DateTime<Utc>,
}

/// Where a message stands; see `sql/postgres/notify/030-messages.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    RenderRetry,
    RenderFailed,
    Skipped,
    Queued,
    Sending,
    Sent,
    Failed,
    InDoubt,
    Suppressed,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 9] = [
        MessageStatus::RenderRetry,
        MessageStatus::RenderFailed,
        MessageStatus::Skipped,
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Failed,
        MessageStatus::InDoubt,
        MessageStatus::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::RenderRetry => "render_retry",
            MessageStatus::RenderFailed => "render_failed",
            MessageStatus::Skipped => "skipped",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
            MessageStatus::InDoubt => "in_doubt",
            MessageStatus::Suppressed => "suppressed",
        }
    }
}

impl FromStr for MessageStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        named(
            &MessageStatus::ALL,
            MessageStatus::as_str,
            s,
            "message status",
        )
    }
}

/// The one of `all` whose stored name is `text`; else an error naming `what` it is not.
pub(crate) fn named<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    text: &str,
    what: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|one| name(*one) == text)
        .ok_or_else(|| format!("unknown {what} `{text}`"))
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification's identity: the queue holds each at most once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageKey {
    pub tenant: String,
    pub schedule_id: i64,
    pub source_key: String,
    pub change_version: String,
}

/// What rendering produced: a message to send, or a recorded reason why there is none yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendering {
    pub status: MessageStatus,
    pub recipient: Option<String>,
    pub recipient_name: Option<String>,
    pub locale: Option<String>,
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub body_text: Option<String>,
    pub error: Option<String>,
    /// A `render_retry` that is no failed attempt, retried at a steady pace however long it
    /// takes: the replica has not applied the change yet, or the schedule's merge function
    /// is slow and its changes wait for the retry loop.
    pub waiting: bool,
}

impl Rendering {
    /// A rendering with no content: `skipped`, `render_retry` or `render_failed`, with why.
    pub fn without_content(status: MessageStatus, error: impl Into<String>) -> Self {
        Rendering {
            status,
            recipient: None,
            recipient_name: None,
            locale: None,
            subject: None,
            body_html: None,
            body_text: None,
            error: Some(error.into()),
            waiting: false,
        }
    }
}

/// A row for the queue, written by the renderer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    #[serde(flatten)]
    pub key: MessageKey,
    pub channel: Channel,
    #[serde(flatten)]
    pub rendering: Rendering,
    /// Seconds from now until the message is due: the backoff of a `render_retry`, else 0.
    pub retry_in_secs: f64,
    pub event_partition: Option<i32>,
    pub event_offset: Option<i64>,
    /// When the detector emitted the change event.
    pub detected_at: DateTime<Utc>,
}

/// A `render_retry` message claimed by a renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderRetry {
    pub message_id: i64,
    pub key: MessageKey,
    pub channel: Channel,
    pub render_attempts: i32,
    /// When the change was detected (or, for messages queued before that was recorded, when
    /// the message was).
    pub detected_at: DateTime<Utc>,
}

/// A queued message claimed by a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub message_id: i64,
    pub tenant: String,
    pub schedule_id: i64,
    pub channel: Channel,
    /// The provider account it goes through: a `provider_account`, or the channel's default,
    /// named as the channel (`email`, `sms`).
    pub account: String,
    pub recipient: String,
    pub recipient_name: Option<String>,
    pub subject: Option<String>,
    pub body_html: Option<String>,
    pub body_text: String,
    /// Attempts made so far that count against `max_attempts`.
    pub counted_attempts: i32,
    /// Its schedule offers one-click unsubscribe (RFC 8058): an email carries the link.
    pub one_click: bool,
}

/// A provider account an admin defined (`provider_account`), besides the configured defaults.
/// Secrets are named, never held: `*_env` are environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    pub name: String,
    pub channel: Channel,
    pub api_key_env: Option<String>,
    pub from_email: Option<String>,
    pub from_name: Option<String>,
    /// SendGrid's Signed Event Webhook verification key (public).
    pub event_verification_key: Option<String>,
    pub account_sid: Option<String>,
    pub auth_token_env: Option<String>,
    pub from_number: Option<String>,
    pub messaging_service_sid: Option<String>,
}

/// Whom a one-click unsubscribe link is about, and how far it unsubscribes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsubscription {
    pub tenant: String,
    /// The message's schedule, by name (its id if the schedule is gone).
    pub schedule: String,
    pub address: String,
    /// From all the tenant's emails (the schedule says `tenant`), not only the schedule's.
    pub tenant_wide: bool,
    /// The address is suppressed that far.
    pub suppressed: bool,
}

/// The open part of the queue for one tenant, schedule and status (`render_retry`,
/// `queued`, `sending`, `in_doubt`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueDepth {
    pub tenant: String,
    /// The schedule's name (its id if the schedule is gone).
    pub schedule: String,
    pub status: String,
    pub messages: i64,
    /// How long ago the oldest of them was created.
    pub oldest_seconds: f64,
}

/// What a provider said about a message after taking it (a webhook event), as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryEvent {
    /// `sendgrid` or `twilio`.
    pub provider: &'static str,
    /// The provider account whose signature it carries (`email`, `sms`: the defaults): it is
    /// about that account's messages only.
    pub account: String,
    /// The provider's id of the event (after `<account>/` for a defined account's): it is
    /// recorded once.
    pub event_id: String,
    /// Our message, when the event names one.
    pub message_id: Option<i64>,
    pub provider_message_id: Option<String>,
    /// `processed`, `delivered`, `bounce`, …, as the provider names it.
    pub event: String,
    pub reason: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    /// The event as the provider sent it.
    pub payload: String,
    /// The address the event is about.
    pub address: Option<String>,
    /// The address must not be contacted again on this channel (a hard bounce, a
    /// complaint, an unsubscribe): it goes on the tenant's suppression list.
    pub suppress: bool,
}

/// What recording a batch of provider events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventsRecorded {
    /// Events not seen before.
    pub recorded: u64,
    /// Addresses they put on a suppression list.
    pub suppressed: u64,
}

/// An `in_doubt` message settled by its provider's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub message_id: i64,
    pub channel: Channel,
    /// `sent`, or `failed` when the provider reported it could not deliver it.
    pub status: MessageStatus,
}

/// An `in_doubt` message to look for at its provider: its last call and what it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct InDoubtMessage {
    pub message_id: i64,
    pub attempt: i32,
    /// Its provider account (`email`, `sms`: the defaults).
    pub account: String,
    pub recipient: String,
    pub body_text: String,
    /// When its last call began, and when it was declared in doubt.
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A message a sender took from the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    /// Marked `sending`, its call due now as attempt number `attempt`.
    Sending {
        message: OutgoingMessage,
        attempt: i32,
    },
    /// Marked `suppressed`: its recipient is on the suppression list.
    Suppressed { message_id: i64, channel: Channel },
}

/// How one provider call ended, as recorded on the message and its attempt row.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Sent {
        http_status: u16,
        provider_message_id: Option<String>,
    },
    /// Try again after `retry_in` (or give up as `failed` if attempts are spent).
    Retry {
        http_status: Option<u16>,
        retry_in: std::time::Duration,
        error: String,
    },
    Failed {
        http_status: Option<u16>,
        error: String,
    },
    InDoubt {
        error: String,
    },
    /// Not sent because the provider refused our credentials (or they are not set): try
    /// again after `retry_in`, not counted against `max_attempts`.
    Paused {
        http_status: Option<u16>,
        retry_in: std::time::Duration,
        error: String,
    },
}
