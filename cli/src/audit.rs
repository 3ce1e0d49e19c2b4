//! `heraldctl audit`: did every change of a schedule in a time range become a message?

use std::fmt::Write;
use std::time::Duration;

use anyhow::Context;
use change_detector::audit::{Check, send_late};
use change_detector::emit::Emitter;
use chrono::{DateTime, Utc};
use herald_core::config::{DetectionMode, Settings};
use herald_core::model::{LateFinder, RowPosition};
use herald_core::store::{self, NotifyDb};
use serde::Serialize;

use crate::find_schedule;
use crate::output::Report;

/// What an audit checked and found.
#[derive(Serialize)]
pub struct AuditReport {
    schedule_id: i64,
    tenant: String,
    name: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// When the detector started the schedule, if after `from`: earlier changes are not
    /// checked.
    watching_since: Option<DateTime<Utc>>,
    /// The hold-back line, if before `to`: later changes are not checked.
    hold_back: Option<DateTime<Utc>>,
    /// Whether there was anything to check.
    checked_any: bool,
    rows_checked: u64,
    missing: Vec<RowPosition>,
    /// The missing changes were emitted (and recorded in `late_change`).
    repaired: bool,
}

impl Report for AuditReport {
    fn text(&self) -> String {
        let mut text = format!(
            "audit of schedule {} ({}/{}), changes from {} to {}\n",
            self.schedule_id,
            self.tenant,
            self.name,
            self.from.to_rfc3339(),
            self.to.to_rfc3339()
        );
        if let Some(since) = self.watching_since {
            let _ = writeln!(
                text,
                "the detector started this schedule at {}: earlier changes were never due and are not checked",
                since.to_rfc3339()
            );
        }
        if let Some(line) = self.hold_back {
            let _ = writeln!(
                text,
                "hold-back line {}: later changes are still the detector's to emit and are not checked",
                line.to_rfc3339()
            );
        }
        if !self.checked_any {
            text.push_str("nothing to check\n");
        }
        let _ = writeln!(
            text,
            "checked {} rows: {} missing",
            self.rows_checked,
            self.missing.len()
        );
        for row in &self.missing {
            let _ = writeln!(text, "missing  key {}  change {}", row.key, row.change);
        }
        if self.repaired {
            let _ = writeln!(
                text,
                "repaired: emitted {} missing change(s), recorded in late_change as found by audit",
                self.missing.len()
            );
        }
        text
    }

    fn bad_news(&self) -> bool {
        !self.missing.is_empty() && !self.repaired
    }
}

pub async fn audit(
    settings: &Settings,
    notify: &dyn NotifyDb,
    which: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    repair: bool,
    catch_up: Duration,
) -> anyhow::Result<AuditReport> {
    let source = store::connect_source(&settings.source, DetectionMode::Poll)
        .await
        .context("connecting to the source replica")?;
    let schedule = find_schedule(notify, which).await?;
    let check = Check {
        source: source.as_ref(),
        notify,
        kafka: &settings.kafka,
        page_size: settings.detector.batch_size,
        catch_up,
    };
    let audit = check.audit(schedule, from, to).await?;
    let mut report = AuditReport {
        schedule_id: audit.schedule.id,
        tenant: audit.schedule.tenant.clone(),
        name: audit.schedule.name.clone(),
        from,
        to,
        watching_since: audit.watching_since.filter(|since| *since > from),
        hold_back: Some(audit.hold_back).filter(|line| *line < to),
        checked_any: audit.checked.is_some(),
        rows_checked: audit.findings.checked,
        missing: audit.findings.missing.clone(),
        repaired: false,
    };
    if report.missing.is_empty() || !repair {
        return Ok(report);
    }
    let emitter = Emitter::new(settings.kafka.clone()).context("creating the Kafka producer")?;
    send_late(
        &emitter,
        notify,
        &audit.schedule,
        &report.missing,
        LateFinder::Audit,
    )
    .await
    .context("emitting the missing changes")?;
    emitter.flush();
    report.repaired = true;
    Ok(report)
}
