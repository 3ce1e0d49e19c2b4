//! PostgreSQL engine (tokio-postgres + bb8). Queries live in `sql/postgres/queries/`.
//!
//! Source connections are read-only (`default_transaction_read_only`), and pinned to UTC and
//! ISO dates so that a change value's text form — part of a message's identity — never
//! depends on session settings.

mod horizon;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bb8::{Pool, RunError};
use bb8_postgres::PostgresConnectionManager;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use tokio_postgres::error::SqlState;
use tokio_postgres::row::RowIndex;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, IsolationLevel, NoTls, Row, Statement};

use super::detection::{self, PageRow, Pager};
use super::notify::{self, Driver, Param, Queries};
use super::{
    Invalid, LogConnectionErrors, MergeCall, MergeRow, NameLimit, Record, SourceDb, StoreError,
    StoreResult, TableQueries, VersionCheck, at_position, fill, version_checks,
};
use crate::config::{DatabaseSettings, DetectorSettings};
use crate::model::{ChangedRow, Changes, Mark, MergeFunction, RowPosition, SourceTable};
use crate::telemetry::error_chain;
use horizon::{Epochs, OpenSnapshot};

macro_rules! query {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../sql/postgres/queries/",
            $name,
            ".sql"
        ))
    };
}

type PgPool = Pool<Manager>;

/// bb8-postgres's manager, with two rules more: a connection whose statement was abandoned
/// (it timed out here) is closed, never pooled, so no late answer or late cancel can reach
/// the next statement on it; and each connection prepares a statement once, then only binds
/// and executes it (one round trip instead of two).
struct Manager(PostgresConnectionManager<NoTls>);

struct Connection {
    client: Client,
    /// False from the start of a statement until its answer has been read.
    clean: bool,
    /// Prepared statements by their text; at most [`STATEMENTS_MAX`].
    statements: HashMap<String, Statement>,
}

/// Statements a connection keeps prepared: the fixed queries (the source's, the notification
/// database's), and three per watched table and merge function.
const STATEMENTS_MAX: usize = 256;

impl Connection {
    /// The statement for `sql`, prepared on this connection the first time it is asked for.
    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENTS_MAX {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Forgets a statement that failed: a table or function changed under it ("cached plan
    /// must not change result type") is prepared again next time.
    fn forget(&mut self, sql: &str) {
        self.statements.remove(sql);
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Connection;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Connection, Self::Error> {
        Ok(Connection {
            client: self.0.connect().await?,
            clean: true,
            statements: HashMap::new(),
        })
    }

    async fn is_valid(&self, conn: &mut Connection) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        !conn.clean || conn.client.is_closed()
    }
}

/// How much longer than the server's `statement_timeout` a statement is waited for before
/// it is cancelled from here (a server that cannot answer at all).
const CLIENT_GRACE: Duration = Duration::from_secs(5);

/// A pool whose sessions carry `options` and the server-side statement timeout.
async fn connect(settings: &DatabaseSettings, options: &str) -> StoreResult<Db> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&settings.host)
        .port(settings.port)
        .user(&settings.user)
        .dbname(&settings.database)
        .application_name("herald")
        .connect_timeout(settings.connect_timeout)
        .keepalives_idle(Duration::from_secs(30))
        .options(format!(
            "{options} -c statement_timeout={}",
            settings.statement_timeout.as_millis()
        ));
    if let Some(password) = &settings.password {
        config.password(password.expose_secret());
    }
    let pool = Pool::builder()
        .max_size(settings.pool_size)
        .connection_timeout(settings.connect_timeout)
        .error_sink(Box::new(LogConnectionErrors {
            database: settings.database.clone(),
        }))
        .build(Manager(PostgresConnectionManager::new(config, NoTls)))
        .await
        .map_err(unavailable)?;
    Ok(Db {
        pool,
        timeout: settings.statement_timeout + CLIENT_GRACE,
    })
}

fn unavailable(error: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(error.into())
}

/// SQLSTATE classes that mean "try again": connection trouble, resources, operator
/// intervention, rolled-back transactions, system errors. A cancelled statement
/// (`statement_timeout`) timed out.
fn classify(error: tokio_postgres::Error) -> StoreError {
    if error.code() == Some(&SqlState::QUERY_CANCELED) {
        return StoreError::TimedOut(error.into());
    }
    let transient = error
        .as_db_error()
        .is_none_or(|db| matches!(&db.code().code()[..2], "08" | "40" | "53" | "57" | "58"));
    if transient {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Refused(error.into())
    }
}

fn pool_error(error: RunError<tokio_postgres::Error>) -> StoreError {
    match error {
        RunError::User(error) => classify(error),
        RunError::TimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
    }
}

/// A row's columns read without panicking: a column missing or of another type than the
/// code expects (the schema changed under a running service) is a refused statement with the
/// column's name, recorded where the statement's error goes.
trait Cell {
    fn cell<'a, T: FromSql<'a>>(
        &'a self,
        column: impl RowIndex + std::fmt::Display,
    ) -> StoreResult<T>;
}

impl Cell for Row {
    fn cell<'a, T: FromSql<'a>>(
        &'a self,
        column: impl RowIndex + std::fmt::Display,
    ) -> StoreResult<T> {
        self.try_get(&column).map_err(|error| {
            StoreError::Refused(format!("column {column}: {}", error_chain(&error)).into())
        })
    }
}

/// The queries both roles run, over one pool.
struct Db {
    pool: PgPool,
    /// The longest a statement is waited for here.
    timeout: Duration,
}

impl Db {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        self.query_within(self.timeout, sql, params).await
    }

    /// The query, abandoned (and cancelled on the server) if it has not answered within
    /// `timeout`.
    async fn query_within(
        &self,
        timeout: Duration,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<Row>> {
        let mut conn = self.pool.get().await.map_err(pool_error)?;
        within(&mut conn, timeout, sql, async |client, statement| {
            client.query(statement, params).await
        })
        .await
    }
}

/// One prepared statement on `conn`, waited for at most `timeout`. One that times out is
/// cancelled on the server (so it stops holding locks and a backend) and its connection is
/// closed.
async fn within<T>(
    conn: &mut Connection,
    timeout: Duration,
    sql: &str,
    run: impl AsyncFnOnce(&Client, &Statement) -> Result<T, tokio_postgres::Error>,
) -> StoreResult<T> {
    conn.clean = false;
    let token = conn.client.cancel_token();
    let answer = tokio::time::timeout(timeout, async {
        let statement = conn.statement(sql).await?;
        let result = run(&conn.client, &statement).await;
        if result.is_err() {
            conn.forget(sql);
        }
        result
    })
    .await;
    match answer {
        Ok(result) => {
            conn.clean = true;
            result.map_err(classify)
        }
        Err(_) => {
            if let Err(error) = token.cancel_query(NoTls).await {
                tracing::warn!(error = %error_chain(&error), "could not cancel a statement that timed out");
            }
            Err(timed_out(timeout))
        }
    }
}

/// One of several statements on a connection the caller has marked unclean until they all
/// answered, waited for at most `timeout`.
async fn timed<T>(
    timeout: Duration,
    statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> StoreResult<T> {
    tokio::time::timeout(timeout, statement)
        .await
        .map_err(|_| timed_out(timeout))?
        .map_err(classify)
}

fn timed_out(timeout: Duration) -> StoreError {
    StoreError::TimedOut(format!("no answer within {timeout:?}").into())
}

/// PostgreSQL names have at most 63 bytes (NAMEDATALEN - 1); a longer one is refused as a
/// parameter and cut short as an identifier.
const NAMES: NameLimit = NameLimit {
    engine: "PostgreSQL",
    longest: 63,
    unit: "bytes",
    length: str::len,
};

/// The source's read replica: a hot standby, or the primary itself.
pub struct PgSource {
    db: Db,
    epochs: Mutex<Epochs>,
}

impl PgSource {
    pub async fn connect(settings: &DatabaseSettings) -> StoreResult<Self> {
        let options = "-c default_transaction_read_only=on -c TimeZone=UTC -c DateStyle=ISO,YMD \
                       -c IntervalStyle=iso_8601 -c extra_float_digits=3";
        Ok(PgSource {
            db: connect(settings, options).await?,
            epochs: Mutex::default(),
        })
    }
}

/// The first transaction id this server has not seen assigned, from `source_next_xid.sql`'s
/// row: every id from it on was assigned after that statement.
fn next_xid(row: &Row) -> StoreResult<u64> {
    let xmax = parse_xid(row.cell("xmax")?)?;
    let ahead: i32 = row.cell("ahead")?;
    Ok(xmax + u64::try_from(ahead).unwrap_or_default())
}

fn parse_xid(text: &str) -> StoreResult<u64> {
    text.parse()
        .map_err(|_| StoreError::Refused(format!("not a transaction id: {text:?}").into()))
}

/// A poll's `position`: the cluster and the xmin of the poll's snapshot.
fn position(system_id: &str, xmin: u64) -> String {
    format!("{system_id}:{xmin}")
}

/// The previous poll's snapshot xmin, if it was taken on this cluster (a physical standby
/// shares its primary's system identifier; another cluster's ids mean nothing here).
fn previous_xmin(position: Option<&str>, system_id: &str) -> Option<u64> {
    let (cluster, xmin) = position?.split_once(':')?;
    (cluster == system_id).then(|| xmin.parse().ok())?
}

/// The low 32 bits of a transaction id: what a row's `xmin` holds.
fn low_bits(xid: u64) -> i64 {
    (xid & 0xFFFF_FFFF) as i64
}

fn changed_row(row: &Row) -> StoreResult<ChangedRow> {
    Ok(ChangedRow {
        key: row.cell("key_value")?,
        change: row.cell("change_value")?,
        at: row.cell("change_at")?,
    })
}

#[async_trait::async_trait]
impl SourceDb for PgSource {
    async fn ping(&self) -> StoreResult<()> {
        self.db.query(super::PING, &[]).await.map(drop)
    }

    async fn resolve_table(
        &self,
        source: &SourceTable,
    ) -> StoreResult<Result<TableQueries, Invalid>> {
        if let Err(invalid) = NAMES.check_table(source) {
            return Ok(Err(invalid));
        }
        let rows = self
            .db
            .query(
                query!("source_resolve_table"),
                &[
                    &source.schema,
                    &source.table,
                    &source.key_column,
                    &source.change_column,
                ],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Err(format!(
                "source table {}.{} does not exist (or is not visible to the detector's user)",
                source.schema, source.table
            )));
        };
        let table: String = row.cell("table_name")?;
        let (Some(key), Some(key_type)) = (
            row.cell::<Option<String>>("key_column")?,
            row.cell::<Option<String>>("key_type")?,
        ) else {
            return Ok(Err(format!(
                "key column {:?} does not exist in {table}",
                source.key_column
            )));
        };
        let (Some(change), Some(change_type), Some(is_timestamp)) = (
            row.cell::<Option<String>>("change_column")?,
            row.cell::<Option<String>>("change_type")?,
            row.cell::<Option<bool>>("change_is_timestamp")?,
        ) else {
            return Ok(Err(format!(
                "change column {:?} does not exist in {table}",
                source.change_column
            )));
        };
        if !is_timestamp {
            return Ok(Err(format!(
                "change column {change} of {table} is {change_type}; it must be a timestamp \
                 (timestamp or timestamp with time zone), set when the row is written"
            )));
        }
        let names = [
            ("table", table.as_str()),
            ("key", key.as_str()),
            ("key_type", key_type.as_str()),
            ("change", change.as_str()),
            ("change_type", change_type.as_str()),
        ];
        Ok(Ok(TableQueries {
            changes: fill(query!("source_changes"), &names),
            rows_between: fill(query!("source_rows_between"), &names),
            compare_versions: fill(query!("source_compare_versions"), &names),
            capture: None,
        }))
    }

    async fn resolve_merge(
        &self,
        merge: &MergeFunction,
    ) -> StoreResult<Result<MergeCall, Invalid>> {
        if let Err(invalid) = NAMES.check(&[
            ("merge schema", &merge.schema),
            ("merge function", &merge.name),
        ]) {
            return Ok(Err(invalid));
        }
        let rows = self
            .db
            .query(
                query!("source_resolve_merge"),
                &[&merge.schema, &merge.name],
            )
            .await?;
        match rows.as_slice() {
            [row] => {
                let function: String = row.cell("function_name")?;
                let key_type: String = row.cell("key_type")?;
                Ok(Ok(MergeCall {
                    sql: fill(
                        query!("source_merge_batch"),
                        &[("function", &function), ("key_type", &key_type)],
                    ),
                    batched: true,
                }))
            }
            [] => Ok(Err(format!(
                "merge function {}.{} taking one key argument does not exist",
                merge.schema, merge.name
            ))),
            _ => Ok(Err(format!(
                "merge function {}.{} is overloaded; keep one version taking one key argument",
                merge.schema, merge.name
            ))),
        }
    }

    /// From the replica's horizon: never its own clock, which may run ahead of the
    /// primary's.
    async fn start_mark(&self, _table: &TableQueries) -> StoreResult<Mark> {
        let rows = self.db.query(query!("source_horizon"), &[]).await?;
        let horizon: Option<DateTime<Utc>> = match rows.first() {
            Some(row) => row.cell("horizon")?,
            None => None,
        };
        let horizon = horizon.ok_or_else(|| {
            StoreError::Unavailable(
                "the standby has not replayed a commit since it started; the schedule starts \
                 once it has"
                    .into(),
            )
        })?;
        Ok(Mark::starting_at(horizon))
    }

    /// One poll: the epoch, then one REPEATABLE READ READ ONLY snapshot for all its pages.
    async fn changes(
        &self,
        table: &TableQueries,
        mark: &Mark,
        settings: &DetectorSettings,
    ) -> StoreResult<Changes> {
        let mut conn = self.db.pool.get().await.map_err(pool_error)?;
        let timeout = self.db.timeout;
        // Unclean until the pass has read every answer: a pass cut short closes it.
        conn.clean = false;
        let horizon_query = timed(timeout, conn.statement(query!("source_horizon"))).await?;
        let next_xid_query = timed(timeout, conn.statement(query!("source_next_xid"))).await?;
        let snapshot_query = timed(timeout, conn.statement(query!("source_snapshot"))).await?;
        let page_query = timed(timeout, conn.statement(&table.changes)).await?;
        // Read before the snapshot: every commit the horizon covers is in it.
        let replica = timed(timeout, conn.client.query_one(&horizon_query, &[])).await?;
        let horizon: Option<DateTime<Utc>> = replica.cell("horizon")?;
        let system_id: String = replica.cell("system_id")?;
        if let Some(horizon) = horizon {
            let row = timed(timeout, conn.client.query_one(&next_xid_query, &[])).await?;
            let next = next_xid(&row)?;
            self.epochs.lock().expect("lock").record(next, horizon);
        }

        let transaction = timed(
            timeout,
            conn.client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start(),
        )
        .await?;
        let snapshot = timed(timeout, transaction.query_one(&snapshot_query, &[])).await?;
        let xmin = parse_xid(snapshot.cell(0)?)?;
        let open = OpenSnapshot::new(&self.epochs, xmin);
        let previous = previous_xmin(mark.position.as_deref(), &system_id).map(low_bits);
        let frontier = mark.frontier.as_ref();
        let limit = i64::from(settings.batch_size);
        let mut pager = Pager::new(frontier, settings.batch_size);
        loop {
            let cursor = pager.cursor();
            let page = timed(
                timeout,
                transaction.query(
                    &page_query,
                    &[
                        &mark.hold_back,
                        &cursor.map(|c| &c.change),
                        &cursor.map(|c| &c.key),
                        &frontier.map(|f| &f.change),
                        &frontier.map(|f| &f.key),
                        &previous,
                        &limit,
                    ],
                ),
            )
            .await?;
            let page = page
                .iter()
                .map(|row| {
                    Ok(PageRow {
                        row: changed_row(row)?,
                        fresh: row.cell("fresh")?,
                    })
                })
                .collect::<StoreResult<_>>()?;
            if !pager.take(page) {
                break;
            }
        }
        let read = pager.finish();
        timed(timeout, transaction.commit()).await?;
        conn.clean = true;

        let write_delay = chrono::Duration::from_std(settings.max_write_delay)
            .map_err(|e| StoreError::Refused(e.into()))?;
        let proven = open
            .line()
            .map(|line| horizon.map_or(line, |horizon| horizon.min(line)) - write_delay);
        drop(open);
        Ok(detection::changes(
            mark,
            read,
            horizon,
            proven,
            Some(position(&system_id, xmin)),
        ))
    }

    async fn rows_between(
        &self,
        table: &TableQueries,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&RowPosition>,
        limit: u32,
    ) -> StoreResult<Vec<ChangedRow>> {
        let rows = self
            .db
            .query(
                &table.rows_between,
                &[
                    &from,
                    &to,
                    &after.map(|a| &a.change),
                    &after.map(|a| &a.key),
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter().map(changed_row).collect()
    }

    async fn compare_versions(
        &self,
        table: &TableQueries,
        events: &[(&str, &str)],
    ) -> StoreResult<Vec<Option<VersionCheck>>> {
        let (keys, versions): (Vec<&str>, Vec<&str>) = events.iter().copied().unzip();
        let rows = self
            .db
            .query(&table.compare_versions, &[&keys, &versions])
            .await?;
        version_checks(&rows, events.len())
    }

    async fn merge(
        &self,
        call: &MergeCall,
        keys: &[&str],
        timeout: Duration,
    ) -> StoreResult<Vec<Vec<MergeRow>>> {
        let rows = self.db.query_within(timeout, &call.sql, &[&keys]).await?;
        let mut merged = vec![Vec::new(); keys.len()];
        for row in &rows {
            let fields = match row.cell::<serde_json::Value>("fields")? {
                serde_json::Value::Object(fields) => fields,
                other => {
                    return Err(StoreError::Refused(
                        format!(
                            "the merge function must return rows with named columns, not {other}"
                        )
                        .into(),
                    ));
                }
            };
            at_position(&mut merged, row.cell("position")?)?.push(fields);
        }
        Ok(merged)
    }
}

/// The notification database's driver ([`Notify`](super::notify::Notify)): each statement
/// through the connection's prepared statements, within the statement timeout.
pub(crate) struct PgDriver {
    db: Db,
}

impl PgDriver {
    pub async fn connect(settings: &DatabaseSettings) -> StoreResult<Self> {
        Ok(PgDriver {
            db: connect(settings, "-c TimeZone=UTC").await?,
        })
    }
}

impl Driver for PgDriver {
    type Row = Row;

    const QUERIES: &'static Queries = &notify::POSTGRES;

    async fn query(&self, sql: &'static str, params: &[Param<'_>]) -> StoreResult<Vec<Row>> {
        // Durations as seconds (`make_interval(secs => …)`), lists as arrays.
        let seconds: Vec<f64> = params
            .iter()
            .map(|param| match param {
                Param::Interval(duration) => duration.as_secs_f64(),
                _ => 0.0,
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .zip(&seconds)
            .map(|(param, seconds)| -> &(dyn ToSql + Sync) {
                match param {
                    Param::Text(text) | Param::Json(text) => text,
                    Param::OptText(text) => text,
                    Param::I32(value) => value,
                    Param::I64(value) => value,
                    Param::Bool(value) => value,
                    Param::Time(time) => time,
                    Param::OptTime(time) => time,
                    Param::OptBytes(bytes) => bytes,
                    Param::Interval(_) => seconds,
                    Param::Ids(ids) => ids,
                    Param::Texts(texts) => texts,
                }
            })
            .collect();
        self.db.query(sql, &params).await
    }
}

impl Record for Row {
    fn text(&self, column: &str) -> StoreResult<String> {
        self.cell(column)
    }

    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        self.cell(column)
    }

    fn i32(&self, column: &str) -> StoreResult<i32> {
        self.cell(column)
    }

    fn opt_i32(&self, column: &str) -> StoreResult<Option<i32>> {
        self.cell(column)
    }

    fn opt_i64(&self, column: &str) -> StoreResult<Option<i64>> {
        self.cell(column)
    }

    fn i64(&self, column: &str) -> StoreResult<i64> {
        self.cell(column)
    }

    fn bool(&self, column: &str) -> StoreResult<bool> {
        self.cell(column)
    }

    fn f64(&self, column: &str) -> StoreResult<f64> {
        self.cell(column)
    }

    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>> {
        self.cell(column)
    }

    fn opt_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.cell(column)
    }
}
