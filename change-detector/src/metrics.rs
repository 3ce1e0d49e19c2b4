//! The detector's metrics, per schedule: how far behind its hold-back line and frontier are,
//! rows read and events emitted, pass durations, late changes the sweep found, failed
//! emits, and whether the schedule's definition is in error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::metrics::{Seconds, latency_histogram};
use herald_core::model::Schedule;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Labels of a schedule's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    tenant: String,
    schedule: String,
}

/// What one detection pass did.
pub struct Pass {
    pub read: usize,
    pub emitted: usize,
    pub took: Duration,
    pub hold_back: DateTime<Utc>,
    /// The change instant of the newest row the pass read, if it read any.
    pub newest: Option<DateTime<Utc>>,
}

pub struct DetectorMetrics {
    hold_back_age: Family<ScheduleLabels, Seconds>,
    frontier_age: Family<ScheduleLabels, Seconds>,
    rows_read: Family<ScheduleLabels, Counter>,
    emitted: Family<ScheduleLabels, Counter>,
    pass_seconds: Family<ScheduleLabels, Histogram, fn() -> Histogram>,
    late: Family<ScheduleLabels, Counter>,
    emit_errors: Family<ScheduleLabels, Counter>,
    schedule_error: Family<ScheduleLabels, Gauge>,
    /// Per schedule this detector holds: its labels, hold-back line and frontier (the change
    /// instant of the newest row read so far), whose ages [`DetectorMetrics::tick`] sets.
    held: Mutex<HashMap<i64, Held>>,
}

struct Held {
    labels: ScheduleLabels,
    hold_back: DateTime<Utc>,
    frontier: DateTime<Utc>,
}

impl DetectorMetrics {
    pub fn new(registry: &mut Registry) -> Arc<Self> {
        let metrics = DetectorMetrics {
            hold_back_age: Family::default(),
            frontier_age: Family::default(),
            rows_read: Family::default(),
            emitted: Family::default(),
            pass_seconds: Family::new_with_constructor(latency_histogram),
            late: Family::default(),
            emit_errors: Family::default(),
            schedule_error: Family::default(),
            held: Mutex::default(),
        };
        registry.register_with_unit(
            "herald_detector_hold_back_age",
            "How old the schedule's hold-back line is: every change below it has been emitted",
            Unit::Seconds,
            metrics.hold_back_age.clone(),
        );
        registry.register_with_unit(
            "herald_detector_frontier_age",
            "How old the newest change the schedule's passes have read is",
            Unit::Seconds,
            metrics.frontier_age.clone(),
        );
        registry.register(
            "herald_detector_rows_read",
            "Rows detection passes read (rows near the hold-back line are read again)",
            metrics.rows_read.clone(),
        );
        registry.register(
            "herald_detector_events_emitted",
            "Change events emitted and acknowledged by Kafka",
            metrics.emitted.clone(),
        );
        registry.register_with_unit(
            "herald_detector_pass_duration",
            "How long detection passes took: the read, the emits and the mark",
            Unit::Seconds,
            metrics.pass_seconds.clone(),
        );
        registry.register(
            "herald_detector_late_changes",
            "Changes the sweep found below the hold-back line without a message, emitted late",
            metrics.late.clone(),
        );
        registry.register(
            "herald_detector_emit_errors",
            "Passes whose changes could not be emitted (or their mark moved); retried",
            metrics.emit_errors.clone(),
        );
        registry.register(
            "herald_detector_schedule_error",
            "1 while an active schedule does not check out against the source catalog (see \
             schedule.error), else 0",
            metrics.schedule_error.clone(),
        );
        Arc::new(metrics)
    }

    pub fn pass(&self, schedule: &Schedule, pass: Pass) {
        let labels = labels(schedule);
        self.rows_read
            .get_or_create(&labels)
            .inc_by(pass.read as u64);
        self.emitted
            .get_or_create(&labels)
            .inc_by(pass.emitted as u64);
        self.pass_seconds
            .get_or_create(&labels)
            .observe(pass.took.as_secs_f64());
        let mut held = self.held.lock().expect("lock");
        let entry = held.entry(schedule.id).or_insert(Held {
            labels,
            hold_back: pass.hold_back,
            frontier: pass.hold_back,
        });
        entry.hold_back = pass.hold_back;
        entry.frontier = entry.frontier.max(pass.newest.unwrap_or(pass.hold_back));
        drop(held);
        self.tick();
    }

    /// Sets each held schedule's ages from now: they grow while its passes stall.
    pub fn tick(&self) {
        for held in self.held.lock().expect("lock").values() {
            self.hold_back_age
                .get_or_create(&held.labels)
                .set(age_seconds(held.hold_back));
            self.frontier_age
                .get_or_create(&held.labels)
                .set(age_seconds(held.frontier));
        }
    }

    /// Forgets the ages of schedules this detector no longer holds (another detector
    /// reports them).
    pub fn hold_only(&self, schedule_ids: &[i64]) {
        self.held.lock().expect("lock").retain(|id, held| {
            let keep = schedule_ids.contains(id);
            if !keep {
                self.hold_back_age.remove(&held.labels);
                self.frontier_age.remove(&held.labels);
            }
            keep
        });
    }

    pub fn emit_failed(&self, schedule: &Schedule) {
        self.emit_errors.get_or_create(&labels(schedule)).inc();
    }

    pub fn late(&self, schedule: &Schedule, changes: usize) {
        self.late
            .get_or_create(&labels(schedule))
            .inc_by(changes as u64);
    }

    /// The active schedules, each with whether it is in error now.
    pub fn schedules<'a>(&self, schedules: impl IntoIterator<Item = (&'a Schedule, bool)>) {
        self.schedule_error.clear();
        for (schedule, in_error) in schedules {
            self.schedule_error
                .get_or_create(&labels(schedule))
                .set(i64::from(in_error));
        }
    }
}

fn labels(schedule: &Schedule) -> ScheduleLabels {
    ScheduleLabels {
        tenant: schedule.tenant.clone(),
        schedule: schedule.name.clone(),
    }
}

/// Seconds from `then` to now (0 if `then` is ahead of this clock).
fn age_seconds(then: DateTime<Utc>) -> f64 {
    (Utc::now() - then)
        .to_std()
        .map_or(0.0, |age| age.as_secs_f64())
}
