//! Committed inserts and updates become exactly one message each, with the right content.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fake_provider::{Channel, Received};
use herald_tests::{Contact, Engine, SOON, Service, Stack};

pub async fn inserts_and_updates_each_become_exactly_one_message(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "inserts_and_updates").await?;
    stack.load_example_schedules().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    // N contact inserts: one welcome email each (in the contact's locale).
    let people = [
        ("Ada", "Lovelace", "en"),
        ("Grace", "Hopper", "en"),
        ("Marie", "Curie", "fr"),
        ("Alan", "Turing", "en"),
        ("Emmy", "Noether", "de"),
    ];
    let mut contacts = Vec::new();
    for (i, (first, last, locale)) in people.iter().enumerate() {
        let email = format!("{}@example.com", first.to_lowercase());
        let phone = format!("+1555000{i:04}");
        let contact = Contact {
            first_name: first,
            last_name: last,
            email: Some(&email),
            phone: &phone,
            locale,
        };
        contacts.push((stack.insert_contact(&contact).await?, email, phone));
    }
    // A appointment inserts: one SMS each.
    let mut appointments = Vec::new();
    for (contact_id, _, phone) in &contacts[..4] {
        let id = stack.insert_appointment(*contact_id, "Room 1").await?;
        appointments.push((id, phone.clone()));
    }
    let first_wave = contacts.len() + appointments.len();
    stack.wait_for_accepted(first_wave, SOON).await?;

    // M appointment updates: one more SMS each, with the new content. A contact update does
    // not move the welcome schedule's change column (created_at), so it sends nothing.
    for (id, _) in &appointments[..3] {
        stack.move_appointment(*id, "Room 2").await?;
    }
    stack
        .source
        .execute("UPDATE crm.contact SET last_name = upper(last_name)", &[])
        .await?;
    let total = first_wave + 3;
    stack.wait_for_accepted(total, SOON).await?;
    // Nothing more arrives: no change is notified twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let accepted = stack.accepted();
    assert_eq!(accepted.len(), total, "{accepted:#?}");

    let emails: Vec<&Received> = accepted
        .iter()
        .filter(|r| r.channel == Channel::Email)
        .collect();
    assert_eq!(emails.len(), contacts.len());
    for ((first, last, locale), (_, address, _)) in people.iter().zip(&contacts) {
        let email = emails
            .iter()
            .find(|r| r.to == [address.clone()])
            .unwrap_or_else(|| panic!("no email to {address}"));
        let (subject, text) = match *locale {
            "fr" => (
                format!("Bienvenue, {first} !"),
                format!("Bonjour {first} {last}, bienvenue chez Acme."),
            ),
            // No German template: the English one is the fallback.
            _ => (
                format!("Welcome, {first}!"),
                format!("Hello {first} {last}, welcome to Acme."),
            ),
        };
        assert_eq!(email.subject.as_deref(), Some(subject.as_str()));
        assert_eq!(email.text.as_deref(), Some(text.as_str()));
        assert!(
            email
                .html
                .as_deref()
                .is_some_and(|html| html.contains(&format!("{first} {last}"))),
            "{email:?}"
        );
        assert_eq!(email.from.as_deref(), Some("notifications@example.com"));
    }

    let mut sms_by_phone: HashMap<&str, Vec<&str>> = HashMap::new();
    for sms in accepted.iter().filter(|r| r.channel == Channel::Sms) {
        sms_by_phone
            .entry(sms.to[0].as_str())
            .or_default()
            .push(sms.text.as_deref().unwrap_or_default());
    }
    for (i, (_, phone)) in appointments.iter().enumerate() {
        let mut bodies = sms_by_phone.remove(phone.as_str()).unwrap_or_default();
        bodies.sort();
        let first = people[i].0;
        let rooms = if i < 3 {
            vec!["Room 1", "Room 2"]
        } else {
            vec!["Room 1"]
        };
        let expected: Vec<String> = rooms
            .into_iter()
            .map(|room| format!("Hi {first}, your appointment is at 2026-12-01 09:30 UTC, {room}."))
            .collect();
        assert_eq!(bodies, expected, "SMS to {phone}");
    }
    assert!(sms_by_phone.is_empty(), "unexpected SMS: {sms_by_phone:?}");

    // Support's view: every message sent, with the provider's id and a send time.
    let rows = stack
        .notify
        .query(
            "SELECT status, provider_message_id, sent_at FROM message_log",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), total);
    for row in &rows {
        assert_eq!(row.text(0), "sent");
        let id = row.opt_text(1);
        assert!(
            accepted.iter().any(|r| r.provider_message_id == id),
            "provider id {id:?} not at the provider"
        );
        assert_ne!(row.0[2], herald_tests::Value::Null, "sent_at is set");
    }
    Ok(())
}

/// Three renderers share the topic's partitions and one queue: an import of 600 contacts
/// becomes 600 welcome emails, each queued and sent once, and the renderers' inserts do not
/// deadlock one another over and over (on SQL Server, the queue's dedupe takes no key-range
/// locks: a renderer that races another to an identity repeats its insert).
pub async fn three_renderers_queue_each_notification_once(engine: Engine) -> anyhow::Result<()> {
    const CONTACTS: i64 = 600;
    let mut stack = Stack::new(engine, "three_renderers").await?;
    stack.load_welcome_schedule().await?;
    stack.start_all().await?;
    for instance in [2, 3] {
        stack.start_instance(Service::Renderer, instance).await?;
    }
    stack.wait_until_watching(1).await?;

    stack.insert_contacts(CONTACTS).await?;
    stack.wait_for_accepted(CONTACTS as usize, SOON).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let accepted = stack.accepted();
    let recipients: HashSet<&str> = accepted.iter().map(|r| r.to[0].as_str()).collect();
    assert_eq!(
        (accepted.len(), recipients.len()),
        (CONTACTS as usize, CONTACTS as usize),
        "each contact's email sent once"
    );
    let queued = stack
        .notify
        .count("SELECT count(*) FROM message", &[])
        .await?;
    assert_eq!(queued, CONTACTS, "each queued once");
    let deadlocks: usize = (1..=3)
        .map(|n| {
            stack
                .instance_log(Service::Renderer, n)
                .matches("deadlock")
                .count()
        })
        .sum();
    assert!(
        deadlocks <= 3,
        "{deadlocks} deadlocks between the renderers"
    );
    Ok(())
}

/// A source keyed by a case-sensitive code: vouchers `abc` and `ABC` are two rows, so two
/// notifications, each sent once (on SQL Server the queue's identity compares exactly,
/// whatever the database's collation; a case-insensitive one took `ABC`'s for a replay of
/// `abc`'s and dropped it).
pub async fn keys_that_differ_only_in_case_are_two_notifications(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "case_keys").await?;
    stack.apply_source_fixture("voucher").await?;
    stack
        .notify
        .batch(
            "INSERT INTO template (tenant, name, locale, subject, body_html, body_text)
             VALUES ('acme', 'voucher', 'en', 'Voucher {{ first_name }}', '<p>Yours</p>',
                     'Yours');
             INSERT INTO schedule (tenant, name, channel, source_schema, source_table,
                                   key_column, change_column, merge_schema, merge_function,
                                   template_name)
             VALUES ('acme', 'voucher-email', 'email', 'crm', 'voucher', 'code', 'created_at',
                     'crm', 'voucher_mail', 'voucher');",
        )
        .await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    for (code, email) in [("abc", "lower@example.com"), ("ABC", "upper@example.com")] {
        stack
            .source
            .execute(
                "INSERT INTO crm.voucher (code, email) VALUES ($1, $2)",
                &[code.into(), email.into()],
            )
            .await?;
    }
    stack.wait_for_accepted(2, SOON).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut subjects: Vec<String> = stack
        .accepted()
        .iter()
        .filter_map(|r| r.subject.clone())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["Voucher ABC", "Voucher abc"], "one each");
    let keys = stack
        .notify
        .count("SELECT count(DISTINCT source_key) FROM message", &[])
        .await?;
    assert_eq!(keys, 2);
    Ok(())
}
