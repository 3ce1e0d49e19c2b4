//! `heraldctl in-doubt list`, `in-doubt resolve` and `requeue`: the messages that wait for a
//! person, and what an operator decides about them (recorded with who and why); `heraldctl
//! failures`: the latest messages that failed or wait for a person, with their reasons.

use std::fmt::Write;
use std::time::Duration;

use herald_core::ops::{ActedOn, Action, MessageFilter, MessageRecord, Operator};
use herald_core::store::NotifyDb;
use serde::Serialize;

use crate::output::{Report, age, heading, or_dash, table, time};

#[derive(Serialize)]
pub struct InDoubtReport {
    /// How many messages are in doubt (more than listed when `--limit` cut the list).
    total: u64,
    messages: Vec<MessageRecord>,
}

impl Report for InDoubtReport {
    fn text(&self) -> String {
        let now = chrono::Utc::now();
        let mut text = heading(
            self.total,
            self.messages.len(),
            "message(s) in doubt",
            "longest in doubt",
        );
        text.push_str(&message_table(
            &self.messages,
            ["ATTEMPTS", "IN DOUBT SINCE"],
            |m| {
                [
                    m.send_attempts.to_string(),
                    format!("{} ({} ago)", time(m.updated_at), age(now - m.updated_at)),
                ]
            },
        ));
        text
    }

    /// Messages wait for a person.
    fn bad_news(&self) -> bool {
        self.total > 0
    }
}

pub async fn in_doubt(
    notify: &dyn NotifyDb,
    tenant: Option<&str>,
    limit: u32,
) -> anyhow::Result<InDoubtReport> {
    let (total, messages) = find(notify, MessageFilter::InDoubt { tenant }, limit).await?;
    Ok(InDoubtReport { total, messages })
}

/// A table of messages (nothing when there are none): which, to whom, two columns of the
/// list's own, and the last error.
fn message_table(
    messages: &[MessageRecord],
    headers: [&str; 2],
    cells: impl Fn(&MessageRecord) -> [String; 2],
) -> String {
    if messages.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            let [first, second] = cells(m);
            vec![
                m.message_id.to_string(),
                m.tenant.clone(),
                or_dash(m.schedule.as_deref()),
                m.channel.to_string(),
                or_dash(m.recipient.as_deref()),
                first,
                second,
                or_dash(m.last_error.as_deref()),
            ]
        })
        .collect();
    let [first, second] = headers;
    let header = [
        "ID",
        "TENANT",
        "SCHEDULE",
        "CHANNEL",
        "RECIPIENT",
        first,
        second,
        "LAST ERROR",
    ];
    table(&header, &rows)
}

/// The first `limit` messages the filter finds, and how many it finds in all.
async fn find(
    notify: &dyn NotifyDb,
    filter: MessageFilter<'_>,
    limit: u32,
) -> anyhow::Result<(u64, Vec<MessageRecord>)> {
    let found = notify.find_messages(filter, limit).await?;
    Ok((
        found.total,
        notify.message_records(&found.message_ids).await?,
    ))
}

#[derive(Serialize)]
pub struct FailuresReport {
    /// How far back the list looks, in seconds.
    within_seconds: f64,
    /// How many messages failed in that span (more than listed when `--limit` cut the list).
    total: u64,
    /// Newest first.
    messages: Vec<MessageRecord>,
}

impl Report for FailuresReport {
    fn text(&self) -> String {
        let within = age(chrono::Duration::milliseconds(
            (self.within_seconds * 1000.0) as i64,
        ));
        let mut text = heading(
            self.total,
            self.messages.len(),
            &format!("message(s) failed, render_failed or in doubt in the last {within}"),
            "newest",
        );
        text.push_str(&message_table(&self.messages, ["STATUS", "SINCE"], |m| {
            [m.status.to_string(), time(m.updated_at)]
        }));
        text
    }

    /// Messages failed or wait for a person.
    fn bad_news(&self) -> bool {
        self.total > 0
    }
}

/// The messages `failed`, `render_failed` or `in_doubt` whose status was set within
/// `within`, newest first.
pub async fn failures(
    notify: &dyn NotifyDb,
    within: Duration,
    limit: u32,
) -> anyhow::Result<FailuresReport> {
    let (total, messages) = find(notify, MessageFilter::Failures { within }, limit).await?;
    Ok(FailuresReport {
        within_seconds: within.as_secs_f64(),
        total,
        messages,
    })
}

#[derive(Serialize)]
pub struct ActionReport {
    action: Action,
    by: Operator,
    /// One entry per message named: moved, or refused with why.
    messages: Vec<ActedOnView>,
}

#[derive(Serialize)]
struct ActedOnView {
    #[serde(flatten)]
    acted_on: ActedOn,
    /// Why it was left alone.
    refusal: Option<String>,
}

impl Report for ActionReport {
    fn text(&self) -> String {
        let (from, to) = self.action.moves().expect("an action on messages");
        let mut text = String::new();
        for view in &self.messages {
            let id = view.acted_on.message_id;
            let _ = match &view.refusal {
                None => writeln!(
                    text,
                    "message {id}: {from} -> {to} ({}, by {})",
                    self.action, self.by.name
                ),
                Some(refusal) => writeln!(text, "message {id}: refused: {refusal}"),
            };
        }
        text
    }

    /// A message named was not in the action's status.
    fn bad_news(&self) -> bool {
        self.messages.iter().any(|view| view.refusal.is_some())
    }
}

/// Applies an action on messages ([`Action::moves`]) to those in its status.
pub async fn act(
    notify: &dyn NotifyDb,
    message_ids: &[i64],
    action: Action,
    by: Operator,
) -> anyhow::Result<ActionReport> {
    let (from, _) = action.moves().expect("an action on messages");
    let messages = notify
        .act_on_messages(message_ids, action, &by)
        .await?
        .into_iter()
        .map(|acted_on| {
            let refusal = match acted_on.status {
                _ if acted_on.acted => None,
                None => Some("there is no such message".to_owned()),
                Some(status) => Some(format!("it is {status}, not {from}: left as it is")),
            };
            ActedOnView { acted_on, refusal }
        })
        .collect();
    Ok(ActionReport {
        action,
        by,
        messages,
    })
}
