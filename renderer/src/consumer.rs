//! The Kafka side of the renderer: a consumer-group member that renders change events in
//! batches and writes the outcomes to the queue.
//!
//! Guarantee: at-least-once from Kafka into an idempotent sink. Offsets are stored
//! (`enable.auto.offset.store=false`) only after every event of the batch has a durable
//! outcome in the notification database — a queued message, or a recorded reason — and are
//! committed in the background and once more at shutdown. A replayed event finds its
//! message identity taken and inserts nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herald_core::config::KafkaSettings;
use herald_core::event::ChangeEvent;
use herald_core::kafka;
use herald_core::model::NewMessage;
use herald_core::store::StoreResult;
use herald_core::telemetry::error_chain;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::render::{Change, Lane, Renderer};

/// Logs rebalances and commits.
pub struct LoggingContext;

impl ClientContext for LoggingContext {}

impl ConsumerContext for LoggingContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = ?partitions.to_topic_map().keys().collect::<Vec<_>>(), "partitions assigned")
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = ?partitions.to_topic_map().keys().collect::<Vec<_>>(), "partitions revoked")
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = ?offsets.to_topic_map(), "offsets committed"),
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "offset commit failed"),
        }
    }
}

pub type EventConsumer = StreamConsumer<LoggingContext>;

pub fn subscribe(settings: &KafkaSettings) -> KafkaResult<EventConsumer> {
    let consumer: EventConsumer =
        kafka::consumer_config(settings).create_with_context(LoggingContext)?;
    consumer.subscribe(&[&settings.topic])?;
    Ok(consumer)
}

/// Consumes until cancelled, then commits the stored offsets.
pub async fn run(renderer: Arc<Renderer>, consumer: &EventConsumer, cancel: CancellationToken) {
    let settings = renderer.settings().clone();
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            received = consumer.recv() => received,
        };
        let mut batch = match first {
            Ok(message) => vec![message.detach()],
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "Kafka receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let deadline = tokio::time::Instant::now() + settings.batch_wait;
        while batch.len() < settings.batch_size {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                Ok(Err(error)) => {
                    tracing::warn!(error = %error_chain(&error), "Kafka receive failed")
                }
                Err(_elapsed) => break,
            }
        }
        if !record_batch(&renderer, &batch, &cancel).await {
            break;
        }
        if let Err(error) = consumer.store_offsets(&next_offsets(&batch)) {
            // The partitions were revoked meanwhile: their new owner replays these events
            // and the queue's identity key drops the duplicates.
            tracing::info!(error = %error_chain(&error), "could not store offsets");
        }
    }
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::info!(error = %error_chain(&error), "final offset commit");
    }
    tracing::info!("renderer consumer stopped");
}

/// For each partition in the batch, the offset to resume from.
fn next_offsets(batch: &[OwnedMessage]) -> TopicPartitionList {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for message in batch {
        let entry = next
            .entry((message.topic(), message.partition()))
            .or_default();
        *entry = (*entry).max(message.offset() + 1);
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a fresh partition list takes any offset");
    }
    list
}

/// Renders and records every event of the batch, retrying while a database is unavailable.
/// Returns false only if cancelled before the batch was durable.
async fn record_batch(
    renderer: &Renderer,
    batch: &[OwnedMessage],
    cancel: &CancellationToken,
) -> bool {
    // Each event read once; the unreadable ones are kept aside with the reason.
    let mut pending: Vec<(&OwnedMessage, ChangeEvent)> = Vec::with_capacity(batch.len());
    for message in batch {
        match ChangeEvent::from_json(message.payload().unwrap_or_default()) {
            Ok(event) => pending.push((message, event)),
            Err(error) => {
                let error = error.to_string();
                let kept = retry_until_done(cancel, || reject(renderer, message, &error)).await;
                if kept.is_none() {
                    return false;
                }
            }
        }
    }
    let changes: Vec<Change> = pending
        .iter()
        .map(|(_, event)| Change {
            key: event.message_key(),
            channel: event.channel,
            attempt: 1,
            detected_at: event.detected_at,
        })
        .collect();
    let Some(renderings) =
        retry_until_done(cancel, || renderer.render_all(&changes, Lane::Events)).await
    else {
        return false;
    };
    // The rendered messages, and the events they came from, in the same order.
    let (rows, sources): (Vec<NewMessage>, Vec<&OwnedMessage>) = pending
        .iter()
        .zip(changes)
        .zip(renderings)
        .map(|(((message, event), change), rendering)| {
            let row = NewMessage {
                retry_in_secs: renderer.due_in(&rendering, 1).as_secs_f64(),
                key: change.key,
                channel: change.channel,
                rendering,
                event_partition: Some(message.partition()),
                event_offset: Some(message.offset()),
                detected_at: event.detected_at,
            };
            (row, *message)
        })
        .unzip();
    retry_until_done(cancel, || insert(renderer, &rows, &sources))
        .await
        .is_some()
}

/// Inserts the batch's messages. A batch the database refuses is split in halves until the
/// refused message is alone; it is kept in `rejected_event` with the reason, so one bad
/// message neither stops the consumer nor takes the others down with it. Only an
/// unavailable database is an error (retried by the caller).
async fn insert(
    renderer: &Renderer,
    rows: &[NewMessage],
    sources: &[&OwnedMessage],
) -> StoreResult<()> {
    // Parts still to insert, as ranges of `rows`; the whole batch first.
    let mut parts = Vec::with_capacity(1);
    parts.push(0..rows.len());
    while let Some(part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        let error = match renderer.notify().insert_messages(&rows[part.clone()]).await {
            Ok(inserted) => {
                tracing::debug!(events = part.len(), inserted, "messages recorded");
                continue;
            }
            Err(error) if error.is_unavailable() => return Err(error),
            Err(error) => error,
        };
        if part.len() == 1 {
            reject(renderer, sources[part.start], &error_chain(&error)).await?;
        } else {
            tracing::warn!(events = part.len(), error = %error_chain(&error), "the database refused a batch of messages; splitting it to find the refused one");
            let middle = part.start + part.len() / 2;
            parts.push(middle..part.end);
            parts.push(part.start..middle);
        }
    }
    Ok(())
}

/// Keeps an event that cannot become a message in `rejected_event`: its bytes as they were,
/// and the reason. Errs only if the database is unavailable; should it refuse the row, the
/// event stays on the topic alone and the log says so.
async fn reject(renderer: &Renderer, message: &OwnedMessage, reason: &str) -> StoreResult<()> {
    let kept = renderer
        .notify()
        .reject_event(
            message.topic(),
            message.partition(),
            message.offset(),
            message.payload(),
            reason,
        )
        .await;
    match kept {
        Ok(()) => tracing::error!(
            partition = message.partition(),
            offset = message.offset(),
            %reason,
            "change event kept in rejected_event"
        ),
        Err(error) if error.is_unavailable() => return Err(error),
        Err(error) => tracing::error!(
            partition = message.partition(),
            offset = message.offset(),
            %reason,
            error = %error_chain(&error),
            "change event could not be kept in rejected_event: it is only on the topic"
        ),
    }
    renderer.metrics().rejected();
    Ok(())
}

/// Runs `op` until it succeeds, with its result; `None` if cancelled first.
async fn retry_until_done<T, F, Fut>(cancel: &CancellationToken, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(done) => return Some(done),
            Err(error) => {
                attempt += 1;
                tracing::warn!(error = %error_chain(&error), attempt, "could not render or record the batch; will retry");
                if !pause(cancel, attempt).await {
                    return None;
                }
            }
        }
    }
}

/// Waits before retry `attempt`; false if cancelled meanwhile.
async fn pause(cancel: &CancellationToken, attempt: i32) -> bool {
    let delay =
        herald_core::backoff::delay(attempt, Duration::from_millis(200), Duration::from_secs(10));
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
