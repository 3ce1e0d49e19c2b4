//! Which schedules the detector polls: the active ones whose table, columns and merge
//! function check out against the source catalog. The active list is read again every cycle,
//! so added, changed and deactivated schedules take effect without a restart. A schedule that
//! does not check out gets its `error` column set and is skipped; the others keep running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald_core::model::Schedule;
use herald_core::store::{Invalid, NotifyDb, SourceDb, StoreResult, TableQueries};
use herald_core::telemetry::error_chain;

/// How long an invalid verdict stands before the catalog is asked again (the admin may have
/// created the missing table or function since).
const RECHECK_INVALID_AFTER: Duration = Duration::from_secs(30);

/// An active, valid schedule and its poll queries.
#[derive(Debug, Clone)]
pub struct Watched {
    pub schedule: Schedule,
    pub table: TableQueries,
}

struct Verdict {
    schedule: Schedule,
    checked: Instant,
    result: Result<TableQueries, Invalid>,
}

impl Verdict {
    fn still_holds_for(&self, schedule: &Schedule) -> bool {
        let same_definition =
            self.schedule.source == schedule.source && self.schedule.merge == schedule.merge;
        same_definition && (self.result.is_ok() || self.checked.elapsed() < RECHECK_INVALID_AFTER)
    }
}

#[derive(Default)]
pub struct ScheduleBook {
    verdicts: HashMap<i64, Verdict>,
}

impl ScheduleBook {
    /// Reads the active schedules, checks new or changed ones against the source catalog,
    /// records each verdict that changed, and returns the schedules to poll.
    pub async fn refresh(
        &mut self,
        source: &dyn SourceDb,
        notify: &dyn NotifyDb,
    ) -> StoreResult<Vec<Watched>> {
        let active = notify.active_schedules().await?;
        self.verdicts
            .retain(|id, _| active.iter().any(|schedule| schedule.id == *id));
        let mut watched = Vec::with_capacity(active.len());
        for schedule in active {
            let verdict = match self.verdicts.remove(&schedule.id) {
                Some(verdict) if verdict.still_holds_for(&schedule) => verdict,
                _ => Verdict {
                    result: check(source, &schedule).await?,
                    checked: Instant::now(),
                    schedule: schedule.clone(),
                },
            };
            let error = verdict.result.as_ref().err();
            if error != schedule.error.as_ref() {
                match error {
                    Some(error) => tracing::warn!(
                        schedule_id = schedule.id,
                        tenant = %schedule.tenant,
                        schedule = %schedule.name,
                        %error,
                        "schedule is invalid; skipping it"
                    ),
                    None => tracing::info!(
                        schedule_id = schedule.id,
                        tenant = %schedule.tenant,
                        schedule = %schedule.name,
                        "schedule is valid"
                    ),
                }
                match notify
                    .record_schedule_check(schedule.id, error.map(String::as_str))
                    .await
                {
                    Err(failed) if !failed.is_unavailable() => tracing::warn!(
                        schedule_id = schedule.id,
                        error = %error_chain(&failed),
                        "could not record the schedule's verdict"
                    ),
                    recorded => recorded?,
                }
            }
            if let Ok(table) = &verdict.result {
                watched.push(Watched {
                    schedule: schedule.clone(),
                    table: table.clone(),
                });
            }
            self.verdicts.insert(schedule.id, verdict);
        }
        Ok(watched)
    }

    /// Each active schedule, with whether it is in error.
    pub fn verdicts(&self) -> impl Iterator<Item = (&Schedule, bool)> {
        self.verdicts
            .values()
            .map(|verdict| (&verdict.schedule, verdict.result.is_err()))
    }

    /// Marks a schedule invalid after its poll was refused, so the error is recorded now and
    /// the catalog is asked again later.
    pub fn reject(&mut self, schedule: &Schedule, error: Invalid) {
        self.verdicts.insert(
            schedule.id,
            Verdict {
                schedule: schedule.clone(),
                checked: Instant::now(),
                result: Err(error),
            },
        );
    }
}

/// Checks one schedule against the source catalog. A catalog that refuses the lookup (a
/// name it cannot take, say) makes the schedule invalid, not the cycle fail; only an
/// unavailable source is an error.
async fn check(
    source: &dyn SourceDb,
    schedule: &Schedule,
) -> StoreResult<Result<TableQueries, Invalid>> {
    let checked = async {
        let table = match source.resolve_table(&schedule.source).await? {
            Ok(table) => table,
            Err(invalid) => return Ok(Err(invalid)),
        };
        StoreResult::Ok(source.resolve_merge(&schedule.merge).await?.map(|_| table))
    };
    match checked.await {
        Err(error) if !error.is_unavailable() => Ok(Err(format!(
            "the source refused to look the schedule up: {}",
            error_chain(&error)
        ))),
        checked => checked,
    }
}
