//! Tenants are isolated: one tenant's flood does not hold up another tenant's messages, nor
//! its locked table another's schedules.

use std::time::{Duration, Instant};

use anyhow::Context;
use herald_tests::{Engine, SOON, Service, Stack, claimed_tenants, provider_config, wait_until};

const FLOOD: i64 = 5_000;
const SMALL: usize = 10;

/// acme imports 5,000 contacts; a moment later globex adds 10 customers. The provider takes
/// 50 ms a call and the sender keeps 16 calls in flight, so acme's flood takes some 15 s to
/// drain: globex's 10 welcome emails are sent while it drains (the sender serves tenants in
/// turn), not after it.
pub async fn a_tenants_flood_does_not_hold_up_another_tenants_messages(
    engine: Engine,
) -> anyhow::Result<()> {
    let provider = fake_provider::Config {
        latency: Duration::from_millis(50),
        ..provider_config()
    };
    let mut stack = Stack::with_provider(engine, "tenant_flood", provider).await?;
    stack.load_welcome_schedule().await?;
    stack.add_second_tenant().await?;
    stack.set(Service::Sender, "HERALD__SENDER__MAX_IN_FLIGHT", "16");
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    stack.insert_contacts(FLOOD).await?;
    let started = wait_until(SOON, || async {
        Ok((stack.sent_to_tenant("acme").await? >= 100).then_some(()))
    })
    .await;
    if started.is_err() {
        anyhow::bail!("acme's flood did not start\n{}", stack.diagnostics().await);
    }

    let committed = Instant::now();
    for n in 0..SMALL {
        stack
            .insert_globex_customer(&format!("customer-{n}@globex.example"))
            .await?;
    }
    let sent = wait_until(SOON, || async {
        Ok((stack.sent_to_tenant("globex").await? == SMALL).then_some(()))
    })
    .await;
    if sent.is_err() {
        anyhow::bail!(
            "globex got {} of {SMALL}\n{}",
            stack.sent_to_tenant("globex").await?,
            stack.diagnostics().await
        );
    }
    let waited = committed.elapsed();
    let flood_sent = stack.sent_to_tenant("acme").await?;
    println!(
        "globex's {SMALL} sent {:.1} s after their commits, with {flood_sent} of acme's {FLOOD} sent",
        waited.as_secs_f64()
    );
    assert!(
        flood_sent < 4_000,
        "globex's messages waited for acme's flood: {flood_sent} of {FLOOD} were sent first"
    );
    // The flood is not starved either: it all goes.
    stack
        .wait_for_status("sent", FLOOD + SMALL as i64, Duration::from_secs(120))
        .await?;
    Ok(())
}

/// globex's table is locked on the source (an `ACCESS EXCLUSIVE` lock held by a migration, a
/// long `ALTER`): its schedule's pass waits for it, up to the source's statement timeout
/// (30 s). acme's schedule is polled meanwhile, so acme's welcome email goes out while the
/// lock is held; once it is released, globex's schedule carries on.
pub async fn a_locked_table_holds_back_only_its_own_schedule() -> anyhow::Result<()> {
    let mut stack = Stack::new(Engine::Postgres, "locked_table").await?;
    stack.load_welcome_schedule().await?;
    stack.add_second_tenant().await?;
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    let migration = stack.connect_source().await?;
    migration
        .batch("BEGIN; LOCK TABLE crm.globex_customer IN ACCESS EXCLUSIVE MODE")
        .await?;
    let locked = Instant::now();
    // Let globex's next pass run into the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.insert_contact_to("ada@example.com").await?;
    stack
        .wait_for_accepted(1, Duration::from_secs(15))
        .await
        .context("acme's email waited for globex's locked table")?;
    assert!(
        locked.elapsed() < Duration::from_secs(25),
        "the lock was still held"
    );
    migration.batch("COMMIT").await?;

    stack
        .insert_globex_customer("customer@globex.example")
        .await?;
    stack.wait_for_accepted(2, SOON).await?;
    Ok(())
}

/// A claim, as the sender makes it, on a queue of several tenants' messages: every tenant
/// with a message due gets its first in before anyone's second; messages not due yet, or of
/// a paused provider account, take no share from the others.
pub async fn a_claim_takes_every_tenants_first_message_before_anyones_second(
    engine: Engine,
) -> anyhow::Result<()> {
    let stack = Stack::new(engine, "fair_claim").await?;
    // a and b have backlogs (a's older); c has one; later has only messages due in an hour;
    // texting has only SMS, and the SMS account is paused. Each tenant's are a millisecond
    // apart, in order.
    let queues = [
        ("a", "email", 50, -60),
        ("b", "email", 50, -30),
        ("c", "email", 1, -1),
        ("later", "email", 50, 3_600),
        ("texting", "sms", 50, -90),
    ];
    for (tenant, channel, count, due_in_s) in queues {
        let due =
            chrono::Utc::now() + chrono::Duration::seconds(due_in_s) - chrono::Duration::seconds(1);
        stack.queue_messages(tenant, channel, count, due).await?;
    }
    let notify = herald_core::store::connect_notify(&stack.database_settings("ntf")?).await?;
    let claim = |limit: u32| claimed_tenants(notify.as_ref(), limit, &["sms"]);
    let count = |tenants: &[String], tenant: &str| tenants.iter().filter(|t| *t == tenant).count();

    // Three tenants have email due: shares of 3 out of 9.
    let first = claim(9).await?;
    assert_eq!(
        (
            count(&first, "a"),
            count(&first, "b"),
            count(&first, "c"),
            first.len()
        ),
        (3, 3, 1, 7),
        "{first:?}"
    );
    // Two are left with email due: a claim of 3 takes each one's next, then the oldest's.
    let second = claim(3).await?;
    assert_eq!(
        (count(&second, "a"), count(&second, "b")),
        (2, 1),
        "{second:?}"
    );
    assert!(
        !first
            .iter()
            .chain(&second)
            .any(|t| t == "later" || t == "texting"),
        "not due, or paused"
    );
    Ok(())
}

/// globex's merge function takes 3 s a call, and globex adds a customer every second. Once
/// the renderer finds the function slow (a call over `slow_merge`, 1 s), globex's changes
/// wait for the retry loop instead of holding up the batches they arrive in: acme's welcome
/// emails, inserted meanwhile, are each accepted within 2.5 s of their commit (a batch that
/// called globex's function would hold them 3 s or more). Every globex customer still gets
/// their email, and waiting was no failed attempt.
pub async fn a_slow_merge_function_holds_up_only_its_own_schedule(
    engine: Engine,
) -> anyhow::Result<()> {
    let mut stack = Stack::new(engine, "slow_merge").await?;
    stack.load_welcome_schedule().await?;
    stack.add_second_tenant().await?;
    stack.apply_source_fixture("slow_globex_merge").await?;
    stack.set(Service::Renderer, "HERALD__RENDERER__MERGE_TIMEOUT", "8s");
    stack.start_all().await?;
    stack.wait_until_watching(2).await?;

    let mut globex = 0;
    let mut add_customer = async || {
        globex += 1;
        stack
            .insert_globex_customer(&format!("customer-{globex}@globex.example"))
            .await
    };
    add_customer().await?;
    add_customer().await?;
    // The first call shows the function slow (3 s).
    let rendered = "SELECT count(*) FROM message WHERE tenant = 'globex'";
    wait_until(SOON, || async {
        Ok((stack.notify.count(rendered, &[]).await? > 0).then_some(()))
    })
    .await?;

    let mut latencies = Vec::new();
    for n in 0..5 {
        add_customer().await?;
        let email = format!("ada-{n}@example.com");
        stack.insert_contact_to(&email).await?;
        let committed = chrono::Utc::now();
        let accepted = wait_until(SOON, || async {
            Ok(stack
                .accepted()
                .into_iter()
                .find(|received| received.to == [email.clone()])
                .map(|received| received.answered_at))
        })
        .await?;
        latencies.push((accepted - committed).num_milliseconds());
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    println!("acme's emails, commit → accepted (ms): {latencies:?}");
    assert!(
        latencies.iter().all(|ms| *ms < 2_500),
        "acme's emails waited for globex's merge function: {latencies:?} ms"
    );

    stack
        .wait_for_count(
            "SELECT count(*) FROM message WHERE tenant = 'globex' AND status = 'sent'",
            globex,
            Duration::from_secs(120),
        )
        .await?;
    let attempts = stack
        .notify
        .count(
            "SELECT max(render_attempts) FROM message WHERE tenant = 'globex'",
            &[],
        )
        .await?;
    assert_eq!(
        attempts, 1,
        "waiting for the retry loop is no failed attempt"
    );
    Ok(())
}
