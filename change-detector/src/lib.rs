//! The change detector: finds committed row changes on the source's read replica, for the
//! tables that active schedules watch, and emits one change event per changed row to Kafka.
//! Its sweep (and `heraldctl audit`, through [`audit`]) finds changes that never became
//! messages.

pub mod audit;
pub mod detector;
pub mod emit;
pub mod metrics;
pub mod schedules;
pub mod sweep;
