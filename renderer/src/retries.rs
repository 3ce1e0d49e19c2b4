//! Render retries: messages whose merge function failed (or whose template was missing) are
//! `render_retry` rows with a due time. This loop leases the due ones, renders them again,
//! and records the new outcome; after `max_render_attempts` they end `render_failed`.
//! Several renderers share the work through the lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use herald_core::model::{RenderRetry, Rendering};
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

/// Re-renders the due retries once; returns how many were handled. Each schedule's are
/// rendered on their own and recorded as soon as they are, so that a slow merge function's
/// round holds up no other schedule's retries; the outcomes are recorded `merge_concurrency`
/// at a time in all.
pub async fn step(renderer: &Renderer) -> StoreResult<usize> {
    let settings = renderer.settings();
    let owner = settings.instance_id.as_str();
    let due = renderer
        .notify()
        .claim_render_retries(owner, LEASE, settings.batch_size as u32)
        .await?;
    let handled = due.len();
    let mut by_schedule: BTreeMap<i64, Vec<RenderRetry>> = BTreeMap::new();
    for retry in due {
        by_schedule
            .entry(retry.key.schedule_id)
            .or_default()
            .push(retry);
    }
    // An unavailable database fails the cycle: the retries of the schedules it failed are not
    // recorded, their leases run out and they are claimed again.
    let mut unavailable = None;
    futures::stream::iter(by_schedule.into_values())
        .map(|due| render_schedule(renderer, due))
        .buffer_unordered(usize::MAX)
        .filter_map(|rendered| {
            futures::future::ready(
                rendered
                    .map_err(|error| unavailable = Some(error))
                    .ok()
                    .map(futures::stream::iter),
            )
        })
        .flatten()
        .for_each_concurrent(settings.merge_concurrency, |(retry, attempt, rendering)| async move {
            let recorded = renderer
                .notify()
                .finish_render_retry(
                    retry.message_id,
                    owner,
                    &rendering,
                    renderer.due_in(&rendering, attempt),
                )
                .await;
            if let Err(error) = recorded {
                // The lease runs out and the retry is claimed again.
                tracing::warn!(message_id = retry.message_id, error = %error_chain(&error), "render retry not recorded");
            }
        })
        .await;
    unavailable.map_or(Ok(handled), Err)
}

/// Renders one schedule's due retries: each with its attempt and rendering.
async fn render_schedule(
    renderer: &Renderer,
    due: Vec<RenderRetry>,
) -> StoreResult<Vec<(RenderRetry, i32, Rendering)>> {
    let changes: Vec<Change> = due
        .iter()
        .map(|retry| Change {
            key: retry.key.clone(),
            channel: retry.channel,
            attempt: retry.render_attempts + 1,
            detected_at: retry.detected_at,
        })
        .collect();
    let renderings = renderer.render_all(&changes, Lane::Retries).await?;
    Ok(due
        .into_iter()
        .zip(&changes)
        .zip(renderings)
        .map(|((retry, change), rendering)| (retry, change.attempt, rendering))
        .collect())
}
