//! `heraldctl queue` and `heraldctl lag`: how far behind the pipeline is, and where. The open
//! part of the queue by tenant, schedule and status with the oldest message's age; and the
//! renderers' consumer group per partition, as `kafka-consumer-groups --describe` shows it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_core::config::KafkaSettings;
use herald_core::kafka::{self, GroupLag, OffsetsReader};
use herald_core::model::QueueDepth;
use herald_core::store::NotifyDb;
use serde::Serialize;

use crate::output::{Report, age, or_dash, table};

/// How long the broker is given to answer.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize)]
pub struct QueueReport {
    /// Messages not yet at rest: `render_retry`, `queued`, `sending`, `in_doubt`.
    open: Vec<QueueDepth>,
}

pub async fn queue(notify: &dyn NotifyDb) -> anyhow::Result<QueueReport> {
    Ok(QueueReport {
        open: notify.queue_depth().await?,
    })
}

impl Report for QueueReport {
    fn text(&self) -> String {
        if self.open.is_empty() {
            return "the queue is empty: nothing waits to be rendered or sent\n".into();
        }
        let rows: Vec<Vec<String>> = self
            .open
            .iter()
            .map(|depth| {
                vec![
                    depth.tenant.clone(),
                    depth.schedule.clone(),
                    depth.status.clone(),
                    depth.messages.to_string(),
                    age(chrono::Duration::milliseconds(
                        (depth.oldest_seconds * 1000.0) as i64,
                    )),
                ]
            })
            .collect();
        table(
            &["TENANT", "SCHEDULE", "STATUS", "MESSAGES", "OLDEST"],
            &rows,
        )
    }

    /// Messages in doubt wait for a person.
    fn bad_news(&self) -> bool {
        self.open.iter().any(|depth| depth.status == "in_doubt")
    }
}

#[derive(Serialize)]
pub struct LagReport {
    topic: String,
    /// Events on the topic the group has not committed, over all partitions.
    total_lag: i64,
    #[serde(flatten)]
    group: GroupLag,
}

/// A client that asks the broker about the renderers' group (one per process: the status
/// page reuses it for every load).
pub fn offsets_reader(settings: &KafkaSettings) -> anyhow::Result<Arc<OffsetsReader>> {
    Ok(Arc::new(
        OffsetsReader::new(settings).context("creating a Kafka client")?,
    ))
}

pub async fn lag(reader: &Arc<OffsetsReader>, group: &str) -> anyhow::Result<LagReport> {
    let asked = group.to_owned();
    let group = kafka::ask(reader, move |reader| {
        reader.describe(&asked, BROKER_TIMEOUT)
    })
    .await
    .context("asking the broker for the group's offsets")?;
    Ok(LagReport {
        topic: reader.topic().to_owned(),
        total_lag: group.partitions.iter().map(|p| p.lag).sum(),
        group,
    })
}

impl Report for LagReport {
    fn text(&self) -> String {
        if self.group.partitions.is_empty() {
            return format!(
                "the broker knows no partitions of {}: the topic does not exist (yet)\n",
                self.topic
            );
        }
        let rows: Vec<Vec<String>> = self
            .group
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.group.clone(),
                    p.topic.clone(),
                    p.partition.to_string(),
                    or_dash(p.committed),
                    p.log_end.to_string(),
                    p.lag.to_string(),
                    or_dash(p.consumer_id.as_deref()),
                    or_dash(p.host.as_deref()),
                    or_dash(p.client_id.as_deref()),
                ]
            })
            .collect();
        let header = [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ];
        let mut text = table(&header, &rows);
        if let Some(why) = &self.group.members_unknown {
            text.push_str(&format!(
                "(consumers unknown: the broker did not describe the group: {why})\n"
            ));
        }
        text
    }

    /// Lag is the renderers' work in progress, not news by itself; a missing topic is.
    fn bad_news(&self) -> bool {
        self.group.partitions.is_empty()
    }
}
