//! `fake-provider`: runs the fake SendGrid / Twilio server until SIGINT or SIGTERM.
//!
//! Prints `fake-provider listening on http://IP:PORT` on stdout once bound; logs go to stderr.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;

use clap::Parser;
use fake_provider::{
    Account, Config, Fault, Outcome, is_account_sid, parse_accounts, parse_faults, parse_outcomes,
};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "Fake SendGrid v3 Mail Send and Twilio Messages server"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8025")]
    listen: SocketAddr,
    /// The default SendGrid account: the API key accepted as `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "FAKE_SENDGRID_API_KEY",
        default_value = "SG.fake-key",
        hide_env_values = true,
        hide_default_value = true
    )]
    sendgrid_api_key: String,
    /// The default Twilio account: the Account SID accepted in the URL and as the Basic auth
    /// user, `AC` and 32 hex digits.
    #[arg(
        long,
        env = "FAKE_TWILIO_ACCOUNT_SID",
        default_value = "ACf4ce0000000000000000000000000000",
        value_parser = parse_account_sid
    )]
    twilio_account_sid: String,
    /// The default Twilio account's auth token, accepted as the Basic auth password.
    #[arg(
        long,
        env = "FAKE_TWILIO_AUTH_TOKEN",
        default_value = "fake-token",
        hide_env_values = true,
        hide_default_value = true
    )]
    twilio_auth_token: String,
    /// Answer every provider request this many milliseconds after it arrived (requests wait
    /// side by side, not in turn).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Post SendGrid's signed Event Webhook for each accepted email to this URL, unless its
    /// account names an `events_url` of its own (verify the default account's with the key
    /// logged at start, each account's with its `event_verification_key` in
    /// `GET /_fake/accounts`).
    #[arg(long, env = "FAKE_SENDGRID_EVENTS_URL")]
    sendgrid_events_url: Option<String>,
    /// More provider accounts: a JSON object or array, as for `POST /_fake/accounts`
    /// (repeatable), e.g. `{"sendgrid_api_key":"SG.acme"}` (with
    /// `"events_url":"http://…"` for its own Event Webhook URL) or
    /// `{"twilio_account_sid":"AC…","twilio_auth_token":"tok"}`.
    #[arg(long = "account", value_name = "JSON", value_parser = parse_account_arg)]
    accounts: Vec<AccountList>,
    /// Fault(s) queued at start: a JSON object or array, as for `POST /_fake/faults` (repeatable).
    #[arg(long = "fault", value_name = "JSON", value_parser = parse_fault_arg)]
    faults: Vec<FaultList>,
    /// What becomes of accepted messages to matching recipients: a JSON object or array, as
    /// for `POST /_fake/outcomes` (repeatable), e.g.
    /// `{"to":"bounce-*@example.com","report":"bounce"}`.
    #[arg(long = "outcome", value_name = "JSON", value_parser = parse_outcome_arg)]
    outcomes: Vec<OutcomeList>,
}

#[derive(Clone)]
struct OutcomeList(Vec<Outcome>);

fn parse_outcome_arg(json: &str) -> Result<OutcomeList, String> {
    parse_outcomes(json).map(OutcomeList)
}

#[derive(Clone)]
struct FaultList(Vec<Fault>);

#[derive(Clone)]
struct AccountList(Vec<Account>);

fn parse_account_arg(json: &str) -> Result<AccountList, String> {
    parse_accounts(json).map(AccountList)
}

fn parse_account_sid(sid: &str) -> Result<String, String> {
    if is_account_sid(sid) {
        Ok(sid.to_owned())
    } else {
        Err("an Account SID is AC followed by 32 hexadecimal digits".into())
    }
}

fn parse_fault_arg(json: &str) -> Result<FaultList, String> {
    parse_faults(json).map(FaultList)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let config = Config {
        sendgrid_api_key: args.sendgrid_api_key,
        twilio_account_sid: args.twilio_account_sid,
        twilio_auth_token: args.twilio_auth_token,
        accounts: args.accounts.into_iter().flat_map(|l| l.0).collect(),
        latency: std::time::Duration::from_millis(args.latency_ms),
        faults: args.faults.into_iter().flat_map(|l| l.0).collect(),
        outcomes: args.outcomes.into_iter().flat_map(|l| l.0).collect(),
        sendgrid_events_url: args.sendgrid_events_url,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "fake-provider listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, account_sid = %config.twilio_account_sid, accounts = config.accounts.len(), latency_ms = args.latency_ms, faults = config.faults.len(), "started");
    if let Some(url) = &config.sendgrid_events_url {
        let key = fake_provider::sendgrid_verification_key();
        tracing::info!(%url, verification_key = %key, "posting SendGrid events");
    }
    if config.accounts.iter().any(|a| {
        matches!(
            a,
            Account::SendGrid {
                events_url: Some(_),
                ..
            }
        )
    }) {
        tracing::info!(
            "posting some SendGrid accounts' events to URLs of their own: their \
             event_verification_key is in GET /_fake/accounts"
        );
    }
    fake_provider::serve(listener, config, shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
