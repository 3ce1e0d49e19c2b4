//! One way for the scenarios to talk SQL, whichever the engine: statements take `$1, $2…`
//! placeholders and a slice of [`Value`]s, and rows come back as `Value`s.

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use tiberius::{ColumnData, FromSql};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_postgres::types::{ToSql, Type};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Bytes(Vec<u8>),
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// A result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn int(&self, column: usize) -> i64 {
        match &self.0[column] {
            Value::Int(n) => *n,
            other => panic!("column {column} is {other:?}, not an integer"),
        }
    }

    pub fn text(&self, column: usize) -> String {
        self.opt_text(column)
            .unwrap_or_else(|| panic!("column {column} is NULL"))
    }

    pub fn opt_text(&self, column: usize) -> Option<String> {
        match &self.0[column] {
            Value::Text(text) => Some(text.clone()),
            Value::Null => None,
            other => panic!("column {column} is {other:?}, not text"),
        }
    }

    pub fn opt_int(&self, column: usize) -> Option<i64> {
        match &self.0[column] {
            Value::Null => None,
            _ => Some(self.int(column)),
        }
    }

    pub fn bytes(&self, column: usize) -> Vec<u8> {
        match &self.0[column] {
            Value::Bytes(bytes) => bytes.clone(),
            other => panic!("column {column} is {other:?}, not bytes"),
        }
    }

    pub fn time(&self, column: usize) -> DateTime<Utc> {
        match &self.0[column] {
            Value::Time(time) => *time,
            other => panic!("column {column} is {other:?}, not a time"),
        }
    }

    pub fn bool(&self, column: usize) -> bool {
        match &self.0[column] {
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            other => panic!("column {column} is {other:?}, not a boolean"),
        }
    }
}

type MsClient = tiberius::Client<Compat<TcpStream>>;

pub enum Db {
    Postgres(tokio_postgres::Client),
    Mssql(Box<Mutex<MsClient>>),
}

/// Connects to SQL Server as `sa` (the test server's certificate is self-signed).
pub async fn connect_mssql(
    host: &str,
    port: u16,
    password: &str,
    database: &str,
) -> anyhow::Result<Db> {
    let mut config = tiberius::Config::new();
    config.host(host);
    config.port(port);
    config.database(database);
    config.authentication(tiberius::AuthMethod::sql_server("sa", password));
    config.trust_cert();
    let tcp = TcpStream::connect(config.get_addr())
        .await
        .with_context(|| format!("connecting to SQL Server at {host}:{port}"))?;
    tcp.set_nodelay(true)?;
    let client = tiberius::Client::connect(config, tcp.compat_write()).await?;
    Ok(Db::Mssql(Box::new(Mutex::new(client))))
}

impl Db {
    /// Runs a script of several statements (for SQL Server, batches separated by `GO`).
    pub async fn batch(&self, script: &str) -> anyhow::Result<()> {
        match self {
            Db::Postgres(client) => Ok(client.batch_execute(script).await?),
            Db::Mssql(client) => {
                let mut client = client.lock().await;
                for batch in go_batches(script) {
                    client
                        .simple_query(batch)
                        .await
                        .with_context(|| format!("running {batch}"))?
                        .into_results()
                        .await?;
                }
                Ok(())
            }
        }
    }

    pub async fn execute(&self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        match self {
            Db::Postgres(client) => {
                let params = pg_params(params);
                client
                    .execute(sql, &pg_refs(&params))
                    .await
                    .with_context(|| format!("executing {sql}"))
            }
            Db::Mssql(client) => {
                let params = ms_params(params);
                let result = client
                    .lock()
                    .await
                    .execute(ms_placeholders(sql), &ms_refs(&params))
                    .await
                    .with_context(|| format!("executing {sql}"))?;
                Ok(result.total())
            }
        }
    }

    pub async fn query(&self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>> {
        match self {
            Db::Postgres(client) => {
                let params = pg_params(params);
                let rows = client
                    .query(sql, &pg_refs(&params))
                    .await
                    .with_context(|| format!("querying {sql}"))?;
                rows.iter().map(pg_row).collect()
            }
            Db::Mssql(client) => {
                let params = ms_params(params);
                let mut client = client.lock().await;
                let rows = client
                    .query(ms_placeholders(sql), &ms_refs(&params))
                    .await
                    .with_context(|| format!("querying {sql}"))?
                    .into_first_result()
                    .await?;
                rows.into_iter().map(ms_row).collect()
            }
        }
    }

    pub async fn query_one(&self, sql: &str, params: &[Value]) -> anyhow::Result<Row> {
        let mut rows = self.query(sql, params).await?;
        if rows.len() != 1 {
            bail!("{sql} returned {} rows, expected one", rows.len());
        }
        Ok(rows.remove(0))
    }

    /// The single integer `sql` returns (a count).
    pub async fn count(&self, sql: &str, params: &[Value]) -> anyhow::Result<i64> {
        Ok(self.query_one(sql, params).await?.int(0))
    }
}

type PgParam = Box<dyn ToSql + Sync + Send>;

fn pg_params(params: &[Value]) -> Vec<PgParam> {
    params
        .iter()
        .map(|value| -> PgParam {
            match value {
                Value::Null => Box::new(None::<String>),
                Value::Bool(b) => Box::new(*b),
                Value::Int(n) => Box::new(*n),
                Value::Text(text) => Box::new(text.clone()),
                Value::Time(time) => Box::new(*time),
                Value::Bytes(bytes) => Box::new(bytes.clone()),
            }
        })
        .collect()
}

fn pg_refs(params: &[PgParam]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn pg_row(row: &tokio_postgres::Row) -> anyhow::Result<Row> {
    let values = row
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let ty = column.type_();
            Ok(if *ty == Type::BOOL {
                row.get::<_, Option<bool>>(i).map(Value::Bool)
            } else if *ty == Type::INT2 {
                row.get::<_, Option<i16>>(i).map(|n| Value::Int(n.into()))
            } else if *ty == Type::INT4 {
                row.get::<_, Option<i32>>(i).map(|n| Value::Int(n.into()))
            } else if *ty == Type::INT8 {
                row.get::<_, Option<i64>>(i).map(Value::Int)
            } else if *ty == Type::TIMESTAMPTZ {
                row.get::<_, Option<DateTime<Utc>>>(i).map(Value::Time)
            } else if [Type::TEXT, Type::VARCHAR, Type::NAME].contains(ty) {
                row.get::<_, Option<String>>(i).map(Value::Text)
            } else if *ty == Type::BYTEA {
                row.get::<_, Option<Vec<u8>>>(i).map(Value::Bytes)
            } else {
                bail!(
                    "column {} has type {ty}, which the harness does not read",
                    column.name()
                )
            }
            .unwrap_or(Value::Null))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Row(values))
}

/// `$1` → `@P1`: the scenarios' placeholders in SQL Server's spelling.
fn ms_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("@P");
        } else {
            out.push(c);
        }
    }
    out
}

/// The batches of a T-SQL script: the text between lines that say only `GO`.
fn go_batches(script: &str) -> Vec<&str> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in script.split_inclusive('\n') {
        if line.trim().eq_ignore_ascii_case("go") {
            batches.push(&script[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    batches.push(&script[start..]);
    batches.retain(|batch| !batch.trim().is_empty());
    batches
}

type MsParam = Box<dyn tiberius::ToSql>;

fn ms_params(params: &[Value]) -> Vec<MsParam> {
    params
        .iter()
        .map(|value| -> MsParam {
            match value {
                Value::Null => Box::new(None::<String>),
                Value::Bool(b) => Box::new(*b),
                Value::Int(n) => Box::new(*n),
                Value::Text(text) => Box::new(text.clone()),
                Value::Time(time) => Box::new(*time),
                Value::Bytes(bytes) => Box::new(bytes.clone()),
            }
        })
        .collect()
}

fn ms_refs(params: &[MsParam]) -> Vec<&dyn tiberius::ToSql> {
    params.iter().map(|p| p.as_ref()).collect()
}

fn ms_row(row: tiberius::Row) -> anyhow::Result<Row> {
    let values = row
        .into_iter()
        .map(|data| {
            Ok(match &data {
                ColumnData::Bit(b) => b.map(Value::Bool),
                ColumnData::U8(n) => n.map(|n| Value::Int(n.into())),
                ColumnData::I16(n) => n.map(|n| Value::Int(n.into())),
                ColumnData::I32(n) => n.map(|n| Value::Int(n.into())),
                ColumnData::I64(n) => n.map(Value::Int),
                ColumnData::String(text) => text.as_ref().map(|t| Value::Text(t.to_string())),
                ColumnData::Binary(bytes) => bytes.as_ref().map(|b| Value::Bytes(b.to_vec())),
                ColumnData::DateTimeOffset(_) => DateTime::<Utc>::from_sql(&data)?.map(Value::Time),
                ColumnData::DateTime(_)
                | ColumnData::DateTime2(_)
                | ColumnData::SmallDateTime(_) => {
                    NaiveDateTime::from_sql(&data)?.map(|t| Value::Time(t.and_utc()))
                }
                other => bail!("a column holds {other:?}, which the harness does not read"),
            }
            .unwrap_or(Value::Null))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Row(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_sql_server_parameters() {
        assert_eq!(
            ms_placeholders("SELECT $1, '$x', $12"),
            "SELECT @P1, '$x', @P12"
        );
    }

    #[test]
    fn a_script_splits_on_go_lines() {
        let script = "CREATE TABLE a (x int)\nGO\n  go  \nSELECT 1\nGOTO x\n";
        assert_eq!(
            go_batches(script),
            ["CREATE TABLE a (x int)\n", "SELECT 1\nGOTO x\n"]
        );
    }
}
