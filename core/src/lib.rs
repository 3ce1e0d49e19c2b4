//! Shared parts of the herald pipeline: settings, telemetry, shutdown, change events, the
//! pipeline's model types, what operators read and do, Kafka client builders, the metrics
//! endpoint and the storage seam with its engines.

pub mod backoff;
pub mod config;
pub mod event;
pub mod kafka;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod shutdown;
pub mod store;
pub mod telemetry;
