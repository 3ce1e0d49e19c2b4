//! `heraldctl`: the operator's command line.
//!
//! - `audit`: did every change of a schedule in a time range become a message? It reads the
//!   schedule's rows from the source replica, looks each one's notification up in the queue
//!   (after waiting for the renderers to process what is already on the topic), and prints
//!   what is missing; with `--repair` it emits the missing changes and records them as late.
//! - `queue`: the open part of the queue (`render_retry`, `queued`, `sending`, `in_doubt`)
//!   by tenant, schedule and status, with the oldest message's age.
//! - `lag`: the renderers' consumer group per partition of the change topic, as
//!   `kafka-consumer-groups --describe` prints it (committed offset, log end, lag, member).
//! - `schedules`: each schedule's state (`paused`, `error`, `starting`, `running`,
//!   `unowned`), error, frontier, hold-back age, detector and the last operator action.
//! - `schedule pause|resume TENANT NAME`: makes a schedule inactive (the detector stops
//!   polling it) or active again.
//! - `trace MESSAGE-ID | RECIPIENT | TENANT SOURCE-KEY`: for each message, its source row and
//!   current version, the event's partition and offset, the queue row, every provider call
//!   with its status code and answer, the provider's message id, and operator actions.
//! - `in-doubt list`; `in-doubt resolve ID… --sent | --resend | --failed`: settles messages
//!   the sender lost track of (`--resend` queues them to be sent exactly once more).
//! - `requeue ID…`: puts `failed` messages back in the queue with a fresh attempt budget.
//! - `suppression list`, `suppression remove TENANT CHANNEL ADDRESS`: the addresses that must
//!   not be contacted, and taking one off (kept in `suppression_removed` with who and why).
//! - `failures`: the latest messages `failed`, `render_failed` or `in_doubt`, with why.
//! - `serve`: the status page (`serve.rs`): the same reports as HTML, refreshing itself.
//!
//! Every action is recorded in `operator_action` with who (`--by`, default the OS user) and
//! why (`--reason`, required for `in-doubt resolve` and `requeue`), and moves only messages
//! in the right status; the others are refused, each named.
//!
//! Every command prints a readable table, or with `--json` one JSON document (serde: the
//! field names are stable). Exit status: 0 ok; 1 the answer is bad news (audit: changes
//! missing; `queue`, `in-doubt list`: some messages are in doubt; `failures`: some failed;
//! `lag`: the topic does not exist; `schedules`: an active schedule has an error; `trace`:
//! nothing found; `resolve` / `requeue`: some named message was refused; `suppression
//! remove`: the address was not on the list); 2 the command
//! could not run (bad arguments, an unknown schedule, a database unreachable).
//!
//! Configuration as the services: `config/base.toml` + `config/$HERALD_ENV.toml` +
//! `HERALD__*` variables.

mod audit;
mod messages;
mod output;
mod queue;
mod schedules;
mod serve;
mod suppression;
mod trace;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::{Args, Parser, Subcommand};
use herald_core::config::Settings;
use herald_core::model::{Channel, Schedule};
use herald_core::ops::{Action, Operator};
use herald_core::store::{self, NotifyDb};
use herald_core::telemetry::error_chain;

use crate::output::print;

#[derive(Parser)]
#[command(
    name = "heraldctl",
    version,
    about = "Operate a herald notification pipeline",
    after_help = "Exit status: 0 ok; 1 the answer is bad news (changes missing, a schedule \
                  with an error, nothing traced, messages in doubt, a message refused); 2 the \
                  command could not run (bad arguments, unknown schedule, database unreachable)."
)]
struct Cli {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,
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
    /// The open part of the queue by tenant, schedule and status, with the oldest age.
    Queue,
    /// The renderers' consumer group per partition: committed offset, log end, lag, member.
    Lag,
    /// Lists every schedule: state, error, frontier, hold-back age, detector, last action.
    Schedules,
    /// Pauses or resumes a schedule.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Follows messages from the source row to the provider: by message id (digits), by
    /// recipient, or by tenant and source key.
    Trace {
        /// MESSAGE-ID, RECIPIENT, or TENANT SOURCE-KEY.
        #[arg(required = true, num_args = 1..=2, value_name = "WHAT")]
        what: Vec<String>,
        /// Trace at most this many messages (the newest).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Messages the sender lost track of during the provider call: never resent on their own.
    #[command(subcommand)]
    InDoubt(InDoubtCommand),
    /// The addresses that must not be contacted (bounced, complained, unsubscribed, replied
    /// STOP), and taking one off the list.
    #[command(subcommand)]
    Suppression(SuppressionCommand),
    /// Puts `failed` messages back in the queue, with a fresh attempt budget.
    Requeue {
        #[arg(required = true, value_name = "MESSAGE-ID")]
        ids: Vec<i64>,
        #[command(flatten)]
        why: Why,
    },
    /// The latest messages that failed, could not be rendered or are in doubt, with why.
    Failures {
        /// How far back to look (SQL Server: at most 24 days).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        within: Duration,
        /// List at most this many (the newest).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Serves the status page: queue, lag, schedules with errors, recent failures, and a
    /// trace search. Set HERALD_STATUS_TOKEN to require `Authorization: Bearer <token>` (or
    /// `?token=<token>`).
    Serve {
        /// Where to listen; anything but loopback makes the page reachable from elsewhere.
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum SuppressionCommand {
    /// Lists suppressed addresses, newest first.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only addresses containing this (any letter case).
        #[arg(long)]
        address: Option<String>,
        /// List at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Takes an address off a tenant's list for a channel: it may be contacted again.
    Remove {
        tenant: String,
        #[arg(value_parser = parse_channel)]
        channel: Channel,
        address: String,
        /// The entry for this schedule only (a one-click unsubscribe from it), not the one for
        /// all the tenant's schedules.
        #[arg(long)]
        schedule: Option<String>,
        #[command(flatten)]
        why: Why,
    },
}

fn parse_channel(text: &str) -> Result<Channel, String> {
    text.parse()
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Makes the schedule inactive: the detector stops polling it.
    Pause(ScheduleArgs),
    /// Makes the schedule active again.
    Resume(ScheduleArgs),
}

#[derive(Args)]
struct ScheduleArgs {
    tenant: String,
    name: String,
    #[command(flatten)]
    by: By,
    /// Why (recorded).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Subcommand)]
enum InDoubtCommand {
    /// Lists the messages in doubt, longest in doubt first.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// List at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Settles in-doubt messages, after checking with the provider what became of them.
    Resolve {
        #[arg(required = true, value_name = "MESSAGE-ID")]
        ids: Vec<i64>,
        #[command(flatten)]
        resolution: Resolution,
        #[command(flatten)]
        why: Why,
    },
}

/// What became of an in-doubt message.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Resolution {
    /// The provider took it: mark it `sent`.
    #[arg(long)]
    sent: bool,
    /// The provider did not take it: queue it to be sent once more.
    #[arg(long)]
    resend: bool,
    /// Give it up: mark it `failed`.
    #[arg(long)]
    failed: bool,
}

impl Resolution {
    fn action(&self) -> Action {
        match (self.sent, self.resend) {
            (true, _) => Action::ResolveSent,
            (_, true) => Action::ResolveResend,
            _ => Action::ResolveFailed,
        }
    }
}

/// Who acts (recorded with the action).
#[derive(Args)]
struct By {
    /// Who acts; default the OS user ($USER, $LOGNAME, or the process's user name).
    #[arg(long)]
    by: Option<String>,
}

impl By {
    fn operator(self, reason: Option<String>) -> anyhow::Result<Operator> {
        let name = match self.by {
            Some(name) if name.trim().is_empty() => bail!("--by is empty"),
            Some(name) => name,
            None => os_user(),
        };
        Ok(Operator { name, reason })
    }
}

/// The OS user: `$USER` or `$LOGNAME`, else the name `/etc/passwd` gives the process's user
/// (environments such as containers and cron set neither variable), else `uid N`.
fn os_user() -> String {
    use std::os::unix::fs::MetadataExt;
    if let Some(name) = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| !name.trim().is_empty())
    {
        return name;
    }
    let Ok(uid) = std::fs::metadata("/proc/self").map(|process| process.uid()) else {
        return "unknown".into();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&uid.to_string().as_str()))
        .map_or_else(|| format!("uid {uid}"), |fields| fields[0].to_owned())
}

/// Who acts and why, both recorded; why is required.
#[derive(Args)]
struct Why {
    #[command(flatten)]
    by: By,
    /// Why (recorded with the action).
    #[arg(long)]
    reason: String,
}

impl Why {
    fn operator(self) -> anyhow::Result<Operator> {
        self.by.operator(Some(self.reason))
    }
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
    let json = cli.json;
    let shared = store::connect_notify(&settings.notify)
        .await
        .context("connecting to the notification database")?;
    let notify = shared.as_ref();
    Ok(match cli.command {
        Command::Audit {
            schedule,
            from,
            to,
            repair,
            catch_up,
        } => {
            let to = to.unwrap_or_else(Utc::now);
            let report = audit::audit(&settings, notify, &schedule, from, to, repair, catch_up);
            print(&report.await?, json)
        }
        Command::Queue => print(&queue::queue(notify).await?, json),
        Command::Lag => {
            let reader = queue::offsets_reader(&settings.kafka)?;
            let group = &settings.kafka.consumer_group;
            print(&queue::lag(&reader, group).await?, json)
        }
        Command::Schedules => print(&schedules::schedules(notify).await?, json),
        Command::Schedule(command) => {
            let (args, active) = match command {
                ScheduleCommand::Pause(args) => (args, false),
                ScheduleCommand::Resume(args) => (args, true),
            };
            let by = args.by.operator(args.reason)?;
            let report = schedules::set_active(notify, &args.tenant, &args.name, active, by);
            print(&report.await?, json)
        }
        Command::Trace { what, limit } => {
            let target = trace::Target::parse(&what).map_err(anyhow::Error::msg)?;
            print(&trace::trace(&settings, notify, target, limit).await?, json)
        }
        Command::InDoubt(InDoubtCommand::List { tenant, limit }) => print(
            &messages::in_doubt(notify, tenant.as_deref(), limit).await?,
            json,
        ),
        Command::InDoubt(InDoubtCommand::Resolve {
            ids,
            resolution,
            why,
        }) => {
            let report = messages::act(notify, &ids, resolution.action(), why.operator()?);
            print(&report.await?, json)
        }
        Command::Suppression(SuppressionCommand::List {
            tenant,
            address,
            limit,
        }) => {
            let report = suppression::list(notify, tenant.as_deref(), address.as_deref(), limit);
            print(&report.await?, json)
        }
        Command::Suppression(SuppressionCommand::Remove {
            tenant,
            channel,
            address,
            schedule,
            why,
        }) => {
            let target = suppression::Target {
                tenant: &tenant,
                channel,
                address: &address,
                schedule: schedule.as_deref(),
            };
            let report = suppression::remove(notify, target, why.operator()?);
            print(&report.await?, json)
        }
        Command::Requeue { ids, why } => {
            let report = messages::act(notify, &ids, Action::Requeue, why.operator()?);
            print(&report.await?, json)
        }
        Command::Failures { within, limit } => {
            print(&messages::failures(notify, within, limit).await?, json)
        }
        Command::Serve { listen } => {
            let token = serve::token_from_env()?;
            serve::serve(settings, shared, listen, token).await?;
            ExitCode::SUCCESS
        }
    })
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
