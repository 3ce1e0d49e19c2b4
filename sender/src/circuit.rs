//! One circuit per provider: after it refuses our credentials (or they are not set), nothing
//! more is sent to it until a single probe gets any other answer. Messages that come up
//! meanwhile go back to the queue untouched, and the refused calls are not counted, so no
//! message spends its attempts while an operator fixes a key.

use std::sync::Mutex;
use std::time::Duration;

use herald_core::model::Channel;
use tokio::time::Instant;

use crate::provider::Delivery;

/// The longest pause between probes.
const PAUSE_MAX: Duration = Duration::from_secs(60);
/// While a probe is out, other messages wait this long (or the pause, if shorter).
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// What a message on a channel may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Send,
    /// Send: it is the one call that finds out whether the credentials work again.
    Probe,
    /// Go back to the queue for this long.
    Wait(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant, pause: Duration },
    Probing { pause: Duration },
}

/// The email (SendGrid) and SMS (Twilio) circuits.
pub struct Circuits {
    email: Mutex<State>,
    sms: Mutex<State>,
    first_pause: Duration,
    max_pause: Duration,
}

impl Circuits {
    /// Pauses start at `first_pause` and double per failed probe, up to `max_pause` (and a
    /// minute at most).
    pub fn new(first_pause: Duration, max_pause: Duration) -> Self {
        Self {
            email: Mutex::new(State::Closed),
            sms: Mutex::new(State::Closed),
            first_pause,
            max_pause: max_pause.min(PAUSE_MAX).max(first_pause),
        }
    }

    pub fn permit(&self, channel: Channel) -> Permit {
        let mut state = self.state(channel);
        let now = Instant::now();
        match *state {
            State::Closed => Permit::Send,
            State::Open { until, pause } if now >= until => {
                *state = State::Probing { pause };
                Permit::Probe
            }
            State::Open { until, .. } => Permit::Wait(until - now),
            State::Probing { pause } => Permit::Wait(pause.min(PROBE_WAIT)),
        }
    }

    /// A probe that was granted but never made: the next message probes instead.
    pub fn probe_not_made(&self, channel: Channel) {
        let mut state = self.state(channel);
        if let State::Probing { pause } = *state {
            *state = State::Open {
                until: Instant::now(),
                pause,
            };
        }
    }

    /// Updates the circuit with a call's result. For a credentials refusal, returns how long
    /// the refused message waits: until the next probe.
    pub fn record(&self, channel: Channel, delivery: &Delivery) -> Option<Duration> {
        let mut state = self.state(channel);
        let now = Instant::now();
        match (credentials_accepted(delivery), *state) {
            (Some(false), State::Open { until, .. }) => Some(until.saturating_duration_since(now)),
            (Some(false), current) => {
                let pause = match current {
                    State::Probing { pause } => (pause * 2).min(self.max_pause),
                    _ => self.first_pause,
                };
                *state = State::Open {
                    until: now + pause,
                    pause,
                };
                log_refused(channel, delivery, pause, current == State::Closed);
                Some(pause)
            }
            (Some(true), State::Closed) => None,
            (Some(true), _) => {
                *state = State::Closed;
                tracing::warn!(%channel, "the provider takes the credentials again: sending resumed");
                None
            }
            // No answer proves nothing: the next message probes.
            (None, State::Probing { pause }) => {
                *state = State::Open { until: now, pause };
                None
            }
            (None, _) => None,
        }
    }

    fn state(&self, channel: Channel) -> std::sync::MutexGuard<'_, State> {
        match channel {
            Channel::Email => &self.email,
            Channel::Sms => &self.sms,
        }
        .lock()
        .expect("circuit lock poisoned")
    }
}

/// Whether an outcome shows the provider took our credentials: any HTTP answer but a
/// credentials refusal does; a call with no answer shows nothing.
fn credentials_accepted(delivery: &Delivery) -> Option<bool> {
    match delivery {
        Delivery::Unauthorized { .. } => Some(false),
        Delivery::Accepted { .. } | Delivery::Rejected { .. } => Some(true),
        Delivery::Retry { http_status, .. } => http_status.map(|_| true),
        Delivery::InDoubt { .. } => None,
    }
}

fn log_refused(channel: Channel, delivery: &Delivery, pause: Duration, opened: bool) {
    let Delivery::Unauthorized { reason, .. } = delivery else {
        return;
    };
    if opened {
        tracing::error!(
            %channel,
            %reason,
            ?pause,
            "credentials refused: sending on this channel is paused, messages wait without \
             spending attempts; fix the credentials"
        );
    } else {
        tracing::warn!(%channel, %reason, ?pause, "credentials still refused: paused again");
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

    #[tokio::test(start_paused = true)]
    async fn a_refusal_pauses_the_channel_until_a_probe_gets_through() {
        let first = Duration::from_secs(1);
        let circuits = Circuits::new(first, Duration::from_secs(10));
        assert_eq!(circuits.permit(Channel::Email), Permit::Send);

        assert_eq!(circuits.record(Channel::Email, &refused()), Some(first));
        assert_eq!(circuits.permit(Channel::Sms), Permit::Send, "other channel");
        assert_eq!(circuits.permit(Channel::Email), Permit::Wait(first));
        // Calls already in flight when it opened wait out the same pause.
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(
            circuits.record(Channel::Email, &refused()),
            Some(Duration::from_millis(600))
        );

        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(circuits.permit(Channel::Email), Permit::Probe);
        assert_eq!(circuits.permit(Channel::Email), Permit::Wait(first));
        // A failed probe doubles the pause.
        assert_eq!(circuits.record(Channel::Email, &refused()), Some(2 * first));
        tokio::time::advance(2 * first).await;
        assert_eq!(circuits.permit(Channel::Email), Permit::Probe);
        assert_eq!(circuits.record(Channel::Email, &accepted()), None);
        assert_eq!(circuits.permit(Channel::Email), Permit::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_are_capped_and_unanswered_probes_are_retried() {
        let circuits = Circuits::new(Duration::from_secs(4), Duration::from_secs(6));
        circuits.record(Channel::Sms, &refused());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(circuits.permit(Channel::Sms), Permit::Probe);
        assert_eq!(
            circuits.record(Channel::Sms, &refused()),
            Some(Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(circuits.permit(Channel::Sms), Permit::Probe);
        let no_answer = Delivery::InDoubt {
            reason: "timed out".into(),
        };
        assert_eq!(circuits.record(Channel::Sms, &no_answer), None);
        assert_eq!(circuits.permit(Channel::Sms), Permit::Probe);
        circuits.probe_not_made(Channel::Sms);
        assert_eq!(circuits.permit(Channel::Sms), Permit::Probe);
    }
}
