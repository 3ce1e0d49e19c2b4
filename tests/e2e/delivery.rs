//! What the provider sees: throttling honoured, refusals recorded with the provider's
//! reason, merge values escaped in HTML and intact in text and SMS, names and settings in
//! the form the provider accepts.

use std::time::Duration;

use anyhow::Context;
use fake_provider::{Channel, Config as ProviderConfig, Fault, FaultKind};
use herald_tests::{Contact, Engine, SOON, Service, Stack, provider_config};

pub async fn a_rate_limited_email_is_sent_once_after_the_reset(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "rate_limited").await?;
    stack.load_example_schedules().await?;
    stack
        .provider
        .faults()
        .push([Fault::new(FaultKind::RateLimit {
            reset_after_secs: 2,
        })]);
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    stack.insert_contact(&Contact::default()).await?;

    let accepted = stack.wait_for_accepted(1, SOON).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests = stack.provider.store().list(Some(Channel::Email), None);
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[0].status, Some(429));
    assert_eq!(requests[1].status, Some(202));
    assert_eq!(accepted.len(), 1);
    let waited = requests[1].received_at - requests[0].received_at;
    assert!(
        waited >= chrono::Duration::seconds(2),
        "resent {waited} after the 429, before the reset"
    );

    let attempts = stack
        .notify
        .query(
            "SELECT outcome, http_status FROM delivery_attempt ORDER BY attempt",
            &[],
        )
        .await?;
    let attempts: Vec<(String, Option<i64>)> = attempts
        .iter()
        .map(|row| (row.text(0), row.opt_int(1)))
        .collect();
    assert_eq!(
        attempts,
        [
            ("retry".to_owned(), Some(429)),
            ("sent".to_owned(), Some(202))
        ]
    );
    assert_eq!(stack.messages_with_status("sent").await?, 1);
    Ok(())
}

pub async fn a_refused_email_fails_with_the_providers_reason_and_is_not_retried(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "refused").await?;
    stack.load_example_schedules().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let bad_address = Contact {
        email: Some("not-an-email"),
        ..Contact::default()
    };
    stack.insert_contact(&bad_address).await?;

    stack.wait_for_status("failed", 1, SOON).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let row = stack
        .notify
        .query_one("SELECT last_error, send_attempts FROM message", &[])
        .await?;
    let error = row.text(0);
    assert!(
        error.contains("personalizations.0.to.0.email")
            && error.contains("Does not contain a valid address"),
        "{error}"
    );
    assert_eq!(row.int(1), 1);
    let requests = stack.provider.store().list(None, None);
    assert_eq!(requests.len(), 1, "not retried: {requests:#?}");
    assert_eq!(requests[0].status, Some(400));
    Ok(())
}

pub async fn merge_values_are_escaped_in_html_and_intact_in_text_and_sms(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "escaping").await?;
    stack.load_example_schedules().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let script = "<script>alert(1)</script>";
    let contact = Contact {
        first_name: script,
        ..Contact::default()
    };
    let contact_id = stack.insert_contact(&contact).await?;
    stack
        .insert_appointment(contact_id, "Room <b>1</b>")
        .await?;

    let accepted = stack.wait_for_accepted(2, SOON).await?;
    let email = accepted
        .iter()
        .find(|r| r.channel == Channel::Email)
        .expect("an email");
    let html = email.html.as_deref().unwrap_or_default();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
        "{html}"
    );
    assert!(!html.contains(script), "{html}");
    assert!(email.text.as_deref().unwrap_or_default().contains(script));
    assert_eq!(
        email.subject.as_deref(),
        Some(format!("Welcome, {script}!").as_str())
    );
    let sms = accepted
        .iter()
        .find(|r| r.channel == Channel::Sms)
        .expect("an SMS");
    assert_eq!(
        sms.text.as_deref(),
        Some(
            format!("Hi {script}, your appointment is at 2026-12-01 09:30 UTC, Room <b>1</b>.")
                .as_str()
        )
    );
    Ok(())
}

/// SendGrid refuses the key for 10 s (a revoked key, then restored): email pauses, SMS keeps
/// flowing, and once the key works every email goes once, no attempt spent on the refusals.
pub async fn a_refused_key_pauses_email_and_spends_no_attempts(
    engine: Engine,
) -> anyhow::Result<()> {
    const EMAILS: usize = 5;
    const REFUSED_FOR: Duration = Duration::from_secs(10);
    let mut stack = Stack::new(engine, "refused_key").await?;
    stack.load_example_schedules().await?;
    // Any attempt counted would fail a message well within the 10 s.
    stack.set(Service::Sender, "HERALD__SENDER__MAX_ATTEMPTS", "2");
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let refused_from = chrono::Utc::now();
    stack.provider.faults().push([Fault {
        channel: Some(Channel::Email),
        for_ms: Some(REFUSED_FOR.as_millis() as u64),
        ..Fault::new(FaultKind::Unauthorized)
    }]);
    let mut contacts = Vec::new();
    for i in 0..EMAILS {
        contacts.push(
            stack
                .insert_contact_to(&format!("key{i}@example.com"))
                .await?,
        );
    }
    // SMS is another provider: not held up.
    stack.insert_appointment(contacts[0], "Room 1").await?;
    let sms = stack.wait_for_accepted(1, Duration::from_secs(5)).await?;
    assert_eq!(sms[0].channel, Channel::Sms, "{sms:#?}");

    let accepted = stack
        .wait_for_accepted(EMAILS + 1, REFUSED_FOR + Duration::from_secs(10))
        .await?;
    let emails: Vec<_> = accepted
        .iter()
        .filter(|r| r.channel == Channel::Email)
        .collect();
    assert_eq!(emails.len(), EMAILS, "each email once: {emails:#?}");
    let first = emails
        .iter()
        .map(|r| r.received_at)
        .min()
        .unwrap_or_default();
    assert!(
        first - refused_from >= chrono::Duration::from_std(REFUSED_FOR)?,
        "an email was accepted at {first}, while the key was refused"
    );
    let refused = stack
        .provider
        .store()
        .list(Some(Channel::Email), Some(false))
        .len();
    // The calls in flight when it opened, then one probe per pause (200 ms doubling to 2 s):
    // not one call per message per retry (about 40 here).
    assert!(
        (1..=15).contains(&refused),
        "{refused} calls refused in 10 s"
    );
    // The provider has answered them all; their outcomes are recorded a moment later.
    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE channel = 'email' AND status <> 'sending'",
            EMAILS as i64,
            SOON,
        )
        .await?;
    let counted = stack
        .notify
        .query(
            "SELECT send_attempts - uncounted_attempts, status FROM message
              WHERE channel = 'email' ORDER BY message_id",
            &[],
        )
        .await?;
    for row in &counted {
        assert_eq!((row.int(0), row.text(1)), (1, "sent".to_owned()));
    }
    assert_eq!(counted.len(), EMAILS);
    let log = stack.log(Service::Sender);
    assert_eq!(log.matches("credentials refused").count(), 1, "{log}");
    assert!(log.contains("sending resumed"), "{log}");
    Ok(())
}

/// A 502 from Twilio and an email whose answer never came may both have been taken: each is
/// `in_doubt` with its reason, and neither is sent again.
pub async fn gateway_errors_and_lost_answers_are_in_doubt_not_resent(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "in_doubt_answers").await?;
    stack.load_example_schedules().await?;
    stack.provider.faults().push([
        Fault {
            channel: Some(Channel::Sms),
            ..Fault::new(FaultKind::ServerError { status: 502 })
        },
        Fault {
            channel: Some(Channel::Email),
            ..Fault::new(FaultKind::Drop)
        },
    ]);
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let contact_id = stack.insert_contact(&Contact::default()).await?;
    stack.insert_appointment(contact_id, "Room 1").await?;

    stack.wait_for_status("in_doubt", 2, SOON).await?;
    // Long enough for several retries at the test's 200 ms backoff.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = stack
        .notify
        .query(
            "SELECT channel, status, send_attempts, last_error FROM message ORDER BY channel",
            &[],
        )
        .await?;
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.text(0), r.text(1), r.int(2)))
        .collect();
    assert_eq!(
        got,
        [
            ("email".to_owned(), "in_doubt".to_owned(), 1),
            ("sms".to_owned(), "in_doubt".to_owned(), 1)
        ]
    );
    assert!(rows[0].text(3).contains("no answer"), "{}", rows[0].text(3));
    assert!(rows[1].text(3).contains("502"), "{}", rows[1].text(3));
    // The provider saw each once: nothing resent.
    assert_eq!(stack.provider.store().list(None, None).len(), 2);
    Ok(())
}

/// A recipient named `Sammy Davis, Jr.` gets the welcome email (the fake, like SendGrid,
/// refuses a name with a comma), and an SMS goes out with a from-number and an all-digit
/// auth token (leading zero included) exactly as the environment set them.
pub async fn names_and_settings_reach_the_provider_in_the_form_it_accepts(
    engine: Engine,
) -> anyhow::Result<()> {
    let token = "01234567890123456789012345678901";
    let mut stack = Stack::with_provider(
        engine,
        "wire_forms",
        ProviderConfig {
            twilio_auth_token: token.into(),
            ..provider_config()
        },
    )
    .await?;
    stack.set(
        Service::Sender,
        "HERALD__PROVIDERS__TWILIO__FROM_NUMBER",
        "+15005550006",
    );
    stack.set(
        Service::Sender,
        "HERALD__PROVIDERS__TWILIO__AUTH_TOKEN",
        token,
    );
    stack.load_example_schedules().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let sammy = Contact {
        first_name: "Sammy",
        last_name: "Davis, Jr.",
        email: Some("sammy@example.com"),
        phone: "+15550000042",
        ..Contact::default()
    };
    let contact_id = stack.insert_contact(&sammy).await?;
    stack.insert_appointment(contact_id, "Room 1").await?;

    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE status IN ('sent', 'failed')",
            2,
            SOON,
        )
        .await?;
    let requests = stack.provider.store().list(None, None);
    assert!(
        requests.len() == 2 && requests.iter().all(|r| r.accepted),
        "each taken at the first try: {requests:#?}"
    );
    let email = requests
        .iter()
        .find(|r| r.channel == Channel::Email)
        .expect("an email");
    assert_eq!(email.to, ["sammy@example.com"]);
    assert_eq!(
        email.raw["personalizations"][0]["to"][0]["name"],
        "Sammy Davis Jr."
    );
    assert_eq!(
        email.text.as_deref(),
        Some("Hello Sammy Davis, Jr., welcome to Acme."),
        "only the name header loses the comma"
    );
    let sms = requests
        .iter()
        .find(|r| r.channel == Channel::Sms)
        .expect("an SMS");
    assert_eq!(sms.from.as_deref(), Some("+15005550006"));
    assert_eq!(sms.to, ["+15550000042"]);
    assert_eq!(stack.messages_with_status("sent").await?, 2);
    Ok(())
}

/// An SMS whose answer was lost, but which Twilio took, is settled as `sent` from Twilio's
/// message list with the sid Twilio gave it; one Twilio refused with a 502 (so does not
/// list) stays `in_doubt`. Nothing is sent twice.
pub async fn an_in_doubt_sms_twilio_lists_is_settled_and_one_it_lacks_waits(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "settle_sms").await?;
    stack.load_example_schedules().await?;
    stack.provider.faults().push([
        Fault {
            channel: Some(Channel::Sms),
            ..Fault::new(FaultKind::Drop)
        },
        Fault {
            channel: Some(Channel::Sms),
            ..Fault::new(FaultKind::ServerError { status: 502 })
        },
    ]);
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let sms_done =
        "SELECT count(*) FROM message WHERE channel = 'sms' AND status IN ('sent', 'in_doubt')";
    let taken = stack.insert_contact(&Contact::default()).await?;
    stack.insert_appointment(taken, "Room 1").await?;
    stack.wait_for_count(sms_done, 1, SOON).await?;
    let refused = stack
        .insert_contact(&Contact {
            email: Some("grace@example.com"),
            phone: "+15550000002",
            ..Contact::default()
        })
        .await?;
    stack.insert_appointment(refused, "Room 2").await?;

    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE channel = 'sms' AND status = 'sent'",
            1,
            SOON,
        )
        .await?;
    // Several settle rounds (300 ms apart in tests) for the one Twilio does not have.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sms = stack.provider.store().list(Some(Channel::Sms), None);
    assert_eq!(sms.len(), 2, "each SMS reached Twilio once: {sms:#?}");
    let dropped = sms.iter().find(|r| r.dropped).context("the dropped call")?;
    assert!(dropped.accepted);
    let rows = stack
        .notify
        .query(
            "SELECT m.recipient, m.status, m.provider_message_id, m.send_attempts, a.outcome,
                    a.error, m.last_error
               FROM message m JOIN delivery_attempt a USING (message_id)
              WHERE m.channel = 'sms' ORDER BY m.recipient",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), 2);
    let (settled, waiting) = (&rows[0], &rows[1]);
    assert_eq!(settled.text(0), "+15550000001");
    assert_eq!(settled.text(1), "sent");
    assert_eq!(settled.opt_text(2), dropped.provider_message_id);
    assert_eq!((settled.int(3), settled.text(4)), (1, "sent".to_owned()));
    let how = settled.text(5);
    assert!(
        how.starts_with("settled: Twilio's message list shows it; in doubt before: no answer"),
        "{how}"
    );
    assert_eq!(waiting.text(0), "+15550000002");
    assert_eq!(waiting.text(1), "in_doubt");
    assert_eq!(waiting.opt_text(2), None);
    assert!(waiting.text(6).contains("502"), "{}", waiting.text(6));
    Ok(())
}

/// Twilio refuses an SMS because its recipient replied STOP (error 21610): the message is
/// `failed` with that reason, the number goes on the tenant's suppression list, and the next
/// SMS to it ends `suppressed` without a call.
pub async fn a_recipient_who_replied_stop_is_suppressed(engine: Engine) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "opted_out").await?;
    stack.load_example_schedules().await?;
    stack.set_schedule_active("welcome-email", false).await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let contact = stack
        .insert_contact(&Contact {
            phone: fake_provider::OPTED_OUT_NUMBER,
            ..Contact::default()
        })
        .await?;
    let appointment = stack.insert_appointment(contact, "Room 1").await?;
    stack.wait_for_status("failed", 1, SOON).await?;
    let error = stack
        .notify
        .query_one("SELECT last_error FROM message", &[])
        .await?
        .text(0);
    assert!(
        error.contains("opted out") && error.contains("21610"),
        "{error}"
    );
    let entry = stack
        .notify
        .query_one("SELECT tenant, channel, address FROM suppression", &[])
        .await?;
    assert_eq!(
        (entry.text(0), entry.text(1), entry.text(2)),
        (
            "acme".to_owned(),
            "sms".to_owned(),
            fake_provider::OPTED_OUT_NUMBER.to_owned()
        )
    );
    stack.move_appointment(appointment, "Room 7").await?;
    stack.wait_for_status("suppressed", 1, SOON).await?;
    assert_eq!(
        stack.provider.store().list(Some(Channel::Sms), None).len(),
        1
    );
    Ok(())
}

/// A 429 that says when the limit resets pauses that provider until then: no email call
/// leaves during the pause (beyond those already on their way), while SMS, on another
/// provider, keep going; at the reset the emails flow again, each sent once.
pub async fn a_rate_limit_pauses_its_provider_until_the_reset_and_not_the_other(
    engine: Engine,
) -> anyhow::Result<()> {
    const PEOPLE: usize = 20;
    let provider = ProviderConfig {
        latency: Duration::from_millis(100),
        ..provider_config()
    };
    let mut stack = Stack::with_provider(engine, "rate_limit_pause", provider).await?;
    stack.load_example_schedules().await?;
    stack.set(Service::Sender, "HERALD__SENDER__MAX_IN_FLIGHT", "2");
    stack.provider.faults().push([Fault {
        channel: Some(Channel::Email),
        ..Fault::new(FaultKind::RateLimit {
            reset_after_secs: 3,
        })
    }]);
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    for n in 0..PEOPLE {
        let email = format!("person{n}@example.com");
        let phone = format!("+1555000{n:04}");
        let contact = Contact {
            email: Some(&email),
            phone: &phone,
            ..Contact::default()
        };
        let contact = stack.insert_contact(&contact).await?;
        stack.insert_appointment(contact, "Room 1").await?;
    }
    stack.wait_for_accepted(2 * PEOPLE, SOON).await?;

    let requests = stack.provider.store().list(None, None);
    let limited = requests
        .iter()
        .find(|r| r.status == Some(429))
        .context("the 429")?;
    // From a moment after the 429 (calls already on their way) until shortly before the reset.
    let from = limited.answered_at + chrono::Duration::milliseconds(300);
    let to = limited.answered_at + chrono::Duration::milliseconds(2_500);
    let during = |channel: Channel| {
        requests
            .iter()
            .filter(|r| r.channel == channel && r.received_at > from && r.received_at < to)
            .count()
    };
    assert_eq!(during(Channel::Email), 0, "emails sent while rate limited");
    assert!(during(Channel::Sms) > 0, "SMS held up by SendGrid's limit");
    assert_eq!(
        stack
            .provider
            .store()
            .count(Some(Channel::Email), Some(true)),
        PEOPLE,
        "every email once"
    );
    Ok(())
}
