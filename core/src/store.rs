//! The storage seam: everything the pipeline asks of a database, engine-agnostic.
//!
//! `SourceDb` is the source's read replica (read-only: nothing of ours is written there);
//! `NotifyDb` is the dedicated notification database. Each engine implements `SourceDb` in its
//! module; `NotifyDb` is written once ([`notify`]) over a small driver each engine module
//! provides. Queries are kept in `sql/<engine>/queries/*.sql`, the same names in both; the
//! services see only these traits.

pub mod detection;
pub mod mssql;
mod notify;
pub mod postgres;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{DatabaseSettings, DetectionMode, DetectorSettings, Engine};
use crate::model::{
    AttemptOutcome, ChangedRow, Changes, Channel, Claimed, DeliveryEvent, EventsRecorded,
    InDoubtMessage, LateFinder, Mark, MergeFunction, MessageStatus, NewMessage, ProviderAccount,
    QueueDepth, RenderRetry, Rendering, RowPosition, Schedule, Settled, SourceTable, Template,
    Unsubscription,
};
use crate::ops::{
    ActedOn, Action, ActionRecord, AttemptRecord, EventRecord, Found, MessageFilter, MessageRecord,
    Operator, ScheduleState, SuppressionEntry,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached, or the connection broke: retry later, unchanged.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    /// The database refused the statement (a constraint, or an error raised by a merge
    /// function): repeating it unchanged fails again unless the data changes.
    #[error("database refused the statement")]
    Refused(#[source] BoxError),
    /// The statement ran out of time and was cancelled: the database may be overloaded or
    /// blocked (retry later, like `Unavailable`), or the statement itself hangs.
    #[error("statement timed out")]
    TimedOut(#[source] BoxError),
    /// Another session inserted a key this statement inserts, after the statement's own
    /// check (SQL Server's unique violation where the check takes no range locks): repeated,
    /// the statement sees it. Only the statements that expect it repeat it.
    #[error("another session inserted the same key meanwhile")]
    Conflict(#[source] BoxError),
}

impl StoreError {
    /// Worth repeating unchanged later; a timeout is too.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::TimedOut(_))
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, StoreError::TimedOut(_))
    }
}

/// Why a schedule cannot run; stored on the schedule for the admin to read.
pub type Invalid = String;

/// A watched table checked against the source catalog, with its queries built from quoted
/// identifiers. Engine-specific text; only the engine that built it reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableQueries {
    /// One page of a detection pass (see [`detection`]).
    pub changes: String,
    /// Rows whose change values lie in a range, for the sweep and audits.
    pub rows_between: String,
    /// How rows' current change values compare with events' versions.
    pub compare_versions: String,
    /// SQL Server in `cdc` mode: how the table's capture instance is read.
    pub capture: Option<CaptureQueries>,
}

/// SQL Server change data capture: the queries that read one table's capture instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureQueries {
    /// The capture instance, as `cdc.change_tables` names it.
    pub instance: String,
    /// One page of changes by LSN.
    pub changes: String,
}

/// How a row's current version compares with the version an event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCheck {
    /// The row's change value now, in the source's text form (`None`: NULL).
    pub current: Option<String>,
    /// `Less`: the replica has not caught up with the event yet. `Equal`: the event's
    /// version. `Greater`: the row changed again since (or its change value is NULL).
    pub ordering: std::cmp::Ordering,
}

/// A merge function checked against the source catalog: the statement that calls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCall {
    pub sql: String,
    /// One statement calls it for many keys (PostgreSQL: `LATERAL` over the keys); else it is
    /// called once per key.
    pub batched: bool,
}

/// One row of merge output: column name → value. `recipient`, `recipient_name` and `locale`
/// address the message; everything else is a merge field.
pub type MergeRow = serde_json::Map<String, serde_json::Value>;

/// The statement that shows a database answers, the same on both engines.
pub(crate) const PING: &str = "SELECT 1 AS ok";

#[async_trait::async_trait]
pub trait SourceDb: Send + Sync + 'static {
    /// Answers if the database does (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    /// Checks that the table and both columns exist and are usable; builds the poll queries.
    async fn resolve_table(
        &self,
        table: &SourceTable,
    ) -> StoreResult<Result<TableQueries, Invalid>>;

    /// Checks that the merge function exists and takes one key; builds its call.
    async fn resolve_merge(&self, merge: &MergeFunction)
    -> StoreResult<Result<MergeCall, Invalid>>;

    /// Where a new schedule starts: the changes committed from now on.
    async fn start_mark(&self, table: &TableQueries) -> StoreResult<Mark>;

    /// One detection pass: a consistent read of what changed since `mark`, and the mark to
    /// move to once every row's event is acknowledged.
    async fn changes(
        &self,
        table: &TableQueries,
        mark: &Mark,
        settings: &DetectorSettings,
    ) -> StoreResult<Changes>;

    /// Up to `limit` current rows whose change values lie in `[from, to)`, after `after`,
    /// in `(change, key)` order: what the sweep and audits check against the queue.
    async fn rows_between(
        &self,
        table: &TableQueries,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&RowPosition>,
        limit: u32,
    ) -> StoreResult<Vec<ChangedRow>>;

    /// How each event's row compares with the version the event carries, in one round trip:
    /// one entry per `(key, version)`, in order, `None` where the row is absent.
    async fn compare_versions(
        &self,
        table: &TableQueries,
        events: &[(&str, &str)],
    ) -> StoreResult<Vec<Option<VersionCheck>>>;

    /// The merge function's rows for each key, in order (at most two per key are read),
    /// within `timeout`: in one statement if `call.batched`, else one call per key in turn.
    async fn merge(
        &self,
        call: &MergeCall,
        keys: &[&str],
        timeout: Duration,
    ) -> StoreResult<Vec<Vec<MergeRow>>>;
}

#[async_trait::async_trait]
pub trait NotifyDb: Send + Sync + 'static {
    /// Answers if the database does (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    // Schedules and templates.
    async fn active_schedules(&self) -> StoreResult<Vec<Schedule>>;
    async fn schedule(&self, schedule_id: i64) -> StoreResult<Option<Schedule>>;
    /// Records the detector's verdict: `None` clears an earlier error.
    async fn record_schedule_check(&self, schedule_id: i64, error: Option<&str>)
    -> StoreResult<()>;
    /// The template in `locale`, else in `en`, else in any locale.
    async fn template(
        &self,
        tenant: &str,
        name: &str,
        locale: &str,
    ) -> StoreResult<Option<Template>>;

    /// A schedule by tenant and name, active or not.
    async fn schedule_named(&self, tenant: &str, name: &str) -> StoreResult<Option<Schedule>>;

    // Change detector.
    /// Takes or renews the lease on each schedule that no other live detector holds;
    /// returns the ones now held, with their marks (`None`: not started yet).
    async fn claim_schedules(
        &self,
        owner: &str,
        ttl: Duration,
        schedule_ids: &[i64],
    ) -> StoreResult<Vec<(i64, Option<Mark>)>>;
    /// Moves the mark if `owner` still holds the lease; false if it does not.
    async fn advance_mark(&self, owner: &str, schedule_id: i64, to: &Mark) -> StoreResult<bool>;
    /// The schedule's mark, whoever holds it (`None`: not started yet).
    async fn mark(&self, schedule_id: i64) -> StoreResult<Option<Mark>>;
    /// Of these rows of the schedule, the ones with no message in the queue.
    async fn unqueued(
        &self,
        tenant: &str,
        schedule_id: i64,
        rows: &[RowPosition],
    ) -> StoreResult<Vec<RowPosition>>;
    /// Records changes the detector's passes missed and the sweep or an audit found; returns
    /// how many were not recorded before.
    async fn record_late_changes(
        &self,
        schedule_id: i64,
        rows: &[RowPosition],
        found_by: LateFinder,
    ) -> StoreResult<u64>;

    // Renderer.
    /// Inserts the messages whose identity is new; returns how many were new.
    async fn insert_messages(&self, messages: &[NewMessage]) -> StoreResult<u64>;
    /// Keeps an event that cannot become a message: its payload's bytes as they were, and
    /// why.
    async fn reject_event(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
        error: &str,
    ) -> StoreResult<()>;
    async fn claim_render_retries(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<RenderRetry>>;
    async fn finish_render_retry(
        &self,
        message_id: i64,
        owner: &str,
        rendering: &Rendering,
        retry_in: Duration,
    ) -> StoreResult<()>;

    // Sender.
    /// At a sender's start: its own messages caught in a provider call are `in_doubt`.
    /// Returns how many went `in_doubt`.
    async fn recover_own_claims(&self, owner: &str) -> StoreResult<u64>;
    /// `in_doubt` messages on `channel` whose last call began within `within`, the oldest
    /// first, at most `limit`.
    async fn in_doubt_to_settle(
        &self,
        channel: Channel,
        within: Duration,
        limit: u32,
    ) -> StoreResult<Vec<InDoubtMessage>>;
    /// Marks an `in_doubt` message `sent` as its provider shows it (`how`), with the
    /// provider's id, unless that id is already another message's of the same recipient or
    /// the message moved on. Returns whether it was settled.
    async fn settle_in_doubt(
        &self,
        message_id: i64,
        attempt: i32,
        provider_message_id: &str,
        how: &str,
    ) -> StoreResult<bool>;
    /// Records provider events, each once; one marked `suppress` puts its address on the
    /// tenant's suppression list (for all its schedules).
    async fn record_events(&self, events: &[DeliveryEvent]) -> StoreResult<EventsRecorded>;
    /// Puts `address` on `tenant`'s suppression list for `channel` (kept if already there).
    async fn suppress_address(
        &self,
        tenant: &str,
        channel: Channel,
        address: &str,
        reason: &str,
        source: &str,
    ) -> StoreResult<()>;
    /// Suppression entries of `tenant` (all if `None`) whose address contains `address` (any
    /// if `None`), newest first, at most `limit`.
    async fn suppression_entries(
        &self,
        tenant: Option<&str>,
        address: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<SuppressionEntry>>;
    /// Takes `address` off `tenant`'s suppression list for `channel` (the entry for all its
    /// schedules, or with `schedule` that schedule's), keeping the entry with who removed it
    /// and why; `None` if it was not on the list.
    async fn remove_suppression(
        &self,
        tenant: &str,
        channel: Channel,
        address: &str,
        schedule: Option<&str>,
        by: &Operator,
    ) -> StoreResult<Option<SuppressionEntry>>;
    /// Whom the one-click unsubscribe link in email `message_id` is about; `None`: no such
    /// email.
    async fn unsubscription(&self, message_id: i64) -> StoreResult<Option<Unsubscription>>;
    /// The recipient of email `message_id` unsubscribes with its one-click link: suppressed
    /// for the schedule or the whole tenant, as the schedule says, and recorded as the
    /// message's event, once. `None`: no such email.
    async fn unsubscribe(&self, message_id: i64) -> StoreResult<Option<Unsubscription>>;
    /// Settles every `in_doubt` message its provider has reported on since its last call
    /// began: `sent`, or `failed` if the report says it could not be delivered.
    async fn settle_by_events(&self) -> StoreResult<Vec<Settled>>;
    /// The open part of the queue, per tenant, schedule and status.
    async fn queue_depth(&self) -> StoreResult<Vec<QueueDepth>>;
    /// Messages whose sender's lease ran out during a provider call become `in_doubt`.
    async fn expire_lost_sends(&self) -> StoreResult<u64>;
    /// Takes up to `limit` due `queued` messages for `owner` and starts their calls in the
    /// same statement: each is marked `sending` with its attempt row, under a lease that
    /// covers the call; one whose recipient is suppressed is marked `suppressed`. Messages of
    /// the `paused` provider accounts stay; with `only`, only that account's are taken.
    /// Tenants take turns, within their accounts' and their own send limits.
    async fn claim_outgoing(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
        paused: &[&str],
        only: Option<&str>,
    ) -> StoreResult<Vec<Claimed>>;
    /// The provider accounts admins defined, besides the configured defaults.
    async fn provider_accounts(&self) -> StoreResult<Vec<ProviderAccount>>;
    /// Records how attempts ended: `(message id, attempt number, outcome)`.
    async fn finish_attempts(&self, finished: &[(i64, i32, AttemptOutcome)]) -> StoreResult<()>;

    // Operators (heraldctl).
    /// Every schedule, with where its detection stands and the last operator action on it.
    async fn schedule_states(&self) -> StoreResult<Vec<ScheduleState>>;
    /// Pauses (`active` false) or resumes a schedule, recording who and why when that changes
    /// it. Returns its id and whether it was active before; `None`: no such schedule.
    async fn set_schedule_active(
        &self,
        tenant: &str,
        name: &str,
        active: bool,
        by: &Operator,
    ) -> StoreResult<Option<(i64, bool)>>;
    /// The first `limit` messages the filter finds, in its order, and how many it finds.
    async fn find_messages(&self, filter: MessageFilter<'_>, limit: u32) -> StoreResult<Found>;
    /// These messages (those that exist), in the order given.
    async fn message_records(&self, message_ids: &[i64]) -> StoreResult<Vec<MessageRecord>>;
    /// Every provider call of these messages, by message and attempt.
    async fn attempt_records(&self, message_ids: &[i64]) -> StoreResult<Vec<AttemptRecord>>;
    /// What the providers reported about these messages, in order.
    async fn event_records(&self, message_ids: &[i64]) -> StoreResult<Vec<EventRecord>>;
    /// Every operator action on these messages, in order.
    async fn message_actions(&self, message_ids: &[i64]) -> StoreResult<Vec<ActionRecord>>;
    /// An operator's action on messages ([`Action::moves`]): the ones in its status move,
    /// each recorded with who and why; the others are left alone. One entry per distinct
    /// id, in the order given.
    async fn act_on_messages(
        &self,
        message_ids: &[i64],
        action: Action,
        by: &Operator,
    ) -> StoreResult<Vec<ActedOn>>;
}

/// A row's columns read without panicking: a column missing, NULL where a value is expected
/// or of another type than the code expects (the schema changed under a running service) is
/// a refused statement naming the column.
pub(crate) trait Record {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn i32(&self, column: &str) -> StoreResult<i32>;
    fn opt_i32(&self, column: &str) -> StoreResult<Option<i32>>;
    fn i64(&self, column: &str) -> StoreResult<i64>;
    fn opt_i64(&self, column: &str) -> StoreResult<Option<i64>>;
    fn bool(&self, column: &str) -> StoreResult<bool>;
    fn f64(&self, column: &str) -> StoreResult<f64>;
    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>>;
    fn opt_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>>;

    fn channel(&self, column: &str) -> StoreResult<Channel> {
        parse_channel(&self.text(column)?)
    }

    fn opt_status(&self, column: &str) -> StoreResult<Option<MessageStatus>> {
        self.opt_text(column)?
            .map(|text| text.parse().map_err(|e: String| column_error(column, e)))
            .transpose()
    }

    fn status(&self, column: &str) -> StoreResult<MessageStatus> {
        self.opt_status(column)?
            .ok_or_else(|| column_error(column, "NULL"))
    }
}

/// The refusal for a column that does not read as the code expects.
pub(crate) fn column_error(column: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Refused(format!("column {column}: {error}").into())
}

/// A version-check batch's answer (`compare_versions.sql`'s `position`, `change_value` and
/// `ordering` columns), as one entry per event of the batch.
pub(crate) fn version_checks(
    rows: &[impl Record],
    events: usize,
) -> StoreResult<Vec<Option<VersionCheck>>> {
    let mut checks = vec![None; events];
    for row in rows {
        let check = VersionCheck {
            current: row.opt_text("change_value")?,
            ordering: row.i32("ordering")?.cmp(&0),
        };
        at_position(&mut checks, row.i32("position")?)?.get_or_insert(check);
    }
    Ok(checks)
}

/// Connects to the source replica with the engine its settings name. `mode` is how the
/// detector reads changes; other readers (the renderer, audits) read in `Poll` mode, whose
/// queries need no more than the watched tables.
pub async fn connect_source(
    settings: &DatabaseSettings,
    mode: DetectionMode,
) -> StoreResult<Arc<dyn SourceDb>> {
    match settings.engine {
        Engine::Postgres => Ok(Arc::new(postgres::PgSource::connect(settings).await?)),
        Engine::Mssql => Ok(Arc::new(
            mssql::MsSource::connect(settings).await?.with_mode(mode),
        )),
    }
}

/// Connects to the notification database with the engine its settings name.
pub async fn connect_notify(settings: &DatabaseSettings) -> StoreResult<Arc<dyn NotifyDb>> {
    match settings.engine {
        Engine::Postgres => Ok(Arc::new(notify::Notify::new(
            postgres::PgDriver::connect(settings).await?,
        ))),
        Engine::Mssql => Ok(Arc::new(notify::Notify::new(
            mssql::MsDriver::connect(settings).await?,
        ))),
    }
}

/// Logs why a pooled connection could not be made: without it, callers see only "timed out
/// waiting for a connection", never "connection refused" or "password authentication failed".
#[derive(Debug, Clone)]
pub(crate) struct LogConnectionErrors {
    pub database: String,
}

impl<E: std::error::Error + 'static> bb8::ErrorSink<E> for LogConnectionErrors {
    fn sink(&self, error: E) {
        tracing::warn!(
            database = %self.database,
            error = %crate::telemetry::error_chain(&error),
            "database connection failed"
        );
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<E>> {
        Box::new(self.clone())
    }
}

/// How long an engine's names may be, as it counts them: names an admin gave are checked
/// before they reach the catalog, which would refuse them (or cut them short).
pub(crate) struct NameLimit {
    pub engine: &'static str,
    pub longest: usize,
    pub unit: &'static str,
    pub length: fn(&str) -> usize,
}

impl NameLimit {
    /// A watched table's names.
    pub fn check_table(&self, table: &SourceTable) -> Result<(), Invalid> {
        self.check(&[
            ("schema", &table.schema),
            ("table", &table.table),
            ("key column", &table.key_column),
            ("change column", &table.change_column),
        ])
    }

    pub fn check(&self, names: &[(&str, &str)]) -> Result<(), Invalid> {
        for (what, name) in names {
            let length = (self.length)(name);
            if length == 0 {
                return Err(format!("the {what} name is empty"));
            }
            if length > self.longest {
                return Err(format!(
                    "the {what} name {name:?} has {length} {}; {} names have at most {}",
                    self.unit, self.engine, self.longest
                ));
            }
        }
        Ok(())
    }
}

/// A rejected payload's text form, when it has one a text column holds: UTF-8 without NUL.
pub(crate) fn payload_text(payload: Option<&[u8]>) -> Option<&str> {
    std::str::from_utf8(payload?)
        .ok()
        .filter(|text| !text.contains('\0'))
}

/// Text for a text column: NUL characters (which PostgreSQL refuses) written as `\0`.
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\\0").into()
    } else {
        text.into()
    }
}

/// The entry for a batch query's `position` column (counted from 1).
pub(crate) fn at_position<T>(entries: &mut [T], position: i32) -> StoreResult<&mut T> {
    usize::try_from(position)
        .ok()
        .and_then(|position| position.checked_sub(1))
        .and_then(|index| entries.get_mut(index))
        .ok_or_else(|| StoreError::Refused(format!("no batch entry at position {position}").into()))
}

/// `Channel` columns are stored as their lowercase names.
pub(crate) fn parse_channel(text: &str) -> StoreResult<Channel> {
    text.parse()
        .map_err(|e: String| StoreError::Refused(e.into()))
}

/// Fills a query template's `{name}` placeholders with catalog-quoted identifiers and type
/// names, in one pass: text that a value brings in is never expanded again, so a table
/// named `{key}` stays a table name. Unknown placeholders are left as they are. Only
/// statement text is filled: the template's comments go first, since a quoted name may hold
/// a newline (neither `quote_ident` nor `QUOTENAME` escapes one), which would end a `--`
/// comment and run the rest of the name as SQL.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let statement = without_comments(template);
    let mut sql = String::with_capacity(statement.len());
    let mut rest = statement.as_str();
    while let Some(open) = rest.find('{') {
        sql.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let known = after.find('}').and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(placeholder, _)| *placeholder == name)
                .map(|(_, value)| (close, *value))
        });
        match known {
            Some((close, value)) => {
                sql.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                sql.push('{');
                rest = after;
            }
        }
    }
    sql.push_str(rest);
    sql
}

/// How an attempt outcome is written, whatever the engine.
pub(crate) struct AttemptColumns<'a> {
    pub status: MessageStatus,
    /// The attempt row's outcome.
    pub outcome: &'static str,
    pub http_status: Option<i32>,
    pub provider_message_id: Option<&'a str>,
    pub error: Option<&'a str>,
    /// Delay until the next attempt.
    pub retry_in: Duration,
    /// 1 when the attempt does not count against `max_attempts`, else 0.
    pub uncounted: i32,
}

impl<'a> AttemptColumns<'a> {
    pub(crate) fn of(outcome: &'a AttemptOutcome) -> Self {
        let code = |status: &Option<u16>| status.map(i32::from);
        let ended = |status, outcome, http_status, error| Self {
            status,
            outcome,
            http_status,
            provider_message_id: None,
            error,
            retry_in: Duration::ZERO,
            uncounted: 0,
        };
        match outcome {
            AttemptOutcome::Sent {
                http_status,
                provider_message_id,
            } => Self {
                provider_message_id: provider_message_id.as_deref(),
                ..ended(
                    MessageStatus::Sent,
                    "sent",
                    Some(i32::from(*http_status)),
                    None,
                )
            },
            AttemptOutcome::Retry {
                http_status,
                retry_in,
                error,
            } => Self {
                retry_in: *retry_in,
                ..ended(
                    MessageStatus::Queued,
                    "retry",
                    code(http_status),
                    Some(error),
                )
            },
            AttemptOutcome::Paused {
                http_status,
                retry_in,
                error,
            } => Self {
                retry_in: *retry_in,
                uncounted: 1,
                ..ended(
                    MessageStatus::Queued,
                    "retry",
                    code(http_status),
                    Some(error),
                )
            },
            AttemptOutcome::Failed { http_status, error } => ended(
                MessageStatus::Failed,
                "failed",
                code(http_status),
                Some(error),
            ),
            AttemptOutcome::InDoubt { error } => {
                ended(MessageStatus::InDoubt, "in_doubt", None, Some(error))
            }
        }
    }
}

/// `sql` without its comments (`--` to the end of the line, `/* … */`), its string literals
/// and quoted identifiers (`'…'`, `"…"`, `[…]`) kept as they are.
fn without_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                while chars.next_if(|&next| next != '\n').is_some() {}
                // A comment line goes whole; after a statement's text, the line's end stays
                // (it may separate two tokens).
                let line = out.rfind('\n').map_or(0, |at| at + 1);
                if out[line..].trim().is_empty() {
                    out.truncate(line);
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for next in chars.by_ref() {
                    if last == '*' && next == '/' {
                        break;
                    }
                    last = next;
                }
                out.push(' ');
            }
            '\'' | '"' | '[' => {
                let close = if c == '[' { ']' } else { c };
                out.push(c);
                // A doubled closing quote is an escaped one: the quoted text goes on.
                while let Some(next) = chars.next() {
                    out.push(next);
                    if next == close && chars.next_if_eq(&close).map(|_| out.push(close)).is_none()
                    {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fill_statement_text_never_comments() {
        // PostgreSQL's quote_ident of a name holding a newline: the newline stays.
        let table = "\"odd\nDROP TABLE crm.contact; --\"";
        let sql = fill(
            "-- Reads {table}.\nSELECT 1 /* from {table} */ FROM {table} WHERE x = '--'",
            &[("table", table)],
        );
        assert_eq!(
            sql,
            format!("SELECT 1   FROM {table} WHERE x = '--'"),
            "comments go, a string stays as written"
        );
        assert_eq!(
            without_comments("SELECT [a--b], \"c--\"\"d\", 'e''--f' -- g\n, 1"),
            "SELECT [a--b], \"c--\"\"d\", 'e''--f' \n, 1"
        );
    }

    #[test]
    fn fill_replaces_each_placeholder_once() {
        let names = [("table", "[{key}]"), ("key", "[id]")];
        assert_eq!(
            fill("SELECT {key} FROM {table} WHERE {key} > {other}", &names),
            "SELECT [id] FROM [{key}] WHERE [id] > {other}"
        );
        assert_eq!(fill("{ {key}}", &names), "{ [id]}");
    }

    #[test]
    fn attempt_outcomes_map_to_columns() {
        let columns = |outcome: &AttemptOutcome| {
            let c = AttemptColumns::of(outcome);
            (
                c.status,
                c.outcome,
                c.http_status,
                c.provider_message_id.map(str::to_owned),
                c.error.map(str::to_owned),
                c.retry_in,
                c.uncounted,
            )
        };
        let wait = Duration::from_millis(1500);
        let retry = AttemptOutcome::Retry {
            http_status: Some(429),
            retry_in: wait,
            error: "slow down".into(),
        };
        assert_eq!(
            columns(&retry),
            (
                MessageStatus::Queued,
                "retry",
                Some(429),
                None,
                Some("slow down".into()),
                wait,
                0
            )
        );
        let paused = AttemptOutcome::Paused {
            http_status: Some(401),
            retry_in: wait,
            error: "bad key".into(),
        };
        assert_eq!(
            columns(&paused),
            (
                MessageStatus::Queued,
                "retry",
                Some(401),
                None,
                Some("bad key".into()),
                wait,
                1
            )
        );
        let sent = AttemptOutcome::Sent {
            http_status: 202,
            provider_message_id: Some("abc".into()),
        };
        assert_eq!(
            columns(&sent),
            (
                MessageStatus::Sent,
                "sent",
                Some(202),
                Some("abc".into()),
                None,
                Duration::ZERO,
                0
            )
        );
    }
}
