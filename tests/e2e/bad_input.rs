//! Bad input gets a clear, recorded reason and loses nothing; the rest keeps flowing. Clean
//! shutdowns lose and repeat nothing.

use herald_tests::{Contact, Engine, SOON, Service, Stack, wait_until};

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
    assert!(rejected.text(1).contains("unreadable change event"));

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
