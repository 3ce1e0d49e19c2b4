//! The detector's mark moves only past events Kafka acknowledged: with the broker down it
//! stays put, and once the broker is back every change is emitted. The broker here is
//! librdkafka's mock cluster (the one place it can be taken down without touching the
//! broker other tests share); the databases are real.

use std::collections::BTreeSet;
use std::time::Duration;

use change_detector::detector::Detector;
use change_detector::metrics::DetectorMetrics;
use herald_core::config::{DetectorSettings, KafkaSettings};
use herald_core::event::ChangeEvent;
use herald_core::store;
use herald_tests::{Contact, Engine, Row, Stack};
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Message};

const BROKER: i32 = 1;

/// The schedule's mark: hold-back line, frontier change and key, position.
async fn mark(stack: &Stack) -> anyhow::Result<Row> {
    stack
        .notify
        .query_one(
            "SELECT hold_back, change_value, key_value, position FROM detector_watermark",
            &[],
        )
        .await
}

pub async fn the_mark_waits_for_kafka_to_acknowledge(engine: Engine) -> anyhow::Result<()> {
    let stack = Stack::new(engine, "broker_outage").await?;
    stack.load_welcome_schedule().await?;

    let mock = MockCluster::new(1)?;
    let topic = stack.topic();
    mock.create_topic(&topic, 3, 1)?;
    let kafka = KafkaSettings {
        brokers: vec![mock.bootstrap_servers()],
        // Give up on an unacknowledged event after 2 s instead of 5 minutes.
        librdkafka: [("message.timeout.ms".to_owned(), "2000".to_owned())].into(),
        ..stack.kafka_settings()
    };
    let settings = DetectorSettings {
        instance_id: "detector-under-test".into(),
        // Small pages: the three changes take two round trips.
        batch_size: 2,
        ..stack.detector_settings()?
    };
    let source = store::connect_source(&stack.database_settings("src")?, settings.mode).await?;
    let notify = store::connect_notify(&stack.database_settings("ntf")?).await?;
    let metrics = DetectorMetrics::new(&mut Registry::default());
    let mut detector = Detector::new(source, notify, kafka, settings, metrics)?;

    assert_eq!(
        detector.step().await?.emitted,
        0,
        "the first cycle only sets the start"
    );
    let start = mark(&stack).await?;
    let mut keys = BTreeSet::new();
    let mut last_key = String::new();
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        let contact = Contact {
            email: Some(email),
            ..Contact::default()
        };
        last_key = stack.insert_contact(&contact).await?.to_string();
        keys.insert(last_key.clone());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    mock.broker_down(BROKER)?;
    assert_eq!(detector.step().await?.emitted, 0, "nothing is acknowledged");
    assert_eq!(mark(&stack).await?, start, "the mark stays put");

    mock.broker_up(BROKER)?;
    let mut emitted = 0;
    for _ in 0..20 {
        emitted += detector.step().await?.emitted;
        if emitted >= keys.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(emitted, keys.len());
    let moved = mark(&stack).await?;
    assert_eq!(
        moved.opt_text(2),
        Some(last_key),
        "the frontier is the last change"
    );

    // Every change is on the topic (once or, after the outage, more than once), and the
    // queue's identity key is what makes duplicates harmless downstream.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "outage-reader")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut seen = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen != keys && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let event = ChangeEvent::from_json(message?.payload().unwrap_or_default())?;
            seen.insert(event.source_key);
        }
    }
    assert_eq!(seen, keys);
    Ok(())
}
