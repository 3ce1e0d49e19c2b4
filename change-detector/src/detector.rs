//! The detection loop.
//!
//! Every `poll_interval`: refresh the schedule book, take or renew the lease on the schedules
//! no other detector holds, and start a detection pass (see `herald_core::store::detection`)
//! for each held schedule that has none under way: one consistent read of the replica from
//! the schedule's hold-back line, emitting the rows not emitted before, then moving the
//! schedule's mark. Up to `max_concurrent_passes` passes run side by side, the schedules
//! waiting longest first, so a slow or huge table holds back only its own schedule; a pass
//! that stopped at its budget has the next start at once.
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
//! - One pass per schedule at a time: a schedule's next pass starts from the mark its last
//!   one left, with the rows it emitted.
//! - Only tables of active, valid schedules are queried, with index range reads on
//!   `(change, key)`; nothing is ever written to the source.
//! - A schedule has one active detector at a time (a lease in the notification database,
//!   renewed every `poll_interval` whatever its passes take).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::config::{DetectorSettings, KafkaSettings};
use herald_core::model::{ChangedRow, Changes, Mark, RowPosition, Schedule};
use herald_core::store::{NotifyDb, SourceDb, StoreError};
use herald_core::telemetry::error_chain;
use rdkafka::error::KafkaError;
use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};
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

/// What passes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cycle {
    /// Events emitted and acknowledged.
    pub emitted: usize,
    /// Some schedule stopped at its pass budget: its next pass starts at once.
    pub more: bool,
}

impl std::ops::AddAssign for Cycle {
    fn add_assign(&mut self, other: Cycle) {
        self.emitted += other.emitted;
        self.more |= other.more;
    }
}

/// What every pass uses, shared by the passes under way.
struct Shared {
    source: Arc<dyn SourceDb>,
    notify: Arc<dyn NotifyDb>,
    settings: DetectorSettings,
    emitter: Emitter,
    metrics: Arc<DetectorMetrics>,
}

/// A schedule whose pass may start, with its mark as its lease was renewed.
struct Due {
    watched: Watched,
    mark: Option<Mark>,
}

/// A pass that ended, with the schedule's emitted rows back and what it did (`Ok(None)`: the
/// schedule starts afresh or is another detector's, and its rows are forgotten).
struct Finished {
    schedule: Schedule,
    emitted: Emitted,
    outcome: Result<Option<PassOutcome>, DetectorError>,
}

struct PassOutcome {
    cycle: Cycle,
    /// How far the hold-back line is behind the source's horizon.
    held_back: Duration,
}

pub struct Detector {
    shared: Arc<Shared>,
    kafka: KafkaSettings,
    book: ScheduleBook,
    /// Per schedule with no pass under way, the rows already emitted that its next pass may
    /// read again (a pass under way has its schedule's).
    emitted: HashMap<i64, Emitted>,
    /// The passes under way, and their schedules.
    passes: JoinSet<Finished>,
    in_pass: HashMap<Id, i64>,
    /// When each schedule's last pass started: the longest waiting start first.
    started: HashMap<i64, Instant>,
    /// Schedules whose hold-back line is further behind than [`HELD_BACK_WARNING`].
    held_back: HashSet<i64>,
    /// The schedules this detector holds, for the sweep.
    held: watch::Sender<Vec<Watched>>,
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
            shared: Arc::new(Shared {
                emitter: Emitter::new(kafka.clone())?,
                source,
                notify,
                settings,
                metrics,
            }),
            kafka,
            book: ScheduleBook::default(),
            emitted: HashMap::new(),
            passes: JoinSet::new(),
            in_pass: HashMap::new(),
            started: HashMap::new(),
            held_back: HashSet::new(),
            held: watch::Sender::new(Vec::new()),
        })
    }

    /// Renews leases and starts passes every `poll_interval` (at once after a pass that
    /// stopped at its budget) and sweeps every `sweep_interval`, until cancelled; then lets
    /// the passes under way end and flushes the producer.
    pub async fn run(mut self, cancel: CancellationToken) {
        let shared = &self.shared;
        let sweep = Sweep {
            source: shared.source.clone(),
            notify: shared.notify.clone(),
            kafka: self.kafka.clone(),
            settings: shared.settings.clone(),
            metrics: shared.metrics.clone(),
        };
        let sweeping = tokio::spawn(sweep.run(self.held.subscribe(), cancel.clone()));
        let mut ticker = tokio::time::interval(shared.settings.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tracing::info!(instance = %shared.settings.instance_id, "change detector running");
        let mut due = Vec::new();
        let mut renew_now = false;
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(finished) = self.passes.join_next_with_id(), if !self.passes.is_empty() => {
                    renew_now |= self.finish(finished).more;
                }
                _ = ticker.tick(), if !renew_now => due = self.renew_or_warn().await,
                () = std::future::ready(()), if renew_now => {
                    renew_now = false;
                    due = self.renew_or_warn().await;
                }
            }
            self.start(&mut due);
        }
        while let Some(finished) = self.passes.join_next_with_id().await {
            self.finish(finished);
        }
        self.shared.emitter.flush();
        if let Err(error) = sweeping.await {
            tracing::error!(%error, "the sweep task failed");
        }
        tracing::info!("change detector stopped");
    }

    /// One cycle, start to end: renews the leases and runs one pass for every schedule this
    /// detector holds, at most `max_concurrent_passes` at a time.
    pub async fn step(&mut self) -> Result<Cycle, DetectorError> {
        let mut due = self.renew().await?;
        let mut cycle = Cycle::default();
        loop {
            self.start(&mut due);
            let Some(finished) = self.passes.join_next_with_id().await else {
                return Ok(cycle);
            };
            cycle += self.finish(finished);
        }
    }

    async fn renew_or_warn(&mut self) -> Vec<Due> {
        self.renew().await.unwrap_or_else(|error| {
            tracing::warn!(error = %error_chain(&error), "could not renew the schedules' leases; retrying");
            Vec::new()
        })
    }

    /// Refreshes the schedule book and renews this detector's leases. Returns the held
    /// schedules with no pass under way, the longest waiting first.
    async fn renew(&mut self) -> Result<Vec<Due>, DetectorError> {
        let shared = self.shared.clone();
        let watched = self
            .book
            .refresh(shared.source.as_ref(), shared.notify.as_ref())
            .await?;
        shared.metrics.schedules(self.book.verdicts());
        let ids: Vec<i64> = watched.iter().map(|w| w.schedule.id).collect();
        let held = if ids.is_empty() {
            Vec::new()
        } else {
            let settings = &shared.settings;
            shared
                .notify
                .claim_schedules(&settings.instance_id, settings.lease_ttl, &ids)
                .await?
        };
        let holds = |id: &i64| held.iter().any(|(held_id, _)| held_id == id);
        self.emitted.retain(|id, _| holds(id));
        self.started.retain(|id, _| holds(id));
        let held_ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
        shared.metrics.hold_only(&held_ids);
        self.held.send_replace(
            watched
                .iter()
                .filter(|w| holds(&w.schedule.id))
                .cloned()
                .collect(),
        );
        let mut due: Vec<Due> = held
            .into_iter()
            .filter(|(id, _)| !self.in_pass.values().any(|in_pass| in_pass == id))
            .filter_map(|(id, mark)| {
                let watched = watched.iter().find(|w| w.schedule.id == id)?.clone();
                Some(Due { watched, mark })
            })
            .collect();
        due.sort_by_key(|d| self.started.get(&d.watched.schedule.id).copied());
        Ok(due)
    }

    /// Starts passes for `due` schedules, first first, while fewer than
    /// `max_concurrent_passes` are under way; the rest stay in `due`.
    fn start(&mut self, due: &mut Vec<Due>) {
        let limit = self.shared.settings.max_concurrent_passes;
        let free = limit.saturating_sub(self.passes.len());
        for Due { watched, mark } in due.drain(..free.min(due.len())) {
            let id = watched.schedule.id;
            self.started.insert(id, Instant::now());
            let emitted = self.emitted.remove(&id).unwrap_or_default();
            let task = self
                .passes
                .spawn(pass(self.shared.clone(), watched, mark, emitted));
            self.in_pass.insert(task.id(), id);
        }
    }

    /// Takes a pass's end: its schedule's rows back, its error recorded or logged.
    fn finish(&mut self, finished: Result<(Id, Finished), JoinError>) -> Cycle {
        let Finished {
            schedule,
            emitted,
            outcome,
        } = match finished {
            Ok((task, finished)) => {
                self.in_pass.remove(&task);
                finished
            }
            Err(error) => {
                // A pass that panicked: its schedule's next pass reads again from its mark,
                // and emits again what it had emitted (the queue's identity drops those).
                let schedule_id = self.in_pass.remove(&error.id());
                tracing::error!(?schedule_id, %error, "a detection pass failed");
                return Cycle::default();
            }
        };
        // A pass that failed changed nothing: its rows stay remembered (only acknowledged
        // ones are). One that started afresh or lost its schedule forgets them.
        if !matches!(outcome, Ok(None)) {
            self.emitted.insert(schedule.id, emitted);
        }
        match outcome {
            Ok(None) => Cycle::default(),
            Ok(Some(PassOutcome { cycle, held_back })) => {
                self.note_hold_back(schedule.id, held_back);
                cycle
            }
            Err(DetectorError::Store(StoreError::Refused(cause))) => {
                let error = format!("polling the source failed: {}", error_chain(&*cause));
                self.book.reject(&schedule, error);
                Cycle::default()
            }
            Err(error) => {
                self.shared.metrics.emit_failed(&schedule);
                self.shared.emitter.recreate_if_fatal();
                tracing::warn!(
                    schedule_id = schedule.id,
                    tenant = %schedule.tenant,
                    error = %error_chain(&error),
                    "could not emit this schedule's changes; will retry"
                );
                Cycle::default()
            }
        }
    }

    /// Warns once when a schedule's hold-back line falls far behind, and says when it is
    /// back.
    fn note_hold_back(&mut self, schedule_id: i64, held_back: Duration) {
        if held_back > HELD_BACK_WARNING {
            if self.held_back.insert(schedule_id) {
                tracing::warn!(
                    schedule_id,
                    held_back_s = held_back.as_secs(),
                    "the hold-back line is far behind: a transaction open on the source (or the \
                     replica's lag) holds it, and every poll reads the rows since it again"
                );
            }
        } else if self.held_back.remove(&schedule_id) {
            tracing::info!(
                schedule_id,
                held_back_s = held_back.as_secs(),
                "the hold-back line caught up"
            );
        }
    }
}

/// One pass over one schedule: read, emit what is new, move the mark.
#[tracing::instrument(skip_all, fields(schedule_id = watched.schedule.id, tenant = %watched.schedule.tenant))]
async fn pass(
    shared: Arc<Shared>,
    watched: Watched,
    mark: Option<Mark>,
    mut emitted: Emitted,
) -> Finished {
    let outcome = detect(&shared, &watched, mark, &mut emitted).await;
    Finished {
        schedule: watched.schedule,
        emitted,
        outcome,
    }
}

/// A pass's work. `Ok(None)`: the schedule starts afresh or is another detector's now, and
/// its emitted rows are forgotten.
async fn detect(
    shared: &Shared,
    watched: &Watched,
    mark: Option<Mark>,
    emitted: &mut Emitted,
) -> Result<Option<PassOutcome>, DetectorError> {
    let owner = &shared.settings.instance_id;
    let schedule = &watched.schedule;
    let definition = schedule.source.definition();
    // A mark of other columns means nothing here (one from before definitions were
    // recorded is taken as this one's).
    let mark = match mark {
        Some(mark) if mark.definition.as_ref().is_some_and(|d| *d != definition) => {
            tracing::info!("the schedule's table or columns changed: it starts afresh");
            None
        }
        mark => mark,
    };
    let Some(mark) = mark else {
        let start = Mark {
            definition: Some(definition),
            ..shared.source.start_mark(&watched.table).await?
        };
        shared
            .notify
            .advance_mark(owner, schedule.id, &start)
            .await?;
        tracing::info!(from = %start.hold_back, "schedule starts watching");
        return Ok(None);
    };
    let started = Instant::now();
    let Changes {
        rows,
        mut next,
        complete,
        horizon,
    } = shared
        .source
        .changes(&watched.table, &mark, &shared.settings)
        .await?;
    next.definition = Some(definition);
    let read = rows.len();
    let newest = rows.iter().map(|row| row.at).max();
    let new: Vec<_> = rows.iter().filter(|row| emitted.is_new(row)).collect();
    shared
        .emitter
        .emit(
            schedule,
            new.iter()
                .map(|row| (row.key.as_str(), row.change.as_str())),
        )
        .await?;
    let new = new.len();
    if !shared
        .notify
        .advance_mark(owner, schedule.id, &next)
        .await?
    {
        tracing::warn!("another detector took this schedule over");
        return Ok(None);
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
    shared.metrics.pass(
        schedule,
        Pass {
            read,
            emitted: new,
            took: started.elapsed(),
            hold_back: next.hold_back,
            newest,
        },
    );
    Ok(Some(PassOutcome {
        cycle: Cycle {
            emitted: new,
            more: !complete,
        },
        held_back,
    }))
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
