//! The send loop, a pipeline: up to `max_in_flight` provider calls at once, each slot
//! refilled as soon as enough have freed up (no batch waits for its slowest call).
//!
//! Guarantees:
//! - At start, this instance's calls left unfinished by an earlier run are declared
//!   `in_doubt` before anything is claimed.
//! - A claim marks its messages `sending`, each with its attempt row, in the statement that
//!   takes them from the queue, and their calls leave as soon as it returns: no message is
//!   claimed but not begun. Outcomes of calls that ended together are recorded in one
//!   statement, before their slots are refilled. Calls, the next claim and the recording of
//!   ended calls run side by side: no stage waits for another's round trip. A crash, a lost
//!   lease or an outcome that cannot be recorded leaves a message `sending`, which becomes
//!   `in_doubt`: never resent automatically.
//! - Transient refusals retry with exponential backoff and jitter, never before the
//!   provider's rate-limit reset, and end `failed` after `max_attempts`; permanent refusals end
//!   `failed` at once, with the provider's reason.
//! - A provider account whose credentials are refused pauses (`circuit`): its messages wait,
//!   and no attempt is counted, until a probe gets through. Other accounts go on.
//! - On cancellation nothing new is claimed or started; calls in flight (each bounded by
//!   `http_timeout`) finish and their outcomes are recorded.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use herald_core::backoff;
use herald_core::config::SenderSettings;
use herald_core::model::{AttemptOutcome, Claimed, OutgoingMessage};
use herald_core::store::{NotifyDb, StoreError, StoreResult};
use herald_core::telemetry::error_chain;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::circuit::{Circuits, Permit};
use crate::metrics::SenderMetrics;
use crate::provider::{Delivery, Providers};

/// How often messages whose sender lost its lease mid-call are looked for, at most.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
/// Backoff after a store error: from `poll_interval`, doubling up to this.
const STORE_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Tries of recording outcomes while the database is unavailable, with their backoff.
const FINISH_TRIES: i32 = 5;
const FINISH_BACKOFF_BASE: Duration = Duration::from_millis(100);
const FINISH_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Retries after a provider's reset time spread out over up to this much.
const RESET_JITTER_MAX: Duration = Duration::from_secs(1);
/// A message marked `sending`: its attempt number, and its probe ticket if it probes a
/// paused provider.
type Begun = (OutgoingMessage, i32, Option<u64>);

/// A call that ended: message id, attempt number, outcome.
type Ended = (i64, i32, AttemptOutcome);

/// A claim in progress: the messages marked `sending`, and whether it took any.
type Claiming<'a> = BoxFuture<'a, StoreResult<(Vec<Begun>, bool)>>;

/// A claim is made once this share of the window is free (or the window is empty), so one
/// statement claims many messages.
const REFILL_SHARE: usize = 4;

pub struct Sender {
    store: Arc<dyn NotifyDb>,
    providers: Arc<Providers>,
    circuits: Circuits,
    settings: SenderSettings,
    metrics: Arc<SenderMetrics>,
}

impl Sender {
    /// `settings.lease` exceeds `settings.http_timeout` (checked when settings load).
    pub fn new(
        store: Arc<dyn NotifyDb>,
        providers: Arc<Providers>,
        settings: SenderSettings,
        metrics: Arc<SenderMetrics>,
    ) -> Self {
        Self {
            store,
            providers,
            circuits: Circuits::new(settings.backoff_base, settings.backoff_max),
            settings,
            metrics,
        }
    }

    /// Recovers this instance's earlier claims, then sends until `cancel` fires.
    pub async fn run(&self, cancel: CancellationToken) {
        if !self.recover_own_claims(&cancel).await {
            return;
        }
        tracing::info!(instance_id = %self.settings.instance_id, "sender started");
        let window = self.settings.max_in_flight.max(1);
        let refill_at = (window / REFILL_SHARE).max(1);
        // Three stages run side by side, so none waits for another's round trip: the calls
        // in flight, at most one claim, and at most one statement recording ended calls.
        let mut calls = FuturesUnordered::new();
        let mut claiming: Option<Claiming<'_>> = None;
        let mut ended: Vec<Ended> = Vec::new();
        let mut recording: Option<(BoxFuture<'_, ()>, usize)> = None;
        let mut next_claim = Instant::now();
        let mut last_expiry: Option<Instant> = None;
        let mut failures = 0;
        loop {
            let stopping = cancel.is_cancelled();
            // A slot is taken from the claim until its outcome is recorded.
            let taken = calls.len() + ended.len() + recording.as_ref().map_or(0, |(_, n)| *n);
            self.metrics.in_flight(calls.len());
            if stopping && taken == 0 && claiming.is_none() {
                break;
            }
            let free = window.saturating_sub(taken);
            let may_claim = !stopping && claiming.is_none() && (free >= refill_at || taken == 0);
            if may_claim && Instant::now() >= next_claim {
                let expire = last_expiry.is_none_or(|at| at.elapsed() >= EXPIRE_EVERY);
                if expire {
                    last_expiry = Some(Instant::now());
                }
                claiming = Some(Box::pin(self.claim_and_begin(free, expire)));
            }
            if recording.is_none() && !ended.is_empty() {
                let batch = std::mem::take(&mut ended);
                let count = batch.len();
                recording = Some((Box::pin(self.record(batch)), count));
            }
            tokio::select! {
                Some(first) = calls.next() => {
                    // Every call that has ended by now, recorded in one statement.
                    ended.push(first);
                    while let Some(Some(more)) = calls.next().now_or_never() {
                        ended.push(more);
                    }
                }
                claimed = async { claiming.as_mut().expect("a claim").await }, if claiming.is_some() => {
                    claiming = None;
                    match claimed {
                        Ok((begun, took_any)) => {
                            failures = 0;
                            calls.extend(begun.into_iter().map(|(message, attempt, probe)| {
                                self.call(message, attempt, probe)
                            }));
                            // A claim that found nothing waits; a short one may have left other
                            // tenants' messages (each gets a share), so the next goes at once.
                            if !took_any {
                                next_claim = Instant::now() + idle_poll(self.settings.poll_interval);
                            }
                        }
                        Err(error) => {
                            failures += 1;
                            let retry_in = self.store_backoff(failures);
                            log_store_error(&error, retry_in, "send loop");
                            next_claim = Instant::now() + retry_in;
                        }
                    }
                }
                () = async { (&mut recording.as_mut().expect("a record").0).await }, if recording.is_some() => {
                    recording = None;
                }
                () = tokio::time::sleep_until(next_claim), if may_claim => {}
                () = cancel.cancelled(), if !stopping => {}
            }
        }
        tracing::info!("sender stopped");
    }

    /// Retries until it works; false if cancelled first.
    async fn recover_own_claims(&self, cancel: &CancellationToken) -> bool {
        let owner = &self.settings.instance_id;
        let mut failures = 0;
        loop {
            let recovered = tokio::select! {
                () = cancel.cancelled() => return false,
                recovered = self.store.recover_own_claims(owner) => recovered,
            };
            match recovered {
                Ok(0) => return true,
                Ok(in_doubt) => {
                    tracing::warn!(
                        in_doubt,
                        "messages this sender was sending when it last stopped are now in_doubt; \
                         check them with the provider"
                    );
                    return true;
                }
                Err(error) => {
                    failures += 1;
                    let retry_in = self.store_backoff(failures);
                    log_store_error(&error, retry_in, "recovering earlier claims");
                    tokio::select! {
                        () = cancel.cancelled() => return false,
                        () = tokio::time::sleep(retry_in) => {}
                    }
                }
            }
        }
    }

    /// Claims up to `free` due messages (first looking for lost sends, if `expire`) of the
    /// provider accounts that take calls, marked `sending` by the claim itself; a paused
    /// account, once its pause is over, gets one of its messages as the probe.
    /// Returns the calls to make, with their attempt numbers and probe tickets, and whether
    /// it took any message (suppressed ones too).
    async fn claim_and_begin(&self, free: usize, expire: bool) -> StoreResult<(Vec<Begun>, bool)> {
        if expire {
            let in_doubt = self.store.expire_lost_sends().await?;
            if in_doubt > 0 {
                tracing::warn!(
                    in_doubt,
                    "messages whose sender's lease ran out during the provider call are now in_doubt"
                );
            }
        }
        let mut paused = Vec::new();
        for (account, is_paused) in self.circuits.states() {
            self.metrics.paused(&account, is_paused);
            if is_paused {
                paused.push(account);
            }
        }
        // Probes first, so that the window holds them and the main claim's calls leave as soon
        // as it returns, their lease just begun. A claimed message always gets its call: once
        // one is begun, a later failure here is logged and the calls are made.
        let mut begun: Vec<Begun> = Vec::with_capacity(free);
        let paused: Vec<&str> = paused.iter().map(String::as_str).collect();
        for &account in &paused {
            if begun.len() == free {
                break;
            }
            let Permit::Probe(ticket) = self.circuits.permit(account) else {
                continue;
            };
            match self.claim(1, &[], Some(account)).await {
                Ok((probe, _)) => match probe.into_iter().next() {
                    Some((message, attempt)) => begun.push((message, attempt, Some(ticket))),
                    None => self.circuits.probe_not_made(account, ticket),
                },
                Err(error) => {
                    self.circuits.probe_not_made(account, ticket);
                    if begun.is_empty() {
                        return Err(error);
                    }
                    tracing::warn!(account, error = %error_chain(&error), "could not claim the probe");
                }
            }
        }
        let limit = free - begun.len();
        let mut took_any = !begun.is_empty();
        if limit > 0 {
            match self.claim(limit, &paused, None).await {
                Ok((claimed, taken)) => {
                    took_any |= taken > 0;
                    begun.extend(
                        claimed
                            .into_iter()
                            .map(|(message, attempt)| (message, attempt, None)),
                    );
                }
                Err(error) if begun.is_empty() => return Err(error),
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "could not claim; the probes go ahead");
                }
            }
        }
        Ok((begun, took_any))
    }

    /// One claim of up to `limit` messages, none of the `paused` accounts (with `only`, only
    /// that account's): those to send now, with their attempt numbers, and how many it took
    /// in all (suppressed ones too).
    async fn claim(
        &self,
        limit: usize,
        paused: &[&str],
        only: Option<&str>,
    ) -> StoreResult<(Vec<(OutgoingMessage, i32)>, usize)> {
        let settings = &self.settings;
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let claimed = self
            .store
            .claim_outgoing(&settings.instance_id, settings.lease, limit, paused, only)
            .await?;
        let taken = claimed.len();
        let mut sending = Vec::with_capacity(taken);
        for claim in claimed {
            match claim {
                Claimed::Sending { message, attempt } => sending.push((message, attempt)),
                Claimed::Suppressed {
                    message_id,
                    channel,
                } => {
                    self.metrics.suppressed(channel);
                    tracing::info!(message_id, "recipient is suppressed: not sent");
                }
            }
        }
        Ok((sending, taken))
    }

    /// One provider call for a message already marked `sending`, and how it ended (the run
    /// loop records it).
    #[tracing::instrument(skip_all, fields(
        message_id = message.message_id,
        tenant = %message.tenant,
        schedule_id = message.schedule_id,
        channel = %message.channel,
        account = message.account,
        attempt,
    ))]
    async fn call(&self, message: OutgoingMessage, attempt: i32, probe: Option<u64>) -> Ended {
        let channel = message.channel;
        let started = Instant::now();
        let delivery = self.providers.send(&message).await;
        let took = started.elapsed();
        let paused_for = self.circuits.record(&message.account, &delivery, probe);
        if let Delivery::OptedOut { reason, .. } = &delivery {
            self.suppress(&message, reason).await;
        }
        let counted = message.counted_attempts + 1;
        let retries_spent =
            matches!(delivery, Delivery::Retry { .. }) && counted >= self.settings.max_attempts;
        let outcome = attempt_outcome(delivery, counted, paused_for, &self.settings);
        self.metrics.call(channel, &outcome, took);
        log_outcome(&outcome, retries_spent);
        (message.message_id, attempt, outcome)
    }

    /// Puts an address whose owner opted out on its tenant's suppression list, so later
    /// messages to it end `suppressed`. If the database cannot take it now, the provider
    /// refuses the next message the same way and it is tried again then.
    async fn suppress(&self, message: &OutgoingMessage, reason: &str) {
        let source = format!("twilio answer to message {}", message.message_id);
        let added = self
            .store
            .suppress_address(
                &message.tenant,
                message.channel,
                &message.recipient,
                &format!("opted out: {reason}"),
                &source,
            )
            .await;
        match added {
            Ok(()) => tracing::info!(
                message_id = message.message_id,
                "the recipient opted out: suppressed"
            ),
            Err(error) => tracing::warn!(
                message_id = message.message_id,
                error = %error_chain(&error),
                "the recipient opted out, but could not be suppressed now"
            ),
        }
    }

    /// Records how calls ended, retrying while the database is unavailable. If it cannot,
    /// the messages stay `sending` and go `in_doubt` when their lease runs out: never resent.
    async fn record(&self, ended: Vec<Ended>) {
        let mut tries = 1;
        loop {
            let error = match self.store.finish_attempts(&ended).await {
                Ok(()) => return,
                Err(error) => error,
            };
            if !error.is_unavailable() || tries >= FINISH_TRIES {
                tracing::error!(
                    error = %error_chain(&error),
                    messages = ?ended.iter().map(|(id, _, _)| id).collect::<Vec<_>>(),
                    "could not record the outcomes; the messages go in_doubt when their lease runs out"
                );
                return;
            }
            let retry_in = backoff::delay(tries, FINISH_BACKOFF_BASE, FINISH_BACKOFF_MAX);
            tracing::warn!(
                error = %error_chain(&error),
                ?retry_in,
                "could not record the outcome yet"
            );
            tokio::time::sleep(retry_in).await;
            tries += 1;
        }
    }

    fn store_backoff(&self, failures: i32) -> Duration {
        backoff::delay(failures, self.settings.poll_interval, STORE_BACKOFF_MAX)
    }
}

/// What a provider's answer means for the message, on its `counted`th counted attempt;
/// `paused_for` is how long its provider is paused, when it refused our credentials.
fn attempt_outcome(
    delivery: Delivery,
    counted: i32,
    paused_for: Option<Duration>,
    settings: &SenderSettings,
) -> AttemptOutcome {
    match delivery {
        Delivery::Accepted {
            http_status,
            provider_message_id,
        } => AttemptOutcome::Sent {
            http_status,
            provider_message_id,
        },
        Delivery::Retry {
            http_status,
            reason,
            ..
        } if counted >= settings.max_attempts => AttemptOutcome::Failed {
            http_status,
            error: format!("gave up after {counted} attempts: {reason}"),
        },
        Delivery::Retry {
            http_status,
            not_before,
            reason,
        } => AttemptOutcome::Retry {
            http_status,
            retry_in: retry_delay(counted, not_before, settings),
            error: reason,
        },
        Delivery::Rejected {
            http_status,
            reason,
        } => AttemptOutcome::Failed {
            http_status: Some(http_status),
            error: reason,
        },
        Delivery::OptedOut {
            http_status,
            reason,
        } => AttemptOutcome::Failed {
            http_status: Some(http_status),
            error: format!("the recipient opted out: {reason}"),
        },
        Delivery::InDoubt { reason } => AttemptOutcome::InDoubt { error: reason },
        Delivery::Unauthorized {
            http_status,
            reason,
        } => AttemptOutcome::Paused {
            http_status,
            retry_in: paused_for.unwrap_or(settings.backoff_base),
            error: format!("not sent, not counted: {reason}"),
        },
    }
}

/// When an idle sender looks again: `poll_interval` ± half, so that several senders do not
/// poll in step (the first one after each burst taking all of it).
fn idle_poll(poll_interval: Duration) -> Duration {
    poll_interval.mul_f64(0.5 + rand::random::<f64>())
}

/// Exponential backoff with jitter, and never before the provider's reset time.
fn retry_delay(attempt: i32, not_before: Option<Duration>, settings: &SenderSettings) -> Duration {
    let backoff = backoff::delay(attempt, settings.backoff_base, settings.backoff_max);
    match not_before {
        None => backoff,
        Some(reset) => {
            let jitter = settings
                .backoff_base
                .min(RESET_JITTER_MAX)
                .mul_f64(rand::random::<f64>());
            backoff.max(reset + jitter)
        }
    }
}

fn log_outcome(outcome: &AttemptOutcome, retries_spent: bool) {
    match outcome {
        // Thousands a second at full speed: counted in /metrics, found with `heraldctl trace`.
        AttemptOutcome::Sent {
            http_status,
            provider_message_id,
        } => tracing::debug!(
            http_status,
            provider_message_id = provider_message_id.as_deref(),
            "sent"
        ),
        AttemptOutcome::Retry {
            http_status: Some(429),
            retry_in,
            error,
        } => tracing::info!(http_status = 429, ?retry_in, %error, "rate limited: will retry"),
        AttemptOutcome::Retry {
            http_status,
            retry_in,
            error,
        } => tracing::warn!(http_status, ?retry_in, %error, "not sent: will retry"),
        AttemptOutcome::Failed { http_status, error } if retries_spent => {
            tracing::error!(http_status, %error, "not sent: failed, retries spent")
        }
        AttemptOutcome::Failed { http_status, error } => {
            tracing::warn!(http_status, %error, "refused by the provider: failed")
        }
        // The circuit logs the pause once per account.
        AttemptOutcome::Paused {
            http_status,
            retry_in,
            error,
        } => tracing::debug!(http_status, ?retry_in, %error, "provider paused: will retry"),
        AttemptOutcome::InDoubt { error } => tracing::error!(
            %error,
            "in_doubt: the provider may or may not have the message; it will not be resent \
             automatically"
        ),
    }
}

/// An unavailable database is expected to come back; a refused statement needs an operator.
fn log_store_error(error: &StoreError, retry_in: Duration, during: &'static str) {
    let unavailable = error.is_unavailable();
    let error = error_chain(error);
    if unavailable {
        tracing::warn!(during, %error, ?retry_in, "store error; backing off");
    } else {
        tracing::error!(during, %error, ?retry_in, "store error; backing off");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SenderSettings {
        SenderSettings {
            instance_id: "sender-test".into(),
            poll_interval: Duration::from_millis(100),
            max_in_flight: 4,
            lease: Duration::from_secs(10),
            max_attempts: 3,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            http_timeout: Duration::from_secs(5),
            settle_interval: Duration::ZERO,
            settle_within: Duration::ZERO,
            accounts_refresh: Duration::from_secs(1),
        }
    }

    fn retry(not_before: Option<Duration>) -> Delivery {
        Delivery::Retry {
            http_status: Some(429),
            not_before,
            reason: "rate limited: slow down".into(),
        }
    }

    fn retry_in(outcome: AttemptOutcome) -> Duration {
        match outcome {
            AttemptOutcome::Retry { retry_in, .. } => retry_in,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn answers_map_to_outcomes() {
        let s = settings();
        let check = |delivery: Delivery, expected: AttemptOutcome| {
            assert_eq!(attempt_outcome(delivery, 1, None, &s), expected);
        };
        check(
            Delivery::Accepted {
                http_status: 202,
                provider_message_id: Some("abc".into()),
            },
            AttemptOutcome::Sent {
                http_status: 202,
                provider_message_id: Some("abc".into()),
            },
        );
        check(
            Delivery::Rejected {
                http_status: 400,
                reason: "to: invalid".into(),
            },
            AttemptOutcome::Failed {
                http_status: Some(400),
                error: "to: invalid".into(),
            },
        );
        check(
            Delivery::InDoubt {
                reason: "timed out".into(),
            },
            AttemptOutcome::InDoubt {
                error: "timed out".into(),
            },
        );
    }

    #[test]
    fn a_credentials_refusal_waits_for_the_probe_and_counts_nothing() {
        let s = settings();
        let refused = Delivery::Unauthorized {
            http_status: Some(401),
            reason: "SendGrid refused the credentials: bad key".into(),
        };
        // Even on what would be the last attempt: nothing is spent.
        assert_eq!(
            attempt_outcome(refused, s.max_attempts, Some(Duration::from_secs(7)), &s),
            AttemptOutcome::Paused {
                http_status: Some(401),
                retry_in: Duration::from_secs(7),
                error: "not sent, not counted: SendGrid refused the credentials: bad key".into(),
            }
        );
    }

    #[test]
    fn retries_back_off_exponentially() {
        let s = settings();
        for (attempt, full) in [(1, 2), (2, 4)] {
            let full = Duration::from_secs(full);
            let delay = retry_in(attempt_outcome(retry(None), attempt, None, &s));
            assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
        }
    }

    #[test]
    fn retries_wait_for_the_providers_reset() {
        let s = settings();
        let reset = Duration::from_secs(30);
        for _ in 0..50 {
            let delay = retry_in(attempt_outcome(retry(Some(reset)), 1, None, &s));
            assert!(
                delay >= reset && delay <= reset + RESET_JITTER_MAX,
                "{delay:?}"
            );
        }
        // A reset sooner than the backoff does not shorten it.
        let delay = retry_in(attempt_outcome(retry(Some(Duration::ZERO)), 2, None, &s));
        assert!(delay >= Duration::from_secs(2), "{delay:?}");
    }

    #[test]
    fn the_last_attempt_gives_up() {
        let s = settings();
        assert_eq!(
            attempt_outcome(retry(Some(Duration::from_secs(1))), 3, None, &s),
            AttemptOutcome::Failed {
                http_status: Some(429),
                error: "gave up after 3 attempts: rate limited: slow down".into(),
            }
        );
    }
}
