//! Sender benchmark (issue 8): the sender alone draining a queue of ready messages to the
//! fake provider, which answers at once or after a delay (real SendGrid and Twilio take
//! 100–300 ms). It reports messages sent per second, and the provider calls in flight that
//! allows.
//!
//! Run with `scripts/bench.sh sender` (release build; PostgreSQL running, as
//! `scripts/test.sh` leaves it). `HERALD_BENCH_MESSAGES` sets the queue's size (default 5000).

use std::time::{Duration, Instant};

use fake_provider::{Fault, FaultKind};
use herald_tests::{Engine, Service, Stack};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages: i64 = std::env::var("HERALD_BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    println!("| provider latency | messages | seconds | sent/s |");
    println!("|---|---|---|---|");
    for latency_ms in [0, 100] {
        let (seconds, rate) = drain(messages, latency_ms).await?;
        println!("| {latency_ms} ms | {messages} | {seconds:.1} | {rate:.0} |");
    }
    Ok(())
}

/// Queues `messages` emails, starts the sender, and times it until all are sent.
async fn drain(messages: i64, latency_ms: u64) -> anyhow::Result<(f64, f64)> {
    let mut stack = Stack::new(Engine::Postgres, &format!("bench_sender_{latency_ms}")).await?;
    stack.load_welcome_schedule().await?;
    if latency_ms > 0 {
        stack.provider.faults().push([Fault {
            for_ms: Some(3_600_000),
            ..Fault::new(FaultKind::Slow {
                delay_ms: latency_ms,
            })
        }]);
    }
    stack
        .notify
        .execute(
            "INSERT INTO message (tenant, schedule_id, source_key, change_version, channel,
                                  status, recipient, subject, body_text)
             SELECT 'acme', 1, n::text, '1', 'email', 'queued', 'to' || n || '@example.com',
                    'Hello', 'Hello there'
               FROM generate_series(1, $1::bigint) AS n",
            &[messages.into()],
        )
        .await?;
    let started = Instant::now();
    stack.start(Service::Sender).await?;
    loop {
        let sent = stack.messages_with_status("sent").await?;
        if sent >= messages {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {sent} of {messages} sent in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    stack.stop(Service::Sender).await?;
    Ok((seconds, messages as f64 / seconds))
}
