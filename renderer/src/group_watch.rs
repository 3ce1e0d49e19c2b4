//! Notices a renderer that owns no partitions while its group has lag nobody works off, and
//! makes it rejoin the group.
//!
//! Why: the broker can leave a group stable with partitions that no member owns, and then
//! nothing ever rebalances. tansu 0.6.0, the broker `scripts/broker.sh` installs, does so
//! when a renderer is SIGKILLed while it leads the group (or once elected leader at
//! JoinGroup, before its SyncGroup) and its successor starts inside the dead leader's
//! session timeout:
//!
//! 1. The successor joins as the dead leader's follower; tansu holds a follower's JoinGroup
//!    3 s before it answers.
//! 2. If the dead leader's session runs out meanwhile, the successor's SyncGroup first drops
//!    the leader for its missed heartbeats, and then, with no leader left to compare with,
//!    takes the follower's SyncGroup, which carries no assignments, as the leader's
//!    (`Inner<Forming>::sync` in `tansu-broker/src/coordinator/group/administrator.rs`
//!    checks the sender only when a leader is set). The group is formed with an empty
//!    assignment map: the successor is handed no partitions.
//! 3. Its heartbeats then succeed at that generation, so no rebalance ever comes.
//!
//! Reproduce: with a renderer running, `kill -9` it and start it again 3 s later (session
//! timeout 6 s): the new one logs `partitions assigned partitions=[]` and stays idle.
//! `tests/e2e/crash.rs` (`a_renderer_killed_around_rebalances_owns_every_partition_again`)
//! does so in a crash loop. The broker's view at that point (its `consumer_group_detail`
//! row): state `Formed`, the live renderer as leader and only member, `assignments: {}`.
//!
//! The watch: every second the renderer looks at its assignment. While it owns nothing, it
//! compares the group's committed offsets every [`REJOIN_AFTER`] with those at the start of
//! that window; if some partition has events past its committed offset and that offset did
//! not move (lag nobody works off: a live owner's progress shows at its next auto-commit),
//! it warns and rejoins. So a renderer handed nothing rejoins 10 s after its start, and one
//! idle while lag stands still within 20 s. Rejoining is unsubscribe, which makes
//! librdkafka leave the group and forget its member id, then subscribe, which joins as a new
//! member and makes the broker form a new generation. It commits nothing that is not
//! durable: offsets are stored only after a durable outcome, and a renderer that owns no
//! partitions has no batch of its own in flight.
//!
//! A renderer idle because the group has more members than the topic has partitions rejoins
//! only while another member's partition stands still for as long, e.g. while that member
//! waits for an unavailable database: a rebalance every [`REJOIN_AFTER`], harmless.

use std::sync::Arc;
use std::time::Duration;

use herald_core::config::KafkaSettings;
use herald_core::kafka::{self, Offsets, OffsetsReader};
use herald_core::telemetry::error_chain;
use rdkafka::consumer::Consumer;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::consumer::EventConsumer;

/// How often the renderer looks at its assignment.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long it owns nothing, with lag standing still, before it rejoins. Longer than
/// librdkafka's auto-commit interval (5 s), so that a live owner's progress shows.
pub const REJOIN_AFTER: Duration = Duration::from_secs(10);
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions with events past the committed offset (`end` above `committed`) whose
/// committed offset is the same as in `before`.
pub fn standing_lag(end: &Offsets, committed: &Offsets, before: &Offsets) -> Vec<i32> {
    let offset = |offsets: &Offsets, partition: &i32| offsets.get(partition).copied().unwrap_or(-1);
    kafka::lag(end, committed)
        .into_iter()
        .filter(|(partition, lag)| {
            *lag > 0 && offset(before, partition) == offset(committed, partition)
        })
        .map(|(partition, _)| partition)
        .collect()
}

/// Since when the renderer has owned nothing, and where its group stood then.
struct Idle {
    since: Instant,
    committed: Offsets,
}

/// Watches `consumer`'s assignment until cancelled; see the module documentation.
pub async fn run(consumer: Arc<EventConsumer>, settings: KafkaSettings, cancel: CancellationToken) {
    let reader = match OffsetsReader::new(&settings) {
        Ok(reader) => Arc::new(reader),
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "cannot read the group's offsets: a renderer left without partitions will not notice");
            return;
        }
    };
    let mut idle: Option<Idle> = None;
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let now = tokio::select! {
            _ = cancel.cancelled() => break,
            now = ticks.tick() => now,
        };
        let owns = consumer
            .assignment()
            .map_or(true, |assignment| assignment.count() > 0);
        if owns {
            idle = None;
            continue;
        }
        if idle
            .as_ref()
            .is_some_and(|idle| now - idle.since < REJOIN_AFTER)
        {
            continue;
        }
        let (end, committed) = match kafka::ask(&reader, |r| r.end_and_committed(KAFKA_TIMEOUT))
            .await
        {
            Ok(offsets) => offsets,
            Err(error) => {
                tracing::debug!(error = %error_chain(&error), "could not read the group's offsets");
                continue;
            }
        };
        let (standing, idle_for) = match idle.take() {
            Some(idle) => (
                standing_lag(&end, &committed, &idle.committed),
                now - idle.since,
            ),
            None => (Vec::new(), Duration::ZERO),
        };
        // Partitions may have come while the offsets were read.
        let still_idle = consumer
            .assignment()
            .is_ok_and(|assignment| assignment.count() == 0);
        if standing.is_empty() || !still_idle {
            idle = Some(Idle {
                since: now,
                committed,
            });
            continue;
        }
        tracing::warn!(
            partitions = ?standing,
            behind = kafka::events_behind(&end, &committed),
            ?idle_for,
            "owns no partitions while the group has lag; rejoining"
        );
        consumer.unsubscribe();
        if let Err(error) = consumer.subscribe(&[&settings.topic]) {
            tracing::error!(error = %error_chain(&error), "could not subscribe again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lag_whose_committed_offset_stood_still_counts() {
        let end: Offsets = [(0, 10), (1, 5), (2, 7), (3, 0)].into();
        let before: Offsets = [(0, 4), (1, -1), (2, 7), (3, -1)].into();
        // 0 stood still behind its end; 1 never committed anything and has events; 2 is done;
        // 3 is empty.
        let committed = before.clone();
        assert_eq!(standing_lag(&end, &committed, &before), vec![0, 1]);
        // A live owner committed on 0 and 1 meanwhile.
        let moved: Offsets = [(0, 6), (1, 2), (2, 7), (3, -1)].into();
        assert!(standing_lag(&end, &moved, &before).is_empty());
    }
}
