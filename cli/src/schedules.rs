//! `heraldctl schedules` (each schedule's state, error, frontier and hold-back age) and
//! `heraldctl schedule pause|resume`.

use std::fmt::Write;

use anyhow::bail;
use herald_core::ops::{Activity, Operator, ScheduleState};
use herald_core::store::NotifyDb;
use serde::Serialize;

use crate::output::{Report, age, or_dash, seconds, table, time};

#[derive(Serialize)]
pub struct SchedulesReport {
    schedules: Vec<ScheduleView>,
}

#[derive(Serialize)]
struct ScheduleView {
    #[serde(flatten)]
    state: ScheduleState,
    /// `paused`, `error`, `starting`, `running` or `unowned`.
    activity: Activity,
    /// The database's clock minus the hold-back line.
    hold_back_age_seconds: Option<f64>,
}

impl Report for SchedulesReport {
    fn text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .schedules
            .iter()
            .map(|view| {
                let s = &view.state;
                let last_action = s.last_action.as_ref().map(|a| {
                    let why = a.reason.as_deref().map(|r| format!(": {r}"));
                    format!(
                        "{} by {} at {}{}",
                        a.action,
                        a.actor,
                        time(a.acted_at),
                        why.unwrap_or_default()
                    )
                });
                vec![
                    s.schedule_id.to_string(),
                    s.tenant.clone(),
                    s.name.clone(),
                    s.channel.to_string(),
                    view.activity.as_str().to_owned(),
                    or_dash(s.hold_back_age().map(age)),
                    or_dash(
                        s.frontier
                            .as_ref()
                            .map(|f| format!("{} / {}", f.change, f.key)),
                    ),
                    or_dash(s.detector.as_deref()),
                    or_dash(s.error.as_deref()),
                    or_dash(last_action),
                ]
            })
            .collect();
        let header = [
            "ID",
            "TENANT",
            "NAME",
            "CHANNEL",
            "STATE",
            "HOLD-BACK AGE",
            "FRONTIER (CHANGE / KEY)",
            "DETECTOR",
            "ERROR",
            "LAST ACTION",
        ];
        table(&header, &rows)
    }

    /// An active schedule the detector cannot run.
    fn bad_news(&self) -> bool {
        self.schedules
            .iter()
            .any(|view| view.activity == Activity::Error)
    }
}

pub async fn schedules(notify: &dyn NotifyDb) -> anyhow::Result<SchedulesReport> {
    let schedules = notify
        .schedule_states()
        .await?
        .into_iter()
        .map(|state| ScheduleView {
            activity: state.activity(),
            hold_back_age_seconds: state.hold_back_age().map(seconds),
            state,
        })
        .collect();
    Ok(SchedulesReport { schedules })
}

#[derive(Serialize)]
pub struct ToggleReport {
    schedule_id: i64,
    tenant: String,
    name: String,
    active: bool,
    /// False when the schedule already was in that state (nothing recorded).
    changed: bool,
    by: Operator,
}

impl Report for ToggleReport {
    fn text(&self) -> String {
        let state = if self.active { "active" } else { "paused" };
        let mut text = format!(
            "schedule {} ({}/{}) ",
            self.schedule_id, self.tenant, self.name
        );
        if !self.changed {
            let _ = writeln!(text, "was already {state}: nothing changed");
        } else if self.active {
            let _ = writeln!(
                text,
                "resumed by {}: the detector polls it again",
                self.by.name
            );
        } else {
            let _ = writeln!(
                text,
                "paused by {}: the detector stops polling it",
                self.by.name
            );
        }
        text
    }

    fn bad_news(&self) -> bool {
        false
    }
}

/// Pauses (`active` false) or resumes a schedule.
pub async fn set_active(
    notify: &dyn NotifyDb,
    tenant: &str,
    name: &str,
    active: bool,
    by: Operator,
) -> anyhow::Result<ToggleReport> {
    let Some((schedule_id, was_active)) = notify
        .set_schedule_active(tenant, name, active, &by)
        .await?
    else {
        bail!("no schedule {tenant}/{name}");
    };
    Ok(ToggleReport {
        schedule_id,
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        active,
        changed: was_active != active,
        by,
    })
}
