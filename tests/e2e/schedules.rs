//! Only active, valid schedules are polled; a broken schedule is reported and skipped while
//! the healthy ones keep working; schedule changes apply without a restart.

use std::time::Duration;

use herald_tests::{Contact, Engine, SOON, Service, Stack, wait_until};

pub async fn a_table_with_only_an_inactive_schedule_is_never_queried(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "inactive_not_queried").await?;
    stack.load_example_schedules().await?;
    stack.set_schedule_active("appointment-sms", false).await?;
    let contact_id = stack.insert_contact(&Contact::default()).await?;
    let appointment_reads = stack.settled_table_reads("appointment").await?;
    let contact_reads = stack.settled_table_reads("contact").await?;

    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    for location in ["Room 1", "Room 2", "Room 3"] {
        stack.insert_appointment(contact_id, location).await?;
    }
    let grace = Contact {
        email: Some("grace@example.com"),
        ..Contact::default()
    };
    stack.insert_contact(&grace).await?;
    stack.wait_for_accepted(1, SOON).await?;

    // The watched table's read count moves...
    wait_until(Duration::from_secs(30), || async {
        Ok((stack.table_reads("contact").await? > contact_reads).then_some(()))
    })
    .await?;
    // ...and the unwatched one's does not.
    assert_eq!(
        stack.settled_table_reads("appointment").await?,
        appointment_reads
    );
    assert_eq!(
        stack.accepted().len(),
        1,
        "no SMS for the inactive schedule"
    );
    Ok(())
}

pub async fn broken_schedules_are_reported_and_do_not_stop_a_healthy_one(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "broken_schedules").await?;
    stack.load_example_schedules().await?;
    // A date orders days, not changes: two changes on one day would look like one.
    stack
        .source
        .batch("ALTER TABLE crm.contact ADD birth_date date")
        .await?;
    stack
        .notify
        .batch(
            "INSERT INTO schedule (tenant, name, channel, source_schema, source_table, key_column,
                                   change_column, merge_schema, merge_function, template_name)
             VALUES ('acme', 'no-table', 'email', 'crm', 'invoice', 'invoice_id',
                     'modified_at', 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'no-column', 'email', 'crm', 'contact', 'contact_id',
                     'updated_on', 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'not-a-time', 'email', 'crm', 'contact', 'contact_id',
                     'email', 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'a-date', 'email', 'crm', 'contact', 'contact_id',
                     'birth_date', 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'no-function', 'email', 'crm', 'contact', 'contact_id',
                     'modified_at', 'crm', 'goodbye_email', 'welcome'),
                    ('globex', 'sneaky', 'email', 'crm', 'contact; DROP TABLE crm.contact',
                     'contact_id', 'modified_at', 'crm', 'welcome_email', 'welcome')",
        )
        .await?;
    // Names longer than either engine takes (PostgreSQL 63 bytes, SQL Server 128 characters).
    let long = "x".repeat(129);
    stack
        .notify
        .execute(
            "INSERT INTO schedule (tenant, name, channel, source_schema, source_table, key_column,
                                   change_column, merge_schema, merge_function, template_name)
             VALUES ('acme', 'long-table', 'email', 'crm', $1, 'contact_id',
                     'modified_at', 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'long-column', 'email', 'crm', 'contact', 'contact_id',
                     $1, 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'long-function', 'email', 'crm', 'contact', 'contact_id',
                     'modified_at', 'crm', $1, 'welcome')",
            &[long.as_str().into()],
        )
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    stack.insert_contact(&Contact::default()).await?;
    stack.wait_for_accepted(1, SOON).await?;

    let expected = [
        ("no-table", "crm.invoice does not exist"),
        ("no-column", "change column \"updated_on\" does not exist"),
        ("not-a-time", "must be a timestamp"),
        ("a-date", "is date; it must be a timestamp"),
        ("no-function", "merge function crm.goodbye_email"),
        ("sneaky", "does not exist"),
        ("long-table", "xxxxxxxx"),
        ("long-column", "xxxxxxxx"),
        ("long-function", "xxxxxxxx"),
    ];
    for (name, error) in expected {
        let recorded = wait_until(SOON, || async {
            let row = stack
                .notify
                .query_one("SELECT error FROM schedule WHERE name = $1", &[name.into()])
                .await?;
            Ok(row.opt_text(0))
        })
        .await?;
        assert!(recorded.contains(error), "{name}: {recorded}");
    }
    let contacts = stack
        .source
        .count("SELECT count(*) FROM crm.contact", &[])
        .await?;
    assert_eq!(contacts, 1, "the source is untouched");

    // Fixing a schedule clears its error and starts it, without a restart.
    stack
        .notify
        .execute(
            "UPDATE schedule SET change_column = 'modified_at' WHERE name = 'no-column'",
            &[],
        )
        .await?;
    stack
        .wait_for_count(
            "SELECT count(*) FROM schedule WHERE name = 'no-column' AND error IS NULL",
            1,
            SOON,
        )
        .await?;
    Ok(())
}

pub async fn schedules_added_and_deactivated_apply_without_a_restart(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "schedule_changes").await?;
    stack.load_example_schedules().await?;
    stack
        .notify
        .execute("DELETE FROM schedule WHERE name = 'appointment-sms'", &[])
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let contact_id = stack.insert_contact(&Contact::default()).await?;
    stack.wait_for_accepted(1, SOON).await?;

    // Added: the SMS schedule starts once the detector has picked it up.
    stack
        .notify
        .batch(
            "INSERT INTO schedule (tenant, name, channel, source_schema, source_table, key_column,
                                   change_column, merge_schema, merge_function, template_name)
             VALUES ('acme', 'appointment-sms', 'sms', 'crm', 'appointment', 'appointment_id',
                     'modified_at', 'crm', 'appointment_sms', 'appointment-reminder')",
        )
        .await?;
    stack.wait_until_watching(2).await?;
    stack.insert_appointment(contact_id, "Room 9").await?;
    stack.wait_for_accepted(2, SOON).await?;

    // Deactivated: new contacts get no welcome email.
    stack.set_schedule_active("welcome-email", false).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grace = Contact {
        email: Some("grace@example.com"),
        ..Contact::default()
    };
    stack.insert_contact(&grace).await?;
    stack.insert_appointment(contact_id, "Room 10").await?;
    stack.wait_for_accepted(3, SOON).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let accepted = stack.accepted();
    assert_eq!(accepted.len(), 3, "{accepted:#?}");
    assert!(
        accepted[2]
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("Room 10")
    );
    Ok(())
}

pub async fn a_schedule_switched_to_another_change_column_starts_afresh(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "switched_column").await?;
    stack.load_welcome_schedule().await?;
    stack.set(Service::Detector, "HERALD__DETECTOR__SWEEP_INTERVAL", "1s");
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let ada = stack.insert_contact(&Contact::default()).await?;
    stack.wait_for_accepted(1, SOON).await?;
    // A change of the contact before the switch: not the welcome schedule's business.
    stack
        .source
        .execute(
            "UPDATE crm.contact SET last_name = 'King' WHERE contact_id = $1",
            &[ada.into()],
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // From inserts to every change of a contact: the rows changed before the switch are
    // not notified, neither by a poll nor by the sweep as "late".
    stack
        .notify
        .execute(
            "UPDATE schedule SET change_column = 'modified_at' WHERE name = 'welcome-email'",
            &[],
        )
        .await?;
    stack
        .wait_for_count(
            "SELECT count(*) FROM detector_watermark WHERE source_definition LIKE '%modified_at%'",
            1,
            SOON,
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.accepted().len(), 1, "nothing from before the switch");

    stack
        .source
        .execute(
            "UPDATE crm.contact SET last_name = 'Byron' WHERE contact_id = $1",
            &[ada.into()],
        )
        .await?;
    let accepted = stack.wait_for_accepted(2, SOON).await?;
    assert!(
        accepted[1]
            .text
            .as_deref()
            .is_some_and(|text| text.contains("Ada Byron")),
        "{accepted:#?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stack.accepted().len(), 2);
    let late = stack
        .notify
        .count("SELECT count(*) FROM late_change", &[])
        .await?;
    assert_eq!(late, 0, "nothing counted late");
    Ok(())
}

/// A table whose name holds a newline (a quoted identifier may) is read like any other:
/// names fill only the statements' text. Filled into a template's `--` comment, the newline
/// would end the comment and run the rest of the name (here a statement of its own) as SQL.
pub async fn a_name_with_a_newline_is_read_as_a_name() -> anyhow::Result<()> {
    const TABLE: &str = "odd\nSELECT pg_sleep(10); --";
    let mut stack = Stack::new(Engine::Postgres, "newline_name").await?;
    let quoted = format!("\"{TABLE}\"");
    stack
        .source
        .batch(&format!(
            "CREATE TABLE crm.{quoted} (
                 id         bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                 email      text        NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE INDEX ON crm.{quoted} (created_at, id);
             CREATE FUNCTION crm.odd_welcome(p_id bigint)
             RETURNS TABLE (recipient text, recipient_name text, locale text, first_name text)
             LANGUAGE sql STABLE AS $$
                 SELECT o.email, 'Odd', 'en', 'Odd' FROM crm.{quoted} o WHERE o.id = p_id
             $$;"
        ))
        .await?;
    stack
        .notify
        .execute(
            "INSERT INTO template (tenant, name, locale, subject, body_html, body_text)
             VALUES ('acme', 'odd', 'en', 'Hello {{ first_name }}', '<p>Hello</p>', 'Hello');",
            &[],
        )
        .await?;
    stack
        .notify
        .execute(
            "INSERT INTO schedule (tenant, name, channel, source_schema, source_table,
                                   key_column, change_column, merge_schema, merge_function,
                                   template_name)
             VALUES ('acme', 'odd-email', 'email', 'crm', $1, 'id', 'created_at', 'crm',
                     'odd_welcome', 'odd')",
            &[TABLE.into()],
        )
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    stack
        .source
        .execute(
            &format!("INSERT INTO crm.{quoted} (email) VALUES ('odd@example.com')"),
            &[],
        )
        .await?;
    let accepted = stack.wait_for_accepted(1, SOON).await?;
    assert_eq!(accepted[0].to, ["odd@example.com"]);
    let errors = stack
        .notify
        .count("SELECT count(*) FROM schedule WHERE error IS NOT NULL", &[])
        .await?;
    assert_eq!(errors, 0, "the schedule checks out");
    Ok(())
}
