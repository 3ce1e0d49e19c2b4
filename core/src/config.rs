//! Settings for all three services, loaded with the `config` crate in three layers:
//! `config/base.toml`, then `config/{HERALD_ENV}.toml` (default `local`), then environment
//! variables `HERALD__SECTION__KEY` (e.g. `HERALD__KAFKA__BROKERS`).
//!
//! Secrets (database passwords, provider keys) are accepted only from the environment: a
//! config file that sets one is an error. They are `SecretString`s, so they never reach a
//! log or a `Debug` print.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where the config files are: `HERALD_CONFIG_DIR`, else `./config`.
pub const CONFIG_DIR_VAR: &str = "HERALD_CONFIG_DIR";
/// Which environment file to layer over `base.toml`: `HERALD_ENV`, else `local`.
pub const ENVIRONMENT_VAR: &str = "HERALD_ENV";
/// The prefix of herald's own environment variables (`HERALD__SECTION__KEY`, `HERALD_ENV`).
pub const ENV_PREFIX: &str = "HERALD";

/// The shortest `unsubscribe.secret` taken.
const MIN_SECRET_CHARS: usize = 16;

/// Secret settings, by their config path; each may come only from the environment.
const SECRET_KEYS: [&str; 5] = [
    "source.password",
    "notify.password",
    "providers.sendgrid.api_key",
    "providers.twilio.auth_token",
    "unsubscribe.secret",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("`{key}` is a secret and may only come from the environment ({var}), not from {file}")]
    SecretInFile {
        key: &'static str,
        var: String,
        file: String,
    },
    #[error("inconsistent settings: {0}")]
    Inconsistent(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub telemetry: TelemetrySettings,
    pub kafka: KafkaSettings,
    /// The source database's read replica: polled for changes, asked for merge fields.
    pub source: DatabaseSettings,
    /// The notification database: schedules, templates, detection marks, the message queue.
    pub notify: DatabaseSettings,
    pub detector: DetectorSettings,
    pub renderer: RendererSettings,
    pub sender: SenderSettings,
    pub providers: ProviderSettings,
    pub metrics: MetricsSettings,
    pub webhooks: WebhookSettings,
    pub unsubscribe: UnsubscribeSettings,
}

impl Settings {
    /// Loads the layered settings from `HERALD_CONFIG_DIR` / `HERALD_ENV` and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let dir = std::env::var_os(CONFIG_DIR_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let environment = std::env::var(ENVIRONMENT_VAR).unwrap_or_else(|_| "local".into());
        Self::load_from(&dir, &environment)
    }

    pub fn load_from(dir: &Path, environment: &str) -> Result<Self, ConfigError> {
        Self::load_with(dir, environment, None)
    }

    /// As [`Settings::load_from`], with `variables` standing in for the process environment
    /// when given.
    fn load_with(
        dir: &Path,
        environment: &str,
        variables: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigError> {
        let files = [
            dir.join("base.toml"),
            dir.join(format!("{environment}.toml")),
        ];
        for file in &files {
            let only_file = Config::builder()
                .add_source(File::from(file.as_path()).required(false))
                .build()?;
            if let Some(key) = SECRET_KEYS
                .into_iter()
                .find(|key| only_file.get_string(key).is_ok())
            {
                return Err(ConfigError::SecretInFile {
                    key,
                    var: env_var_for(key),
                    file: file.display().to_string(),
                });
            }
        }
        let [base, env_file] = files;
        let mut settings: Settings = Config::builder()
            .add_source(File::from(base.as_path()))
            .add_source(File::from(env_file.as_path()))
            // Values stay text: a setting that looks like a number (`+15005550006`, an
            // all-digit token) keeps its characters; numeric settings parse from the text.
            .add_source(
                Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .source(variables),
            )
            .build()?
            .try_deserialize()?;
        settings.check()?;
        settings.name_instances(&gethostname::gethostname().to_string_lossy());
        Ok(settings)
    }

    /// Names each service instance left unnamed `<service>-<host>-<process id>`: no two live
    /// instances share a name, so none takes over another's leases or declares another's
    /// calls in doubt. A name set in the settings is kept (it must be unique among live
    /// instances; a stable one lets a restarted instance settle its own leases at once
    /// instead of waiting for them to run out).
    fn name_instances(&mut self, host: &str) {
        let process = std::process::id();
        for (service, instance_id) in [
            ("detector", &mut self.detector.instance_id),
            ("renderer", &mut self.renderer.instance_id),
            ("sender", &mut self.sender.instance_id),
        ] {
            if instance_id.trim().is_empty() {
                *instance_id = format!("{service}-{host}-{process}");
            }
        }
    }

    /// Rules that span settings; each broken one is a startup error, not a surprise later.
    fn check(&self) -> Result<(), ConfigError> {
        let sender = &self.sender;
        if sender.lease <= sender.http_timeout {
            return Err(ConfigError::Inconsistent(format!(
                "sender.lease ({:?}) must be longer than sender.http_timeout ({:?}), or calls \
                 still in flight are declared in doubt",
                sender.lease, sender.http_timeout
            )));
        }
        if self.kafka.brokers.is_empty() {
            return Err(ConfigError::Inconsistent("kafka.brokers is empty".into()));
        }
        for (name, timeout) in [
            ("source.statement_timeout", self.source.statement_timeout),
            ("notify.statement_timeout", self.notify.statement_timeout),
            ("renderer.merge_timeout", self.renderer.merge_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::Inconsistent(format!(
                    "{name} must be longer than 0s"
                )));
            }
        }
        if self.renderer.merge_timeout > self.source.statement_timeout {
            return Err(ConfigError::Inconsistent(format!(
                "renderer.merge_timeout ({:?}) must not exceed source.statement_timeout ({:?}), \
                 which would cut merge calls short first",
                self.renderer.merge_timeout, self.source.statement_timeout
            )));
        }
        self.providers.twilio.check("providers.twilio")?;
        let public_url = self.webhooks.public_url.trim();
        let http = ["http://", "https://"]
            .iter()
            .any(|s| public_url.starts_with(s));
        if !public_url.is_empty() && !http {
            return Err(ConfigError::Inconsistent(format!(
                "webhooks.public_url ({public_url:?}) must be an http(s) URL, or empty"
            )));
        }
        let secret = self.unsubscribe.secret.as_ref();
        let secret_length = secret.map_or(0, |s| s.expose_secret().trim().chars().count());
        if (1..MIN_SECRET_CHARS).contains(&secret_length) {
            return Err(ConfigError::Inconsistent(format!(
                "unsubscribe.secret must be at least {MIN_SECRET_CHARS} characters: it signs \
                 the unsubscribe links, and a short one can be guessed"
            )));
        }
        if sender.max_in_flight == 0 {
            return Err(ConfigError::Inconsistent(
                "sender.max_in_flight must be at least 1".into(),
            ));
        }
        let passes = self.detector.max_concurrent_passes;
        if passes == 0 || passes + 2 > self.source.pool_size as usize {
            return Err(ConfigError::Inconsistent(format!(
                "detector.max_concurrent_passes ({passes}) must be at least 1 and at most \
                 source.pool_size ({}) - 2: each pass holds a source connection, and the \
                 catalog checks and the sweep need one each",
                self.source.pool_size
            )));
        }
        if self.detector.batch_size == 0 {
            return Err(ConfigError::Inconsistent(
                "detector.batch_size must be at least 1".into(),
            ));
        }
        if self.detector.mode == DetectionMode::Cdc && self.source.engine != Engine::Mssql {
            return Err(ConfigError::Inconsistent(
                "detector.mode = \"cdc\" reads SQL Server change data capture; a PostgreSQL \
                 source is exact in \"poll\" mode"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A list, or a text of comma-separated items.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCommas {
        List(Vec<String>),
        Commas(String),
    }
    Ok(match ListOrCommas::deserialize(deserializer)? {
        ListOrCommas::List(items) => items,
        ListOrCommas::Commas(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// The environment variable that sets a config path, e.g. `HERALD__NOTIFY__PASSWORD`.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `tracing` filter directives; `RUST_LOG` overrides them.
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// A list, or one comma-separated text (`HERALD__KAFKA__BROKERS=k1:9092,k2:9092`).
    #[serde(deserialize_with = "list_or_commas")]
    pub brokers: Vec<String>,
    /// The topic of change events.
    pub topic: String,
    /// Used when the detector creates the topic because it does not exist yet.
    pub partitions: i32,
    pub replication_factor: i32,
    /// The renderers' consumer group.
    pub consumer_group: String,
    /// How long the group waits for a silent renderer before giving its partitions to others.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Passed to librdkafka as is, after our own settings: any client option can be set.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    /// SQL Server (tiberius). The source role connects with `ApplicationIntent=ReadOnly`.
    Mssql,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// From the environment only (`HERALD__SOURCE__PASSWORD`, `HERALD__NOTIFY__PASSWORD`).
    #[serde(default)]
    pub password: Option<SecretString>,
    pub database: String,
    pub pool_size: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The longest any one statement may run; PostgreSQL also cancels it on the server.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// SQL Server: accept the server's certificate without validating it. Encryption stays
    /// on; only for servers with self-signed certificates (local and compose). Logged.
    #[serde(default)]
    pub trust_cert: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSettings {
    /// Names this detector in schedule leases ([`Settings::load`] fills in a default).
    #[serde(default)]
    pub instance_id: String,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Rows read per schedule per query.
    pub batch_size: u32,
    /// Detection passes run side by side (each holds a source connection while it reads), so
    /// a slow or huge table holds back only its own schedule.
    pub max_concurrent_passes: usize,
    /// How long a detector owns a schedule without renewing the lease.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How changes are read; see [`DetectionMode`].
    pub mode: DetectionMode,
    /// PostgreSQL, the one assumption of exact detection (G): the longest time between a
    /// change value being stamped and its transaction's first write. A transaction that
    /// takes longer is notified late, by the sweep.
    #[serde(with = "humantime_serde")]
    pub max_write_delay: Duration,
    /// SQL Server in `poll` mode: how far behind the replica's last commit each poll reads
    /// again. Exact for transactions that commit within this of their change values; later
    /// ones are notified by the sweep.
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// How far below the hold-back line the sweep looks for changes that never became
    /// messages.
    #[serde(with = "humantime_serde")]
    pub sweep_window: Duration,
    /// How often the sweep runs; `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

/// How the detector reads a source's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectionMode {
    /// Range reads on each schedule's (change column, key) index: exact on PostgreSQL;
    /// on SQL Server, exact for transactions shorter than `lookback`.
    Poll,
    /// SQL Server only: read the table's change-data-capture instance by LSN, as Debezium
    /// does. Exact; the DBA enables CDC on the table.
    Cdc,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RendererSettings {
    /// Names this renderer in render-retry leases ([`Settings::load`] fills in a default).
    #[serde(default)]
    pub instance_id: String,
    /// Events rendered together; their offsets are stored once the whole batch is durable.
    pub batch_size: usize,
    /// How long to wait for a batch to fill before rendering what has arrived.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Merge-function calls in flight at once.
    pub merge_concurrency: usize,
    /// The longest a merge-function call may take; a slower one is cancelled and its message
    /// is `render_retry`, so it holds up no other.
    #[serde(with = "humantime_serde")]
    pub merge_timeout: Duration,
    /// A schedule whose merge call takes longer than this is slow: for a minute its new
    /// changes go straight to `render_retry` (waiting, not an attempt), where the retry loop
    /// renders them a few at a time, so that they do not hold up other schedules' changes.
    #[serde(with = "humantime_serde")]
    pub slow_merge: Duration,
    /// Attempts before a failing merge function leaves the message `render_failed`.
    pub max_render_attempts: i32,
    /// How long a change's row may stay absent from the replica (behind the event, or
    /// deleted) before its message is `skipped`.
    #[serde(with = "humantime_serde")]
    pub absent_row_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderSettings {
    /// Names this sender in message leases ([`Settings::load`] fills in a default). At its
    /// start a sender declares the calls it left unfinished under this name in doubt.
    #[serde(default)]
    pub instance_id: String,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Provider calls in flight at once. Claims take up to the free slots, and each call
    /// that ends frees its slot at once.
    pub max_in_flight: usize,
    /// How long a claimed message stays reserved for this sender.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Attempts before a message that keeps failing transiently is `failed`.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt, with jitter, up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// How often messages `in_doubt` are settled by the providers' reports recorded since,
    /// and SMS looked for in Twilio's message list; `0s`: never (reports still settle a
    /// message that is in doubt when they arrive).
    #[serde(with = "humantime_serde")]
    pub settle_interval: Duration,
    /// How long after its call an `in_doubt` SMS is looked for in the list; then, unless a
    /// report settles it, it waits for a person.
    #[serde(with = "humantime_serde")]
    pub settle_within: Duration,
    /// How often the provider accounts admins define (`provider_account`) are read again.
    #[serde(with = "humantime_serde")]
    pub accounts_refresh: Duration,
}

/// Where each service serves `/metrics`, `/healthz` and `/readyz` (empty: not served).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    #[serde(deserialize_with = "listen_address")]
    pub detector: Option<SocketAddr>,
    #[serde(deserialize_with = "listen_address")]
    pub renderer: Option<SocketAddr>,
    #[serde(deserialize_with = "listen_address")]
    pub sender: Option<SocketAddr>,
    /// How often the figures read from the databases and the broker (queue depth, consumer
    /// lag) are read again: never per scrape, so scraping cannot load them.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
}

/// Where the sender takes the providers' webhooks (empty: not taken), and how it checks them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    #[serde(deserialize_with = "listen_address")]
    pub listen: Option<SocketAddr>,
    /// The URL the providers reach `listen` at (`https://…`, no trailing path): Twilio gets
    /// `<public_url>/webhooks/twilio?message_id=…` as each SMS's `StatusCallback`, and signs
    /// its callbacks over that URL. Empty: no status callbacks are asked for.
    pub public_url: String,
    /// SendGrid's Event Webhook verification key (Mail Settings → Signed Event Webhook), base64
    /// DER as SendGrid shows it; empty: SendGrid events are refused.
    pub sendgrid_verification_key: String,
    /// Events signed longer ago than this (or this far ahead) are refused: longer than the
    /// provider keeps retrying a post, since a retry may carry its first signature (a replay
    /// within it changes nothing: each event is recorded once).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

/// One-click unsubscribe (RFC 8058) in the emails of schedules that offer it: links to
/// `<webhooks.public_url>/unsubscribe/<token>`, taken on `webhooks.listen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeSettings {
    /// Signs the links' tokens, so that none can be forged or turned to another message.
    /// From the environment only: `HERALD__UNSUBSCRIBE__SECRET`. Unset: no links are offered.
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// A mailbox that also takes unsubscribe requests (`mailto:` in `List-Unsubscribe`);
    /// empty: none.
    pub mailto: String,
}

/// `host:port`, or empty for none.
fn listen_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a listen address (IP:port, such as 127.0.0.1:9401), nor empty for none"
        ))
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub sendgrid: SendGridSettings,
    pub twilio: TwilioSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridSettings {
    /// `https://api.sendgrid.com` in production.
    pub base_url: String,
    /// From the environment only: `HERALD__PROVIDERS__SENDGRID__API_KEY`.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    pub from_email: String,
    pub from_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    /// `https://api.twilio.com` in production.
    pub base_url: String,
    pub account_sid: String,
    /// From the environment only: `HERALD__PROVIDERS__TWILIO__AUTH_TOKEN`.
    #[serde(default)]
    pub auth_token: Option<SecretString>,
    /// The sender: a number (or short code, or sender ID), unless a messaging service is
    /// named, which picks one from its pool.
    #[serde(default)]
    pub from_number: String,
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
}

impl TwilioSettings {
    /// Twilio refuses a malformed account SID (404), sender (21212) or messaging service
    /// (21701) for every message, so they are checked before the first one; `what` names
    /// these settings in the error.
    pub fn check(&self, what: &str) -> Result<(), ConfigError> {
        let sid = |prefix: &str, sid: &str| {
            sid.strip_prefix(prefix)
                .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        let inconsistent = |message: String| Err(ConfigError::Inconsistent(message));
        let account_sid = &self.account_sid;
        if !sid("AC", account_sid) {
            return inconsistent(format!(
                "{what}.account_sid `{account_sid}` is not `AC` followed by 32 hexadecimal digits"
            ));
        }
        if let Some(service) = &self.messaging_service_sid {
            return if sid("MG", service) {
                Ok(())
            } else {
                inconsistent(format!(
                    "{what}.messaging_service_sid `{service}` is not `MG` followed by 32 \
                     hexadecimal digits"
                ))
            };
        }
        let from = &self.from_number;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let e164 = from
            .strip_prefix('+')
            .is_some_and(|n| digits(n) && (8..=15).contains(&n.len()) && !n.starts_with('0'));
        let short_code = digits(from) && (3..=6).contains(&from.len());
        let sender_id = (1..=11).contains(&from.len())
            && from.bytes().any(|b| b.is_ascii_alphabetic())
            && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ');
        if e164 || short_code || sender_id {
            Ok(())
        } else {
            inconsistent(format!(
                "{what}.from_number `{from}` is not an E.164 number (`+` and 8 to 15 digits), a \
                 short code or an alphanumeric sender ID"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
    }

    #[test]
    fn every_shipped_environment_loads() {
        for environment in ["local", "test", "compose"] {
            let settings = Settings::load_from(&config_dir(), environment)
                .unwrap_or_else(|e| panic!("{environment}: {e}"));
            assert!(!settings.kafka.brokers.is_empty(), "{environment}");
        }
    }

    /// Settings from the shipped `base.toml` with `toml` as environment `environment`.
    fn load_overlay(environment: &str, toml: &str) -> Result<Settings, String> {
        let dir = std::env::temp_dir().join(format!("herald-{environment}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(config_dir().join("base.toml"), dir.join("base.toml")).unwrap();
        std::fs::write(dir.join(format!("{environment}.toml")), toml).unwrap();
        Settings::load_from(&dir, environment).map_err(|e| e.to_string())
    }

    #[test]
    fn a_secret_in_a_file_is_refused() {
        let error = load_overlay("leaky", "[notify]\npassword = \"hunter2\"\n").unwrap_err();
        assert!(error.contains("HERALD__NOTIFY__PASSWORD"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_lease_shorter_than_a_provider_call_is_an_error() {
        let error = load_overlay("short", "[sender]\nlease = \"5s\"\n").unwrap_err();
        assert!(error.contains("sender.lease"), "{error}");
    }

    #[test]
    fn malformed_twilio_settings_and_zero_timeouts_are_errors() {
        let check = |name: &str, toml: &str| load_overlay(name, toml).map(|_| ());
        let error = check("sid", "[providers.twilio]\naccount_sid = \"ACfake\"\n").unwrap_err();
        assert!(error.contains("account_sid `ACfake`"), "{error}");
        for from in ["15005550006", "+0123456789", "555-0100"] {
            let toml = format!("[providers.twilio]\nfrom_number = \"{from}\"\n");
            let error = check("from", &toml).unwrap_err();
            assert!(error.contains("from_number"), "{from}: {error}");
        }
        for from in ["+15005550006", "12345", "Acme"] {
            let toml = format!("[providers.twilio]\nfrom_number = \"{from}\"\n");
            assert_eq!(check("from", &toml), Ok(()), "{from}");
        }
        let error = check("zero", "[notify]\nstatement_timeout = \"0s\"\n").unwrap_err();
        assert!(error.contains("notify.statement_timeout"), "{error}");
        let error = check("merge", "[renderer]\nmerge_timeout = \"1m\"\n").unwrap_err();
        assert!(error.contains("renderer.merge_timeout"), "{error}");
    }

    #[test]
    fn cdc_mode_needs_a_sql_server_source() {
        let error = load_overlay("cdc", "[detector]\nmode = \"cdc\"\n").unwrap_err();
        assert!(error.contains("detector.mode"), "{error}");
    }

    #[test]
    fn settings_from_the_environment_keep_their_text() {
        let variables = [
            ("HERALD__PROVIDERS__TWILIO__FROM_NUMBER", "+15005550006"),
            ("HERALD__PROVIDERS__TWILIO__AUTH_TOKEN", "0123456789"),
            ("HERALD__PROVIDERS__SENDGRID__FROM_NAME", "1e5"),
            ("HERALD__DETECTOR__BATCH_SIZE", "77"),
            ("HERALD__DETECTOR__POLL_INTERVAL", "250ms"),
            ("HERALD__KAFKA__BROKERS", "k1:9092, k2:9092"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .into_iter()
        .collect();
        let settings = Settings::load_with(&config_dir(), "local", Some(variables)).unwrap();
        assert_eq!(settings.providers.twilio.from_number, "+15005550006");
        let token = settings.providers.twilio.auth_token.unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&token), "0123456789");
        assert_eq!(settings.providers.sendgrid.from_name, "1e5");
        assert_eq!(settings.detector.batch_size, 77);
        assert_eq!(settings.detector.poll_interval, Duration::from_millis(250));
        assert_eq!(settings.kafka.brokers, ["k1:9092", "k2:9092"]);
    }

    #[test]
    fn a_short_unsubscribe_secret_is_refused_and_an_empty_one_is_unset() {
        let load = |secret: &str| {
            let variables = [("HERALD__UNSUBSCRIBE__SECRET".to_owned(), secret.to_owned())]
                .into_iter()
                .collect();
            Settings::load_with(&config_dir(), "local", Some(variables))
        };
        let error = load("hunter2").unwrap_err().to_string();
        assert!(error.contains("at least 16"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(load("").is_ok(), "empty: no links, not an error");
        assert!(load("sixteen-chars-ok").is_ok());
    }

    #[test]
    fn unnamed_instances_are_named_after_host_and_process() {
        let mut settings = Settings::load_from(&config_dir(), "local").unwrap();
        settings.sender.instance_id = "sender-blue".into();
        settings.detector.instance_id = String::new();
        settings.renderer.instance_id = " ".into();
        settings.name_instances("box7");
        let process = std::process::id();
        assert_eq!(
            settings.sender.instance_id, "sender-blue",
            "set names are kept"
        );
        assert_eq!(
            settings.detector.instance_id,
            format!("detector-box7-{process}")
        );
        assert_eq!(
            settings.renderer.instance_id,
            format!("renderer-box7-{process}")
        );
    }

    #[test]
    fn a_misspelt_key_is_an_error() {
        let error = load_overlay("typo", "[sender]\nbatch_sise = 5\n").unwrap_err();
        assert!(error.contains("batch_sise"), "{error}");
    }
}
