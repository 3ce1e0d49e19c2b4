//! The sweep: the safety net under exact detection. Every `sweep_interval`, for each schedule
//! this detector holds, it checks the `sweep_window` below the schedule's hold-back line
//! against the queue (see [`crate::audit`]) and emits every row found missing: a change whose
//! transaction broke the engine's assumption (PostgreSQL's `max_write_delay`, SQL Server's
//! `lookback`). Each is logged at WARN and recorded in `late_change`: late, and counted, but
//! never silently lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use herald_core::config::{DetectorSettings, KafkaSettings};
use herald_core::model::LateFinder;
use herald_core::store::{NotifyDb, SourceDb};
use herald_core::telemetry::error_chain;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::audit::{Check, CheckError, SendLateError, due, send_late};
use crate::emit::Emitter;
use crate::metrics::DetectorMetrics;
use crate::schedules::Watched;

/// How long a sweep waits for the renderers to catch up before trying again next time.
const CATCH_UP: Duration = Duration::from_secs(60);

pub struct Sweep {
    pub source: Arc<dyn SourceDb>,
    pub notify: Arc<dyn NotifyDb>,
    pub kafka: KafkaSettings,
    pub settings: DetectorSettings,
    pub metrics: Arc<DetectorMetrics>,
}

impl Sweep {
    /// Sweeps the schedules `held` names every `sweep_interval` (first one interval after
    /// the start) until cancelled; returns at once if the interval is zero.
    pub async fn run(self, held: watch::Receiver<Vec<Watched>>, cancel: CancellationToken) {
        let interval = self.settings.sweep_interval;
        if interval.is_zero() {
            return;
        }
        let emitter = match Emitter::new(self.kafka.clone()) {
            Ok(emitter) => emitter,
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "the sweep could not create its producer; no sweeps");
                return;
            }
        };
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let schedules = held.borrow().clone();
            for watched in &schedules {
                // A sweep may wait a while for the renderers; shutting down does not.
                let swept = tokio::select! {
                    _ = cancel.cancelled() => break,
                    swept = self.sweep(&emitter, watched) => swept,
                };
                if let Err(error) = swept {
                    emitter.recreate_if_fatal();
                    tracing::warn!(
                        schedule_id = watched.schedule.id,
                        tenant = %watched.schedule.tenant,
                        error = %error_chain(&error),
                        "sweep did not finish; it runs again next time"
                    );
                }
            }
        }
        emitter.flush();
    }

    /// Sweeps one schedule; returns how many late changes it emitted.
    #[tracing::instrument(skip_all, fields(schedule_id = watched.schedule.id, tenant = %watched.schedule.tenant))]
    pub async fn sweep(&self, emitter: &Emitter, watched: &Watched) -> Result<usize, SweepError> {
        let schedule = &watched.schedule;
        let Some(mark) = self.notify.mark(schedule.id).await? else {
            return Ok(0);
        };
        let window =
            chrono::Duration::from_std(self.settings.sweep_window).unwrap_or(chrono::Duration::MAX);
        let below_line = mark
            .hold_back
            .checked_sub_signed(window)
            .unwrap_or(DateTime::UNIX_EPOCH);
        let Some((from, to)) = due(&mark, below_line, mark.hold_back) else {
            return Ok(0);
        };
        let check = Check {
            source: self.source.as_ref(),
            notify: self.notify.as_ref(),
            kafka: &self.kafka,
            page_size: self.settings.batch_size,
            catch_up: CATCH_UP,
        };
        let findings = check.unqueued(watched, from, to).await?;
        tracing::debug!(checked = findings.checked, missing = findings.missing.len(), %from, %to, "swept");
        if findings.missing.is_empty() {
            return Ok(0);
        }
        send_late(
            emitter,
            self.notify.as_ref(),
            schedule,
            &findings.missing,
            LateFinder::Sweep,
        )
        .await?;
        self.metrics.late(schedule, findings.missing.len());
        for row in &findings.missing {
            tracing::warn!(
                schedule = %schedule.name,
                source_key = %row.key,
                change_version = %row.change,
                "late change: it was below the hold-back line with no message; emitted now \
                 (its transaction took longer than the detector assumes between stamping the \
                 change and writing it)"
            );
        }
        Ok(findings.missing.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Store(#[from] herald_core::store::StoreError),
    #[error(transparent)]
    SendLate(#[from] SendLateError),
}
