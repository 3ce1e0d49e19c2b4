//! `renderer`: a consumer-group member turning change events into queued messages.
//!
//! Configuration: `config/base.toml` + `config/$HERALD_ENV.toml` + `HERALD__*` variables.
//! Runs until SIGINT or SIGTERM, then commits the offsets it stored. An offset is stored only
//! after its event's outcome is durable in the notification database, so a restart (or a
//! SIGKILL) replays events rather than loses them, and replays insert nothing new.

use std::sync::Arc;

use anyhow::Context;
use herald_core::config::{DetectionMode, Settings};
use herald_core::kafka::OffsetsReader;
use herald_core::{kafka, metrics, shutdown, store, telemetry};
use prometheus_client::registry::Registry;
use renderer::metrics::RendererMetrics;
use renderer::render::Renderer;
use renderer::{consumer, group_watch, retries};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading settings")?;
    telemetry::init(&settings.telemetry);
    let cancel = shutdown::on_signal();

    let source = store::connect_source(&settings.source, DetectionMode::Poll)
        .await
        .context("connecting to the source replica")?;
    let notify = store::connect_notify(&settings.notify)
        .await
        .context("connecting to the notification database")?;
    let mut registry = Registry::default();
    let renderer_metrics = RendererMetrics::new(&mut registry);
    if let Some(listen) = settings.metrics.renderer {
        let offsets =
            Arc::new(OffsetsReader::new(&settings.kafka).context("creating a Kafka client")?);
        let dependencies = vec![
            metrics::notify_db(notify.clone()),
            metrics::source_db(source.clone()),
            metrics::broker(offsets.clone()),
        ];
        metrics::serve(listen, registry, dependencies, cancel.clone())
            .await
            .with_context(|| format!("listening on {listen} (metrics.renderer)"))?;
        tokio::spawn({
            let (watcher, every, cancel) = (
                renderer_metrics.clone(),
                settings.metrics.refresh,
                cancel.clone(),
            );
            async move { watcher.watch_lag(offsets, every, cancel).await }
        });
    }
    if !kafka::wait_for_topic(&settings.kafka, &cancel).await {
        return Ok(());
    }
    let events =
        Arc::new(consumer::subscribe(&settings.kafka).context("subscribing to change events")?);
    let renderer = Arc::new(Renderer::new(
        source,
        notify,
        settings.renderer,
        renderer_metrics,
    ));

    tracing::info!(topic = %settings.kafka.topic, group = %settings.kafka.consumer_group, "renderer running");
    let retrying = tokio::spawn(retries::run(renderer.clone(), cancel.clone()));
    let watching = tokio::spawn(group_watch::run(
        events.clone(),
        settings.kafka.clone(),
        cancel.clone(),
    ));
    consumer::run(renderer, &events, cancel).await;
    retrying.await.context("render retry loop")?;
    watching.await.context("consumer group watch")?;
    Ok(())
}
