//! The operator's command line on a known state: `heraldctl schedules`, `schedule
//! pause|resume`, `trace`, `in-doubt list|resolve` and `requeue`, in text and in JSON, checked
//! against what the database holds; every action recorded with who and why, and only on
//! messages in the right status.

use std::time::Duration;

use anyhow::Context;
use fake_provider::{Channel, Fault, FaultKind};
use herald_tests::{Contact, Engine, SOON, Stack, wait_until};
use serde_json::Value;

/// The operator actions recorded, in order: (action, message or schedule id, from, to,
/// actor, reason).
async fn operator_actions(stack: &Stack) -> anyhow::Result<Vec<[String; 6]>> {
    let rows = stack
        .notify
        .query(
            "SELECT action, coalesce(message_id, schedule_id), from_status, to_status, actor,
                    reason
               FROM operator_action ORDER BY action_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            [
                row.text(0),
                row.int(1).to_string(),
                row.opt_text(2).unwrap_or_default(),
                row.opt_text(3).unwrap_or_default(),
                row.text(4),
                row.opt_text(5).unwrap_or_default(),
            ]
        })
        .collect())
}

fn action(fields: [&str; 6]) -> [String; 6] {
    fields.map(str::to_owned)
}

/// `heraldctl in-doubt resolve ID HOW` by alice, for `why`.
async fn resolve(stack: &Stack, id: &str, how: &str, why: &str) -> anyhow::Result<(i32, String)> {
    let args = [
        "in-doubt", "resolve", id, how, "--by", "alice", "--reason", why,
    ];
    stack.heraldctl(&args).await
}

/// The JSON entry of schedule `name` in `heraldctl schedules --json`.
fn schedule_entry<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["schedules"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no schedule {name} in {document:#}"))
}

/// The line of a table that names `name` (as a whole cell).
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|line| line.split_whitespace().any(|cell| cell == name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

pub async fn schedules_show_their_state_and_pause_and_resume(engine: Engine) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "operate_schedules").await?;
    stack.load_example_schedules().await?;
    stack.add_schedule_without_table().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    let contact_id = stack.insert_contact(&Contact::default()).await?;
    stack.wait_for_accepted(1, SOON).await?;
    stack
        .wait_for_count(
            "SELECT count(*) FROM schedule WHERE error IS NOT NULL",
            1,
            SOON,
        )
        .await?;

    // The hold-back line moves at every poll: the one printed lies between two reads of it.
    let hold_back_sql = "SELECT w.hold_back FROM detector_watermark w
                           JOIN schedule s ON s.schedule_id = w.schedule_id
                          WHERE s.name = 'welcome-email'";
    let before = stack.notify.query_one(hold_back_sql, &[]).await?.time(0);
    let (code, document) = stack.heraldctl_json(&["schedules"]).await?;
    let after = stack.notify.query_one(hold_back_sql, &[]).await?.time(0);
    assert_eq!(code, 1, "an active schedule has an error: {document:#}");
    let stored = stack
        .notify
        .query(
            "SELECT s.schedule_id, s.name, s.error, w.change_value, w.key_value
               FROM schedule s LEFT JOIN detector_watermark w ON w.schedule_id = s.schedule_id
              ORDER BY s.tenant, s.name",
            &[],
        )
        .await?;
    assert_eq!(document["schedules"].as_array().map(Vec::len), Some(3));
    for row in &stored {
        let entry = schedule_entry(&document, &row.text(1));
        assert_eq!(entry["schedule_id"], row.int(0));
        assert_eq!(entry["error"].as_str(), row.opt_text(2).as_deref());
    }
    let welcome = schedule_entry(&document, "welcome-email");
    assert_eq!(welcome["activity"], "running", "{welcome:#}");
    assert_eq!(welcome["detector"], "detector-1");
    let printed: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(welcome["hold_back"].clone())?;
    assert!(
        before <= printed && printed <= after,
        "hold-back line {printed} not between {before} and {after}"
    );
    let age = welcome["hold_back_age_seconds"].as_f64().unwrap_or(-1.0);
    assert!((0.0..30.0).contains(&age), "hold-back age {age}");
    let frontier = stored
        .iter()
        .find(|r| r.text(1) == "welcome-email")
        .unwrap();
    assert_eq!(welcome["frontier"]["key"], contact_id.to_string());
    assert_eq!(
        welcome["frontier"]["key"].as_str(),
        frontier.opt_text(4).as_deref()
    );
    assert_eq!(
        welcome["frontier"]["change"].as_str(),
        frontier.opt_text(3).as_deref()
    );
    let broken = schedule_entry(&document, "no-table");
    assert_eq!(broken["activity"], "error");
    assert_eq!(broken["hold_back"], Value::Null);

    // `audit` in JSON: once the line has passed the contact, its row is checked and queued.
    let created = stack
        .source
        .query_one(
            "SELECT created_at FROM crm.contact WHERE contact_id = $1",
            &[contact_id.into()],
        )
        .await?
        .time(0);
    wait_until(SOON, || async {
        let line = stack.notify.query_one(hold_back_sql, &[]).await?.time(0);
        Ok((line > created).then_some(()))
    })
    .await?;
    let audit = ["audit", "--schedule", "acme/welcome-email", "--from", "1h"];
    let (code, document) = stack.heraldctl_json(&audit).await?;
    assert_eq!(code, 0, "{document:#}");
    assert_eq!(document["schedule_id"], welcome["schedule_id"]);
    assert_eq!(document["rows_checked"], 1, "{document:#}");
    assert_eq!(document["missing"], serde_json::json!([]));

    let (code, text) = stack.heraldctl(&["schedules"]).await?;
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("ID "), "{text}");
    let line = line_of(&text, "welcome-email");
    assert!(
        line.contains(" running ") && line.contains(&format!(" / {contact_id} ")),
        "{line}"
    );
    let broken_error = broken["error"].as_str().unwrap_or_default();
    assert!(
        line_of(&text, "no-table").contains(" error ")
            && line_of(&text, "no-table").contains(broken_error),
        "{text}"
    );

    // Pause: inactive, recorded with who and why; pausing again changes nothing.
    let pause = [
        "schedule",
        "pause",
        "acme",
        "appointment-sms",
        "--by",
        "alice",
        "--reason",
        "merge function being fixed",
    ];
    let (code, text) = stack.heraldctl(&pause).await?;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("paused by alice"), "{text}");
    let sms_id = stored
        .iter()
        .find(|r| r.text(1) == "appointment-sms")
        .unwrap()
        .int(0)
        .to_string();
    let paused = action([
        "pause",
        &sms_id,
        "",
        "",
        "alice",
        "merge function being fixed",
    ]);
    assert_eq!(
        operator_actions(&stack).await?,
        std::slice::from_ref(&paused)
    );
    let active_sql = "SELECT count(*) FROM schedule WHERE name = 'appointment-sms' AND active = $1";
    assert_eq!(stack.notify.count(active_sql, &[false.into()]).await?, 1);
    let (code, document) = stack.heraldctl_json(&pause).await?;
    assert_eq!((code, &document["changed"]), (0, &Value::Bool(false)));
    assert_eq!(
        operator_actions(&stack).await?,
        std::slice::from_ref(&paused)
    );

    let (_, document) = stack.heraldctl_json(&["schedules"]).await?;
    let sms = schedule_entry(&document, "appointment-sms");
    assert_eq!(sms["activity"], "paused");
    assert_eq!(sms["last_action"]["actor"], "alice");
    assert_eq!(sms["last_action"]["reason"], "merge function being fixed");

    // Paused, its table's changes wait; resumed, the detector goes on from its mark.
    stack.insert_appointment(contact_id, "Room 1").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack
            .notify
            .count("SELECT count(*) FROM message WHERE channel = 'sms'", &[])
            .await?,
        0,
        "a paused schedule is not polled"
    );
    let resume = [
        "schedule",
        "resume",
        "acme",
        "appointment-sms",
        "--by",
        "bob",
    ];
    let (code, text) = stack.heraldctl(&resume).await?;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("resumed by bob"), "{text}");
    assert_eq!(stack.notify.count(active_sql, &[true.into()]).await?, 1);
    let resumed = action(["resume", &sms_id, "", "", "bob", ""]);
    assert_eq!(operator_actions(&stack).await?, [paused, resumed]);
    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE channel = 'sms' AND status = 'sent'",
            1,
            SOON,
        )
        .await?;

    let (code, text) = stack
        .heraldctl(&["schedule", "pause", "acme", "nope"])
        .await?;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no schedule acme/nope"), "{text}");
    Ok(())
}

/// Three emails get a 502 (the provider may have taken them): each is `in_doubt`, listed, and
/// settled by an operator — resent exactly once, declared sent, declared failed and then
/// requeued — and only messages in the right status move.
pub async fn in_doubt_messages_are_listed_and_settled_once(engine: Engine) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "operate_in_doubt").await?;
    stack.load_welcome_schedule().await?;
    stack.provider.faults().push([Fault {
        channel: Some(Channel::Email),
        times: 3,
        ..Fault::new(FaultKind::ServerError { status: 502 })
    }]);
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let addresses = [
        "resend@example.com",
        "sent@example.com",
        "failed@example.com",
    ];
    for address in addresses {
        stack.insert_contact_to(address).await?;
        // One at a time, so each gets its own fault.
        let in_doubt = "SELECT count(*) FROM message WHERE status = 'in_doubt' AND recipient = $1";
        wait_until(SOON, || async {
            Ok((stack.notify.count(in_doubt, &[address.into()]).await? == 1).then_some(()))
        })
        .await
        .with_context(|| format!("{address} in doubt"))?;
    }
    let stored = stack
        .notify
        .query(
            "SELECT message_id, recipient, last_error, send_attempts FROM message
              WHERE status = 'in_doubt' ORDER BY updated_at, message_id",
            &[],
        )
        .await?;
    let ids: Vec<String> = stored.iter().map(|row| row.int(0).to_string()).collect();
    let id_of = |address: &str| {
        stored
            .iter()
            .find(|row| row.text(1) == address)
            .map(|row| row.int(0).to_string())
            .expect("each address has a message")
    };
    let (resend, sent, failed) = (
        id_of(addresses[0]),
        id_of(addresses[1]),
        id_of(addresses[2]),
    );

    // Listed as the database holds them.
    let (code, document) = stack.heraldctl_json(&["in-doubt", "list"]).await?;
    assert_eq!(code, 1, "messages wait for a person: {document:#}");
    assert_eq!(document["total"], 3);
    let listed = document["messages"].as_array().cloned().unwrap_or_default();
    let listed_ids: Vec<String> = listed.iter().map(|m| m["message_id"].to_string()).collect();
    assert_eq!(listed_ids, ids);
    for (entry, row) in listed.iter().zip(&stored) {
        assert_eq!(entry["recipient"].as_str(), Some(row.text(1).as_str()));
        assert_eq!(entry["last_error"].as_str(), row.opt_text(2).as_deref());
        assert_eq!(entry["send_attempts"], row.int(3));
        assert_eq!(entry["status"], "in_doubt");
    }
    let (code, text) = stack.heraldctl(&["in-doubt", "list"]).await?;
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("3 message(s) in doubt\n"), "{text}");
    for row in &stored {
        let line = line_of(&text, &row.text(1));
        assert!(
            line.starts_with(&format!("{} ", row.int(0))) && line.contains("502"),
            "{line}"
        );
    }

    // Settled, each recorded with who and why.
    let (code, text) = resolve(
        &stack,
        &resend,
        "--resend",
        "not in the provider's activity",
    )
    .await?;
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text,
        format!("message {resend}: in_doubt -> queued (resolve_resend, by alice)\n")
    );
    let (code, text) = resolve(
        &stack,
        &sent,
        "--sent",
        "delivered per the provider's activity",
    )
    .await?;
    assert_eq!(code, 0, "{text}");
    let (code, text) = resolve(&stack, &failed, "--failed", "address closed").await?;
    assert_eq!(code, 0, "{text}");

    // Resent exactly once: one more call, accepted, and nothing after it.
    stack
        .wait_for_count(
            &format!(
                "SELECT count(*) FROM message WHERE message_id = {resend} AND status = 'sent'"
            ),
            1,
            SOON,
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls_to = |address: &str, accepted: Option<bool>| {
        stack
            .provider
            .store()
            .list(None, accepted)
            .iter()
            .filter(|r| r.to.iter().any(|to| to == address))
            .count()
    };
    assert_eq!(calls_to(addresses[0], None), 2, "the 502, then the resend");
    assert_eq!(calls_to(addresses[0], Some(true)), 1);
    assert_eq!(calls_to(addresses[1], None), 1, "declared sent: not resent");
    assert_eq!(
        calls_to(addresses[2], None),
        1,
        "declared failed: not resent"
    );
    let states = stack
        .notify
        .query(
            "SELECT m.message_id, m.status, m.sent_at, a.started_at
               FROM message m JOIN delivery_attempt a
                 ON a.message_id = m.message_id AND a.attempt = 1
              ORDER BY m.message_id",
            &[],
        )
        .await?;
    for row in &states {
        let id = row.int(0).to_string();
        let expected = match id {
            _ if id == resend || id == sent => "sent",
            _ => "failed",
        };
        assert_eq!(row.text(1), expected, "message {id}");
        if id == sent {
            assert_eq!(row.time(2), row.time(3), "sent when its call began");
        }
    }
    let (code, document) = stack.heraldctl_json(&["trace", &resend]).await?;
    assert_eq!(code, 0, "{document:#}");
    let chain = &document["messages"][0];
    let outcomes: Vec<&Value> = chain["attempts"]
        .as_array()
        .map(|all| all.iter().map(|a| &a["outcome"]).collect())
        .unwrap_or_default();
    assert_eq!(outcomes, [&Value::from("in_doubt"), &Value::from("sent")]);
    assert_eq!(chain["operator_actions"][0]["action"], "resolve_resend");
    assert_eq!(chain["operator_actions"][0]["actor"], "alice");

    // A message not in doubt is refused, named, and left as it is.
    let (code, text) = resolve(&stack, &sent, "--resend", "again?").await?;
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        text,
        format!("message {sent}: refused: it is sent, not in_doubt: left as it is\n")
    );
    let (code, document) = stack
        .heraldctl_json(&[
            "in-doubt", "resolve", "999999", &sent, "--failed", "--by", "alice", "--reason", "x",
        ])
        .await?;
    assert_eq!(code, 1, "{document:#}");
    assert_eq!(document["messages"][0]["message_id"], 999999);
    assert_eq!(document["messages"][0]["status"], Value::Null);
    assert_eq!(
        document["messages"][0]["refusal"],
        "there is no such message"
    );
    assert_eq!(document["messages"][1]["acted"], false);
    assert_eq!(document["messages"][1]["status"], "sent");

    // The failed one requeued: sent once; a sent one cannot be requeued.
    let requeue = [
        "requeue",
        &failed,
        &sent,
        "--by",
        "bob",
        "--reason",
        "address reopened",
    ];
    let (code, document) = stack.heraldctl_json(&requeue).await?;
    assert_eq!(code, 1, "{document:#}");
    assert_eq!(document["messages"][0]["acted"], true);
    assert_eq!(document["messages"][0]["status"], "queued");
    assert_eq!(document["messages"][1]["acted"], false);
    stack
        .wait_for_count(
            &format!(
                "SELECT count(*) FROM message WHERE message_id = {failed} AND status = 'sent'"
            ),
            1,
            SOON,
        )
        .await?;
    assert_eq!(calls_to(addresses[2], Some(true)), 1);

    assert_eq!(
        operator_actions(&stack).await?,
        [
            action([
                "resolve_resend",
                &resend,
                "in_doubt",
                "queued",
                "alice",
                "not in the provider's activity"
            ]),
            action([
                "resolve_sent",
                &sent,
                "in_doubt",
                "sent",
                "alice",
                "delivered per the provider's activity"
            ]),
            action([
                "resolve_failed",
                &failed,
                "in_doubt",
                "failed",
                "alice",
                "address closed"
            ]),
            action([
                "requeue",
                &failed,
                "failed",
                "queued",
                "bob",
                "address reopened"
            ]),
        ]
    );
    let (code, text) = stack.heraldctl(&["in-doubt", "list"]).await?;
    assert_eq!((code, text.as_str()), (0, "0 message(s) in doubt\n"));
    let (code, text) = stack
        .heraldctl(&["in-doubt", "resolve", &sent, "--sent", "--by", "alice"])
        .await?;
    assert_eq!(code, 2, "a reason is required: {text}");
    Ok(())
}

/// Support's question, "was it sent, and when?", answered from the recipient alone: the source
/// row and its version, the event, the queue row, the provider call and its message id.
pub async fn trace_by_recipient_finds_the_whole_chain(engine: Engine) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "operate_trace").await?;
    stack.load_welcome_schedule().await?;
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    let contact_id = stack.insert_contact_to("ada@example.com").await?;
    let accepted = stack.wait_for_accepted(1, SOON).await?;
    stack.wait_for_status("sent", 1, SOON).await?;
    let provider_id = accepted[0].provider_message_id.clone().expect("an id");
    let version = stack.contact_created_version(contact_id).await?;
    let row = stack
        .notify
        .query_one(
            "SELECT message_id, event_partition, event_offset, change_version
               FROM message WHERE recipient = 'ada@example.com'",
            &[],
        )
        .await?;
    let (message_id, partition, offset) = (row.int(0), row.int(1), row.int(2));
    assert_eq!(row.text(3), version);

    let (code, document) = stack.heraldctl_json(&["trace", "ada@example.com"]).await?;
    assert_eq!(code, 0, "{document:#}");
    assert_eq!(document["total"], 1);
    assert_eq!(document["target"]["by"], "recipient");
    let chain = &document["messages"][0];
    let source = &chain["source"];
    assert_eq!(source["table"], "crm.contact");
    assert_eq!(source["key"], contact_id.to_string());
    assert_eq!(source["version"], version.as_str());
    assert_eq!(source["current"], version.as_str());
    assert_eq!(source["state"], "current");
    assert_eq!(chain["event"]["topic"], stack.topic());
    assert_eq!(chain["event"]["partition"], partition);
    assert_eq!(chain["event"]["offset"], offset);
    assert_eq!(chain["message"]["message_id"], message_id);
    assert_eq!(chain["message"]["status"], "sent");
    let attempts = chain["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 1, "{chain:#}");
    assert_eq!(attempts[0]["http_status"], 202);
    assert_eq!(attempts[0]["outcome"], "sent");
    assert_eq!(attempts[0]["provider_message_id"], provider_id.as_str());
    assert_eq!(chain["provider"]["message_id"], provider_id.as_str());

    let (code, text) = stack.heraldctl(&["trace", "ada@example.com"]).await?;
    assert_eq!(code, 0, "{text}");
    for expected in [
        format!("message {message_id}: acme/welcome-email, email to ada@example.com: sent"),
        format!(
            "crm.contact contact_id = {contact_id}, created_at {version}: the row is still at this version"
        ),
        format!("partition {partition}, offset {offset}"),
        format!("sent, HTTP 202, provider id {provider_id}"),
        format!("provider  message id {provider_id}"),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    }

    // The same chain by message id, and by tenant and source key.
    let id = message_id.to_string();
    let key = contact_id.to_string();
    for args in [
        vec!["trace", id.as_str()],
        vec!["trace", "acme", key.as_str()],
    ] {
        let (code, document) = stack.heraldctl_json(&args).await?;
        assert_eq!(code, 0, "{args:?}: {document:#}");
        assert_eq!(document["messages"][0]["message"]["message_id"], message_id);
        assert_eq!(document["messages"][0]["source"]["state"], "current");
    }
    let (code, text) = stack.heraldctl(&["trace", "nobody@example.com"]).await?;
    assert_eq!(
        (code, text.as_str()),
        (1, "0 message(s) for recipient nobody@example.com\n")
    );
    Ok(())
}
