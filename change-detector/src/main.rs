//! `change-detector`: polls the source replica's watched tables and emits change events.
//!
//! Configuration: `config/base.toml` + `config/$HERALD_ENV.toml` + `HERALD__*` variables.
//! Runs until SIGINT or SIGTERM, then flushes the producer. Every event it emitted was
//! acknowledged by Kafka before its mark moved, so a restart (or a SIGKILL) re-emits
//! rather than skips.

use std::sync::Arc;

use anyhow::Context;
use change_detector::detector::Detector;
use change_detector::metrics::DetectorMetrics;
use herald_core::config::Settings;
use herald_core::kafka::OffsetsReader;
use herald_core::{kafka, metrics, shutdown, store, telemetry};
use prometheus_client::registry::Registry;

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
    let mut registry = Registry::default();
    let detector_metrics = DetectorMetrics::new(&mut registry);
    if let Some(listen) = settings.metrics.detector {
        let offsets =
            Arc::new(OffsetsReader::new(&settings.kafka).context("creating a Kafka client")?);
        let dependencies = vec![
            metrics::notify_db(notify.clone()),
            metrics::source_db(source.clone()),
            metrics::broker(offsets),
        ];
        metrics::serve(listen, registry, dependencies, cancel.clone())
            .await
            .with_context(|| format!("listening on {listen} (metrics.detector)"))?;
        // Ages grow while passes stall, so an alert on them sees a stuck detector.
        tokio::spawn({
            let (ticking, cancel) = (detector_metrics.clone(), cancel.clone());
            async move {
                let second = std::time::Duration::from_secs(1);
                shutdown::every(second, &cancel, || async { ticking.tick() }).await;
            }
        });
    }
    if !kafka::wait_for_topic(&settings.kafka, &cancel).await {
        return Ok(());
    }
    Detector::new(
        source,
        notify,
        settings.kafka,
        settings.detector,
        detector_metrics,
    )
    .context("creating the Kafka producer")?
    .run(cancel)
    .await;
    Ok(())
}
