//! Configuration, routing, and the connection loop (which can drop a connection on demand).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::routing::{delete, get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::accounts::{Account, Accounts};
use crate::faults::{Fault, FaultQueue};
use crate::outcomes::{Outcome, Outcomes};
use crate::store::Store;
use crate::{control, sendgrid, twilio};

/// How long shutdown waits for open connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// SendGrid accepts requests up to 30 MB.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Credentials the fake providers accept, how long they take to answer, and faults queued
/// from the start.
#[derive(Clone)]
pub struct Config {
    /// The default SendGrid account's API key.
    pub sendgrid_api_key: String,
    /// The default Twilio account.
    pub twilio_account_sid: String,
    pub twilio_auth_token: String,
    /// More accounts, beside the default ones, from the start (`--account`). A SendGrid one
    /// may name its own `events_url`; each signs its events with a key of its own.
    pub accounts: Vec<Account>,
    /// Every provider request is answered this long after it arrived (real SendGrid and
    /// Twilio take 100–300 ms); a `slow` fault adds to it. Requests wait side by side.
    pub latency: Duration,
    pub faults: Vec<Fault>,
    /// What becomes of accepted messages, by recipient, from the start.
    pub outcomes: Vec<Outcome>,
    /// Where SendGrid's Event Webhook posts the events of each accepted email whose account
    /// names no `events_url` of its own; none if unset.
    pub sendgrid_events_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sendgrid_api_key: "SG.fake-key".into(),
            twilio_account_sid: "ACf4ce0000000000000000000000000000".into(),
            twilio_auth_token: "fake-token".into(),
            accounts: Vec::new(),
            latency: Duration::ZERO,
            faults: Vec::new(),
            outcomes: Vec::new(),
            sendgrid_events_url: None,
        }
    }
}

/// Shows the account sid but never the secrets.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("sendgrid_api_key", &"<redacted>")
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_auth_token", &"<redacted>")
            .field("accounts", &self.accounts)
            .field("latency", &self.latency)
            .field("faults", &self.faults)
            .field("outcomes", &self.outcomes)
            .field("sendgrid_events_url", &self.sendgrid_events_url)
            .finish()
    }
}

/// Shared state of one running server.
pub(crate) struct App {
    pub config: Config,
    /// The default accounts and the config's others, then those added at run time.
    pub accounts: Accounts,
    pub store: Store,
    pub faults: FaultQueue,
    pub outcomes: Outcomes,
    /// Posts the providers' webhooks.
    pub client: reqwest::Client,
}

impl App {
    fn new(mut config: Config) -> Arc<Self> {
        let accounts = Accounts::with_defaults(
            &config.sendgrid_api_key,
            Account::twilio(
                config.twilio_account_sid.clone(),
                config.twilio_auth_token.clone(),
            ),
        );
        accounts.push(std::mem::take(&mut config.accounts));
        let faults = FaultQueue::default();
        faults.push(std::mem::take(&mut config.faults));
        let outcomes = Outcomes::default();
        outcomes.push(std::mem::take(&mut config.outcomes));
        Arc::new(Self {
            config,
            accounts,
            store: Store::default(),
            faults,
            outcomes,
            client: reqwest::Client::new(),
        })
    }
}

/// Request extension that lets a handler close its own connection without answering.
#[derive(Clone)]
pub(crate) struct ConnKill(CancellationToken);

impl ConnKill {
    /// Closes the connection; the caller's response is never sent.
    pub async fn drop_connection(&self) -> Response {
        self.0.cancel();
        std::future::pending().await
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v3/mail/send", post(sendgrid::mail_send))
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages.json",
            post(twilio::create_message).get(twilio::list_messages),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages/{message}",
            get(twilio::fetch_message),
        )
        .route("/_fake/health", get(control::health))
        .route(
            "/_fake/messages",
            get(control::list_messages).delete(control::clear_messages),
        )
        .route(
            "/_fake/faults",
            get(control::list_faults)
                .post(control::add_faults)
                .delete(control::clear_faults),
        )
        .route(
            "/_fake/accounts",
            get(control::list_accounts).post(control::add_accounts),
        )
        .route("/_fake/accounts/{account}", delete(control::revoke_account))
        .route(
            "/_fake/outcomes",
            get(control::list_outcomes)
                .post(control::add_outcomes)
                .delete(control::clear_outcomes),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Serves the fake providers on `listener` until `shutdown` resolves, then lets open
/// connections finish (for up to 5 s).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) {
    run(listener, App::new(config), shutdown).await;
}

async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()> + Send) {
    let router = router(app);
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::debug!(%peer, "connection accepted");
                connections.spawn(serve_connection(stream, router.clone(), stop.clone()));
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("shutting down");
    stop.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

async fn serve_connection(stream: TcpStream, router: Router, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let kill = CancellationToken::new();
    let service = {
        let kill = ConnKill(kill.clone());
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(kill.clone());
            router.clone().call(request)
        })
    };
    let mut conn = pin!(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection error");
                }
                return;
            }
            () = kill.cancelled() => {
                tracing::info!("dropping connection without a response (drop fault)");
                return;
            }
            () = stop.cancelled(), if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}

/// A server running in the background on a free loopback port; it stops when
/// [`shutdown`](Self::shutdown) is called or the handle is dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    app: Arc<App>,
    stop: DropGuard,
    task: JoinHandle<()>,
}

impl FakeProvider {
    /// Binds `127.0.0.1:0` and starts serving on the current tokio runtime.
    pub async fn start(config: Config) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = App::new(config);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(listener, app.clone(), stop.clone().cancelled_owned()));
        Ok(Self {
            addr,
            app,
            stop: stop.drop_guard(),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`, for both providers and the control API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The recorded requests (same data as `GET /_fake/messages`).
    pub fn store(&self) -> &Store {
        &self.app.store
    }

    /// The provider accounts (same data as `/_fake/accounts`), with each SendGrid account's
    /// [`sendgrid_verification_key`](Accounts::sendgrid_verification_key).
    pub fn accounts(&self) -> &Accounts {
        &self.app.accounts
    }

    /// The pending faults (same data as `/_fake/faults`).
    pub fn faults(&self) -> &FaultQueue {
        &self.app.faults
    }

    /// What becomes of accepted messages (same data as `/_fake/outcomes`).
    pub fn outcomes(&self) -> &Outcomes {
        &self.app.outcomes
    }

    /// Stops accepting, waits for open connections to finish, and returns.
    pub async fn shutdown(self) {
        drop(self.stop);
        let _ = self.task.await;
    }
}
