//! SQL Server runs of the scenarios: which detection mode they use, and the source database
//! prepared for it.
//!
//! `HERALD_TEST_MSSQL_MODE` picks the mode: `poll` (the default) or `cdc`. In `cdc` mode the
//! source database and the tables the example schedules watch get change data capture, as a
//! DBA enables it on a primary; the capture job runs in the SQL Server Agent, which must be
//! running (`MSSQL_AGENT_ENABLED=true` in the container).
//!
//! `HERALD_TEST_MSSQL_RCSI=on` turns READ_COMMITTED_SNAPSHOT on for the notification database
//! too, as Azure SQL has it: the claims' READPAST must work there.

use anyhow::bail;

use crate::Db;

/// Selects the detection mode of the SQL Server runs.
pub const MODE_VAR: &str = "HERALD_TEST_MSSQL_MODE";

/// Turns READ_COMMITTED_SNAPSHOT on for the notification database.
pub const RCSI_VAR: &str = "HERALD_TEST_MSSQL_RCSI";

/// The tables of the demo schema that the example schedules watch.
const WATCHED: [(&str, &str); 2] = [("crm", "contact"), ("crm", "appointment")];

/// `detector.mode` for the SQL Server runs: `poll` or `cdc`, from `HERALD_TEST_MSSQL_MODE`.
pub fn detection_mode() -> anyhow::Result<&'static str> {
    match std::env::var(MODE_VAR).unwrap_or_default().as_str() {
        "" | "poll" => Ok("poll"),
        "cdc" => Ok("cdc"),
        other => bail!("{MODE_VAR} is {other:?}; it must be \"poll\" or \"cdc\""),
    }
}

/// Prepares the fresh notification database `database`: read committed snapshot when
/// `HERALD_TEST_MSSQL_RCSI` is `on`.
pub async fn prepare_notify(notify: &Db, database: &str) -> anyhow::Result<()> {
    match std::env::var(RCSI_VAR).unwrap_or_default().as_str() {
        "" | "off" => Ok(()),
        "on" => {
            let database = database.replace(']', "]]");
            notify
                .batch(&format!(
                    "ALTER DATABASE [{database}] SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE;"
                ))
                .await
        }
        other => bail!("{RCSI_VAR} is {other:?}; it must be \"on\" or \"off\""),
    }
}

/// Prepares the fresh source database `database` once the demo schema is in:
/// - read committed snapshot, so the detector's reads never wait for a writer's locks, as on
///   a readable secondary (where every read runs under snapshot isolation);
/// - in `cdc` mode, change data capture on the database and on the watched tables. The
///   capture job scans the log every 5 seconds (its default), which delays events by up to as
///   much.
pub async fn prepare_source(source: &Db, database: &str) -> anyhow::Result<()> {
    let database = database.replace(']', "]]");
    source
        .batch(&format!(
            "ALTER DATABASE [{database}] SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE;"
        ))
        .await?;
    if detection_mode()? != "cdc" {
        return Ok(());
    }
    source.batch("EXEC sys.sp_cdc_enable_db;").await?;
    for (schema, table) in WATCHED {
        source
            .batch(&format!(
                "EXEC sys.sp_cdc_enable_table @source_schema = N'{schema}', \
                 @source_name = N'{table}', @role_name = NULL, @supports_net_changes = 0;"
            ))
            .await?;
    }
    Ok(())
}
