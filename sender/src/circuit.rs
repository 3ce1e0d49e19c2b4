//! One circuit per provider account (the default `email` and `sms` ones, and each tenant's
//! own): after an account's credentials are refused (or not set, or the account not defined),
//! nothing more is sent through it until a single probe gets any other answer. Its messages
//! stay in the queue meanwhile, untouched, and the refused calls are not counted, so no
//! message spends its attempts while an operator fixes a key.
//!
//! A rate limit (429) that says when it resets pauses the account until then too: its limit
//! is spent, so further calls would only be refused and spend attempts. No probe is needed;
//! sending resumes at the reset. Other accounts are not paused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::provider::Delivery;

/// The longest pause between probes.
const PAUSE_MAX: Duration = Duration::from_secs(60);
/// While a probe is out, calls refused meanwhile wait this long (or the pause, if shorter).
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// What a message of an account may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Send,
    /// Send: it is the one call that finds out whether the credentials work again; its
    /// ticket goes back with its result.
    Probe(u64),
    /// Stay in the queue.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
        pause: Duration,
    },
    Probing {
        pause: Duration,
        ticket: u64,
    },
    /// Rate limited until the provider's reset.
    Limited {
        until: Instant,
    },
}

/// The accounts' circuits, by account name; an account not in the map is closed.
pub struct Circuits {
    accounts: Mutex<HashMap<String, State>>,
    tickets: AtomicU64,
    first_pause: Duration,
    max_pause: Duration,
}

impl Circuits {
    /// Pauses start at `first_pause` and double per failed probe, up to `max_pause` (and a
    /// minute at most).
    pub fn new(first_pause: Duration, max_pause: Duration) -> Self {
        Self {
            accounts: Mutex::default(),
            tickets: AtomicU64::new(0),
            first_pause,
            max_pause: max_pause.min(PAUSE_MAX).max(first_pause),
        }
    }

    pub fn permit(&self, account: &str) -> Permit {
        let mut accounts = self.lock();
        let Some(state) = accounts.get_mut(account) else {
            return Permit::Send;
        };
        let now = Instant::now();
        reset_if_due(account, state, now);
        match *state {
            State::Closed => Permit::Send,
            State::Open { until, pause } if now >= until => {
                let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
                *state = State::Probing { pause, ticket };
                Permit::Probe(ticket)
            }
            State::Open { .. } | State::Probing { .. } | State::Limited { .. } => Permit::Wait,
        }
    }

    /// Every account that has a circuit, and whether it is paused (takes no calls now).
    pub fn states(&self) -> Vec<(String, bool)> {
        let now = Instant::now();
        self.lock()
            .iter_mut()
            .map(|(account, state)| {
                reset_if_due(account, state, now);
                (account.clone(), *state != State::Closed)
            })
            .collect()
    }

    /// Probe `ticket` was granted but never made: the next message probes instead.
    pub fn probe_not_made(&self, account: &str, ticket: u64) {
        let mut accounts = self.lock();
        if let Some(state) = accounts.get_mut(account)
            && let State::Probing { pause, ticket: t } = *state
            && t == ticket
        {
            *state = State::Open {
                until: Instant::now(),
                pause,
            };
        }
    }

    /// Updates the circuit with a call's result (`probe`: its ticket, if it was the probe).
    /// For a credentials refusal, returns how long the refused message waits.
    pub fn record(
        &self,
        account: &str,
        delivery: &Delivery,
        probe: Option<u64>,
    ) -> Option<Duration> {
        let mut accounts = self.lock();
        // An account gets its circuit with its first call (a name is copied once, not per call).
        if !accounts.contains_key(account) {
            accounts.insert(account.to_owned(), State::Closed);
        }
        let state = accounts.get_mut(account).expect("just inserted");
        let now = Instant::now();
        reset_if_due(account, state, now);
        if let Some(reset) = rate_limit_reset(delivery) {
            let until = now + reset;
            match *state {
                State::Closed => {
                    tracing::warn!(
                        account,
                        ?reset,
                        "rate limited: sending through this account waits for the provider's reset"
                    );
                    *state = State::Limited { until };
                }
                State::Limited { until: current } if until > current => {
                    *state = State::Limited { until };
                }
                // A credentials pause (or its probe) decides on its own.
                _ => {}
            }
        }
        let is_probe = |ticket: u64| probe == Some(ticket);
        match (credentials_accepted(delivery), *state) {
            (Some(false), State::Open { until, .. }) => Some(until.saturating_duration_since(now)),
            // Another call, made before the circuit opened: the probe decides.
            (Some(false), State::Probing { pause, ticket }) if !is_probe(ticket) => {
                Some(pause.min(PROBE_WAIT))
            }
            (Some(false), current) => {
                let pause = match current {
                    State::Probing { pause, .. } => (pause * 2).min(self.max_pause),
                    _ => self.first_pause,
                };
                *state = State::Open {
                    until: now + pause,
                    pause,
                };
                log_refused(account, delivery, pause, current == State::Closed);
                Some(pause)
            }
            (Some(true), State::Closed | State::Limited { .. }) => None,
            (Some(true), _) => {
                *state = State::Closed;
                tracing::warn!(
                    account,
                    "the provider takes the credentials again: sending resumed"
                );
                None
            }
            // No answer, or one that proves nothing: if it was the probe, the next message
            // probes.
            (None, State::Probing { pause, ticket }) if is_probe(ticket) => {
                *state = State::Open { until: now, pause };
                None
            }
            (None, _) => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.accounts.lock().expect("circuit lock poisoned")
    }
}

/// A rate limit whose reset has come is over: applied wherever a circuit is read.
fn reset_if_due(account: &str, state: &mut State, now: Instant) {
    if let State::Limited { until } = *state
        && now >= until
    {
        tracing::info!(
            account,
            "the provider's rate limit has reset: sending resumed"
        );
        *state = State::Closed;
    }
}

/// How long until the provider's rate limit resets, when it answered 429 and said.
fn rate_limit_reset(delivery: &Delivery) -> Option<Duration> {
    match delivery {
        Delivery::Retry {
            http_status: Some(429),
            not_before: Some(reset),
            ..
        } => Some(*reset),
        _ => None,
    }
}

/// Whether an outcome shows the provider took our credentials: an acceptance or a refusal of
/// the message itself does; a credentials refusal shows they do not; no answer, a rate
/// limit, an unavailable service or a redirect, which may come before authentication, show
/// nothing.
fn credentials_accepted(delivery: &Delivery) -> Option<bool> {
    match delivery {
        Delivery::Unauthorized { .. } => Some(false),
        Delivery::Accepted { .. } | Delivery::Rejected { .. } | Delivery::OptedOut { .. } => {
            Some(true)
        }
        Delivery::Retry {
            http_status: Some(status),
            ..
        } if (400..500).contains(status) && !matches!(status, 408 | 429) => Some(true),
        Delivery::Retry { .. } | Delivery::InDoubt { .. } => None,
    }
}

fn log_refused(account: &str, delivery: &Delivery, pause: Duration, opened: bool) {
    let Delivery::Unauthorized { reason, .. } = delivery else {
        return;
    };
    if opened {
        tracing::error!(
            account,
            %reason,
            ?pause,
            "credentials refused: sending through this account is paused, its messages wait \
             without spending attempts; fix the credentials"
        );
    } else {
        tracing::warn!(account, %reason, ?pause, "credentials still refused: paused again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Delivery {
        Delivery::Unauthorized {
            http_status: Some(401),
            reason: "bad key".into(),
        }
    }

    fn accepted() -> Delivery {
        Delivery::Accepted {
            http_status: 202,
            provider_message_id: None,
        }
    }

    fn closed(circuits: &Circuits, account: &str) -> bool {
        !circuits
            .states()
            .iter()
            .any(|(name, paused)| name == account && *paused)
    }

    fn probe(permit: Permit) -> u64 {
        match permit {
            Permit::Probe(ticket) => ticket,
            other => panic!("expected a probe, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_pauses_the_account_until_a_probe_gets_through() {
        let first = Duration::from_secs(3);
        let circuits = Circuits::new(first, Duration::from_secs(20));
        assert_eq!(circuits.permit("email"), Permit::Send);

        assert_eq!(circuits.record("email", &refused(), None), Some(first));
        assert_eq!(circuits.permit("sms"), Permit::Send, "other account");
        assert!(!closed(&circuits, "email") && closed(&circuits, "sms"));
        assert_eq!(circuits.permit("email"), Permit::Wait);
        // Calls already in flight when it opened wait out the same pause.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            circuits.record("email", &refused(), None),
            Some(Duration::from_secs(2))
        );

        tokio::time::advance(Duration::from_secs(2)).await;
        let ticket = probe(circuits.permit("email"));
        // While the probe is out, others wait a second at most, and are not claimed.
        assert_eq!(circuits.permit("email"), Permit::Wait);
        assert!(!closed(&circuits, "email"));
        // A late refusal of an earlier call does not count as the probe's.
        assert_eq!(circuits.record("email", &refused(), None), Some(PROBE_WAIT));
        // A failed probe doubles the pause.
        assert_eq!(
            circuits.record("email", &refused(), Some(ticket)),
            Some(2 * first)
        );
        tokio::time::advance(2 * first).await;
        let ticket = probe(circuits.permit("email"));
        assert_eq!(circuits.record("email", &accepted(), Some(ticket)), None);
        assert_eq!(circuits.permit("email"), Permit::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_pauses_the_account_until_its_reset() {
        let circuits = Circuits::new(Duration::from_secs(3), Duration::from_secs(20));
        let limited = |reset: u64| Delivery::Retry {
            http_status: Some(429),
            not_before: Some(Duration::from_secs(reset)),
            reason: "too many requests".into(),
        };
        assert_eq!(circuits.record("email", &limited(2), None), None);
        assert!(!closed(&circuits, "email") && closed(&circuits, "sms"));
        assert_eq!(circuits.permit("email"), Permit::Wait);
        // A later reset from a call in flight extends it; an earlier one does not shorten it.
        circuits.record("email", &limited(5), None);
        circuits.record("email", &limited(1), None);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!closed(&circuits, "email"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(closed(&circuits, "email"), "resumed at the reset, no probe");
        assert_eq!(circuits.permit("email"), Permit::Send);
        // A 429 that does not say when it resets pauses nothing.
        let unsaid = Delivery::Retry {
            http_status: Some(429),
            not_before: None,
            reason: "slow down".into(),
        };
        circuits.record("email", &unsaid, None);
        assert!(closed(&circuits, "email"));
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_are_capped_and_unanswered_probes_are_retried() {
        let circuits = Circuits::new(Duration::from_secs(4), Duration::from_secs(6));
        circuits.record("sms", &refused(), None);
        tokio::time::advance(Duration::from_secs(4)).await;
        let ticket = probe(circuits.permit("sms"));
        assert_eq!(
            circuits.record("sms", &refused(), Some(ticket)),
            Some(Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        let ticket = probe(circuits.permit("sms"));
        // A rate limit may come before authentication: it proves nothing.
        let rate_limited = Delivery::Retry {
            http_status: Some(429),
            not_before: None,
            reason: "slow down".into(),
        };
        assert_eq!(circuits.record("sms", &rate_limited, Some(ticket)), None);
        let ticket = probe(circuits.permit("sms"));
        // Only the probe's own ticket gives the probe back.
        circuits.probe_not_made("sms", ticket + 100);
        assert_eq!(circuits.permit("sms"), Permit::Wait);
        circuits.probe_not_made("sms", ticket);
        probe(circuits.permit("sms"));
    }
}
