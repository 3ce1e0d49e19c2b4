//! The status page (`heraldctl serve`) in a real headless Chromium, on a known state: the
//! queue's numbers and the failures' reasons are the database's, the lag is the broker's, a
//! broken schedule shows its error, and searching a recipient shows the trace of a sent
//! message with the provider's id. With a token set, the page without it is refused. A
//! screenshot is kept in the test's log directory.

use std::time::Duration;

use anyhow::{Context, ensure};
use fake_provider::{Channel, Fault, FaultKind};
use herald_tests::{Chromium, Engine, SOON, Service, Stack, free_address, wait_until};

const TOKEN: &str = "e2e status token";
/// The token as the page's address carries it.
const TOKEN_QUERY: &str = "token=e2e%20status%20token";

pub async fn the_status_page_shows_what_the_database_holds(engine: Engine) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "status_page").await?;
    let browser = Chromium::find()?;
    stack.load_welcome_schedule().await?;
    stack.add_schedule_without_table().await?;

    // A known state: one email in doubt (502), one failed (an address SendGrid refuses),
    // three sent, then two left queued while the sender is stopped.
    stack.provider.faults().push([Fault {
        channel: Some(Channel::Email),
        ..Fault::new(FaultKind::ServerError { status: 502 })
    }]);
    stack.start_all().await?;
    stack.wait_until_watching(1).await?;
    stack.insert_contact_to("doubt@example.com").await?;
    stack.wait_for_status("in_doubt", 1, SOON).await?;
    stack.insert_contact_to("not-an-email").await?;
    for n in 0..3 {
        stack
            .insert_contact_to(&format!("reader{n}@example.com"))
            .await?;
    }
    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE status IN ('sent', 'failed', 'in_doubt')",
            5,
            SOON,
        )
        .await?;
    stack.stop(Service::Sender).await?;
    for n in 0..2 {
        stack
            .insert_contact_to(&format!("waiting{n}@example.com"))
            .await?;
    }
    stack.wait_for_status("queued", 2, SOON).await?;
    stack
        .wait_for_count(
            "SELECT count(*) FROM schedule WHERE error IS NOT NULL",
            1,
            SOON,
        )
        .await?;
    // The renderers have committed every event: the lag the page shows is settled.
    wait_until(SOON, || async {
        let offsets = stack.group_offsets().await?;
        Ok(offsets.lag().values().all(|lag| *lag == 0).then_some(()))
    })
    .await?;

    let address = free_address()?;
    let _server = stack.spawn_heraldctl(
        &["serve", "--listen", &address],
        &[("HERALD_STATUS_TOKEN", TOKEN)],
    )?;
    let page = format!("http://{address}/");
    let refused = wait_until(Duration::from_secs(20), || async {
        Ok(reqwest::get(&page).await.ok())
    })
    .await
    .with_context(|| {
        let log = std::fs::read_to_string(stack.log_dir().join("heraldctl.log"));
        format!(
            "heraldctl serve never answered: {}",
            log.unwrap_or_default()
        )
    })?;
    // Without the token, or with another one: refused.
    assert_eq!(refused.status(), 401);
    let wrong = reqwest::get(format!("{page}?token=e2e")).await?;
    assert_eq!(wrong.status(), 401);
    let bearer = reqwest::Client::new()
        .get(&page)
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(bearer.status(), 200);
    let dom = browser.dump_dom(&format!("{page}?{TOKEN_QUERY}")).await?;
    ensure!(
        dom.contains(r#"<meta http-equiv="refresh" content="10">"#),
        "the page does not refresh itself:\n{dom}"
    );

    // The queue: the open messages by tenant, schedule and status, as the database counts them.
    let stored = stack
        .notify
        .query(
            "SELECT m.tenant, s.name, m.status, count(*)
               FROM message m JOIN schedule s ON s.schedule_id = m.schedule_id
              WHERE m.status IN ('render_retry', 'queued', 'sending', 'in_doubt')
              GROUP BY m.tenant, s.name, m.status
              ORDER BY m.tenant, s.name, m.status",
            &[],
        )
        .await?;
    let expected: Vec<Vec<String>> = stored
        .iter()
        .map(|row| {
            vec![
                row.text(0),
                row.text(1),
                row.text(2),
                row.int(3).to_string(),
            ]
        })
        .collect();
    assert_eq!(expected.len(), 2, "in_doubt and queued: {expected:?}");
    let shown: Vec<Vec<String>> = rows(section(&dom, "queue")?)
        .into_iter()
        .map(|row| row[..4].to_vec())
        .collect();
    assert_eq!(shown, expected, "queue");

    // Recent failures: the failed and in-doubt messages, newest first, with the database's
    // reasons.
    let stored = stack
        .notify
        .query(
            "SELECT message_id, status, last_error FROM message
              WHERE status IN ('failed', 'render_failed', 'in_doubt')
              ORDER BY updated_at DESC, message_id DESC",
            &[],
        )
        .await?;
    let expected: Vec<[String; 3]> = stored
        .iter()
        .map(|row| {
            [
                row.int(0).to_string(),
                row.text(1),
                row.opt_text(2).unwrap_or_default(),
            ]
        })
        .collect();
    assert_eq!(expected.len(), 2, "{expected:?}");
    let shown: Vec<[String; 3]> = rows(section(&dom, "failures")?)
        .into_iter()
        .map(|row| [row[0].clone(), row[5].clone(), row[7].clone()])
        .collect();
    assert_eq!(shown, expected, "failures");
    assert!(expected.iter().any(|[_, status, _]| status == "failed"));
    let (code, failures) = stack.heraldctl_json(&["failures"]).await?;
    assert_eq!((code, &failures["total"]), (1, &serde_json::json!(2)));

    // The schedule that does not match the catalog, with the detector's verdict.
    let error = stack
        .notify
        .query_one("SELECT error FROM schedule WHERE name = 'no-table'", &[])
        .await?
        .text(0);
    let shown = rows(section(&dom, "schedules")?);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0][2], "no-table");
    assert_eq!(shown[0][4], error);

    // Lag per partition: the broker's log ends, nothing behind.
    let offsets = stack.group_offsets().await?;
    let shown = rows(section(&dom, "lag")?);
    assert_eq!(shown.len(), offsets.end.len(), "{shown:?}");
    for row in &shown {
        let partition: i32 = row[0].parse()?;
        assert_eq!(row[2], offsets.end[&partition].to_string(), "{row:?}");
        assert_eq!(row[3], "0", "{row:?}");
    }

    // Support's question: a recipient's trace shows it sent, with the provider's id.
    let sent = stack
        .notify
        .query_one(
            "SELECT message_id, provider_message_id FROM message
              WHERE recipient = 'reader1@example.com' AND status = 'sent'",
            &[],
        )
        .await?;
    let (message_id, provider_id) = (sent.int(0), sent.text(1));
    let search = format!("{page}?recipient=reader1%40example.com&{TOKEN_QUERY}");
    let dom = browser.dump_dom(&search).await?;
    let trace = section(&dom, "trace")?;
    let article = between(
        trace,
        &format!(r#"id="message-{message_id}""#),
        "</article>",
    )
    .with_context(|| format!("message {message_id} not traced:\n{trace}"))?;
    let text = text_of(article);
    for expected in [
        format!("message {message_id}: acme/welcome-email, email to reader1@example.com: sent"),
        format!("message id {provider_id};"),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    }
    let attempts = rows(article);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0][3..6], ["sent", "202", provider_id.as_str()]);
    // The form keeps the token for the next search.
    assert!(
        dom.contains(r#"<input type="hidden" name="token" value="e2e status token">"#),
        "{dom}"
    );

    let screenshot = stack.log_dir().join("status-page.png");
    browser.screenshot(&search, &screenshot).await?;
    println!("status page screenshot: {}", screenshot.display());
    Ok(())
}

/// The text from `start` (included) to the first `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)?;
    let to = text[from..].find(end)?;
    Some(&text[from..from + to])
}

/// The page's `<section id="…">`.
fn section<'a>(dom: &'a str, id: &str) -> anyhow::Result<&'a str> {
    between(dom, &format!(r#"<section id="{id}">"#), "</section>")
        .with_context(|| format!("no section {id} on the page:\n{dom}"))
}

/// The data rows of the tables in `html`: each row's cells as text (header rows have none).
fn rows(html: &str) -> Vec<Vec<String>> {
    html.split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let cell = cell.split("</td>").next().unwrap_or_default();
                    let inner = cell.split_once('>').map_or("", |(_, inner)| inner);
                    text_of(inner)
                })
                .collect::<Vec<_>>()
        })
        .filter(|cells| !cells.is_empty())
        .collect()
}

/// What a reader sees of `html`: tags dropped, entities decoded, spaces collapsed.
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
