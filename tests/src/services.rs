//! The three service binaries as child processes, configured for one test through `HERALD__*`
//! variables, each logging to its own file (appended across restarts).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::{
    Engine, SENDGRID_KEY, Server, TWILIO_SID, TWILIO_TOKEN, UNSUBSCRIBE_SECRET, kafka_brokers,
    repo_root,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Detector,
    Renderer,
    Sender,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Detector, Service::Renderer, Service::Sender];

    /// Its binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Service::Detector => "change-detector",
            Service::Renderer => "renderer",
            Service::Sender => "sender",
        }
    }
}

pub(crate) struct Services {
    pub(crate) topic: String,
    env: Vec<(String, String)>,
    /// Settings for one service only, over `env`, from its next start.
    overrides: HashMap<Service, Vec<(String, String)>>,
    pub(crate) bin_dir: PathBuf,
    pub(crate) log_dir: PathBuf,
    /// By service and instance number (1 unless a scenario runs several).
    running: HashMap<(Service, usize), Child>,
}

impl Services {
    pub(crate) fn new(engine: Engine, name: &str, provider_url: &str) -> anyhow::Result<Self> {
        // Test binaries live in target/<profile>/deps; the service binaries one level up.
        let bin_dir = std::env::current_exe()?
            .parent()
            .and_then(|deps| deps.parent())
            .context("locating the target directory")?
            .to_path_buf();
        let log_dir = bin_dir.join("e2e-logs").join(name);
        std::fs::create_dir_all(&log_dir)?;
        let Server {
            host,
            port,
            user,
            password,
        } = engine.server()?;
        let mut env: Vec<(String, String)> = [
            (
                "HERALD_CONFIG_DIR",
                repo_root().join("config").display().to_string(),
            ),
            ("HERALD_ENV", "test".into()),
            ("HERALD__KAFKA__BROKERS", kafka_brokers()),
            ("HERALD__KAFKA__TOPIC", name.into()),
            ("HERALD__KAFKA__CONSUMER_GROUP", name.into()),
            ("HERALD__KAFKA__PARTITIONS", "3".into()),
            // Stable names, as an operator running one instance of each would set them: a
            // restarted service takes its own leases back at once.
            ("HERALD__DETECTOR__INSTANCE_ID", "detector-1".into()),
            ("HERALD__RENDERER__INSTANCE_ID", "renderer-1".into()),
            ("HERALD__SENDER__INSTANCE_ID", "sender-1".into()),
            ("HERALD__PROVIDERS__SENDGRID__BASE_URL", provider_url.into()),
            ("HERALD__PROVIDERS__SENDGRID__API_KEY", SENDGRID_KEY.into()),
            ("HERALD__PROVIDERS__TWILIO__BASE_URL", provider_url.into()),
            ("HERALD__PROVIDERS__TWILIO__ACCOUNT_SID", TWILIO_SID.into()),
            ("HERALD__PROVIDERS__TWILIO__AUTH_TOKEN", TWILIO_TOKEN.into()),
            ("HERALD__UNSUBSCRIBE__SECRET", UNSUBSCRIBE_SECRET.into()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        for (role, suffix) in [("SOURCE", "src"), ("NOTIFY", "ntf")] {
            let setting = |key: &str| format!("HERALD__{role}__{key}");
            env.extend([
                (setting("ENGINE"), engine.folder().to_owned()),
                (setting("HOST"), host.clone()),
                (setting("PORT"), port.to_string()),
                (setting("USER"), user.clone()),
                (setting("PASSWORD"), password.clone()),
                (setting("DATABASE"), format!("{name}_{suffix}")),
                // SQL Server test instances have self-signed certificates.
                (setting("TRUST_CERT"), (engine == Engine::Mssql).to_string()),
            ]);
        }
        if engine == Engine::Mssql {
            // HERALD_TEST_MSSQL_MODE: the SQL Server runs detect by polling or by CDC.
            env.push((
                "HERALD__DETECTOR__MODE".into(),
                crate::mssql::detection_mode()?.into(),
            ));
        }
        Ok(Services {
            topic: name.into(),
            env,
            overrides: HashMap::new(),
            bin_dir,
            log_dir,
            running: HashMap::new(),
        })
    }

    /// Sets `key` for `service` from its next start.
    pub(crate) fn set(&mut self, service: Service, key: &str, value: &str) {
        let settings = self.overrides.entry(service).or_default();
        settings.retain(|(k, _)| k != key);
        settings.push((key.to_owned(), value.to_owned()));
    }

    /// Every setting `service` starts with.
    pub(crate) fn env_of(&self, service: Option<Service>) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if let Some(overrides) = service.and_then(|service| self.overrides.get(&service)) {
            env.extend(overrides.iter().cloned());
        }
        env
    }

    fn log_path(&self, service: Service, instance: usize) -> PathBuf {
        let name = match instance {
            1 => service.binary().to_owned(),
            n => format!("{}-{n}", service.binary()),
        };
        self.log_dir.join(format!("{name}.log"))
    }

    pub(crate) async fn start(&mut self, service: Service, instance: usize) -> anyhow::Result<()> {
        if self.running.contains_key(&(service, instance)) {
            bail!("{service:?} {instance} is already running");
        }
        let binary = self.bin_dir.join(service.binary());
        if !binary.exists() {
            bail!(
                "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
                binary.display()
            );
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(service, instance))?;
        let child = Command::new(&binary)
            .envs(self.env_of(Some(service)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        self.running.insert((service, instance), child);
        Ok(())
    }

    /// The process id of a running instance.
    pub(crate) fn pid(&self, service: Service, instance: usize) -> Option<u32> {
        self.running.get(&(service, instance)).and_then(Child::id)
    }

    pub(crate) async fn kill(&mut self, service: Service, instance: usize) -> anyhow::Result<()> {
        let mut child = self
            .running
            .remove(&(service, instance))
            .with_context(|| format!("{service:?} {instance} is not running"))?;
        child.kill().await?;
        Ok(())
    }

    pub(crate) async fn stop(&mut self, service: Service) -> anyhow::Result<()> {
        let mut child = self
            .running
            .remove(&(service, 1))
            .with_context(|| format!("{service:?} is not running"))?;
        let pid = child.id().context("the child has exited already")?;
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM)?;
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .with_context(|| format!("{service:?} did not exit within 20 s of SIGTERM"))??;
        if !status.success() {
            bail!("{service:?} exited with {status} after SIGTERM");
        }
        Ok(())
    }

    pub(crate) fn log(&self, service: Service, instance: usize) -> String {
        std::fs::read_to_string(self.log_path(service, instance)).unwrap_or_default()
    }

    pub(crate) fn log_tails(&self, lines: usize) -> String {
        Service::ALL
            .into_iter()
            .map(|service| {
                let log = self.log(service, 1);
                let all: Vec<&str> = log.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!(
                    "--- {} log (last {lines} lines) ---\n{tail}",
                    service.binary()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
