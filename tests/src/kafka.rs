//! Talking to the test's topic directly, as an operator's tool would.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_core::config::KafkaSettings;
use herald_core::kafka;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

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

    /// A consumer of the change topic from its start, in a group of the test's own named
    /// after `purpose`.
    pub fn topic_reader(&self, purpose: &str) -> anyhow::Result<BaseConsumer> {
        let settings = self.kafka_settings();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", settings.brokers.join(","))
            .set("group.id", format!("{}-{purpose}", settings.consumer_group))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()?;
        consumer.subscribe(&[&settings.topic])?;
        Ok(consumer)
    }

    /// The first `count` events on the change topic.
    pub async fn read_events(&self, count: usize) -> anyhow::Result<Vec<OwnedMessage>> {
        let consumer = self.topic_reader("reader")?;
        tokio::task::spawn_blocking(move || {
            let mut events = Vec::with_capacity(count);
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while events.len() < count && std::time::Instant::now() < deadline {
                if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                    events.push(message?.detach());
                }
            }
            anyhow::ensure!(
                events.len() == count,
                "read {} of {count} events",
                events.len()
            );
            Ok(events)
        })
        .await?
    }

    /// Every event on the change topic so far: read until none arrives for two seconds.
    pub async fn events_on_topic(&self) -> anyhow::Result<Vec<OwnedMessage>> {
        let consumer = self.topic_reader("all")?;
        tokio::task::spawn_blocking(move || {
            let mut events = Vec::new();
            let started = std::time::Instant::now();
            let mut quiet = started;
            while quiet.elapsed() < Duration::from_secs(2) || events.is_empty() {
                if started.elapsed() > Duration::from_secs(60) {
                    break;
                }
                if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                    events.push(message?.detach());
                    quiet = std::time::Instant::now();
                }
            }
            Ok(events)
        })
        .await?
    }

    /// Produces `event` again, as a retrying producer or a replaying tool would; returns its
    /// new offset.
    pub async fn produce_again(&self, event: &OwnedMessage) -> anyhow::Result<i64> {
        self.produce(
            event.key(),
            event.payload().unwrap_or_default(),
            Some(event.partition()),
        )
        .await
    }

    /// Produces a record to the change topic (creating it if needed); returns its offset.
    pub async fn produce(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        partition: Option<i32>,
    ) -> anyhow::Result<i64> {
        let mut settings = self.kafka_settings();
        // Room for the oversized payloads scenarios put on the topic.
        settings
            .librdkafka
            .insert("message.max.bytes".into(), "8000000".into());
        kafka::ensure_topic(&settings).await?;
        let producer: FutureProducer = kafka::producer_config(&settings).create()?;
        let mut record = FutureRecord::<[u8], [u8]>::to(&settings.topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| error)
            .context("producing to the change topic")?;
        Ok(delivery.offset)
    }

    /// The renderers' committed offset on `partition` (the next offset they will read).
    pub async fn committed_offset(&self, partition: i32) -> anyhow::Result<Option<i64>> {
        let reader = Arc::new(kafka::OffsetsReader::new(&self.kafka_settings())?);
        let committed = kafka::ask(&reader, move |r| {
            r.committed_offsets([partition], Duration::from_secs(10))
        })
        .await?;
        Ok(committed
            .get(&partition)
            .copied()
            .filter(|offset| *offset >= 0))
    }

    /// Where the change topic ends and where the renderers' group stands, as
    /// `kafka-consumer-groups --describe` shows them.
    pub async fn group_offsets(&self) -> anyhow::Result<GroupOffsets> {
        let reader = Arc::new(kafka::OffsetsReader::new(&self.kafka_settings())?);
        let (end, committed) =
            kafka::ask(&reader, |r| r.end_and_committed(Duration::from_secs(10))).await?;
        Ok(GroupOffsets { end, committed })
    }
}

/// The renderers' group on the change topic, per partition.
pub struct GroupOffsets {
    /// Where the topic ends: the offset its next event will get.
    pub end: kafka::Offsets,
    /// Where the group resumes from (`-1`: nothing committed).
    pub committed: kafka::Offsets,
}

impl GroupOffsets {
    /// Events the group has yet to process, per partition.
    pub fn lag(&self) -> kafka::Offsets {
        kafka::lag(&self.end, &self.committed)
    }
}
