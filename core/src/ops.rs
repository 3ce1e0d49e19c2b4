//! What operators read and do (`heraldctl`): schedules with where detection stands, messages
//! with their attempts, and the actions an operator takes on them, each recorded with who
//! and why (`operator_action`). Serialized as `heraldctl --json` prints them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{Channel, MessageStatus, RowPosition, named};

/// An operator's action, as `operator_action.action` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// An in-doubt message the provider did take: `sent`.
    ResolveSent,
    /// An in-doubt message the provider did not take: `queued`, sent once more.
    ResolveResend,
    /// An in-doubt message given up: `failed`.
    ResolveFailed,
    /// A failed message put back in the queue, with a fresh attempt budget.
    Requeue,
    /// A schedule made inactive: the detector stops polling it.
    Pause,
    /// A schedule made active again.
    Resume,
}

impl Action {
    const ALL: [Action; 6] = [
        Action::ResolveSent,
        Action::ResolveResend,
        Action::ResolveFailed,
        Action::Requeue,
        Action::Pause,
        Action::Resume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ResolveSent => "resolve_sent",
            Action::ResolveResend => "resolve_resend",
            Action::ResolveFailed => "resolve_failed",
            Action::Requeue => "requeue",
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }

    /// For an action on messages: the status it applies to, and the one it moves them to.
    pub fn moves(self) -> Option<(MessageStatus, MessageStatus)> {
        use MessageStatus::{Failed, InDoubt, Queued, Sent};
        match self {
            Action::ResolveSent => Some((InDoubt, Sent)),
            Action::ResolveResend => Some((InDoubt, Queued)),
            Action::ResolveFailed => Some((InDoubt, Failed)),
            Action::Requeue => Some((Failed, Queued)),
            Action::Pause | Action::Resume => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        named(&Action::ALL, Action::as_str, s, "operator action")
    }
}

/// Who acts, and why (required for actions on messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub name: String,
    pub reason: Option<String>,
}

/// One recorded operator action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionRecord {
    pub action: Action,
    pub message_id: Option<i64>,
    pub schedule_id: Option<i64>,
    pub from_status: Option<MessageStatus>,
    pub to_status: Option<MessageStatus>,
    pub actor: String,
    pub reason: Option<String>,
    pub acted_at: DateTime<Utc>,
}

/// A schedule, where its detection stands and the last operator action on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleState {
    pub schedule_id: i64,
    pub tenant: String,
    pub name: String,
    pub channel: Channel,
    pub active: bool,
    /// The detector's verdict, when the schedule does not match the source catalog.
    pub error: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
    /// The hold-back line: every change below it was emitted (`None`: not started).
    pub hold_back: Option<DateTime<Utc>>,
    /// The highest `(change, key)` the detector read.
    pub frontier: Option<RowPosition>,
    pub watching_since: Option<DateTime<Utc>>,
    /// The detector instance holding the schedule's lease, and until when.
    pub detector: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_action: Option<ActionRecord>,
    /// The notification database's clock when this was read: ages and leases are measured
    /// against it.
    pub read_at: DateTime<Utc>,
}

/// What a schedule is doing, derived from its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Inactive: not polled.
    Paused,
    /// Active, but it does not match the source catalog: not polled until fixed.
    Error,
    /// Active, not started by a detector yet.
    Starting,
    /// Active, and a detector holds its lease.
    Running,
    /// Active and started, but no live detector holds its lease.
    Unowned,
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Paused => "paused",
            Activity::Error => "error",
            Activity::Starting => "starting",
            Activity::Running => "running",
            Activity::Unowned => "unowned",
        }
    }
}

impl ScheduleState {
    pub fn activity(&self) -> Activity {
        let leased = self.detector.is_some()
            && self
                .lease_expires_at
                .is_some_and(|until| until > self.read_at);
        match () {
            _ if !self.active => Activity::Paused,
            _ if self.error.is_some() => Activity::Error,
            _ if self.hold_back.is_none() => Activity::Starting,
            _ if leased => Activity::Running,
            _ => Activity::Unowned,
        }
    }

    /// How far detection is held back: the database's clock minus the hold-back line.
    pub fn hold_back_age(&self) -> Option<chrono::Duration> {
        self.hold_back.map(|line| self.read_at - line)
    }
}

/// Which messages to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFilter<'a> {
    /// Messages to this address or number, newest first.
    Recipient(&'a str),
    /// Messages of this tenant's source row (any schedule), newest first.
    SourceKey { tenant: &'a str, key: &'a str },
    /// `in_doubt` messages (of one tenant, if given), longest in doubt first.
    InDoubt { tenant: Option<&'a str> },
    /// Messages `failed`, `render_failed` or `in_doubt` whose status was set within this
    /// span (SQL Server: at most about 24 days), newest first.
    Failures { within: std::time::Duration },
}

/// Messages found: the first ones, in the filter's order, and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub message_ids: Vec<i64>,
    pub total: u64,
}

/// A message as support sees it: its identity, where it came from and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRecord {
    pub message_id: i64,
    pub tenant: String,
    pub schedule_id: i64,
    /// `None` when the schedule was deleted since.
    pub schedule: Option<String>,
    pub source_key: String,
    pub change_version: String,
    pub channel: Channel,
    /// The provider account it goes through (`email`, `sms`: the defaults).
    pub account: String,
    pub status: MessageStatus,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub render_attempts: i32,
    pub send_attempts: i32,
    pub provider_message_id: Option<String>,
    pub last_error: Option<String>,
    /// The change event's place on the topic.
    pub event_partition: Option<i32>,
    pub event_offset: Option<i64>,
    pub detected_at: Option<DateTime<Utc>>,
    /// Set when the sweep or an audit found the change late: `sweep` or `audit`.
    pub late_found_by: Option<String>,
    pub late_found_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One provider call (`delivery_attempt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub message_id: i64,
    pub attempt: i32,
    pub sender: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `sent`, `retry`, `failed`, `in_doubt`; `None` while the call is in flight.
    pub outcome: Option<String>,
    pub http_status: Option<i32>,
    pub provider_message_id: Option<String>,
    pub error: Option<String>,
}

/// What a provider reported about a message after taking it (a webhook event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub message_id: i64,
    pub provider: String,
    /// `processed`, `delivered`, `bounce`, … as the provider names it.
    pub event: String,
    pub reason: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// An address that must not be contacted on a channel for a tenant, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuppressionEntry {
    pub tenant: String,
    pub channel: Channel,
    pub address: String,
    pub reason: String,
    /// What put it there, when a provider's event or answer did.
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Only this schedule's messages are held back (a one-click unsubscribe from it); `None`:
    /// all the tenant's on the channel.
    pub schedule: Option<String>,
}

/// What an action on messages did to one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActedOn {
    pub message_id: i64,
    /// It was in the action's status and moved; else it was refused.
    pub acted: bool,
    /// Its status now (`None`: there is no such message).
    pub status: Option<MessageStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_back_as_written() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse(), Ok(action));
        }
        assert!("delete".parse::<Action>().is_err());
        for status in MessageStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
    }

    #[test]
    fn activity_follows_the_schedule_and_its_lease() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let running = ScheduleState {
            schedule_id: 1,
            tenant: "acme".into(),
            name: "welcome-email".into(),
            channel: Channel::Email,
            active: true,
            error: None,
            checked_at: Some(now),
            hold_back: Some(now - chrono::Duration::seconds(3)),
            frontier: None,
            watching_since: Some(now),
            detector: Some("detector-1".into()),
            lease_expires_at: Some(now + chrono::Duration::seconds(10)),
            last_action: None,
            read_at: now,
        };
        assert_eq!(running.activity(), Activity::Running);
        assert_eq!(running.hold_back_age(), Some(chrono::Duration::seconds(3)));
        let expired = ScheduleState {
            lease_expires_at: Some(now - chrono::Duration::seconds(1)),
            ..running.clone()
        };
        assert_eq!(expired.activity(), Activity::Unowned);
        let new = ScheduleState {
            hold_back: None,
            ..running.clone()
        };
        assert_eq!(new.activity(), Activity::Starting);
        assert_eq!(new.hold_back_age(), None);
        let broken = ScheduleState {
            error: Some("no table".into()),
            ..running.clone()
        };
        assert_eq!(broken.activity(), Activity::Error);
        let paused = ScheduleState {
            active: false,
            ..broken
        };
        assert_eq!(paused.activity(), Activity::Paused);
    }
}
