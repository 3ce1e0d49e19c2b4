//! An event delivered twice is one queue row and one send.

use std::time::Duration;

use herald_tests::{Engine, SOON, Stack, wait_until};
use rdkafka::Message;

pub async fn an_event_delivered_twice_is_queued_and_sent_once(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "event_twice").await?;
    stack.load_example_schedules().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    stack.insert_contact(&Default::default()).await?;
    stack.wait_for_accepted(1, SOON).await?;

    // The detector's event, delivered once more.
    let event = stack.read_events(1).await?.remove(0);
    let again = stack.produce_again(&event).await?;
    assert!(again > event.offset());
    // The renderers consumed it: their committed offset is past it.
    wait_until(SOON, || async {
        Ok(stack
            .committed_offset(event.partition())
            .await?
            .filter(|next| *next > again)
            .map(|_| ()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(stack.accepted().len(), 1, "{:#?}", stack.accepted());
    assert_eq!(
        stack
            .notify
            .count("SELECT count(*) FROM message", &[])
            .await?,
        1
    );
    Ok(())
}
