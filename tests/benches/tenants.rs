//! Tenant isolation benchmark (issue 11): how long a small tenant's messages take while a
//! large tenant's flood drains, on this machine, with the real parts.
//!
//! acme imports N contacts in one statement (default 100,000); once the fake provider has
//! taken 1% of them, globex adds 10 customers, one transaction each. The provider answers
//! every call in 50 ms (as real ones take 100–300 ms, a flood is provider-bound); the services
//! run on local defaults. For globex's 10 it reports commit → queued (the detector and the
//! renderer: acme's events are ahead of globex's on the topic), queued → accepted (the
//! sender) and commit → accepted, p50 and max, with how much of acme's flood was sent by
//! then; then how long the flood took to drain. Every message must end `sent`, once.
//!
//! Run with `scripts/bench.sh tenants [--flood N] [--provider-latency MS]`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use fake_provider::{Config as ProviderConfig, Received};
use herald_tests::{Engine, Service, Stack, provider_config, wait_until};

/// The services run on the defaults a new user gets: `config/base.toml` + `local.toml`.
const SERVICE_ENV: &str = "local";
const SMALL: usize = 10;
/// Longest wait for any phase, whatever its speed.
const DRAIN_LIMIT: Duration = Duration::from_secs(1800);

struct Options {
    flood: i64,
    provider_latency: Duration,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Options {
            flood: 100_000,
            provider_latency: Duration::from_millis(50),
        };
        let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
        while let Some(arg) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{arg} needs a value"))?;
            let number = |value: &str| {
                value
                    .parse::<u64>()
                    .with_context(|| format!("{arg}: {value:?} is not a number"))
            };
            match arg.as_str() {
                "--flood" => options.flood = i64::try_from(number(&value)?)?,
                "--provider-latency" => {
                    options.provider_latency = Duration::from_millis(number(&value)?)
                }
                other => bail!("unknown option {other} (scripts/bench.sh --help)"),
            }
        }
        ensure!(options.flood >= 100, "--flood must be at least 100");
        Ok(options)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let provider = ProviderConfig {
        latency: options.provider_latency,
        ..provider_config()
    };
    let mut stack = Stack::with_provider(Engine::Postgres, "bench_tenants", provider).await?;
    stack.load_welcome_schedule().await?;
    stack.add_second_tenant().await?;
    for service in Service::ALL {
        stack.set(service, "HERALD_ENV", SERVICE_ENV);
    }
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    eprintln!("[bench] acme's flood: {} contacts", options.flood);
    let flood_committed = Instant::now();
    stack.insert_contacts(options.flood).await?;
    let one_percent = usize::try_from(options.flood / 100)?;
    wait_until(DRAIN_LIMIT, || async {
        Ok((stack.sent_to_tenant("acme").await? >= one_percent).then_some(()))
    })
    .await?;

    eprintln!("[bench] globex: {SMALL} customers");
    let mut committed = Vec::with_capacity(SMALL);
    for n in 0..SMALL {
        let email = format!("customer-{n}@globex.example");
        stack.insert_globex_customer(&email).await?;
        committed.push((email, Utc::now()));
    }
    wait_until(DRAIN_LIMIT, || async {
        Ok((stack.sent_to_tenant("globex").await? == SMALL).then_some(()))
    })
    .await?;
    let flood_sent_then = stack.sent_to_tenant("acme").await?;

    let accepted: Vec<Received> = stack.provider.store().list(None, Some(true));
    let mut to_queue = Vec::new();
    let mut to_send = Vec::new();
    let mut total = Vec::new();
    for (email, commit) in &committed {
        let taken = accepted
            .iter()
            .find(|received| received.to.iter().any(|to| to == email))
            .with_context(|| format!("{email} was not accepted"))?;
        let queued: DateTime<Utc> = stack
            .notify
            .query_one(
                "SELECT created_at FROM message WHERE recipient = $1",
                &[email.as_str().into()],
            )
            .await?
            .time(0);
        to_queue.push(millis(queued - *commit));
        to_send.push(millis(taken.answered_at - queued));
        total.push(millis(taken.answered_at - *commit));
    }

    eprintln!("[bench] waiting for acme's flood to drain");
    stack
        .wait_for_status("sent", options.flood + SMALL as i64, DRAIN_LIMIT)
        .await?;
    let drained = flood_committed.elapsed();
    ensure!(
        stack.provider.store().count(None, Some(true)) == usize::try_from(options.flood)? + SMALL,
        "some message was accepted more than once"
    );

    println!(
        "| tenant isolation: acme floods {} welcome emails, provider at {} ms, local defaults | p50 | max |",
        options.flood,
        options.provider_latency.as_millis()
    );
    println!("|---|---|---|");
    for (what, figures) in [
        (
            "globex's 10: commit → queued (detector, renderer), ms",
            &mut to_queue,
        ),
        ("globex's 10: queued → accepted (sender), ms", &mut to_send),
        ("globex's 10: commit → accepted, ms", &mut total),
    ] {
        figures.sort_unstable();
        println!(
            "| {what} | {} | {} |",
            figures[figures.len() / 2],
            figures[figures.len() - 1]
        );
    }
    println!(
        "| acme's flood sent when globex's 10 were all accepted | {flood_sent_then} of {} | |",
        options.flood
    );
    println!(
        "| acme's flood: first commit → all sent | {:.1} s ({:.0} /s) | |",
        drained.as_secs_f64(),
        options.flood as f64 / drained.as_secs_f64()
    );
    Ok(())
}

fn millis(span: chrono::TimeDelta) -> i64 {
    span.num_milliseconds()
}
