//! Kafka client builders. Our settings come first, then the operator's `kafka.librdkafka`
//! pass-through map, so any librdkafka option can be set or overridden.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::telemetry::error_chain;

fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", settings.brokers.join(","));
    config
}

fn with_overrides(mut config: ClientConfig, settings: &KafkaSettings) -> ClientConfig {
    for (key, value) in &settings.librdkafka {
        config.set(key, value);
    }
    config
}

/// The detector's producer: idempotent, acknowledged by all in-sync replicas.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5");
    with_overrides(config, settings)
}

/// The renderers' consumer: offsets are stored by hand after a durable outcome and committed
/// in the background (`enable.auto.offset.store=false`, `enable.auto.commit=true`).
pub fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", &settings.consumer_group)
        .set(
            "session.timeout.ms",
            settings.session_timeout.as_millis().to_string(),
        )
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    with_overrides(config, settings)
}

/// Creates the change topic unless it exists.
pub async fn ensure_topic(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        with_overrides(base_config(settings), settings).create()?;
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(settings.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(
                    |_| tracing::error!(topic = %name, %code, "could not create the change topic"),
                );
            }
        }
    }
    Ok(())
}

/// Creates the change topic unless it exists, waiting for the broker as long as it takes;
/// false if cancelled first. Both the detector and the renderers do this at start, so a
/// renderer never subscribes to a topic that does not exist yet.
pub async fn wait_for_topic(settings: &KafkaSettings, cancel: &CancellationToken) -> bool {
    loop {
        let created = tokio::select! {
            () = cancel.cancelled() => return false,
            created = ensure_topic(settings) => created,
        };
        let Err(error) = created else { return true };
        tracing::warn!(error = %error_chain(&error), topic = %settings.topic, "waiting for Kafka");
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Offsets per partition of the change topic.
pub type Offsets = BTreeMap<i32, i64>;

/// Asks the brokers where the change topic ends and where the renderers' consumer group
/// stands, with one client and without joining the group. Its calls block.
pub struct OffsetsReader {
    client: BaseConsumer,
    topic: String,
}

impl OffsetsReader {
    pub fn new(settings: &KafkaSettings) -> KafkaResult<Self> {
        let mut config = base_config(settings);
        config
            .set("group.id", &settings.consumer_group)
            .set("enable.auto.commit", "false");
        Ok(OffsetsReader {
            client: with_overrides(config, settings).create()?,
            topic: settings.topic.clone(),
        })
    }

    /// Per partition, the offset the topic's next event will get: every event Kafka has
    /// acknowledged lies below it.
    pub fn end_offsets(&self, timeout: Duration) -> KafkaResult<Offsets> {
        let metadata = self.client.fetch_metadata(Some(&self.topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions().iter().map(|p| p.id()))
            .collect();
        partitions
            .into_iter()
            .map(|partition| {
                let (_, high) = self
                    .client
                    .fetch_watermarks(&self.topic, partition, timeout)?;
                Ok((partition, high))
            })
            .collect()
    }

    /// Answers if a broker does, with the change topic's metadata (for `/readyz`).
    pub fn ping(&self, timeout: Duration) -> KafkaResult<()> {
        self.client
            .fetch_metadata(Some(&self.topic), timeout)
            .map(drop)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Where the topic ends and where the renderers' group resumes, per partition.
    pub fn end_and_committed(&self, timeout: Duration) -> KafkaResult<(Offsets, Offsets)> {
        let end = self.end_offsets(timeout)?;
        let committed = self.committed_offsets(end.keys().copied(), timeout)?;
        Ok((end, committed))
    }

    /// Where the renderers' group resumes each of `partitions` from (`-1`: nothing
    /// committed): every event below it has a durable outcome in the queue.
    pub fn committed_offsets(
        &self,
        partitions: impl IntoIterator<Item = i32>,
        timeout: Duration,
    ) -> KafkaResult<Offsets> {
        let mut wanted = TopicPartitionList::new();
        for partition in partitions {
            wanted.add_partition(&self.topic, partition);
        }
        let committed = self.client.committed_offsets(wanted, timeout)?;
        Ok(committed
            .elements()
            .iter()
            .map(|element| {
                let offset = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => -1,
                };
                (element.partition(), offset)
            })
            .collect())
    }
}

/// One partition of the change topic as `kafka-consumer-groups --describe` shows it: where
/// the renderers' group stands, where the topic ends, and which member owns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// `None`: the group has committed nothing on it.
    pub committed: Option<i64>,
    pub log_end: i64,
    pub lag: i64,
    /// The member assigned the partition, if any (and if the broker describes the group).
    pub consumer_id: Option<String>,
    pub client_id: Option<String>,
    pub host: Option<String>,
}

/// A member of the renderers' group and the change topic's partitions assigned to it.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    id: String,
    client_id: String,
    host: String,
    partitions: Vec<i32>,
}

/// The renderers' group on the change topic, per partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupLag {
    pub partitions: Vec<PartitionLag>,
    /// Why the partitions name no members, if the broker would not describe the group.
    pub members_unknown: Option<String>,
}

impl OffsetsReader {
    /// The group's lag per partition of the change topic, with each partition's member when
    /// the broker describes the group.
    pub fn describe(&self, group: &str, timeout: Duration) -> KafkaResult<GroupLag> {
        let (end, committed) = self.end_and_committed(timeout)?;
        let (members, members_unknown) = match self.members(group, timeout) {
            Ok(members) => (members, None),
            Err(error) => (Vec::new(), Some(error_chain(&error))),
        };
        let partitions = end
            .iter()
            .map(|(&partition, &log_end)| {
                let committed = committed.get(&partition).copied().filter(|&c| c >= 0);
                let owner = members.iter().find(|m| m.partitions.contains(&partition));
                PartitionLag {
                    group: group.to_owned(),
                    topic: self.topic.clone(),
                    partition,
                    committed,
                    log_end,
                    lag: (log_end - committed.unwrap_or(0)).max(0),
                    consumer_id: owner.map(|m| m.id.clone()),
                    client_id: owner.map(|m| m.client_id.clone()),
                    host: owner.map(|m| m.host.clone()),
                }
            })
            .collect();
        Ok(GroupLag {
            partitions,
            members_unknown,
        })
    }

    /// The group's members with their partitions of the change topic.
    fn members(&self, group: &str, timeout: Duration) -> KafkaResult<Vec<Member>> {
        let groups = self.client.fetch_group_list(Some(group), timeout)?;
        Ok(groups
            .groups()
            .iter()
            .filter(|info| info.name() == group)
            .flat_map(|info| info.members())
            .map(|member| Member {
                id: member.id().to_owned(),
                client_id: member.client_id().to_owned(),
                host: member.client_host().to_owned(),
                partitions: member
                    .assignment()
                    .map(|bytes| assigned_partitions(bytes, &self.topic))
                    .unwrap_or_default(),
            })
            .collect())
    }
}

/// The partitions of `topic` in a consumer-protocol assignment (any version: an int16
/// version, then an array of (topic string, int32 array of partitions), then user data);
/// none if the bytes are not one.
fn assigned_partitions(bytes: &[u8], topic: &str) -> Vec<i32> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
        *bytes = rest;
        Some(head)
    }
    fn int16(bytes: &mut &[u8]) -> Option<i16> {
        Some(i16::from_be_bytes(take(bytes, 2)?.try_into().ok()?))
    }
    fn int32(bytes: &mut &[u8]) -> Option<i32> {
        Some(i32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
    }
    let parse = |mut bytes: &[u8]| -> Option<Vec<i32>> {
        int16(&mut bytes)?;
        let mut partitions = Vec::new();
        for _ in 0..int32(&mut bytes)? {
            let length = usize::try_from(int16(&mut bytes)?).ok()?;
            let name = take(&mut bytes, length)?;
            for _ in 0..int32(&mut bytes)? {
                let partition = int32(&mut bytes)?;
                if name == topic.as_bytes() {
                    partitions.push(partition);
                }
            }
        }
        Some(partitions)
    };
    parse(bytes).unwrap_or_default()
}

/// Asks `reader` (a blocking client call) off the async threads.
pub async fn ask<T, F>(reader: &Arc<OffsetsReader>, question: F) -> KafkaResult<T>
where
    T: Send + 'static,
    F: FnOnce(&OffsetsReader) -> KafkaResult<T> + Send + 'static,
{
    let reader = reader.clone();
    tokio::task::spawn_blocking(move || question(&reader))
        .await
        .expect("a Kafka offsets query does not panic")
}

/// Per partition, the events the renderers' group has yet to process below `fence` (from
/// [`OffsetsReader::end_offsets`]).
pub fn lag(fence: &Offsets, committed: &Offsets) -> Offsets {
    fence
        .iter()
        .map(|(&partition, end)| {
            let done = committed.get(&partition).copied().unwrap_or(-1).max(0);
            (partition, (end - done).max(0))
        })
        .collect()
}

/// All the events the renderers' group has yet to process below `fence`.
pub fn events_behind(fence: &Offsets, committed: &Offsets) -> i64 {
    lag(fence, committed).values().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_names_its_partitions_of_the_topic() {
        // Version 1; two topics: "changes" [2, 0] and "other" [1]; 3 bytes of user data.
        let mut bytes = vec![0, 1, 0, 0, 0, 2];
        for (topic, partitions) in [("changes", &[2_i32, 0][..]), ("other", &[1][..])] {
            bytes.extend((topic.len() as i16).to_be_bytes());
            bytes.extend(topic.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for partition in partitions {
                bytes.extend(partition.to_be_bytes());
            }
        }
        bytes.extend([0, 0, 0, 3, 1, 2, 3]);
        assert_eq!(assigned_partitions(&bytes, "changes"), [2, 0]);
        assert_eq!(assigned_partitions(&bytes, "other"), [1]);
        assert!(assigned_partitions(&bytes, "absent").is_empty());
        assert!(
            assigned_partitions(&bytes[..9], "changes").is_empty(),
            "cut short"
        );
    }

    #[test]
    fn events_behind_counts_what_is_below_the_fence_and_not_committed() {
        let fence: Offsets = [(0, 10), (1, 5), (2, 0)].into();
        assert_eq!(events_behind(&fence, &Offsets::new()), 15);
        let committed: Offsets = [(0, 10), (1, -1), (2, -1)].into();
        assert_eq!(events_behind(&fence, &committed), 5);
        let past: Offsets = [(0, 12), (1, 7), (2, 3)].into();
        assert_eq!(events_behind(&fence, &past), 0);
    }
}
