//! One way for the scenarios to talk SQL, whichever the engine: statements take `$1, $2…`
//! placeholders and a slice of [`Value`]s, and rows come back as `Value`s.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use tokio_postgres::types::{ToSql, Type};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
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

    pub fn bool(&self, column: usize) -> bool {
        match &self.0[column] {
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            other => panic!("column {column} is {other:?}, not a boolean"),
        }
    }
}

pub enum Db {
    Postgres(tokio_postgres::Client),
}

impl Db {
    /// Runs a script of several statements.
    pub async fn batch(&self, script: &str) -> anyhow::Result<()> {
        match self {
            Db::Postgres(client) => Ok(client.batch_execute(script).await?),
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
