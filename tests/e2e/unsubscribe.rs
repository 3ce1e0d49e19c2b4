//! One-click unsubscribe (RFC 8058): the emails of a schedule that offers it carry
//! `List-Unsubscribe` with a signed link and `List-Unsubscribe-Post`; a person following the
//! link sees a page with a button (in a real Chromium) and nothing changes until the POST; the
//! POST a mail client makes unsubscribes at once, from the schedule or, when the schedule
//! says so, from all the tenant's emails, so the next email is not sent. A forged link, or a
//! link's tag on another message, changes nothing; a second click nothing more.

use anyhow::Context;
use herald_tests::{Chromium, Engine, SOON, Service, Stack, free_address};

/// `SELECT count(*) FROM suppression`.
async fn entries(stack: &Stack) -> anyhow::Result<i64> {
    stack
        .notify
        .count("SELECT count(*) FROM suppression", &[])
        .await
}

pub async fn one_click_unsubscribes_from_the_schedule_or_the_tenant_and_a_forged_link_does_nothing(
    engine: Engine,
) -> anyhow::Result<()> {
    let browser = Chromium::find()?;
    let webhook = free_address()?;
    let public_url = format!("http://{webhook}");
    let mut stack = Stack::new(engine, "one_click").await?;
    // welcome-email offers one-click unsubscribe from itself; account-notice, on the same
    // table, offers none (mail nobody can opt out of).
    stack.load_welcome_schedule().await?;
    stack
        .notify
        .batch(
            "INSERT INTO schedule (tenant, name, channel, source_schema, source_table,
                                   key_column, change_column, merge_schema, merge_function,
                                   template_name)
             VALUES ('acme', 'account-notice', 'email', 'crm', 'contact', 'contact_id',
                     'created_at', 'crm', 'welcome_email', 'welcome')",
        )
        .await?;
    let welcome_id = stack
        .notify
        .count(
            "SELECT schedule_id FROM schedule WHERE name = 'welcome-email'",
            &[],
        )
        .await?;
    stack.set(Service::Sender, "HERALD__WEBHOOKS__LISTEN", &webhook);
    stack.set(Service::Sender, "HERALD__WEBHOOKS__PUBLIC_URL", &public_url);
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    stack.insert_contact_to("ada@example.com").await?;
    let emails = stack.wait_for_accepted(2, SOON).await?;

    let schedule_of = |email: &fake_provider::Received| email.custom_args["schedule_id"].clone();
    let welcome = emails
        .iter()
        .find(|email| schedule_of(email) == welcome_id.to_string())
        .context("the welcome email")?;
    let notice = emails
        .iter()
        .find(|email| schedule_of(email) != welcome_id.to_string())
        .context("the account notice")?;
    assert!(notice.headers.is_empty(), "{:?}", notice.headers);
    assert_eq!(
        welcome
            .headers
            .get("List-Unsubscribe-Post")
            .map(String::as_str),
        Some("List-Unsubscribe=One-Click")
    );
    let link = welcome.headers["List-Unsubscribe"]
        .strip_prefix('<')
        .and_then(|link| link.strip_suffix('>'))
        .context("List-Unsubscribe is one <URL>")?
        .to_owned();
    let token = link
        .strip_prefix(&format!("{public_url}/unsubscribe/"))
        .context("the link is the sender's")?
        .to_owned();
    let message_id = welcome.custom_args["herald_message_id"].clone();
    assert!(token.starts_with(&format!("{message_id}.")), "{token}");

    // A person following the link sees whom it is about and a button; looking changes nothing.
    let page = browser.dump_dom(&link).await?;
    for shown in [
        "a***@example.com",
        "“welcome-email” emails from acme",
        r#"<form method="post">"#,
        r#"<input type="hidden" name="List-Unsubscribe" value="One-Click">"#,
        ">Unsubscribe</button>",
    ] {
        assert!(page.contains(shown), "{shown} in {page}");
    }
    assert!(!page.contains("ada@example.com"), "{page}");
    assert_eq!(entries(&stack).await?, 0, "a GET unsubscribes nobody");

    // What a mail client posts for one click.
    let client = reqwest::Client::new();
    let click = |url: String| {
        let request = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click");
        async move {
            let answer = request.send().await?;
            anyhow::Ok((answer.status().as_u16(), answer.text().await?))
        }
    };
    // A forged tag, the tag on another message, or no tag: nothing changes.
    let (_, tag) = token.split_once('.').context("id.tag")?;
    let other_id = notice.custom_args["herald_message_id"].clone();
    for forged in [
        format!("{message_id}.AAAAAAAAAAAAAAAAAAAAAA"),
        format!("{other_id}.{tag}"),
        message_id.clone(),
    ] {
        let (status, page) = click(format!("{public_url}/unsubscribe/{forged}")).await?;
        assert_eq!(status, 404, "{forged}: {page}");
        assert!(page.contains("not valid"), "{page}");
    }
    assert_eq!(
        entries(&stack).await?,
        0,
        "a forged link unsubscribes nobody"
    );

    // One click: unsubscribed from welcome-email, at once; a second click changes nothing.
    for _ in 0..2 {
        let (status, page) = click(link.clone()).await?;
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains(
                "a***@example.com</strong> will get no more “welcome-email” emails from acme"
            ),
            "{page}"
        );
    }
    let entry = stack
        .notify
        .query_one(
            "SELECT address, schedule_id, reason, source FROM suppression",
            &[],
        )
        .await?;
    assert_eq!(
        (
            entry.text(0),
            entry.opt_int(1),
            entry.text(2),
            entry.text(3)
        ),
        (
            "ada@example.com".to_owned(),
            Some(welcome_id),
            "unsubscribe: one-click".to_owned(),
            format!("herald:unsubscribe:{message_id}")
        )
    );
    let log = stack
        .notify
        .query_one(
            "SELECT last_event, last_event_reason FROM message_log WHERE message_id = $1",
            &[message_id.parse::<i64>()?.into()],
        )
        .await?;
    assert_eq!(
        (log.text(0), log.opt_text(1)),
        ("unsubscribe".to_owned(), Some("one-click".to_owned()))
    );
    let recorded = stack
        .notify
        .count(
            "SELECT count(*) FROM delivery_event WHERE provider = 'herald'",
            &[],
        )
        .await?;
    assert_eq!(recorded, 1, "the unsubscribe is recorded once");
    let page = browser.dump_dom(&link).await?;
    assert!(page.contains("is unsubscribed from"), "{page}");
    assert!(!page.contains("<button"), "{page}");
    let (code, list) = stack.heraldctl_json(&["suppression", "list"]).await?;
    assert_eq!(code, 0, "{list:#}");
    assert_eq!(list["entries"][0]["schedule"], "welcome-email", "{list:#}");

    // Ada again (any letter case): no welcome email; the account notice still goes.
    stack.insert_contact_to("Ada@Example.com").await?;
    stack.wait_for_status("suppressed", 1, SOON).await?;
    stack.wait_for_accepted(3, SOON).await?;

    // welcome-email now unsubscribes from all of acme's emails: the same link stops both.
    stack
        .notify
        .execute(
            "UPDATE schedule SET unsubscribe = 'tenant' WHERE name = 'welcome-email'",
            &[],
        )
        .await?;
    let (status, page) = click(link.clone()).await?;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("will get no more emails from acme"), "{page}");
    let tenant_wide = stack
        .notify
        .count(
            "SELECT count(*) FROM suppression WHERE schedule_id IS NULL",
            &[],
        )
        .await?;
    assert_eq!((tenant_wide, entries(&stack).await?), (1, 2));
    stack.insert_contact_to("ada@example.com").await?;
    stack.wait_for_status("suppressed", 3, SOON).await?;
    assert_eq!(stack.accepted_count(), 3, "nothing more went to Ada");

    // An operator takes the schedule's entry off: the tenant-wide one still holds.
    let (code, text) = stack
        .heraldctl(&[
            "suppression",
            "remove",
            "acme",
            "email",
            "ada@example.com",
            "--schedule",
            "welcome-email",
            "--by",
            "alice",
            "--reason",
            "asked to be mailed again",
        ])
        .await?;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("schedule welcome-email"), "{text}");
    let left = stack
        .notify
        .count(
            "SELECT count(*) FROM suppression WHERE schedule_id IS NULL",
            &[],
        )
        .await?;
    assert_eq!((left, entries(&stack).await?), (1, 1));
    Ok(())
}
