//! SQL Server engine (tiberius + bb8). Queries live in `sql/mssql/queries/`.
//!
//! Connections are always encrypted (TLS, `Encrypt=Required`); `trust_cert` only skips the
//! certificate check, and says so in the log. Source connections declare
//! `ApplicationIntent=ReadOnly`, so an availability group listener routes them to a readable
//! secondary (tiberius reports the routing; the connection follows it once).
//!
//! Change values travel as ISO 8601 text (`CONVERT(…, 126)`), which does not depend on
//! `SET LANGUAGE` or `DATEFORMAT` and casts back to the same value, so a change value's text
//! — part of a message's identity — never depends on session settings.
//!
//! A connection is reused only after a request that ended cleanly: one that failed, timed
//! out or was abandoned midway (a dropped future) is closed, so no session returns to the
//! pool mid-response or inside a transaction.
//!
//! Detection, `poll` mode (the default): the horizon h is the secondary's last redone
//! commit time (`source_horizon.sql`), the clock outside an availability group; every pass
//! reads the table again from its hold-back line, whole, and proves the line h − lookback.
//! Exact for transactions that commit within the lookback of their change values (every
//! such row with a change value below the line committed before h, so every page of the
//! pass, each a statement begun after h was read, sees it); later ones are the sweep's.
//! The pages need no common snapshot: a readable secondary runs each statement under
//! snapshot isolation, a primary under READ COMMITTED, and both show every transaction
//! committed before the statement began. A row that commits while a pass runs has a change
//! value above the line (or breaks the lookback) and is read by the next pass; a row whose
//! change value moves while a pass runs is read in its new version, as an update between
//! two passes would be. All statements of a pass share one session: behind a listener that
//! balances read-only sessions, two connections may reach two secondaries with different
//! lag, and the horizon must come from the replica the pages read.
//!
//! Detection, `cdc` mode: see [`cdc`].

use std::time::Duration;

use bb8::{ManageConnection, Pool, PooledConnection, RunError};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use futures::TryStreamExt;
use secrecy::ExposeSecret;
use tiberius::QueryItem;
use tiberius::numeric::Numeric;
use tiberius::{
    AuthMethod, Client, Column, ColumnData, Config, EncryptionLevel, FromSql, Row, ToSql,
};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::detection::{self, PageRow, Pager};
use super::notify::{self, Driver, Param, Queries};
use super::{
    CaptureQueries, Invalid, LogConnectionErrors, MergeCall, MergeRow, NameLimit, Record, SourceDb,
    StoreError, StoreResult, TableQueries, VersionCheck, column_error, fill, version_checks,
};
use crate::config::{DatabaseSettings, DetectionMode, DetectorSettings, env_var_for};
use crate::model::{ChangedRow, Changes, Mark, MergeFunction, RowPosition, SourceTable};

macro_rules! query {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../sql/mssql/queries/",
            $name,
            ".sql"
        ))
    };
}

mod cdc;

type TdsClient = Client<Compat<TcpStream>>;

/// Opens TDS connections for the pool; see the module docs for when one is discarded.
struct Manager {
    config: Config,
    connect_timeout: Duration,
}

struct Connection {
    client: TdsClient,
    /// False from the start of a request until its response has been read in full.
    clean: bool,
}

async fn open(config: Config, connect_timeout: Duration) -> tiberius::Result<TdsClient> {
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(config.get_addr()))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect timed out")
        })??;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

impl ManageConnection for Manager {
    type Connection = Connection;
    type Error = tiberius::error::Error;

    async fn connect(&self) -> Result<Connection, Self::Error> {
        let client = match open(self.config.clone(), self.connect_timeout).await {
            // Read-only routing (an availability group listener sending a ReadOnly session
            // to a secondary) or a gateway's redirect: one hop, as the server asks.
            Err(tiberius::error::Error::Routing { host, port }) => {
                let mut config = self.config.clone();
                config.host(host);
                config.port(port);
                open(config, self.connect_timeout).await?
            }
            other => other?,
        };
        Ok(Connection {
            client,
            clean: true,
        })
    }

    async fn is_valid(&self, conn: &mut Connection) -> Result<(), Self::Error> {
        conn.clean = false;
        conn.client
            .simple_query("SELECT 1")
            .await?
            .into_row()
            .await?;
        conn.clean = true;
        Ok(())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        !conn.clean
    }
}

/// tiberius's own bound on each round trip (30 s unless set, whatever `statement_timeout`
/// says): a little over `statement_timeout`, so that a statement's own bound (`within`) ends
/// it first, as a timeout, and a longer statement_timeout is not cut at 30 s.
fn command_timeout(statement_timeout: Duration) -> Duration {
    statement_timeout + COMMAND_TIMEOUT_MARGIN
}

const COMMAND_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// SQL authentication, always encrypted; `password_key` names the secret for the error.
fn client_config(settings: &DatabaseSettings, password_key: &str) -> StoreResult<Config> {
    let Some(password) = &settings.password else {
        return Err(StoreError::Refused(
            format!(
                "SQL Server logins need a password: set {}",
                env_var_for(password_key)
            )
            .into(),
        ));
    };
    let mut config = Config::new();
    config.host(&settings.host);
    config.port(settings.port);
    config.database(&settings.database);
    config.application_name("herald");
    config.authentication(AuthMethod::sql_server(
        &settings.user,
        password.expose_secret(),
    ));
    config.encryption(EncryptionLevel::Required);
    config.handshake_timeout(Some(settings.connect_timeout));
    config.command_timeout(Some(command_timeout(settings.statement_timeout)));
    if settings.trust_cert {
        tracing::warn!(
            host = %settings.host,
            database = %settings.database,
            "trust_cert is set: the server's certificate is not validated (the connection is still encrypted)"
        );
        config.trust_cert();
    }
    Ok(config)
}

/// Server error numbers worth retrying unchanged, like PostgreSQL's SQLSTATE classes 08, 40,
/// 53, 57 and 58: the statement was fine, the moment was not.
const TRANSIENT: &[u32] = &[
    1205,  // chosen as deadlock victim
    1222,  // lock request timeout
    1204,  // no lock resources left
    3960,  // snapshot isolation update conflict
    701,   // not enough memory
    8645,  // timed out waiting for memory to run the query
    8651,  // memory grant not available
    1105,  // filegroup full (the operator frees space)
    9002,  // transaction log full
    596,   // session being killed
    6005,  // server shutting down
    4060,  // database cannot be opened (recovering, failing over)
    976,   // availability replica not readable (data movement suspended, no read access)
    983,   // availability database neither primary nor secondary (failing over)
    4221,  // readable secondary still waiting to version rows (replica catching up)
    3948,  // readable secondary: transaction ended by a replica state change or ghost cleanup
    3947,  // readable secondary: transaction aborted, the secondary's redo could not keep up
    3961,  // snapshot read of an object a concurrent DDL changed
    982,   // no online secondary replica enabled for read-only access (routing, failover)
    921,   // database not recovered yet
    952,   // database in transition (failing over, coming online)
    40197, // Azure SQL: service error processing the request
    40501, // Azure SQL: service busy
    40540, // Azure SQL: service error
    40613, // Azure SQL: database not currently available
    40143, // Azure SQL: service error
    49918, // Azure SQL: not enough resources
    49919, // Azure SQL: too many operations in progress
    49920, // Azure SQL: too many operations in progress
    10928, // Azure SQL: resource limit reached
];

/// A unique violation: of a constraint (2627), of a unique index (2601).
fn duplicate_key(code: u32) -> bool {
    matches!(code, 2627 | 2601)
}

/// Severity 20 and above: the server ended the session; the next one may well succeed.
const FATAL_SEVERITY: u8 = 20;

fn transient_server_error(code: u32, severity: u8) -> bool {
    severity >= FATAL_SEVERITY || TRANSIENT.contains(&code)
}

/// `Unavailable` for connection trouble and transient server errors; `Refused` when the
/// server rejected the statement (constraint, conversion, an error raised by a merge
/// procedure) or the data could not be read, which fails the same way next time.
fn classify(error: tiberius::error::Error) -> StoreError {
    use tiberius::error::Error;
    if let Error::Tls(reason) = &error
        && certificate_refused(reason)
    {
        return untrusted_certificate(reason);
    }
    if let Error::Server(token) = &error
        && duplicate_key(token.code())
    {
        return StoreError::Conflict(error.into());
    }
    let transient = match &error {
        Error::Server(token) => transient_server_error(token.code(), token.class()),
        Error::Io { .. } | Error::Tls(_) | Error::Protocol(_) | Error::Routing { .. } => true,
        _ => false,
    };
    if transient {
        StoreError::Unavailable(error.into())
    } else {
        StoreError::Refused(error.into())
    }
}

/// Whether a TLS failure is the server's certificate not being trusted: unlike a handshake
/// cut short, trying again changes nothing.
fn certificate_refused(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    reason.contains("certificate") || reason.contains("unknownissuer")
}

/// A certificate this host does not trust: said once, loudly, with what to do. Still
/// `Unavailable`, so that nothing is failed or marked broken for it: every statement waits
/// until an operator fixes the trust and restarts.
fn untrusted_certificate(reason: &str) -> StoreError {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::error!(
            %reason,
            "SQL Server's certificate is not trusted: this does not fix itself; install its CA \
             on this host, or set trust_cert = true for a self-signed one, and restart"
        );
    });
    StoreError::Unavailable(
        format!("SQL Server's certificate is not trusted (this does not fix itself): {reason}")
            .into(),
    )
}

fn pool_error(error: RunError<tiberius::error::Error>) -> StoreError {
    match error {
        RunError::User(error) => classify(error),
        RunError::TimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
    }
}

/// The queries both roles run, over one pool.
struct Db {
    pool: Pool<Manager>,
    /// The longest any one request is waited for (`statement_timeout`).
    timeout: Duration,
}

impl Db {
    async fn connect(settings: &DatabaseSettings, config: Config) -> StoreResult<Self> {
        let manager = Manager {
            config,
            connect_timeout: settings.connect_timeout,
        };
        let pool = Pool::builder()
            .max_size(settings.pool_size)
            .connection_timeout(settings.connect_timeout)
            .error_sink(Box::new(LogConnectionErrors {
                database: settings.database.clone(),
            }))
            .build(manager)
            .await
            .map_err(classify)?;
        Ok(Db {
            pool,
            timeout: settings.statement_timeout,
        })
    }

    /// One connection for statements that must reach the same server.
    async fn session(&self) -> StoreResult<Session<'_>> {
        Ok(Session {
            conn: self.pool.get().await.map_err(pool_error)?,
            timeout: self.timeout,
        })
    }

    /// The rows of the first result set.
    async fn query(&self, sql: &str, params: &[&dyn ToSql]) -> StoreResult<Vec<Row>> {
        self.session().await?.query(sql, params).await
    }
}

/// The request, abandoned if it has not answered within `timeout` (its connection is then
/// closed, not pooled: see the module docs).
async fn within<T>(
    timeout: Duration,
    request: impl Future<Output = tiberius::Result<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(StoreError::TimedOut(
            format!("no answer within {timeout:?}").into(),
        )),
    }
}

/// One pooled connection, for statements that must run on the same session: behind an
/// availability group listener that balances read-only sessions, two connections may reach
/// two secondaries.
struct Session<'a> {
    conn: PooledConnection<'a, Manager>,
    timeout: Duration,
}

impl Session<'_> {
    /// The rows of the first result set.
    async fn query(&mut self, sql: &str, params: &[&dyn ToSql]) -> StoreResult<Vec<Row>> {
        self.conn.clean = false;
        let client = &mut self.conn.client;
        let rows = within(self.timeout, async move {
            client.query(sql, params).await?.into_first_result().await
        })
        .await?;
        self.conn.clean = true;
        Ok(rows)
    }

    /// Up to `limit` rows of the first result set, within `timeout`. A request with more is
    /// abandoned there (its connection closed) rather than read to the end.
    async fn first_rows(
        &mut self,
        timeout: Duration,
        limit: usize,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> StoreResult<Vec<Row>> {
        self.conn.clean = false;
        let client = &mut self.conn.client;
        let (rows, complete) = within(timeout, async move {
            let mut stream = client.query(sql, params).await?;
            let mut rows = Vec::new();
            while let Some(item) = stream.try_next().await? {
                if let QueryItem::Row(row) = item
                    && row.result_index() == 0
                {
                    rows.push(row);
                    if rows.len() == limit {
                        return Ok((rows, false));
                    }
                }
            }
            Ok((rows, true))
        })
        .await?;
        self.conn.clean = complete;
        Ok(rows)
    }
}

fn refused(error: impl Into<super::BoxError>) -> StoreError {
    StoreError::Refused(error.into())
}

/// A column read as `T`; `None` if NULL. A missing column or another type is refused with
/// the column's name.
fn value<'a, T: FromSql<'a>>(row: &'a Row, column: &str) -> StoreResult<Option<T>> {
    row.try_get(column)
        .map_err(|error| column_error(column, error))
}

/// A column the query always fills.
fn required<'a, T: FromSql<'a>>(row: &'a Row, column: &str) -> StoreResult<T> {
    value(row, column)?.ok_or_else(|| refused(format!("column {column} is NULL")))
}

/// The source's read replica.
pub struct MsSource {
    db: Db,
    mode: DetectionMode,
}

impl MsSource {
    /// A source read in `poll` mode; see [`MsSource::with_mode`].
    pub async fn connect(settings: &DatabaseSettings) -> StoreResult<Self> {
        let mut config = client_config(settings, "source.password")?;
        config.readonly(true);
        // Someone else's data: a malformed UTF-16 string reads as U+FFFD instead of failing
        // every read of its row (which would hold up every event behind it).
        config.lossy_utf16_decoding(true);
        Ok(MsSource {
            db: Db::connect(settings, config).await?,
            mode: DetectionMode::Poll,
        })
    }

    /// How changes are read: in `cdc` mode, `resolve_table` also finds each table's capture
    /// instance, and a table without one is an invalid schedule.
    pub fn with_mode(self, mode: DetectionMode) -> Self {
        MsSource { mode, ..self }
    }
}

/// SQL Server names (`sysname`) have at most 128 characters; QUOTENAME returns NULL beyond.
const MAX_NAME: usize = 128;

const NAMES: NameLimit = NameLimit {
    engine: "SQL Server",
    longest: MAX_NAME,
    unit: "characters",
    length: |name| name.encode_utf16().count(),
};

/// A name as QUOTENAME returned it: NULL (a name over 128 characters) is an invalid
/// schedule, never an empty identifier.
fn quoted(name: Option<&str>, what: &str) -> Result<String, Invalid> {
    match name {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(format!(
            "the {what} name cannot be quoted: SQL Server names have at most {MAX_NAME} characters"
        )),
    }
}

/// The widest key text `message.source_key` holds: keys travel as
/// `CAST(key AS nvarchar(400))`.
const MAX_KEY_CHARS: i16 = 400;

/// A column's or parameter's system type, as the catalog numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SqlType<'a> {
    name: &'a str,
    /// In bytes; -1 for `max`.
    max_length: i16,
    precision: u8,
    scale: u8,
}

impl<'a> SqlType<'a> {
    /// Reads `{prefix}_type`, `_max_length`, `_precision` and `_scale`; `None` when the
    /// type is not a system type (CLR types) or the column does not exist.
    fn from_row(row: &'a Row, prefix: &str) -> StoreResult<Option<Self>> {
        let Some(name) = value::<&str>(row, &format!("{prefix}_type"))? else {
            return Ok(None);
        };
        Ok(Some(SqlType {
            name,
            max_length: required(row, &format!("{prefix}_max_length"))?,
            precision: required(row, &format!("{prefix}_precision"))?,
            scale: required(row, &format!("{prefix}_scale"))?,
        }))
    }

    /// How CAST spells the type; `None` for types the engine does not handle.
    fn spec(self) -> Option<String> {
        let SqlType {
            name,
            max_length,
            precision,
            scale,
        } = self;
        let length = |bytes_per_char: i16| match max_length {
            -1 => "max".to_owned(),
            bytes => (bytes / bytes_per_char).to_string(),
        };
        Some(match name {
            "bit" | "tinyint" | "smallint" | "int" | "bigint" | "real" | "float" | "money"
            | "smallmoney" | "uniqueidentifier" | "date" | "datetime" | "smalldatetime" => {
                name.to_owned()
            }
            "decimal" | "numeric" => format!("{name}({precision},{scale})"),
            "datetime2" | "datetimeoffset" | "time" => format!("{name}({scale})"),
            "char" | "varchar" | "binary" | "varbinary" => format!("{name}({})", length(1)),
            "nchar" | "nvarchar" => format!("{name}({})", length(2)),
            _ => return None,
        })
    }

    /// Whether the key's text form fits `source_key` and casts back to the same key.
    fn is_key(self) -> bool {
        match self.name {
            "tinyint" | "smallint" | "int" | "bigint" | "decimal" | "numeric"
            | "uniqueidentifier" => true,
            "char" | "varchar" => (1..=MAX_KEY_CHARS).contains(&self.max_length),
            "nchar" | "nvarchar" => (2..=2 * MAX_KEY_CHARS).contains(&self.max_length),
            _ => false,
        }
    }

    /// Whether the type is a timestamp: `date` and `time` would put every change of a day
    /// (or of every day) at one value, and make the hold-back line meaningless.
    fn is_change(self) -> bool {
        matches!(
            self.name,
            "datetime2" | "datetimeoffset" | "datetime" | "smalldatetime"
        )
    }

    /// For messages: the spelled-out type, else the catalog's name.
    fn describe(self) -> String {
        self.spec().unwrap_or_else(|| self.name.to_owned())
    }
}

/// A watched table checked against the catalog: every name catalog-quoted, every type
/// spelled from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckedTable {
    table: String,
    key: String,
    key_type: String,
    /// ` COLLATE <the key column's collation>` for a string key, else empty.
    key_collate: String,
    change: String,
    change_type: String,
}

impl CheckedTable {
    /// The table's `poll` mode queries (and the sweep's and the renderer's in both modes).
    fn queries(&self) -> TableQueries {
        let names = [
            ("table", self.table.as_str()),
            ("key", self.key.as_str()),
            ("key_type", self.key_type.as_str()),
            ("key_collate", self.key_collate.as_str()),
            ("change", self.change.as_str()),
            ("change_type", self.change_type.as_str()),
        ];
        TableQueries {
            changes: fill(query!("source_changes"), &names),
            rows_between: fill(query!("source_rows_between"), &names),
            compare_versions: fill(query!("source_compare_versions"), &names),
            capture: None,
        }
    }
}

/// Checks the catalog's answer for a watched table.
fn table_from(source: &SourceTable, row: &Row) -> StoreResult<Result<CheckedTable, Invalid>> {
    let table = match quoted(value(row, "table_name")?, "table") {
        Ok(table) => table,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let Some(key) = value::<&str>(row, "key_column")? else {
        return Ok(Err(format!(
            "key column {:?} does not exist in {table}",
            source.key_column
        )));
    };
    let Some(change) = value::<&str>(row, "change_column")? else {
        return Ok(Err(format!(
            "change column {:?} does not exist in {table}",
            source.change_column
        )));
    };
    let key_type = SqlType::from_row(row, "key")?;
    let Some(key_spec) = key_type.filter(|t| t.is_key()).and_then(SqlType::spec) else {
        let found = key_type.map_or_else(|| "a CLR type".to_owned(), SqlType::describe);
        return Ok(Err(format!(
            "key column {key} of {table} is {found}; a key must be an integer, decimal or \
             uniqueidentifier, or a string of at most {MAX_KEY_CHARS} characters"
        )));
    };
    let change_type = SqlType::from_row(row, "change")?;
    let Some(change_spec) = change_type
        .filter(|t| t.is_change())
        .and_then(SqlType::spec)
    else {
        let found = change_type.map_or_else(|| "a CLR type".to_owned(), SqlType::describe);
        return Ok(Err(format!(
            "change column {change} of {table} is {found}; it must be a timestamp set when \
             the row is written: datetime2, datetimeoffset, datetime or smalldatetime"
        )));
    };
    let key_collate = match value::<&str>(row, "key_collation")? {
        None => String::new(),
        Some(name) if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            format!(" COLLATE {name}")
        }
        Some(name) => {
            return Ok(Err(format!(
                "key column {key} of {table} has collation {name:?}, which herald cannot name"
            )));
        }
    };
    Ok(Ok(CheckedTable {
        table,
        key: key.to_owned(),
        key_type: key_spec,
        key_collate,
        change: change.to_owned(),
        change_type: change_spec,
    }))
}

/// A column as a capture instance captures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CapturedColumn {
    /// Its ordinal in the update mask.
    ordinal: i32,
    computed: bool,
}

/// The capture instance `source_cdc_resolve.sql` found for a table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CaptureInstance {
    name: String,
    /// Catalog-quoted; `None` if QUOTENAME refused it.
    change_table: Option<String>,
    key: Option<CapturedColumn>,
    change: Option<CapturedColumn>,
}

impl CaptureInstance {
    fn from_row(row: &Row) -> StoreResult<Self> {
        let column = |prefix: &str| -> StoreResult<Option<CapturedColumn>> {
            let Some(ordinal) = value::<i32>(row, &format!("{prefix}_ordinal"))? else {
                return Ok(None);
            };
            Ok(Some(CapturedColumn {
                ordinal,
                computed: value(row, &format!("{prefix}_is_computed"))?.unwrap_or(false),
            }))
        };
        Ok(CaptureInstance {
            name: row.text("capture_instance")?,
            change_table: row.opt_text("change_table")?,
            key: column("key")?,
            change: column("change")?,
        })
    }
}

/// Checks that `instance` (`None`: the table has none) can feed `cdc` mode and builds its
/// page query.
fn capture_queries(
    table: &CheckedTable,
    instance: Option<CaptureInstance>,
) -> Result<CaptureQueries, Invalid> {
    let Some(instance) = instance else {
        return Err(format!(
            "{} has no change data capture instance the detector can read (detector.mode = \
             \"cdc\"): enable it on the primary (sys.sp_cdc_enable_db, then \
             sys.sp_cdc_enable_table), grant the detector's login SELECT on the cdc schema, \
             or use detector.mode = \"poll\"",
            table.table
        ));
    };
    let name = &instance.name;
    let change_table = quoted(instance.change_table.as_deref(), "change table")?;
    for (what, column, captured) in [
        ("key", &table.key, instance.key),
        ("change", &table.change, instance.change),
    ] {
        match captured {
            None => {
                return Err(format!(
                    "capture instance {name} of {} does not capture the {what} column \
                     {column}; capture it (a new capture instance with it in \
                     @captured_column_list)",
                    table.table
                ));
            }
            Some(CapturedColumn { computed: true, .. }) => {
                return Err(format!(
                    "the {what} column {column} of {} is computed: change data capture \
                     records computed columns as NULL, so cdc mode cannot read it",
                    table.table
                ));
            }
            Some(_) => {}
        }
    }
    let change_ordinal = instance
        .change
        .expect("checked above: the change column is captured")
        .ordinal
        .to_string();
    Ok(CaptureQueries {
        changes: fill(
            query!("source_cdc_changes"),
            &[
                ("change_table", &change_table),
                ("key", &table.key),
                ("change", &table.change),
                ("change_ordinal", &change_ordinal),
            ],
        ),
        instance: instance.name,
    })
}

/// The horizon minus the lookback: the line below which a `poll` mode pass proves every
/// row read (`None`: no horizon yet).
fn proven_line(
    horizon: Option<DateTime<Utc>>,
    lookback: Duration,
) -> StoreResult<Option<DateTime<Utc>>> {
    let lookback = chrono::Duration::from_std(lookback).map_err(refused)?;
    Ok(horizon.map(|horizon| horizon - lookback))
}

fn changed_row(row: &Row) -> StoreResult<ChangedRow> {
    Ok(ChangedRow {
        key: row.text("key_value")?,
        change: row.text("change_value")?,
        at: required(row, "change_at")?,
    })
}

/// Checks the catalog's answer for a merge procedure and builds its call.
fn merge_call_from(row: &Row) -> StoreResult<Result<MergeCall, Invalid>> {
    let procedure = match quoted(value(row, "procedure_name")?, "merge procedure") {
        Ok(procedure) => procedure,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let parameters: i32 = required(row, "parameter_count")?;
    if parameters != 1 {
        return Ok(Err(format!(
            "merge procedure {procedure} takes {parameters} parameters; it must take exactly one, the key"
        )));
    }
    if value::<bool>(row, "key_is_output")? == Some(true) {
        return Ok(Err(format!(
            "the parameter of merge procedure {procedure} is OUTPUT; it must be the key, an input"
        )));
    }
    let Some(key_type) = SqlType::from_row(row, "key")?.and_then(SqlType::spec) else {
        return Ok(Err(format!(
            "the parameter of merge procedure {procedure} has a type a key cannot be cast to"
        )));
    };
    Ok(Ok(MergeCall {
        sql: fill(
            query!("source_merge"),
            &[("procedure", &procedure), ("key_type", &key_type)],
        ),
        batched: false,
    }))
}

/// A merge result value as JSON: numbers as numbers, text as text, dates and times in ISO
/// 8601 (with the offset for datetimeoffset), uniqueidentifiers as SQL Server prints them,
/// binary as `0x…` hex.
fn json_value(data: &ColumnData<'static>) -> tiberius::Result<serde_json::Value> {
    use serde_json::Value;
    fn or_null<T>(value: Option<T>, to_json: impl FnOnce(T) -> Value) -> Value {
        value.map_or(Value::Null, to_json)
    }
    Ok(match data {
        ColumnData::U8(v) => or_null(*v, Value::from),
        ColumnData::I16(v) => or_null(*v, Value::from),
        ColumnData::I32(v) => or_null(*v, Value::from),
        ColumnData::I64(v) => or_null(*v, Value::from),
        // real as it prints (0.1, not 0.100000001490116).
        ColumnData::F32(v) => or_null(*v, |f| {
            f.to_string()
                .parse::<f64>()
                .map_or(Value::Null, Value::from)
        }),
        ColumnData::F64(v) => or_null(*v, Value::from),
        ColumnData::Bit(v) => or_null(*v, Value::from),
        ColumnData::String(v) => or_null(v.as_deref(), Value::from),
        ColumnData::Guid(v) => or_null(*v, |guid| format!("{guid:X}").into()),
        ColumnData::Binary(v) => or_null(v.as_deref(), |bytes| {
            let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
            format!("0x{hex}").into()
        }),
        ColumnData::Numeric(v) => or_null(*v, numeric_json),
        ColumnData::Xml(v) => or_null(v.as_deref(), |xml| xml.to_string().into()),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            or_null(NaiveDateTime::from_sql(data)?, |t| date_time(t).into())
        }
        ColumnData::DateTimeOffset(_) => {
            or_null(chrono::DateTime::<FixedOffset>::from_sql(data)?, |t| {
                format!("{}{}", date_time(t.naive_local()), t.format("%:z")).into()
            })
        }
        ColumnData::Date(_) => or_null(NaiveDate::from_sql(data)?, |d| {
            d.format("%Y-%m-%d").to_string().into()
        }),
        ColumnData::Time(_) => or_null(NaiveTime::from_sql(data)?, |t| time_of_day(t).into()),
    })
}

/// ISO 8601, with as many fractional digits as the value needs.
fn date_time(t: NaiveDateTime) -> String {
    format!("{}T{}", t.format("%Y-%m-%d"), time_of_day(t.time()))
}

fn time_of_day(t: NaiveTime) -> String {
    let whole = t.format("%H:%M:%S");
    match t.nanosecond() {
        0 => whole.to_string(),
        nanos => format!("{whole}.{}", format!("{nanos:09}").trim_end_matches('0')),
    }
}

/// Whole numbers stay exact; others are floats, as PostgreSQL's numeric reaches the
/// templates (format exact amounts as text in the merge procedure).
fn numeric_json(n: Numeric) -> serde_json::Value {
    match i64::try_from(n.value()) {
        Ok(whole) if n.scale() == 0 => whole.into(),
        _ => f64::from(n).into(),
    }
}

/// One row of merge output: column name → value. Every column needs a name.
fn merge_row<'a>(
    cells: impl IntoIterator<Item = (&'a Column, &'a ColumnData<'static>)>,
) -> Result<MergeRow, String> {
    cells
        .into_iter()
        .enumerate()
        .map(|(index, (column, data))| {
            if column.name().is_empty() {
                return Err(format!(
                    "column {} of the merge procedure's result has no name",
                    index + 1
                ));
            }
            let value =
                json_value(data).map_err(|error| format!("column {}: {error}", column.name()))?;
            Ok((column.name().to_owned(), value))
        })
        .collect()
}

/// One `poll` mode pass (see the module docs): the horizon, then the pages, on one session.
async fn poll(
    session: &mut Session<'_>,
    table: &TableQueries,
    mark: &Mark,
    settings: &DetectorSettings,
) -> StoreResult<Changes> {
    let rows = session.query(query!("source_horizon"), &[]).await?;
    let horizon = match rows.first() {
        Some(row) => value(row, "horizon")?,
        None => None,
    };
    let proven = proven_line(horizon, settings.lookback)?;
    let frontier = mark.frontier.as_ref();
    let limit = i64::from(settings.batch_size);
    let mut pager = Pager::new(frontier, settings.batch_size);
    loop {
        let cursor = pager.cursor();
        let rows = session
            .query(
                &table.changes,
                &[
                    &mark.hold_back,
                    &cursor.map(|c| c.change.as_str()),
                    &cursor.map(|c| c.key.as_str()),
                    &frontier.map(|f| f.change.as_str()),
                    &frontier.map(|f| f.key.as_str()),
                    &limit,
                ],
            )
            .await?;
        let page = rows
            .iter()
            .map(|row| {
                Ok(PageRow {
                    row: changed_row(row)?,
                    fresh: required(row, "fresh")?,
                })
            })
            .collect::<StoreResult<_>>()?;
        if !pager.take(page) {
            break;
        }
    }
    Ok(detection::changes(
        mark,
        pager.finish(),
        horizon,
        proven,
        None,
    ))
}

#[async_trait::async_trait]
impl SourceDb for MsSource {
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
                "source table {}.{} does not exist (or is not visible to the detector's login)",
                source.schema, source.table
            )));
        };
        let table = match table_from(source, row)? {
            Ok(table) => table,
            Err(invalid) => return Ok(Err(invalid)),
        };
        let queries = table.queries();
        if self.mode == DetectionMode::Poll {
            return Ok(Ok(queries));
        }
        let table_id: i32 = required(row, "table_id")?;
        let key_name = row.text("key_name")?;
        let change_name = row.text("change_name")?;
        let found = self
            .db
            .query(
                query!("source_cdc_resolve"),
                &[&table_id, &key_name, &change_name],
            )
            .await?;
        let instance = found.first().map(CaptureInstance::from_row).transpose()?;
        Ok(
            capture_queries(&table, instance).map(|capture| TableQueries {
                capture: Some(capture),
                ..queries
            }),
        )
    }

    async fn resolve_merge(
        &self,
        merge: &MergeFunction,
    ) -> StoreResult<Result<MergeCall, Invalid>> {
        if let Err(invalid) = NAMES.check(&[
            ("merge schema", &merge.schema),
            ("merge procedure", &merge.name),
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
        match rows.first() {
            Some(row) => merge_call_from(row),
            None => Ok(Err(format!(
                "merge procedure {}.{} does not exist (or is not visible to the renderer's login)",
                merge.schema, merge.name
            ))),
        }
    }

    async fn start_mark(&self, table: &TableQueries) -> StoreResult<Mark> {
        let mut session = self.db.session().await?;
        if let Some(capture) = &table.capture {
            return cdc::start(&mut session, capture).await;
        }
        // From the replica's horizon: never its own clock, which may run ahead of the
        // primary's.
        let rows = session.query(query!("source_horizon"), &[]).await?;
        let horizon = match rows.first() {
            Some(row) => value(row, "horizon")?,
            None => None,
        };
        let horizon = horizon.ok_or_else(|| {
            StoreError::Unavailable(
                "the secondary has not redone a commit yet; the schedule starts once it has".into(),
            )
        })?;
        Ok(Mark::starting_at(horizon))
    }

    async fn changes(
        &self,
        table: &TableQueries,
        mark: &Mark,
        settings: &DetectorSettings,
    ) -> StoreResult<Changes> {
        let mut session = self.db.session().await?;
        match (&table.capture, settings.mode) {
            (Some(capture), DetectionMode::Cdc) => {
                cdc::changes(&mut session, capture, mark, settings).await
            }
            (None, DetectionMode::Cdc) => Err(refused(
                "detector.mode is \"cdc\" but the SQL Server source resolved this table for \
                 poll mode: connect it with MsSource::with_mode",
            )),
            (_, DetectionMode::Poll) => poll(&mut session, table, mark, settings).await,
        }
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
                    &after.map(|a| a.change.as_str()),
                    &after.map(|a| a.key.as_str()),
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
        #[derive(serde::Serialize)]
        struct Event<'a> {
            position: usize,
            key: &'a str,
            version: &'a str,
        }
        let batch: Vec<Event<'_>> = (1..)
            .zip(events)
            .map(|(position, &(key, version))| Event {
                position,
                key,
                version,
            })
            .collect();
        let batch = serde_json::to_string(&batch).expect("events always serialize");
        let rows = self.db.query(&table.compare_versions, &[&batch]).await?;
        version_checks(&rows, events.len())
    }

    /// One `EXEC` per key, in turn on one session: a procedure's result sets cannot be told
    /// apart from another's in one batch.
    async fn merge(
        &self,
        call: &MergeCall,
        keys: &[&str],
        timeout: Duration,
    ) -> StoreResult<Vec<Vec<MergeRow>>> {
        let mut session = self.db.session().await?;
        let mut merged = Vec::with_capacity(keys.len());
        for key in keys {
            let rows = session.first_rows(timeout, 2, &call.sql, &[key]).await?;
            merged.push(
                rows.iter()
                    .map(|row| merge_row(row.cells()).map_err(refused))
                    .collect::<StoreResult<_>>()?,
            );
        }
        Ok(merged)
    }
}

/// The notification database's driver ([`Notify`](super::notify::Notify)): each statement
/// on a pooled session, within `statement_timeout`.
pub(crate) struct MsDriver {
    db: Db,
}

impl MsDriver {
    pub async fn connect(settings: &DatabaseSettings) -> StoreResult<Self> {
        let config = client_config(settings, "notify.password")?;
        Ok(MsDriver {
            db: Db::connect(settings, config).await?,
        })
    }
}

/// What a parameter becomes before SQL Server takes it: durations as int milliseconds (for
/// `DATEADD`), lists as JSON arrays (for OPENJSON).
enum Converted {
    Millis(i32),
    Json(String),
    Same,
}

impl Converted {
    fn of(param: &Param<'_>) -> Self {
        match param {
            Param::Interval(duration) => Converted::Millis(notify::millis(*duration)),
            Param::Ids(ids) => Converted::Json(serde_json::to_string(ids).expect("ids serialize")),
            Param::Texts(texts) => {
                Converted::Json(serde_json::to_string(texts).expect("texts serialize"))
            }
            _ => Converted::Same,
        }
    }
}

impl Driver for MsDriver {
    type Row = Row;

    const QUERIES: &'static Queries = &notify::MSSQL;

    async fn query(&self, sql: &'static str, params: &[Param<'_>]) -> StoreResult<Vec<Row>> {
        let converted: Vec<Converted> = params.iter().map(Converted::of).collect();
        let params: Vec<&dyn ToSql> = params
            .iter()
            .zip(&converted)
            .map(|(param, converted)| -> &dyn ToSql {
                match (param, converted) {
                    (_, Converted::Millis(millis)) => millis,
                    (_, Converted::Json(list)) => list,
                    (Param::Text(text) | Param::Json(text), _) => text,
                    (Param::OptText(text), _) => text,
                    (Param::I32(value), _) => value,
                    (Param::I64(value), _) => value,
                    (Param::Bool(value), _) => value,
                    (Param::Time(time), _) => time,
                    (Param::OptTime(time), _) => time,
                    (Param::OptBytes(bytes), _) => bytes,
                    (Param::Interval(_) | Param::Ids(_) | Param::Texts(_), Converted::Same) => {
                        unreachable!("converted above")
                    }
                }
            })
            .collect();
        self.db.query(sql, &params).await
    }
}

impl Record for Row {
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(required::<&str>(self, column)?.to_owned())
    }

    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        Ok(value::<&str>(self, column)?.map(str::to_owned))
    }

    fn i32(&self, column: &str) -> StoreResult<i32> {
        required(self, column)
    }

    fn opt_i32(&self, column: &str) -> StoreResult<Option<i32>> {
        value(self, column)
    }

    fn opt_i64(&self, column: &str) -> StoreResult<Option<i64>> {
        value(self, column)
    }

    fn i64(&self, column: &str) -> StoreResult<i64> {
        required(self, column)
    }

    fn bool(&self, column: &str) -> StoreResult<bool> {
        required(self, column)
    }

    fn f64(&self, column: &str) -> StoreResult<f64> {
        required(self, column)
    }

    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>> {
        required(self, column)
    }

    fn opt_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        value(self, column)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::{Value, json};
    use tiberius::ColumnType;
    use tiberius::time::{Date, DateTime as TdsDateTime, DateTime2, DateTimeOffset, Time};
    use tiberius::xml::XmlData;

    use super::*;

    fn io_error() -> tiberius::error::Error {
        tiberius::error::Error::Io {
            kind: std::io::ErrorKind::ConnectionReset,
            message: "reset by peer".into(),
        }
    }

    #[test]
    fn transient_server_errors_are_retried_and_the_rest_refused() {
        for (code, severity) in [
            (1205, 13),  // deadlock victim
            (1222, 16),  // lock timeout
            (976, 14),   // replica not readable
            (4221, 16),  // readable secondary catching up
            (40613, 17), // Azure: database unavailable
            (4060, 11),  // database cannot be opened (failover)
            (3948, 16),  // readable secondary: replica state change
            (3947, 16),  // readable secondary: redo behind
            (3961, 16),  // snapshot read after a concurrent DDL
            (982, 14),   // no readable secondary online
            (921, 14),   // database not recovered yet
            (952, 16),   // database in transition
            (9002, 17),  // log full
            (3314, 21),  // any error that ends the session
        ] {
            assert!(transient_server_error(code, severity), "{code}");
        }
        for (code, severity) in [
            (2627, 14),  // duplicate key
            (547, 16),   // foreign key / check constraint
            (2628, 16),  // string would be truncated
            (245, 16),   // conversion failed
            (208, 16),   // invalid object name
            (50000, 16), // THROW in a merge procedure
            (18456, 14), // login failed
        ] {
            assert!(!transient_server_error(code, severity), "{code}");
        }
    }

    #[test]
    fn statement_timeout_bounds_each_round_trip() {
        let mut settings = crate::config::Settings::load_from(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config")),
            "test",
        )
        .expect("test settings")
        .notify;
        settings.password = Some("p".to_owned().into());
        settings.statement_timeout = Duration::from_secs(120);
        let config = client_config(&settings, "notify.password").unwrap();
        assert_eq!(
            config.get_command_timeout(),
            Some(Duration::from_secs(125)),
            "not tiberius's 30 s"
        );
    }

    #[test]
    fn only_unique_violations_are_conflicts() {
        assert!(duplicate_key(2627) && duplicate_key(2601));
        assert!(!duplicate_key(547) && !duplicate_key(1205));
    }

    #[test]
    fn connection_trouble_is_unavailable_and_bad_data_refused() {
        use tiberius::error::Error;
        let unavailable = [
            io_error(),
            Error::Tls("handshake failed".into()),
            Error::Protocol("unexpected token".into()),
            Error::Routing {
                host: "replica".into(),
                port: 1433,
            },
        ];
        for error in unavailable {
            assert!(classify(error).is_unavailable());
        }
        for error in [Error::Conversion("not an int".into()), Error::Utf16] {
            assert!(!classify(error).is_unavailable());
        }
        // A certificate not trusted waits like an outage, but says what it is.
        let untrusted = classify(Error::Tls("invalid peer certificate: UnknownIssuer".into()));
        assert!(untrusted.is_unavailable());
        assert!(
            crate::telemetry::error_chain(&untrusted).contains("does not fix itself"),
            "{untrusted}"
        );
        let cut_short = classify(Error::Tls("handshake eof".into()));
        assert!(!crate::telemetry::error_chain(&cut_short).contains("certificate"));
        assert!(pool_error(RunError::TimedOut).is_unavailable());
        assert!(pool_error(RunError::User(io_error())).is_unavailable());
    }

    #[test]
    fn durations_bind_as_int_milliseconds_and_lists_as_json() {
        let converted = |param| match Converted::of(&param) {
            Converted::Millis(millis) => json!(millis),
            Converted::Json(list) => json!(list),
            Converted::Same => Value::Null,
        };
        let lease = Duration::from_millis(1500);
        assert_eq!(converted(Param::Interval(lease)), json!(1500));
        assert_eq!(converted(Param::Ids(&[7, 42])), json!("[7,42]"));
        assert_eq!(converted(Param::Texts(&["sms"])), json!("[\"sms\"]"));
        assert_eq!(converted(Param::Text("sms")), Value::Null);
    }

    fn days_since(year: i32, date: NaiveDate) -> i64 {
        date.signed_duration_since(NaiveDate::from_ymd_opt(year, 1, 1).unwrap())
            .num_days()
    }

    fn datetime2(y: i32, m: u32, d: u32, seconds: u64, increments: u64) -> DateTime2 {
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let days = u32::try_from(days_since(1, date)).unwrap();
        DateTime2::new(
            Date::new(days),
            Time::new(seconds * 10_000_000 + increments, 7),
        )
    }

    fn check(data: ColumnData<'static>, expected: Value) {
        assert_eq!(json_value(&data).unwrap(), expected, "{data:?}");
    }

    #[test]
    fn merge_values_become_json() {
        check(ColumnData::I64(Some(42)), json!(42));
        check(ColumnData::I32(None), Value::Null);
        check(ColumnData::I16(Some(-3)), json!(-3));
        check(ColumnData::U8(Some(7)), json!(7));
        check(ColumnData::Bit(Some(true)), json!(true));
        check(ColumnData::F64(Some(1.5)), json!(1.5));
        check(ColumnData::F32(Some(0.1)), json!(0.1));
        check(ColumnData::String(Some(Cow::Borrowed("Ada"))), json!("Ada"));
        check(ColumnData::String(None), Value::Null);
        check(
            ColumnData::Guid(Some(
                tiberius::Uuid::parse_str("0f5e2a1c-7d3b-4c8e-9a6f-1b2c3d4e5f60").unwrap(),
            )),
            json!("0F5E2A1C-7D3B-4C8E-9A6F-1B2C3D4E5F60"),
        );
        check(
            ColumnData::Binary(Some(Cow::Borrowed(&[0xde, 0xad, 0x01]))),
            json!("0xDEAD01"),
        );
        check(
            ColumnData::Numeric(Some(Numeric::new_with_scale(1250, 2))),
            json!(12.5),
        );
        check(
            ColumnData::Numeric(Some(Numeric::new_with_scale(42, 0))),
            json!(42),
        );
        check(
            ColumnData::Xml(Some(Cow::Owned(XmlData::new("<a>1</a>")))),
            json!("<a>1</a>"),
        );
        // 2026-12-01 09:30 UTC, as datetime2(7), with and without a fraction.
        let starts = 9 * 3600 + 30 * 60;
        check(
            ColumnData::DateTime2(Some(datetime2(2026, 12, 1, starts, 0))),
            json!("2026-12-01T09:30:00"),
        );
        check(
            ColumnData::DateTime2(Some(datetime2(2026, 12, 1, starts, 1_234_567))),
            json!("2026-12-01T09:30:00.1234567"),
        );
        // datetimeoffset: the instant in UTC, shown at its offset.
        check(
            ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                datetime2(2026, 12, 1, starts, 5_000_000),
                60,
            ))),
            json!("2026-12-01T10:30:00.5+01:00"),
        );
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        check(
            ColumnData::Date(Some(Date::new(u32::try_from(days_since(1, date)).unwrap()))),
            json!("2026-12-01"),
        );
        check(
            ColumnData::Time(Some(Time::new(starts * 10_000_000, 7))),
            json!("09:30:00"),
        );
        // datetime: days since 1900, 1/300 s ticks.
        check(
            ColumnData::DateTime(Some(TdsDateTime::new(
                i32::try_from(days_since(1900, date)).unwrap(),
                u32::try_from(starts * 300).unwrap(),
            ))),
            json!("2026-12-01T09:30:00"),
        );
    }

    #[test]
    fn merge_rows_map_column_names_to_values() {
        let columns = [
            Column::new("recipient".into(), ColumnType::NVarchar),
            Column::new("locale".into(), ColumnType::NVarchar),
            Column::new("visits".into(), ColumnType::Int4),
        ];
        let values = [
            ColumnData::String(Some(Cow::Borrowed("ada@example.com"))),
            ColumnData::String(None),
            ColumnData::I32(Some(3)),
        ];
        let row = merge_row(columns.iter().zip(values.iter())).unwrap();
        assert_eq!(
            Value::Object(row),
            json!({"recipient": "ada@example.com", "locale": null, "visits": 3})
        );

        let unnamed = [Column::new(String::new(), ColumnType::Int4)];
        let error = merge_row(unnamed.iter().zip(values[2..].iter())).unwrap_err();
        assert!(
            error.contains("column 1") && error.contains("no name"),
            "{error}"
        );
    }

    fn sql_type(name: &str, max_length: i16, precision: u8, scale: u8) -> SqlType<'_> {
        SqlType {
            name,
            max_length,
            precision,
            scale,
        }
    }

    #[test]
    fn catalog_types_are_spelled_for_cast() {
        for (ty, expected) in [
            (sql_type("bigint", 8, 19, 0), Some("bigint")),
            (sql_type("nvarchar", 100, 0, 0), Some("nvarchar(50)")),
            (sql_type("nvarchar", -1, 0, 0), Some("nvarchar(max)")),
            (sql_type("varchar", 20, 0, 0), Some("varchar(20)")),
            (sql_type("nchar", 20, 0, 0), Some("nchar(10)")),
            (sql_type("decimal", 9, 10, 2), Some("decimal(10,2)")),
            (sql_type("datetime2", 8, 27, 7), Some("datetime2(7)")),
            (
                sql_type("datetimeoffset", 8, 30, 3),
                Some("datetimeoffset(3)"),
            ),
            (sql_type("datetime", 8, 23, 3), Some("datetime")),
            (
                sql_type("uniqueidentifier", 16, 0, 0),
                Some("uniqueidentifier"),
            ),
            (sql_type("sql_variant", 8016, 0, 0), None),
            (sql_type("timestamp", 8, 0, 0), None),
        ] {
            assert_eq!(ty.spec().as_deref(), expected, "{ty:?}");
        }
    }

    #[test]
    fn keys_must_round_trip_through_nvarchar_400_and_changes_be_timestamps() {
        for key in [
            sql_type("int", 4, 10, 0),
            sql_type("bigint", 8, 19, 0),
            sql_type("decimal", 9, 18, 0),
            sql_type("uniqueidentifier", 16, 0, 0),
            sql_type("nvarchar", 800, 0, 0),
            sql_type("varchar", 400, 0, 0),
        ] {
            assert!(key.is_key(), "{key:?}");
        }
        for not_key in [
            sql_type("nvarchar", 802, 0, 0),
            sql_type("nvarchar", -1, 0, 0),
            sql_type("varchar", 401, 0, 0),
            sql_type("float", 8, 53, 0),
            sql_type("datetime2", 8, 27, 7),
            sql_type("varbinary", 16, 0, 0),
        ] {
            assert!(!not_key.is_key(), "{not_key:?}");
        }
        for change in ["datetime2", "datetime", "datetimeoffset", "smalldatetime"] {
            assert!(sql_type(change, 8, 0, 0).is_change(), "{change}");
        }
        // `date` and `time` are not timestamps; `timestamp` is SQL Server's rowversion.
        for not_change in ["date", "time", "int", "timestamp", "nvarchar"] {
            assert!(!sql_type(not_change, 8, 0, 0).is_change(), "{not_change}");
        }
    }

    #[test]
    fn names_over_128_characters_are_an_invalid_schedule() {
        let long = "t".repeat(129);
        let error = NAMES.check(&[("table", &long)]).unwrap_err();
        assert!(
            error.contains("129 characters") && error.contains("128"),
            "{error}"
        );
        assert!(NAMES.check(&[("table", "")]).is_err());
        assert!(
            NAMES
                .check(&[("table", &"t".repeat(128)), ("schema", "crm")])
                .is_ok()
        );

        // QUOTENAME's NULL is never an empty identifier.
        let error = quoted(None, "table").unwrap_err();
        assert!(error.contains("128"), "{error}");
        assert!(quoted(Some(""), "table").is_err());
        assert_eq!(quoted(Some("[a]]b]"), "table").unwrap(), "[a]]b]");
    }

    /// The statement, without its comment lines.
    fn statement(sql: &str) -> String {
        sql.lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn contact() -> CheckedTable {
        CheckedTable {
            table: "[crm].[contact]".into(),
            key: "[contact_id]".into(),
            key_type: "bigint".into(),
            key_collate: String::new(),
            change: "[modified_at]".into(),
            change_type: "datetime2(7)".into(),
        }
    }

    #[test]
    fn templates_fill_to_tsql_for_a_sample_table() {
        let queries = contact().queries();
        assert_eq!(
            statement(&queries.changes),
            "\
SELECT TOP (@P6)
       CAST([contact_id] AS nvarchar(400)) AS key_value,
       CONVERT(nvarchar(40), [modified_at], 126) AS change_value,
       CAST(CASE WHEN @P4 IS NULL
                   OR [modified_at] > CONVERT(datetime2(7), @P4, 126)
                   OR ([modified_at] = CONVERT(datetime2(7), @P4, 126)
                       AND [contact_id] > CAST(@P5 AS bigint))
                 THEN 1 ELSE 0 END AS bit) AS fresh,
       CAST([modified_at] AS datetimeoffset(7)) AS change_at
  FROM [crm].[contact]
 WHERE [modified_at] >= COALESCE(CONVERT(datetime2(7), @P2, 126), CAST(@P1 AS datetime2(7)))
   AND (@P2 IS NULL
        OR [modified_at] > CONVERT(datetime2(7), @P2, 126)
        OR [contact_id] > CAST(@P3 AS bigint))
 ORDER BY [modified_at], [contact_id];"
        );
        assert_eq!(
            statement(&queries.rows_between),
            "\
SELECT TOP (@P5)
       CAST([contact_id] AS nvarchar(400)) AS key_value,
       CONVERT(nvarchar(40), [modified_at], 126) AS change_value,
       CAST([modified_at] AS datetimeoffset(7)) AS change_at
  FROM [crm].[contact]
 WHERE [modified_at] >= COALESCE(CONVERT(datetime2(7), @P3, 126), CAST(@P1 AS datetime2(7)))
   AND [modified_at] < CAST(@P2 AS datetime2(7))
   AND (@P3 IS NULL
        OR [modified_at] > CONVERT(datetime2(7), @P3, 126)
        OR [contact_id] > CAST(@P4 AS bigint))
 ORDER BY [modified_at], [contact_id];"
        );
        assert_eq!(
            statement(&queries.compare_versions),
            "\
SELECT e.position,
       CONVERT(nvarchar(40), t.[modified_at], 126) AS change_value,
       CASE WHEN t.[modified_at] IS NULL THEN 1
            WHEN t.[modified_at] < CONVERT(datetime2(7), e.version, 126) THEN -1
            WHEN t.[modified_at] > CONVERT(datetime2(7), e.version, 126) THEN 1
            ELSE 0 END AS ordering
  FROM OPENJSON(@P1) WITH (position int, [key] nvarchar(max), version nvarchar(64)) AS e
  JOIN [crm].[contact] AS t ON t.[contact_id] = CAST(e.[key] AS bigint);"
        );
        assert_eq!(queries.capture, None);
        for sql in [
            &queries.changes,
            &queries.rows_between,
            &queries.compare_versions,
        ] {
            assert!(!sql.contains('{'), "unfilled placeholder in {sql}");
        }
        // A string key compares in its column's collation, not the events' text's.
        let voucher = CheckedTable {
            key: "[code]".into(),
            key_type: "nvarchar(20)".into(),
            key_collate: " COLLATE Latin1_General_100_BIN2".into(),
            ..contact()
        };
        let compare = voucher.queries().compare_versions;
        assert!(
            compare.contains(
                "t.[code] = CAST(e.[key] AS nvarchar(20)) COLLATE Latin1_General_100_BIN2;"
            ),
            "{compare}"
        );

        let call = fill(
            query!("source_merge"),
            &[
                ("procedure", "[crm].[welcome_email]"),
                ("key_type", "bigint"),
            ],
        );
        assert_eq!(
            statement(&call),
            "DECLARE @key bigint = CAST(@P1 AS bigint);\nEXEC [crm].[welcome_email] @key;"
        );
    }

    fn captured(ordinal: i32) -> Option<CapturedColumn> {
        Some(CapturedColumn {
            ordinal,
            computed: false,
        })
    }

    fn contact_instance() -> CaptureInstance {
        CaptureInstance {
            name: "crm_contact".into(),
            change_table: Some("[cdc].[crm_contact_CT]".into()),
            key: captured(1),
            change: captured(8),
        }
    }

    #[test]
    fn a_capture_instance_fills_the_lsn_page_query() {
        let capture = capture_queries(&contact(), Some(contact_instance())).unwrap();
        assert_eq!(capture.instance, "crm_contact");
        assert_eq!(
            statement(&capture.changes),
            "\
SELECT TOP (@P6)
       c.[__$start_lsn] AS start_lsn,
       c.[__$command_id] AS command_id,
       c.[__$seqval] AS seqval,
       c.[__$operation] AS operation,
       CAST(c.[contact_id] AS nvarchar(400)) AS key_value,
       CONVERT(nvarchar(40), c.[modified_at], 126) AS change_value,
       CAST(c.[modified_at] AS datetimeoffset(7)) AS change_at
  FROM [cdc].[crm_contact_CT] AS c
 WHERE c.[__$start_lsn] >= CAST(@P1 AS binary(10))
   AND c.[__$start_lsn] <= CAST(@P5 AS binary(10))
   AND (c.[__$start_lsn] > CAST(@P1 AS binary(10))
        OR c.[__$command_id] > @P2
        OR (c.[__$command_id] = @P2 AND c.[__$seqval] > CAST(@P3 AS binary(10)))
        OR (c.[__$command_id] = @P2 AND c.[__$seqval] = CAST(@P3 AS binary(10))
            AND c.[__$operation] > @P4))
   AND (c.[__$operation] = 2
        OR (c.[__$operation] = 4
            AND sys.fn_cdc_is_bit_set(8, c.[__$update_mask]) = 1))
   AND c.[modified_at] IS NOT NULL
 ORDER BY c.[__$start_lsn], c.[__$command_id], c.[__$seqval], c.[__$operation];"
        );
    }

    #[test]
    fn a_table_cdc_mode_cannot_read_is_an_invalid_schedule() {
        let error = capture_queries(&contact(), None).unwrap_err();
        assert!(
            error.contains("[crm].[contact] has no change data capture instance")
                && error.contains("sys.sp_cdc_enable_table")
                && error.contains("detector.mode = \"poll\""),
            "{error}"
        );

        let without_change = CaptureInstance {
            change: None,
            ..contact_instance()
        };
        let error = capture_queries(&contact(), Some(without_change)).unwrap_err();
        assert!(
            error.contains("crm_contact") && error.contains("change column [modified_at]"),
            "{error}"
        );
        let without_key = CaptureInstance {
            key: None,
            ..contact_instance()
        };
        let error = capture_queries(&contact(), Some(without_key)).unwrap_err();
        assert!(error.contains("key column [contact_id]"), "{error}");

        let computed = CaptureInstance {
            change: Some(CapturedColumn {
                ordinal: 8,
                computed: true,
            }),
            ..contact_instance()
        };
        let error = capture_queries(&contact(), Some(computed)).unwrap_err();
        assert!(error.contains("computed"), "{error}");

        let unquotable = CaptureInstance {
            change_table: None,
            ..contact_instance()
        };
        assert!(capture_queries(&contact(), Some(unquotable)).is_err());
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_proven_line_is_the_horizon_minus_the_lookback() {
        let lookback = Duration::from_secs(120);
        assert_eq!(
            proven_line(Some(at(1_000)), lookback).unwrap(),
            Some(at(880))
        );
        assert_eq!(proven_line(None, lookback).unwrap(), None);
        assert!(proven_line(Some(at(0)), Duration::MAX).is_err());
    }
}
