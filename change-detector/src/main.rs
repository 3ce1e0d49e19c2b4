//! `change-detector`: polls the source replica's watched tables and emits change events.
//!
//! Configuration: `config/base.toml` + `config/$HERALD_ENV.toml` + `HERALD__*` variables.
//! Runs until SIGINT or SIGTERM, then flushes the producer. Every event it emitted was
//! acknowledged by Kafka before its mark moved, so a restart (or a SIGKILL) re-emits
//! rather than skips.

use anyhow::Context;
use change_detector::detector::Detector;
use herald_core::config::Settings;
use herald_core::telemetry::error_chain;
use herald_core::{kafka, shutdown, store, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading settings")?;
    telemetry::init(&settings.telemetry);
    let cancel = shutdown::on_signal();

    let source = store::connect_source(&settings.source, settings.detector.mode)
        .await
        .context("connecting to the source replica")?;
    let notify = store::connect_notify(&settings.notify)
        .await
        .context("connecting to the notification database")?;
    loop {
        let created = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            created = kafka::ensure_topic(&settings.kafka) => created,
        };
        let Err(error) = created else { break };
        tracing::warn!(error = %error_chain(&error), topic = %settings.kafka.topic, "waiting for Kafka");
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
    Detector::new(source, notify, settings.kafka, settings.detector)
        .context("creating the Kafka producer")?
        .run(cancel)
        .await;
    Ok(())
}
