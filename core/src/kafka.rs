//! Kafka client builders. Our settings come first, then the operator's `kafka.librdkafka`
//! pass-through map, so any librdkafka option can be set or overridden.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaSettings;

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
