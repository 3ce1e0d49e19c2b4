//! Wire-level tests: real HTTP against a server bound on 127.0.0.1:0 in-process.

use std::time::{Duration, Instant};

use fake_provider::{Channel, Config, Received};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const KEY: &str = "SG.fake-key";
const SID: &str = "ACf4ce0000000000000000000000000000";
const TOKEN: &str = "fake-token";

struct Fake {
    url: String,
    http: Client,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

async fn start() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(fake_provider::serve(listener, Config::default(), async {
        let _ = stopped.await;
    }));
    Fake {
        url,
        http: Client::new(),
        stop: Some(stop),
        server,
    }
}

fn valid_email() -> Value {
    json!({
        "personalizations": [{
            "to": [{"email": "alice@example.com", "name": "Alice"}],
            "custom_args": {"notification_id": "n-42"}
        }],
        "from": {"email": "noreply@herald.test", "name": "Herald"},
        "subject": "Your order shipped",
        "content": [
            {"type": "text/plain", "value": "It shipped."},
            {"type": "text/html", "value": "<p>It shipped.</p>"}
        ],
        "custom_args": {"tenant": "acme"}
    })
}

fn valid_sms() -> [(&'static str, &'static str); 4] {
    [
        ("To", "+14155550100"),
        ("From", "+15005550006"),
        ("Body", "Your code is 123456"),
        ("StatusCallback", "http://127.0.0.1:1/cb"),
    ]
}

impl Fake {
    fn email(&self, key: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/v3/mail/send", self.url))
            .bearer_auth(key)
            .json(body)
    }

    fn sms(&self, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.sms_to(SID, TOKEN, form)
    }

    /// An SMS to `account`'s Messages resource, authenticated as `SID:token`.
    fn sms_to(&self, account: &str, token: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(format!(
                "{}/2010-04-01/Accounts/{account}/Messages.json",
                self.url
            ))
            .basic_auth(SID, Some(token))
            .form(form)
    }

    async fn fault(&self, fault: Value) {
        let resp = self
            .http
            .post(format!("{}/_fake/faults", self.url))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
    }

    async fn messages(&self, query: &str) -> Vec<Received> {
        self.http
            .get(format!("{}/_fake/messages{query}", self.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn pending_faults(&self) -> Vec<Value> {
        let url = format!("{}/_fake/faults", self.url);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn error_fields(resp: reqwest::Response) -> Vec<String> {
    let body: Value = resp.json().await.unwrap();
    body["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or("null").to_owned())
        .collect()
}

#[tokio::test]
async fn health() {
    let fake = start().await;
    let resp = fake
        .http
        .get(format!("{}/_fake/health", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn sendgrid_accepts_valid_send_and_records_it() {
    let fake = start().await;
    let resp = fake.email(KEY, &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let id = resp.headers()["x-message-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 22);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{id}"
    );
    assert!(resp.bytes().await.unwrap().is_empty());

    let records = fake.messages("").await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!((r.seq, r.channel, r.status), (1, Channel::Email, Some(202)));
    assert!(r.accepted && !r.dropped);
    assert_eq!(r.provider_message_id.as_deref(), Some(id.as_str()));
    assert_eq!(r.to, ["alice@example.com"]);
    assert_eq!(r.from.as_deref(), Some("noreply@herald.test"));
    assert_eq!(r.subject.as_deref(), Some("Your order shipped"));
    assert_eq!(r.text.as_deref(), Some("It shipped."));
    assert_eq!(r.html.as_deref(), Some("<p>It shipped.</p>"));
    assert_eq!(r.custom_args["notification_id"], "n-42");
    assert_eq!(r.custom_args["tenant"], "acme");
    assert_eq!(r.raw, valid_email());
    assert_eq!(r.error, None);

    // received_at is RFC 3339 with milliseconds on the wire.
    let raw: Value = fake
        .http
        .get(format!("{}/_fake/messages", fake.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = raw[0]["received_at"].as_str().unwrap();
    assert!(
        at.ends_with('Z') && at.split('.').nth(1).is_some_and(|f| f.len() == 4),
        "{at}"
    );
}

#[tokio::test]
async fn sendgrid_rejects_bad_key() {
    let fake = start().await;
    let resp = fake.email("SG.wrong", &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked","help":null}]})
    );
    let resp = fake
        .http
        .post(format!("{}/v3/mail/send", fake.url))
        .json(&valid_email())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let records = fake.messages("?accepted=false").await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].status, Some(401));
    assert!(records[0].provider_message_id.is_none());
}

#[tokio::test]
async fn sendgrid_validation_errors() {
    let fake = start().await;
    let mut no_subject = valid_email();
    no_subject.as_object_mut().unwrap().remove("subject");
    let resp = fake.email(KEY, &no_subject).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_fields(resp).await, ["subject"]);

    let mut bad_to = valid_email();
    bad_to["personalizations"][0]["to"] =
        json!([{"email": "ok@example.com"}, {"email": "not an address"}]);
    let resp = fake.email(KEY, &bad_to).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "personalizations.0.to.1.email");
    assert_eq!(
        body["errors"][0]["message"],
        "Does not contain a valid address."
    );
    assert!(
        body["errors"][0]["help"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );

    let resp = fake.email(KEY, &json!({})).send().await.unwrap();
    assert_eq!(
        error_fields(resp).await,
        ["personalizations", "from.email", "subject", "content"]
    );

    let resp = fake
        .http
        .post(format!("{}/v3/mail/send", fake.url))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "Bad Request");
    assert_eq!(body["errors"][0]["field"], Value::Null);

    let records = fake.messages("").await;
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| !r.accepted && r.status == Some(400)));
    assert_eq!(
        records[0].error.as_deref(),
        Some(
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined."
        )
    );
    assert_eq!(records[3].raw, json!("{not json"));
}

#[tokio::test]
async fn sendgrid_refuses_what_sendgrid_refuses() {
    let fake = start().await;
    let refusal = |body: Value| {
        let request = fake.email(KEY, &body);
        async move {
            let resp = request.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            resp.json::<Value>().await.unwrap()["errors"].clone()
        }
    };
    let help = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.";

    let mut comma = valid_email();
    comma["personalizations"][0]["to"][0]["name"] = json!("Sammy Davis, Jr.");
    assert_eq!(
        refusal(comma).await,
        json!([{
            "field": "personalizations.0.to.0.name",
            "message": "A name cannot contain ',' or ';'.",
            "help": format!("{help}personalizations.to")
        }])
    );
    let mut semicolon = valid_email();
    semicolon["from"]["name"] = json!("Herald; notifications");
    assert_eq!(refusal(semicolon).await[0]["field"], "from.name");

    let mut html_first = valid_email();
    html_first["content"] = json!([
        {"type": "text/html", "value": "<p>It shipped.</p>"},
        {"type": "text/plain", "value": "It shipped."}
    ]);
    let errors = refusal(html_first).await;
    assert_eq!(errors[0]["field"], "content");
    assert_eq!(
        errors[0]["message"],
        "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain needs to be first, followed by text/html, followed by any other content."
    );

    let mut number_arg = valid_email();
    number_arg["personalizations"][0]["custom_args"]["notification_id"] = json!(42);
    assert_eq!(
        refusal(number_arg).await,
        json!([{
            "field": "personalizations.0.custom_args",
            "message": "All values of custom arguments object must be strings",
            "help": format!("{help}personalizations.custom_args")
        }])
    );

    let records = fake.messages("").await;
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| !r.accepted && r.status == Some(400)));
    assert_eq!(
        records[0].error.as_deref(),
        Some("A name cannot contain ',' or ';'.")
    );
}

#[tokio::test]
async fn twilio_accepts_valid_message() {
    let fake = start().await;
    let resp = fake.sms(&valid_sms()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    let sid = body["sid"].as_str().unwrap();
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
    assert!(
        sid[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(body["account_sid"], SID);
    assert_eq!(body["to"], "+14155550100");
    assert_eq!(body["from"], "+15005550006");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["num_segments"], "1");
    assert_eq!(body["direction"], "outbound-api");
    assert_eq!(body["api_version"], "2010-04-01");
    assert_eq!(
        body["uri"],
        format!("/2010-04-01/Accounts/{SID}/Messages/{sid}.json")
    );
    assert_eq!(body["error_code"], Value::Null);
    assert_eq!(body["price"], Value::Null);
    let created = body["date_created"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc2822(created).expect(created);

    let records = fake.messages("?channel=sms").await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.channel, r.status, r.accepted),
        (Channel::Sms, Some(201), true)
    );
    assert_eq!(r.provider_message_id.as_deref(), Some(sid));
    assert_eq!(r.to, ["+14155550100"]);
    assert_eq!(r.text.as_deref(), Some("Your code is 123456"));
    assert_eq!(r.raw["StatusCallback"], "http://127.0.0.1:1/cb");
    assert!(fake.messages("?channel=email").await.is_empty());
}

#[tokio::test]
async fn twilio_errors() {
    let fake = start().await;
    let body = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        resp.json::<Value>().await.unwrap()
    };
    let missing_body = body(fake.sms(&valid_sms()[..2]).send().await.unwrap()).await;
    assert_eq!(
        missing_body,
        json!({"code":21602,"message":"Message body is required.","more_info":"https://www.twilio.com/docs/errors/21602","status":400})
    );
    let mut bad_to = valid_sms();
    bad_to[0].1 = "555-0100";
    let invalid_to = body(fake.sms(&bad_to).send().await.unwrap()).await;
    assert_eq!(invalid_to["code"], 21211);
    assert_eq!(
        invalid_to["message"],
        "The 'To' number 555-0100 is not a valid phone number."
    );
    let mut bad_from = valid_sms();
    bad_from[1].1 = "15005550006";
    let invalid_from = body(fake.sms(&bad_from).send().await.unwrap()).await;
    assert_eq!(
        invalid_from,
        json!({
            "code": 21212,
            "message": "The 'From' number 15005550006 is not a valid phone number, shortcode, or alphanumeric sender ID.",
            "more_info": "https://www.twilio.com/docs/errors/21212",
            "status": 400
        })
    );

    let resp = fake
        .sms_to(SID, "wrong", &valid_sms())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 20003);
    let other_account = "AC00000000000000000000000000000000";
    let resp = fake
        .sms_to(other_account, TOKEN, &valid_sms())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A malformed AccountSid is not found, even with the right credentials.
    let malformed = "ACfake0000000000000000000000000000";
    let resp = fake
        .sms_to(malformed, TOKEN, &valid_sms())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({
            "code": 20404,
            "message": format!("The requested resource /2010-04-01/Accounts/{malformed}/Messages.json was not found"),
            "more_info": "https://www.twilio.com/docs/errors/20404",
            "status": 404
        })
    );

    let records = fake.messages("?accepted=false").await;
    let statuses: Vec<_> = records.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            Some(400),
            Some(400),
            Some(400),
            Some(401),
            Some(401),
            Some(404)
        ]
    );
    assert_eq!(
        records[0].error.as_deref(),
        Some("Message body is required.")
    );
}

#[tokio::test]
async fn rate_limit_fault_then_success() {
    let fake = start().await;
    fake.fault(json!([
        {"kind": "rate_limit", "reset_after_secs": 30, "channel": "email"},
        {"kind": "rate_limit", "reset_after_secs": 7, "channel": "sms"}
    ]))
    .await;

    // A bad key is rejected before faults apply, and consumes none.
    let resp = fake.email("SG.wrong", &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(fake.pending_faults().await.len(), 2);

    let resp = fake.email(KEY, &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let now = chrono::Utc::now().timestamp();
    let header = |name: &str| {
        resp.headers()[name]
            .to_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert_eq!(header("x-ratelimit-limit"), 600);
    assert_eq!(header("x-ratelimit-remaining"), 0);
    let reset = header("x-ratelimit-reset");
    assert!(
        (now + 29..=now + 31).contains(&reset),
        "reset {reset}, now {now}"
    );
    assert_eq!(
        resp.json::<Value>().await.unwrap()["errors"][0]["message"],
        "too many requests"
    );

    let resp = fake.email(KEY, &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let resp = fake.sms(&valid_sms()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 20429);
    assert_eq!(
        fake.sms(&valid_sms()).send().await.unwrap().status(),
        StatusCode::CREATED
    );

    assert!(fake.pending_faults().await.is_empty());
    let statuses: Vec<_> = fake
        .messages("")
        .await
        .iter()
        .map(|r| (r.status, r.accepted))
        .collect();
    assert_eq!(
        statuses,
        [
            (Some(401), false),
            (Some(429), false),
            (Some(202), true),
            (Some(429), false),
            (Some(201), true)
        ]
    );
}

#[tokio::test]
async fn server_error_fault() {
    let fake = start().await;
    fake.fault(json!({"kind": "server_error", "times": 2}))
        .await;
    let resp = fake.email(KEY, &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["errors"][0]["message"],
        "internal server error"
    );
    let resp = fake.sms(&valid_sms()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 20500);

    fake.fault(json!({"kind": "server_error", "status": 503}))
        .await;
    let resp = fake.email(KEY, &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        fake.email(KEY, &valid_email())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );

    let rejected = fake.messages("?accepted=false").await;
    assert_eq!(rejected.len(), 3);
    assert!(
        rejected
            .iter()
            .all(|r| r.provider_message_id.is_none() && r.error.is_some())
    );
}

#[tokio::test]
async fn invalid_faults_are_rejected() {
    let fake = start().await;
    for bad in [
        json!({"kind": "explode"}),
        json!({"kind": "server_error", "status": 418}),
    ] {
        let resp = fake
            .http
            .post(format!("{}/_fake/faults", fake.url))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    assert!(fake.pending_faults().await.is_empty());
}

#[tokio::test]
async fn drop_fault_closes_connection_without_response() {
    let fake = start().await;
    fake.fault(json!({"kind": "drop", "channel": "email"}))
        .await;

    let err = fake
        .email(KEY, &valid_email())
        .send()
        .await
        .expect_err("connection should drop");
    assert!(err.status().is_none(), "{err:?}");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );

    let records = fake.messages("").await;
    assert_eq!(records.len(), 1, "the client must not have retried");
    let r = &records[0];
    assert!(r.accepted && r.dropped);
    assert_eq!(r.status, None);
    assert!(r.provider_message_id.is_some());

    // The server keeps working for new connections.
    assert_eq!(
        fake.email(KEY, &valid_email())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn drop_fault_on_invalid_message_is_not_accepted() {
    let fake = start().await;
    fake.fault(json!({"kind": "drop"})).await;
    assert!(fake.sms(&valid_sms()[..2]).send().await.is_err());
    let r = &fake.messages("").await[0];
    assert!(!r.accepted && r.dropped);
    assert_eq!(r.error.as_deref(), Some("Message body is required."));
}

#[tokio::test]
async fn slow_fault_delays_response() {
    let fake = start().await;
    fake.fault(json!({"kind": "slow", "delay_ms": 400, "channel": "sms"}))
        .await;

    let started = Instant::now();
    assert_eq!(
        fake.email(KEY, &valid_email())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "email must not match an sms fault"
    );

    let started = Instant::now();
    let resp = fake.sms(&valid_sms()).send().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn slow_request_is_recorded_even_if_client_gives_up() {
    let fake = start().await;
    fake.fault(json!({"kind": "slow", "delay_ms": 300})).await;
    let err = fake
        .email(KEY, &valid_email())
        .timeout(Duration::from_millis(50))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = fake.messages("").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, Some(202));
}

#[tokio::test]
async fn delete_messages_clears_records() {
    let fake = start().await;
    fake.email(KEY, &valid_email()).send().await.unwrap();
    fake.sms(&valid_sms()).send().await.unwrap();
    assert_eq!(fake.messages("").await.len(), 2);

    let resp = fake
        .http
        .delete(format!("{}/_fake/messages", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(fake.messages("").await.is_empty());

    fake.sms(&valid_sms()).send().await.unwrap();
    let records = fake.messages("").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].seq, 3, "seq keeps counting across clears");
}

#[tokio::test]
async fn fault_queue_can_be_listed_and_cleared() {
    let fake = start().await;
    fake.fault(json!({"kind": "drop", "times": 3, "channel": "sms"}))
        .await;
    assert_eq!(
        fake.pending_faults().await,
        [json!({"kind": "drop", "times": 3, "channel": "sms"})]
    );
    let resp = fake
        .http
        .delete(format!("{}/_fake/faults", fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(fake.pending_faults().await.is_empty());
    assert_eq!(
        fake.sms(&valid_sms()).send().await.unwrap().status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let mut fake = start().await;
    fake.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(6), &mut fake.server)
        .await
        .expect("serve should return after shutdown")
        .unwrap();
    assert!(
        fake.http
            .get(format!("{}/_fake/health", fake.url))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn in_process_handle() {
    let fake = fake_provider::FakeProvider::start(Config::default())
        .await
        .unwrap();
    fake.faults()
        .push(fake_provider::parse_faults(r#"{"kind":"server_error","status":502}"#).unwrap());
    let resp = Client::new()
        .post(format!("{}/v3/mail/send", fake.url()))
        .bearer_auth(KEY)
        .json(&valid_email())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        fake.store().list(Some(Channel::Email), None)[0].status,
        Some(502)
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn latency_delays_every_answer_without_serializing_requests() {
    const LATENCY: Duration = Duration::from_millis(200);
    const REQUESTS: usize = 200;
    let fake = fake_provider::FakeProvider::start(Config {
        latency: LATENCY,
        ..Config::default()
    })
    .await
    .unwrap();
    let http = Client::new();
    let started = Instant::now();
    let calls: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let request = http
                .post(format!("{}/v3/mail/send", fake.url()))
                .bearer_auth(KEY)
                .json(&valid_email());
            tokio::spawn(async move {
                let sent = Instant::now();
                let status = request.send().await.unwrap().status();
                (status, sent.elapsed())
            })
        })
        .collect();
    for call in calls {
        let (status, took) = call.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(took >= LATENCY, "answered after {took:?}");
    }
    // One after the other they would take REQUESTS × LATENCY (40 s).
    let all = started.elapsed();
    assert!(all < LATENCY * 10, "{REQUESTS} requests took {all:?}");
    let records = fake.store().list(None, Some(true));
    assert_eq!(records.len(), REQUESTS);
    assert_eq!(fake.store().count(None, Some(true)), REQUESTS);
    for record in records {
        let waited = (record.answered_at - record.received_at).to_std().unwrap();
        assert!(waited >= LATENCY, "{waited:?}");
    }
    fake.shutdown().await;
}

const ACME_KEY: &str = "SG.acme";
const ACME_SID: &str = "ACacce0000000000000000000000000001";
const ACME_TOKEN: &str = "acme-token";
const SERVICE: &str = "MG0123456789abcdef0123456789abcdef";

impl Fake {
    /// An SMS to `account`'s Messages resource, authenticated as `user:token`.
    fn sms_as(
        &self,
        account: &str,
        user: &str,
        token: &str,
        form: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        self.http
            .post(format!(
                "{}/2010-04-01/Accounts/{account}/Messages.json",
                self.url
            ))
            .basic_auth(user, Some(token))
            .form(form)
    }

    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/_fake/{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn add_acme(&self) {
        let (status, listed) = self
            .control(
                reqwest::Method::POST,
                "accounts",
                Some(json!([
                    {"sendgrid_api_key": ACME_KEY},
                    {"twilio_account_sid": ACME_SID, "twilio_auth_token": ACME_TOKEN}
                ])),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");
    }

    /// `GET` of a Twilio resource under `account` as that account.
    async fn twilio_get(&self, account: &str, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}/2010-04-01/Accounts/{account}/{path}", self.url))
            .basic_auth(account, Some(token))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }
}

#[tokio::test]
async fn accounts_are_added_listed_and_each_sends_as_itself() {
    let fake = start().await;
    let (status, listed) = fake.control(reqwest::Method::GET, "accounts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed,
        json!([
            {
                "channel": "email",
                "sendgrid_api_key": KEY,
                "event_verification_key": fake_provider::sendgrid_verification_key(),
                "revoked": false
            },
            {"channel": "sms", "twilio_account_sid": SID, "revoked": false}
        ])
    );
    fake.add_acme().await;
    let (_, listed) = fake.control(reqwest::Method::GET, "accounts", None).await;
    assert_eq!(
        listed[3],
        json!({"channel": "sms", "twilio_account_sid": ACME_SID, "revoked": false})
    );
    assert!(!listed.to_string().contains(ACME_TOKEN), "{listed}");

    let resp = fake.email(ACME_KEY, &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = fake.email(KEY, &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let resp = fake
        .sms_as(ACME_SID, ACME_SID, ACME_TOKEN, &valid_sms())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let acme_sms: Value = resp.json().await.unwrap();
    assert_eq!(acme_sms["account_sid"], ACME_SID);
    assert_eq!(
        acme_sms["uri"],
        format!(
            "/2010-04-01/Accounts/{ACME_SID}/Messages/{}.json",
            acme_sms["sid"].as_str().unwrap()
        )
    );
    let resp = fake.sms(&valid_sms()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let default_sms: Value = resp.json().await.unwrap();

    // The URL's account, the user and the token must all be the same account's.
    for (account, user, token) in [
        (ACME_SID, SID, TOKEN),
        (ACME_SID, SID, ACME_TOKEN),
        (ACME_SID, ACME_SID, TOKEN),
        (SID, ACME_SID, ACME_TOKEN),
    ] {
        let resp = fake
            .sms_as(account, user, token, &valid_sms())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{account} {user} {token}"
        );
    }

    let records = fake.messages("?accepted=true").await;
    let accounts: Vec<_> = records.iter().map(|r| r.account.as_deref()).collect();
    assert_eq!(
        accounts,
        [Some(ACME_KEY), Some(KEY), Some(ACME_SID), Some(SID)]
    );
    let acme_only = fake.messages(&format!("?account={ACME_SID}")).await;
    assert_eq!(acme_only.len(), 4, "the accepted one and three refused");
    assert_eq!(
        acme_only[0].provider_message_id.as_deref(),
        acme_sms["sid"].as_str()
    );

    // Each Twilio account lists and fetches only its own messages.
    let (status, list) = fake.twilio_get(ACME_SID, ACME_TOKEN, "Messages.json").await;
    assert_eq!(status, StatusCode::OK);
    let sids: Vec<_> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sid"].clone())
        .collect();
    assert_eq!(sids, [acme_sms["sid"].clone()]);
    assert_eq!(list["messages"][0]["account_sid"], ACME_SID);
    let (_, list) = fake.twilio_get(SID, TOKEN, "Messages.json").await;
    let sids: Vec<_> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sid"].clone())
        .collect();
    assert_eq!(sids, [default_sms["sid"].clone()]);

    let acme_path = format!("Messages/{}.json", acme_sms["sid"].as_str().unwrap());
    let (status, fetched) = fake.twilio_get(ACME_SID, ACME_TOKEN, &acme_path).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["sid"], acme_sms["sid"]);
    assert_eq!(fetched["status"], "sent");
    assert_eq!(fetched["to"], "+14155550100");
    let (status, other) = fake.twilio_get(SID, TOKEN, &acme_path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(other["code"], 20404);
    assert_eq!(
        other["message"],
        format!("The requested resource /2010-04-01/Accounts/{SID}/{acme_path} was not found")
    );
    let (status, _) = fake.twilio_get(ACME_SID, TOKEN, &acme_path).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_revoked_account_gets_401_while_the_others_keep_working() {
    let fake = start().await;
    fake.add_acme().await;
    let (status, _) = fake
        .control(
            reqwest::Method::DELETE,
            &format!("accounts/{ACME_KEY}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let resp = fake.email(ACME_KEY, &valid_email()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked","help":null}]})
    );
    assert_eq!(
        fake.email(KEY, &valid_email())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );

    // A default account can be revoked too.
    let (status, _) = fake
        .control(reqwest::Method::DELETE, &format!("accounts/{SID}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let resp = fake.sms(&valid_sms()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 20003);
    let (status, _) = fake.twilio_get(SID, TOKEN, "Messages.json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fake.sms_as(ACME_SID, ACME_SID, ACME_TOKEN, &valid_sms())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );

    let (status, body) = fake
        .control(reqwest::Method::DELETE, "accounts/SG.unknown", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string(), "{body}");
    let (_, listed) = fake.control(reqwest::Method::GET, "accounts", None).await;
    let revoked: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["revoked"].clone())
        .collect();
    assert_eq!(
        revoked,
        [json!(false), json!(true), json!(true), json!(false)]
    );

    // Adding it again takes it back.
    let (status, _) = fake
        .control(
            reqwest::Method::POST,
            "accounts",
            Some(json!({"sendgrid_api_key": ACME_KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fake.email(ACME_KEY, &valid_email())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn invalid_accounts_are_rejected() {
    let fake = start().await;
    for bad in [
        json!({}),
        json!({"sendgrid_api_key": ""}),
        json!({"twilio_account_sid": "ACnope", "twilio_auth_token": "t"}),
        json!({"twilio_account_sid": ACME_SID}),
        json!([{"sendgrid_api_key": "SG.fine"}, {"twilio_auth_token": "t"}]),
        json!({"sendgrid_api_key": "SG.fine", "events_url": "ftp://127.0.0.1/events"}),
        json!({"sendgrid_api_key": "SG.fine", "events_url": "127.0.0.1/events"}),
        json!({"twilio_account_sid": ACME_SID, "twilio_auth_token": "t", "events_url": "http://127.0.0.1/events"}),
    ] {
        let (status, body) = fake
            .control(reqwest::Method::POST, "accounts", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid account"),
            "{body}"
        );
    }
    let (_, listed) = fake.control(reqwest::Method::GET, "accounts", None).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "nothing of a refused batch is added"
    );
}

#[tokio::test]
async fn a_fault_for_one_account_spares_the_others() {
    let fake = start().await;
    fake.add_acme().await;
    fake.fault(json!([
        {"kind": "rate_limit", "reset_after_secs": 5, "account": ACME_KEY},
        {"kind": "server_error", "account": ACME_SID, "channel": "sms", "for_ms": 60000}
    ]))
    .await;
    assert_eq!(
        fake.email(KEY, &valid_email())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        fake.sms(&valid_sms()).send().await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(fake.pending_faults().await.len(), 2);
    assert_eq!(
        fake.email(ACME_KEY, &valid_email())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        fake.email(ACME_KEY, &valid_email())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    for _ in 0..2 {
        let resp = fake
            .sms_as(ACME_SID, ACME_SID, ACME_TOKEN, &valid_sms())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(
        fake.pending_faults().await,
        [
            json!({"kind": "server_error", "status": 500, "times": 1, "channel": "sms", "account": ACME_SID, "for_ms": 60000})
        ]
    );
}

/// A server that takes Twilio's status callbacks: `(signature, form)` of each, in turn.
async fn callback_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<(String, String)>)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let signature = headers[fake_provider::TWILIO_SIGNATURE_HEADER]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let form: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
                let _ = tx.send((signature, form));
                ""
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, rx)
}

#[tokio::test]
async fn a_messaging_service_sends_and_callbacks_are_signed_by_the_sending_account() {
    let fake = start().await;
    fake.add_acme().await;
    let (callback, mut posts) = callback_receiver().await;
    let form = [
        ("To", "+14155550100"),
        ("MessagingServiceSid", SERVICE),
        ("Body", "via the service"),
        ("StatusCallback", callback.as_str()),
    ];
    let resp = fake
        .sms_as(ACME_SID, ACME_SID, ACME_TOKEN, &form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["from"], Value::Null);
    assert_eq!(body["messaging_service_sid"], SERVICE);

    let record = &fake.messages("?channel=sms").await[0];
    assert_eq!(record.account.as_deref(), Some(ACME_SID));
    assert_eq!(record.from, None);
    assert_eq!(record.messaging_service_sid.as_deref(), Some(SERVICE));

    for expected in ["sent", "delivered"] {
        let (signature, params) = tokio::time::timeout(Duration::from_secs(5), posts.recv())
            .await
            .expect("a status callback")
            .unwrap();
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(param("MessageStatus"), Some(expected));
        assert_eq!(param("AccountSid"), Some(ACME_SID));
        assert_eq!(param("MessagingServiceSid"), Some(SERVICE));
        assert_eq!(param("From"), None);
        assert_eq!(
            signature,
            fake_provider::sign_twilio_request(ACME_TOKEN, &callback, &params)
        );
        assert_ne!(
            signature,
            fake_provider::sign_twilio_request(TOKEN, &callback, &params)
        );
    }

    // The default account's callbacks: its SID, its token.
    let mut sms = valid_sms();
    sms[3].1 = &callback;
    assert_eq!(
        fake.sms(&sms).send().await.unwrap().status(),
        StatusCode::CREATED
    );
    let (signature, params) = tokio::time::timeout(Duration::from_secs(5), posts.recv())
        .await
        .expect("a status callback")
        .unwrap();
    assert!(params.contains(&("AccountSid".to_owned(), SID.to_owned())));
    assert!(params.contains(&("From".to_owned(), "+15005550006".to_owned())));
    assert_eq!(
        signature,
        fake_provider::sign_twilio_request(TOKEN, &callback, &params)
    );

    // Neither From nor MessagingServiceSid: Twilio's 21603.
    let resp = fake
        .sms_as(
            ACME_SID,
            ACME_SID,
            ACME_TOKEN,
            &[("To", "+14155550100"), ("Body", "x")],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"code":21603,"message":"A 'From' phone number is required.","more_info":"https://www.twilio.com/docs/errors/21603","status":400})
    );
}

#[tokio::test]
async fn accounts_from_the_config_and_the_in_process_handle() {
    let fake = fake_provider::FakeProvider::start(Config {
        accounts: vec![fake_provider::Account::sendgrid(ACME_KEY)],
        ..Config::default()
    })
    .await
    .unwrap();
    let send = |key: &'static str| {
        Client::new()
            .post(format!("{}/v3/mail/send", fake.url()))
            .bearer_auth(key)
            .json(&valid_email())
            .send()
    };
    assert_eq!(send(ACME_KEY).await.unwrap().status(), StatusCode::ACCEPTED);
    assert!(fake.accounts().revoke(ACME_KEY));
    assert_eq!(
        send(ACME_KEY).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(KEY).await.unwrap().status(), StatusCode::ACCEPTED);
    let accounts: Vec<_> = fake
        .store()
        .list(None, None)
        .into_iter()
        .map(|r| r.account)
        .collect();
    assert_eq!(
        accounts,
        [
            Some(ACME_KEY.into()),
            Some(ACME_KEY.into()),
            Some(KEY.into())
        ]
    );
    fake.shutdown().await;
}

/// One Event Webhook post as a receiver got it.
struct EventPost {
    path: String,
    signature: String,
    timestamp: String,
    body: String,
}

impl EventPost {
    /// Whether its signature verifies with `key` (base64 DER), as a receiver checks it.
    fn verifies_with(&self, key: &str) -> bool {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key).unwrap();
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&key).unwrap();
        let signature =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &self.signature)
                .unwrap();
        let signature = p256::ecdsa::Signature::from_der(&signature).unwrap();
        let signed = format!("{}{}", self.timestamp, self.body);
        key.verify(signed.as_bytes(), &signature).is_ok()
    }
}

/// A server that takes SendGrid's Event Webhook at `/events/{name}`: its base URL, and each
/// post in turn.
async fn event_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<EventPost>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/events/{name}",
        axum::routing::post(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
                let tx = tx.clone();
                async move {
                    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
                    let _ = tx.send(EventPost {
                        path: uri.path().to_owned(),
                        signature: header(fake_provider::SIGNATURE_HEADER),
                        timestamp: header(fake_provider::TIMESTAMP_HEADER),
                        body,
                    });
                    ""
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, rx)
}

#[tokio::test]
async fn each_sendgrid_account_posts_its_events_to_its_own_url_signed_with_its_own_key() {
    const GLOBEX_KEY: &str = "SG.globex";
    const INITECH_KEY: &str = "SG.initech";
    let (events, mut posts) = event_receiver().await;
    let fake = fake_provider::FakeProvider::start(Config {
        sendgrid_events_url: Some(format!("{events}/global")),
        accounts: vec![fake_provider::Account::sendgrid_with_events_url(
            ACME_KEY,
            format!("{events}/acme"),
        )],
        ..Config::default()
    })
    .await
    .unwrap();
    let http = Client::new();
    let listed: Value = http
        .post(format!("{}/_fake/accounts", fake.url()))
        .json(&json!([
            {"sendgrid_api_key": GLOBEX_KEY},
            {"sendgrid_api_key": INITECH_KEY, "events_url": format!("{events}/initech")}
        ]))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();

    // Each account's key, in process and in the listing: the default's as before, the
    // others' each their own.
    let key = |api_key: &str| fake.accounts().sendgrid_verification_key(api_key).unwrap();
    assert_eq!(key(KEY), fake_provider::sendgrid_verification_key());
    assert_eq!(fake.accounts().sendgrid_verification_key(SID), None);
    assert_eq!(
        fake.accounts().sendgrid_verification_key("SG.unknown"),
        None
    );
    let listed_email: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["channel"] == "email")
        .map(|a| {
            (
                a["sendgrid_api_key"].as_str().unwrap(),
                a["events_url"].as_str(),
                a["event_verification_key"].as_str().unwrap(),
            )
        })
        .collect();
    let acme_url = format!("{events}/acme");
    let initech_url = format!("{events}/initech");
    assert_eq!(
        listed_email,
        [
            (KEY, None, key(KEY).as_str()),
            (ACME_KEY, Some(acme_url.as_str()), key(ACME_KEY).as_str()),
            (GLOBEX_KEY, None, key(GLOBEX_KEY).as_str()),
            (
                INITECH_KEY,
                Some(initech_url.as_str()),
                key(INITECH_KEY).as_str()
            ),
        ]
    );
    let keys: std::collections::BTreeSet<_> =
        [KEY, ACME_KEY, GLOBEX_KEY, INITECH_KEY].map(key).into();
    assert_eq!(keys.len(), 4, "one key pair per account");

    // Each account sends one email; acme is revoked right after sending its own.
    let mut sent = Vec::new();
    for (api_key, path) in [
        (KEY, "/events/global"),
        (ACME_KEY, "/events/acme"),
        (GLOBEX_KEY, "/events/global"),
        (INITECH_KEY, "/events/initech"),
    ] {
        let resp = http
            .post(format!("{}/v3/mail/send", fake.url()))
            .bearer_auth(api_key)
            .json(&valid_email())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let id = resp.headers()["x-message-id"].to_str().unwrap().to_owned();
        sent.push((id, api_key, path));
        if api_key == ACME_KEY {
            assert!(fake.accounts().revoke(ACME_KEY));
        }
    }

    let mut events_by_account = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for _ in 0..sent.len() * 2 {
        let post = tokio::time::timeout(Duration::from_secs(5), posts.recv())
            .await
            .expect("an Event Webhook post")
            .unwrap();
        let events: Vec<Value> = serde_json::from_str(&post.body).unwrap();
        let message = events[0]["sg_message_id"].as_str().unwrap();
        let (_, api_key, path) = sent
            .iter()
            .find(|(id, ..)| message.starts_with(id.as_str()))
            .expect("an email sent here");
        assert_eq!(post.path, *path, "{api_key}'s events go to its URL");
        for other in [KEY, ACME_KEY, GLOBEX_KEY, INITECH_KEY] {
            assert_eq!(
                post.verifies_with(&key(other)),
                other == *api_key,
                "{api_key}'s events are signed with its key only, not {other}'s"
            );
        }
        // Signatures are deterministic (RFC 6979): the in-process signer makes the same.
        assert_eq!(
            fake.accounts()
                .sign_sendgrid_events(api_key, &post.timestamp, post.body.as_bytes()),
            Some(post.signature.clone())
        );
        events_by_account.entry(api_key).or_default().extend(
            events
                .iter()
                .map(|e| e["event"].as_str().unwrap().to_owned()),
        );
    }
    for api_key in [KEY, ACME_KEY, GLOBEX_KEY, INITECH_KEY] {
        let mut events = events_by_account[api_key].clone();
        events.sort();
        assert_eq!(events, ["delivered", "processed"], "{api_key}");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), posts.recv())
            .await
            .is_err(),
        "nothing more"
    );
    fake.shutdown().await;
}
