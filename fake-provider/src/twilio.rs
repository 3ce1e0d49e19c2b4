//! Twilio Messages: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, the message list
//! (`GET` of the same) and a message (`GET …/Messages/{MessageSid}.json`), each with Basic auth
//! `{AccountSid}:{AuthToken}` of a Twilio account the fake knows and has not revoked. An
//! account sees only its own messages.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use crate::provider::{self, Provider, Rejection, Summary};
use crate::server::{App, ConnKill};
use crate::store::{Channel, Received};

/// Longest body Twilio accepts, in characters.
const MAX_BODY_CHARS: usize = 1600;
const SEGMENT_CHARS: usize = 160;
/// As with Twilio's test credentials: sending to this number gets error 21610, as to a
/// recipient who replied STOP.
pub const OPTED_OUT_NUMBER: &str = "+15005550004";

pub(crate) async fn create_message(
    State(app): State<Arc<App>>,
    Extension(kill): Extension<ConnKill>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let access = access(&app, &account_sid, "Messages.json", &headers);
    provider::handle::<Twilio>(app, kill, Some(account_sid), access, body).await
}

/// Twilio's message list, `GET …/Messages.json`: the SMS this fake accepted for the account,
/// newest first, filtered by `To`, `From`, `DateSent` (a `YYYY-MM-DD` day), `DateSent<`
/// (before it) and `DateSent>` (on or after it), in pages of `PageSize` (50; at most 1000)
/// numbered from 0 by `Page`, with `next_page_uri` while more follow. Messages are sent as they are
/// accepted here: each is `sent`, its `date_sent` its `date_created`.
pub(crate) async fn list_messages(
    State(app): State<Arc<App>>,
    Path(account_sid): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = access(&app, &account_sid, "Messages.json", &headers) {
        return refused.into_response();
    }
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let day = |name: &str| -> Result<Option<NaiveDate>, Rejection> {
        param(name)
            .map(|text| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        20001,
                        format!("Invalid {name}: {text} is not a date (YYYY-MM-DD)"),
                    )
                })
            })
            .transpose()
    };
    let (on, before, from_day) = match (day("DateSent"), day("DateSent<"), day("DateSent>")) {
        (Ok(on), Ok(before), Ok(from_day)) => (on, before, from_day),
        (Err(bad), _, _) | (_, Err(bad), _) | (_, _, Err(bad)) => return bad.into_response(),
    };
    let page_size = param("PageSize")
        .and_then(|size| size.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page = param("Page")
        .and_then(|page| page.parse::<usize>().ok())
        .unwrap_or(0);
    let mut sent: Vec<Received> = app
        .store
        .list(Some(Channel::Sms), Some(true))
        .into_iter()
        .filter(|m| m.account.as_deref() == Some(account_sid.as_str()))
        .filter(|m| param("To").is_none_or(|to| m.to.iter().any(|t| t == to)))
        .filter(|m| param("From").is_none_or(|from| m.from.as_deref() == Some(from)))
        .filter(|m| {
            let day = m.received_at.date_naive();
            on.is_none_or(|on| day == on)
                && before.is_none_or(|before| day < before)
                && from_day.is_none_or(|from_day| day >= from_day)
        })
        .collect();
    sent.reverse();
    let list_uri = format!("/2010-04-01/Accounts/{account_sid}/Messages.json");
    let page_uri = |page: usize| {
        let mut query: Vec<(String, String)> = params
            .iter()
            .filter(|(key, _)| key != "Page" && key != "PageSize")
            .cloned()
            .collect();
        query.push(("PageSize".into(), page_size.to_string()));
        query.push(("Page".into(), page.to_string()));
        let query = serde_urlencoded::to_string(query).unwrap_or_default();
        format!("{list_uri}?{query}")
    };
    let start = page * page_size;
    let messages: Vec<Value> = sent
        .iter()
        .skip(start)
        .take(page_size)
        .map(|m| sent_resource(&account_sid, m))
        .collect();
    let more = start + messages.len() < sent.len();
    let end = (start + messages.len()).saturating_sub(1);
    Json(json!({
        "messages": messages,
        "page": page,
        "page_size": page_size,
        "start": start,
        "end": end,
        "uri": page_uri(page),
        "first_page_uri": page_uri(0),
        "next_page_uri": more.then(|| page_uri(page + 1)),
        "previous_page_uri": (page > 0).then(|| page_uri(page - 1)),
    }))
    .into_response()
}

/// Twilio's message fetch, `GET …/Messages/{MessageSid}.json`: one SMS this fake accepted for
/// the account, as in the list; 404 for any other, another account's too.
pub(crate) async fn fetch_message(
    State(app): State<Arc<App>>,
    Path((account_sid, message)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let resource = format!("Messages/{message}");
    if let Err(refused) = access(&app, &account_sid, &resource, &headers) {
        return refused.into_response();
    }
    let found = message.strip_suffix(".json").and_then(|sid| {
        app.store
            .list(Some(Channel::Sms), Some(true))
            .into_iter()
            .find(|m| {
                m.account.as_deref() == Some(account_sid.as_str())
                    && m.provider_message_id.as_deref() == Some(sid)
            })
    });
    match found {
        Some(m) => Json(sent_resource(&account_sid, &m)).into_response(),
        None => not_found(&account_sid, &resource).into_response(),
    }
}

/// An accepted SMS as the list and the fetch show it: sent as it was accepted, its
/// `date_sent` its `date_created`.
fn sent_resource(account_sid: &str, m: &Received) -> Value {
    let sid = m.provider_message_id.as_deref().unwrap_or_default();
    let text = m.text.as_deref().unwrap_or_default();
    let mut resource = message_resource(
        account_sid,
        sid,
        m.raw.get("To"),
        m.from.as_deref(),
        m.messaging_service_sid.as_deref(),
        text,
        m.received_at,
    );
    resource["status"] = json!("sent");
    resource["date_sent"] = json!(twilio_time(m.received_at));
    resource
}

/// Twilio's 404 for the account's `resource` (a path below the account's).
fn not_found(account_sid: &str, resource: &str) -> Rejection {
    error(
        StatusCode::NOT_FOUND,
        20404,
        format!(
            "The requested resource /2010-04-01/Accounts/{account_sid}/{resource} was not found"
        ),
    )
}

/// Whether the request for the account's `resource` may use the account: Twilio answers a
/// malformed AccountSid with 404 whatever the credentials, and with 401 credentials that are
/// not the URL's account's (an unknown or revoked account, another account's user, a wrong
/// token).
fn access(
    app: &App,
    account_sid: &str,
    resource: &str,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    if !is_account_sid(account_sid) {
        Err(not_found(account_sid, resource))
    } else if credentials
        .as_deref()
        .and_then(|c| c.split_once(':'))
        .is_some_and(|(user, token)| {
            user == account_sid && app.accounts.twilio_allows(account_sid, token)
        })
    {
        Ok(())
    } else {
        Err(Twilio::unauthorized())
    }
}

/// Twilio's time format (RFC 2822, in UTC).
fn twilio_time(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// A Message resource of the account as Twilio returns it, `queued` and not sent yet.
fn message_resource(
    account_sid: &str,
    sid: &str,
    to: Option<&Value>,
    from: Option<&str>,
    messaging_service_sid: Option<&str>,
    body: &str,
    created: DateTime<Utc>,
) -> Value {
    let segments = body.chars().count().div_ceil(SEGMENT_CHARS).max(1);
    let created = twilio_time(created);
    let uri = format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}");
    json!({
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": created,
        "date_sent": null,
        "date_updated": created,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": messaging_service_sid,
        "num_media": "0",
        "num_segments": segments.to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": { "media": format!("{uri}/Media.json") },
        "to": to,
        "uri": format!("{uri}.json"),
    })
}

/// `AC` followed by 32 hexadecimal digits.
pub fn is_account_sid(sid: &str) -> bool {
    is_sid("AC", sid)
}

/// A Messaging Service SID: `MG` followed by 32 hexadecimal digits.
pub fn is_messaging_service_sid(sid: &str) -> bool {
    is_sid("MG", sid)
}

fn is_sid(prefix: &str, sid: &str) -> bool {
    sid.strip_prefix(prefix)
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

/// The `MessagingServiceSid` asked for, if not empty.
fn messaging_service(raw: &Value) -> Option<&str> {
    field(raw, "MessagingServiceSid").filter(|sid| !sid.is_empty())
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
            messaging_service_sid: messaging_service(raw).map(str::to_owned),
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
            // Twilio's magic test number for a recipient that replied STOP.
            Some(OPTED_OUT_NUMBER) => {
                return bad(21610, "Attempt to send to unsubscribed recipient");
            }
            Some(_) => {}
        }
        // With a messaging service, Twilio picks the sender from its pool (and uses the
        // service when From is given too). 21705 and its wording are Twilio's for a
        // MessagingServiceSid that is not `MG` and 32 hex digits; any well-formed one is
        // taken as a service of the account.
        let service = messaging_service(raw);
        if let Some(service) = service
            && !is_messaging_service_sid(service)
        {
            return bad(21705, "The Messaging Service is invalid.");
        }
        match field(raw, "From") {
            None | Some("") if service.is_some() => {}
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

    fn accept(account_sid: &str, raw: &Value, summary: &Summary) -> (String, Response) {
        let sid = format!("SM{:032x}", rand::random::<u128>());
        let body = field(raw, "Body").unwrap_or_default();
        let message = message_resource(
            account_sid,
            &sid,
            raw.get("To"),
            summary.from.as_deref(),
            summary.messaging_service_sid.as_deref(),
            body,
            Utc::now(),
        );
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
    fn a_messaging_service_stands_for_from() {
        const SERVICE: &str = "MG0123456789abcdef0123456789abcdef";
        assert!(is_messaging_service_sid(SERVICE));
        for bad in [
            "MG0123",
            "AC0123456789abcdef0123456789abcdef",
            "MGxyz3456789abcdef0123456789abcdef",
        ] {
            assert!(!is_messaging_service_sid(bad), "{bad}");
        }
        let to = "To=%2B14155550100&Body=hi";
        assert_eq!(code(&format!("{to}&MessagingServiceSid={SERVICE}")), None);
        assert_eq!(
            code(&format!(
                "{to}&MessagingServiceSid={SERVICE}&From=%2B15005550006"
            )),
            None,
            "both: Twilio uses the service"
        );
        assert_eq!(code(&format!("{to}&MessagingServiceSid=")), Some(21603));
        assert_eq!(code(&format!("{to}&MessagingServiceSid=MG1")), Some(21705));
        assert_eq!(
            code(&format!(
                "{to}&MessagingServiceSid={SERVICE}&From=15005550006"
            )),
            Some(21212),
            "a From given is still checked"
        );

        let raw = Twilio::parse(format!("{to}&MessagingServiceSid={SERVICE}").as_bytes()).unwrap();
        let summary = Twilio::summarize(&raw);
        assert_eq!(summary.from, None);
        assert_eq!(summary.messaging_service_sid.as_deref(), Some(SERVICE));
        let sid = "ACacce0000000000000000000000000001";
        let (_, response) = Twilio::accept(sid, &raw, &summary);
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    #[test]
    fn a_resource_names_its_account_and_service() {
        let sid = "ACacce0000000000000000000000000001";
        let service = "MG0123456789abcdef0123456789abcdef";
        let resource = message_resource(
            sid,
            "SM1",
            Some(&json!("+14155550100")),
            None,
            Some(service),
            "hi",
            Utc::now(),
        );
        assert_eq!(resource["account_sid"], sid);
        assert_eq!(resource["from"], Value::Null);
        assert_eq!(resource["messaging_service_sid"], service);
        assert_eq!(
            resource["uri"],
            format!("/2010-04-01/Accounts/{sid}/Messages/SM1.json")
        );
    }

    #[test]
    fn repeated_fields_become_arrays() {
        let raw = Twilio::parse(b"MediaUrl=a&MediaUrl=b&MediaUrl=c&To=x").unwrap();
        assert_eq!(raw, json!({"MediaUrl": ["a", "b", "c"], "To": "x"}));
    }
}
