//! The renderer's metrics: renderings by outcome, rejected events, how long merge calls and
//! whole batches take, and the consumer group's lag per partition (read from the broker
//! every `metrics.refresh`, never per scrape).

use std::sync::Arc;
use std::time::Duration;

use herald_core::kafka::{self, OffsetsReader};
use herald_core::metrics::latency_histogram;
use herald_core::model::MessageStatus;
use herald_core::shutdown;
use herald_core::telemetry::error_chain;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

/// How long the broker is given to answer the lag questions.
const LAG_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    tenant: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

pub struct RendererMetrics {
    renderings: Family<OutcomeLabels, Counter>,
    rejected: Counter,
    merge_seconds: Histogram,
    batch_seconds: Histogram,
    slow_merges: Family<TenantLabels, Counter>,
    lag: Family<PartitionLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

impl RendererMetrics {
    pub fn new(registry: &mut Registry) -> Arc<Self> {
        let metrics = RendererMetrics {
            renderings: Family::default(),
            rejected: Counter::default(),
            merge_seconds: latency_histogram(),
            batch_seconds: latency_histogram(),
            slow_merges: Family::default(),
            lag: Family::default(),
        };
        registry.register(
            "herald_renderer_renderings",
            "Changes rendered (first tries and retries), by tenant and outcome: queued, \
             skipped, render_retry, render_failed",
            metrics.renderings.clone(),
        );
        registry.register(
            "herald_renderer_rejected_events",
            "Events that could not become a message, kept in rejected_event",
            metrics.rejected.clone(),
        );
        registry.register_with_unit(
            "herald_renderer_merge_duration",
            "How long merge statements took on the replica (a batch of keys, or one key)",
            Unit::Seconds,
            metrics.merge_seconds.clone(),
        );
        registry.register_with_unit(
            "herald_renderer_render_duration",
            "How long rendering a batch of changes took: version checks, merge calls, templates",
            Unit::Seconds,
            metrics.batch_seconds.clone(),
        );
        registry.register(
            "herald_renderer_slow_merges",
            "Times a schedule's merge function turned slow (a call over renderer.slow_merge), \
             so that its changes went to the retry loop, by tenant",
            metrics.slow_merges.clone(),
        );
        registry.register(
            "herald_renderer_consumer_lag",
            "Events on the change topic the renderers' consumer group has not committed: \
             log-end offset - committed offset, per partition",
            metrics.lag.clone(),
        );
        Arc::new(metrics)
    }

    pub fn rendered(&self, tenant: &str, status: MessageStatus) {
        self.renderings
            .get_or_create(&OutcomeLabels {
                tenant: tenant.to_owned(),
                outcome: status.as_str(),
            })
            .inc();
    }

    pub fn slow_merge(&self, tenant: &str) {
        self.slow_merges
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .inc();
    }

    pub fn rejected(&self) {
        self.rejected.inc();
    }

    pub fn merge_took(&self, took: Duration) {
        self.merge_seconds.observe(took.as_secs_f64());
    }

    pub fn batch_took(&self, took: Duration) {
        self.batch_seconds.observe(took.as_secs_f64());
    }

    /// Reads the group's lag from the broker every `every` until `cancel` fires.
    pub async fn watch_lag(
        &self,
        reader: Arc<OffsetsReader>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        shutdown::every(every, &cancel, || self.read_lag(&reader)).await;
    }

    async fn read_lag(&self, reader: &Arc<OffsetsReader>) {
        match kafka::ask(reader, |reader| reader.end_and_committed(LAG_TIMEOUT)).await {
            Ok((end, committed)) => {
                for (partition, lag) in kafka::lag(&end, &committed) {
                    let labels = PartitionLabels {
                        topic: reader.topic().to_owned(),
                        partition,
                    };
                    self.lag.get_or_create(&labels).set(lag);
                }
            }
            Err(error) => tracing::warn!(
                error = %error_chain(&error),
                "could not read the consumer group's lag for /metrics"
            ),
        }
    }
}
