//! Detection benchmark (issue 6's numbers): the change detector alone, on local defaults
//! (`poll_interval` 1 s, `max_write_delay` 5 s), reading the source from a hot standby while
//! a writer commits 1,000 contacts a second on the primary. It reports
//! - commit → event on the topic (the event's Kafka timestamp minus the commit's return);
//! - rows each poll read again (read − emitted) and the poll's time, steady and while a
//!   transaction stays open on the primary for 60 s;
//! - the same latency through a standby 3 s behind.
//!
//! Run with `scripts/bench.sh detection` (release build; PostgreSQL, both standbys and the
//! broker running, as `scripts/test.sh` leaves them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_core::event::ChangeEvent;
use herald_tests::{Db, Engine, Replica, ReplicaControl, Service, Stack};
use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use tokio::sync::watch;

const RATE: u64 = 1_000;
const ROWS_PER_COMMIT: u64 = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let replica = ReplicaControl::take().await?;

    println!("== standby in sync, {RATE} changes/s");
    let run = Run::start(Replica::InSync, "bench_in_sync").await?;
    run.sleep(5).await;
    let steady = run.window(30).await;
    let holder = run.stack.connect_source().await?;
    holder.batch("BEGIN").await?;
    add(&holder, "held-open@example.com").await?;
    run.sleep(5).await;
    let held = run.window(55).await;
    holder.batch("COMMIT").await?;
    run.sleep(10).await;
    let report = run.finish().await?;
    report.latency("commit → event", steady);
    report.passes("steady", steady);
    report.passes("60 s open writer", held);

    println!("\n== standby 3 s behind, {RATE} changes/s");
    let run = Run::start(Replica::Controlled, "bench_lagging").await?;
    replica.lag(Duration::from_secs(3)).await?;
    run.sleep(10).await;
    let lagging = run.window(20).await;
    let report = run.finish().await?;
    replica.lag(Duration::ZERO).await?;
    report.latency("commit → event", lagging);
    report.passes("3 s lag", lagging);
    Ok(())
}

/// A detector on its own stack, a writer at [`RATE`] and a reader of the topic.
struct Run {
    stack: Stack,
    commits: Arc<Mutex<HashMap<String, u128>>>,
    stop: watch::Sender<bool>,
    writer: tokio::task::JoinHandle<anyhow::Result<()>>,
    reader: tokio::task::JoinHandle<anyhow::Result<Vec<(String, i64)>>>,
}

/// A span of wall-clock time, in Unix milliseconds.
#[derive(Debug, Clone, Copy)]
struct Window(u128, u128);

impl Run {
    async fn start(replica: Replica, name: &str) -> anyhow::Result<Self> {
        let mut stack = Stack::new(Engine::Postgres, name).await?;
        stack.load_welcome_schedule().await?;
        stack
            .read_source_from(replica, &[Service::Detector])
            .await?;
        for (key, value) in [
            ("HERALD__DETECTOR__POLL_INTERVAL", "1s"),
            ("HERALD__DETECTOR__MAX_WRITE_DELAY", "5s"),
            ("HERALD__TELEMETRY__FORMAT", "json"),
            ("RUST_LOG", "info,change_detector=debug"),
        ] {
            stack.set(Service::Detector, key, value);
        }
        stack.start(Service::Detector).await?;
        stack.wait_until_watching(1).await?;

        let (stop, stopped) = watch::channel(false);
        let commits = Arc::new(Mutex::new(HashMap::new()));
        let writer = tokio::spawn(write(
            stack.connect_source().await?,
            commits.clone(),
            stopped.clone(),
        ));
        let reader = tokio::task::spawn_blocking({
            let consumer = stack.topic_reader("bench")?;
            move || read(consumer, stopped)
        });
        Ok(Run {
            stack,
            commits,
            stop,
            writer,
            reader,
        })
    }

    async fn sleep(&self, seconds: u64) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }

    async fn window(&self, seconds: u64) -> Window {
        let from = now_ms();
        self.sleep(seconds).await;
        Window(from, now_ms())
    }

    async fn finish(self) -> anyhow::Result<Report> {
        self.sleep(3).await;
        self.stop.send_replace(true);
        self.writer.await??;
        let events = self.reader.await??;
        let commits = self.commits.lock().expect("lock").clone();
        let passes = passes(&self.stack.log(Service::Detector))?;
        Ok(Report {
            commits,
            events,
            passes,
        })
    }
}

async fn add(db: &Db, email: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one(
            "INSERT INTO crm.contact (first_name, last_name, email) VALUES ('Bench', 'Mark', $1)
             RETURNING contact_id",
            &[email.into()],
        )
        .await?
        .int(0))
}

/// Commits [`ROWS_PER_COMMIT`] contacts at a time, [`RATE`] a second, recording when each
/// commit returned.
async fn write(
    db: Db,
    commits: Arc<Mutex<HashMap<String, u128>>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut ticker =
        tokio::time::interval(Duration::from_micros(1_000_000 * ROWS_PER_COMMIT / RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0;
    while !*stop.borrow() {
        ticker.tick().await;
        db.batch("BEGIN").await?;
        let mut keys = Vec::new();
        for _ in 0..ROWS_PER_COMMIT {
            n += 1;
            keys.push(add(&db, &format!("bench-{n}@example.com")).await?);
        }
        db.batch("COMMIT").await?;
        let at = now_ms();
        let mut commits = commits.lock().expect("lock");
        for key in keys {
            commits.insert(key.to_string(), at);
        }
    }
    Ok(())
}

/// The events `consumer` reads until stopped: (source key, Kafka timestamp in ms).
fn read(consumer: BaseConsumer, stop: watch::Receiver<bool>) -> anyhow::Result<Vec<(String, i64)>> {
    let mut events = Vec::new();
    let mut idle_since_stop = 0;
    while idle_since_stop < 10 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(message) => {
                let message = message?;
                let event = ChangeEvent::from_json(message.payload().unwrap_or_default())?;
                let at = message
                    .timestamp()
                    .to_millis()
                    .context("events carry a timestamp")?;
                events.push((event.source_key, at));
            }
            None if *stop.borrow() => idle_since_stop += 1,
            None => {}
        }
    }
    Ok(events)
}

/// One detection pass, from the detector's debug log.
#[derive(Debug)]
struct Pass {
    at: u128,
    read: u64,
    emitted: u64,
    elapsed_ms: u64,
    held_back_ms: u64,
}

fn passes(log: &str) -> anyhow::Result<Vec<Pass>> {
    let mut passes = Vec::new();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["message"] != "pass" {
            continue;
        }
        let number = |field: &str| entry[field].as_u64().unwrap_or_default();
        let at: DateTime<Utc> = entry["timestamp"]
            .as_str()
            .context("log lines carry a timestamp")?
            .parse()?;
        passes.push(Pass {
            at: at.timestamp_millis() as u128,
            read: number("read"),
            emitted: number("emitted"),
            elapsed_ms: number("elapsed_ms"),
            held_back_ms: number("held_back_ms"),
        });
    }
    Ok(passes)
}

struct Report {
    commits: HashMap<String, u128>,
    events: Vec<(String, i64)>,
    passes: Vec<Pass>,
}

impl Report {
    fn latency(&self, what: &str, window: Window) {
        let mut first_seen: HashMap<&str, i64> = HashMap::new();
        for (key, at) in &self.events {
            first_seen
                .entry(key.as_str())
                .and_modify(|seen| *seen = (*seen).min(*at))
                .or_insert(*at);
        }
        let mut latencies: Vec<i64> = self
            .commits
            .iter()
            .filter(|(_, at)| (window.0..window.1).contains(*at))
            .filter_map(|(key, committed)| {
                first_seen
                    .get(key.as_str())
                    .map(|seen| *seen - *committed as i64)
            })
            .collect();
        let committed = self
            .commits
            .values()
            .filter(|at| (window.0..window.1).contains(*at))
            .count();
        latencies.sort_unstable();
        println!(
            "  {what}: {} of {committed} commits in the window became events; ms p50 {} p90 {} p99 {} max {}",
            latencies.len(),
            percentile(&latencies, 50),
            percentile(&latencies, 90),
            percentile(&latencies, 99),
            latencies.last().copied().unwrap_or_default()
        );
    }

    fn passes(&self, what: &str, window: Window) {
        let passes: Vec<&Pass> = self
            .passes
            .iter()
            .filter(|pass| (window.0..window.1).contains(&pass.at))
            .collect();
        let mut reread: Vec<i64> = passes
            .iter()
            .map(|p| p.read as i64 - p.emitted as i64)
            .collect();
        let mut read: Vec<i64> = passes.iter().map(|p| p.read as i64).collect();
        let mut elapsed: Vec<i64> = passes.iter().map(|p| p.elapsed_ms as i64).collect();
        let held_back = passes.iter().map(|p| p.held_back_ms).max().unwrap_or(0);
        reread.sort_unstable();
        read.sort_unstable();
        elapsed.sort_unstable();
        let mean = |values: &[i64]| values.iter().sum::<i64>() / values.len().max(1) as i64;
        println!(
            "  {what}: {} polls; rows read per poll mean {} max {}; read again mean {} p50 {} max {}; \
             poll time ms p50 {} p99 {} max {}; hold-back line up to {:.1} s behind",
            passes.len(),
            mean(&read),
            read.last().copied().unwrap_or_default(),
            mean(&reread),
            percentile(&reread, 50),
            reread.last().copied().unwrap_or_default(),
            percentile(&elapsed, 50),
            percentile(&elapsed, 99),
            elapsed.last().copied().unwrap_or_default(),
            held_back as f64 / 1000.0
        );
    }
}

fn percentile(sorted: &[i64], p: usize) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}
