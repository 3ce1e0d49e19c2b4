//! Kafka client builders. Our settings come first, then the operator's `kafka.librdkafka`
//! pass-through map, so any librdkafka option can be set or overridden.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::telemetry::error_chain;

fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", settings.brokers.join(","));
    config
}

fn with_overrides(mut config: ClientConfig, settings: &KafkaSettings) -> ClientConfig {
    for (key, value) in &settings.librdkafka {
        config.set(key, value);
    }
    config
}

/// The detector's producer: idempotent, acknowledged by all in-sync replicas.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    with_overrides(config, settings)
}

/// The renderers' consumer: offsets are stored by hand after a durable outcome and committed
/// in the background (`enable.auto.offset.store=false`, `enable.auto.commit=true`).
pub fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", &settings.consumer_group)
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    with_overrides(config, settings)
}

/// Creates the change topic unless it exists.
pub async fn ensure_topic(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        with_overrides(base_config(settings), settings).create()?;
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(settings.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(
                    |_| tracing::error!(topic = %name, %code, "could not create the change topic"),
                );
            }
        }
    }
    Ok(())
}

/// Creates the change topic unless it exists, waiting for the broker as long as it takes;
/// false if cancelled first. Both the detector and the renderers do this at start, so a
/// renderer never subscribes to a topic that does not exist yet.
pub async fn wait_for_topic(settings: &KafkaSettings, cancel: &CancellationToken) -> bool {
    loop {
        let created = tokio::select! {
            () = cancel.cancelled() => return false,
            created = ensure_topic(settings) => created,
        };
        let Err(error) = created else { return true };
        tracing::warn!(error = %error_chain(&error), topic = %settings.topic, "waiting for Kafka");
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Offsets per partition of the change topic.
pub type Offsets = BTreeMap<i32, i64>;

/// Asks the brokers where the change topic ends and where the renderers' consumer group
/// stands, with one client and without joining the group. Its calls block.
pub struct OffsetsReader {
    client: BaseConsumer,
    topic: String,
}

impl OffsetsReader {
    pub fn new(settings: &KafkaSettings) -> KafkaResult<Self> {
        let mut config = base_config(settings);
        config
            .set("group.id", &settings.consumer_group)
            .set("enable.auto.commit", "false");
        Ok(OffsetsReader {
            client: with_overrides(config, settings).create()?,
            topic: settings.topic.clone(),
        })
    }

    /// Per partition, the offset the topic's next event will get: every event Kafka has
    /// acknowledged lies below it.
    pub fn end_offsets(&self, timeout: Duration) -> KafkaResult<Offsets> {
        let metadata = self.client.fetch_metadata(Some(&self.topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions().iter().map(|p| p.id()))
            .collect();
        partitions
            .into_iter()
            .map(|partition| {
                let (_, high) = self
                    .client
                    .fetch_watermarks(&self.topic, partition, timeout)?;
                Ok((partition, high))
            })
            .collect()
    }

    /// Answers if a broker does, with the change topic's metadata (for `/readyz`).
    pub fn ping(&self, timeout: Duration) -> KafkaResult<()> {
        self.client
            .fetch_metadata(Some(&self.topic), timeout)
            .map(drop)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Where the topic ends and where the renderers' group resumes, per partition.
    pub fn end_and_committed(&self, timeout: Duration) -> KafkaResult<(Offsets, Offsets)> {
        let end = self.end_offsets(timeout)?;
        let committed = self.committed_offsets(end.keys().copied(), timeout)?;
        Ok((end, committed))
    }

    /// Where the renderers' group resumes each of `partitions` from (`-1`: nothing
    /// committed): every event below it has a durable outcome in the queue.
    pub fn committed_offsets(
        &self,
        partitions: impl IntoIterator<Item = i32>,
        timeout: Duration,
    ) -> KafkaResult<Offsets> {
        let mut wanted = TopicPartitionList::new();
        for partition in partitions {
            wanted.add_partition(&self.topic, partition);
        }
        let committed = self.client.committed_offsets(wanted, timeout)?;
        Ok(committed
            .elements()
            .iter()
            .map(|element| {
                let offset = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => -1,
                };
                (element.partition(), offset)
            })
            .collect())
    }
}

/// Asks `reader` (a blocking client call) off the async threads.
pub async fn ask<T, F>(reader: &Arc<OffsetsReader>, question: F) -> KafkaResult<T>
where
    T: Send + 'static,
    F: FnOnce(&OffsetsReader) -> KafkaResult<T> + Send + 'static,
{
    let reader = reader.clone();
    tokio::task::spawn_blocking(move || question(&reader))
        .await
        .expect("a Kafka offsets query does not panic")
}

/// Per partition, the events the renderers' group has yet to process below `fence` (from
/// [`OffsetsReader::end_offsets`]).
pub fn lag(fence: &Offsets, committed: &Offsets) -> Offsets {
    fence
        .iter()
        .map(|(&partition, end)| {
            let done = committed.get(&partition).copied().unwrap_or(-1).max(0);
            (partition, (end - done).max(0))
        })
        .collect()
}

/// All the events the renderers' group has yet to process below `fence`.
pub fn events_behind(fence: &Offsets, committed: &Offsets) -> i64 {
    lag(fence, committed).values().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_behind_counts_what_is_below_the_fence_and_not_committed() {
        let fence: Offsets = [(0, 10), (1, 5), (2, 0)].into();
        assert_eq!(events_behind(&fence, &Offsets::new()), 15);
        let committed: Offsets = [(0, 10), (1, -1), (2, -1)].into();
        assert_eq!(events_behind(&fence, &committed), 5);
        let past: Offsets = [(0, 12), (1, 7), (2, 3)].into();
        assert_eq!(events_behind(&fence, &past), 0);
    }
}
