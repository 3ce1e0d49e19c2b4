//! No missed change: every committed change becomes exactly one notification, whatever the
//! shape of its transaction and however far behind the replica is. The PostgreSQL scenarios
//! read the source from a real hot standby of the test server (`scripts/replica.sh`) while
//! they write to the primary.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_core::event::ChangeEvent;
use herald_tests::{
    Contact, Db, Engine, Replica, ReplicaControl, SOON, Service, Stack, wait_until,
};
use rdkafka::Message;

/// A stack with only the welcome email (one per contact insert) scheduled.
async fn welcome_stack(engine: Engine, test: &str) -> anyhow::Result<Stack> {
    let stack = Stack::new(engine, test).await?;
    stack.load_welcome_schedule().await?;
    Ok(stack)
}

/// Inserts a contact whose address is `email`, through `db`.
async fn add(stack: &Stack, db: &Db, email: &str) -> anyhow::Result<i64> {
    stack
        .insert_contact_on(
            db,
            &Contact {
                email: Some(email),
                ..Contact::default()
            },
        )
        .await
}

/// A busy source, as a new user's application makes one: a trickle of small transactions
/// every 0.5 s; one transaction that commits 8 s after its insert; and a 1,000-row import,
/// 100 rows at a time over ~6 s, in one transaction. Returns the addresses committed.
async fn busy_source(stack: &Stack) -> anyhow::Result<BTreeSet<String>> {
    let trickle = async {
        let db = stack.connect_source().await?;
        let mut emails = Vec::new();
        for i in 0..24 {
            let email = format!("trickle-{i}@example.com");
            add(stack, &db, &email).await?;
            emails.push(email);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::Ok(emails)
    };
    let late = async {
        let db = stack.connect_source().await?;
        db.batch("BEGIN TRANSACTION").await?;
        let email = "late-commit@example.com".to_owned();
        add(stack, &db, &email).await?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        db.batch("COMMIT").await?;
        anyhow::Ok(vec![email])
    };
    let import = async {
        let db = stack.connect_source().await?;
        db.batch("BEGIN TRANSACTION").await?;
        let mut emails = Vec::new();
        for batch in 0..10 {
            for i in 0..100 {
                let email = format!("import-{batch}-{i}@example.com");
                add(stack, &db, &email).await?;
                emails.push(email);
            }
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        db.batch("COMMIT").await?;
        anyhow::Ok(emails)
    };
    let (trickle, late, import) = tokio::try_join!(trickle, late, import)?;
    Ok(trickle.into_iter().chain(late).chain(import).collect())
}

/// Waits until every address in `expected` got its welcome email, then checks that each got
/// exactly one and nobody else got any.
async fn assert_each_notified_once(
    stack: &Stack,
    expected: &BTreeSet<String>,
) -> anyhow::Result<()> {
    stack
        .wait_for_accepted(expected.len(), Duration::from_secs(120))
        .await?;
    // Anything more would arrive within the next few polls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for received in stack.accepted() {
        *sent.entry(received.to.join(",")).or_default() += 1;
    }
    let doubled: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "notified more than once: {doubled:?}");
    let got: BTreeSet<String> = sent.into_keys().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let unexpected: Vec<_> = got.difference(expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{} missed: {missing:?}; unexpected: {unexpected:?}\n{}",
        missing.len(),
        stack.diagnostics().await
    );
    Ok(())
}

pub async fn late_commits_and_a_long_import_are_each_notified_once(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = welcome_stack(engine, "busy_source").await?;
    if engine == Engine::Postgres {
        stack
            .read_source_from(Replica::InSync, &Service::ALL)
            .await?;
    }
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let expected = busy_source(&stack).await?;
    assert_each_notified_once(&stack, &expected).await?;
    // Polls read rows again; with no restart, each change is emitted once all the same.
    let mut emitted: BTreeMap<String, usize> = BTreeMap::new();
    for event in stack.events_on_topic().await? {
        let event = ChangeEvent::from_json(event.payload().unwrap_or_default())?;
        *emitted
            .entry(format!("{}@{}", event.source_key, event.change_version))
            .or_default() += 1;
    }
    let repeated: Vec<_> = emitted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "emitted more than once: {repeated:?}");
    assert_eq!(emitted.len(), expected.len(), "one event per change");
    println!("{} changes, each emitted and notified once", expected.len());
    Ok(())
}

pub async fn a_standby_3s_behind_misses_and_doubles_nothing() -> anyhow::Result<()> {
    let replica = ReplicaControl::take().await?;
    let mut stack = welcome_stack(Engine::Postgres, "lagging_standby").await?;
    stack
        .read_source_from(Replica::Controlled, &Service::ALL)
        .await?;
    replica.lag(Duration::from_secs(3)).await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let expected = busy_source(&stack).await?;
    assert_each_notified_once(&stack, &expected).await?;
    replica.lag(Duration::ZERO).await
}

pub async fn replay_paused_for_20s_misses_and_doubles_nothing() -> anyhow::Result<()> {
    let replica = ReplicaControl::take().await?;
    let mut stack = welcome_stack(Engine::Postgres, "paused_standby").await?;
    stack
        .read_source_from(Replica::Controlled, &Service::ALL)
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;

    let writes = async {
        let db = stack.connect_source().await?;
        let mut emails = BTreeSet::new();
        for i in 0..60 {
            let email = format!("paused-{i}@example.com");
            add(&stack, &db, &email).await?;
            emails.insert(email);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        anyhow::Ok(emails)
    };
    let pause = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        replica.pause().await?;
        // What the paused standby shows is all that can be notified until it resumes.
        let visible = replica
            .count("SELECT count(*) FROM crm.contact", &stack)
            .await?;
        stack.wait_for_accepted(visible as usize, SOON).await?;
        tokio::time::sleep(Duration::from_secs(15)).await;
        let during = stack.accepted().len();
        replica.resume().await?;
        anyhow::Ok((visible, during))
    };
    let (expected, (visible, during)) = tokio::try_join!(writes, pause)?;
    assert_eq!(
        during, visible as usize,
        "while replay is paused, exactly what the standby shows is notified"
    );
    assert!(during < expected.len(), "the pause held changes back");
    assert_each_notified_once(&stack, &expected).await
}

pub async fn an_idle_source_does_not_hold_back_committed_rows() -> anyhow::Result<()> {
    let replica = ReplicaControl::take().await?;
    let mut stack = welcome_stack(Engine::Postgres, "idle_source").await?;
    // The detector reads a standby that will stand still, as it does when the primary is
    // idle: no commit replayed, the horizon and the next transaction id frozen.
    stack
        .read_source_from(Replica::Controlled, &[Service::Detector])
        .await?;
    stack
        .read_source_from(Replica::InSync, &[Service::Renderer])
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    stack.stop(Service::Detector).await?;
    let mut expected = BTreeSet::new();
    for i in 0..3 {
        let email = format!("before-the-quiet-{i}@example.com");
        stack.insert_contact_to(&email).await?;
        expected.insert(email);
    }
    replica.catch_up().await?;
    replica.pause().await?;
    stack.start(Service::Detector).await?;
    // Their change values lie above any line the frozen standby proves: they are emitted
    // because they are visible, not once the line passes them.
    stack
        .wait_for_accepted(expected.len(), SOON)
        .await
        .context("rows already committed are notified while nothing else commits")?;
    replica.resume().await?;
    assert_each_notified_once(&stack, &expected).await
}

/// The schedule's hold-back line, as the detector persisted it.
async fn hold_back(stack: &Stack) -> anyhow::Result<DateTime<Utc>> {
    Ok(stack
        .notify
        .query_one("SELECT hold_back FROM detector_watermark", &[])
        .await?
        .time(0))
}

pub async fn savepoints_rollbacks_freezing_and_a_killed_detector_inside_a_held_window()
-> anyhow::Result<()> {
    let mut stack = welcome_stack(Engine::Postgres, "held_window").await?;
    stack
        .source
        .batch("CREATE EXTENSION IF NOT EXISTS pg_visibility")
        .await?;
    stack
        .read_source_from(Replica::InSync, &Service::ALL)
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let mut expected = BTreeSet::new();
    let db = stack.connect_source().await?;

    // Savepoints: what was released or kept is notified; what was rolled back to is not.
    db.batch("BEGIN").await?;
    db.batch("SAVEPOINT a").await?;
    add(&stack, &db, "savepoint-released@example.com").await?;
    db.batch("RELEASE SAVEPOINT a").await?;
    db.batch("SAVEPOINT b").await?;
    add(&stack, &db, "savepoint-undone@example.com").await?;
    db.batch("ROLLBACK TO SAVEPOINT b").await?;
    db.batch("SAVEPOINT c").await?;
    add(&stack, &db, "savepoint-kept@example.com").await?;
    db.batch("COMMIT").await?;
    expected.insert("savepoint-released@example.com".to_owned());
    expected.insert("savepoint-kept@example.com".to_owned());

    // A rolled-back transaction is never notified.
    db.batch("BEGIN").await?;
    add(&stack, &db, "rolled-back@example.com").await?;
    db.batch("ROLLBACK").await?;

    // Freezing rows that are still between the line and the frontier rewrites their
    // visibility information, not the xmin the polls compare.
    for i in 0..5 {
        let email = format!("frozen-{i}@example.com");
        add(&stack, &db, &email).await?;
        expected.insert(email);
    }
    let xmins = "SELECT string_agg(xmin::text, ',' ORDER BY contact_id) FROM crm.contact";
    let before = db.query_one(xmins, &[]).await?.text(0);
    db.batch("VACUUM FREEZE crm.contact").await?;
    let unfrozen = db
        .count(
            "SELECT count(*) FROM pg_visibility_map('crm.contact') WHERE NOT all_frozen",
            &[],
        )
        .await?;
    assert_eq!(unfrozen, 0, "VACUUM FREEZE froze every page");
    assert_eq!(db.query_one(xmins, &[]).await?.text(0), before);

    // A writer that stays open holds the hold-back line below its row while the detector is
    // killed and more rows commit.
    let holder = stack.connect_source().await?;
    holder.batch("BEGIN").await?;
    let held_id = add(&stack, &holder, "held-open@example.com").await?;
    let held_at = holder
        .query_one(
            "SELECT created_at FROM crm.contact WHERE contact_id = $1",
            &[held_id.into()],
        )
        .await?
        .time(0);
    expected.insert("held-open@example.com".to_owned());
    for i in 0..8 {
        let email = format!("in-the-window-{i}@example.com");
        add(&stack, &db, &email).await?;
        expected.insert(email);
        if i == 4 {
            stack.kill(Service::Detector).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            stack.start(Service::Detector).await?;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stack
        .wait_for_accepted(expected.len() - 1, SOON)
        .await
        .context("everything committed is notified while the holder is open")?;
    let line = hold_back(&stack).await?;
    assert!(
        line <= held_at,
        "the open writer holds the line ({line}) at or below its row ({held_at})"
    );

    holder.batch("COMMIT").await?;
    assert_each_notified_once(&stack, &expected).await?;
    wait_until(SOON, || async {
        Ok((hold_back(&stack).await? > held_at).then_some(()))
    })
    .await
    .context("once the writer committed, the line moves past its row")?;
    Ok(())
}

pub async fn a_change_breaking_the_write_delay_is_swept_late_and_audited() -> anyhow::Result<()> {
    let mut stack = welcome_stack(Engine::Postgres, "late_change").await?;
    // A row from before the schedule started: never due, so never swept or audited.
    stack.insert_contact_to("already-there@example.com").await?;
    stack
        .read_source_from(Replica::InSync, &Service::ALL)
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let since = Utc::now() - chrono::Duration::minutes(1);

    // Stamps its change value, and writes it only once the detector's hold-back line has
    // passed the stamp: longer than max_write_delay (1 s here) between the two.
    let slow = stack.connect_source().await?;
    slow.batch("BEGIN").await?;
    let stamped = slow.query_one("SELECT now()", &[]).await?.time(0);
    wait_until(SOON, || async {
        Ok((hold_back(&stack).await? > stamped).then_some(()))
    })
    .await
    .context("the hold-back line passes the stamp")?;
    let late_key = slow
        .query_one(
            "INSERT INTO crm.contact (first_name, last_name, email, locale, created_at)
             VALUES ('Late', 'Writer', 'late-writer@example.com', 'en', now())
             RETURNING contact_id",
            &[],
        )
        .await?
        .int(0);
    slow.batch("COMMIT").await?;
    stack.insert_contact_to("on-time@example.com").await?;
    stack.wait_for_accepted(1, SOON).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let addresses: Vec<String> = stack.accepted().iter().map(|r| r.to.join(",")).collect();
    assert_eq!(
        addresses,
        ["on-time@example.com"],
        "the polls miss the change that broke the assumption"
    );

    // An audit finds it.
    let from = since.to_rfc3339();
    let audit = ["audit", "--schedule", "acme/welcome-email", "--from", &from];
    let (code, output) = stack.heraldctl(&audit).await?;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("1 missing"), "{output}");
    assert!(
        output.contains(&format!("missing  key {late_key} ")),
        "{output}"
    );

    // The sweep notifies it, late, and counts it.
    stack.stop(Service::Detector).await?;
    stack.set(Service::Detector, "HERALD__DETECTOR__SWEEP_INTERVAL", "1s");
    stack.start(Service::Detector).await?;
    stack.wait_for_accepted(2, SOON).await?;
    let late = stack
        .notify
        .query_one(
            "SELECT source_key, found_by FROM late_change WHERE schedule_id =
                 (SELECT schedule_id FROM schedule WHERE name = 'welcome-email')",
            &[],
        )
        .await?;
    assert_eq!(late.text(0), late_key.to_string());
    assert_eq!(late.text(1), "sweep");
    stack
        .wait_for_count(
            "SELECT count(*) FROM message_log WHERE recipient = 'late-writer@example.com'
                AND status = 'sent' AND late_found_by = 'sweep'",
            1,
            SOON,
        )
        .await
        .context("support sees the late change sent, and found late by the sweep")?;
    let log = stack.log(Service::Detector);
    assert!(
        log.contains("late change") && log.contains(&format!("source_key={late_key}")),
        "the detector logs the late change with its key:\n{log}"
    );

    // Afterwards the audit finds nothing missing, and the late change was sent once.
    let (code, output) = stack.heraldctl(&audit).await?;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("0 missing"), "{output}");
    let expected: BTreeSet<String> = ["on-time@example.com", "late-writer@example.com"]
        .map(String::from)
        .into();
    assert_each_notified_once(&stack, &expected).await
}

pub async fn a_renderer_on_a_replica_behind_the_event_waits_for_it() -> anyhow::Result<()> {
    let replica = ReplicaControl::take().await?;
    let mut stack = Stack::new(Engine::Postgres, "renderer_behind").await?;
    stack.load_example_schedules().await?;
    // The detector reads a standby in sync; the renderer one that falls behind.
    stack
        .read_source_from(Replica::InSync, &[Service::Detector])
        .await?;
    stack
        .read_source_from(Replica::Controlled, &[Service::Renderer])
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let ada = stack.insert_contact(&Contact::default()).await?;
    let appointment = stack.insert_appointment(ada, "Room 1").await?;
    stack.wait_for_accepted(2, SOON).await?;

    replica.pause().await?;
    stack
        .insert_contact(&Contact {
            first_name: "Grace",
            email: Some("grace@example.com"),
            ..Contact::default()
        })
        .await?;
    stack.move_appointment(appointment, "Room 2").await?;
    // A new row it cannot see yet, and an older version of a row it can.
    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE status = 'render_retry'
                AND last_error LIKE '%replica%behind%'",
            2,
            SOON,
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.accepted().len(),
        2,
        "nothing is sent from a stale replica"
    );

    replica.resume().await?;
    let accepted = stack.wait_for_accepted(4, SOON).await?;
    assert!(
        accepted
            .iter()
            .any(|r| r.to == ["grace@example.com"]
                && r.subject.as_deref() == Some("Welcome, Grace!")),
        "{accepted:#?}"
    );
    assert!(
        accepted.iter().any(|r| r
            .text
            .as_deref()
            .is_some_and(|text| text.contains("Room 2"))),
        "{accepted:#?}"
    );
    stack.wait_for_status("sent", 4, SOON).await?;
    assert_eq!(stack.messages_with_status("skipped").await?, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.accepted().len(), 4, "each change sent once");
    Ok(())
}
