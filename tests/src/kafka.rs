//! Talking to the test's topic directly, as an operator's tool would.

use std::time::Duration;

use anyhow::Context;
use herald_core::config::KafkaSettings;
use herald_core::event::ChangeEvent;
use herald_core::kafka;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::{Stack, kafka_brokers};

impl Stack {
    /// The Kafka settings the services of this stack use.
    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: vec![kafka_brokers()],
            topic: self.topic(),
            partitions: 3,
            replication_factor: 1,
            consumer_group: self.name.clone(),
            session_timeout: Duration::from_secs(6),
            librdkafka: Default::default(),
        }
    }

    /// Produces `event` to the change topic as the detector would; returns its partition
    /// and offset.
    pub async fn produce(&self, event: &ChangeEvent) -> anyhow::Result<(i32, i64)> {
        let settings = self.kafka_settings();
        kafka::ensure_topic(&settings)
            .await
            .context("creating the topic")?;
        let producer: FutureProducer = kafka::producer_config(&settings).create()?;
        let key = event.kafka_key();
        let payload = event.to_json();
        let delivery = producer
            .send(
                FutureRecord::to(&settings.topic)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .context("producing a change event")?;
        Ok((delivery.partition, delivery.offset))
    }

    /// The renderers' committed offset on `partition` (the next offset they will read).
    pub async fn committed_offset(&self, partition: i32) -> anyhow::Result<Option<i64>> {
        let settings = self.kafka_settings();
        let consumer: BaseConsumer = kafka::consumer_config(&settings).create()?;
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&settings.topic, partition);
        let committed = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(wanted, Duration::from_secs(10))
        })
        .await??;
        Ok(committed
            .find_partition(&settings.topic, partition)
            .and_then(|p| match p.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            }))
    }
}
