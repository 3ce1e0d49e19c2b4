//! Runs the `fake-provider` binary: the stdout address line, flags, `--account` and `--fault`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_address_and_applies_flags() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
        .args(["--listen", "127.0.0.1:0", "--sendgrid-api-key", "SG.cli"])
        .args([
            "--fault",
            r#"{"kind":"server_error","status":503,"channel":"email"}"#,
        ])
        .args([
            "--fault",
            r#"[{"kind":"rate_limit","reset_after_secs":2,"channel":"sms"}]"#,
        ])
        .args([
            "--account",
            r#"{"sendgrid_api_key":"SG.second","events_url":"http://127.0.0.1:9/second"}"#,
        ])
        .args([
            "--account",
            r#"[{"twilio_account_sid":"ACacce0000000000000000000000000001","twilio_auth_token":"second-token"}]"#,
        ])
        .env("FAKE_TWILIO_AUTH_TOKEN", "tok-from-env")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut running = Running(child);

    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("fake-provider listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );

    let http = reqwest::Client::new();
    let control = |what: &'static str| {
        let request = http.get(format!("{url}/_fake/{what}")).send();
        async move {
            request
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let faults = control("faults").await;
    assert_eq!(faults.as_array().unwrap().len(), 2);

    let email = json!({
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "f@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "v"}]
    });
    let send = || {
        http.post(format!("{url}/v3/mail/send"))
            .bearer_auth("SG.cli")
            .json(&email)
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 503);
    assert_eq!(send().await.unwrap().status(), 202);
    let second = http
        .post(format!("{url}/v3/mail/send"))
        .bearer_auth("SG.second")
        .json(&email)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 202);
    let accounts = control("accounts").await;
    assert_eq!(accounts.as_array().unwrap().len(), 4, "{accounts}");
    assert_eq!(accounts[2]["events_url"], "http://127.0.0.1:9/second");
    assert!(
        accounts[2]["event_verification_key"].is_string(),
        "{accounts}"
    );
    assert_ne!(
        accounts[2]["event_verification_key"],
        accounts[0]["event_verification_key"]
    );

    let sid = "ACf4ce0000000000000000000000000000";
    let sms = || {
        http.post(format!("{url}/2010-04-01/Accounts/{sid}/Messages.json"))
            .basic_auth(sid, Some("tok-from-env"))
            .form(&[
                ("To", "+14155550100"),
                ("From", "+15005550006"),
                ("Body", "hi"),
            ])
            .send()
    };
    assert_eq!(sms().await.unwrap().status(), 429);
    assert_eq!(sms().await.unwrap().status(), 201);
    let second = "ACacce0000000000000000000000000001";
    let resp = http
        .post(format!("{url}/2010-04-01/Accounts/{second}/Messages.json"))
        .basic_auth(second, Some("second-token"))
        .form(&[
            ("To", "+14155550100"),
            ("From", "+15005550006"),
            ("Body", "hi"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let revoked = http
        .delete(format!("{url}/_fake/accounts/SG.second"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);

    // SIGTERM shuts it down gracefully with a zero exit status.
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    let logs = std::io::read_to_string(stderr).unwrap();
    assert!(
        !logs.contains("SG.cli")
            && !logs.contains("tok-from-env")
            && !logs.contains("SG.second")
            && !logs.contains("second-token"),
        "secrets in logs:\n{logs}"
    );
    assert!(logs.contains("request handled"), "{logs}");
}

#[test]
fn binary_refuses_a_malformed_account_sid() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
        .args(["--listen", "127.0.0.1:0"])
        .env(
            "FAKE_TWILIO_ACCOUNT_SID",
            "ACfake0000000000000000000000000000",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("AC followed by 32 hexadecimal digits"),
        "{stderr}"
    );
}

#[test]
fn binary_refuses_a_malformed_account() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--account",
            r#"{"twilio_account_sid":"ACfake0000000000000000000000000000","twilio_auth_token":"t"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid account") && stderr.contains("32 hexadecimal digits"),
        "{stderr}"
    );
}
