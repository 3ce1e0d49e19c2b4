//! The end-to-end harness. A [`Stack`] is one test's world: fresh source and notification
//! databases on the real PostgreSQL, a fresh topic and consumer group on the real broker, a
//! fake provider on a free port, and the three real service binaries as child processes
//! (so a test can SIGKILL one and start it again). Nothing is shared between tests.
//!
//! Needs PostgreSQL and the broker running (`scripts/test.sh` starts both) and the service
//! binaries built (`cargo build --workspace --bins`, which `scripts/test.sh` does too).
//! `HERALD_TEST_PG` and `HERALD_TEST_KAFKA` override where they are.

mod chromium;
mod db;
mod fixtures;
mod kafka;
mod mssql;
mod replica;
mod services;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use fake_provider::{Config as ProviderConfig, FakeProvider, Received};
use herald_core::config::{self, DatabaseSettings, DetectorSettings, Settings};
use tokio_postgres::{Client, NoTls};

pub use chromium::Chromium;
pub use db::{Db, Row, Value};
pub use fixtures::{Contact, SOON};
pub use kafka::GroupOffsets;
pub use replica::{Replica, ReplicaControl};
pub use services::Service;
use services::Services;

/// The PostgreSQL role the harness and the services use (created by `scripts/postgres.sh`).
const PG_USER: &str = "herald";
const PG_PASSWORD: &str = "herald";
pub const SENDGRID_KEY: &str = "SG.e2e-key";
pub const TWILIO_SID: &str = "ACe2e00000000000000000000000000000";
pub const TWILIO_TOKEN: &str = "e2e-token";
/// Signs the sender's one-click unsubscribe links.
pub const UNSUBSCRIBE_SECRET: &str = "e2e-unsubscribe-secret";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

fn pg_host() -> (String, u16) {
    let address = std::env::var("HERALD_TEST_PG").unwrap_or_else(|_| "127.0.0.1:5432".into());
    let (host, port) = address.rsplit_once(':').unwrap_or((&address, "5432"));
    (
        host.to_owned(),
        port.parse().expect("HERALD_TEST_PG is host:port"),
    )
}

/// SQL Server for the SQL Server runs of the scenarios: `HERALD_TEST_MSSQL=host:port`, the
/// `sa` password in `HERALD_TEST_MSSQL_PASSWORD`.
pub const MSSQL_VAR: &str = "HERALD_TEST_MSSQL";
pub const MSSQL_PASSWORD_VAR: &str = "HERALD_TEST_MSSQL_PASSWORD";

fn mssql_address() -> anyhow::Result<(String, u16, String)> {
    let address = std::env::var(MSSQL_VAR).with_context(|| format!("{MSSQL_VAR} is not set"))?;
    let password = std::env::var(MSSQL_PASSWORD_VAR)
        .with_context(|| format!("{MSSQL_PASSWORD_VAR} is not set"))?;
    let (host, port) = address.rsplit_once(':').unwrap_or((&address, "1433"));
    Ok((
        host.to_owned(),
        port.parse().context("HERALD_TEST_MSSQL is host:port")?,
        password,
    ))
}

pub fn kafka_brokers() -> String {
    std::env::var("HERALD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Connects to `database` on the test server.
pub async fn connect(database: &str) -> anyhow::Result<Client> {
    let (host, port) = pg_host();
    connect_at(&host, port, database, "scripts/postgres.sh").await
}

/// Connects to `database` on the PostgreSQL server at `host:port`, which `script` starts.
pub(crate) async fn connect_at(
    host: &str,
    port: u16,
    database: &str,
    script: &str,
) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::Config::new()
        .host(host)
        .port(port)
        .user(PG_USER)
        .password(PG_PASSWORD)
        .dbname(database)
        .connect(NoTls)
        .await
        .with_context(|| {
            format!(
                "connecting to PostgreSQL at {host}:{port} as {PG_USER} \
                 (start it with {script}, or run scripts/test.sh)"
            )
        })?;
    tokio::spawn(connection);
    Ok(client)
}

fn read_sql(engine: Engine, file: &str) -> anyhow::Result<String> {
    let path = repo_root().join("sql").join(engine.folder()).join(file);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Runs the numbered `.sql` files of `sql/<engine>/<folder>` in order.
pub async fn apply_sql(db: &Db, engine: Engine, folder: &str) -> anyhow::Result<()> {
    let dir = repo_root().join("sql").join(engine.folder()).join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|ext| ext == "sql"));
    files.sort();
    for file in files {
        let sql = std::fs::read_to_string(&file)?;
        db.batch(&sql)
            .await
            .with_context(|| format!("applying {}", file.display()))?;
    }
    Ok(())
}

/// A unique, lowercase, identifier-safe name for this test's databases, topic and group.
fn unique_name(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!(
        "herald_t_{test}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mssql,
}

/// Where the test server of an engine is, and the login the tests and services use.
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl Engine {
    pub fn server(self) -> anyhow::Result<Server> {
        Ok(match self {
            Engine::Postgres => {
                let (host, port) = pg_host();
                Server {
                    host,
                    port,
                    user: PG_USER.into(),
                    password: PG_PASSWORD.into(),
                }
            }
            Engine::Mssql => {
                let (host, port, password) = mssql_address()?;
                Server {
                    host,
                    port,
                    user: "sa".into(),
                    password,
                }
            }
        })
    }

    /// Its folder under `sql/` and `tests/fixtures/`.
    pub fn folder(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mssql => "mssql",
        }
    }
}

pub struct Stack {
    pub engine: Engine,
    pub name: String,
    /// Read-write connection to the source database (the application's side).
    pub source: Db,
    /// Connection to the notification database (the admin's and support's side).
    pub notify: Db,
    pub provider: FakeProvider,
    services: Services,
}

/// The credentials the fake provider accepts and the services send ([`Stack::new`]).
pub fn provider_config() -> ProviderConfig {
    ProviderConfig {
        sendgrid_api_key: SENDGRID_KEY.into(),
        twilio_account_sid: TWILIO_SID.into(),
        twilio_auth_token: TWILIO_TOKEN.into(),
        ..ProviderConfig::default()
    }
}

impl Stack {
    /// Fresh databases with the notification schema and the demo source schema, a fake
    /// provider; no services running yet.
    pub async fn new(engine: Engine, test: &str) -> anyhow::Result<Self> {
        Self::with_provider(engine, test, provider_config()).await
    }

    /// [`Stack::new`] with a fake provider that accepts `provider`'s credentials; the services
    /// still send [`provider_config`]'s unless [`Stack::set`] says otherwise.
    pub async fn with_provider(
        engine: Engine,
        test: &str,
        provider: ProviderConfig,
    ) -> anyhow::Result<Self> {
        let name = unique_name(test);
        let (source, notify) = match engine {
            Engine::Postgres => {
                let admin = connect("postgres").await?;
                for suffix in ["src", "ntf"] {
                    admin
                        .batch_execute(&format!("CREATE DATABASE {name}_{suffix}"))
                        .await
                        .with_context(|| format!("creating database {name}_{suffix}"))?;
                }
                (
                    Db::Postgres(connect(&format!("{name}_src")).await?),
                    Db::Postgres(connect(&format!("{name}_ntf")).await?),
                )
            }
            Engine::Mssql => {
                let (host, port, password) = mssql_address()?;
                let master = db::connect_mssql(&host, port, &password, "master").await?;
                for suffix in ["src", "ntf"] {
                    master
                        .batch(&format!("CREATE DATABASE [{name}_{suffix}]"))
                        .await
                        .with_context(|| format!("creating database {name}_{suffix}"))?;
                }
                (
                    db::connect_mssql(&host, port, &password, &format!("{name}_src")).await?,
                    db::connect_mssql(&host, port, &password, &format!("{name}_ntf")).await?,
                )
            }
        };
        apply_sql(&source, engine, "demo").await?;
        if engine == Engine::Mssql {
            mssql::prepare_source(&source, &format!("{name}_src")).await?;
            mssql::prepare_notify(&notify, &format!("{name}_ntf")).await?;
        }
        apply_sql(&notify, engine, "notify").await?;
        let provider = FakeProvider::start(provider)
            .await
            .context("starting the fake provider")?;
        let services = Services::new(engine, &name, &provider.url())?;
        Ok(Stack {
            engine,
            name,
            source,
            notify,
            provider,
            services,
        })
    }

    /// Loads `sql/<engine>/examples/schedules.sql`: the welcome email on contact inserts and
    /// the appointment SMS on appointment changes.
    pub async fn load_example_schedules(&self) -> anyhow::Result<()> {
        self.notify
            .batch(&read_sql(self.engine, "examples/schedules.sql")?)
            .await
    }

    /// The example schedules with only the welcome email (one per contact insert) active.
    pub async fn load_welcome_schedule(&self) -> anyhow::Result<()> {
        self.load_example_schedules().await?;
        self.set_schedule_active("appointment-sms", false).await
    }

    /// Runs `tests/fixtures/<engine>/<name>.sql` on the source database.
    pub async fn apply_source_fixture(&self, name: &str) -> anyhow::Result<()> {
        let path = repo_root()
            .join("tests/fixtures")
            .join(self.engine.folder())
            .join(format!("{name}.sql"));
        let script = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        self.source.batch(&script).await
    }

    pub async fn start(&mut self, service: Service) -> anyhow::Result<()> {
        self.services.start(service, 1).await
    }

    /// Starts one more process of `service`, numbered `instance` (2, 3…; 1 is
    /// [`Stack::start`]'s), with the same settings.
    pub async fn start_instance(
        &mut self,
        service: Service,
        instance: usize,
    ) -> anyhow::Result<()> {
        self.services.start(service, instance).await
    }

    /// SIGKILL for instance `instance` of `service`.
    pub async fn kill_instance(&mut self, service: Service, instance: usize) -> anyhow::Result<()> {
        self.services.kill(service, instance).await
    }

    /// The process id of instance `instance` of `service`, while it runs.
    pub fn pid(&self, service: Service, instance: usize) -> Option<u32> {
        self.services.pid(service, instance)
    }

    /// What instance `instance` of `service` logged so far (across restarts).
    pub fn instance_log(&self, service: Service, instance: usize) -> String {
        self.services.log(service, instance)
    }

    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for service in Service::ALL {
            self.start(service).await?;
        }
        Ok(())
    }

    /// Sets `key` (a `HERALD__…` variable) for `service` from its next start.
    pub fn set(&mut self, service: Service, key: &str, value: &str) {
        self.services.set(service, key, value);
    }

    /// A new connection to the source database (the application's side), for a transaction
    /// of its own.
    pub async fn connect_source(&self) -> anyhow::Result<Db> {
        let database = format!("{}_src", self.name);
        match self.engine {
            Engine::Postgres => Ok(Db::Postgres(connect(&database).await?)),
            Engine::Mssql => {
                let (host, port, password) = mssql_address()?;
                db::connect_mssql(&host, port, &password, &database).await
            }
        }
    }

    /// The detector settings the services run with (`config/test.toml`).
    pub fn detector_settings(&self) -> anyhow::Result<DetectorSettings> {
        Ok(Settings::load_from(&repo_root().join("config"), "test")?.detector)
    }

    /// Runs `heraldctl` with this stack's settings; returns its exit code and output.
    pub async fn heraldctl(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        let binary = self.services.bin_dir.join("heraldctl");
        let output = tokio::process::Command::new(&binary)
            .envs(self.services.env_of(Some(Service::Detector)))
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", binary.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.code().unwrap_or(-1), text))
    }

    /// Runs `heraldctl --json …`; returns its exit code and the document it printed.
    pub async fn heraldctl_json(&self, args: &[&str]) -> anyhow::Result<(i32, serde_json::Value)> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, output) = self.heraldctl(&all).await?;
        let document = serde_json::from_str(&output).with_context(|| {
            format!("heraldctl {args:?} printed no JSON (exit {code}):\n{output}")
        })?;
        Ok((code, document))
    }

    /// Starts `heraldctl ARGS…` in the background with this stack's settings and `env` (for
    /// a long-running command such as `serve`), its output appended to `heraldctl.log` in
    /// [`Stack::log_dir`]. It is killed when the handle drops, at the latest when the test
    /// ends.
    pub fn spawn_heraldctl(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<tokio::process::Child> {
        let binary = self.services.bin_dir.join("heraldctl");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir().join("heraldctl.log"))?;
        tokio::process::Command::new(&binary)
            .envs(self.services.env_of(Some(Service::Detector)))
            .envs(env.iter().copied())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))
    }

    /// This test's directory for logs and other output (`target/<profile>/e2e-logs/<name>`).
    pub fn log_dir(&self) -> &Path {
        &self.services.log_dir
    }

    /// What `service` logged so far (across restarts).
    pub fn log(&self, service: Service) -> String {
        self.services.log(service, 1)
    }

    /// SIGKILL: no shutdown path runs.
    pub async fn kill(&mut self, service: Service) -> anyhow::Result<()> {
        self.services.kill(service, 1).await
    }

    /// SIGTERM, and waits for a clean exit.
    pub async fn stop(&mut self, service: Service) -> anyhow::Result<()> {
        self.services.stop(service).await
    }

    pub fn topic(&self) -> String {
        self.services.topic.clone()
    }

    /// Settings for this stack's source (`"src"`) or notification (`"ntf"`) database, for
    /// tests that drive a service's library directly.
    pub fn database_settings(&self, suffix: &str) -> anyhow::Result<DatabaseSettings> {
        let server = self.engine.server()?;
        Ok(DatabaseSettings {
            engine: match self.engine {
                Engine::Postgres => config::Engine::Postgres,
                Engine::Mssql => config::Engine::Mssql,
            },
            host: server.host,
            port: server.port,
            user: server.user,
            password: Some(server.password.into()),
            database: format!("{}_{suffix}", self.name),
            pool_size: 2,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            trust_cert: self.engine == Engine::Mssql,
        })
    }

    /// Messages the fake provider took.
    pub fn accepted(&self) -> Vec<Received> {
        self.provider.store().list(None, Some(true))
    }

    /// How many messages the fake provider took (without copying them).
    pub fn accepted_count(&self) -> usize {
        self.provider.store().count(None, Some(true))
    }

    /// Waits until the provider has accepted `count` messages; fails with the services' logs
    /// and the queue's state if that takes longer than `within`.
    pub async fn wait_for_accepted(
        &self,
        count: usize,
        within: Duration,
    ) -> anyhow::Result<Vec<Received>> {
        let reached = wait_until(within, || async {
            Ok((self.accepted_count() >= count).then_some(()))
        })
        .await;
        match reached {
            Ok(()) => Ok(self.accepted()),
            Err(_) => bail!(
                "the provider accepted {} of {count} messages within {within:?}\n{}",
                self.accepted().len(),
                self.diagnostics().await
            ),
        }
    }

    /// Waits until `count` messages are in `status`; see [`Stack::wait_for_count`].
    pub async fn wait_for_status(
        &self,
        status: &str,
        count: i64,
        within: Duration,
    ) -> anyhow::Result<()> {
        let sql = format!("SELECT count(*) FROM message WHERE status = '{status}'");
        self.wait_for_count(&sql, count, within).await
    }

    /// Waits until `sql` (returning one integer) on the notification database returns `expected`.
    pub async fn wait_for_count(
        &self,
        sql: &str,
        expected: i64,
        within: Duration,
    ) -> anyhow::Result<()> {
        let reached = wait_until(within, || async {
            let count = self.notify.count(sql, &[]).await?;
            Ok((count == expected).then_some(()))
        })
        .await;
        if reached.is_err() {
            let count = self.notify.count(sql, &[]).await?;
            bail!(
                "`{sql}` is {count}, expected {expected} within {within:?}\n{}",
                self.diagnostics().await
            );
        }
        Ok(())
    }

    /// The queue by status, and the end of each service's log: printed when a wait fails.
    pub async fn diagnostics(&self) -> String {
        let statuses = self
            .listing(
                "SELECT status, count(*), max(last_error) FROM message GROUP BY status",
                |row| {
                    format!(
                        "{}: {} {}",
                        row.text(0),
                        row.int(1),
                        row.opt_text(2).unwrap_or_default()
                    )
                },
            )
            .await;
        let marks = self
            .listing(
                "SELECT schedule_id, hold_back, change_value, key_value, owner
                   FROM detector_watermark ORDER BY schedule_id",
                |row| {
                    format!(
                        "{}: hold-back {:?}, frontier {:?} / {:?}, owner {:?}",
                        row.int(0),
                        row.0[1],
                        row.opt_text(2),
                        row.opt_text(3),
                        row.opt_text(4)
                    )
                },
            )
            .await;
        format!(
            "queue:\n{statuses}\ndetector marks:\n{marks}\n{}",
            self.services.log_tails(40)
        )
    }

    /// The rows of `sql` on the notification database, one indented line each.
    async fn listing(&self, sql: &str, line: impl Fn(&Row) -> String) -> String {
        match self.notify.query(sql, &[]).await {
            Ok(rows) => rows
                .iter()
                .map(|row| format!("  {}", line(row)))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(error) => format!("  (unreadable: {error})"),
        }
    }
}

/// Claims up to `limit` due messages from `notify` as a sender would, with the provider
/// accounts in `paused` paused. Returns the tenants of the messages claimed, sorted
/// (`suppressed` for a message the claim suppressed).
pub async fn claimed_tenants(
    notify: &dyn herald_core::store::NotifyDb,
    limit: u32,
    paused: &[&str],
) -> anyhow::Result<Vec<String>> {
    let claimed = notify
        .claim_outgoing(
            "sender-under-test",
            Duration::from_secs(60),
            limit,
            paused,
            None,
        )
        .await?;
    let mut tenants: Vec<String> = claimed
        .into_iter()
        .map(|claimed| match claimed {
            herald_core::model::Claimed::Sending { message, .. } => message.tenant,
            herald_core::model::Claimed::Suppressed { .. } => "suppressed".into(),
        })
        .collect();
    tenants.sort();
    Ok(tenants)
}

/// A loopback address with a port free a moment ago, for a server a test starts.
pub fn free_address() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// Polls `check` every 100 ms until it yields a value or `within` has passed.
pub async fn wait_until<T, F, Fut>(within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
