//! Only active, valid schedules are polled; a broken schedule is reported and skipped while
//! the healthy ones keep working; schedule changes apply without a restart.

use std::time::Duration;

use herald_tests::{Stack, wait_until};

use crate::{Contact, SOON, insert_appointment, insert_contact, wait_until_watching};

/// (sequential scans, index scans) of a source table, as PostgreSQL counts them. Counts from
/// this connection (the schema's own CREATE INDEX scans) are flushed first.
async fn scans(stack: &Stack, table: &str) -> anyhow::Result<(i64, i64)> {
    stack
        .source
        .execute("SELECT pg_stat_force_next_flush()", &[])
        .await?;
    stack
        .source
        .execute("SELECT pg_stat_clear_snapshot()", &[])
        .await?;
    let row = stack
        .source
        .query_one(
            "SELECT coalesce(seq_scan, 0), coalesce(idx_scan, 0)
               FROM pg_stat_user_tables WHERE schemaname = 'crm' AND relname = $1",
            &[&table],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn a_table_with_only_an_inactive_schedule_is_never_queried() -> anyhow::Result<()> {
    let mut stack = Stack::new("inactive_not_queried").await?;
    stack.load_example_schedules().await?;
    stack
        .notify
        .execute(
            "UPDATE schedule SET active = false WHERE name = 'appointment-sms'",
            &[],
        )
        .await?;
    let contact_id = insert_contact(&stack, &Contact::default()).await?;
    let appointments_before = scans(&stack, "appointment").await?;
    let contacts_before = scans(&stack, "contact").await?;

    stack.start_all().await?;
    wait_until_watching(&stack, 1).await?;
    for location in ["Room 1", "Room 2", "Room 3"] {
        insert_appointment(&stack, contact_id, location).await?;
    }
    insert_contact(
        &stack,
        &Contact {
            email: "grace@example.com",
            ..Contact::default()
        },
    )
    .await?;
    stack.wait_for_accepted(1, SOON).await?;

    // The watched table's counters move (PostgreSQL flushes them about once a second)...
    wait_until(Duration::from_secs(30), || async {
        Ok((scans(&stack, "contact").await? != contacts_before).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // ...and the unwatched one's do not.
    assert_eq!(scans(&stack, "appointment").await?, appointments_before);
    assert_eq!(
        stack.accepted().len(),
        1,
        "no SMS for the inactive schedule"
    );
    Ok(())
}

#[tokio::test]
async fn broken_schedules_are_reported_and_do_not_stop_a_healthy_one() -> anyhow::Result<()> {
    let mut stack = Stack::new("broken_schedules").await?;
    stack.load_example_schedules().await?;
    stack
        .notify
        .batch_execute(
            "INSERT INTO schedule (tenant, name, channel, source_schema, source_table, key_column,
                                   change_column, merge_schema, merge_function, template_name)
             VALUES ('acme', 'no-table', 'email', 'crm', 'invoice', 'invoice_id',
                     'modified_at', 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'no-column', 'email', 'crm', 'contact', 'contact_id',
                     'updated_on', 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'not-a-time', 'email', 'crm', 'contact', 'contact_id',
                     'email', 'crm', 'welcome_email', 'welcome'),
                    ('acme', 'no-function', 'email', 'crm', 'contact', 'contact_id',
                     'modified_at', 'crm', 'goodbye_email', 'welcome'),
                    ('globex', 'sneaky', 'email', 'crm', 'contact; DROP TABLE crm.contact', 'contact_id',
                     'modified_at', 'crm', 'welcome_email', 'welcome');",
        )
        .await?;
    stack.start_all().await?;
    wait_until_watching(&stack, 2).await?;
    insert_contact(&stack, &Contact::default()).await?;
    stack.wait_for_accepted(1, SOON).await?;

    let expected = [
        ("no-table", "crm.invoice does not exist"),
        ("no-column", "change column \"updated_on\" does not exist"),
        ("not-a-time", "must be a date/time type"),
        ("no-function", "merge function crm.goodbye_email"),
        ("sneaky", "does not exist"),
    ];
    for (name, error) in expected {
        let recorded = wait_until(SOON, || async {
            let row = stack
                .notify
                .query_one("SELECT error FROM schedule WHERE name = $1", &[&name])
                .await?;
            Ok(row.get::<_, Option<String>>(0))
        })
        .await?;
        assert!(recorded.contains(error), "{name}: {recorded}");
    }
    let contacts: i64 = stack
        .source
        .query_one("SELECT count(*) FROM crm.contact", &[])
        .await?
        .get(0);
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

#[tokio::test]
async fn schedules_added_and_deactivated_apply_without_a_restart() -> anyhow::Result<()> {
    let mut stack = Stack::new("schedule_changes").await?;
    stack.load_example_schedules().await?;
    stack
        .notify
        .execute("DELETE FROM schedule WHERE name = 'appointment-sms'", &[])
        .await?;
    stack.start_all().await?;
    wait_until_watching(&stack, 1).await?;
    let contact_id = insert_contact(&stack, &Contact::default()).await?;
    stack.wait_for_accepted(1, SOON).await?;

    // Added: the SMS schedule starts once the detector has picked it up.
    stack
        .notify
        .batch_execute(
            "INSERT INTO schedule (tenant, name, channel, source_schema, source_table, key_column,
                                   change_column, merge_schema, merge_function, template_name)
             VALUES ('acme', 'appointment-sms', 'sms', 'crm', 'appointment', 'appointment_id',
                     'modified_at', 'crm', 'appointment_sms', 'appointment-reminder')",
        )
        .await?;
    wait_until_watching(&stack, 2).await?;
    insert_appointment(&stack, contact_id, "Room 9").await?;
    stack.wait_for_accepted(2, SOON).await?;

    // Deactivated: new contacts get no welcome email.
    stack
        .notify
        .execute(
            "UPDATE schedule SET active = false WHERE name = 'welcome-email'",
            &[],
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    insert_contact(
        &stack,
        &Contact {
            email: "grace@example.com",
            ..Contact::default()
        },
    )
    .await?;
    insert_appointment(&stack, contact_id, "Room 10").await?;
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
