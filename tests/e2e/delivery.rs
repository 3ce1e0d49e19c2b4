//! What the provider sees: throttling honoured, refusals recorded with the provider's
//! reason, merge values escaped in HTML and intact in text and SMS, names and settings in
//! the form the provider accepts.

use std::time::Duration;

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

    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE status = 'failed'",
            1,
            SOON,
        )
        .await?;
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
