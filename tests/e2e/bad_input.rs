//! Bad input gets a clear, recorded reason and loses nothing; the rest keeps flowing. Clean
//! shutdowns lose and repeat nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use herald_tests::{Contact, Engine, SOON, Service, Stack, Value, wait_until};
use serde_json::json;

pub async fn bad_input_is_recorded_with_its_reason_and_the_rest_flows(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "bad_input").await?;
    stack.load_example_schedules().await?;
    stack.apply_source_fixture("troubled_merge").await?;
    stack
        .notify
        .batch(
            "INSERT INTO template (tenant, name, locale, subject, body_html, body_text)
             VALUES ('acme', 'welcome', 'xx', 'Hi {{ nickname }}', '<p>Hi</p>', 'Hi');
             INSERT INTO suppression (tenant, channel, address, reason)
             VALUES ('acme', 'email', 'Blocked@Example.com', 'unsubscribed');",
        )
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    let contact = |email, last_name, locale| Contact {
        email,
        last_name,
        locale,
        ..Contact::default()
    };
    // A merge function failing for a while: retried, then sent.
    stack
        .source
        .execute("INSERT INTO crm.not_ready (last_name) VALUES ('Late')", &[])
        .await?;
    let late = stack
        .insert_contact(&contact(Some("late@example.com"), "Late", "en"))
        .await?;
    let raises = stack
        .insert_contact(&contact(Some("raises@example.com"), "Raises", "en"))
        .await?;
    let nobody = stack.insert_contact(&contact(None, "Nobody", "en")).await?;
    let bad_template = stack
        .insert_contact(&contact(Some("xx@example.com"), "Template", "xx"))
        .await?;
    let blocked = stack
        .insert_contact(&contact(Some("blocked@example.com"), "Blocked", "en"))
        .await?;
    // An event nobody can read is kept, with the reason, and does not stop the consumer.
    stack.produce(Some(b"junk"), b"{not json", None).await?;
    let fine = stack
        .insert_contact(&contact(Some("fine@example.com"), "Fine", "en"))
        .await?;

    let status_of = |key: i64| {
        let stack = &stack;
        async move {
            let rows = stack
                .notify
                .query(
                    "SELECT status, last_error FROM message WHERE source_key = $1",
                    &[key.to_string().as_str().into()],
                )
                .await?;
            Ok::<_, anyhow::Error>(rows.first().map(|row| (row.text(0), row.opt_text(1))))
        }
    };
    let settled = |key: i64, status: &'static str| {
        let status_of = &status_of;
        async move {
            wait_until(SOON, || async {
                Ok(status_of(key).await?.filter(|(s, _)| s == status))
            })
            .await
            .map_err(|_| anyhow::anyhow!("contact {key} never became {status}"))
        }
    };

    let (_, error) = settled(late, "render_retry").await?;
    assert!(
        error.unwrap_or_default().contains("are not ready"),
        "the merge function's own message is kept"
    );
    stack
        .source
        .execute("DELETE FROM crm.not_ready", &[])
        .await?;
    settled(late, "sent").await?;
    settled(fine, "sent").await?;

    let (_, error) = settled(raises, "render_failed").await?;
    let error = error.unwrap_or_default();
    assert!(
        error.contains("gave up after") && error.contains("cannot be merged"),
        "{error}"
    );
    let (_, error) = settled(nobody, "skipped").await?;
    assert!(error.unwrap_or_default().contains("no recipient"));
    let (_, error) = settled(bad_template, "render_failed").await?;
    assert!(error.unwrap_or_default().contains("nickname"));
    let (_, error) = settled(blocked, "suppressed").await?;
    assert!(error.unwrap_or_default().contains("suppression list"));

    let rejected = stack
        .notify
        .query_one("SELECT payload, error FROM rejected_event", &[])
        .await?;
    assert_eq!(rejected.opt_text(0).as_deref(), Some("{not json"));
    assert!(rejected.text(1).contains("not a change event"));

    let mut delivered: Vec<String> = stack
        .accepted()
        .into_iter()
        .flat_map(|received| received.to)
        .collect();
    delivered.sort();
    assert_eq!(delivered, ["fine@example.com", "late@example.com"]);
    Ok(())
}

pub async fn every_service_stops_cleanly_on_sigterm(engine: Engine) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "sigterm").await?;
    stack.load_example_schedules().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    stack.insert_contact(&Contact::default()).await?;
    stack.wait_for_accepted(1, SOON).await?;

    for service in Service::ALL {
        stack.stop(service).await?;
    }
    // The renderer committed every event it had made durable before it exited.
    let group = stack.group_offsets().await?;
    assert!(group.end.values().any(|&end| end > 0), "{:?}", group.end);
    assert!(
        group.lag().values().all(|&lag| lag == 0),
        "end {:?}, committed {:?}",
        group.end,
        group.committed
    );
    let grace = Contact {
        email: Some("grace@example.com"),
        ..Contact::default()
    };
    stack.insert_contact(&grace).await?;
    stack.start_all().await?;
    // The change made while everything was down arrives; nothing before it is repeated
    // (the renderer committed its offsets, the detector kept its mark).
    stack.wait_for_accepted(2, SOON).await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let to: Vec<String> = stack.accepted().into_iter().flat_map(|r| r.to).collect();
    assert_eq!(to, ["ada@example.com", "grace@example.com"]);
    Ok(())
}

pub async fn hostile_payloads_are_kept_as_they_were_and_real_changes_flow(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "hostile_payloads").await?;
    stack.load_welcome_schedule().await?;
    let schedule_id = stack
        .notify
        .count(
            "SELECT schedule_id FROM schedule WHERE name = 'welcome-email'",
            &[],
        )
        .await?;
    // Rows from before the detector started: only the events below ask for them.
    let newer_format = stack.insert_contact_to("newer-format@example.com").await?;
    let extra_field = stack.insert_contact_to("extra-field@example.com").await?;
    let event = |key: i64, version: String| {
        json!({
            "format": 1,
            "tenant": "acme",
            "schedule_id": schedule_id,
            "channel": "email",
            "source_key": key.to_string(),
            "change_version": version,
            "detected_at": Utc::now(),
        })
    };
    let mut newer = event(
        newer_format,
        stack.contact_created_version(newer_format).await?,
    );
    newer["format"] = json!(2);
    let mut extra = event(
        extra_field,
        stack.contact_created_version(extra_field).await?,
    );
    extra["added_in_a_later_detector"] = json!({"anything": [1, 2]});
    let mut nul_in_key = event(extra_field, "2026-11-22 10:00:00+00".into());
    nul_in_key["source_key"] = json!("4\u{0}2");

    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("control character", b"{\"tenant\":\"ac\0me\"}".to_vec()),
        ("NUL character", nul_in_key.to_string().into_bytes()),
        ("invalid unicode", b"{\"tenant\":\"\xff\xfe\"}".to_vec()),
        (
            "missing field",
            format!("{{\"padding\":\"{}\"}}", "x".repeat(2_000_000)).into_bytes(),
        ),
        ("key must be a string", b"{not json".to_vec()),
        ("missing field", br#"{"tenant":"acme"}"#.to_vec()),
        ("format 2 is newer", newer.to_string().into_bytes()),
    ];
    // In front of every real change, on every partition.
    let mut placed = Vec::new();
    for (i, (reason, payload)) in hostile.iter().enumerate() {
        let partition = i as i32 % 3;
        let offset = stack.produce(None, payload, Some(partition)).await?;
        placed.push((partition, offset, *reason, payload));
    }
    stack
        .produce(None, extra.to_string().as_bytes(), Some(1))
        .await?;

    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let mut expected: BTreeSet<String> = ["extra-field@example.com".to_owned()].into();
    for i in 0..20 {
        let email = format!("real-{i}@example.com");
        stack.insert_contact_to(&email).await?;
        expected.insert(email);
    }
    stack
        .wait_for_accepted(expected.len(), Duration::from_secs(10))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got: BTreeSet<String> = stack.accepted().iter().map(|r| r.to.join(",")).collect();
    assert_eq!(
        got, expected,
        "the real changes and the event with an extra field"
    );

    for (partition, offset, reason, payload) in placed {
        let kept = stack
            .notify
            .query_one(
                &format!(
                    "SELECT raw, error FROM rejected_event
                      WHERE {} = CAST($1 AS bigint) AND {} = CAST($2 AS bigint)",
                    quoted(engine, "partition"),
                    quoted(engine, "offset")
                ),
                &[i64::from(partition).into(), offset.into()],
            )
            .await?;
        assert_eq!(&kept.bytes(0), payload, "kept byte for byte: {reason}");
        let error = kept.text(1);
        assert!(error.contains(reason), "{reason}: {error}");
    }
    Ok(())
}

/// `partition` and `offset` are keywords: quoted as each engine quotes.
fn quoted(engine: Engine, name: &str) -> String {
    match engine {
        Engine::Postgres => format!("\"{name}\""),
        Engine::Mssql => format!("[{name}]"),
    }
}

/// A merge function that hangs for one key: that message waits in `render_retry` ("timed
/// out"), the rest of its batch is sent, and the cancelled calls hold no connections, so
/// later changes flow too.
pub async fn a_hanging_merge_function_delays_only_its_own_message(
    engine: Engine,
) -> anyhow::Result<()> {
    const OTHERS: usize = 5;
    let mut stack = Stack::new(engine, "hanging_merge").await?;
    stack.load_welcome_schedule().await?;
    stack.apply_source_fixture("troubled_merge").await?;
    stack.set(Service::Renderer, "HERALD__RENDERER__MERGE_TIMEOUT", "1s");
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;

    let hangs = stack
        .insert_contact(&Contact {
            email: Some("hangs@example.com"),
            last_name: "Hangs",
            ..Contact::default()
        })
        .await?;
    for i in 0..OTHERS {
        stack
            .insert_contact_to(&format!("other{i}@example.com"))
            .await?;
    }
    stack
        .wait_for_accepted(OTHERS, Duration::from_secs(8))
        .await?;

    // Retried and cancelled more times than the source pool (4) has connections.
    let hanging = "SELECT render_attempts, status, last_error FROM message WHERE source_key = $1";
    let key = Value::from(hangs.to_string().as_str());
    // Its row may come after the others' (its batch waited for the call that hung).
    wait_until(Duration::from_secs(30), || async {
        let rows = stack
            .notify
            .query(hanging, std::slice::from_ref(&key))
            .await?;
        Ok(rows.first().filter(|row| row.int(0) >= 5).map(|_| ()))
    })
    .await?;
    let row = stack
        .notify
        .query_one(hanging, std::slice::from_ref(&key))
        .await?;
    assert!(
        ["render_retry", "render_failed"].contains(&row.text(1).as_str()),
        "{row:?}"
    );
    assert!(row.text(2).contains("timed out"), "{row:?}");

    for i in 0..OTHERS {
        stack
            .insert_contact_to(&format!("later{i}@example.com"))
            .await?;
    }
    let accepted = stack
        .wait_for_accepted(2 * OTHERS, Duration::from_secs(8))
        .await?;
    assert!(
        accepted.iter().all(|r| r.to != ["hangs@example.com"]),
        "{accepted:#?}"
    );
    Ok(())
}

/// The merge function is replaced under a running renderer by one returning a bare NULL
/// (SQL Server: an unnamed column): that schedule's messages fail with the reason, the
/// renderer keeps running, and the other schedule's messages flow.
pub async fn a_merge_function_changed_under_the_renderer_is_a_recorded_failure(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "merge_drift").await?;
    stack.load_example_schedules().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let before = stack.insert_contact_to("before@example.com").await?;
    stack.wait_for_accepted(1, SOON).await?;

    let drift = match engine {
        Engine::Postgres => {
            "DROP FUNCTION crm.welcome_email(bigint);
             CREATE FUNCTION crm.welcome_email(p_contact_id bigint) RETURNS text
             LANGUAGE sql STABLE AS 'SELECT NULL::text';"
        }
        Engine::Mssql => {
            "CREATE OR ALTER PROCEDURE crm.welcome_email @contact_id bigint AS SELECT NULL;"
        }
    };
    stack.source.batch(drift).await?;
    let drifted = stack.insert_contact_to("drifted@example.com").await?;
    stack.insert_appointment(before, "Room 1").await?;

    let failed = "SELECT count(*) FROM message
                   WHERE status IN ('render_retry', 'render_failed') AND last_error IS NOT NULL";
    stack.wait_for_count(failed, 1, SOON).await?;
    stack.wait_for_accepted(2, SOON).await?;
    let row = stack
        .notify
        .query_one(
            "SELECT last_error FROM message WHERE source_key = $1 AND channel = 'email'",
            &[Value::from(drifted.to_string().as_str())],
        )
        .await?;
    assert!(row.text(0).contains("merge function"), "{row:?}");
    let log = stack.log(Service::Renderer);
    assert!(!log.contains("panicked"), "{log}");
    Ok(())
}
