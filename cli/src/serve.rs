//! `heraldctl serve`: the status page. One server-rendered HTML page, `GET /`, made of the
//! reports the commands print (`queue`, `lag`, `schedules`, `failures`, and with
//! `?recipient=…` a `trace`), built by the same functions and rendered from their JSON form
//! with an autoescaping template (`serve/status.html`). The sections are read side by side,
//! each stamped with when; one whose source is down shows its error and the others are still
//! served. The page reloads itself every [`REFRESH_SECONDS`], keeping its search.
//!
//! Bound to loopback unless `--listen` says otherwise. With `HERALD_STATUS_TOKEN` set every
//! request needs `Authorization: Bearer <token>` or, since a browser's address bar cannot
//! send that header, `?token=<token>` (then carried on the page's own links and form);
//! anything else is answered 401.

use std::collections::HashMap;
use std::env::VarError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use herald_core::config::Settings;
use herald_core::kafka::OffsetsReader;
use herald_core::shutdown;
use herald_core::store::NotifyDb;
use herald_core::telemetry::error_chain;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tera::Tera;
use tokio::net::TcpListener;

use crate::output::{age, time};
use crate::{messages, queue, schedules, trace};

/// The variable holding the token the page requires (none: no token needed).
pub const TOKEN_VAR: &str = "HERALD_STATUS_TOKEN";
/// How often the page reloads itself.
const REFRESH_SECONDS: u32 = 10;
/// Recent failures: this far back, at most this many.
const FAILURES_WITHIN: Duration = Duration::from_secs(24 * 3600);
const FAILURES_SHOWN: u32 = 20;
/// A search traces at most this many messages (the newest).
const TRACE_LIMIT: u32 = 20;
const TEMPLATE: &str = "status.html";
/// No script, no frames, no third-party anything; inline styles only.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/// The token from [`TOKEN_VAR`]: `None` when unset; set but empty is a mistake.
pub fn token_from_env() -> anyhow::Result<Option<String>> {
    match std::env::var(TOKEN_VAR) {
        Ok(token) if token.trim().is_empty() => bail!("{TOKEN_VAR} is set but empty"),
        Ok(token) => Ok(Some(token)),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => bail!("{TOKEN_VAR} is not UTF-8"),
    }
}

struct Page {
    settings: Settings,
    notify: Arc<dyn NotifyDb>,
    /// One Kafka client for every load.
    offsets: Arc<OffsetsReader>,
    token: Option<String>,
    templates: Tera,
}

/// Serves the page on `listen` until SIGINT or SIGTERM.
pub async fn serve(
    settings: Settings,
    notify: Arc<dyn NotifyDb>,
    listen: SocketAddr,
    token: Option<String>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    let guarded = if token.is_some() {
        format!(" (requests need the token in {TOKEN_VAR})")
    } else {
        String::new()
    };
    let offsets = queue::offsets_reader(&settings.kafka)?;
    let page = Arc::new(Page {
        settings,
        notify,
        offsets,
        token,
        templates: templates()?,
    });
    let app = Router::new().route("/", get(status)).with_state(page);
    eprintln!("serving the status page on http://{address}/{guarded}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown::on_signal().cancelled_owned())
        .await
        .context("serving the status page")
}

/// The page's template with its filters: `time` (an RFC 3339 instant as the tables show it)
/// and `age` (seconds as humans write them); both print `-` for null.
fn templates() -> anyhow::Result<Tera> {
    let mut tera = Tera::default();
    tera.add_raw_template(TEMPLATE, include_str!("serve/status.html"))
        .context("compiling the status page's template")?;
    tera.register_filter("time", |value: &Value, _: &HashMap<String, Value>| {
        Ok(match value {
            Value::Null => "-".into(),
            Value::String(text) => DateTime::parse_from_rfc3339(text)
                .map(|at| time(at.to_utc()))
                .unwrap_or_else(|_| text.clone())
                .into(),
            other => other.clone(),
        })
    });
    tera.register_filter("age", |value: &Value, _: &HashMap<String, Value>| {
        Ok(match value.as_f64() {
            Some(seconds) => age(chrono::Duration::milliseconds((seconds * 1000.0) as i64)).into(),
            None => "-".into(),
        })
    });
    Ok(tera)
}

#[derive(Deserialize)]
struct Params {
    token: Option<String>,
    /// What to trace: a recipient, a message id, or a tenant and a source key.
    recipient: Option<String>,
}

/// What the template renders.
#[derive(Serialize)]
struct View {
    read_at: DateTime<Utc>,
    refresh_seconds: u32,
    /// The token as the address gave it, for the page's own links and form.
    token: Option<String>,
    search: Option<String>,
    trace: Option<Section<trace::TraceReport>>,
    queue: Section<queue::QueueReport>,
    lag: Section<queue::LagReport>,
    schedules: Section<schedules::SchedulesReport>,
    failures: Section<messages::FailuresReport>,
}

/// One report, or why it could not be read, and when.
#[derive(Serialize)]
struct Section<T> {
    read_at: DateTime<Utc>,
    report: Option<T>,
    error: Option<String>,
}

async fn section<T>(read: impl Future<Output = anyhow::Result<T>>) -> Section<T> {
    let (report, error) = match read.await {
        Ok(report) => (Some(report), None),
        Err(error) => (None, Some(error_chain(error.as_ref()))),
    };
    Section {
        read_at: Utc::now(),
        report,
        error,
    }
}

async fn status(
    State(page): State<Arc<Page>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if page.token.is_none() && !loopback_host(&headers) {
        // Without a token, only a page asked for by a loopback name: another site's page,
        // through a name of its own pointed at 127.0.0.1 (DNS rebinding), gets nothing.
        return (
            StatusCode::FORBIDDEN,
            "403 Forbidden: without a token the page answers only to localhost, 127.0.0.1 or \
             [::1]; set HERALD_STATUS_TOKEN to serve it under another name\n",
        )
            .into_response();
    }
    if !authorized(page.token.as_deref(), &headers, params.token.as_deref()) {
        let refusal = format!(
            "401 Unauthorized: send Authorization: Bearer <token> or add ?token=<token> \
             (the token is {TOKEN_VAR} where heraldctl serve runs)\n"
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"herald\"")],
            refusal,
        )
            .into_response();
    }
    let view = page.read(params).await;
    let rendered = tera::Context::from_serialize(&view)
        .and_then(|context| page.templates.render(TEMPLATE, &context));
    match rendered {
        Ok(html) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            ],
            Html(html),
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the status page could not be rendered: {}\n",
                error_chain(&error)
            ),
        )
            .into_response(),
    }
}

/// Whether the request's `Host` is a loopback name (`localhost`, `127.0.0.1`, `[::1]`, any
/// port).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// No token required, or the request carries it (header or query), compared in constant
/// time.
fn authorized(expected: Option<&str>, headers: &HeaderMap, query_token: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    [bearer, query_token]
        .into_iter()
        .flatten()
        .any(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
}

impl Page {
    /// Every section, read side by side.
    async fn read(&self, params: Params) -> View {
        let notify = self.notify.as_ref();
        let search = params
            .recipient
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty());
        let traced = async {
            let search = search.as_deref()?;
            let words: Vec<String> = search.split_whitespace().map(str::to_owned).collect();
            Some(
                section(async {
                    let target = trace::Target::parse(&words).map_err(anyhow::Error::msg)?;
                    trace::trace(&self.settings, notify, target, TRACE_LIMIT).await
                })
                .await,
            )
        };
        let (trace, queue, lag, schedules, failures) = tokio::join!(
            traced,
            section(queue::queue(notify)),
            section(queue::lag(
                &self.offsets,
                &self.settings.kafka.consumer_group
            )),
            section(schedules::schedules(notify)),
            section(messages::failures(notify, FAILURES_WITHIN, FAILURES_SHOWN)),
        );
        View {
            read_at: Utc::now(),
            refresh_seconds: REFRESH_SECONDS,
            token: params.token,
            search,
            trace,
            queue,
            lag,
            schedules,
            failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    #[test]
    fn without_a_token_only_loopback_names_are_served() {
        let host = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, value.parse().unwrap());
            loopback_host(&headers)
        };
        for good in [
            "localhost:9400",
            "127.0.0.1:9400",
            "[::1]:9400",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert!(host(good), "{good}");
        }
        for bad in ["evil.example:9400", "10.0.0.1", "localhost.evil.example"] {
            assert!(!host(bad), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn the_token_is_required_only_when_set_and_taken_from_header_or_query() {
        let mut headers = HeaderMap::new();
        assert!(authorized(None, &headers, None));
        assert!(!authorized(Some("s3cret"), &headers, None));
        assert!(!authorized(Some("s3cret"), &headers, Some("s3cre")));
        assert!(authorized(Some("s3cret"), &headers, Some("s3cret")));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(Some("s3cret"), &headers, None));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!authorized(Some("s3cret"), &headers, None));
    }

    /// A section as the page gets it, read now.
    fn section(report: Value) -> Value {
        json!({ "read_at": "2026-11-22T14:35:37Z", "report": report, "error": null })
    }

    #[test]
    fn the_page_escapes_what_it_shows_and_keeps_the_token_on_its_links() {
        let failed = json!({
            "message_id": 7, "tenant": "acme", "schedule": "welcome-email", "channel": "email",
            "recipient": "a&b@example.com", "status": "failed",
            "last_error": "<script>alert(1)</script>", "updated_at": "2026-11-22T14:35:37Z",
        });
        let view = json!({
            "read_at": "2026-11-22T14:35:38Z",
            "refresh_seconds": 10,
            "token": "t&k",
            "search": null,
            "trace": null,
            "queue": section(json!({ "open": [] })),
            "lag": { "read_at": "2026-11-22T14:35:38Z", "report": null,
                     "error": "the broker <is> down" },
            "schedules": section(json!({ "schedules": [] })),
            "failures": section(json!({
                "within_seconds": 86400.0, "total": 1, "messages": [failed],
            })),
        });
        let context = tera::Context::from_value(view).unwrap();
        let html = templates().unwrap().render(TEMPLATE, &context).unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(
            html.contains("could not read: the broker &lt;is&gt; down"),
            "{html}"
        );
        assert!(html.contains("?recipient=7&amp;token=t%26k"), "{html}");
        assert!(
            html.contains("?recipient=a%26b%40example%2Ecom&amp;token=t%26k"),
            "{html}"
        );
        assert!(html.contains(r#"<input type="hidden" name="token" value="t&amp;k">"#));
        assert!(html.contains(r#"<meta http-equiv="refresh" content="10">"#));
        assert!(html.contains("in the last 1day"), "{html}");
        assert!(html.contains("read 2026-11-22 14:35:37 UTC"), "{html}");
    }
}
