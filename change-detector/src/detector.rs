//! The detection loop.
//!
//! Each cycle: refresh the schedule book, take or renew the lease on the schedules no other
//! detector holds, and for each one read the rows above its watermark `(change, key)` whose
//! change value is older than replica-now minus the safety delay, oldest first, in batches.
//!
//! Guarantees:
//! - The watermark moves past a row only after Kafka acknowledged the row's event
//!   (idempotent producer, `acks=all`), so a crash at any point re-emits, never skips.
//! - `(change, key)` ordering means rows sharing a change value across a batch boundary are
//!   neither lost nor repeated.
//! - Only tables of active, valid schedules are queried, and only with the index-friendly
//!   range query; nothing is ever written to the source.
//! - A schedule has one active detector at a time (a lease in the notification database).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use herald_core::config::{DetectorSettings, KafkaSettings};
use herald_core::event::ChangeEvent;
use herald_core::kafka;
use herald_core::model::{ChangedRow, Watermark};
use herald_core::store::{NotifyDb, SourceDb, StoreError};
use herald_core::telemetry::error_chain;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::schedules::{ScheduleBook, Watched};

/// Batches read per schedule per cycle, so one busy table cannot starve the others.
const MAX_BATCHES_PER_CYCLE: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Kafka did not take the change events")]
    Kafka(#[from] KafkaError),
}

pub struct Detector {
    source: Arc<dyn SourceDb>,
    notify: Arc<dyn NotifyDb>,
    kafka: KafkaSettings,
    settings: DetectorSettings,
    producer: FutureProducer,
    book: ScheduleBook,
}

impl Detector {
    pub fn new(
        source: Arc<dyn SourceDb>,
        notify: Arc<dyn NotifyDb>,
        kafka: KafkaSettings,
        settings: DetectorSettings,
    ) -> Result<Self, KafkaError> {
        Ok(Detector {
            producer: kafka::producer_config(&kafka).create()?,
            source,
            notify,
            kafka,
            settings,
            book: ScheduleBook::default(),
        })
    }

    /// Polls every `poll_interval` until cancelled, then flushes the producer.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(self.settings.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tracing::info!(instance = %self.settings.instance_id, "change detector running");
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if let Err(error) = self.step().await {
                tracing::warn!(error = %error_chain(&error), "detection cycle failed; retrying");
            }
        }
        if let Err(error) = self.producer.flush(Duration::from_secs(10)) {
            tracing::error!(error = %error_chain(&error), "could not flush the producer");
        }
        tracing::info!("change detector stopped");
    }

    /// One detection cycle; returns how many events were emitted and acknowledged.
    pub async fn step(&mut self) -> Result<usize, DetectorError> {
        let watched = self
            .book
            .refresh(self.source.as_ref(), self.notify.as_ref())
            .await?;
        if watched.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = watched.iter().map(|w| w.schedule.id).collect();
        let held = self
            .notify
            .claim_schedules(&self.settings.instance_id, self.settings.lease_ttl, &ids)
            .await?;
        let mut emitted = 0;
        for (schedule_id, watermark) in held {
            let Some(watched) = watched.iter().find(|w| w.schedule.id == schedule_id) else {
                continue;
            };
            match self.detect(watched, watermark).await {
                Ok(count) => emitted += count,
                Err(DetectorError::Store(StoreError::Refused(cause))) => {
                    let error = format!("polling the source failed: {}", error_chain(&*cause));
                    self.book.reject(&watched.schedule, error);
                }
                Err(error) => {
                    self.recreate_producer_if_fatal();
                    tracing::warn!(
                        schedule_id,
                        tenant = %watched.schedule.tenant,
                        error = %error_chain(&error),
                        "could not emit this schedule's changes; will retry"
                    );
                }
            }
        }
        Ok(emitted)
    }

    #[tracing::instrument(skip_all, fields(schedule_id = watched.schedule.id, tenant = %watched.schedule.tenant))]
    async fn detect(
        &self,
        watched: &Watched,
        watermark: Option<Watermark>,
    ) -> Result<usize, DetectorError> {
        let owner = &self.settings.instance_id;
        let schedule = &watched.schedule;
        let Some(mut watermark) = watermark else {
            let start = self
                .source
                .start_watermark(&watched.table, self.settings.safety_delay)
                .await?;
            self.notify
                .advance_watermark(owner, schedule.id, &start)
                .await?;
            tracing::info!(from = %start.change, "schedule starts watching");
            return Ok(0);
        };
        let mut emitted = 0;
        for _ in 0..MAX_BATCHES_PER_CYCLE {
            let rows = self
                .source
                .changed_rows(
                    &watched.table,
                    &watermark,
                    self.settings.safety_delay,
                    self.settings.batch_size,
                )
                .await?;
            let Some(last) = rows.last() else { break };
            self.emit(watched, &rows).await?;
            watermark = Watermark {
                change: last.change.clone(),
                key: Some(last.key.clone()),
            };
            if !self
                .notify
                .advance_watermark(owner, schedule.id, &watermark)
                .await?
            {
                tracing::warn!("another detector took this schedule over");
                break;
            }
            emitted += rows.len();
            tracing::debug!(events = rows.len(), change = %watermark.change, "changes emitted");
            if rows.len() < self.settings.batch_size as usize {
                break;
            }
        }
        if emitted > 0 {
            tracing::info!(events = emitted, "changes emitted");
        }
        Ok(emitted)
    }

    /// Produces one event per row without waiting between them, then waits for every ack.
    async fn emit(&self, watched: &Watched, rows: &[ChangedRow]) -> Result<(), KafkaError> {
        let detected_at = Utc::now();
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            let event = ChangeEvent {
                tenant: watched.schedule.tenant.clone(),
                schedule_id: watched.schedule.id,
                channel: watched.schedule.channel,
                source_key: row.key.clone(),
                change_version: row.change.clone(),
                detected_at,
            };
            let key = event.kafka_key();
            let payload = event.to_json();
            let record = FutureRecord::to(&self.kafka.topic)
                .key(&key)
                .payload(&payload);
            deliveries.push(
                self.producer
                    .send_result(record)
                    .map_err(|(error, _)| error)?,
            );
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
    /// unacknowledged rows are read again from the watermark.
    fn recreate_producer_if_fatal(&mut self) {
        let Some((code, reason)) = self.producer.client().fatal_error() else {
            return;
        };
        tracing::error!(%code, %reason, "fatal producer error; recreating the producer");
        match kafka::producer_config(&self.kafka).create() {
            Ok(producer) => self.producer = producer,
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "could not recreate the producer")
            }
        }
    }
}
