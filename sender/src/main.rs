//! `sender`: sends queued notifications through SendGrid and Twilio until SIGINT or SIGTERM.
//!
//! Several senders can share one queue (each claims messages under a lease, in its own name:
//! `sender.instance_id`, else `sender-<host>-<process id>`). A message is marked `sending` before its provider call; if this
//! process dies mid-call, the message is `in_doubt` and never resent automatically. On a
//! signal it stops claiming, lets calls in flight finish and records their outcomes. An
//! `in_doubt` SMS that Twilio's message list shows is settled as `sent` (`settle`), and so is
//! any message SendGrid reports an event for (`webhooks`, on `[webhooks] listen`).

use std::sync::Arc;

use anyhow::Context;
use herald_core::config::Settings;
use herald_core::metrics;
use herald_core::telemetry::error_chain;
use herald_core::{shutdown, store, telemetry};
use prometheus_client::registry::Registry;
use sender::metrics::SenderMetrics;
use sender::provider::Providers;
use sender::settle::Settler;
use sender::unsubscribe::OneClick;
use sender::webhooks::Webhooks;
use sender::worker::Sender;

/// How soon the provider accounts are read again when the first read fails.
const ACCOUNTS_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading settings")?;
    telemetry::init(&settings.telemetry);
    let cancel = shutdown::on_signal();
    let store = store::connect_notify(&settings.notify)
        .await
        .context("connecting to the notification database")?;
    let one_click = OneClick::new(&settings.unsubscribe, &settings.webhooks.public_url);
    if one_click.is_some() && settings.webhooks.listen.is_none() {
        tracing::warn!(
            "webhooks.listen is not set: the unsubscribe links in emails lead nowhere this sender serves"
        );
    }
    let providers = Arc::new(
        Providers::new(
            &settings.providers,
            settings.sender.http_timeout,
            &settings.webhooks.public_url,
            one_click.clone(),
        )
        .context("setting up the providers")?,
    );
    let mut registry = Registry::default();
    let sender_metrics = SenderMetrics::new(&mut registry);
    if let Some(listen) = settings.metrics.sender {
        let dependencies = vec![metrics::notify_db(store.clone())];
        metrics::serve(listen, registry, dependencies, cancel.clone())
            .await
            .with_context(|| format!("listening on {listen} (metrics.sender)"))?;
        let (watcher, store, every) = (
            sender_metrics.clone(),
            store.clone(),
            settings.metrics.refresh,
        );
        tokio::spawn({
            let cancel = cancel.clone();
            async move { watcher.watch_queue(store, every, cancel).await }
        });
    }
    // Read before the first claim: a message of an account not read yet would pause it.
    while let Err(error) = providers.read_accounts(store.as_ref()).await {
        tracing::warn!(error = %error_chain(&error), "could not read the provider accounts yet; trying again");
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(ACCOUNTS_RETRY) => {}
        }
    }
    tokio::spawn({
        let (providers, store, cancel) = (providers.clone(), store.clone(), cancel.clone());
        let every = settings.sender.accounts_refresh;
        async move { providers.keep_accounts(store, every, cancel).await }
    });
    if let Some(listen) = settings.webhooks.listen {
        Webhooks::new(
            store.clone(),
            sender_metrics.clone(),
            &settings.webhooks,
            providers.clone(),
            one_click,
        )?
        .serve(listen, cancel.clone())
        .await
        .with_context(|| format!("listening on {listen} (webhooks.listen)"))?;
    }
    let settler = Settler {
        store: store.clone(),
        providers: providers.clone(),
        settings: settings.sender.clone(),
        metrics: sender_metrics.clone(),
    };
    let settling = tokio::spawn(settler.run(cancel.clone()));
    Sender::new(store, providers, settings.sender, sender_metrics)
        .run(cancel)
        .await;
    settling.await.context("in-doubt settling")?;
    Ok(())
}
