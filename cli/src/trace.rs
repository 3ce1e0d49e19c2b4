//! `heraldctl trace`: "was it sent, and when?" — for each message found, the chain from the
//! source row to the provider: the row and its current version, the change event's place on
//! the topic, the queue row, every provider call with its answer, the provider's message id,
//! and what operators did.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use herald_core::config::{DetectionMode, Settings};
use herald_core::ops::{ActionRecord, AttemptRecord, EventRecord, MessageFilter, MessageRecord};
use herald_core::store::{self, NotifyDb, SourceDb};
use herald_core::telemetry::error_chain;
use serde::Serialize;

use crate::output::{Report, heading, or_dash, time};

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Target {
    MessageId { message_id: i64 },
    Recipient { recipient: String },
    SourceKey { tenant: String, source_key: String },
}

impl Target {
    /// One argument: a message id (digits) or a recipient; two: a tenant and a source key.
    pub fn parse(args: &[String]) -> Result<Target, String> {
        match args {
            [one] => Ok(match one.parse() {
                Ok(message_id) => Target::MessageId { message_id },
                Err(_) => Target::Recipient {
                    recipient: one.clone(),
                },
            }),
            [tenant, key] => Ok(Target::SourceKey {
                tenant: tenant.clone(),
                source_key: key.clone(),
            }),
            _ => Err("trace takes a message id, a recipient, or a tenant and a source key".into()),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::MessageId { message_id } => write!(f, "message id {message_id}"),
            Target::Recipient { recipient } => write!(f, "recipient {recipient}"),
            Target::SourceKey { tenant, source_key } => {
                write!(f, "tenant {tenant}, source key {source_key}")
            }
        }
    }
}

#[derive(Serialize)]
pub struct TraceReport {
    target: Target,
    /// How many messages match (more than traced when `--limit` cut the list).
    total: u64,
    messages: Vec<Chain>,
}

/// One message's chain, from the source row to the provider.
#[derive(Serialize)]
struct Chain {
    source: SourceRow,
    event: Event,
    message: MessageRecord,
    attempts: Vec<AttemptRecord>,
    provider: Provider,
    operator_actions: Vec<ActionRecord>,
}

/// The source row the message came from, and how it stands now.
#[derive(Serialize)]
struct SourceRow {
    /// `schema.table`, `key column`, `change column`, as the schedule names them.
    table: Option<String>,
    key_column: Option<String>,
    change_column: Option<String>,
    key: String,
    /// The change version the message is for.
    version: String,
    /// The row's change value on the replica now.
    current: Option<String>,
    state: SourceState,
    /// Why the state is `unknown`.
    error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum SourceState {
    /// The row is still at the message's version.
    Current,
    /// The row changed again since.
    ChangedSince,
    /// The replica has not applied the change yet.
    ReplicaBehind,
    /// The row is not on the replica (deleted, or not replicated yet).
    Absent,
    /// The source could not be asked (see `error`).
    Unknown,
}

#[derive(Serialize)]
struct Event {
    topic: String,
    partition: Option<i32>,
    offset: Option<i64>,
    detected_at: Option<DateTime<Utc>>,
    /// `sweep` or `audit` when the change was found late.
    late_found_by: Option<String>,
    late_found_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct Provider {
    message_id: Option<String>,
    /// What the provider reported after taking it (webhooks), in order.
    events: Vec<EventRecord>,
}

pub async fn trace(
    settings: &Settings,
    notify: &dyn NotifyDb,
    target: Target,
    limit: u32,
) -> anyhow::Result<TraceReport> {
    let (message_ids, total) = match &target {
        Target::MessageId { message_id } => (vec![*message_id], 1),
        Target::Recipient { recipient } => {
            let found = notify
                .find_messages(MessageFilter::Recipient(recipient), limit)
                .await?;
            (found.message_ids, found.total)
        }
        Target::SourceKey { tenant, source_key } => {
            let filter = MessageFilter::SourceKey {
                tenant,
                key: source_key,
            };
            let found = notify.find_messages(filter, limit).await?;
            (found.message_ids, found.total)
        }
    };
    let messages = notify.message_records(&message_ids).await?;
    let total = if messages.is_empty() { 0 } else { total };
    let mut attempts = group(notify.attempt_records(&message_ids).await?, |a| {
        a.message_id
    });
    let mut events = group(notify.event_records(&message_ids).await?, |e| e.message_id);
    let mut actions = group(notify.message_actions(&message_ids).await?, |a| {
        a.message_id.unwrap_or_default()
    });
    let mut sources = source_rows(settings, notify, &messages).await;
    let messages = messages
        .into_iter()
        .zip(sources.drain(..))
        .map(|(message, source)| {
            let attempts = attempts.remove(&message.message_id).unwrap_or_default();
            let events = events.remove(&message.message_id).unwrap_or_default();
            let provider_id = message.provider_message_id.clone().or_else(|| {
                attempts
                    .iter()
                    .rev()
                    .find_map(|a| a.provider_message_id.clone())
            });
            Chain {
                source,
                event: Event {
                    topic: settings.kafka.topic.clone(),
                    partition: message.event_partition,
                    offset: message.event_offset,
                    detected_at: message.detected_at,
                    late_found_by: message.late_found_by.clone(),
                    late_found_at: message.late_found_at,
                },
                operator_actions: actions.remove(&message.message_id).unwrap_or_default(),
                message,
                attempts,
                provider: Provider {
                    message_id: provider_id,
                    events,
                },
            }
        })
        .collect();
    Ok(TraceReport {
        target,
        total,
        messages,
    })
}

fn group<T>(items: Vec<T>, key: impl Fn(&T) -> i64) -> BTreeMap<i64, Vec<T>> {
    let mut groups: BTreeMap<i64, Vec<T>> = BTreeMap::new();
    for item in items {
        groups.entry(key(&item)).or_default().push(item);
    }
    groups
}

/// Each message's source row, asked of the replica with one version check per schedule. A
/// source that cannot be asked leaves the rows `unknown`, with why; the rest of the chain
/// comes from the notification database.
async fn source_rows(
    settings: &Settings,
    notify: &dyn NotifyDb,
    messages: &[MessageRecord],
) -> Vec<SourceRow> {
    let mut rows: Vec<SourceRow> = messages
        .iter()
        .map(|m| SourceRow {
            table: None,
            key_column: None,
            change_column: None,
            key: m.source_key.clone(),
            version: m.change_version.clone(),
            current: None,
            state: SourceState::Unknown,
            error: None,
        })
        .collect();
    if messages.is_empty() {
        return rows;
    }
    let source = match store::connect_source(&settings.source, DetectionMode::Poll).await {
        Ok(source) => source,
        Err(error) => {
            let why = format!("the source replica is unavailable: {}", error_chain(&error));
            for row in &mut rows {
                row.error = Some(why.clone());
            }
            return rows;
        }
    };
    let by_schedule = group((0..messages.len()).collect(), |i| messages[*i].schedule_id);
    for (schedule_id, indexes) in by_schedule {
        let checked = check_versions(notify, source.as_ref(), schedule_id, &mut rows, &indexes)
            .await
            .map_err(|error| error_chain(error.as_ref()));
        if let Err(why) = checked {
            for i in indexes {
                rows[i].error = Some(why.clone());
            }
        }
    }
    rows
}

/// Fills in the rows at `indexes` (all of schedule `schedule_id`) from one version check.
async fn check_versions(
    notify: &dyn NotifyDb,
    source: &dyn SourceDb,
    schedule_id: i64,
    rows: &mut [SourceRow],
    indexes: &[usize],
) -> anyhow::Result<()> {
    let schedule = notify
        .schedule(schedule_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("schedule {schedule_id} no longer exists"))?;
    let table = &schedule.source;
    for &i in indexes {
        rows[i].table = Some(format!("{}.{}", table.schema, table.table));
        rows[i].key_column = Some(table.key_column.clone());
        rows[i].change_column = Some(table.change_column.clone());
    }
    let queries = source
        .resolve_table(table)
        .await?
        .map_err(|invalid| anyhow::anyhow!("the schedule's table cannot be read: {invalid}"))?;
    let events: Vec<(&str, &str)> = indexes
        .iter()
        .map(|&i| (rows[i].key.as_str(), rows[i].version.as_str()))
        .collect();
    let checks = source.compare_versions(&queries, &events).await?;
    for (&i, check) in indexes.iter().zip(checks) {
        let row = &mut rows[i];
        row.state = match &check {
            None => SourceState::Absent,
            Some(check) => match check.ordering {
                Ordering::Less => SourceState::ReplicaBehind,
                Ordering::Equal => SourceState::Current,
                Ordering::Greater => SourceState::ChangedSince,
            },
        };
        row.current = check.and_then(|check| check.current);
    }
    Ok(())
}

impl Report for TraceReport {
    fn text(&self) -> String {
        let what = format!("message(s) for {}", self.target);
        let mut text = heading(self.total, self.messages.len(), &what, "newest");
        for chain in &self.messages {
            text.push('\n');
            chain.write(&mut text);
        }
        text
    }

    /// Nothing found.
    fn bad_news(&self) -> bool {
        self.messages.is_empty()
    }
}

impl Chain {
    fn write(&self, text: &mut String) {
        let m = &self.message;
        let _ = writeln!(
            text,
            "message {}: {}/{}, {}{} to {}: {}",
            m.message_id,
            m.tenant,
            or_dash(m.schedule.as_deref()),
            m.channel,
            // The channel's default account goes without saying.
            if m.account == m.channel.as_str() {
                String::new()
            } else {
                format!(" (account {})", m.account)
            },
            or_dash(m.recipient.as_deref()),
            m.status
        );
        let s = &self.source;
        let state = match s.state {
            SourceState::Current => "the row is still at this version".to_owned(),
            SourceState::ChangedSince => {
                format!(
                    "the row changed since (now {})",
                    or_dash(s.current.as_deref())
                )
            }
            SourceState::ReplicaBehind => "the replica has not applied this change yet".into(),
            SourceState::Absent => "the row is not on the replica".into(),
            SourceState::Unknown => format!("unknown: {}", or_dash(s.error.as_deref())),
        };
        let _ = writeln!(
            text,
            "  source    {} {} = {}, {} {}: {state}",
            or_dash(s.table.as_deref()),
            or_dash(s.key_column.as_deref()),
            s.key,
            or_dash(s.change_column.as_deref()),
            s.version
        );
        let e = &self.event;
        let _ = write!(
            text,
            "  event     topic {}, partition {}, offset {}, detected {}",
            e.topic,
            or_dash(e.partition),
            or_dash(e.offset),
            or_dash(e.detected_at.map(time))
        );
        if let (Some(by), Some(at)) = (&e.late_found_by, e.late_found_at) {
            let _ = write!(text, ", found late by the {by} at {}", time(at));
        }
        text.push('\n');
        let _ = writeln!(
            text,
            "  queue     created {}, status {}{}, {} send attempt(s){}",
            time(m.created_at),
            m.status,
            m.sent_at
                .map(|at| format!(" at {}", time(at)))
                .unwrap_or_default(),
            m.send_attempts,
            m.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
        for a in &self.attempts {
            let _ = writeln!(
                text,
                "  attempt {} {} by {}: {}{}{}{}",
                a.attempt,
                time(a.started_at),
                a.sender,
                a.outcome.as_deref().unwrap_or("in flight"),
                a.http_status
                    .map(|code| format!(", HTTP {code}"))
                    .unwrap_or_default(),
                a.provider_message_id
                    .as_deref()
                    .map(|id| format!(", provider id {id}"))
                    .unwrap_or_default(),
                a.error
                    .as_deref()
                    .map(|e| format!(", {e}"))
                    .unwrap_or_default()
            );
        }
        let events = &self.provider.events;
        let _ = writeln!(
            text,
            "  provider  message id {}; {}",
            or_dash(self.provider.message_id.as_deref()),
            if events.is_empty() {
                "no events reported"
            } else {
                "events:"
            }
        );
        for e in events {
            let _ = writeln!(
                text,
                "  event     {} {} {}{}",
                e.occurred_at.map_or_else(|| "-".to_owned(), time),
                e.provider,
                e.event,
                e.reason
                    .as_deref()
                    .map(|reason| format!(": {reason}"))
                    .unwrap_or_default()
            );
        }
        for a in &self.operator_actions {
            let _ = writeln!(
                text,
                "  operator  {} {} by {}: {} -> {}{}",
                time(a.acted_at),
                a.action,
                a.actor,
                or_dash(a.from_status),
                or_dash(a.to_status),
                a.reason
                    .as_deref()
                    .map(|r| format!(", because: {r}"))
                    .unwrap_or_default()
            );
        }
    }
}
