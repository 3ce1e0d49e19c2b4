//! Twilio Messages: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::provider::{self, Provider, Rejection, Summary};
use crate::server::{App, ConnKill};
use crate::store::Channel;

/// Longest body Twilio accepts, in characters.
const MAX_BODY_CHARS: usize = 1600;
const SEGMENT_CHARS: usize = 160;

pub(crate) async fn create_message(
    State(app): State<Arc<App>>,
    Extension(kill): Extension<ConnKill>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let config = &app.config;
    let access = if !is_account_sid(&account_sid) {
        // Twilio answers a malformed AccountSid with 404, whatever the credentials.
        Err(error(
            StatusCode::NOT_FOUND,
            20404,
            format!(
                "The requested resource /2010-04-01/Accounts/{account_sid}/Messages.json was not found"
            ),
        ))
    } else if account_sid == config.twilio_account_sid
        && credentials.is_some_and(|c| {
            c.split_once(':') == Some((&config.twilio_account_sid, &config.twilio_auth_token))
        })
    {
        Ok(())
    } else {
        Err(Twilio::unauthorized())
    };
    provider::handle::<Twilio>(app, kill, access, body).await
}

/// `AC` followed by 32 hexadecimal digits.
pub fn is_account_sid(sid: &str) -> bool {
    sid.strip_prefix("AC")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn error(status: StatusCode, code: u32, message: String) -> Rejection {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    Rejection::new(status, body, message)
}

fn field<'a>(raw: &'a Value, name: &str) -> Option<&'a str> {
    raw.get(name).and_then(Value::as_str)
}

/// E.164: `+` followed by 8 to 15 digits, the first (of the country code) not 0.
pub(crate) fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// What Twilio takes as a sender: an E.164 number, a short code (5 or 6 digits), or an
/// alphanumeric sender ID (up to 11 letters, digits and spaces, at least one letter).
pub(crate) fn is_sender(from: &str) -> bool {
    let short_code = (5..=6).contains(&from.len()) && from.bytes().all(|b| b.is_ascii_digit());
    let alphanumeric = from.len() <= 11
        && from.bytes().any(|b| b.is_ascii_alphabetic())
        && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ');
    is_e164(from) || short_code || alphanumeric
}

pub(crate) struct Twilio;

impl Provider for Twilio {
    const CHANNEL: Channel = Channel::Sms;

    fn unauthorized() -> Rejection {
        error(StatusCode::UNAUTHORIZED, 20003, "Authenticate".into())
    }

    /// Form fields as a JSON object; a repeated field becomes an array of its values.
    fn parse(body: &[u8]) -> Option<Value> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
        let mut fields = Map::new();
        for (key, value) in pairs {
            match fields.get_mut(&key) {
                None => {
                    fields.insert(key, Value::String(value));
                }
                Some(Value::Array(values)) => values.push(Value::String(value)),
                Some(first) => *first = json!([first.take(), value]),
            }
        }
        Some(Value::Object(fields))
    }

    fn summarize(raw: &Value) -> Summary {
        Summary {
            to: field(raw, "To").map(str::to_owned).into_iter().collect(),
            from: field(raw, "From").map(str::to_owned),
            text: field(raw, "Body").map(str::to_owned),
            ..Summary::default()
        }
    }

    fn validate(raw: Option<&Value>) -> Result<(), Rejection> {
        let raw = raw.unwrap_or(&Value::Null);
        let bad = |code, message: &str| Err(error(StatusCode::BAD_REQUEST, code, message.into()));
        match field(raw, "To") {
            None | Some("") => return bad(21604, "A 'To' phone number is required."),
            Some(to) if !is_e164(to) => {
                return bad(
                    21211,
                    &format!("The 'To' number {to} is not a valid phone number."),
                );
            }
            Some(_) => {}
        }
        match field(raw, "From") {
            None | Some("") => return bad(21603, "A 'From' phone number is required."),
            Some(from) if !is_sender(from) => {
                return bad(
                    21212,
                    &format!(
                        "The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."
                    ),
                );
            }
            Some(_) => {}
        }
        match field(raw, "Body") {
            None | Some("") => bad(21602, "Message body is required."),
            Some(body) if body.chars().count() > MAX_BODY_CHARS => bad(
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            ),
            Some(_) => Ok(()),
        }
    }

    fn rate_limited(reset_after_secs: u64) -> Rejection {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            20429,
            "Too Many Requests".into(),
        )
        .with_header("retry-after", reset_after_secs)
    }

    fn server_error(status: StatusCode) -> Rejection {
        error(status, 20500, "Internal Server Error".into())
    }

    fn accept(app: &App, raw: &Value, _: &Summary) -> (String, Response) {
        let sid = format!("SM{:032x}", rand::random::<u128>());
        let account_sid = &app.config.twilio_account_sid;
        let body = field(raw, "Body").unwrap_or_default();
        let segments = body.chars().count().div_ceil(SEGMENT_CHARS).max(1);
        let now = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S +0000")
            .to_string();
        let uri = format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}");
        let message = json!({
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": null,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": field(raw, "From"),
            "messaging_service_sid": null,
            "num_media": "0",
            "num_segments": segments.to_string(),
            "price": null,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": { "media": format!("{uri}/Media.json") },
            "to": field(raw, "To"),
            "uri": format!("{uri}.json"),
        });
        (sid, (StatusCode::CREATED, Json(message)).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(form: &str) -> Option<u64> {
        let raw = Twilio::parse(form.as_bytes());
        let rejection = Twilio::validate(raw.as_ref()).err()?;
        assert_eq!(rejection.status, StatusCode::BAD_REQUEST);
        rejection.body["code"].as_u64()
    }

    #[test]
    fn e164() {
        assert!(is_e164("+14155550100"));
        for bad in [
            "14155550100",
            "+1234567",
            "+1234567890123456",
            "+1 415 555",
            "+",
            "+04155550100",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn senders() {
        for good in ["+15005550006", "12345", "123456", "Herald", "Acme Co 24"] {
            assert!(is_sender(good), "{good}");
        }
        for bad in [
            "15005550006",
            "1234",
            "Acme Company",
            "Acme-Co",
            "+1 500 555",
        ] {
            assert!(!is_sender(bad), "{bad}");
        }
    }

    #[test]
    fn account_sids() {
        assert!(is_account_sid("ACf4ce0000000000000000000000000000"));
        for bad in [
            "ACfake0000000000000000000000000000",
            "AC0000000000000000000000000000000",
            "AC000000000000000000000000000000000",
            "SKf4ce0000000000000000000000000000",
        ] {
            assert!(!is_account_sid(bad), "{bad}");
        }
    }

    #[test]
    fn validation_codes() {
        let long = "x".repeat(1601);
        assert_eq!(code("To=%2B14155550100&From=%2B15005550006&Body=hi"), None);
        assert_eq!(code("From=%2B15005550006&Body=hi"), Some(21604));
        assert_eq!(
            code("To=4155550100&From=%2B15005550006&Body=hi"),
            Some(21211)
        );
        assert_eq!(code("To=%2B14155550100&Body=hi"), Some(21603));
        assert_eq!(
            code("To=%2B14155550100&From=15005550006&Body=hi"),
            Some(21212)
        );
        assert_eq!(
            code("To=4155550100&From=15005550006&Body=hi"),
            Some(21211),
            "To is checked first"
        );
        assert_eq!(
            code("To=%2B14155550100&From=%2B15005550006&Body="),
            Some(21602)
        );
        assert_eq!(
            code(&format!(
                "To=%2B14155550100&From=%2B15005550006&Body={long}"
            )),
            Some(21617)
        );
        assert_eq!(
            code(&format!(
                "To=%2B14155550100&From=%2B15005550006&Body={}",
                &long[1..]
            )),
            None
        );
    }

    #[test]
    fn repeated_fields_become_arrays() {
        let raw = Twilio::parse(b"MediaUrl=a&MediaUrl=b&MediaUrl=c&To=x").unwrap();
        assert_eq!(raw, json!({"MediaUrl": ["a", "b", "c"], "To": "x"}));
    }
}
