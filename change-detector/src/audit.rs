//! Finding changes that never became messages: the check behind the detector's sweep and
//! `heraldctl audit`.
//!
//! A schedule's rows whose change values lie in a range are compared, by notification
//! identity, with the queue. An event still on its way (emitted, not rendered yet) would make
//! its row look missing, so before a row is called missing the check waits until the
//! renderers have processed every event Kafka had acknowledged when the check began, and
//! looks again. Only rows below the schedule's hold-back line, read before the check, can be
//! called missing: above it the detector has yet to emit what it will.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::config::KafkaSettings;
use herald_core::kafka::{self, Offsets, OffsetsReader};
use herald_core::model::{LateFinder, Mark, RowPosition, Schedule};
use herald_core::store::{NotifyDb, SourceDb, StoreError};
use rdkafka::error::KafkaError;
use tokio::time::Instant;

use crate::emit::Emitter;
use crate::schedules::Watched;

/// How long Kafka is given to answer a question about offsets.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Kafka could not say where the change topic and the renderers stand")]
    Kafka(#[from] KafkaError),
    #[error(
        "the renderers are {events} events behind the change topic after waiting {waited:?}; \
         until they catch up, changes whose events are still on their way would look missing"
    )]
    RenderersBehind { events: i64, waited: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("schedule {0} is invalid: {1}")]
    InvalidSchedule(i64, String),
    #[error("the detector has not started schedule {0} yet: no change of it was due")]
    NotStarted(i64),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An audit of one schedule over a time range (`heraldctl audit`).
#[derive(Debug, Clone)]
pub struct Audit {
    pub schedule: Schedule,
    /// When the detector started the schedule: earlier changes were never due.
    pub watching_since: Option<DateTime<Utc>>,
    /// The hold-back line: later changes are still the detector's to emit.
    pub hold_back: DateTime<Utc>,
    /// The part of the range that was checked, if any.
    pub checked: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub findings: Findings,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Rows read from the source.
    pub checked: u64,
    /// Rows with no message in the queue, in `(change, key)` order.
    pub missing: Vec<RowPosition>,
}

pub struct Check<'a> {
    pub source: &'a dyn SourceDb,
    pub notify: &'a dyn NotifyDb,
    pub kafka: &'a KafkaSettings,
    /// Rows read and looked up per query.
    pub page_size: u32,
    /// How long to wait for the renderers to catch up.
    pub catch_up: Duration,
}

impl Check<'_> {
    /// Audits `schedule` over `[from, to)`: checks the part of it from when the detector
    /// started the schedule up to its hold-back line.
    pub async fn audit(
        &self,
        schedule: Schedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Audit, AuditError> {
        let table = self
            .source
            .resolve_table(&schedule.source)
            .await?
            .map_err(|invalid| AuditError::InvalidSchedule(schedule.id, invalid))?;
        // Read before the check: only rows below the line can have been emitted yet.
        let mark = self
            .notify
            .mark(schedule.id)
            .await?
            .ok_or(AuditError::NotStarted(schedule.id))?;
        let watched = Watched { schedule, table };
        let checked = due(&mark, from, to);
        let findings = match checked {
            Some((from, to)) => self.unqueued(&watched, from, to).await?,
            None => Findings::default(),
        };
        Ok(Audit {
            schedule: watched.schedule,
            watching_since: mark.watching_since,
            hold_back: mark.hold_back,
            checked,
            findings,
        })
    }

    /// The rows of `watched` with change values in `[from, to)` whose notification identity
    /// is not in the queue. `to` must not pass the hold-back line read before the call.
    pub async fn unqueued(
        &self,
        watched: &Watched,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Findings, CheckError> {
        let offsets = Arc::new(OffsetsReader::new(self.kafka)?);
        let fence = kafka::ask(&offsets, |reader| reader.end_offsets(KAFKA_TIMEOUT)).await?;
        let schedule = &watched.schedule;
        let mut findings = Findings::default();
        let mut after: Option<RowPosition> = None;
        loop {
            let rows = self
                .source
                .rows_between(&watched.table, from, to, after.as_ref(), self.page_size)
                .await?;
            findings.checked += rows.len() as u64;
            let positions: Vec<RowPosition> = rows.iter().map(|row| row.position()).collect();
            let missing = self
                .notify
                .unqueued(&schedule.tenant, schedule.id, &positions)
                .await?;
            findings.missing.extend(missing);
            after = positions.last().cloned();
            if rows.len() < self.page_size as usize {
                break;
            }
        }
        if findings.missing.is_empty() {
            return Ok(findings);
        }
        self.wait_for_renderers(&offsets, &fence).await?;
        let mut still_missing = Vec::new();
        for candidates in findings.missing.chunks(self.page_size.max(1) as usize) {
            still_missing.extend(
                self.notify
                    .unqueued(&schedule.tenant, schedule.id, candidates)
                    .await?,
            );
        }
        still_missing.sort();
        findings.missing = still_missing;
        Ok(findings)
    }

    /// Waits until the renderers' group has committed past `fence` on every partition.
    async fn wait_for_renderers(
        &self,
        offsets: &Arc<OffsetsReader>,
        fence: &Offsets,
    ) -> Result<(), CheckError> {
        let started = Instant::now();
        loop {
            let partitions: Vec<i32> = fence.keys().copied().collect();
            let committed = kafka::ask(offsets, move |reader| {
                reader.committed_offsets(partitions, KAFKA_TIMEOUT)
            })
            .await?;
            let events = kafka::events_behind(fence, &committed);
            if events == 0 {
                return Ok(());
            }
            if started.elapsed() >= self.catch_up {
                return Err(CheckError::RenderersBehind {
                    events,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The part of `[from, to)` a schedule's changes can be checked in: from when the detector
/// started it (nothing earlier was due) to its hold-back line (the detector has yet to emit
/// what lies above). `None` if nothing is left.
pub fn due(
    mark: &Mark,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let from = from.max(mark.watching_since.unwrap_or(from));
    let to = to.min(mark.hold_back);
    (from < to).then_some((from, to))
}

/// Emits changes a check found missing, and records them in `late_change` as found by
/// `finder`.
pub async fn send_late(
    emitter: &Emitter,
    notify: &dyn NotifyDb,
    schedule: &Schedule,
    rows: &[RowPosition],
    finder: LateFinder,
) -> Result<(), SendLateError> {
    emitter
        .emit(
            schedule,
            rows.iter()
                .map(|row| (row.key.as_str(), row.change.as_str())),
        )
        .await?;
    notify
        .record_late_changes(schedule.id, rows, finder)
        .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum SendLateError {
    #[error("Kafka did not take the late changes")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
