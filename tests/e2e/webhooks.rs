//! Providers talk back: SendGrid's signed events, posted by the fake provider as SendGrid
//! posts them, are recorded once each; an email whose answer was lost is settled as `sent` by
//! its events; a hard bounce suppresses its address, so it is never mailed again; a forged,
//! stale or unsigned post changes nothing, and a repeated one nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use fake_provider::{
    Channel, Fault, FaultKind, SIGNATURE_HEADER, TIMESTAMP_HEADER, TWILIO_SIGNATURE_HEADER,
    parse_outcomes, sendgrid_verification_key, sign_sendgrid_events, sign_twilio_request,
};
use herald_tests::{
    Contact, Engine, SOON, Service, Stack, free_address, provider_config, wait_until,
};

/// `SELECT count(*) FROM delivery_event`.
async fn events(stack: &Stack) -> anyhow::Result<i64> {
    stack
        .notify
        .count("SELECT count(*) FROM delivery_event", &[])
        .await
}

/// A stack whose fake provider posts SendGrid's signed events to the sender, which takes them
/// with the fake's verification key; the welcome emails only. Returns it and the events URL.
async fn with_sendgrid_events(engine: Engine, test: &str) -> anyhow::Result<(Stack, String)> {
    let webhook = free_address()?;
    let url = format!("http://{webhook}/webhooks/sendgrid");
    let provider = fake_provider::Config {
        sendgrid_events_url: Some(url.clone()),
        ..provider_config()
    };
    let mut stack = Stack::with_provider(engine, test, provider).await?;
    stack.load_welcome_schedule().await?;
    stack.set(Service::Sender, "HERALD__WEBHOOKS__LISTEN", &webhook);
    let key = sendgrid_verification_key();
    stack.set(
        Service::Sender,
        "HERALD__WEBHOOKS__SENDGRID_VERIFICATION_KEY",
        &key,
    );
    Ok((stack, url))
}

pub async fn sendgrid_events_settle_doubt_suppress_bounces_and_forgeries_change_nothing(
    engine: Engine,
) -> anyhow::Result<()> {
    let (mut stack, url) = with_sendgrid_events(engine, "sendgrid_events").await?;
    // SendGrid takes the first email, but its answer never arrives: in doubt.
    stack.provider.faults().push([Fault {
        channel: Some(Channel::Email),
        ..Fault::new(FaultKind::Drop)
    }]);
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    stack.insert_contact_to("lost@example.com").await?;
    stack.insert_contact_to("fine@example.com").await?;

    // Both end sent, each with two events (processed, delivered), none resent.
    stack.wait_for_status("sent", 2, SOON).await?;
    stack
        .wait_for_count("SELECT count(*) FROM delivery_event", 4, SOON)
        .await?;
    let received = stack.provider.store().list(Some(Channel::Email), None);
    assert_eq!(received.len(), 2, "each email reached SendGrid once");
    let lost = received
        .iter()
        .find(|r| r.dropped)
        .context("the email whose answer was lost")?;
    let row = stack
        .notify
        .query_one(
            "SELECT m.provider_message_id, m.send_attempts, a.outcome, a.error, m.sent_at IS NOT NULL
               FROM message m JOIN delivery_attempt a USING (message_id)
              WHERE m.recipient = $1",
            &[lost.to[0].as_str().into()],
        )
        .await?;
    assert_eq!(row.opt_text(0), lost.provider_message_id);
    assert_eq!((row.int(1), row.text(2)), (1, "sent".to_owned()));
    let how = row.text(3);
    assert!(
        how.starts_with("settled: the provider reported ")
            && how.contains("; in doubt before: no answer"),
        "{how}"
    );
    let recorded = stack
        .notify
        .query(
            "SELECT m.recipient, e.event, e.reason, e.provider_message_id = m.provider_message_id
               FROM delivery_event e JOIN message m USING (message_id)
              ORDER BY m.recipient, e.event",
            &[],
        )
        .await?;
    let recorded: Vec<(String, String, Option<String>, bool)> = recorded
        .iter()
        .map(|r| (r.text(0), r.text(1), r.opt_text(2), r.bool(3)))
        .collect();
    let expected = |to: &str| {
        [
            (
                to.to_owned(),
                "delivered".to_owned(),
                Some("250 OK".to_owned()),
                true,
            ),
            (to.to_owned(), "processed".to_owned(), None, true),
        ]
    };
    assert_eq!(
        recorded,
        [expected("fine@example.com"), expected("lost@example.com")].concat()
    );

    // Posts SendGrid did not sign, or signed long ago, are refused and change nothing.
    let client = reqwest::Client::new();
    let post = |body: String, timestamp: String, signature: Option<String>| {
        let mut request = client
            .post(&url)
            .header(TIMESTAMP_HEADER, timestamp)
            .body(body);
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        async move {
            let answer = request.send().await?;
            anyhow::Ok((answer.status().as_u16(), answer.text().await?))
        }
    };
    let fine_id = stack
        .notify
        .count(
            "SELECT message_id FROM message WHERE recipient = 'fine@example.com'",
            &[],
        )
        .await?;
    let bounce = |event_id: &str| {
        format!(
            r#"[{{"email":"fine@example.com","timestamp":{},"event":"bounce","type":"bounce","sg_event_id":"{event_id}","herald_message_id":"{fine_id}","reason":"550 5.1.1 no such user"}}]"#,
            chrono::Utc::now().timestamp()
        )
    };
    let now = chrono::Utc::now().timestamp().to_string();
    let body = bounce("forged");
    let signature = sign_sendgrid_events(&now, body.as_bytes());
    let altered = body.replace("no such user", "no such user!");
    let (status, text) = post(altered, now.clone(), Some(signature)).await?;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("does not match"), "{text}");
    let (status, text) = post(body.clone(), now.clone(), None).await?;
    assert_eq!(status, 401, "{text}");
    // Signed longer ago than SendGrid retries (`max_age`, 25 h).
    let stale = (chrono::Utc::now().timestamp() - 26 * 3600).to_string();
    let signature = sign_sendgrid_events(&stale, body.as_bytes());
    let (status, text) = post(body, stale, Some(signature)).await?;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("replay"), "{text}");
    assert_eq!(events(&stack).await?, 4);

    // A genuine post is recorded once, however often it comes.
    let body = bounce("genuine-1");
    let signature = sign_sendgrid_events(&now, body.as_bytes());
    for expected in ["recorded 1 new event(s)", "recorded 0 new event(s)"] {
        let (status, text) = post(body.clone(), now.clone(), Some(signature.clone())).await?;
        assert_eq!((status, text.trim()), (200, expected));
    }
    assert_eq!(events(&stack).await?, 5);
    assert_eq!(stack.messages_with_status("sent").await?, 2);
    // Support sees the provider's latest word.
    let log = stack
        .notify
        .query_one(
            "SELECT last_event, last_event_reason FROM message_log
              WHERE recipient = 'fine@example.com'",
            &[],
        )
        .await?;
    assert_eq!(
        (log.text(0), log.opt_text(1)),
        (
            "bounce".to_owned(),
            Some("550 5.1.1 no such user".to_owned())
        )
    );

    // `heraldctl trace` shows what SendGrid reported, in order.
    let (code, document) = stack.heraldctl_json(&["trace", "fine@example.com"]).await?;
    assert_eq!(code, 0, "{document:#}");
    let reported: Vec<&str> = document["messages"][0]["provider"]["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        reported,
        ["processed", "delivered", "bounce"],
        "{document:#}"
    );
    let (_, text) = stack.heraldctl(&["trace", "fine@example.com"]).await?;
    assert!(
        text.lines().any(|line| line.starts_with("  event ")
            && line.ends_with("sendgrid bounce: 550 5.1.1 no such user")),
        "{text}"
    );

    // The hard bounce put the address on the tenant's suppression list, with its event: the
    // next message to it (in any letter case) is not sent.
    let entry = stack
        .notify
        .query_one(
            "SELECT tenant, channel, address, reason, source FROM suppression",
            &[],
        )
        .await?;
    let entry: Vec<String> = (0..5).map(|column| entry.text(column)).collect();
    assert_eq!(
        entry,
        [
            "acme",
            "email",
            "fine@example.com",
            "bounce: 550 5.1.1 no such user",
            "sendgrid:genuine-1"
        ]
    );
    stack.insert_contact_to("Fine@Example.com").await?;
    stack.wait_for_status("suppressed", 1, SOON).await?;
    let received = stack.provider.store().list(Some(Channel::Email), None);
    assert_eq!(received.len(), 2, "nothing mailed to the bounced address");

    // An operator sees the entry and, the mailbox fixed, takes it off: mailed again.
    let (code, document) = stack
        .heraldctl_json(&["suppression", "list", "--tenant", "acme"])
        .await?;
    assert_eq!(code, 0, "{document:#}");
    let entries = document["entries"].as_array().context("entries")?;
    assert_eq!(entries.len(), 1, "{document:#}");
    assert_eq!(entries[0]["address"], "fine@example.com");
    assert_eq!(entries[0]["source"], "sendgrid:genuine-1");
    let remove = [
        "suppression",
        "remove",
        "acme",
        "email",
        "FINE@example.com",
        "--by",
        "alice",
        "--reason",
        "mailbox fixed",
    ];
    let (code, text) = stack.heraldctl(&remove).await?;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("no longer suppressed"), "{text}");
    let (code, text) = stack.heraldctl(&remove).await?;
    assert_eq!(code, 1, "nothing left to remove: {text}");
    let kept = stack
        .notify
        .query_one(
            "SELECT address, removed_by, removed_why FROM suppression_removed",
            &[],
        )
        .await?;
    assert_eq!(
        (kept.text(0), kept.text(1), kept.text(2)),
        (
            "fine@example.com".to_owned(),
            "alice".to_owned(),
            "mailbox fixed".to_owned()
        )
    );
    stack.insert_contact_to("fine@example.com").await?;
    stack.wait_for_accepted(3, SOON).await?;

    // An event without our id finds its message through SendGrid's, as earlier events named it.
    let sendgrid_id = stack
        .notify
        .query_one(
            "SELECT provider_message_id FROM message WHERE message_id = $1",
            &[fine_id.into()],
        )
        .await?
        .text(0);
    let body = format!(
        r#"[{{"email":"fine@example.com","timestamp":{now},"event":"open","sg_event_id":"open-1","sg_message_id":"{sendgrid_id}.filterdrecv-1-0"}}]"#
    );
    let signature = sign_sendgrid_events(&now, body.as_bytes());
    let (status, text) = post(body, now.clone(), Some(signature)).await?;
    assert_eq!((status, text.trim()), (200, "recorded 1 new event(s)"));
    let opened = stack
        .notify
        .count(
            "SELECT message_id FROM delivery_event WHERE event_id = 'open-1'",
            &[],
        )
        .await?;
    assert_eq!(opened, fine_id);
    Ok(())
}

/// A sender killed inside its calls, again and again, leaves messages in doubt; those SendGrid
/// took are settled as `sent` by its events (posted again while the sender is down, as
/// SendGrid does, and recorded before the messages are declared in doubt), with no person
/// involved. Only one SendGrid never received could stay in doubt. Nothing is sent twice.
pub async fn a_sender_killed_in_its_calls_leaves_nothing_in_doubt_that_sendgrid_has(
    engine: Engine,
) -> anyhow::Result<()> {
    const CHANGES: usize = 30;
    let (mut stack, _) = with_sendgrid_events(engine, "kill_storm_events").await?;
    // Unnamed, as senders run by default: a restarted one is another instance, so the calls
    // cut by a kill stay `sending` until their lease runs out (10 s here) while their events
    // arrive; only then are they in doubt, and settled by the events already recorded.
    stack.set(Service::Sender, "HERALD__SENDER__INSTANCE_ID", "");
    // Slow answers, so that kills land inside calls.
    let mut slow = Fault::new(FaultKind::Slow { delay_ms: 300 });
    slow.times = CHANGES as u32;
    stack.provider.faults().push([slow]);
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;

    let mut killed_sending = 0;
    for i in 0..CHANGES {
        stack
            .insert_contact_to(&format!("storm{i}@example.com"))
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if i % 10 == 9 {
            wait_until(SOON, || async {
                Ok((stack.messages_with_status("sending").await? > 0).then_some(()))
            })
            .await?;
            // Inside the calls: their requests have reached SendGrid, which answers late.
            tokio::time::sleep(Duration::from_millis(100)).await;
            stack.kill(Service::Sender).await?;
            killed_sending += stack.messages_with_status("sending").await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            stack.start(Service::Sender).await?;
        }
    }
    assert!(killed_sending >= 3, "each kill landed inside a call");

    // Every message SendGrid took ends sent, once; none of them waits for a person.
    let taken: BTreeSet<String> = stack
        .accepted()
        .iter()
        .filter_map(|received| received.custom_args.get("herald_message_id").cloned())
        .collect();
    let settled = wait_until(SOON, || async {
        let rows = stack
            .notify
            .query("SELECT message_id, status FROM message", &[])
            .await?;
        let taken = stack.accepted();
        let done = rows.len() == CHANGES
            && rows.iter().all(|row| {
                let id = row.int(0).to_string();
                let took = taken
                    .iter()
                    .any(|r| r.custom_args.get("herald_message_id") == Some(&id));
                match row.text(1).as_str() {
                    "sent" => true,
                    "in_doubt" => !took,
                    _ => false,
                }
            });
        Ok(done.then_some(rows))
    })
    .await
    .with_context(|| format!("SendGrid took {} of {CHANGES}", taken.len()))?;
    let accepted = stack.accepted();
    let mut sends: BTreeMap<String, usize> = BTreeMap::new();
    for received in &accepted {
        let id = received
            .custom_args
            .get("herald_message_id")
            .cloned()
            .unwrap_or_default();
        *sends.entry(id).or_default() += 1;
    }
    assert!(sends.values().all(|&n| n == 1), "sent twice: {sends:?}");
    let sent = settled.iter().filter(|row| row.text(1) == "sent").count();
    assert_eq!(sent, sends.len(), "every message SendGrid took is sent");
    let settled_by_events = stack
        .notify
        .count(
            "SELECT count(*) FROM delivery_attempt
              WHERE outcome = 'sent' AND error LIKE 'settled: the provider reported %'",
            &[],
        )
        .await?;
    assert!(
        settled_by_events >= 1,
        "some calls cut by the kills were settled by their events"
    );
    println!(
        "{CHANGES} changes, 3 kills: {} calls cut, {settled_by_events} settled by SendGrid's events, {} in doubt",
        killed_sending,
        CHANGES - sent
    );
    Ok(())
}

/// Twilio's signed status callbacks settle an SMS whose answer was lost, each status recorded
/// once; a STOP (error 21610) suppresses the number, so the next SMS to it is not sent; a
/// callback Twilio did not sign changes nothing.
pub async fn twilio_callbacks_settle_doubt_and_a_stop_suppresses(
    engine: Engine,
) -> anyhow::Result<()> {
    let webhook = free_address()?;
    let public_url = format!("http://{webhook}");
    let mut stack = Stack::new(engine, "twilio_callbacks").await?;
    stack.load_example_schedules().await?;
    stack.set_schedule_active("welcome-email", false).await?;
    stack.set(Service::Sender, "HERALD__WEBHOOKS__LISTEN", &webhook);
    stack.set(Service::Sender, "HERALD__WEBHOOKS__PUBLIC_URL", &public_url);
    // Only the callbacks may settle it here, not Twilio's message list.
    stack.set(Service::Sender, "HERALD__SENDER__SETTLE_INTERVAL", "0s");
    stack.provider.faults().push([Fault {
        channel: Some(Channel::Sms),
        ..Fault::new(FaultKind::Drop)
    }]);
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let contact = stack
        .insert_contact(&herald_tests::Contact::default())
        .await?;
    let appointment = stack.insert_appointment(contact, "Room 1").await?;

    stack.wait_for_status("sent", 1, SOON).await?;
    stack
        .wait_for_count("SELECT count(*) FROM delivery_event", 2, SOON)
        .await?;
    let sms = stack.provider.store().list(Some(Channel::Sms), None);
    assert_eq!(sms.len(), 1);
    let sid = sms[0].provider_message_id.clone().context("the sid")?;
    let row = stack
        .notify
        .query_one(
            "SELECT m.message_id, m.provider_message_id, a.error FROM message m
               JOIN delivery_attempt a USING (message_id)",
            &[],
        )
        .await?;
    let message_id = row.int(0);
    assert_eq!(row.opt_text(1).as_deref(), Some(sid.as_str()));
    assert!(
        row.text(2).starts_with("settled: the provider reported "),
        "{}",
        row.text(2)
    );
    let statuses = stack
        .notify
        .query(
            "SELECT event_id, event FROM delivery_event WHERE provider = 'twilio' ORDER BY occurred_at",
            &[],
        )
        .await?;
    let statuses: Vec<(String, String)> = statuses.iter().map(|r| (r.text(0), r.text(1))).collect();
    assert_eq!(
        statuses,
        [
            (format!("{sid}:sent"), "sent".to_owned()),
            (format!("{sid}:delivered"), "delivered".to_owned())
        ]
    );

    // The recipient replies STOP: Twilio reports error 21610 on the next status.
    let url = format!("{public_url}/webhooks/twilio?message_id={message_id}");
    let params: Vec<(String, String)> = [
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "21610"),
        ("To", "+15550000001"),
        ("AccountSid", herald_tests::TWILIO_SID),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let body = serde_urlencoded::to_string(&params)?;
    let client = reqwest::Client::new();
    let post = |signature: String| {
        client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(TWILIO_SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
    };
    let forged = sign_twilio_request("not-the-token", &url, &params);
    assert_eq!(post(forged).await?.status(), 403);
    assert_eq!(
        events(&stack).await?,
        2,
        "a forged callback changes nothing"
    );
    let signed = sign_twilio_request(herald_tests::TWILIO_TOKEN, &url, &params);
    assert_eq!(post(signed.clone()).await?.status(), 200);
    assert_eq!(post(signed).await?.status(), 200);
    assert_eq!(events(&stack).await?, 3, "each status once");
    let entry = stack
        .notify
        .query_one(
            "SELECT channel, address, reason, source FROM suppression",
            &[],
        )
        .await?;
    let entry: Vec<String> = (0..4).map(|column| entry.text(column)).collect();
    assert_eq!(
        entry,
        [
            "sms".to_owned(),
            "+15550000001".to_owned(),
            "undelivered: 21610".to_owned(),
            format!("twilio:{sid}:undelivered")
        ]
    );
    stack.move_appointment(appointment, "Room 7").await?;
    stack.wait_for_status("suppressed", 1, SOON).await?;
    assert_eq!(
        stack.provider.store().list(Some(Channel::Sms), None).len(),
        1
    );
    Ok(())
}

/// What the providers report after taking a message, as the fake provider reports it for
/// each recipient: a hard bounce, a drop for a bounced address, a spam report and a STOP
/// (Twilio 21610) put the address on the tenant's suppression list, so the next message to it
/// is not sent; a temporary block, a deferral and an unreachable handset do not. Support sees
/// each message's latest report in `message_log`.
pub async fn reported_bounces_drops_complaints_and_stops_suppress_their_addresses(
    engine: Engine,
) -> anyhow::Result<()> {
    let webhook = free_address()?;
    let public_url = format!("http://{webhook}");
    let outcomes = parse_outcomes(
        r#"[{"to":"bounce@example.com","report":"bounce"},
            {"to":"gone@example.com","report":"dropped"},
            {"to":"spam@example.com","report":"spamreport"},
            {"to":"busy@example.com","report":"blocked"},
            {"to":"slow@example.com","report":"deferred","delay_ms":200},
            {"to":"+15550000002","report":"undelivered","error_code":21610},
            {"to":"+15550000003","report":"undelivered"}]"#,
    )
    .map_err(anyhow::Error::msg)?;
    let provider = fake_provider::Config {
        sendgrid_events_url: Some(format!("{public_url}/webhooks/sendgrid")),
        outcomes,
        ..provider_config()
    };
    let mut stack = Stack::with_provider(engine, "provider_reports", provider).await?;
    stack.load_example_schedules().await?;
    stack.set(Service::Sender, "HERALD__WEBHOOKS__LISTEN", &webhook);
    stack.set(Service::Sender, "HERALD__WEBHOOKS__PUBLIC_URL", &public_url);
    let key = sendgrid_verification_key();
    stack.set(
        Service::Sender,
        "HERALD__WEBHOOKS__SENDGRID_VERIFICATION_KEY",
        &key,
    );
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    // A welcome email each; an appointment SMS to the last two.
    let people = [
        ("bounce@example.com", "+15550000001"),
        ("gone@example.com", "+15550000001"),
        ("spam@example.com", "+15550000001"),
        ("slow@example.com", "+15550000001"),
        ("busy@example.com", "+15550000002"),
        ("fine@example.com", "+15550000003"),
    ];
    let mut appointments = Vec::new();
    for (n, (email, phone)) in people.iter().enumerate() {
        let contact = Contact {
            email: Some(email),
            phone,
            ..Contact::default()
        };
        let contact = stack.insert_contact(&contact).await?;
        if n >= 4 {
            appointments.push(stack.insert_appointment(contact, "Room 1").await?);
        }
    }
    // processed + bounce, + dropped, + delivered + spamreport, + deferred + delivered,
    // + bounce (blocked), + delivered; sent + undelivered twice.
    stack
        .wait_for_count("SELECT count(*) FROM delivery_event", 18, SOON)
        .await?;
    stack.wait_for_status("sent", 8, SOON).await?;

    let log = stack
        .notify
        .query(
            "SELECT recipient, last_event, last_event_reason FROM message_log ORDER BY recipient",
            &[],
        )
        .await?;
    let log: Vec<(String, String, Option<String>)> = log
        .iter()
        .map(|r| (r.text(0), r.text(1), r.opt_text(2)))
        .collect();
    let entry = |to: &str, event: &str, reason: Option<&str>| {
        (to.to_owned(), event.to_owned(), reason.map(str::to_owned))
    };
    assert_eq!(
        log,
        [
            entry("+15550000002", "undelivered", Some("21610")),
            entry("+15550000003", "undelivered", Some("30003")),
            entry(
                "bounce@example.com",
                "bounce",
                Some("550 5.1.1 The email account that you tried to reach does not exist")
            ),
            entry(
                "busy@example.com",
                "bounce",
                Some("421 4.7.1 Temporarily rate limited; try again later")
            ),
            entry("fine@example.com", "delivered", Some("250 OK")),
            entry("gone@example.com", "dropped", Some("Bounced Address")),
            entry("slow@example.com", "delivered", Some("250 OK")),
            entry("spam@example.com", "spamreport", None),
        ]
    );

    let suppressed = stack
        .notify
        .query(
            "SELECT channel, address, reason FROM suppression ORDER BY channel, address",
            &[],
        )
        .await?;
    let suppressed: Vec<[String; 3]> = suppressed
        .iter()
        .map(|r| [r.text(0), r.text(1), r.text(2)])
        .collect();
    let entry =
        |channel: &str, address: &str, reason: &str| [channel, address, reason].map(str::to_owned);
    assert_eq!(
        suppressed,
        [
            entry(
                "email",
                "bounce@example.com",
                "bounce: 550 5.1.1 The email account that you tried to reach does not exist"
            ),
            entry("email", "gone@example.com", "dropped: Bounced Address"),
            entry("email", "spam@example.com", "spamreport"),
            entry("sms", "+15550000002", "undelivered: 21610"),
        ]
    );

    // Everyone again: the suppressed addresses get nothing, the others their messages.
    for (email, phone) in people {
        let contact = Contact {
            email: Some(email),
            phone,
            ..Contact::default()
        };
        stack.insert_contact(&contact).await?;
    }
    for appointment in appointments {
        stack.move_appointment(appointment, "Room 7").await?;
    }
    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE status IN ('sent', 'suppressed')",
            16,
            SOON,
        )
        .await?;
    let suppressed = stack
        .notify
        .query(
            "SELECT recipient FROM message WHERE status = 'suppressed' ORDER BY recipient",
            &[],
        )
        .await?;
    let suppressed: Vec<String> = suppressed.iter().map(|r| r.text(0)).collect();
    assert_eq!(
        suppressed,
        [
            "+15550000002",
            "bounce@example.com",
            "gone@example.com",
            "spam@example.com"
        ]
    );
    assert_eq!(stack.accepted_count(), 12, "8, then 4 not suppressed");
    Ok(())
}
