//! The notification database, written once: [`Notify`] holds every [`NotifyDb`] method's
//! parameters and row mapping, over a small per-engine [`Driver`] that runs a query (its
//! engine's text, from `sql/<engine>/queries/`) with [`Param`]s and returns rows read through
//! [`Record`]. What differs between engines stays in the drivers: how a duration, a list of
//! ids or of names is bound, how a statement is run, and how a column is read.
//!
//! Batches (messages, row positions, attempt outcomes) go as one JSON document on both
//! engines, built here: PostgreSQL reads it with `jsonb_to_recordset`, SQL Server with
//! OPENJSON. Counts the callers use come from rows the queries return, never from an
//! engine's rows-affected figure.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use super::storable;
use super::{AttemptColumns, NotifyDb, Record, StoreError, StoreResult, payload_text};
use crate::model::{
    AttemptOutcome, Channel, Claimed, DeliveryEvent, EventsRecorded, InDoubtMessage, LateFinder,
    Mark, MergeFunction, MessageKey, MessageStatus, NewMessage, OutgoingMessage, ProviderAccount,
    QueueDepth, RenderRetry, Rendering, RowPosition, Schedule, Settled, SourceTable, Template,
    Unsubscription,
};
use crate::ops::{
    ActedOn, Action, ActionRecord, AttemptRecord, EventRecord, Found, MessageFilter, MessageRecord,
    Operator, ScheduleState, SuppressionEntry,
};

/// A query parameter, as the shared code means it; each driver binds it its engine's way.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    I32(i32),
    I64(i64),
    Bool(bool),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
    OptBytes(Option<&'a [u8]>),
    /// PostgreSQL: seconds (float8, for `make_interval`); SQL Server: milliseconds (int, for
    /// `DATEADD`, capped: see [`millis`]).
    Interval(Duration),
    /// PostgreSQL: bigint[]; SQL Server: a JSON array, read with OPENJSON.
    Ids(&'a [i64]),
    /// PostgreSQL: text[]; SQL Server: a JSON array, read with OPENJSON.
    Texts(&'a [&'a str]),
    /// A JSON document, bound as text on both engines.
    Json(&'a str),
}

/// One engine's way to run the notification database's queries.
pub(crate) trait Driver: Send + Sync + 'static {
    type Row: Record + Send + Sync;

    /// This engine's text of each query.
    const QUERIES: &'static Queries;

    /// The rows of the query's (first) result set; none for a statement that returns none.
    fn query(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> impl Future<Output = StoreResult<Vec<Self::Row>>> + Send;
}

macro_rules! queries {
    ($($name:ident),* $(,)?) => {
        /// The notification database's queries, one engine's text each:
        /// `sql/<engine>/queries/<name>.sql`.
        pub(crate) struct Queries {
            $(pub $name: &'static str,)*
        }

        pub(crate) const POSTGRES: Queries = Queries {
            $($name: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/../sql/postgres/queries/", stringify!($name), ".sql"
            )),)*
        };

        pub(crate) const MSSQL: Queries = Queries {
            $($name: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/../sql/mssql/queries/", stringify!($name), ".sql"
            )),)*
        };
    };
}

queries!(
    schedules_active,
    schedule_by_id,
    schedule_named,
    schedule_record_check,
    template_for_locale,
    detector_claim_schedules,
    detector_advance_mark,
    detector_mark,
    messages_unqueued,
    late_changes_record,
    messages_insert,
    event_reject,
    render_claim_retries,
    render_finish_retry,
    send_recover_own,
    send_expire_lost,
    send_claim,
    provider_accounts,
    send_finish_attempts,
    queue_depth,
    send_in_doubt_to_settle,
    send_settle,
    events_record,
    send_settle_by_events,
    suppression_add,
    ops_suppression_list,
    ops_suppression_remove,
    unsubscribe_target,
    unsubscribe,
    ops_schedules,
    ops_schedule_set_active,
    ops_find_by_recipient,
    ops_find_by_source_key,
    ops_in_doubt_list,
    ops_recent_failures,
    ops_messages,
    ops_attempts,
    ops_events,
    ops_actions,
    ops_messages_act,
);

/// For SQL Server's `DATEADD(millisecond, …)`, which takes an int: spans beyond ~24 days
/// are capped.
pub(crate) fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

/// The notification database over one engine's driver.
pub(crate) struct Notify<D> {
    driver: D,
}

impl<D: Driver> Notify<D> {
    pub(crate) fn new(driver: D) -> Self {
        Notify { driver }
    }

    /// Each row the query returns, mapped.
    async fn rows<T>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        map: impl Fn(&D::Row) -> StoreResult<T> + Send,
    ) -> StoreResult<Vec<T>> {
        self.driver
            .query(sql, params)
            .await?
            .iter()
            .map(map)
            .collect()
    }

    /// The first row the query returns, mapped.
    async fn first<T>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        map: impl Fn(&D::Row) -> StoreResult<T> + Send,
    ) -> StoreResult<Option<T>> {
        let rows = self.driver.query(sql, params).await?;
        rows.first().map(map).transpose()
    }

    /// A statement whose rows, if any, are not needed.
    async fn run(&self, sql: &'static str, params: &[Param<'_>]) -> StoreResult<()> {
        self.driver.query(sql, params).await?;
        Ok(())
    }

    /// The count the query returns in its first row, in `column` (bigint); 0 without a row.
    async fn count(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        column: &'static str,
    ) -> StoreResult<u64> {
        let count = self.first(sql, params, |row| row.i64(column)).await?;
        Ok(count.map_or(0, |count| u64::try_from(count).unwrap_or(0)))
    }
}

fn schedule_from(row: &impl Record) -> StoreResult<Schedule> {
    Ok(Schedule {
        id: row.i64("schedule_id")?,
        tenant: row.text("tenant")?,
        name: row.text("name")?,
        channel: row.channel("channel")?,
        source: SourceTable {
            schema: row.text("source_schema")?,
            table: row.text("source_table")?,
            key_column: row.text("key_column")?,
            change_column: row.text("change_column")?,
        },
        merge: MergeFunction {
            schema: row.text("merge_schema")?,
            name: row.text("merge_function")?,
        },
        template_name: row.text("template_name")?,
        active: row.bool("active")?,
        error: row.opt_text("error")?,
    })
}

/// A `detector_watermark` row's mark; `None` until the detector has started the schedule.
fn mark_from(row: &impl Record) -> StoreResult<Option<Mark>> {
    let Some(hold_back) = row.opt_time("hold_back")? else {
        return Ok(None);
    };
    let frontier = row
        .opt_text("change_value")?
        .zip(row.opt_text("key_value")?)
        .map(|(change, key)| RowPosition { change, key });
    Ok(Some(Mark {
        hold_back,
        frontier,
        position: row.opt_text("position")?,
        watching_since: row.opt_time("watching_since")?,
        definition: row.opt_text("source_definition")?,
    }))
}

/// An `operator_action` row (`action_schedule_id` for its schedule); `None` where a LEFT
/// JOIN found none.
fn action_from(row: &impl Record) -> StoreResult<Option<ActionRecord>> {
    let Some(action) = row.opt_text("action")? else {
        return Ok(None);
    };
    Ok(Some(ActionRecord {
        action: action
            .parse()
            .map_err(|e: String| super::column_error("action", e))?,
        message_id: row.opt_i64("message_id")?,
        schedule_id: row.opt_i64("action_schedule_id")?,
        from_status: row.opt_status("from_status")?,
        to_status: row.opt_status("to_status")?,
        actor: row.text("actor")?,
        reason: row.opt_text("reason")?,
        acted_at: row.time("acted_at")?,
    }))
}

fn schedule_state_from(row: &impl Record) -> StoreResult<ScheduleState> {
    let frontier = row
        .opt_text("change_value")?
        .zip(row.opt_text("key_value")?)
        .map(|(change, key)| RowPosition { change, key });
    Ok(ScheduleState {
        schedule_id: row.i64("schedule_id")?,
        tenant: row.text("tenant")?,
        name: row.text("name")?,
        channel: row.channel("channel")?,
        active: row.bool("active")?,
        error: row.opt_text("error")?,
        checked_at: row.opt_time("checked_at")?,
        hold_back: row.opt_time("hold_back")?,
        frontier,
        watching_since: row.opt_time("watching_since")?,
        detector: row.opt_text("owner")?,
        lease_expires_at: row.opt_time("lease_expires_at")?,
        last_action: action_from(row)?,
        read_at: row.time("read_at")?,
    })
}

fn message_record_from(row: &impl Record) -> StoreResult<MessageRecord> {
    Ok(MessageRecord {
        message_id: row.i64("message_id")?,
        tenant: row.text("tenant")?,
        schedule_id: row.i64("schedule_id")?,
        schedule: row.opt_text("schedule")?,
        source_key: row.text("source_key")?,
        change_version: row.text("change_version")?,
        channel: row.channel("channel")?,
        account: row.text("account")?,
        status: row.status("status")?,
        recipient: row.opt_text("recipient")?,
        subject: row.opt_text("subject")?,
        render_attempts: row.i32("render_attempts")?,
        send_attempts: row.i32("send_attempts")?,
        provider_message_id: row.opt_text("provider_message_id")?,
        last_error: row.opt_text("last_error")?,
        event_partition: row.opt_i32("event_partition")?,
        event_offset: row.opt_i64("event_offset")?,
        detected_at: row.opt_time("detected_at")?,
        late_found_by: row.opt_text("late_found_by")?,
        late_found_at: row.opt_time("late_found_at")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        next_attempt_at: row.time("next_attempt_at")?,
        sent_at: row.opt_time("sent_at")?,
    })
}

fn attempt_record_from(row: &impl Record) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        message_id: row.i64("message_id")?,
        attempt: row.i32("attempt")?,
        sender: row.text("sender")?,
        started_at: row.time("started_at")?,
        finished_at: row.opt_time("finished_at")?,
        outcome: row.opt_text("outcome")?,
        http_status: row.opt_i32("http_status")?,
        provider_message_id: row.opt_text("provider_message_id")?,
        error: row.opt_text("error")?,
    })
}

fn suppression_from(row: &impl Record) -> StoreResult<SuppressionEntry> {
    Ok(SuppressionEntry {
        tenant: row.text("tenant")?,
        channel: row.channel("channel")?,
        address: row.text("address")?,
        reason: row.text("reason")?,
        source: row.opt_text("source")?,
        created_at: row.time("created_at")?,
        schedule: row.opt_text("schedule")?,
    })
}

fn unsubscription_from(row: &impl Record) -> StoreResult<Unsubscription> {
    Ok(Unsubscription {
        tenant: row.text("tenant")?,
        schedule: row.text("schedule")?,
        address: row.text("address")?,
        tenant_wide: row.bool("tenant_wide")?,
        suppressed: row.bool("suppressed")?,
    })
}

/// Finder queries return `message_id` and `total` (how many match in all) on every row.
fn found_from(rows: Vec<(i64, i64)>) -> Found {
    Found {
        total: rows
            .first()
            .map_or(0, |(_, total)| u64::try_from(*total).unwrap_or(0)),
        message_ids: rows.into_iter().map(|(id, _)| id).collect(),
    }
}

/// How often a batch of messages is inserted when other renderers keep inserting some of its
/// identities meanwhile (each try drops those already in).
const INSERT_TRIES: u32 = 4;

/// The queue's bounded columns, in UTF-16 code units as nvarchar counts them: SQL Server's
/// widths (`sql/mssql/notify/030-messages.sql`). PostgreSQL's text columns would hold more,
/// but a message gets the same outcome on either engine (and PostgreSQL's unique index
/// refuses an identity over ~2.7 kB anyway, with a less helpful error).
const TENANT_CHARS: usize = 128;
const SOURCE_KEY_CHARS: usize = 400;
const CHANGE_VERSION_CHARS: usize = 64;
const RECIPIENT_CHARS: usize = 320;
const LOCALE_CHARS: usize = 35;

fn chars(text: &str) -> usize {
    text.encode_utf16().count()
}

/// An identity that does not fit the queue cannot be stored at all: refused, rather than
/// silently truncated into another message's identity.
fn check_identity(key: &MessageKey) -> StoreResult<()> {
    for (column, value, width) in [
        ("tenant", &key.tenant, TENANT_CHARS),
        ("source_key", &key.source_key, SOURCE_KEY_CHARS),
        ("change_version", &key.change_version, CHANGE_VERSION_CHARS),
    ] {
        if chars(value) > width {
            return Err(StoreError::Refused(
                format!("{column} {value:?} is longer than the {width} characters the queue holds")
                    .into(),
            ));
        }
    }
    Ok(())
}

/// A rendering whose recipient or locale does not fit its column is `render_failed` with
/// the reason (a merge function's output is not ours to trust), never truncated and never
/// a statement the database refuses on every retry.
fn fitted(rendering: &Rendering) -> Cow<'_, Rendering> {
    let too_long = [
        ("recipient", &rendering.recipient, RECIPIENT_CHARS),
        ("locale", &rendering.locale, LOCALE_CHARS),
    ]
    .into_iter()
    .find_map(|(column, value, width)| {
        value
            .as_deref()
            .filter(|value| chars(value) > width)
            .map(|_| format!("the merge function's {column} is longer than {width} characters"))
    });
    match too_long {
        Some(error) => Cow::Owned(Rendering::without_content(
            MessageStatus::RenderFailed,
            error,
        )),
        None => Cow::Borrowed(rendering),
    }
}

/// The JSON array `messages_insert.sql` reads: `NewMessage`s as serde writes them, each made
/// to fit the queue, and `detected_at` to the microsecond (serde writes up to nine
/// fractional digits; SQL Server reads at most seven, PostgreSQL keeps six).
fn message_batch(messages: &[NewMessage]) -> StoreResult<String> {
    let fitted: Vec<NewMessage> = messages
        .iter()
        .map(|message| {
            check_identity(&message.key)?;
            Ok(NewMessage {
                key: message.key.clone(),
                channel: message.channel,
                rendering: fitted(&message.rendering).into_owned(),
                retry_in_secs: message.retry_in_secs,
                event_partition: message.event_partition,
                event_offset: message.event_offset,
                detected_at: message.detected_at.trunc_subsecs(6),
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(serde_json::to_string(&fitted).expect("messages always serialize"))
}

/// Row positions as the JSON array `messages_unqueued.sql` and `late_changes_record.sql`
/// read: `{"source_key", "change_version"}` objects.
fn identities(rows: &[RowPosition]) -> String {
    #[derive(serde::Serialize)]
    struct Identity<'a> {
        source_key: &'a str,
        change_version: &'a str,
    }
    let identities: Vec<Identity<'_>> = rows
        .iter()
        .map(|row| Identity {
            source_key: &row.key,
            change_version: &row.change,
        })
        .collect();
    serde_json::to_string(&identities).expect("identities always serialize")
}

/// Attempt outcomes as the JSON array `send_finish_attempts.sql` reads, one object per
/// attempt; the delay until the next attempt in milliseconds ([`millis`]).
fn outcome_batch(finished: &[(i64, i32, AttemptOutcome)]) -> String {
    let rows: Vec<serde_json::Value> = finished
        .iter()
        .map(|(message_id, attempt, outcome)| {
            let c = AttemptColumns::of(outcome);
            serde_json::json!({
                "message_id": message_id,
                "attempt": attempt,
                "status": c.status.as_str(),
                "outcome": c.outcome,
                "http_status": c.http_status,
                "provider_message_id": c.provider_message_id,
                "error": c.error,
                "retry_ms": millis(c.retry_in),
                "uncounted": c.uncounted,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

#[async_trait::async_trait]
impl<D: Driver> NotifyDb for Notify<D> {
    async fn ping(&self) -> StoreResult<()> {
        self.driver.query(super::PING, &[]).await.map(drop)
    }

    async fn active_schedules(&self) -> StoreResult<Vec<Schedule>> {
        let sql = D::QUERIES.schedules_active;
        self.rows(sql, &[], schedule_from).await
    }

    async fn schedule(&self, schedule_id: i64) -> StoreResult<Option<Schedule>> {
        let sql = D::QUERIES.schedule_by_id;
        self.first(sql, &[Param::I64(schedule_id)], schedule_from)
            .await
    }

    async fn record_schedule_check(
        &self,
        schedule_id: i64,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let params = [Param::I64(schedule_id), Param::OptText(error)];
        self.run(D::QUERIES.schedule_record_check, &params).await
    }

    async fn template(
        &self,
        tenant: &str,
        name: &str,
        locale: &str,
    ) -> StoreResult<Option<Template>> {
        let params = [Param::Text(tenant), Param::Text(name), Param::Text(locale)];
        self.first(D::QUERIES.template_for_locale, &params, |row| {
            Ok(Template {
                id: row.i64("template_id")?,
                locale: row.text("locale")?,
                subject: row.opt_text("subject")?,
                body_html: row.opt_text("body_html")?,
                body_text: row.text("body_text")?,
                updated_at: row.time("updated_at")?,
            })
        })
        .await
    }

    async fn schedule_named(&self, tenant: &str, name: &str) -> StoreResult<Option<Schedule>> {
        let params = [Param::Text(tenant), Param::Text(name)];
        self.first(D::QUERIES.schedule_named, &params, schedule_from)
            .await
    }

    async fn claim_schedules(
        &self,
        owner: &str,
        ttl: Duration,
        schedule_ids: &[i64],
    ) -> StoreResult<Vec<(i64, Option<Mark>)>> {
        let params = [
            Param::Text(owner),
            Param::Interval(ttl),
            Param::Ids(schedule_ids),
        ];
        self.rows(D::QUERIES.detector_claim_schedules, &params, |row| {
            Ok((row.i64("schedule_id")?, mark_from(row)?))
        })
        .await
    }

    async fn advance_mark(&self, owner: &str, schedule_id: i64, to: &Mark) -> StoreResult<bool> {
        let frontier = to.frontier.as_ref();
        let params = [
            Param::Text(owner),
            Param::I64(schedule_id),
            Param::Time(to.hold_back),
            Param::OptText(frontier.map(|f| f.change.as_str())),
            Param::OptText(frontier.map(|f| f.key.as_str())),
            Param::OptText(to.position.as_deref()),
            Param::OptTime(to.watching_since),
            Param::OptText(to.definition.as_deref()),
        ];
        let moved = self
            .rows(D::QUERIES.detector_advance_mark, &params, |_| Ok(()))
            .await?;
        Ok(moved.len() == 1)
    }

    async fn mark(&self, schedule_id: i64) -> StoreResult<Option<Mark>> {
        let sql = D::QUERIES.detector_mark;
        let mark = self
            .first(sql, &[Param::I64(schedule_id)], mark_from)
            .await?;
        Ok(mark.flatten())
    }

    async fn unqueued(
        &self,
        tenant: &str,
        schedule_id: i64,
        rows: &[RowPosition],
    ) -> StoreResult<Vec<RowPosition>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let identities = identities(rows);
        let params = [
            Param::Text(tenant),
            Param::I64(schedule_id),
            Param::Json(&identities),
        ];
        self.rows(D::QUERIES.messages_unqueued, &params, |row| {
            Ok(RowPosition {
                key: row.text("source_key")?,
                change: row.text("change_version")?,
            })
        })
        .await
    }

    async fn record_late_changes(
        &self,
        schedule_id: i64,
        rows: &[RowPosition],
        found_by: LateFinder,
    ) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let identities = identities(rows);
        let params = [
            Param::I64(schedule_id),
            Param::Json(&identities),
            Param::Text(found_by.as_str()),
        ];
        self.count(D::QUERIES.late_changes_record, &params, "recorded")
            .await
    }

    async fn insert_messages(&self, messages: &[NewMessage]) -> StoreResult<u64> {
        if messages.is_empty() {
            return Ok(0);
        }
        let batch = message_batch(messages)?;
        let mut tries = 1;
        loop {
            let inserted = self
                .count(
                    D::QUERIES.messages_insert,
                    &[Param::Json(&batch)],
                    "inserted",
                )
                .await;
            match inserted {
                // Another renderer inserted one of these identities meanwhile: repeated, the
                // statement leaves it out (SQL Server; PostgreSQL's ON CONFLICT never fails).
                Err(StoreError::Conflict(error)) if tries < INSERT_TRIES => {
                    tracing::debug!(error = %crate::telemetry::error_chain(&*error), "an identity was inserted meanwhile: inserting again");
                    tries += 1;
                }
                done => return done,
            }
        }
    }

    async fn reject_event(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
        error: &str,
    ) -> StoreResult<()> {
        let error = storable(error);
        let params = [
            Param::Text(topic),
            Param::I32(partition),
            Param::I64(offset),
            Param::OptText(payload_text(payload)),
            Param::OptBytes(payload),
            Param::Text(&error),
        ];
        self.run(D::QUERIES.event_reject, &params).await
    }

    async fn claim_render_retries(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<RenderRetry>> {
        let params = [
            Param::Text(owner),
            Param::Interval(lease),
            Param::I64(i64::from(limit)),
        ];
        self.rows(D::QUERIES.render_claim_retries, &params, |row| {
            Ok(RenderRetry {
                message_id: row.i64("message_id")?,
                key: MessageKey {
                    tenant: row.text("tenant")?,
                    schedule_id: row.i64("schedule_id")?,
                    source_key: row.text("source_key")?,
                    change_version: row.text("change_version")?,
                },
                channel: row.channel("channel")?,
                render_attempts: row.i32("render_attempts")?,
                detected_at: row.time("detected_at")?,
            })
        })
        .await
    }

    async fn finish_render_retry(
        &self,
        message_id: i64,
        owner: &str,
        rendering: &Rendering,
        retry_in: Duration,
    ) -> StoreResult<()> {
        let rendering = fitted(rendering);
        fn text(value: &Option<String>) -> Param<'_> {
            Param::OptText(value.as_deref())
        }
        let params = [
            Param::I64(message_id),
            Param::Text(owner),
            Param::Text(rendering.status.as_str()),
            text(&rendering.recipient),
            text(&rendering.recipient_name),
            text(&rendering.locale),
            text(&rendering.subject),
            text(&rendering.body_html),
            text(&rendering.body_text),
            text(&rendering.error),
            Param::Interval(retry_in),
            Param::Bool(rendering.waiting),
        ];
        self.run(D::QUERIES.render_finish_retry, &params).await
    }

    async fn recover_own_claims(&self, owner: &str) -> StoreResult<u64> {
        let sql = D::QUERIES.send_recover_own;
        self.count(sql, &[Param::Text(owner)], "lost").await
    }

    async fn in_doubt_to_settle(
        &self,
        channel: Channel,
        within: Duration,
        limit: u32,
    ) -> StoreResult<Vec<InDoubtMessage>> {
        let params = [
            Param::Text(channel.as_str()),
            Param::Interval(within),
            Param::I64(i64::from(limit)),
        ];
        self.rows(D::QUERIES.send_in_doubt_to_settle, &params, |row| {
            Ok(InDoubtMessage {
                message_id: row.i64("message_id")?,
                attempt: row.i32("attempt")?,
                account: row.text("account")?,
                recipient: row.text("recipient")?,
                body_text: row.text("body_text")?,
                started_at: row.time("started_at")?,
                finished_at: row.opt_time("finished_at")?,
            })
        })
        .await
    }

    async fn settle_in_doubt(
        &self,
        message_id: i64,
        attempt: i32,
        provider_message_id: &str,
        how: &str,
    ) -> StoreResult<bool> {
        let params = [
            Param::I64(message_id),
            Param::I32(attempt),
            Param::Text(provider_message_id),
            Param::Text(how),
        ];
        let settled = self
            .count(D::QUERIES.send_settle, &params, "settled")
            .await?;
        Ok(settled > 0)
    }

    async fn record_events(&self, events: &[DeliveryEvent]) -> StoreResult<EventsRecorded> {
        if events.is_empty() {
            return Ok(EventsRecorded::default());
        }
        let batch = serde_json::to_string(events).map_err(|error| {
            StoreError::Refused(format!("events that do not serialize: {error}").into())
        })?;
        let params = [Param::Json(&batch)];
        let count = |row: &D::Row, column| Ok(u64::try_from(row.i64(column)?).unwrap_or_default());
        let recorded = self
            .first(D::QUERIES.events_record, &params, |row| {
                Ok(EventsRecorded {
                    recorded: count(row, "recorded")?,
                    suppressed: count(row, "suppressed")?,
                })
            })
            .await?;
        Ok(recorded.unwrap_or_default())
    }

    async fn suppress_address(
        &self,
        tenant: &str,
        channel: Channel,
        address: &str,
        reason: &str,
        source: &str,
    ) -> StoreResult<()> {
        let params = [
            Param::Text(tenant),
            Param::Text(channel.as_str()),
            Param::Text(address),
            Param::Text(reason),
            Param::Text(source),
        ];
        self.run(D::QUERIES.suppression_add, &params).await
    }

    async fn suppression_entries(
        &self,
        tenant: Option<&str>,
        address: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<SuppressionEntry>> {
        let params = [
            Param::OptText(tenant),
            Param::OptText(address),
            Param::I64(i64::from(limit)),
        ];
        self.rows(D::QUERIES.ops_suppression_list, &params, suppression_from)
            .await
    }

    async fn remove_suppression(
        &self,
        tenant: &str,
        channel: Channel,
        address: &str,
        schedule: Option<&str>,
        by: &Operator,
    ) -> StoreResult<Option<SuppressionEntry>> {
        let params = [
            Param::Text(tenant),
            Param::Text(channel.as_str()),
            Param::Text(address),
            Param::Text(&by.name),
            Param::Text(by.reason.as_deref().unwrap_or_default()),
            Param::OptText(schedule),
        ];
        self.first(D::QUERIES.ops_suppression_remove, &params, suppression_from)
            .await
    }

    async fn unsubscription(&self, message_id: i64) -> StoreResult<Option<Unsubscription>> {
        let params = [Param::I64(message_id)];
        self.first(D::QUERIES.unsubscribe_target, &params, unsubscription_from)
            .await
    }

    async fn unsubscribe(&self, message_id: i64) -> StoreResult<Option<Unsubscription>> {
        let params = [Param::I64(message_id)];
        self.first(D::QUERIES.unsubscribe, &params, unsubscription_from)
            .await
    }

    async fn settle_by_events(&self) -> StoreResult<Vec<Settled>> {
        self.rows(D::QUERIES.send_settle_by_events, &[], |row| {
            Ok(Settled {
                message_id: row.i64("message_id")?,
                channel: row.channel("channel")?,
                status: row.status("status")?,
            })
        })
        .await
    }

    async fn queue_depth(&self) -> StoreResult<Vec<QueueDepth>> {
        self.rows(D::QUERIES.queue_depth, &[], |row| {
            Ok(QueueDepth {
                tenant: row.text("tenant")?,
                schedule: row.text("schedule")?,
                status: row.text("status")?,
                messages: row.i64("messages")?,
                oldest_seconds: row.f64("oldest_seconds")?,
            })
        })
        .await
    }

    async fn expire_lost_sends(&self) -> StoreResult<u64> {
        self.count(D::QUERIES.send_expire_lost, &[], "lost").await
    }

    async fn claim_outgoing(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        paused: &[&str],
        only: Option<&str>,
    ) -> StoreResult<Vec<Claimed>> {
        let params = [
            Param::Text(owner),
            Param::Interval(lease),
            Param::I64(i64::from(limit)),
            Param::Texts(paused),
            Param::OptText(only),
        ];
        self.rows(D::QUERIES.send_claim, &params, |row| {
            let message_id = row.i64("message_id")?;
            let channel = row.channel("channel")?;
            if row.bool("suppressed")? {
                return Ok(Claimed::Suppressed {
                    message_id,
                    channel,
                });
            }
            let message = OutgoingMessage {
                message_id,
                tenant: row.text("tenant")?,
                schedule_id: row.i64("schedule_id")?,
                channel,
                account: row.text("account")?,
                recipient: row.text("recipient")?,
                recipient_name: row.opt_text("recipient_name")?,
                subject: row.opt_text("subject")?,
                body_html: row.opt_text("body_html")?,
                body_text: row.text("body_text")?,
                counted_attempts: row.i32("counted_attempts")?,
                one_click: row.bool("one_click")?,
            };
            let attempt = row.i32("attempt")?;
            Ok(Claimed::Sending { message, attempt })
        })
        .await
    }

    async fn provider_accounts(&self) -> StoreResult<Vec<ProviderAccount>> {
        self.rows(D::QUERIES.provider_accounts, &[], |row| {
            Ok(ProviderAccount {
                name: row.text("name")?,
                channel: row.channel("channel")?,
                api_key_env: row.opt_text("api_key_env")?,
                from_email: row.opt_text("from_email")?,
                from_name: row.opt_text("from_name")?,
                event_verification_key: row.opt_text("event_verification_key")?,
                account_sid: row.opt_text("account_sid")?,
                auth_token_env: row.opt_text("auth_token_env")?,
                from_number: row.opt_text("from_number")?,
                messaging_service_sid: row.opt_text("messaging_service_sid")?,
            })
        })
        .await
    }

    async fn finish_attempts(&self, finished: &[(i64, i32, AttemptOutcome)]) -> StoreResult<()> {
        if finished.is_empty() {
            return Ok(());
        }
        let batch = outcome_batch(finished);
        self.run(D::QUERIES.send_finish_attempts, &[Param::Json(&batch)])
            .await
    }

    async fn schedule_states(&self) -> StoreResult<Vec<ScheduleState>> {
        self.rows(D::QUERIES.ops_schedules, &[], schedule_state_from)
            .await
    }

    async fn set_schedule_active(
        &self,
        tenant: &str,
        name: &str,
        active: bool,
        by: &Operator,
    ) -> StoreResult<Option<(i64, bool)>> {
        let action = if active {
            Action::Resume
        } else {
            Action::Pause
        };
        let params = [
            Param::Text(tenant),
            Param::Text(name),
            Param::Bool(active),
            Param::Text(&by.name),
            Param::OptText(by.reason.as_deref()),
            Param::Text(action.as_str()),
        ];
        self.first(D::QUERIES.ops_schedule_set_active, &params, |row| {
            Ok((row.i64("schedule_id")?, row.bool("was_active")?))
        })
        .await
    }

    async fn find_messages(&self, filter: MessageFilter<'_>, limit: u32) -> StoreResult<Found> {
        let limit = Param::I64(i64::from(limit));
        let (sql, params) = match filter {
            MessageFilter::Recipient(recipient) => (
                D::QUERIES.ops_find_by_recipient,
                vec![Param::Text(recipient), limit],
            ),
            MessageFilter::SourceKey { tenant, key } => (
                D::QUERIES.ops_find_by_source_key,
                vec![Param::Text(tenant), Param::Text(key), limit],
            ),
            MessageFilter::InDoubt { tenant } => (
                D::QUERIES.ops_in_doubt_list,
                vec![Param::OptText(tenant), limit],
            ),
            MessageFilter::Failures { within } => (
                D::QUERIES.ops_recent_failures,
                vec![Param::Interval(within), limit],
            ),
        };
        let rows = self
            .rows(sql, &params, |row| {
                Ok((row.i64("message_id")?, row.i64("total")?))
            })
            .await?;
        Ok(found_from(rows))
    }

    async fn message_records(&self, message_ids: &[i64]) -> StoreResult<Vec<MessageRecord>> {
        let mut records = self
            .rows(
                D::QUERIES.ops_messages,
                &[Param::Ids(message_ids)],
                message_record_from,
            )
            .await?;
        records.sort_by_key(|record| message_ids.iter().position(|id| *id == record.message_id));
        Ok(records)
    }

    async fn attempt_records(&self, message_ids: &[i64]) -> StoreResult<Vec<AttemptRecord>> {
        let params = [Param::Ids(message_ids)];
        self.rows(D::QUERIES.ops_attempts, &params, attempt_record_from)
            .await
    }

    async fn event_records(&self, message_ids: &[i64]) -> StoreResult<Vec<EventRecord>> {
        let params = [Param::Ids(message_ids)];
        self.rows(D::QUERIES.ops_events, &params, |row| {
            Ok(EventRecord {
                message_id: row.i64("message_id")?,
                provider: row.text("provider")?,
                event: row.text("event")?,
                reason: row.opt_text("reason")?,
                occurred_at: row.opt_time("occurred_at")?,
                received_at: row.time("received_at")?,
            })
        })
        .await
    }

    async fn message_actions(&self, message_ids: &[i64]) -> StoreResult<Vec<ActionRecord>> {
        let params = [Param::Ids(message_ids)];
        let actions = self
            .rows(D::QUERIES.ops_actions, &params, action_from)
            .await?;
        Ok(actions.into_iter().flatten().collect())
    }

    async fn act_on_messages(
        &self,
        message_ids: &[i64],
        action: Action,
        by: &Operator,
    ) -> StoreResult<Vec<ActedOn>> {
        let Some((from, to)) = action.moves() else {
            return Err(StoreError::Refused(
                format!("{action} is not an action on messages").into(),
            ));
        };
        let mut unique = message_ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let params = [
            Param::Ids(&unique),
            Param::Text(action.as_str()),
            Param::Text(from.as_str()),
            Param::Text(to.as_str()),
            Param::Text(&by.name),
            Param::OptText(by.reason.as_deref()),
        ];
        let mut acted = self
            .rows(D::QUERIES.ops_messages_act, &params, |row| {
                Ok(ActedOn {
                    message_id: row.i64("message_id")?,
                    acted: row.bool("acted")?,
                    status: row.opt_status("status")?,
                })
            })
            .await?;
        acted.sort_by_key(|one| message_ids.iter().position(|id| *id == one.message_id));
        Ok(acted)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn durations_bind_as_int_milliseconds() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_secs(60 * 24 * 3600)), i32::MAX);
    }

    fn new_message(recipient: &str) -> NewMessage {
        NewMessage {
            key: MessageKey {
                tenant: "acme".into(),
                schedule_id: 7,
                source_key: "42".into(),
                change_version: "2026-12-01T09:30:00.1234567".into(),
            },
            channel: Channel::Email,
            rendering: Rendering {
                status: MessageStatus::Queued,
                recipient: Some(recipient.into()),
                recipient_name: Some("Ada Lovelace".into()),
                locale: Some("en".into()),
                subject: Some("Welcome".into()),
                body_html: Some("<p>Hi</p>".into()),
                body_text: Some("Hi".into()),
                error: None,
                waiting: false,
            },
            retry_in_secs: 1.5,
            event_partition: Some(3),
            event_offset: Some(99),
            detected_at: DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap(),
        }
    }

    /// The column names `messages_insert.sql` declares for the batch: SQL Server's OPENJSON
    /// … WITH (…), PostgreSQL's jsonb_to_recordset(…) AS m (…).
    fn batch_columns(sql: &str, open: &str, close: &str) -> Vec<String> {
        let start = sql.find(open).expect("the batch's column list") + open.len();
        let end = start
            + sql[start..]
                .find(close)
                .expect("the end of the column list");
        let mut columns: Vec<String> = sql[start..end]
            .split(',')
            .map(|item| item.split_whitespace().next().unwrap().to_owned())
            .collect();
        columns.sort();
        columns
    }

    #[test]
    fn the_message_batch_is_what_both_engines_read() {
        let batch = message_batch(&[new_message("ada@example.com")]).unwrap();
        let Value::Array(rows) = serde_json::from_str::<Value>(&batch).unwrap() else {
            panic!("not an array: {batch}");
        };
        let Value::Object(row) = &rows[0] else {
            panic!("not an object: {batch}");
        };
        let mut keys: Vec<String> = row.keys().cloned().collect();
        keys.sort();
        let mssql = batch_columns(MSSQL.messages_insert, "WITH (\n", ") AS m");
        let postgres = batch_columns(POSTGRES.messages_insert, "AS m (\n", ")\n");
        assert_eq!(keys, mssql);
        assert_eq!(keys, postgres);
        assert_eq!(row["status"], json!("queued"));
        assert_eq!(row["channel"], json!("email"));
        assert_eq!(row["schedule_id"], json!(7));
        assert_eq!(row["retry_in_secs"], json!(1.5));
        assert_eq!(row["error"], Value::Null);
        // At most seven fractional digits parse as datetimeoffset(7); serde writes nine.
        assert_eq!(row["detected_at"], json!("2027-01-15T08:00:00.123456Z"));
    }

    #[test]
    fn the_outcome_batch_is_what_both_engines_read() {
        let failed = AttemptOutcome::Failed {
            http_status: Some(400),
            error: "bad address".into(),
        };
        let batch: Value = serde_json::from_str(&outcome_batch(&[(5, 2, failed)])).unwrap();
        let mut keys: Vec<String> = batch[0].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mssql = batch_columns(MSSQL.send_finish_attempts, "OPENJSON(@P1) WITH (\n", ");");
        let postgres = batch_columns(POSTGRES.send_finish_attempts, "AS o(", ")\n");
        assert_eq!(keys, mssql);
        assert_eq!(keys, postgres);
        assert_eq!(batch[0]["status"], json!("failed"));
        assert_eq!(batch[0]["retry_ms"], json!(0));
    }

    #[test]
    fn row_positions_go_as_a_json_array_of_identities() {
        let rows = [
            RowPosition {
                change: "2027-01-15T08:00:00".into(),
                key: "42".into(),
            },
            RowPosition {
                change: "2027-01-15T08:00:00.5".into(),
                key: "O'Brien \"Jr\"".into(),
            },
        ];
        let batch: Value = serde_json::from_str(&identities(&rows)).unwrap();
        assert_eq!(
            batch,
            json!([
                {"source_key": "42", "change_version": "2027-01-15T08:00:00"},
                {"source_key": "O'Brien \"Jr\"", "change_version": "2027-01-15T08:00:00.5"},
            ])
        );
    }

    #[test]
    fn what_does_not_fit_the_queue_is_failed_or_refused_never_truncated() {
        let long = format!("{}@example.com", "a".repeat(320));
        let batch = message_batch(&[new_message(&long)]).unwrap();
        let rows: Value = serde_json::from_str(&batch).unwrap();
        assert_eq!(rows[0]["status"], json!("render_failed"));
        assert_eq!(rows[0]["recipient"], Value::Null);
        assert!(
            rows[0]["error"].as_str().unwrap().contains("320"),
            "{batch}"
        );
        let mut rendering = new_message("ada@example.com").rendering;
        assert!(matches!(fitted(&rendering), Cow::Borrowed(_)));
        rendering.locale = Some("x".repeat(36));
        assert_eq!(fitted(&rendering).status, MessageStatus::RenderFailed);

        let mut message = new_message("ada@example.com");
        message.key.source_key = "k".repeat(401);
        assert!(!message_batch(&[message]).unwrap_err().is_unavailable());
    }
}
