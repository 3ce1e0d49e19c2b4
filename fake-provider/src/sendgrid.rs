//! SendGrid v3 Mail Send: `POST /v3/mail/send`, with `Authorization: Bearer <API key>` of a
//! SendGrid account the fake knows and has not revoked.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::Value;

use crate::provider::{self, Provider, Rejection, Summary};
use crate::server::{App, ConnKill};
use crate::store::Channel;

const HELP: &str = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.";

pub(crate) async fn mail_send(
    State(app): State<Arc<App>>,
    Extension(kill): Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api_key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let access = if api_key
        .as_deref()
        .is_some_and(|key| app.accounts.sendgrid_allows(key))
    {
        Ok(())
    } else {
        Err(unauthorized())
    };
    provider::handle::<SendGrid>(app, kill, api_key, access, body).await
}

fn unauthorized() -> Rejection {
    reject(
        StatusCode::UNAUTHORIZED,
        vec![ApiError::bare(
            "The provided authorization grant is invalid, expired, or revoked",
        )],
    )
}

/// One entry of SendGrid's `{"errors":[…]}` body.
#[derive(Serialize)]
struct ApiError {
    field: Option<String>,
    message: String,
    help: Option<String>,
}

impl ApiError {
    fn new(field: impl Into<String>, message: &str, anchor: &str) -> Self {
        Self {
            field: Some(field.into()),
            message: message.into(),
            help: Some(format!("{HELP}{anchor}")),
        }
    }

    fn bare(message: &str) -> Self {
        Self {
            field: None,
            message: message.into(),
            help: None,
        }
    }
}

fn reject(status: StatusCode, errors: Vec<ApiError>) -> Rejection {
    let message = errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    Rejection::new(status, serde_json::json!({ "errors": errors }), message)
}

/// `local@domain.tld`, without whitespace.
pub(crate) fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn non_empty_array<'a>(v: &'a Value, key: &str) -> Option<&'a Vec<Value>> {
    v.get(key)
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
}

/// SendGrid documents that a recipient's name cannot contain `,` or `;` (such sends used to
/// be accepted and then dropped, the name read as the address) but gives no error text for
/// it: this wording is the fake's. The fake holds `from` to it too (reports disagree on
/// whether SendGrid does).
const NAME_MESSAGE: &str = "A name cannot contain ',' or ';'.";

fn name_refused(address: &Value) -> bool {
    str_at(address, "/name").is_some_and(|name| name.contains([',', ';']))
}

/// Headers SendGrid sets itself and refuses in `headers` (the fake's list and wording).
const RESERVED_HEADERS: [&str; 12] = [
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
];

/// `headers` must be an object of strings, none of them one SendGrid sets itself.
fn check_headers(holder: &Value, field: String, errors: &mut Vec<ApiError>) {
    let Some(headers) = holder.get("headers") else {
        return;
    };
    match headers.as_object() {
        None => errors.push(ApiError::new(
            field,
            &format!(
                "Invalid type. Expected: object, given: {}.",
                json_type(headers)
            ),
            "headers",
        )),
        Some(headers) if headers.values().any(|v| !v.is_string()) => errors.push(ApiError::new(
            field,
            "All values of the headers object must be strings.",
            "headers",
        )),
        Some(headers) => {
            for name in headers.keys() {
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    errors.push(ApiError::new(
                        field.clone(),
                        &format!("{name} is a reserved header and cannot be set in headers."),
                        "headers",
                    ));
                }
            }
        }
    }
}

/// The objects of strings at `key` (`custom_args`, `headers`) of the request and of every
/// personalization, merged.
fn merged(raw: &Value, personalizations: &[Value], key: &str) -> BTreeMap<String, String> {
    std::iter::once(raw)
        .chain(personalizations)
        .filter_map(|v| v.get(key)?.as_object())
        .flatten()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k.clone(), v)
        })
        .collect()
}

/// `custom_args` must be an object of strings.
fn check_custom_args(holder: &Value, field: String, anchor: &str, errors: &mut Vec<ApiError>) {
    let Some(args) = holder.get("custom_args") else {
        return;
    };
    match args.as_object() {
        None => errors.push(ApiError::new(
            field,
            &format!(
                "Invalid type. Expected: object, given: {}.",
                json_type(args)
            ),
            anchor,
        )),
        Some(args) if args.values().any(|v| !v.is_string()) => errors.push(ApiError::new(
            field,
            "All values of custom arguments object must be strings",
            anchor,
        )),
        Some(_) => {}
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// text/plain first, then text/html, then any other type.
fn content_rank(block: &Value) -> u8 {
    match str_at(block, "/type") {
        Some("text/plain") => 0,
        Some("text/html") => 1,
        _ => 2,
    }
}

pub(crate) struct SendGrid;

impl Provider for SendGrid {
    const CHANNEL: Channel = Channel::Email;

    fn unauthorized() -> Rejection {
        unauthorized()
    }

    fn parse(body: &[u8]) -> Option<Value> {
        serde_json::from_slice(body).ok()
    }

    fn summarize(raw: &Value) -> Summary {
        let personalizations = raw
            .get("personalizations")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let to = personalizations
            .iter()
            .filter_map(|p| p.get("to")?.as_array())
            .flatten()
            .filter_map(|t| Some(t.get("email")?.as_str()?.to_owned()))
            .collect();
        let content = |kind: &str| {
            raw.get("content")?
                .as_array()?
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
                .and_then(|c| Some(c.get("value")?.as_str()?.to_owned()))
        };
        let custom_args = merged(raw, personalizations, "custom_args");
        let headers = merged(raw, personalizations, "headers");
        Summary {
            to,
            from: str_at(raw, "/from/email").map(str::to_owned),
            messaging_service_sid: None,
            subject: str_at(raw, "/subject")
                .or_else(|| str_at(personalizations.first()?, "/subject"))
                .map(str::to_owned),
            text: content("text/plain"),
            html: content("text/html"),
            custom_args,
            headers,
        }
    }

    fn validate(raw: Option<&Value>) -> Result<(), Rejection> {
        let Some(raw) = raw else {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                vec![ApiError::bare("Bad Request")],
            ));
        };
        let mut errors = Vec::new();

        let personalizations = non_empty_array(raw, "personalizations");
        match personalizations {
            None => errors.push(ApiError::new(
                "personalizations",
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
            )),
            Some(list) => {
                for (n, p) in list.iter().enumerate() {
                    let Some(to) = non_empty_array(p, "to") else {
                        errors.push(ApiError::new(
                            format!("personalizations.{n}.to"),
                            "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
                            "personalizations.to",
                        ));
                        continue;
                    };
                    for (m, t) in to.iter().enumerate() {
                        if !str_at(t, "/email").is_some_and(valid_email) {
                            errors.push(ApiError::new(
                                format!("personalizations.{n}.to.{m}.email"),
                                "Does not contain a valid address.",
                                "personalizations.to",
                            ));
                        }
                    }
                    for kind in ["to", "cc", "bcc"] {
                        let recipients = p.get(kind).and_then(Value::as_array);
                        for (m, r) in recipients.into_iter().flatten().enumerate() {
                            if name_refused(r) {
                                errors.push(ApiError::new(
                                    format!("personalizations.{n}.{kind}.{m}.name"),
                                    NAME_MESSAGE,
                                    &format!("personalizations.{kind}"),
                                ));
                            }
                        }
                    }
                    check_custom_args(
                        p,
                        format!("personalizations.{n}.custom_args"),
                        "personalizations.custom_args",
                        &mut errors,
                    );
                    check_headers(p, format!("personalizations.{n}.headers"), &mut errors);
                }
            }
        }

        match str_at(raw, "/from/email") {
            None => errors.push(ApiError::new(
                "from.email",
                "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.",
                "from",
            )),
            Some(email) if !valid_email(email) => errors.push(ApiError::new(
                "from.email",
                "The from email does not contain a valid address.",
                "from",
            )),
            Some(_) => {}
        }
        if raw.get("from").is_some_and(name_refused) {
            errors.push(ApiError::new("from.name", NAME_MESSAGE, "from"));
        }

        let has_subject = |v: &Value| str_at(v, "/subject").is_some_and(|s| !s.is_empty());
        let has_template = str_at(raw, "/template_id").is_some_and(|s| !s.is_empty());
        let every_personalization_subject =
            personalizations.is_some_and(|l| l.iter().all(has_subject));
        if !has_subject(raw) && !every_personalization_subject && !has_template {
            errors.push(ApiError::new(
                "subject",
                "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
                "subject",
            ));
        }

        match non_empty_array(raw, "content") {
            None if !has_template => errors.push(ApiError::new(
                "content",
                "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.",
                "content",
            )),
            None => {}
            Some(blocks) => {
                for (n, block) in blocks.iter().enumerate() {
                    if str_at(block, "/value").is_none_or(str::is_empty) {
                        errors.push(ApiError::new(
                            format!("content.{n}.value"),
                            "The content value must be a string at least one character in length.",
                            "content.value",
                        ));
                    }
                }
                if !blocks.is_sorted_by_key(content_rank) {
                    errors.push(ApiError::new(
                        "content",
                        "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain needs to be first, followed by text/html, followed by any other content.",
                        "content.value",
                    ));
                }
            }
        }
        check_custom_args(raw, "custom_args".into(), "custom_args", &mut errors);
        check_headers(raw, "headers".into(), &mut errors);

        if errors.is_empty() {
            Ok(())
        } else {
            Err(reject(StatusCode::BAD_REQUEST, errors))
        }
    }

    fn rate_limited(reset_after_secs: u64) -> Rejection {
        let now = chrono::Utc::now();
        let reset = now.timestamp().unsigned_abs()
            + reset_after_secs
            + u64::from(now.timestamp_subsec_nanos() > 0);
        reject(
            StatusCode::TOO_MANY_REQUESTS,
            vec![ApiError::bare("too many requests")],
        )
        .with_header("x-ratelimit-limit", 600)
        .with_header("x-ratelimit-remaining", 0)
        .with_header("x-ratelimit-reset", reset)
    }

    fn server_error(status: StatusCode) -> Rejection {
        reject(status, vec![ApiError::bare("internal server error")])
    }

    fn accept(_: &str, _: &Value, _: &Summary) -> (String, Response) {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let response = (StatusCode::ACCEPTED, [("x-message-id", id.clone())]).into_response();
        (id, response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(body: Value) -> Vec<String> {
        let Err(rejection) = SendGrid::validate(Some(&body)) else {
            return vec![];
        };
        assert_eq!(rejection.status, StatusCode::BAD_REQUEST);
        rejection.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap_or("null").to_owned())
            .collect()
    }

    #[test]
    fn email_syntax() {
        assert!(valid_email("a.b+c@example.co.uk"));
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a b@c.com",
            "a@b..com",
            "a@@b.com",
            "a@b.com.",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn collects_all_errors_in_order() {
        assert_eq!(
            fields(json!({})),
            ["personalizations", "from.email", "subject", "content"]
        );
        assert_eq!(
            fields(json!({
                "personalizations": [{"to": []}, {"to": [{"email": "ok@x.io"}, {"email": "bad"}]}],
                "from": {"email": "nope"},
                "subject": "s",
                "content": [{"type": "text/html", "value": ""}, {"type": "text/plain", "value": "x"}]
            })),
            [
                "personalizations.0.to",
                "personalizations.1.to.1.email",
                "from.email",
                "content.0.value",
                "content"
            ]
        );
    }

    fn valid() -> Value {
        json!({
            "personalizations": [{"to": [{"email": "t@x.io", "name": "Ada Lovelace"}]}],
            "from": {"email": "f@x.io", "name": "Acme Inc."},
            "subject": "s",
            "content": [{"type": "text/plain", "value": "hi"}, {"type": "text/html", "value": "<p>hi</p>"}]
        })
    }

    #[test]
    fn names_with_comma_or_semicolon_are_refused() {
        assert!(fields(valid()).is_empty());
        let mut body = valid();
        body["personalizations"] = json!([
            {"to": [{"email": "a@x.io", "name": "Davis, Sammy"}]},
            {"to": [{"email": "b@x.io"}], "cc": [{"email": "c@x.io", "name": "C;D"}],
             "bcc": [{"email": "d@x.io", "name": "Sammy Davis Jr."}]}
        ]);
        body["from"]["name"] = json!("Acme, Inc.");
        assert_eq!(
            fields(body),
            [
                "personalizations.0.to.0.name",
                "personalizations.1.cc.0.name",
                "from.name"
            ]
        );
    }

    #[test]
    fn custom_args_are_objects_of_strings() {
        let mut body = valid();
        body["custom_args"] = json!({"id": "42"});
        body["personalizations"][0]["custom_args"] = json!({"tenant": "acme"});
        assert!(fields(body.clone()).is_empty());
        body["custom_args"] = json!({"id": 42});
        body["personalizations"][0]["custom_args"] = json!("acme");
        let Err(rejection) = SendGrid::validate(Some(&body)) else {
            panic!("accepted");
        };
        let errors = &rejection.body["errors"];
        assert_eq!(errors[0]["field"], "personalizations.0.custom_args");
        assert_eq!(
            errors[0]["message"],
            "Invalid type. Expected: object, given: string."
        );
        assert_eq!(errors[1]["field"], "custom_args");
        assert_eq!(
            errors[1]["message"],
            "All values of custom arguments object must be strings"
        );
        assert_eq!(
            errors[1]["help"],
            "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.custom_args"
        );
    }

    #[test]
    fn headers_are_strings_and_none_is_reserved() {
        let with = |headers: Value| {
            let mut body = valid();
            body["personalizations"][0]["headers"] = headers;
            fields(body)
        };
        let one_click = json!({
            "List-Unsubscribe": "<https://x.io/u/1>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"
        });
        assert!(with(one_click.clone()).is_empty());
        assert_eq!(with(json!(["a"])), ["personalizations.0.headers"]);
        assert_eq!(with(json!({"X-N": 1})), ["personalizations.0.headers"]);
        assert_eq!(
            with(json!({"Subject": "x", "X-Ok": "y"})),
            ["personalizations.0.headers"]
        );
        let mut body = valid();
        body["personalizations"][0]["headers"] = one_click;
        let summary = SendGrid::summarize(&body);
        assert_eq!(
            summary.headers["List-Unsubscribe-Post"],
            "List-Unsubscribe=One-Click"
        );
    }

    #[test]
    fn content_is_plain_then_html_then_the_rest() {
        let with = |types: &[&str]| {
            let mut body = valid();
            body["content"] = types
                .iter()
                .map(|t| json!({"type": t, "value": "x"}))
                .collect();
            fields(body)
        };
        assert!(with(&["text/plain", "text/html", "text/calendar"]).is_empty());
        assert!(with(&["text/html", "text/calendar"]).is_empty());
        assert_eq!(with(&["text/html", "text/plain"]), ["content"]);
        assert_eq!(
            with(&["text/plain", "text/calendar", "text/html"]),
            ["content"]
        );
    }

    #[test]
    fn subject_per_personalization_or_template() {
        let base = |p: Value, extra: Value| {
            let mut v = json!({
                "personalizations": p,
                "from": {"email": "f@x.io"},
                "content": [{"type": "text/plain", "value": "hi"}]
            });
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        let to = json!({"email": "t@x.io"});
        assert!(fields(base(json!([{"to": [to], "subject": "a"}]), json!({}))).is_empty());
        assert_eq!(
            fields(base(
                json!([{"to": [to], "subject": "a"}, {"to": [to]}]),
                json!({})
            )),
            ["subject"]
        );
        assert!(fields(base(json!([{"to": [to]}]), json!({"template_id": "d-1"}))).is_empty());
    }

    #[test]
    fn summary_merges_custom_args() {
        let s = SendGrid::summarize(&json!({
            "personalizations": [{"to": [{"email": "a@x.io"}], "custom_args": {"b": "2", "a": "p"}}],
            "custom_args": {"a": "1"},
            "content": [{"type": "text/plain", "value": "t"}, {"type": "text/html", "value": "<p>h</p>"}]
        }));
        assert_eq!(s.to, ["a@x.io"]);
        assert_eq!(s.custom_args["a"], "p");
        assert_eq!(s.custom_args["b"], "2");
        assert_eq!(
            (s.text.as_deref(), s.html.as_deref()),
            (Some("t"), Some("<p>h</p>"))
        );
    }
}
