//! The renderer: consumes change events, asks the source replica's merge function for the
//! recipient and merge fields, renders the schedule's template, and writes the finished
//! message (or the reason there is none) into the queue under its unique identity.

pub mod consumer;
pub mod group_watch;
pub mod metrics;
pub mod render;
pub mod retries;
pub mod templates;
