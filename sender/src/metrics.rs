//! The sender's metrics: provider calls by outcome and their latency, calls in flight, paused
//! providers, and the queue's open part (read every `metrics.refresh`, so scrapes never reach
//! the database).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::metrics::{Seconds, latency_histogram};
use herald_core::model::{AttemptOutcome, Channel};
use herald_core::shutdown;
use herald_core::store::NotifyDb;
use herald_core::telemetry::error_chain;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    channel: &'static str,
    provider: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    channel: &'static str,
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    schedule: String,
    status: String,
}

pub struct SenderMetrics {
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    suppressed: Family<ProviderLabels, Counter>,
    settled: Family<ProviderLabels, Counter>,
    webhook_events: Family<WebhookLabels, Counter>,
    webhook_refused: Family<WebhookLabels, Counter>,
    in_flight: Gauge,
    paused: Family<AccountLabels, Gauge>,
    queue_messages: Family<QueueLabels, Gauge>,
    queue_oldest: Family<QueueLabels, Seconds>,
    /// The queue series shown now, and when the queue was last read.
    queue_shown: Mutex<HashSet<QueueLabels>>,
    queue_read_at: Gauge,
}

impl SenderMetrics {
    pub fn new(registry: &mut Registry) -> Arc<Self> {
        let metrics = SenderMetrics {
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency_histogram),
            suppressed: Family::default(),
            settled: Family::default(),
            webhook_events: Family::default(),
            webhook_refused: Family::default(),
            in_flight: Gauge::default(),
            paused: Family::default(),
            queue_messages: Family::default(),
            queue_oldest: Family::default(),
            queue_shown: Mutex::default(),
            queue_read_at: Gauge::default(),
        };
        registry.register(
            "herald_sender_calls",
            "Provider calls, by channel, provider and outcome (sent, retry, failed, in_doubt, \
             paused: credentials refused)",
            metrics.calls.clone(),
        );
        registry.register_with_unit(
            "herald_sender_call_duration",
            "How long provider calls took, until their answer or their end",
            Unit::Seconds,
            metrics.call_seconds.clone(),
        );
        registry.register(
            "herald_sender_suppressed",
            "Messages not sent because the recipient is on the suppression list",
            metrics.suppressed.clone(),
        );
        registry.register(
            "herald_sender_settled",
            "In-doubt messages found at their provider and so marked sent",
            metrics.settled.clone(),
        );
        registry.register(
            "herald_webhook_events",
            "Provider events recorded (each once), by provider",
            metrics.webhook_events.clone(),
        );
        registry.register(
            "herald_webhook_refused",
            "Webhook posts refused: a missing, forged or stale signature, or not events",
            metrics.webhook_refused.clone(),
        );
        registry.register(
            "herald_sender_in_flight",
            "Provider calls in flight now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "herald_sender_provider_paused",
            "1 while a provider account (email, sms: the defaults) is paused because its \
             credentials are refused or not set, or its rate limit has not reset, else 0",
            metrics.paused.clone(),
        );
        registry.register(
            "herald_queue_messages",
            "Open messages in the queue, by tenant, schedule and status (render_retry, queued, \
             sending, in_doubt)",
            metrics.queue_messages.clone(),
        );
        registry.register_with_unit(
            "herald_queue_oldest_age",
            "Age of the oldest open message, by tenant, schedule and status",
            Unit::Seconds,
            metrics.queue_oldest.clone(),
        );
        registry.register(
            "herald_queue_read_timestamp_seconds",
            "When the queue figures were last read (Unix time): stale if it stops moving",
            metrics.queue_read_at.clone(),
        );
        Arc::new(metrics)
    }

    /// One provider call that took `took` and ended as `outcome`.
    pub fn call(&self, channel: Channel, outcome: &AttemptOutcome, took: Duration) {
        let provider = ProviderLabels::of(channel);
        self.call_seconds
            .get_or_create(&provider)
            .observe(took.as_secs_f64());
        let outcome = match outcome {
            AttemptOutcome::Sent { .. } => "sent",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::InDoubt { .. } => "in_doubt",
            AttemptOutcome::Paused { .. } => "paused",
        };
        self.calls
            .get_or_create(&CallLabels {
                channel: provider.channel,
                provider: provider.provider,
                outcome,
            })
            .inc();
    }

    pub fn suppressed(&self, channel: Channel) {
        self.suppressed
            .get_or_create(&ProviderLabels::of(channel))
            .inc();
    }

    pub fn settled(&self, channel: Channel) {
        self.settled
            .get_or_create(&ProviderLabels::of(channel))
            .inc();
    }

    pub fn webhook_events(&self, provider: &'static str, recorded: u64) {
        self.webhook_events
            .get_or_create(&WebhookLabels { provider })
            .inc_by(recorded);
    }

    pub fn webhook_refused(&self, provider: &'static str) {
        self.webhook_refused
            .get_or_create(&WebhookLabels { provider })
            .inc();
    }

    pub fn in_flight(&self, calls: usize) {
        self.in_flight.set(i64::try_from(calls).unwrap_or(i64::MAX));
    }

    /// Provider account `account` is paused (or not).
    pub fn paused(&self, account: &str, paused: bool) {
        self.paused
            .get_or_create(&AccountLabels {
                account: account.to_owned(),
            })
            .set(i64::from(paused));
    }

    /// Reads the queue's open part every `every` until `cancel` fires.
    pub async fn watch_queue(
        &self,
        store: Arc<dyn NotifyDb>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        shutdown::every(every, &cancel, || self.read_queue(store.as_ref())).await;
    }

    async fn read_queue(&self, store: &dyn NotifyDb) {
        match store.queue_depth().await {
            Ok(depths) => {
                let mut shown = self.queue_shown.lock().expect("lock");
                let mut now_shown = HashSet::with_capacity(depths.len());
                for depth in depths {
                    let labels = QueueLabels {
                        tenant: depth.tenant,
                        schedule: depth.schedule,
                        status: depth.status,
                    };
                    self.queue_messages
                        .get_or_create(&labels)
                        .set(depth.messages);
                    self.queue_oldest
                        .get_or_create(&labels)
                        .set(depth.oldest_seconds);
                    now_shown.insert(labels);
                }
                // Series with nothing open any more go away; the others never blink.
                for gone in shown.difference(&now_shown) {
                    self.queue_messages.remove(gone);
                    self.queue_oldest.remove(gone);
                }
                *shown = now_shown;
                self.queue_read_at.set(chrono::Utc::now().timestamp());
            }
            Err(error) => tracing::warn!(
                error = %error_chain(&error),
                "could not read the queue's depth for /metrics"
            ),
        }
    }
}

impl ProviderLabels {
    fn of(channel: Channel) -> Self {
        ProviderLabels {
            channel: channel.as_str(),
            provider: match channel {
                Channel::Email => "sendgrid",
                Channel::Sms => "twilio",
            },
        }
    }
}
