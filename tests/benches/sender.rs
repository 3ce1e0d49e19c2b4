//! Sender benchmark (issue 8): the sender alone draining a queue of ready messages to the
//! fake provider, which answers at once or after a delay (real SendGrid and Twilio take
//! 100–300 ms). It reports messages sent per second, and the provider calls in flight that
//! allows.
//!
//! Run with `scripts/bench.sh sender` (release build; PostgreSQL running, as
//! `scripts/test.sh` leaves it). `HERALD_BENCH_MESSAGES` sets the queue's size (default 5000).

use std::time::{Duration, Instant};

use fake_provider::Config as ProviderConfig;
use herald_tests::{Engine, Service, Stack, provider_config};

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
    let provider = ProviderConfig {
        latency: Duration::from_millis(latency_ms),
        ..provider_config()
    };
    let name = format!("bench_sender_{latency_ms}");
    let mut stack = Stack::with_provider(Engine::Postgres, &name, provider).await?;
    stack.load_welcome_schedule().await?;
    stack.queue_ready_emails(messages).await?;
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
