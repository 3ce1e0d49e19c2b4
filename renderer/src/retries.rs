//! Render retries: messages whose merge function failed (or whose template was missing) are
//! `render_retry` rows with a due time. This loop leases the due ones, renders them again,
//! and records the new outcome; after `max_render_attempts` they end `render_failed`.
//! Several renderers share the work through the lease.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herald_core::store::StoreResult;
use herald_core::telemetry::error_chain;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::render::{Change, Lane, Renderer};

/// How long a claimed retry stays reserved for this renderer.
const LEASE: Duration = Duration::from_secs(60);

pub async fn run(renderer: Arc<Renderer>, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(renderer.settings().retry_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(error) = step(&renderer).await {
            tracing::warn!(error = %error_chain(&error), "render retry cycle failed");
        }
    }
}

/// Re-renders the due retries once; returns how many were handled.
pub async fn step(renderer: &Renderer) -> StoreResult<usize> {
    let settings = renderer.settings();
    let owner = settings.instance_id.as_str();
    let due = renderer
        .notify()
        .claim_render_retries(owner, LEASE, settings.batch_size as u32)
        .await?;
    let changes: Vec<Change> = due
        .iter()
        .map(|retry| Change {
            key: retry.key.clone(),
            channel: retry.channel,
            attempt: retry.render_attempts + 1,
            detected_at: retry.detected_at,
        })
        .collect();
    // An unavailable database fails the cycle: the leases run out and the retries are
    // claimed again.
    let renderings = renderer.render_all(&changes, Lane::Retries).await?;
    let handled = due.len();
    futures::stream::iter(due.iter().zip(&changes).zip(renderings))
        .for_each_concurrent(settings.merge_concurrency, |((retry, change), rendering)| async move {
            let recorded = renderer
                .notify()
                .finish_render_retry(
                    retry.message_id,
                    owner,
                    &rendering,
                    renderer.due_in(&rendering, change.attempt),
                )
                .await;
            if let Err(error) = recorded {
                // The lease runs out and the retry is claimed again.
                tracing::warn!(message_id = retry.message_id, error = %error_chain(&error), "render retry not recorded");
            }
        })
        .await;
    Ok(handled)
}
