-- The message queue. A row exists from the moment the renderer first sees a change event,
-- whatever became of it, so support can always answer "what happened to this change?".
--
-- status:
--   render_retry   merge function failed; the renderer tries again at next_attempt_at
--   render_failed  cannot be rendered (template error, bad merge result, retries exhausted)
--   skipped        nothing to send (the merge function named no recipient)
--   queued         rendered, waiting for the sender (next_attempt_at)
--   sending        the sender is inside the provider call
--   sent           the provider accepted it (provider_message_id, sent_at)
--   failed         the provider refused it, or send retries ran out
--   in_doubt       the sender lost track during the provider call: never resent automatically
--   suppressed     the recipient is on the suppression list

CREATE TABLE IF NOT EXISTS message (
    message_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant              text        NOT NULL,
    schedule_id         bigint      NOT NULL,
    source_key          text        NOT NULL,
    change_version      text        NOT NULL,
    channel             text        NOT NULL CHECK (channel IN ('email', 'sms')),
    status              text        NOT NULL CHECK (status IN (
                            'render_retry', 'render_failed', 'skipped', 'queued', 'sending',
                            'sent', 'failed', 'in_doubt', 'suppressed')),
    recipient           text,
    recipient_name      text,
    locale              text,
    subject             text,
    body_html           text,
    body_text           text,
    render_attempts     integer     NOT NULL DEFAULT 0,
    send_attempts       integer     NOT NULL DEFAULT 0,
    -- provider calls not counted against max_attempts: refused for our credentials, or
    -- made before an operator requeued the message (heraldctl)
    uncounted_attempts  integer     NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner         text,
    lease_expires_at    timestamptz,
    provider_message_id text,
    last_error          text,
    event_partition     integer,
    event_offset        bigint,
    detected_at         timestamptz, -- when the detector emitted the change event
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    -- The notification's identity: replays and rescans insert nothing new.
    CONSTRAINT message_identity UNIQUE (tenant, schedule_id, source_key, change_version)
);

ALTER TABLE message ADD COLUMN IF NOT EXISTS detected_at timestamptz;
ALTER TABLE message ADD COLUMN IF NOT EXISTS uncounted_attempts integer NOT NULL DEFAULT 0;

-- The sender's claims read message_send_due_by_account (060-provider-accounts.sql).
CREATE INDEX IF NOT EXISTS message_render_due ON message (next_attempt_at) WHERE status = 'render_retry';
CREATE INDEX IF NOT EXISTS message_in_flight ON message (lease_expires_at) WHERE status = 'sending';
CREATE INDEX IF NOT EXISTS message_by_recipient ON message (tenant, recipient, created_at);

-- Events that cannot become a message (not JSON, missing fields, a newer format, an
-- identity no column can hold, a message the database refused): kept, never dropped.
--   raw      the payload's bytes, exactly as they were on the topic;
--   payload  the same as text, when it is text (UTF-8 without NUL characters).
CREATE TABLE IF NOT EXISTS rejected_event (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    payload     text,
    raw         bytea,
    error       text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);

ALTER TABLE rejected_event ADD COLUMN IF NOT EXISTS raw bytea;
