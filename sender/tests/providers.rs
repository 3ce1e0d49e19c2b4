//! Real HTTP against the fake provider running in-process: every row of the classification
//! table, produced by the wire protocol rather than asserted on a stub.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fake_provider::{Config, FakeProvider, Fault, FaultKind, Received};
use herald_core::config::{ProviderSettings, SendGridSettings, TwilioSettings};
use herald_core::model::{Channel, OutgoingMessage};
use secrecy::SecretString;
use sender::provider::{Delivery, Providers};

const FROM_EMAIL: &str = "notifications@example.com";
const FROM_NUMBER: &str = "+15005550006";

struct Harness {
    fake: FakeProvider,
    providers: Providers,
}

impl Harness {
    async fn start() -> Self {
        Self::with(|_| {}, Duration::from_secs(5)).await
    }

    /// A fresh fake, and providers pointed at it with its credentials, changed by `adjust`.
    async fn with(adjust: impl FnOnce(&mut ProviderSettings), http_timeout: Duration) -> Self {
        let config = Config::default();
        let fake = FakeProvider::start(config.clone())
            .await
            .expect("fake provider starts");
        let mut settings = ProviderSettings {
            sendgrid: SendGridSettings {
                base_url: fake.url(),
                api_key: Some(SecretString::from(config.sendgrid_api_key)),
                from_email: FROM_EMAIL.into(),
                from_name: "Herald".into(),
            },
            twilio: TwilioSettings {
                base_url: fake.url(),
                account_sid: config.twilio_account_sid,
                auth_token: Some(SecretString::from(config.twilio_auth_token)),
                from_number: FROM_NUMBER.into(),
                messaging_service_sid: None,
            },
        };
        adjust(&mut settings);
        let providers = Providers::new(&settings, http_timeout, "", None).expect("providers build");
        Self { fake, providers }
    }

    fn fault(&self, kind: FaultKind) {
        self.fake.faults().push([Fault::new(kind)]);
    }

    fn received(&self) -> Vec<Received> {
        self.fake.store().list(None, None)
    }
}

fn email() -> OutgoingMessage {
    OutgoingMessage {
        message_id: 42,
        tenant: "acme".into(),
        schedule_id: 7,
        channel: Channel::Email,
        account: "email".into(),
        recipient: "ada@example.org".into(),
        recipient_name: Some("Ada Lovelace".into()),
        subject: Some("Your order shipped".into()),
        body_html: Some("<p>It is on its way.</p>".into()),
        body_text: "It is on its way.".into(),
        counted_attempts: 0,
        one_click: false,
    }
}

fn sms() -> OutgoingMessage {
    OutgoingMessage {
        channel: Channel::Sms,
        account: "sms".into(),
        recipient: "+14155550100".into(),
        recipient_name: None,
        subject: None,
        body_html: None,
        body_text: "Your order shipped.".into(),
        ..email()
    }
}

#[track_caller]
fn expect_retry(delivery: Delivery) -> (Option<u16>, Option<Duration>, String) {
    match delivery {
        Delivery::Retry {
            http_status,
            not_before,
            reason,
        } => (http_status, not_before, reason),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[track_caller]
fn expect_unauthorized(delivery: Delivery) -> (Option<u16>, String) {
    match delivery {
        Delivery::Unauthorized {
            http_status,
            reason,
        } => (http_status, reason),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[track_caller]
fn expect_in_doubt(delivery: Delivery) -> String {
    match delivery {
        Delivery::InDoubt { reason } => reason,
        other => panic!("expected InDoubt, got {other:?}"),
    }
}

#[tokio::test]
async fn an_email_is_accepted_and_arrives_as_sent() {
    let h = Harness::start().await;
    let Delivery::Accepted {
        http_status,
        provider_message_id: Some(id),
    } = h.providers.send(&email()).await
    else {
        panic!("expected Accepted with an X-Message-Id");
    };
    assert_eq!(http_status, 202);

    let [got] = h.received().try_into().expect("one request");
    assert_eq!(got.provider_message_id.as_deref(), Some(id.as_str()));
    assert_eq!(got.to, ["ada@example.org"]);
    assert_eq!(got.from.as_deref(), Some(FROM_EMAIL));
    assert_eq!(got.subject.as_deref(), Some("Your order shipped"));
    assert_eq!(got.text.as_deref(), Some("It is on its way."));
    assert_eq!(got.html.as_deref(), Some("<p>It is on its way.</p>"));
    let custom_args: BTreeMap<String, String> = [
        ("herald_message_id", "42"),
        ("schedule_id", "7"),
        ("tenant", "acme"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    assert_eq!(got.custom_args, custom_args);
    assert_eq!(
        got.raw["personalizations"][0]["to"][0]["name"],
        "Ada Lovelace"
    );
    assert_eq!(got.raw["from"]["name"], "Herald");
}

#[tokio::test]
async fn an_sms_is_accepted_with_its_sid() {
    let h = Harness::start().await;
    let Delivery::Accepted {
        http_status,
        provider_message_id: Some(sid),
    } = h.providers.send(&sms()).await
    else {
        panic!("expected Accepted with a sid");
    };
    assert_eq!(http_status, 201);
    assert!(sid.starts_with("SM"), "{sid}");

    let [got] = h.received().try_into().expect("one request");
    assert_eq!(got.provider_message_id.as_deref(), Some(sid.as_str()));
    assert_eq!(got.to, ["+14155550100"]);
    assert_eq!(got.from.as_deref(), Some(FROM_NUMBER));
    assert_eq!(got.text.as_deref(), Some("Your order shipped."));
}

#[tokio::test]
async fn a_messaging_service_sends_instead_of_a_number() {
    const SERVICE: &str = "MG0123456789abcdef0123456789abcdef";
    let h = Harness::with(
        |s| s.twilio.messaging_service_sid = Some(SERVICE.into()),
        Duration::from_secs(5),
    )
    .await;
    let delivery = h.providers.send(&sms()).await;
    assert!(
        matches!(delivery, Delivery::Accepted { .. }),
        "{delivery:?}"
    );
    let [got] = h.received().try_into().expect("one request");
    assert_eq!(
        (got.messaging_service_sid.as_deref(), got.from.as_deref()),
        (Some(SERVICE), None),
        "the service picks the number"
    );
}

#[tokio::test]
async fn wrong_credentials_pause_the_provider_not_fail_the_message() {
    let h = Harness::with(
        |s| {
            s.sendgrid.api_key = Some(SecretString::from("SG.wrong"));
            s.twilio.auth_token = Some(SecretString::from("wrong"));
        },
        Duration::from_secs(5),
    )
    .await;
    for message in [email(), sms()] {
        let (status, reason) = expect_unauthorized(h.providers.send(&message).await);
        assert_eq!(status, Some(401), "{}", message.channel);
        assert!(reason.contains("refused the credentials"), "{reason}");
        assert!(!reason.contains("wrong"), "a secret leaked: {reason}");
    }
}

#[tokio::test]
async fn a_missing_secret_names_its_variable_and_sends_nothing() {
    let h = Harness::with(
        |s| {
            s.sendgrid.api_key = None;
            s.twilio.auth_token = None;
        },
        Duration::from_secs(5),
    )
    .await;
    let (status, reason) = expect_unauthorized(h.providers.send(&email()).await);
    assert_eq!(status, None);
    assert!(
        reason.contains("HERALD__PROVIDERS__SENDGRID__API_KEY"),
        "{reason}"
    );
    let (_, reason) = expect_unauthorized(h.providers.send(&sms()).await);
    assert!(
        reason.contains("HERALD__PROVIDERS__TWILIO__AUTH_TOKEN"),
        "{reason}"
    );
    assert!(h.received().is_empty());
}

#[tokio::test]
async fn an_invalid_address_is_rejected_with_the_providers_reason() {
    let h = Harness::start().await;
    let bad_email = OutgoingMessage {
        recipient: "not-an-address".into(),
        ..email()
    };
    assert_eq!(
        h.providers.send(&bad_email).await,
        Delivery::Rejected {
            http_status: 400,
            reason: "personalizations.0.to.0.email: Does not contain a valid address.".into(),
        }
    );
    let bad_number = OutgoingMessage {
        recipient: "555-0100".into(),
        ..sms()
    };
    assert_eq!(
        h.providers.send(&bad_number).await,
        Delivery::Rejected {
            http_status: 400,
            reason: "21211: The 'To' number 555-0100 is not a valid phone number.".into(),
        }
    );
    // A recipient who replied STOP: refused for good, and marked so.
    let opted_out = OutgoingMessage {
        recipient: fake_provider::OPTED_OUT_NUMBER.into(),
        ..sms()
    };
    assert_eq!(
        h.providers.send(&opted_out).await,
        Delivery::OptedOut {
            http_status: 400,
            reason: "21610: Attempt to send to unsubscribed recipient".into(),
        }
    );
}

#[tokio::test]
async fn a_rate_limit_is_retried_no_sooner_than_its_reset() {
    let h = Harness::start().await;
    // SendGrid says when the window resets (X-RateLimit-Reset, whole unix seconds, rounded up),
    // Twilio how long to wait (Retry-After).
    for message in [email(), sms()] {
        h.fault(FaultKind::RateLimit {
            reset_after_secs: 3,
        });
        let (status, not_before, reason) = expect_retry(h.providers.send(&message).await);
        assert_eq!(status, Some(429), "{}", message.channel);
        let not_before = not_before.expect("a reset time");
        assert!(
            not_before > Duration::from_millis(2_000) && not_before <= Duration::from_secs(4),
            "{}: {not_before:?}",
            message.channel
        );
        assert!(reason.starts_with("rate limited"), "{reason}");
    }
}

#[tokio::test]
async fn service_unavailable_is_retried_and_other_server_errors_are_in_doubt() {
    let h = Harness::start().await;
    for message in [email(), sms()] {
        h.fault(FaultKind::ServerError { status: 503 });
        let (got, not_before, _) = expect_retry(h.providers.send(&message).await);
        assert_eq!(got, Some(503));
        assert_eq!(not_before, None);
        for status in [500, 502, 504] {
            h.fault(FaultKind::ServerError { status });
            let reason = expect_in_doubt(h.providers.send(&message).await);
            assert!(reason.contains("may have taken"), "{reason}");
        }
    }
}

#[tokio::test]
async fn a_dropped_connection_is_in_doubt() {
    let h = Harness::start().await;
    for message in [email(), sms()] {
        h.fault(FaultKind::Drop);
        let reason = expect_in_doubt(h.providers.send(&message).await);
        assert!(reason.contains("no answer"), "{reason}");
    }
    // The fake did take both: resending would have sent them twice.
    let received = h.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.dropped && r.accepted));
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let h = Harness::with(
        |s| {
            s.sendgrid.base_url = closed.clone();
            s.twilio.base_url = closed.clone();
        },
        Duration::from_secs(5),
    )
    .await;
    for message in [email(), sms()] {
        let (status, _, reason) = expect_retry(h.providers.send(&message).await);
        assert_eq!(status, None);
        assert!(reason.starts_with("not sent"), "{reason}");
    }
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_in_doubt() {
    let timeout = Duration::from_millis(300);
    let h = Harness::with(|_| {}, timeout).await;
    h.fault(FaultKind::Slow { delay_ms: 1_500 });
    let started = Instant::now();
    expect_in_doubt(h.providers.send(&sms()).await);
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    // A slow answer within the timeout is still an answer.
    h.fault(FaultKind::Slow { delay_ms: 50 });
    assert!(matches!(
        h.providers.send(&email()).await,
        Delivery::Accepted { .. }
    ));
}

#[tokio::test]
async fn an_endless_error_body_is_read_up_to_a_bound() {
    // A provider (or a proxy in front of it) that answers 400 and never ends the body.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut socket, _) = listener.accept().unwrap();
        let mut request = [0; 4096];
        let _ = socket.read(&mut request);
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n");
        let chunk = format!("{:x}\r\n{}\r\n", 1024, "x".repeat(1024));
        while socket.write_all(chunk.as_bytes()).is_ok() {}
    });
    let h = Harness::with(|s| s.twilio.base_url = url, Duration::from_secs(5)).await;
    let started = Instant::now();
    let Delivery::Rejected {
        http_status,
        reason,
    } = h.providers.send(&sms()).await
    else {
        panic!("expected Rejected");
    };
    assert_eq!(http_status, 400);
    assert!(
        reason.starts_with("xxx") && reason.chars().count() <= 501,
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// The local demo and the compose stack take the fake provider's SendGrid events: their
/// settings hold the public half of the key it signs with.
#[test]
fn the_shipped_settings_verify_the_fake_providers_events() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for environment in ["local", "compose"] {
        let settings = herald_core::config::Settings::load_from(&config, environment).unwrap();
        assert_eq!(
            settings.webhooks.sendgrid_verification_key,
            fake_provider::sendgrid_verification_key(),
            "{environment}"
        );
        assert!(settings.webhooks.listen.is_some(), "{environment}");
    }
}
