//! The change detector: finds committed row changes on the source's read replica, for the
//! tables that active schedules watch, and emits one change event per changed row to Kafka.

pub mod detector;
pub mod schedules;
