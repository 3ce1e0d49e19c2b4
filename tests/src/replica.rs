//! PostgreSQL hot standbys of the test server, as the source replica (`scripts/replica.sh`
//! makes them; `scripts/test.sh` starts both): one that stays in sync, and one that
//! scenarios delay and pause, one scenario at a time.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{Mutex, MutexGuard};

use crate::{Service, Stack, wait_until};

/// A standby of the test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replica {
    /// Replays as it receives: `HERALD_TEST_PG_REPLICA`, default 127.0.0.1:5433.
    InSync,
    /// Delayed and paused by the scenario holding [`ReplicaControl`]:
    /// `HERALD_TEST_PG_REPLICA_CONTROLLED`, default 127.0.0.1:5434.
    Controlled,
}

impl Replica {
    pub fn address(self) -> (String, u16) {
        let (var, default) = match self {
            Replica::InSync => ("HERALD_TEST_PG_REPLICA", "127.0.0.1:5433"),
            Replica::Controlled => ("HERALD_TEST_PG_REPLICA_CONTROLLED", "127.0.0.1:5434"),
        };
        let address = std::env::var(var).unwrap_or_else(|_| default.into());
        let (host, port) = address.rsplit_once(':').unwrap_or((&address, "5432"));
        (
            host.to_owned(),
            port.parse()
                .unwrap_or_else(|_| panic!("{var} is host:port")),
        )
    }

    /// Connects to `database` on this standby.
    pub async fn connect(self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        let (host, port) = self.address();
        crate::connect_at(&host, port, database, "scripts/replica.sh").await
    }
}

/// Waits until `replica` has replayed everything written to the primary so far: up to the
/// WAL *insert* position, which, with `synchronous_commit = off`, runs ahead of the write
/// position (`pg_current_wal_lsn`) by the commits just made.
async fn caught_up(replica: Replica) -> anyhow::Result<()> {
    let written = crate::connect("postgres")
        .await?
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await?
        .get::<_, String>(0);
    let standby = replica.connect("postgres").await?;
    wait_until(Duration::from_secs(60), || async {
        let row = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&written],
            )
            .await?;
        Ok(row.get::<_, bool>(0).then_some(()))
    })
    .await
    .with_context(|| format!("the {replica:?} standby did not catch up"))
}

/// The controlled standby is shared by every scenario: one at a time sets its delay.
static CONTROLLED: Mutex<()> = Mutex::const_new(());

/// Exclusive control of the [`Replica::Controlled`] standby, taken in sync and unpaused.
pub struct ReplicaControl {
    client: tokio_postgres::Client,
    _turn: MutexGuard<'static, ()>,
}

impl ReplicaControl {
    pub async fn take() -> anyhow::Result<Self> {
        let turn = CONTROLLED.lock().await;
        let control = ReplicaControl {
            client: Replica::Controlled.connect("postgres").await?,
            _turn: turn,
        };
        control.resume().await?;
        control.lag(Duration::ZERO).await?;
        Ok(control)
    }

    /// Applies each commit `delay` after the primary made it.
    pub async fn lag(&self, delay: Duration) -> anyhow::Result<()> {
        let millis = delay.as_millis().to_string();
        let delay = format!("{millis}ms");
        // Two statements: ALTER SYSTEM refuses to run inside a (implicit) transaction block.
        self.client
            .batch_execute(&format!(
                "ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'"
            ))
            .await
            .context("setting the standby's apply delay")?;
        self.client.batch_execute("SELECT pg_reload_conf()").await?;
        // The reload is asynchronous; a new session sees the setting once it is applied.
        wait_until(Duration::from_secs(10), || async {
            let client = Replica::Controlled.connect("postgres").await?;
            let row = client
                .query_one(
                    "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'",
                    &[],
                )
                .await?;
            Ok((row.get::<_, String>(0) == millis).then_some(()))
        })
        .await
        .context("the standby did not take the new apply delay")
    }

    /// Waits until the standby has replayed everything written to the primary so far.
    pub async fn catch_up(&self) -> anyhow::Result<()> {
        caught_up(Replica::Controlled).await
    }

    /// The one integer `sql` returns on the stack's source database as the standby shows it.
    pub async fn count(&self, sql: &str, stack: &Stack) -> anyhow::Result<i64> {
        let client = Replica::Controlled
            .connect(&format!("{}_src", stack.name))
            .await?;
        Ok(client.query_one(sql, &[]).await?.get(0))
    }

    pub async fn pause(&self) -> anyhow::Result<()> {
        self.client
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await?;
        Ok(())
    }

    pub async fn resume(&self) -> anyhow::Result<()> {
        self.client
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await?;
        Ok(())
    }
}

impl Stack {
    /// Points `services` at `replica` as their source: they read the source database from
    /// the standby while the scenario writes to the primary. Waits until the standby has
    /// replayed everything written so far, the database included.
    pub async fn read_source_from(
        &mut self,
        replica: Replica,
        services: &[Service],
    ) -> anyhow::Result<()> {
        if self.engine != crate::Engine::Postgres {
            bail!("standbys are PostgreSQL's");
        }
        let database = format!("{}_src", self.name);
        wait_until(Duration::from_secs(60), || async {
            Ok(replica.connect(&database).await.ok().map(|_| ()))
        })
        .await
        .with_context(|| format!("{database} did not reach the {replica:?} standby"))?;
        caught_up(replica).await?;
        let (host, port) = replica.address();
        for service in services {
            self.set(*service, "HERALD__SOURCE__HOST", &host);
            self.set(*service, "HERALD__SOURCE__PORT", &port.to_string());
        }
        Ok(())
    }
}
