//! Each service SIGKILLed and restarted in the middle of a stream of changes: every change
//! reaches the provider exactly once. The one exception is a message caught inside its
//! provider call when the sender dies: it ends `in_doubt` and is not resent.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;
use fake_provider::{Fault, FaultKind};
use herald_tests::{Contact, Engine, SOON, Service, Stack, wait_until};

const CHANGES: usize = 40;

pub async fn detector_killed_mid_stream_misses_and_repeats_nothing(
    engine: Engine,
) -> anyhow::Result<()> {
    killed_mid_stream(engine, Service::Detector).await
}

pub async fn renderer_killed_mid_stream_misses_and_repeats_nothing(
    engine: Engine,
) -> anyhow::Result<()> {
    killed_mid_stream(engine, Service::Renderer).await
}

pub async fn sender_killed_mid_stream_misses_and_repeats_nothing(
    engine: Engine,
) -> anyhow::Result<()> {
    killed_mid_stream(engine, Service::Sender).await
}

async fn killed_mid_stream(engine: Engine, victim: Service) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, &format!("kill_{victim:?}")).await?;
    stack.load_example_schedules().await?;
    if victim == Service::Sender {
        // Slow provider answers, so the kill is likely to land inside a call.
        let mut slow = Fault::new(FaultKind::Slow { delay_ms: 300 });
        slow.times = CHANGES as u32;
        stack.provider.faults().push([slow]);
    }
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    let mut sending_at_kill = 0;
    for i in 0..CHANGES {
        let email = format!("person{i}@example.com");
        let contact = Contact {
            email: Some(&email),
            ..Contact::default()
        };
        stack.insert_contact(&contact).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if i == CHANGES / 2 {
            if victim == Service::Sender {
                // Kill it inside a provider call.
                wait_until(SOON, || async {
                    Ok((stack.messages_with_status("sending").await? > 0).then_some(()))
                })
                .await?;
            }
            stack.kill(victim).await?;
            if victim == Service::Sender {
                sending_at_kill = stack.messages_with_status("sending").await?;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            stack.start(victim).await?;
        }
    }

    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE status IN ('sent', 'in_doubt')",
            CHANGES as i64,
            SOON,
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let rows = stack
        .notify
        .query(
            "SELECT message_id, status FROM message ORDER BY message_id",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), CHANGES, "one message per change");
    let mut sends = sends_per_message(&stack);
    let mut in_doubt = 0;
    for row in &rows {
        let id = row.int(0).to_string();
        let status = row.text(1);
        let sent = sends.remove(&id).unwrap_or(0);
        match status.as_str() {
            "sent" => assert_eq!(sent, 1, "message {id} was sent {sent} times"),
            "in_doubt" => {
                in_doubt += 1;
                assert_eq!(victim, Service::Sender, "only a sender crash leaves doubt");
                assert!(sent <= 1, "in-doubt message {id} was resent");
            }
            other => panic!("message {id} ended {other}"),
        }
    }
    assert!(
        sends.is_empty(),
        "the provider got messages the queue does not know: {sends:?}"
    );
    // Exactly the calls the killed sender had in flight.
    assert_eq!(
        in_doubt, sending_at_kill,
        "in doubt, against messages sending when the sender died"
    );
    if victim == Service::Sender {
        assert!(in_doubt >= 1, "the sender was killed inside a call");
    }
    println!("{victim:?} killed: {CHANGES} changes, {in_doubt} in doubt");
    Ok(())
}

/// How many times the provider took each message (by herald's message id).
fn sends_per_message(stack: &Stack) -> HashMap<String, usize> {
    let mut sends: HashMap<String, usize> = HashMap::new();
    for received in stack.accepted() {
        let id = received
            .custom_args
            .get("herald_message_id")
            .cloned()
            .unwrap_or_default();
        *sends.entry(id).or_default() += 1;
    }
    sends
}

/// The name a sender logged at its start (the last one, after restarts).
fn sender_name(log: &str) -> Option<String> {
    let line = log
        .lines()
        .rev()
        .find(|line| line.contains("sender started"))?;
    let name = line.split("instance_id=").nth(1)?;
    Some(name.split_whitespace().next()?.to_owned())
}

pub async fn unnamed_senders_never_settle_each_others_calls(engine: Engine) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "two_senders").await?;
    stack.load_welcome_schedule().await?;
    let mut slow = Fault::new(FaultKind::Slow { delay_ms: 300 });
    slow.times = 10 * CHANGES as u32;
    stack.provider.faults().push([slow]);
    // No name set: each sender is named after its host and process.
    stack.set(Service::Sender, "HERALD__SENDER__INSTANCE_ID", "");
    stack.start(Service::Detector).await?;
    stack.start(Service::Renderer).await?;
    stack.start(Service::Sender).await?;
    stack.start_instance(Service::Sender, 2).await?;
    stack.wait_until_watching(1).await?;

    let mut inserted = 0;
    let mut killed_name = None;
    for i in 0..CHANGES {
        stack
            .insert_contact_to(&format!("person{i}@example.com"))
            .await?;
        inserted += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if i == CHANGES / 2 {
            let second = sender_name(&stack.instance_log(Service::Sender, 2))
                .context("the second sender logs its name")?;
            // Kill it inside a provider call (changes keep coming until it is in one), and
            // start it again.
            let deadline = tokio::time::Instant::now() + SOON;
            loop {
                let sending = stack
                    .notify
                    .count(
                        "SELECT count(*) FROM message WHERE status = 'sending' AND lease_owner = $1",
                        &[second.as_str().into()],
                    )
                    .await?;
                if sending > 0 {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "the second sender was never inside a call"
                );
                stack
                    .insert_contact_to(&format!("more{inserted}@example.com"))
                    .await?;
                inserted += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stack.kill_instance(Service::Sender, 2).await?;
            stack.start_instance(Service::Sender, 2).await?;
            killed_name = Some(second);
        }
    }
    let killed = killed_name.context("the second sender was killed")?;
    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE status IN ('sent', 'in_doubt')",
            inserted,
            SOON,
        )
        .await?;
    let first =
        sender_name(&stack.log(Service::Sender)).context("the first sender logs its name")?;
    let restarted = sender_name(&stack.instance_log(Service::Sender, 2))
        .context("the restarted sender logs its name")?;
    assert_ne!(first, killed, "two live senders, two names");
    assert_ne!(restarted, killed, "a new process, a new name");

    // Only the killed sender's own calls are in doubt; the other's all went through.
    let in_doubt = stack
        .notify
        .query(
            "SELECT m.message_id, a.sender FROM message m
               JOIN delivery_attempt a
                 ON a.message_id = m.message_id AND a.attempt = m.send_attempts
              WHERE m.status = 'in_doubt'",
            &[],
        )
        .await?;
    assert!(!in_doubt.is_empty(), "the sender was killed inside a call");
    for row in &in_doubt {
        assert_eq!(
            row.text(1),
            killed,
            "message {} of another sender",
            row.int(0)
        );
    }
    let sends = sends_per_message(&stack);
    let repeated: Vec<_> = sends.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent twice: {repeated:?}");
    Ok(())
}

/// The partitions the renderer's latest assignment gave it, from its log; `None` if it has
/// logged none (or its latest change was a revocation).
fn owned_partitions(log: &str) -> Option<BTreeSet<i32>> {
    let line = log
        .lines()
        .rev()
        .find(|line| line.contains("partitions assigned") || line.contains("partitions revoked"))?;
    if line.contains("partitions revoked") {
        return None;
    }
    // partitions=[("topic", 2), ("topic", 0)]
    let list = line.split("partitions=[").nth(1)?;
    Some(
        list.split("\", ")
            .skip(1)
            .filter_map(|rest| rest.split(')').next()?.parse().ok())
            .collect(),
    )
}

/// A renderer SIGKILLed over and over around rebalances ends owning every partition: within
/// 30 s of its last start it owns them all, its group has no lag left and every change is
/// queued; then each is sent once. (The broker may leave the last one without partitions: it
/// must notice.)
pub async fn a_renderer_killed_around_rebalances_owns_every_partition_again(
    engine: Engine,
) -> anyhow::Result<()> {
    const EACH: usize = 60;
    let mut stack = Stack::new(engine, "rebalance_kills").await?;
    stack.load_welcome_schedule().await?;
    stack.start(Service::Detector).await?;
    stack.start(Service::Sender).await?;
    stack.wait_until_watching(1).await?;
    for i in 0..EACH {
        stack
            .insert_contact_to(&format!("before{i}@example.com"))
            .await?;
    }

    // A crash loop: most kills land inside a join round (the broker holds a follower's
    // JoinGroup for seconds), between JoinGroup and SyncGroup. The last victim runs long
    // enough to lead the group, and its successor starts 3 s after it died: inside the dead
    // leader's session, so the successor first joins as its follower.
    for (runs_for, then_down_for) in [(1.5, 0.0), (0.5, 0.0), (4.0, 0.0), (2.5, 0.0), (8.0, 3.0)] {
        stack.start(Service::Renderer).await?;
        tokio::time::sleep(Duration::from_secs_f64(runs_for)).await;
        stack.kill(Service::Renderer).await?;
        tokio::time::sleep(Duration::from_secs_f64(then_down_for)).await;
    }
    let earlier_log = stack.log(Service::Renderer).len();
    let started = tokio::time::Instant::now();
    stack.start(Service::Renderer).await?;
    for i in 0..EACH {
        stack
            .insert_contact_to(&format!("after{i}@example.com"))
            .await?;
    }

    // Within 30 s of the last start the live renderer owns every partition, the group has no
    // lag left on any, and every change is queued.
    let bound = Duration::from_secs(30);
    let renderer_log = || stack.log(Service::Renderer).split_off(earlier_log);
    let settled = wait_until(bound.saturating_sub(started.elapsed()), || async {
        let offsets = stack.group_offsets().await?;
        let every: BTreeSet<i32> = offsets.end.keys().copied().collect();
        let owns_every = owned_partitions(&renderer_log()) == Some(every);
        let behind = offsets.lag().values().sum::<i64>();
        let queued = stack
            .notify
            .count("SELECT count(*) FROM message", &[])
            .await?;
        Ok((owns_every && behind == 0 && queued == 2 * EACH as i64).then_some(()))
    })
    .await;
    if settled.is_err() {
        anyhow::bail!(
            "not settled within {bound:?} of the last start: lag {:?}, the renderer owns {:?}\n{}",
            stack.group_offsets().await?.lag(),
            owned_partitions(&renderer_log()),
            stack.diagnostics().await
        );
    }
    if renderer_log().contains("owns no partitions while the group has lag; rejoining") {
        println!("the renderer was left without partitions and rejoined");
    }

    stack.wait_for_status("sent", 2 * EACH as i64, SOON).await?;
    let sends = sends_per_message(&stack);
    assert_eq!(sends.len(), 2 * EACH, "every change reached the provider");
    let repeated: Vec<_> = sends.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent twice: {repeated:?}");
    Ok(())
}
