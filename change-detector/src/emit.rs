//! Producing change events: one small JSON event per changed row, keyed so that one row's
//! changes stay in order on one partition. Every event of a call is produced before any
//! acknowledgement is awaited; the call returns only once Kafka acknowledged them all
//! (idempotent producer, `acks=all`), so a caller that moves a mark afterwards moves it past
//! acknowledged events only.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use herald_core::config::KafkaSettings;
use herald_core::event::{self, ChangeEvent};
use herald_core::kafka;
use herald_core::model::Schedule;
use herald_core::telemetry::error_chain;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// Shared by the passes under way; a producer that failed for good is replaced under them.
pub struct Emitter {
    settings: KafkaSettings,
    producer: Mutex<FutureProducer>,
}

impl Emitter {
    pub fn new(settings: KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Emitter {
            producer: Mutex::new(kafka::producer_config(&settings).create()?),
            settings,
        })
    }

    /// Emits one event per `(key, change)` row of `schedule` and waits for every ack.
    pub async fn emit<'a>(
        &self,
        schedule: &Schedule,
        rows: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), KafkaError> {
        let producer = self.producer();
        let detected_at = Utc::now();
        let mut deliveries = Vec::new();
        for (key, change) in rows {
            let event = ChangeEvent {
                format: event::FORMAT,
                tenant: schedule.tenant.clone(),
                schedule_id: schedule.id,
                channel: schedule.channel,
                source_key: key.to_owned(),
                change_version: change.to_owned(),
                detected_at,
            };
            let record_key = event.kafka_key();
            let payload = event.to_json();
            let record = FutureRecord::to(&self.settings.topic)
                .key(&record_key)
                .payload(&payload);
            deliveries.push(producer.send_result(record).map_err(|(error, _)| error)?);
        }
        for delivery in join_all(deliveries).await {
            match delivery {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(error),
                Err(_canceled) => return Err(KafkaError::Canceled),
            }
        }
        Ok(())
    }

    /// A fatal producer error (e.g. a fenced idempotent producer) needs a new producer; the
    /// unacknowledged rows are read again from the mark.
    pub fn recreate_if_fatal(&self) {
        let mut current = self.producer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((code, reason)) = current.client().fatal_error() else {
            return;
        };
        tracing::error!(%code, %reason, "fatal producer error; recreating the producer");
        match kafka::producer_config(&self.settings).create() {
            Ok(producer) => *current = producer,
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "could not recreate the producer")
            }
        }
    }

    /// The producer in use (a handle: the passes under way keep theirs).
    fn producer(&self) -> FutureProducer {
        self.producer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn flush(&self) {
        if let Err(error) = self.producer().flush(Duration::from_secs(10)) {
            tracing::error!(error = %error_chain(&error), "could not flush the producer");
        }
    }
}
