-- What the providers said about messages after taking them (SendGrid's Event Webhook:
-- processed, delivered, deferred, bounce, dropped, spamreport, unsubscribe, open, click),
-- one row per event, kept once: a provider that posts an event again changes nothing.
-- Provider `herald`: what a recipient told us directly (a one-click unsubscribe).
-- message_id is NULL for an event that names no message of ours.
--   SELECT event, reason, occurred_at FROM delivery_event WHERE message_id = 42 ORDER BY occurred_at;

CREATE TABLE IF NOT EXISTS delivery_event (
    provider            text        NOT NULL,
    event_id            text        NOT NULL,
    message_id          bigint      REFERENCES message ON DELETE CASCADE,
    provider_message_id text,
    event               text        NOT NULL,
    reason              text,
    occurred_at         timestamptz,
    received_at         timestamptz NOT NULL DEFAULT now(),
    payload             text        NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- Redefined on every run: databases made before `herald` was a provider allowed only the two.
ALTER TABLE delivery_event
    DROP CONSTRAINT IF EXISTS delivery_event_provider_check,
    ADD CONSTRAINT delivery_event_provider_check
        CHECK (provider IN ('sendgrid', 'twilio', 'herald'));

CREATE INDEX IF NOT EXISTS delivery_event_message ON delivery_event (message_id)
    WHERE message_id IS NOT NULL;

-- An event without our message id finds it through an earlier event with the provider's id.
CREATE INDEX IF NOT EXISTS delivery_event_provider_message
    ON delivery_event (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
