//! What ops see of a running service, on its `[metrics]` listen address (off when empty):
//! `/metrics` (Prometheus text: counters, gauges and histograms with the `herald_` prefix and
//! low-cardinality labels only: tenant and schedule, never a recipient or a message), and
//! `/healthz` (the process answers) and `/readyz` (its databases and the broker answer), for
//! load balancers and orchestrators.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::kafka::{self, OffsetsReader};
use crate::listener;
use crate::store::{NotifyDb, SourceDb};
use crate::telemetry::error_chain;

/// How long `/readyz` waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// One dependency `/readyz` asks: its name, and a check that fails with the reason.
pub struct Dependency {
    pub name: &'static str,
    pub check: Box<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl Dependency {
    pub fn new<F>(name: &'static str, check: impl Fn() -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        Dependency {
            name,
            check: Box::new(move || Box::pin(check())),
        }
    }
}

/// A gauge of seconds (ages, durations).
pub type Seconds = Gauge<f64, AtomicU64>;

/// A histogram of durations in seconds, its buckets from 1 ms to 30 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// The notification database, for `/readyz`.
pub fn notify_db(db: Arc<dyn NotifyDb>) -> Dependency {
    Dependency::new("notification database", move || {
        let db = db.clone();
        async move { db.ping().await.map_err(|error| error_chain(&error)) }
    })
}

/// The source replica, for `/readyz`.
pub fn source_db(db: Arc<dyn SourceDb>) -> Dependency {
    Dependency::new("source replica", move || {
        let db = db.clone();
        async move { db.ping().await.map_err(|error| error_chain(&error)) }
    })
}

/// The broker, for `/readyz`.
pub fn broker(reader: Arc<OffsetsReader>) -> Dependency {
    Dependency::new("broker", move || {
        let reader = reader.clone();
        async move {
            kafka::ask(&reader, |reader| reader.ping(READY_TIMEOUT))
                .await
                .map_err(|error| error_chain(&error))
        }
    })
}

struct Endpoint {
    registry: Registry,
    dependencies: Vec<Dependency>,
}

/// Binds `listen` (a taken port is an error here, at startup), then serves `/metrics`,
/// `/healthz` and `/readyz` in a task of its own until `cancel` fires.
pub async fn serve(
    listen: SocketAddr,
    registry: Registry,
    dependencies: Vec<Dependency>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let endpoint = Arc::new(Endpoint {
        registry,
        dependencies,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(endpoint);
    listener::serve(listen, app, "/metrics, /healthz and /readyz", cancel).await?;
    Ok(())
}

async fn metrics(State(endpoint): State<Arc<Endpoint>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &endpoint.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// 200 and one line per dependency when all answer within [`READY_TIMEOUT`]; else 503,
/// naming the ones that did not and why.
async fn ready(State(endpoint): State<Arc<Endpoint>>) -> impl IntoResponse {
    let checks = endpoint.dependencies.iter().map(|dependency| async move {
        let answer = tokio::time::timeout(READY_TIMEOUT, (dependency.check)()).await;
        let verdict = match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no answer within {READY_TIMEOUT:?}")),
        };
        (dependency.name, verdict)
    });
    let verdicts = futures::future::join_all(checks).await;
    let ready = verdicts.iter().all(|(_, verdict)| verdict.is_ok());
    let body: String = verdicts
        .into_iter()
        .map(|(name, verdict)| match verdict {
            Ok(()) => format!("{name}: ok\n"),
            Err(reason) => format!("{name}: {reason}\n"),
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
