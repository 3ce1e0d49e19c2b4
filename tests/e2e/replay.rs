//! An event delivered twice is one queue row and one send.

use std::time::Duration;

use chrono::Utc;
use herald_core::event::ChangeEvent;
use herald_core::model::Channel;
use herald_tests::{Service, Stack, wait_until};

use crate::{Contact, SOON, insert_contact, schedule_id};

#[tokio::test]
async fn an_event_delivered_twice_is_queued_and_sent_once() -> anyhow::Result<()> {
    let mut stack = Stack::new("event_twice").await?;
    stack.load_example_schedules().await?;
    let contact_id = insert_contact(&stack, &Contact::default()).await?;
    // The detector reads change values in UTC; so does this test.
    stack.source.batch_execute("SET TimeZone = 'UTC'").await?;
    let created_at: String = stack
        .source
        .query_one(
            "SELECT created_at::text FROM crm.contact WHERE contact_id = $1",
            &[&contact_id],
        )
        .await?
        .get(0);
    let event = ChangeEvent {
        tenant: "acme".into(),
        schedule_id: schedule_id(&stack, "welcome-email").await?,
        channel: Channel::Email,
        source_key: contact_id.to_string(),
        change_version: created_at,
        detected_at: Utc::now(),
    };
    // No detector: the test is the producer, and it produces the same event twice.
    let (partition, first) = stack.produce(&event).await?;
    let (same_partition, second) = stack.produce(&event).await?;
    assert_eq!(
        partition, same_partition,
        "one row's events share a partition"
    );
    stack.start(Service::Renderer).await?;
    stack.start(Service::Sender).await?;

    stack.wait_for_accepted(1, SOON).await?;
    // Both events were consumed: the group's committed offset is past the second one.
    wait_until(SOON, || async {
        Ok(stack
            .committed_offset(partition)
            .await?
            .filter(|next| *next > second)
            .map(|_| ()))
    })
    .await?;
    assert!(second > first);
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(stack.accepted().len(), 1, "{:#?}", stack.accepted());
    let rows: i64 = stack
        .notify
        .query_one("SELECT count(*) FROM message", &[])
        .await?
        .get(0);
    assert_eq!(rows, 1);
    Ok(())
}
