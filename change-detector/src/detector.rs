//! The detection loop.
//!
//! Each cycle: refresh the schedule book, take or renew the lease on the schedules no other
//! detector holds, and run one detection pass for each (see `herald_core::store::detection`):
//! one consistent read of the replica from the schedule's hold-back line, emitting the rows
//! not emitted before, then moving the schedule's mark.
//!
//! Guarantees:
//! - No committed change is missed: a pass reads again every row at or above the hold-back
//!   line that may have committed since the last pass, and the line moves only where the
//!   engine proves every row below it visible (PostgreSQL: from the replica's replay position
//!   and transaction ids, under `max_write_delay`; SQL Server: `lookback`, or CDC by LSN).
//!   What breaks the assumption is emitted late by the sweep, and counted.
//! - The mark moves only after Kafka acknowledged every event of the pass (idempotent
//!   producer, `acks=all`), so a crash at any point re-emits, never skips. A restarted
//!   detector forgets which re-read rows it emitted and emits them again; the queue's
//!   identity key drops the duplicates.
//! - Only tables of active, valid schedules are queried, with index range reads on
//!   `(change, key)`; nothing is ever written to the source.
//! - A schedule has one active detector at a time (a lease in the notification database).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::config::{DetectorSettings, KafkaSettings};
use herald_core::model::{ChangedRow, Changes, Mark, RowPosition};
use herald_core::store::{NotifyDb, SourceDb, StoreError};
use herald_core::telemetry::error_chain;
use rdkafka::error::KafkaError;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::emit::Emitter;
use crate::metrics::{DetectorMetrics, Pass};
use crate::schedules::{ScheduleBook, Watched};
use crate::sweep::Sweep;

/// A hold-back line further behind than this is worth a warning: something on the source
/// (a long open transaction, replica lag) holds detection back, and every poll reads the
/// rows since again.
const HELD_BACK_WARNING: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Kafka did not take the change events")]
    Kafka(#[from] KafkaError),
}

/// What a cycle did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cycle {
    /// Events emitted and acknowledged.
    pub emitted: usize,
    /// Some schedule stopped at its pass budget: run the next cycle at once.
    pub more: bool,
}

pub struct Detector {
    source: Arc<dyn SourceDb>,
    notify: Arc<dyn NotifyDb>,
    kafka: KafkaSettings,
    settings: DetectorSettings,
    emitter: Emitter,
    book: ScheduleBook,
    /// Per schedule, the rows already emitted that its next pass may read again.
    emitted: HashMap<i64, Emitted>,
    /// Schedules whose hold-back line is further behind than [`HELD_BACK_WARNING`].
    held_back: HashSet<i64>,
    /// The schedules this detector holds, for the sweep.
    held: watch::Sender<Vec<Watched>>,
    metrics: Arc<DetectorMetrics>,
}

impl Detector {
    pub fn new(
        source: Arc<dyn SourceDb>,
        notify: Arc<dyn NotifyDb>,
        kafka: KafkaSettings,
        settings: DetectorSettings,
        metrics: Arc<DetectorMetrics>,
    ) -> Result<Self, KafkaError> {
        Ok(Detector {
            metrics,
            emitter: Emitter::new(kafka.clone())?,
            source,
            notify,
            kafka,
            settings,
            book: ScheduleBook::default(),
            emitted: HashMap::new(),
            held_back: HashSet::new(),
            held: watch::Sender::new(Vec::new()),
        })
    }

    /// Polls every `poll_interval` (at once while a schedule has more to read) and sweeps
    /// every `sweep_interval`, until cancelled; then flushes the producer.
    pub async fn run(mut self, cancel: CancellationToken) {
        let sweep = Sweep {
            source: self.source.clone(),
            notify: self.notify.clone(),
            kafka: self.kafka.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
        };
        let sweeping = tokio::spawn(sweep.run(self.held.subscribe(), cancel.clone()));
        let mut ticker = tokio::time::interval(self.settings.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tracing::info!(instance = %self.settings.instance_id, "change detector running");
        let mut more = false;
        loop {
            if !more {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
            } else if cancel.is_cancelled() {
                break;
            }
            more = match self.step().await {
                Ok(cycle) => cycle.more,
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "detection cycle failed; retrying");
                    false
                }
            };
        }
        self.emitter.flush();
        if let Err(error) = sweeping.await {
            tracing::error!(%error, "the sweep task failed");
        }
        tracing::info!("change detector stopped");
    }

    /// One detection cycle: one pass per schedule this detector holds.
    pub async fn step(&mut self) -> Result<Cycle, DetectorError> {
        let watched = self
            .book
            .refresh(self.source.as_ref(), self.notify.as_ref())
            .await?;
        self.metrics.schedules(self.book.verdicts());
        let ids: Vec<i64> = watched.iter().map(|w| w.schedule.id).collect();
        let held = if ids.is_empty() {
            Vec::new()
        } else {
            self.notify
                .claim_schedules(&self.settings.instance_id, self.settings.lease_ttl, &ids)
                .await?
        };
        self.emitted
            .retain(|id, _| held.iter().any(|(held_id, _)| held_id == id));
        let held_ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
        self.metrics.hold_only(&held_ids);
        self.held.send_replace(
            watched
                .iter()
                .filter(|w| held.iter().any(|(id, _)| *id == w.schedule.id))
                .cloned()
                .collect(),
        );
        let mut cycle = Cycle::default();
        for (schedule_id, mark) in held {
            let Some(watched) = watched.iter().find(|w| w.schedule.id == schedule_id) else {
                continue;
            };
            match self.detect(watched, mark).await {
                Ok(pass) => {
                    cycle.emitted += pass.emitted;
                    cycle.more |= pass.more;
                }
                Err(DetectorError::Store(StoreError::Refused(cause))) => {
                    let error = format!("polling the source failed: {}", error_chain(&*cause));
                    self.book.reject(&watched.schedule, error);
                }
                Err(error) => {
                    self.metrics.emit_failed(&watched.schedule);
                    self.emitter.recreate_if_fatal();
                    tracing::warn!(
                        schedule_id,
                        tenant = %watched.schedule.tenant,
                        error = %error_chain(&error),
                        "could not emit this schedule's changes; will retry"
                    );
                }
            }
        }
        Ok(cycle)
    }

    /// One pass over one schedule: read, emit what is new, move the mark.
    #[tracing::instrument(skip_all, fields(schedule_id = watched.schedule.id, tenant = %watched.schedule.tenant))]
    async fn detect(
        &mut self,
        watched: &Watched,
        mark: Option<Mark>,
    ) -> Result<Cycle, DetectorError> {
        let owner = &self.settings.instance_id;
        let schedule = &watched.schedule;
        let definition = schedule.source.definition();
        // A mark of other columns means nothing here (one from before definitions were
        // recorded is taken as this one's).
        let mark = match mark {
            Some(mark) if mark.definition.as_ref().is_some_and(|d| *d != definition) => {
                tracing::info!("the schedule's table or columns changed: it starts afresh");
                self.emitted.remove(&schedule.id);
                None
            }
            mark => mark,
        };
        let Some(mark) = mark else {
            let start = Mark {
                definition: Some(definition),
                ..self.source.start_mark(&watched.table).await?
            };
            self.notify.advance_mark(owner, schedule.id, &start).await?;
            tracing::info!(from = %start.hold_back, "schedule starts watching");
            return Ok(Cycle::default());
        };
        let started = Instant::now();
        let Changes {
            rows,
            mut next,
            complete,
            horizon,
        } = self
            .source
            .changes(&watched.table, &mark, &self.settings)
            .await?;
        next.definition = Some(definition);
        let emitted = self.emitted.entry(schedule.id).or_default();
        let read = rows.len();
        let newest = rows.iter().map(|row| row.at).max();
        let new: Vec<_> = rows.iter().filter(|row| emitted.is_new(row)).collect();
        self.emitter
            .emit(
                schedule,
                new.iter()
                    .map(|row| (row.key.as_str(), row.change.as_str())),
            )
            .await?;
        let new = new.len();
        if !self.notify.advance_mark(owner, schedule.id, &next).await? {
            tracing::warn!("another detector took this schedule over");
            self.emitted.remove(&schedule.id);
            return Ok(Cycle::default());
        }
        emitted.record(rows, next.hold_back);
        // Measured from the horizon, not the clock: an idle primary holds nothing back.
        let held_back = horizon
            .map(|horizon| (horizon - next.hold_back).to_std().unwrap_or_default())
            .unwrap_or_default();
        tracing::debug!(
            read,
            emitted = new,
            remembered = emitted.len(),
            complete,
            hold_back = %next.hold_back,
            held_back_ms = held_back.as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pass"
        );
        if new > 0 {
            tracing::info!(events = new, "changes emitted");
        }
        self.note_hold_back(schedule.id, held_back);
        self.metrics.pass(
            schedule,
            Pass {
                read,
                emitted: new,
                took: started.elapsed(),
                hold_back: next.hold_back,
                newest,
            },
        );
        Ok(Cycle {
            emitted: new,
            more: !complete,
        })
    }

    /// Warns once when a schedule's hold-back line falls far behind, and says when it is
    /// back.
    fn note_hold_back(&mut self, schedule_id: i64, held_back: Duration) {
        if held_back > HELD_BACK_WARNING {
            if self.held_back.insert(schedule_id) {
                tracing::warn!(
                    held_back_s = held_back.as_secs(),
                    "the hold-back line is far behind: a transaction open on the source (or the \
                     replica's lag) holds it, and every poll reads the rows since it again"
                );
            }
        } else if self.held_back.remove(&schedule_id) {
            tracing::info!(
                held_back_s = held_back.as_secs(),
                "the hold-back line caught up"
            );
        }
    }
}

/// The rows of one schedule this detector emitted (and Kafka acknowledged) at or above its
/// hold-back line: a pass reads such rows again, and they must not be emitted twice. Rows
/// below the line are never read again and are forgotten.
#[derive(Debug, Default)]
pub struct Emitted {
    rows: HashMap<RowPosition, DateTime<Utc>>,
}

impl Emitted {
    /// Whether `row` was not emitted before.
    pub fn is_new(&self, row: &ChangedRow) -> bool {
        !self.rows.contains_key(&row.position())
    }

    /// Remembers a pass's rows, all emitted now, and forgets those below the new `line`.
    pub fn record(&mut self, rows: Vec<ChangedRow>, line: DateTime<Utc>) {
        self.rows.extend(rows.into_iter().map(|row| {
            let position = RowPosition {
                change: row.change,
                key: row.key,
            };
            (position, row.at)
        }));
        self.rows.retain(|_, at| *at >= line);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, seconds: i64) -> ChangedRow {
        ChangedRow {
            key: key.into(),
            change: format!("t{seconds}"),
            at: DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap(),
        }
    }

    #[test]
    fn a_row_read_again_is_not_new_until_the_line_passes_it() {
        let mut emitted = Emitted::default();
        let first = vec![row("a", 10), row("b", 20)];
        assert!(first.iter().all(|r| emitted.is_new(r)));
        emitted.record(first, row("", 5).at);
        assert!(
            !emitted.is_new(&row("a", 10)),
            "read again at the same version"
        );
        assert!(
            emitted.is_new(&row("a", 12)),
            "a new version of the row is new"
        );
        assert!(emitted.is_new(&row("c", 15)), "a row committed late is new");

        emitted.record(vec![row("c", 15)], row("", 15).at);
        assert_eq!(emitted.len(), 2, "below the line is forgotten: {emitted:?}");
        assert!(!emitted.is_new(&row("c", 15)), "at the line is kept");
        assert!(!emitted.is_new(&row("b", 20)));
    }
}
