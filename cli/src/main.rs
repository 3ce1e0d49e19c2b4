//! `heraldctl`: the operator's command line.
//!
//! `heraldctl audit` answers "did every change of this schedule become a message?" for any
//! time range: it reads the schedule's rows from the source replica, looks each one's
//! notification up in the queue (after waiting for the renderers to process what is already
//! on the topic), and prints what is missing. With `--repair` it emits the missing changes and
//! records them as late. Exit status: 0 nothing missing (or all repaired), 1 changes missing,
//! 2 the audit could not run.
//!
//! Configuration as the services: `config/base.toml` + `config/$HERALD_ENV.toml` +
//! `HERALD__*` variables.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use change_detector::audit::{Check, send_late};
use change_detector::emit::Emitter;
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::{Parser, Subcommand};
use herald_core::config::{DetectionMode, Settings};
use herald_core::model::{LateFinder, Schedule};
use herald_core::store::{self, NotifyDb};
use herald_core::telemetry::error_chain;

#[derive(Parser)]
#[command(
    name = "heraldctl",
    version,
    about = "Operate a herald notification pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks that every change of a schedule in a time range became a message.
    Audit {
        /// The schedule: its id, or TENANT/NAME.
        #[arg(long)]
        schedule: String,
        /// Start of the range (change values from here on): RFC 3339, `YYYY-MM-DD HH:MM:SS`
        /// in UTC, or a duration ago such as `90m` or `2d`.
        #[arg(long, default_value = "1h", value_parser = parse_time)]
        from: DateTime<Utc>,
        /// End of the range (exclusive), in the same forms; default now.
        #[arg(long, value_parser = parse_time)]
        to: Option<DateTime<Utc>>,
        /// Emit the missing changes (they are recorded in `late_change`, found by audit).
        #[arg(long)]
        repair: bool,
        /// How long to wait for the renderers to process what is already on the topic.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        catch_up: Duration,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(error.as_ref()));
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load().context("loading settings")?;
    match cli.command {
        Command::Audit {
            schedule,
            from,
            to,
            repair,
            catch_up,
        } => {
            let to = to.unwrap_or_else(Utc::now);
            audit(&settings, &schedule, from, to, repair, catch_up).await
        }
    }
}

async fn audit(
    settings: &Settings,
    which: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    repair: bool,
    catch_up: Duration,
) -> anyhow::Result<ExitCode> {
    let source = store::connect_source(&settings.source, DetectionMode::Poll)
        .await
        .context("connecting to the source replica")?;
    let notify = store::connect_notify(&settings.notify)
        .await
        .context("connecting to the notification database")?;
    let schedule = find_schedule(notify.as_ref(), which).await?;
    println!(
        "audit of schedule {} ({}/{}), changes from {} to {}",
        schedule.id,
        schedule.tenant,
        schedule.name,
        from.to_rfc3339(),
        to.to_rfc3339()
    );
    let check = Check {
        source: source.as_ref(),
        notify: notify.as_ref(),
        kafka: &settings.kafka,
        page_size: settings.detector.batch_size,
        catch_up,
    };
    let audit = check.audit(schedule, from, to).await?;
    if let Some(since) = audit.watching_since.filter(|since| *since > from) {
        println!(
            "the detector started this schedule at {}: earlier changes were never due and are not checked",
            since.to_rfc3339()
        );
    }
    if audit.hold_back < to {
        println!(
            "hold-back line {}: later changes are still the detector's to emit and are not checked",
            audit.hold_back.to_rfc3339()
        );
    }
    if audit.checked.is_none() {
        println!("nothing to check");
    }
    let missing = &audit.findings.missing;
    println!(
        "checked {} rows: {} missing",
        audit.findings.checked,
        missing.len()
    );
    for row in missing {
        println!("missing  key {}  change {}", row.key, row.change);
    }
    if missing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if !repair {
        return Ok(ExitCode::from(1));
    }
    let emitter = Emitter::new(settings.kafka.clone()).context("creating the Kafka producer")?;
    send_late(
        &emitter,
        notify.as_ref(),
        &audit.schedule,
        missing,
        LateFinder::Audit,
    )
    .await
    .context("emitting the missing changes")?;
    emitter.flush();
    println!(
        "repaired: emitted {} missing change(s), recorded in late_change as found by audit",
        missing.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// A schedule by id, or by `TENANT/NAME`.
async fn find_schedule(notify: &dyn NotifyDb, which: &str) -> anyhow::Result<Schedule> {
    let found = match which.parse::<i64>() {
        Ok(id) => notify.schedule(id).await?,
        Err(_) => {
            let Some((tenant, name)) = which.split_once('/') else {
                bail!("--schedule takes an id or TENANT/NAME, not {which:?}");
            };
            notify.schedule_named(tenant, name).await?
        }
    };
    found.with_context(|| format!("no schedule {which}"))
}

/// RFC 3339, `YYYY-MM-DD HH:MM[:SS]` in UTC, `YYYY-MM-DD`, or a duration ago.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.to_utc());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc());
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither a time (RFC 3339, YYYY-MM-DD HH:MM:SS UTC) nor a duration ago (90m, 2d)")
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
    Ok(Utc::now() - ago)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form() {
        let noon = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .to_utc();
        for text in [
            "2026-11-22T12:00:00Z",
            "2026-11-22T13:00:00+01:00",
            "2026-11-22 12:00:00",
            "2026-11-22 12:00",
        ] {
            assert_eq!(parse_time(text), Ok(noon), "{text}");
        }
        assert_eq!(
            parse_time("2026-11-22"),
            Ok(noon - chrono::Duration::hours(12))
        );
        let ago = Utc::now() - parse_time("90m").unwrap();
        assert!((ago.num_minutes() - 90).abs() <= 1, "{ago}");
        let error = parse_time("yesterday-ish").unwrap_err();
        assert!(error.contains("neither a time"), "{error}");
    }
}
