//! What ops see: each service's `/metrics`, `/healthz` and `/readyz`, checked against what
//! the database and the broker hold after a known workload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fake_provider::{Channel, Fault, FaultKind};
use herald_core::kafka::{self, OffsetsReader};
use herald_tests::{Engine, SOON, Service, Stack, free_address, wait_until};

/// A scrape: each series (name and labels, as exposed) with its value.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    async fn of(address: &str) -> anyhow::Result<Self> {
        let text = reqwest::get(format!("http://{address}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').context("a sample line")?;
                Ok((series.to_owned(), value.parse()?))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Scrape(series))
    }

    /// The sum of `name`'s series whose labels include all of `labels` (`key="value"`).
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (series_name, series_labels) =
                    series.split_once('{').unwrap_or((series.as_str(), ""));
                series_name == name && labels.iter().all(|label| series_labels.contains(label))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

pub async fn metrics_match_the_database_and_the_broker(engine: Engine) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "metrics").await?;
    stack.load_example_schedules().await?;
    let mut addresses = BTreeMap::new();
    for (service, key) in [
        (Service::Detector, "DETECTOR"),
        (Service::Renderer, "RENDERER"),
        (Service::Sender, "SENDER"),
    ] {
        let address = free_address()?;
        stack.set(service, &format!("HERALD__METRICS__{key}"), &address);
        stack.set(service, "HERALD__METRICS__REFRESH", "200ms");
        addresses.insert(key, address);
    }
    let (detector, renderer, sender) = (
        addresses["DETECTOR"].clone(),
        addresses["RENDERER"].clone(),
        addresses["SENDER"].clone(),
    );
    // The first email's call gets a gateway error: in doubt.
    stack.provider.faults().push([Fault {
        channel: Some(Channel::Email),
        ..Fault::new(FaultKind::ServerError { status: 502 })
    }]);
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    stack.insert_contact_to("first@example.com").await?;
    stack.wait_for_status("in_doubt", 1, SOON).await?;
    for n in 0..5 {
        stack
            .insert_contact_to(&format!("reader{n}@example.com"))
            .await?;
    }
    for _ in 0..2 {
        stack.insert_contact_to("not-an-email").await?;
    }
    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE status IN ('sent', 'failed', 'in_doubt')",
            8,
            SOON,
        )
        .await?;

    // What the sender made of its calls is what the attempts table says; the queue's open
    // part is the one message in doubt.
    let attempts = |outcome: &'static str| {
        let notify = &stack.notify;
        async move {
            notify
                .count(
                    "SELECT count(*) FROM delivery_attempt WHERE outcome = $1",
                    &[outcome.into()],
                )
                .await
        }
    };
    let (sent, failed, in_doubt) = (
        attempts("sent").await?,
        attempts("failed").await?,
        attempts("in_doubt").await?,
    );
    assert_eq!((sent, failed, in_doubt), (5, 2, 1));
    let scrape = wait_until(Duration::from_secs(10), || async {
        let scrape = Scrape::of(&sender).await?;
        let open = scrape.sum("herald_queue_messages", &[]);
        let in_doubt = scrape.sum(
            "herald_queue_messages",
            &[r#"status="in_doubt""#, r#"schedule="welcome-email""#],
        );
        Ok((open == 1.0 && in_doubt == 1.0).then_some(scrape))
    })
    .await?;
    let calls = |outcome: &str| {
        scrape.sum(
            "herald_sender_calls_total",
            &[&format!(r#"outcome="{outcome}""#), r#"provider="sendgrid""#],
        )
    };
    assert_eq!(
        (calls("sent"), calls("failed"), calls("in_doubt")),
        (sent as f64, failed as f64, in_doubt as f64)
    );
    assert_eq!(
        scrape.sum(
            "herald_sender_call_duration_seconds_count",
            &[r#"provider="sendgrid""#]
        ),
        8.0
    );
    assert_eq!(scrape.sum("herald_sender_in_flight", &[]), 0.0);

    // `heraldctl queue` shows the same open part; a message in doubt is bad news (exit 1).
    let (code, text) = stack.heraldctl(&["queue"]).await?;
    assert_eq!(code, 1, "{text}");
    let cells: Vec<&str> = text
        .lines()
        .find(|line| line.contains("in_doubt"))
        .with_context(|| format!("no in_doubt line in:\n{text}"))?
        .split_whitespace()
        .collect();
    assert_eq!(
        cells[..4],
        ["acme", "welcome-email", "in_doubt", "1"],
        "{text}"
    );
    let (code, document) = stack.heraldctl_json(&["queue"]).await?;
    assert_eq!(code, 1);
    let open = document["open"].as_array().context("open")?;
    assert_eq!(open.len(), 1, "{document:#}");
    assert_eq!(open[0]["messages"], 1);
    assert!(open[0]["oldest_seconds"].as_f64().context("oldest")? > 0.0);

    // Every event the detector emitted became one message, rendered and queued.
    let messages = stack
        .notify
        .count("SELECT count(*) FROM message", &[])
        .await?;
    let scrape = Scrape::of(&detector).await?;
    let emitted = scrape.sum(
        "herald_detector_events_emitted_total",
        &[r#"schedule="welcome-email""#],
    );
    assert_eq!(emitted, messages as f64);
    assert!(scrape.sum("herald_detector_rows_read_total", &[]) >= emitted);
    assert_eq!(scrape.sum("herald_detector_schedule_error", &[]), 0.0);
    assert!(scrape.sum("herald_detector_hold_back_age_seconds", &[]) > 0.0);
    let scrape = Scrape::of(&renderer).await?;
    assert_eq!(
        scrape.sum("herald_renderer_renderings_total", &[r#"outcome="queued""#]),
        messages as f64
    );
    assert_eq!(
        scrape.sum("herald_renderer_rejected_events_total", &[]),
        0.0
    );

    for address in [&detector, &renderer, &sender] {
        let health = reqwest::get(format!("http://{address}/healthz")).await?;
        assert_eq!(health.status(), 200);
        let ready = reqwest::get(format!("http://{address}/readyz")).await?;
        assert_eq!(ready.status(), 200);
        let ready = ready.text().await?;
        assert!(
            ready.contains("notification database: ok"),
            "{address}: {ready}"
        );
    }

    // A renderer that holds its batch open commits nothing: its lag is what the broker
    // says is not committed, 3 events.
    stack.stop(Service::Renderer).await?;
    stack.set(Service::Renderer, "HERALD__RENDERER__BATCH_SIZE", "1000");
    stack.set(Service::Renderer, "HERALD__RENDERER__BATCH_WAIT", "1h");
    stack.start(Service::Renderer).await?;
    for n in 0..3 {
        stack
            .insert_contact_to(&format!("later{n}@example.com"))
            .await?;
    }
    let lag = wait_until(SOON, || async {
        // Not listening yet is not an answer.
        let Ok(scrape) = Scrape::of(&renderer).await else {
            return Ok(None);
        };
        let lag = scrape.sum("herald_renderer_consumer_lag", &[]);
        Ok((lag == 3.0).then_some(lag))
    })
    .await?;
    let reader = Arc::new(OffsetsReader::new(&stack.kafka_settings())?);
    let (end, committed) = kafka::ask(&reader, |reader| {
        reader.end_and_committed(Duration::from_secs(5))
    })
    .await?;
    assert_eq!(kafka::events_behind(&end, &committed) as f64, lag);

    // `heraldctl lag` says the same, per partition, as kafka-consumer-groups would.
    let (code, document) = stack.heraldctl_json(&["lag"]).await?;
    assert_eq!(code, 0, "{document:#}");
    assert_eq!(document["total_lag"], 3);
    let partitions = document["partitions"].as_array().context("partitions")?;
    assert_eq!(partitions.len(), end.len());
    for partition in partitions {
        let number = partition["partition"].as_i64().context("partition")? as i32;
        assert_eq!(partition["log_end"], end[&number], "{partition:#}");
        let done = committed[&number];
        assert_eq!(
            partition["committed"],
            serde_json::json!((done >= 0).then_some(done)),
            "{partition:#}"
        );
        assert_eq!(
            partition["group"],
            stack.kafka_settings().consumer_group.as_str()
        );
    }
    let (_, text) = stack.heraldctl(&["lag"]).await?;
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ],
        "{text}"
    );
    let rows = text.lines().skip(1).filter(|line| !line.starts_with('('));
    assert_eq!(rows.count(), end.len(), "{text}");
    assert_eq!(
        stack
            .notify
            .count("SELECT count(*) FROM message", &[])
            .await?,
        messages
    );
    Ok(())
}

/// A renderer whose broker is unreachable is alive but not ready, and says why.
pub async fn readiness_names_the_dependency_that_does_not_answer(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "readiness").await?;
    let address = free_address()?;
    stack.set(Service::Renderer, "HERALD__METRICS__RENDERER", &address);
    // Nothing listens there.
    let nowhere = free_address()?;
    stack.set(Service::Renderer, "HERALD__KAFKA__BROKERS", &nowhere);
    stack.start(Service::Renderer).await?;

    let ready = wait_until(SOON, || async {
        let Ok(answer) = reqwest::get(format!("http://{address}/readyz")).await else {
            return Ok(None);
        };
        Ok(Some((answer.status(), answer.text().await?)))
    })
    .await?;
    assert_eq!(ready.0, 503, "{}", ready.1);
    let lines: Vec<&str> = ready.1.lines().collect();
    assert!(lines.contains(&"notification database: ok"), "{}", ready.1);
    assert!(lines.contains(&"source replica: ok"), "{}", ready.1);
    let broker = lines
        .iter()
        .find(|line| line.starts_with("broker: "))
        .context("a line for the broker")?;
    assert_ne!(*broker, "broker: ok");
    let health = reqwest::get(format!("http://{address}/healthz")).await?;
    assert_eq!(health.status(), 200);
    Ok(())
}
