//! Tenants' own provider accounts and send limits: one tenant's revoked key or spent rate
//! limit pauses that tenant's account only, and a tenant's send limit holds across senders.

use std::time::Duration;

use anyhow::Context;
use fake_provider::{
    Account, Channel, Fault, FaultKind, Received, SIGNATURE_HEADER, TIMESTAMP_HEADER,
    parse_outcomes, sendgrid_verification_key,
};
use herald_tests::{Engine, SOON, Service, Stack, claimed_tenants, free_address, wait_until};

/// acme's own SendGrid account: its key, the variable the sender reads it from, its sender.
const ACME_KEY: &str = "SG.acme-own-key";
const ACME_KEY_VAR: &str = "ACME_SENDGRID_KEY";
const ACME_FROM: &str = "hello@acme.example";
const GLOBEX: usize = 10;
const ACME: usize = 3;

/// A stack where acme's welcome emails go through acme's own SendGrid account (defined in
/// `provider_account`, its key only in the sender's environment) and globex's through the
/// default one; the sender's metrics on a free address, returned.
async fn two_accounts(engine: Engine, test: &str) -> anyhow::Result<(Stack, String)> {
    let mut stack = Stack::new(engine, test).await?;
    stack.load_welcome_schedule().await?;
    stack.add_second_tenant().await?;
    stack
        .notify
        .batch(&format!(
            "INSERT INTO provider_account (name, channel, api_key_env, from_email, from_name)
             VALUES ('acme-sendgrid', 'email', '{ACME_KEY_VAR}', '{ACME_FROM}', 'Acme');
             INSERT INTO tenant_account (tenant, channel, account)
             VALUES ('acme', 'email', 'acme-sendgrid');"
        ))
        .await?;
    stack
        .provider
        .accounts()
        .push([Account::sendgrid(ACME_KEY)]);
    stack.set(Service::Sender, ACME_KEY_VAR, ACME_KEY);
    let metrics = free_address()?;
    stack.set(Service::Sender, "HERALD__METRICS__SENDER", &metrics);
    Ok((stack, metrics))
}

/// Adds `acme` contacts and `globex` customers.
async fn add_people(stack: &Stack, acme: usize, globex: usize) -> anyhow::Result<()> {
    for n in 0..acme {
        stack
            .insert_contact_to(&format!("acme-{n}@example.com"))
            .await?;
    }
    for n in 0..globex {
        stack
            .insert_globex_customer(&format!("customer-{n}@globex.example"))
            .await?;
    }
    Ok(())
}

/// Whether the sender's `/metrics` shows `account` paused.
async fn paused(metrics: &str, account: &str) -> anyhow::Result<bool> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await?
        .text()
        .await?;
    let series = format!("herald_sender_provider_paused{{account=\"{account}\"}} 1");
    Ok(text.lines().any(|line| line == series))
}

fn by_account<'a>(accepted: &'a [Received], key: &str) -> Vec<&'a Received> {
    accepted
        .iter()
        .filter(|r| r.account.as_deref() == Some(key))
        .collect()
}

/// acme's key is revoked at its SendGrid account: acme's emails wait in the queue without
/// spending attempts, the sender shows acme's account paused (and the default not), and
/// globex's emails all go out meanwhile. Once the key works again, acme's go out, each once,
/// through acme's account and from acme's address.
pub async fn a_tenants_revoked_key_pauses_only_that_tenant(engine: Engine) -> anyhow::Result<()> {
    let (mut stack, metrics) = two_accounts(engine, "tenant_key").await?;
    stack.provider.accounts().revoke(ACME_KEY);
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    add_people(&stack, ACME, GLOBEX).await?;

    stack.wait_for_accepted(GLOBEX, SOON).await?;
    wait_until(SOON, || async {
        Ok(paused(&metrics, "acme-sendgrid").await?.then_some(()))
    })
    .await?;
    assert!(
        !paused(&metrics, "email").await?,
        "the default account is not paused"
    );
    let waiting = stack
        .notify
        .count(
            "SELECT count(*) FROM message
              WHERE tenant = 'acme' AND status = 'queued'
                AND send_attempts = uncounted_attempts",
            &[],
        )
        .await?;
    assert_eq!(
        waiting, ACME as i64,
        "acme's emails wait, no attempt counted"
    );
    let log = stack.log(Service::Sender);
    assert!(
        log.contains("credentials refused") && log.contains("acme-sendgrid"),
        "the pause is logged with the account"
    );

    stack
        .provider
        .accounts()
        .push([Account::sendgrid(ACME_KEY)]);
    let accepted = stack.wait_for_accepted(GLOBEX + ACME, SOON).await?;
    let acme = by_account(&accepted, ACME_KEY);
    assert_eq!(acme.len(), ACME, "acme's each once, through acme's account");
    assert!(acme.iter().all(|r| r.from.as_deref() == Some(ACME_FROM)));
    let globex = by_account(&accepted, herald_tests::SENDGRID_KEY);
    assert_eq!(globex.len(), GLOBEX, "globex's through the default account");
    assert!(globex.iter().all(|r| r.to[0].ends_with("@globex.example")));
    wait_until(SOON, || async {
        Ok((!paused(&metrics, "acme-sendgrid").await?).then_some(()))
    })
    .await?;
    // Support sees which account sent it.
    let (_, trace) = stack.heraldctl(&["trace", "acme-0@example.com"]).await?;
    assert!(
        trace.contains("email (account acme-sendgrid) to acme-0@example.com: sent"),
        "{trace}"
    );
    Ok(())
}

/// acme's account answers 429, its limit resetting in 3 s: nothing more goes through acme's
/// account until the reset, while globex's emails keep going through the default account;
/// then acme's go out, each once.
pub async fn a_tenants_rate_limit_pauses_only_its_account(engine: Engine) -> anyhow::Result<()> {
    let (mut stack, _) = two_accounts(engine, "tenant_429").await?;
    stack.set(Service::Sender, "HERALD__SENDER__MAX_IN_FLIGHT", "2");
    stack.provider.faults().push([Fault {
        account: Some(ACME_KEY.into()),
        ..Fault::new(FaultKind::RateLimit {
            reset_after_secs: 3,
        })
    }]);
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    add_people(&stack, ACME, 0).await?;
    // The 429 first, then globex's customers, one every 100 ms, through the pause.
    let limited = wait_until(SOON, || async {
        let requests = stack.provider.store().list(Some(Channel::Email), None);
        Ok(requests.into_iter().find(|r| r.status == Some(429)))
    })
    .await?;
    for n in 0..2 * GLOBEX {
        stack
            .insert_globex_customer(&format!("customer-{n}@globex.example"))
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.wait_for_accepted(ACME + 2 * GLOBEX, SOON).await?;

    let requests = stack.provider.store().list(Some(Channel::Email), None);
    let from = limited.answered_at + chrono::Duration::milliseconds(300);
    let to = limited.answered_at + chrono::Duration::milliseconds(2_500);
    let during = |key: &str| {
        by_account(&requests, key)
            .into_iter()
            .filter(|r| r.received_at > from && r.received_at < to)
            .count()
    };
    assert_eq!(
        during(ACME_KEY),
        0,
        "acme's account called while rate limited"
    );
    assert!(
        during(herald_tests::SENDGRID_KEY) >= GLOBEX / 2,
        "globex held up by acme's limit"
    );
    let accepted = stack.accepted();
    assert_eq!(
        by_account(&accepted, ACME_KEY).len(),
        ACME,
        "acme's each once"
    );
    Ok(())
}

/// acme may send 20 emails a second (burst 20), and two senders share the queue: over any
/// 10 s, the provider gets at most 220 of acme's, and acme's 300 go at about that pace, not
/// much slower; globex, not limited, has its customers' emails sent while acme's wait for
/// their turn (a third of acme's or more go after globex's last).
pub async fn a_tenants_send_limit_holds_across_two_senders(engine: Engine) -> anyhow::Result<()> {
    const FLOOD: usize = 300;
    const PER_SECOND: f64 = 20.0;
    let mut stack = Stack::new(engine, "tenant_limit").await?;
    stack.load_welcome_schedule().await?;
    stack.add_second_tenant().await?;
    stack
        .notify
        .batch(
            "INSERT INTO send_limit (scope, name, per_second, burst)
             VALUES ('tenant', 'acme', 20, 20)",
        )
        .await?;
    stack.start_all().await?;
    stack.start_instance(Service::Sender, 2).await?;
    stack.wait_until_watching(2).await?;

    stack.insert_contacts(FLOOD as i64).await?;
    stack.wait_for_accepted(40, SOON).await?;
    let committed = chrono::Utc::now();
    add_people(&stack, 0, GLOBEX).await?;
    let accepted = stack
        .wait_for_accepted(FLOOD + GLOBEX, Duration::from_secs(60))
        .await?;

    let globex_last = accepted
        .iter()
        .filter(|r| r.to[0].ends_with("@globex.example"))
        .map(|r| r.received_at)
        .max()
        .expect("globex's emails");
    let mut acme: Vec<_> = accepted
        .iter()
        .filter(|r| r.to[0].starts_with("flood-"))
        .map(|r| r.received_at)
        .collect();
    acme.sort();
    assert_eq!(acme.len(), FLOOD, "acme's each once");
    let acme_after = acme.iter().filter(|&&t| t > globex_last).count();
    assert!(
        acme_after >= FLOOD / 3,
        "globex's emails waited for acme's: only {acme_after} of acme's went after globex's last, \
         {} ms after its commit",
        (globex_last - committed).num_milliseconds()
    );
    let window = chrono::Duration::seconds(10);
    let busiest = (0..acme.len())
        .map(|i| {
            acme[i..]
                .iter()
                .take_while(|&&t| t < acme[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(busiest <= 220, "{busiest} of acme's emails within 10 s");
    let took = (acme[FLOOD - 1] - acme[0]).num_milliseconds() as f64 / 1000.0;
    let least = (FLOOD as f64 - 20.0) / PER_SECOND;
    assert!(
        took >= least * 0.95 && took <= least * 2.0,
        "acme's {FLOOD} took {took:.1} s; the limit makes it {least:.1} s"
    );
    assert!(
        stack
            .instance_log(Service::Sender, 2)
            .contains("sender started"),
        "the second sender ran"
    );
    Ok(())
}

/// Claims against send limits, as the senders make them: tenant a may send 3 now, the
/// default email account 8 (both refilling too slowly to matter); SMS are not limited. a, b
/// and d have 10 emails each, c 10 SMS, and d 2 SMS newer than its emails. The first claim
/// takes a's 3 and b's and d's first emails in turns up to the account's 8, then everyone's
/// share (5) or what is left of it: d's SMS go too, its emails over the account's limit
/// taking none of d's share. The next takes only c's rest: a, and the email account, have
/// nothing left.
pub async fn send_limits_cap_each_claim_per_tenant_and_per_account(
    engine: Engine,
) -> anyhow::Result<()> {
    let stack = Stack::new(engine, "send_limits").await?;
    stack
        .notify
        .batch(
            "INSERT INTO send_limit (scope, name, per_second, burst)
             VALUES ('tenant', 'a', 0.001, 3), ('account', 'email', 0.001, 8)",
        )
        .await?;
    let queues = [
        ("a", "email", 10),
        ("b", "email", 10),
        ("c", "sms", 10),
        ("d", "email", 10),
        ("d", "sms", 2),
    ];
    for (tenant, channel, count) in queues {
        let due = chrono::Utc::now() - chrono::Duration::seconds(1);
        stack.queue_messages(tenant, channel, count, due).await?;
    }
    let notify = herald_core::store::connect_notify(&stack.database_settings("ntf")?).await?;
    let claim = || claimed_tenants(notify.as_ref(), 20, &[]);
    let count = |tenants: &[String], tenant: &str| tenants.iter().filter(|t| *t == tenant).count();

    let first = claim().await?;
    assert_eq!(
        (
            count(&first, "a"),
            count(&first, "b"),
            count(&first, "c"),
            count(&first, "d")
        ),
        (3, 3, 5, 4),
        "{first:?}"
    );
    let second = claim().await?;
    assert_eq!(second, vec!["c"; 5], "only c's rest");
    let left = stack
        .notify
        .count(
            "SELECT count(*) FROM send_limit WHERE tokens >= 0 AND tokens < 0.1",
            &[],
        )
        .await?;
    assert_eq!(left, 2, "both buckets spent");
    Ok(())
}

/// acme's SendGrid account posts its events to its own path, signed with its own key (its
/// `event_verification_key`), and globex's default account to the default path: each is
/// recorded on its own tenant's email, and acme's bounce suppresses acme's address. A post
/// signed with acme's key (acme's to know) that names globex's email is recorded without it:
/// globex's address is not suppressed; the same post on the default path is refused.
pub async fn an_accounts_reports_count_only_for_its_own_messages(
    engine: Engine,
) -> anyhow::Result<()> {
    let webhook = free_address()?;
    let acme_events = format!("http://{webhook}/webhooks/sendgrid/acme-sendgrid");
    let default_events = format!("http://{webhook}/webhooks/sendgrid");
    let provider = fake_provider::Config {
        sendgrid_events_url: Some(default_events.clone()),
        ..herald_tests::provider_config()
    };
    let mut stack = Stack::with_provider(engine, "account_events", provider).await?;
    stack.load_welcome_schedule().await?;
    stack.add_second_tenant().await?;
    let accounts = stack.provider.accounts();
    accounts.push([Account::sendgrid_with_events_url(ACME_KEY, &acme_events)]);
    let acme_key = accounts
        .sendgrid_verification_key(ACME_KEY)
        .context("acme's verification key")?;
    stack
        .notify
        .execute(
            &format!(
                "INSERT INTO provider_account (name, channel, api_key_env, from_email,
                                               event_verification_key)
                 VALUES ('acme-sendgrid', 'email', '{ACME_KEY_VAR}', '{ACME_FROM}', $1)"
            ),
            &[acme_key.as_str().into()],
        )
        .await?;
    stack
        .notify
        .batch(
            "INSERT INTO tenant_account (tenant, channel, account)
             VALUES ('acme', 'email', 'acme-sendgrid')",
        )
        .await?;
    let bounce = parse_outcomes(r#"{"to":"acme-bounce@example.com","report":"bounce"}"#)
        .map_err(anyhow::Error::msg)?;
    stack.provider.outcomes().push(bounce);
    stack.set(Service::Sender, ACME_KEY_VAR, ACME_KEY);
    stack.set(Service::Sender, "HERALD__WEBHOOKS__LISTEN", &webhook);
    stack.set(
        Service::Sender,
        "HERALD__WEBHOOKS__SENDGRID_VERIFICATION_KEY",
        &sendgrid_verification_key(),
    );
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;
    stack.insert_contact_to("acme-bounce@example.com").await?;
    stack
        .insert_globex_customer("customer-0@globex.example")
        .await?;

    let on_tenant = |tenant: &str, event: &str| {
        format!(
            "SELECT count(*) FROM delivery_event e JOIN message m ON m.message_id = e.message_id
              WHERE m.tenant = '{tenant}' AND e.event = '{event}'"
        )
    };
    stack
        .wait_for_count(&on_tenant("acme", "bounce"), 1, SOON)
        .await?;
    stack
        .wait_for_count(&on_tenant("globex", "delivered"), 1, SOON)
        .await?;
    let suppressed =
        |address: &str| format!("SELECT count(*) FROM suppression WHERE address = '{address}'");
    stack
        .wait_for_count(&suppressed("acme-bounce@example.com"), 1, SOON)
        .await?;

    // acme's key, signing a bounce of globex's email.
    let globex_id = stack
        .notify
        .count(
            "SELECT message_id FROM message WHERE tenant = 'globex'",
            &[],
        )
        .await?;
    let now = chrono::Utc::now().timestamp().to_string();
    let body = format!(
        r#"[{{"email":"customer-0@globex.example","timestamp":{now},"event":"bounce",
             "type":"bounce","sg_event_id":"forged-1","herald_message_id":"{globex_id}"}}]"#
    );
    let signature = stack
        .provider
        .accounts()
        .sign_sendgrid_events(ACME_KEY, &now, body.as_bytes())
        .context("acme's signature")?;
    let post = |url: String| {
        reqwest::Client::new()
            .post(url)
            .header(SIGNATURE_HEADER, &signature)
            .header(TIMESTAMP_HEADER, &now)
            .body(body.clone())
            .send()
    };
    assert_eq!(
        post(default_events).await?.status(),
        401,
        "not the default key"
    );
    assert_eq!(post(acme_events).await?.status(), 200);
    let forged = stack
        .notify
        .query_one(
            "SELECT message_id FROM delivery_event WHERE event_id = 'acme-sendgrid/forged-1'",
            &[],
        )
        .await?;
    assert_eq!(forged.opt_int(0), None, "recorded without globex's email");
    assert_eq!(
        stack
            .notify
            .count(&suppressed("customer-0@globex.example"), &[])
            .await?,
        0,
        "globex's address is not suppressed"
    );
    Ok(())
}
