//! In-doubt SMS settled by asking Twilio. A message is `in_doubt` when its call may have
//! reached the provider without a definite answer; it is never resent on a guess. Twilio
//! lists the messages it holds (`GET …/Messages.json`, by recipient and our number), so every
//! `settle_interval` each SMS in doubt for less than `settle_within` is looked for there: one
//! with the same body, created since its call began, settles it as `sent` with Twilio's sid.
//! One the list does not show stays `in_doubt` and is looked for again; after
//! `settle_within` it waits for a person (`heraldctl in-doubt`), as Twilio may take a message
//! and list it late, and a resend on absence could send it twice.
//!
//! Email has no such list (SendGrid's activity feed is a paid add-on): its messages are
//! settled by the provider's delivery events, which each round also applies to messages that
//! went in doubt after their events arrived.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use herald_core::config::SenderSettings;
use herald_core::model::{Channel, InDoubtMessage};
use herald_core::store::{NotifyDb, StoreResult};
use herald_core::telemetry::error_chain;
use tokio_util::sync::CancellationToken;

use crate::metrics::SenderMetrics;
use crate::provider::{ListedSms, Providers};
use crate::webhooks::settle_by_events;

/// In-doubt messages looked for per round, at most.
const PER_ROUND: u32 = 100;
/// A message Twilio created this long before our call began still matches it: the two
/// clocks differ.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Recorded on the attempt row of a settled message.
const FOUND_IN_LIST: &str = "settled: Twilio's message list shows it";

pub struct Settler {
    pub store: Arc<dyn NotifyDb>,
    pub providers: Arc<Providers>,
    pub settings: SenderSettings,
    pub metrics: Arc<SenderMetrics>,
}

impl Settler {
    /// Settles what it can of the messages in doubt every `settle_interval` until cancelled;
    /// returns at once if the interval is zero.
    pub async fn run(self, cancel: CancellationToken) {
        let every = self.settings.settle_interval;
        if every.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(error) = self.round().await {
                tracing::warn!(error = %error_chain(&error), "could not look at the messages in doubt; trying again later");
            }
        }
    }

    /// One look at the messages in doubt now: those their providers have reported on since
    /// (any channel), then the SMS Twilio lists.
    async fn round(&self) -> StoreResult<()> {
        settle_by_events(&self.store, &self.metrics).await;
        let in_doubt = self
            .store
            .in_doubt_to_settle(Channel::Sms, self.settings.settle_within, PER_ROUND)
            .await?;
        for message in in_doubt {
            self.settle(&message).await?;
        }
        Ok(())
    }

    async fn settle(&self, message: &InDoubtMessage) -> StoreResult<()> {
        let since = message.started_at - CLOCK_SKEW;
        let listed = match self
            .providers
            .sms_sent_to(&message.account, &message.recipient, since)
            .await
        {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(message_id = message.message_id, %error, "Twilio's message list could not be read");
                return Ok(());
            }
        };
        // Created while the call could have reached Twilio: after it began, and before it was
        // declared in doubt (allowing for the clocks).
        let until = message.finished_at.unwrap_or_else(Utc::now) + CLOCK_SKEW;
        // The oldest match first: with two identical messages, each settles one.
        for ListedSms { sid, .. } in listed
            .iter()
            .rev()
            .filter(|sms| sms.body == message.body_text && sms.created <= until)
        {
            let settled = self
                .store
                .settle_in_doubt(message.message_id, message.attempt, sid, FOUND_IN_LIST)
                .await?;
            if settled {
                self.metrics.settled(Channel::Sms);
                tracing::info!(
                    message_id = message.message_id,
                    provider_message_id = %sid,
                    in_doubt_for = ?(Utc::now() - message.started_at).to_std().unwrap_or_default(),
                    "in-doubt SMS settled: Twilio has it, so it is sent"
                );
                return Ok(());
            }
        }
        Ok(())
    }
}
