//! Whole-pipeline benchmark (issue 8): the raw stages and the pipeline, in one run, on this
//! machine, with the real parts.
//!
//! 1. Raw stages, each alone: the broker (produce, then consume, with the services' own
//!    client settings, `kafka::producer_config` / `consumer_config`); the notification
//!    database (the sender's statement cycle per claim, `claim_outgoing`, which marks its
//!    messages `sending`, → `finish_attempts`, a window of `max_in_flight` at a time, through `NotifyDb`); HTTP to
//!    the fake provider (the sender's own client and SendGrid request, `max_in_flight` calls
//!    in flight), at the configured provider latency and at 0.
//! 2. The pipeline: the detector, K renderers and K senders on local defaults
//!    (`config/base.toml` + `local.toml`), reading the source from the in-sync standby. N
//!    contact inserts (100 a transaction) are timed from the first commit until the fake
//!    provider accepted the last of them. Every recipient must be accepted exactly once, and
//!    every message end `sent`, or the run fails.
//! 3. Latency: inserts at a steady R a second, a small transaction every 20 ms, for 15 s;
//!    p50 / p99 of commit → accepted. The commit time is the client's clock when the
//!    inserting statement (its own transaction) returned; accepted is when the fake provider
//!    answered (`answered_at`, after its latency).
//!
//! It also reads, per process, CPU seconds (`/proc/PID/stat`) and peak RSS (`VmHWM`), and the
//! statements run per message on the notification database and on the source standby
//! (`pg_stat_statements`; transactions from `pg_stat_database` where it is not loaded).
//!
//! Run with `scripts/bench.sh [--help]`, which starts what it needs and builds release.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use fake_provider::{Config as ProviderConfig, FakeProvider, Received};
use herald_core::config::Settings;
use herald_core::event::ChangeEvent;
use herald_core::kafka;
use herald_core::model::{AttemptOutcome, Channel, Claimed, OutgoingMessage};
use herald_core::store::connect_notify;
use herald_tests::{
    Db, Engine, Replica, SENDGRID_KEY, Service, Stack, TWILIO_TOKEN, provider_config, repo_root,
};
use nix::unistd::{SysconfVar, sysconf};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sender::provider::{Delivery, Providers};
use serde_json::json;
use tokio_postgres::Client;

/// The services run on the defaults a new user gets: `config/base.toml` + `local.toml`.
const SERVICE_ENV: &str = "local";
/// Contacts per transaction in the timed burst.
const BURST_ROWS: i64 = 100;
/// Contacts inserted and delivered before anything is timed.
const WARM_UP: i64 = 100;
const STEADY_FOR: Duration = Duration::from_secs(15);
const STEADY_TICK: Duration = Duration::from_millis(20);
/// Longest wait for any phase to drain, whatever its speed.
const DRAIN_LIMIT: Duration = Duration::from_secs(900);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let settings = Settings::load_from(&repo_root().join("config"), SERVICE_ENV)?;
    let machine = machine().await?;
    step("raw stages");
    let raw = raw_stages(&options, &settings).await?;
    step("pipeline");
    let pipeline = pipeline(&options).await?;
    let report = Report {
        options,
        settings,
        machine,
        raw,
        pipeline,
    };
    report.print();
    if let Some(path) = &report.options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.json())?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("figures written to {}", path.display());
    }
    Ok(())
}

struct Options {
    messages: i64,
    provider_latency: Duration,
    renderers: usize,
    senders: usize,
    rate: u64,
    json: Option<PathBuf>,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Options {
            messages: 20_000,
            provider_latency: Duration::ZERO,
            renderers: 1,
            senders: 1,
            rate: 1_000,
            json: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            // `cargo bench` adds it.
            if arg == "--bench" {
                continue;
            }
            let value = args
                .next()
                .with_context(|| format!("{arg} takes a value (scripts/bench.sh --help)"))?;
            match arg.as_str() {
                "--messages" => options.messages = number(&arg, &value)?,
                "--provider-latency" => {
                    options.provider_latency = Duration::from_millis(number(&arg, &value)?)
                }
                "--renderers" => options.renderers = number(&arg, &value)?,
                "--senders" => options.senders = number(&arg, &value)?,
                "--rate" => options.rate = number(&arg, &value)?,
                "--json" => options.json = Some(value.into()),
                _ => bail!("unknown option {arg} (scripts/bench.sh --help)"),
            }
        }
        ensure!(options.messages > 0, "--messages must be at least 1");
        ensure!(
            options.renderers > 0 && options.senders > 0,
            "--renderers and --senders must be at least 1"
        );
        ensure!(options.rate > 0, "--rate must be at least 1");
        Ok(options)
    }
}

/// A line on stderr, with the time since the first one, while the benchmark runs.
fn step(what: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let since = START.get_or_init(Instant::now).elapsed();
    eprintln!("[bench +{:.0}s] {what}", since.as_secs_f64());
}

fn number<T: FromStr>(option: &str, value: &str) -> anyhow::Result<T> {
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{option} takes a whole number, not {value:?}"))
}

// ---------------------------------------------------------------------------------------
// The machine and the database settings.

struct Machine {
    cores: usize,
    cpu: String,
    memory_gib: f64,
    postgres: String,
    /// `fsync`, `synchronous_commit`, `full_page_writes` as the primary runs them.
    durability: Vec<(String, String)>,
}

async fn machine() -> anyhow::Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU".into(), |(_, name)| name.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let memory_kib: f64 = kib_field(&meminfo, "MemTotal:")? as f64;
    let postgres = herald_tests::connect("postgres").await?;
    let mut durability = Vec::new();
    for name in ["fsync", "synchronous_commit", "full_page_writes"] {
        let value: String = postgres
            .query_one(&format!("SHOW {name}"), &[])
            .await?
            .get(0);
        durability.push((name.to_owned(), value));
    }
    Ok(Machine {
        cores: std::thread::available_parallelism()?.get(),
        cpu,
        memory_gib: memory_kib / 1024.0 / 1024.0,
        postgres: postgres.query_one("SHOW server_version", &[]).await?.get(0),
        durability,
    })
}

/// A `Name:   123 kB` line of a `/proc` file.
fn kib_field(text: &str, name: &str) -> anyhow::Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .context(format!("no {name}"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("reading {name}"))
}

// ---------------------------------------------------------------------------------------
// Raw stages.

struct RawStages {
    produce: f64,
    consume: f64,
    notify_cycle: f64,
    /// Requests/s at the configured provider latency, and at 0.
    http: f64,
    http_instant: f64,
    in_flight: usize,
}

impl RawStages {
    /// The slowest stage the pipeline goes through, at the configured latency.
    fn slowest(&self) -> (&'static str, f64) {
        [
            ("broker produce", self.produce),
            ("broker consume", self.consume),
            ("notification DB cycle", self.notify_cycle),
            ("HTTP to the provider", self.http),
        ]
        .into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("four stages")
    }
}

async fn raw_stages(options: &Options, settings: &Settings) -> anyhow::Result<RawStages> {
    let stack = Stack::new(Engine::Postgres, "bench_raw").await?;
    stack.load_welcome_schedule().await?;
    step("raw: broker");
    let (produce, consume) = broker(&stack, options.messages).await?;
    step("raw: notification database");
    let window = settings.sender.max_in_flight;
    let notify_cycle = notify_cycle(&stack, options.messages, window, settings).await?;
    step("raw: HTTP");
    let http = http(options.messages, options.provider_latency, settings).await?;
    let http_instant = if options.provider_latency.is_zero() {
        http
    } else {
        self::http(options.messages, Duration::ZERO, settings).await?
    };
    Ok(RawStages {
        produce,
        consume,
        notify_cycle,
        http,
        http_instant,
        in_flight: window,
    })
}

/// Produces `messages` change events as the detector does (keyed, acknowledged), then
/// consumes them as a renderer does (storing each offset); returns both rates.
async fn broker(stack: &Stack, messages: i64) -> anyhow::Result<(f64, f64)> {
    let settings = stack.kafka_settings();
    kafka::ensure_topic(&settings).await?;
    let producer: FutureProducer = kafka::producer_config(&settings).create()?;
    // One event first, untimed: connecting and the topic's metadata are not throughput.
    let warm_up = sample_event(0).to_json();
    let warm_up = FutureRecord::<(), _>::to(&settings.topic).payload(&warm_up);
    producer
        .send(warm_up, Duration::from_secs(30))
        .await
        .map_err(|(error, _)| error)?;
    let started = Instant::now();
    let mut pending = Vec::new();
    for n in 1..=messages {
        let event = sample_event(n);
        let key = event.kafka_key();
        let payload = event.to_json();
        let record = FutureRecord::to(&settings.topic)
            .key(&key)
            .payload(&payload);
        pending.push(producer.send_result(record).map_err(|(error, _)| error)?);
        // Within librdkafka's default queue of 100,000.
        if pending.len() == 50_000 {
            for delivery in pending.drain(..) {
                delivery.await?.map_err(|(error, _)| error)?;
            }
        }
    }
    for delivery in pending {
        delivery.await?.map_err(|(error, _)| error)?;
    }
    let produce = messages as f64 / started.elapsed().as_secs_f64();

    let mut consumer_settings = settings.clone();
    consumer_settings.consumer_group = format!("{}-raw", settings.consumer_group);
    let consumer: BaseConsumer = kafka::consumer_config(&consumer_settings).create()?;
    consumer.subscribe(&[&settings.topic])?;
    let consume = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        // Timed from the first event (the untimed one): joining the group is not the stage's
        // throughput.
        let mut first = None;
        let mut read = 0;
        let deadline = Instant::now() + DRAIN_LIMIT;
        while read < messages + 1 {
            ensure!(
                Instant::now() < deadline,
                "consumed {read} of {messages} events"
            );
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message?;
                first.get_or_insert_with(Instant::now);
                ChangeEvent::from_json(message.payload().unwrap_or_default())?;
                consumer.store_offset_from_message(&message)?;
                read += 1;
            }
        }
        let elapsed = first.map_or(Duration::ZERO, |first| first.elapsed());
        Ok(messages as f64 / elapsed.as_secs_f64())
    })
    .await??;
    Ok((produce, consume))
}

/// The change event the detector emits for contact `n`.
fn sample_event(n: i64) -> ChangeEvent {
    ChangeEvent {
        format: 1,
        tenant: "acme".into(),
        schedule_id: 1,
        channel: Channel::Email,
        source_key: n.to_string(),
        change_version: Utc::now().to_rfc3339(),
        detected_at: Utc::now(),
    }
}

/// The sender's statements for `messages` queued emails, a claim of `window` at a time, one
/// claim after the other; returns messages/s.
async fn notify_cycle(
    stack: &Stack,
    messages: i64,
    window: usize,
    settings: &Settings,
) -> anyhow::Result<f64> {
    stack.queue_ready_emails(messages).await?;
    let db = connect_notify(&stack.database_settings("ntf")?).await?;
    let (owner, lease) = ("bench-raw", settings.sender.lease);
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let claimed = db
            .claim_outgoing(owner, lease, window as u32, &[], None)
            .await?;
        if claimed.is_empty() {
            break;
        }
        let finished: Vec<(i64, i32, AttemptOutcome)> = claimed
            .into_iter()
            .filter_map(|claim| match claim {
                Claimed::Sending { message, attempt } => Some((message.message_id, attempt)),
                Claimed::Suppressed { .. } => None,
            })
            .map(|(id, attempt)| {
                let outcome = AttemptOutcome::Sent {
                    http_status: 202,
                    provider_message_id: Some(format!("bench-{id}")),
                };
                (id, attempt, outcome)
            })
            .collect();
        db.finish_attempts(&finished).await?;
        sent += finished.len() as i64;
    }
    let elapsed = started.elapsed();
    ensure!(
        sent == messages && stack.messages_with_status("sent").await? == messages,
        "the cycle sent {sent} of {messages} messages"
    );
    Ok(messages as f64 / elapsed.as_secs_f64())
}

/// `requests` SendGrid sends through the sender's own client to a fake provider answering
/// after `latency`, `max_in_flight` at a time; returns requests/s.
async fn http(requests: i64, latency: Duration, settings: &Settings) -> anyhow::Result<f64> {
    let provider = FakeProvider::start(ProviderConfig {
        latency,
        ..provider_config()
    })
    .await?;
    let mut providers = settings.providers.clone();
    providers.sendgrid.base_url = provider.url();
    providers.sendgrid.api_key = Some(SENDGRID_KEY.to_owned().into());
    providers.twilio.base_url = provider.url();
    providers.twilio.auth_token = Some(TWILIO_TOKEN.to_owned().into());
    let providers = Arc::new(Providers::new(
        &providers,
        settings.sender.http_timeout,
        "",
        None,
    )?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..settings.sender.max_in_flight)
        .map(|_| {
            let (providers, next) = (providers.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as i64;
                    if n >= requests {
                        return Ok(());
                    }
                    let delivery = providers.send(&sample_email(n)).await;
                    ensure!(
                        matches!(delivery, Delivery::Accepted { .. }),
                        "the fake provider did not take a send: {delivery:?}"
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let rate = requests as f64 / started.elapsed().as_secs_f64();
    ensure!(provider.store().count(None, Some(true)) == requests as usize);
    provider.shutdown().await;
    Ok(rate)
}

/// A welcome email as the renderer makes it from the demo template.
fn sample_email(n: i64) -> OutgoingMessage {
    OutgoingMessage {
        message_id: n,
        tenant: "acme".into(),
        schedule_id: 1,
        channel: Channel::Email,
        account: "email".into(),
        recipient: format!("http-{n}@example.com"),
        recipient_name: Some("Bench Mark".into()),
        subject: Some("Welcome, Bench!".into()),
        body_html: Some("<p>Hello Bench Mark,</p><p>welcome to Acme.</p>".into()),
        body_text: "Hello Bench Mark, welcome to Acme.".into(),
        counted_attempts: 0,
        one_click: false,
    }
}

// ---------------------------------------------------------------------------------------
// The pipeline.

struct Pipeline {
    /// The burst, from its first commit to its last acceptance: seconds, messages/s.
    seconds: f64,
    rate: f64,
    /// What the counters counted during the burst, "statements" (or "transactions"), and
    /// how many per message on each database.
    counted: &'static str,
    notify_per_message: f64,
    source_per_message: f64,
    steady: Steady,
    processes: Vec<ProcessFigures>,
}

struct Steady {
    messages: usize,
    inserted_rate: f64,
    p50_ms: i64,
    p99_ms: i64,
    max_ms: i64,
}

struct ProcessFigures {
    name: String,
    burst_cpu: f64,
    steady_cpu: f64,
    peak_rss_mib: f64,
}

async fn pipeline(options: &Options) -> anyhow::Result<Pipeline> {
    let provider = ProviderConfig {
        latency: options.provider_latency,
        ..provider_config()
    };
    let mut stack = Stack::with_provider(Engine::Postgres, "bench_pipeline", provider).await?;
    stack.load_welcome_schedule().await?;
    stack
        .read_source_from(Replica::InSync, &[Service::Detector, Service::Renderer])
        .await?;
    for service in Service::ALL {
        stack.set(service, "HERALD_ENV", SERVICE_ENV);
        stack.set(service, "HERALD__KAFKA__PARTITIONS", "6");
        // Metrics served as on local defaults, on a port of each instance's own.
        for key in ["DETECTOR", "RENDERER", "SENDER"] {
            stack.set(service, &format!("HERALD__METRICS__{key}"), "127.0.0.1:0");
        }
    }
    // Named `<service>-<host>-<pid>`, so that instances never share a name.
    stack.set(Service::Renderer, "HERALD__RENDERER__INSTANCE_ID", "");
    stack.set(Service::Sender, "HERALD__SENDER__INSTANCE_ID", "");
    let mut processes = vec![(Service::Detector, 1)];
    processes.extend((1..=options.renderers).map(|n| (Service::Renderer, n)));
    processes.extend((1..=options.senders).map(|n| (Service::Sender, n)));
    for &(service, instance) in &processes {
        stack.start_instance(service, instance).await?;
    }
    stack.wait_until_watching(1).await?;
    for n in 1..=options.renderers {
        wait_for_log(&stack, Service::Renderer, n, "partitions assigned").await?;
    }
    step("pipeline: warming up");
    let source = stack.connect_source().await?;
    insert_contacts(&source, "warm", 1, WARM_UP).await?;
    stack
        .wait_for_accepted(WARM_UP as usize, DRAIN_LIMIT)
        .await?;
    let before = usage_of(&stack, &processes)?;

    // The burst.
    let notify_db = format!("{}_ntf", stack.name);
    let source_db = format!("{}_src", stack.name);
    let notify_count = Counter::new(herald_tests::connect("postgres").await?, &notify_db).await;
    let source_count = Counter::new(Replica::InSync.connect("postgres").await?, &source_db).await;
    let notify_from = notify_count.read().await?;
    let source_from = source_count.read().await?;
    step("pipeline: burst");
    let mut first_commit = None;
    for from in (1..=options.messages).step_by(BURST_ROWS as usize) {
        let to = (from + BURST_ROWS - 1).min(options.messages);
        insert_contacts(&source, "burst", from, to).await?;
        first_commit.get_or_insert_with(Utc::now);
    }
    let first_commit = first_commit.expect("at least one message");
    let burst_total = (WARM_UP + options.messages) as usize;
    let accepted = stack.wait_for_accepted(burst_total, DRAIN_LIMIT).await?;
    let notify_statements = notify_count.read().await? - notify_from;
    let source_statements = source_count.read().await? - source_from;
    let after_burst = usage_of(&stack, &processes)?;
    let last = accepted
        .iter()
        .map(|r| r.answered_at)
        .max()
        .expect("accepted");
    let seconds = (last - first_commit).as_seconds_f64();

    step("pipeline: steady load");
    let commits = steady_load(&source, options.rate).await?;
    let total = burst_total + commits.len();
    let accepted = stack.wait_for_accepted(total, DRAIN_LIMIT).await?;
    let after_steady = usage_of(&stack, &processes)?;
    let steady = latencies(&commits, &accepted);

    step("pipeline: checking every recipient was accepted exactly once");
    check_exactly_once(&stack, options.messages, commits.len()).await?;
    let per_message = |count: i64| count as f64 / options.messages as f64;
    Ok(Pipeline {
        seconds,
        rate: options.messages as f64 / seconds,
        counted: notify_count.counted(),
        notify_per_message: per_message(notify_statements),
        source_per_message: per_message(source_statements),
        steady,
        processes: before
            .into_iter()
            .zip(after_burst)
            .zip(after_steady)
            .map(
                |(((name, before), (_, burst)), (_, steady))| ProcessFigures {
                    name,
                    burst_cpu: burst.cpu - before.cpu,
                    steady_cpu: steady.cpu - burst.cpu,
                    peak_rss_mib: steady.peak_rss_kib as f64 / 1024.0,
                },
            )
            .collect(),
    })
}

async fn wait_for_log(
    stack: &Stack,
    service: Service,
    instance: usize,
    text: &str,
) -> anyhow::Result<()> {
    herald_tests::wait_until(Duration::from_secs(90), || async {
        Ok(stack
            .instance_log(service, instance)
            .contains(text)
            .then_some(()))
    })
    .await
    .with_context(|| format!("{} {instance} never logged {text:?}", service.binary()))
}

/// Inserts contacts `<prefix>-<from>@example.com` … `<prefix>-<to>@example.com` in one
/// statement, its own transaction: committed when this returns.
async fn insert_contacts(source: &Db, prefix: &str, from: i64, to: i64) -> anyhow::Result<()> {
    source
        .execute(
            "INSERT INTO crm.contact (first_name, last_name, email, phone, locale)
             SELECT 'Bench', 'Mark', $1::text || '-' || n || '@example.com', '+15550000001', 'en'
               FROM generate_series($2::bigint, $3::bigint) AS n",
            &[prefix.into(), from.into(), to.into()],
        )
        .await?;
    Ok(())
}

/// Inserts `rate` contacts a second for [`STEADY_FOR`], a transaction every [`STEADY_TICK`];
/// returns each recipient's commit time.
async fn steady_load(source: &Db, rate: u64) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let mut commits = HashMap::new();
    let mut ticker = tokio::time::interval(STEADY_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut inserted = 0;
    while started.elapsed() < STEADY_FOR {
        ticker.tick().await;
        let due = (rate as f64 * started.elapsed().as_secs_f64()) as i64;
        if due <= inserted {
            continue;
        }
        insert_contacts(source, "steady", inserted + 1, due).await?;
        let at = Utc::now();
        commits.extend((inserted + 1..=due).map(|n| (format!("steady-{n}@example.com"), at)));
        inserted = due;
    }
    Ok(commits)
}

fn latencies(commits: &HashMap<String, DateTime<Utc>>, accepted: &[Received]) -> Steady {
    let mut millis: Vec<i64> = accepted
        .iter()
        .filter_map(|r| {
            let committed = commits.get(r.to.first()?)?;
            Some((r.answered_at - *committed).num_milliseconds())
        })
        .collect();
    millis.sort_unstable();
    let at = |p: usize| millis.get((millis.len().max(1) - 1) * p / 100).copied();
    Steady {
        messages: commits.len(),
        inserted_rate: commits.len() as f64 / STEADY_FOR.as_secs_f64(),
        p50_ms: at(50).unwrap_or_default(),
        p99_ms: at(99).unwrap_or_default(),
        max_ms: millis.last().copied().unwrap_or_default(),
    }
}

/// Every inserted contact's email accepted exactly once, nothing else accepted, and every
/// message `sent`; fails loudly otherwise.
async fn check_exactly_once(stack: &Stack, burst: i64, steady: usize) -> anyhow::Result<()> {
    // Late duplicates would arrive now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut expected: HashMap<String, usize> = HashMap::new();
    for (prefix, count) in [
        ("warm", WARM_UP),
        ("burst", burst),
        ("steady", steady as i64),
    ] {
        expected.extend((1..=count).map(|n| (format!("{prefix}-{n}@example.com"), 0)));
    }
    let mut unexpected = Vec::new();
    for record in stack.accepted() {
        for to in record.to {
            match expected.get_mut(&to) {
                Some(seen) => *seen += 1,
                None => unexpected.push(to),
            }
        }
    }
    let mut wrong: Vec<String> = expected
        .into_iter()
        .filter(|(_, seen)| *seen != 1)
        .map(|(to, seen)| format!("{to} accepted {seen} times"))
        .collect();
    wrong.extend(
        unexpected
            .into_iter()
            .map(|to| format!("{to} was never inserted")),
    );
    if !wrong.is_empty() {
        wrong.sort();
        wrong.truncate(20);
        bail!(
            "DUPLICATES OR LOSSES in the pipeline:\n{}\n{}",
            wrong.join("\n"),
            stack.diagnostics().await
        );
    }
    let total = WARM_UP + burst + steady as i64;
    stack
        .wait_for_count(
            "SELECT count(*) FROM message",
            total,
            Duration::from_secs(1),
        )
        .await?;
    stack
        .wait_for_status("sent", total, Duration::from_secs(30))
        .await
        .context("not every message ended `sent`")
}

// ---------------------------------------------------------------------------------------
// Processes and statement counts.

/// A process's CPU time so far and its peak resident memory.
struct Usage {
    cpu: f64,
    peak_rss_kib: u64,
}

/// Every service process's usage, and this one's (the fake provider, the load, the checks,
/// and earlier the raw stages), by name.
fn usage_of(stack: &Stack, processes: &[(Service, usize)]) -> anyhow::Result<Vec<(String, Usage)>> {
    let mut all = Vec::new();
    for &(service, instance) in processes {
        let pid = stack
            .pid(service, instance)
            .with_context(|| format!("{} {instance} is not running", service.binary()))?;
        let name = match service {
            Service::Detector => service.binary().to_owned(),
            _ => format!("{} {instance}", service.binary()),
        };
        all.push((name, usage(&pid.to_string())?));
    }
    all.push((
        "bench process (fake provider, load, checks; its peak RSS includes the raw stages)".into(),
        usage("self")?,
    ));
    Ok(all)
}

fn usage(pid: &str) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // The fields after the command name (which may hold spaces) start at field 3, state;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("reading /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let per_second = sysconf(SysconfVar::CLK_TCK)?.context("no clock tick rate")? as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(Usage {
        cpu: ticks as f64 / per_second,
        peak_rss_kib: kib_field(&status, "VmHWM:")?,
    })
}

/// Statements run in one database, from `pg_stat_statements`; transactions from
/// `pg_stat_database` where that extension is not loaded.
struct Counter {
    client: Client,
    database: String,
    statements: bool,
}

impl Counter {
    /// `client` is connected to the `postgres` database of the server that runs `database`'s
    /// statements.
    async fn new(client: Client, database: &str) -> Self {
        let statements = client
            .query_one("SELECT count(*) FROM pg_stat_statements", &[])
            .await
            .is_ok();
        if !statements {
            eprintln!(
                "pg_stat_statements is not loaded here (scripts/postgres.sh loads it when it \
                 starts the cluster: scripts/postgres.sh stop; scripts/postgres.sh): counting \
                 transactions instead of statements"
            );
        }
        Counter {
            client,
            database: database.to_owned(),
            statements,
        }
    }

    fn counted(&self) -> &'static str {
        if self.statements {
            "statements"
        } else {
            "transactions"
        }
    }

    async fn read(&self) -> anyhow::Result<i64> {
        let sql = if self.statements {
            "SELECT coalesce(sum(s.calls), 0)::bigint FROM pg_stat_statements s
               JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1"
        } else {
            // Counts reach this view up to a second late: pause for them.
            tokio::time::sleep(Duration::from_secs(1)).await;
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
              WHERE datname = $1"
        };
        self.client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await?;
        Ok(self.client.query_one(sql, &[&self.database]).await?.get(0))
    }
}

// ---------------------------------------------------------------------------------------
// The report.

struct Report {
    options: Options,
    settings: Settings,
    machine: Machine,
    raw: RawStages,
    pipeline: Pipeline,
}

impl Report {
    fn print(&self) {
        let Report {
            options,
            settings,
            machine,
            raw,
            pipeline,
        } = self;
        let latency_ms = options.provider_latency.as_millis();
        let durability: Vec<String> = machine
            .durability
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        println!(
            "\nmachine: {} cores ({}), {:.1} GiB memory; PostgreSQL {} ({}); broker {}",
            machine.cores,
            machine.cpu,
            machine.memory_gib,
            machine.postgres,
            durability.join(", "),
            herald_tests::kafka_brokers()
        );
        println!(
            "run: {} messages, provider latency {latency_ms} ms, {} renderer(s), {} sender(s), \
             steady {}/s for {} s; services on config/base.toml + {SERVICE_ENV}.toml (detector \
             poll {:?}, renderer batch {}, sender max_in_flight {}), source read from the \
             in-sync standby\n",
            options.messages,
            options.renderers,
            options.senders,
            options.rate,
            STEADY_FOR.as_secs(),
            settings.detector.poll_interval,
            settings.renderer.batch_size,
            settings.sender.max_in_flight,
        );
        let steady = &pipeline.steady;
        let (slowest, slowest_rate) = raw.slowest();
        println!("| figure | value |");
        println!("|---|---|");
        println!(
            "| **end to end**: {} inserts, first commit → last accepted | **{} /s** ({:.1} s) |",
            thousands(options.messages as f64),
            thousands(pipeline.rate),
            pipeline.seconds
        );
        println!(
            "| commit → accepted at a steady {} /s ({} messages) | p50 {} ms, p99 {} ms, max {} ms |",
            thousands(steady.inserted_rate),
            thousands(steady.messages as f64),
            thousands(steady.p50_ms as f64),
            thousands(steady.p99_ms as f64),
            thousands(steady.max_ms as f64),
        );
        for process in &pipeline.processes {
            println!(
                "| {}: CPU s (burst / steady), peak RSS | {:.1} / {:.1}, {:.1} MiB |",
                process.name, process.burst_cpu, process.steady_cpu, process.peak_rss_mib
            );
        }
        println!(
            "| {} per message: notification DB / source standby | {:.2} / {:.2} |",
            pipeline.counted, pipeline.notify_per_message, pipeline.source_per_message
        );
        println!(
            "| raw: broker produce / consume (the services' client settings) | {} /s / {} /s |",
            thousands(raw.produce),
            thousands(raw.consume)
        );
        println!(
            "| raw: notification DB, claim → sending → sent, {} per claim | {} /s |",
            raw.in_flight,
            thousands(raw.notify_cycle)
        );
        println!(
            "| raw: HTTP to the fake provider, {} in flight, {latency_ms} ms / 0 ms | {} /s / {} /s |",
            raw.in_flight,
            thousands(raw.http),
            thousands(raw.http_instant)
        );
        println!(
            "| end to end / slowest raw stage ({slowest}) | {:.2} |",
            pipeline.rate / slowest_rate
        );
    }

    fn json(&self) -> serde_json::Value {
        let Report {
            options,
            settings,
            machine,
            raw,
            pipeline,
        } = self;
        let (slowest, slowest_rate) = raw.slowest();
        let processes: serde_json::Map<String, serde_json::Value> = pipeline
            .processes
            .iter()
            .map(|p| {
                let figures = json!({
                    "burst_cpu_s": p.burst_cpu,
                    "steady_cpu_s": p.steady_cpu,
                    "peak_rss_mib": p.peak_rss_mib,
                });
                (p.name.clone(), figures)
            })
            .collect();
        json!({
            "machine": {
                "cores": machine.cores,
                "cpu": machine.cpu,
                "memory_gib": machine.memory_gib,
                "postgres": machine.postgres,
                "durability": machine.durability.iter().cloned().collect::<HashMap<_, _>>(),
            },
            "options": {
                "messages": options.messages,
                "provider_latency_ms": options.provider_latency.as_millis() as u64,
                "renderers": options.renderers,
                "senders": options.senders,
                "rate": options.rate,
                "steady_seconds": STEADY_FOR.as_secs(),
                "service_env": SERVICE_ENV,
                "detector_poll_interval_ms": settings.detector.poll_interval.as_millis() as u64,
                "sender_max_in_flight": settings.sender.max_in_flight,
            },
            "end_to_end": {
                "rate": pipeline.rate,
                "seconds": pipeline.seconds,
                "per_message": {
                    "counted": pipeline.counted,
                    "notify": pipeline.notify_per_message,
                    "source": pipeline.source_per_message,
                },
            },
            "latency": {
                "inserted_rate": pipeline.steady.inserted_rate,
                "messages": pipeline.steady.messages,
                "p50_ms": pipeline.steady.p50_ms,
                "p99_ms": pipeline.steady.p99_ms,
                "max_ms": pipeline.steady.max_ms,
            },
            "processes": processes,
            "raw": {
                "broker_produce": raw.produce,
                "broker_consume": raw.consume,
                "notify_cycle": raw.notify_cycle,
                "http": raw.http,
                "http_instant": raw.http_instant,
                "in_flight": raw.in_flight,
            },
            "slowest_raw_stage": slowest,
            "end_to_end_over_slowest_raw": pipeline.rate / slowest_rate,
        })
    }
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < -0.5 {
        format!("-{grouped}")
    } else {
        grouped
    }
}
