-- One row per provider call. outcome is NULL while the call is in flight.

CREATE TABLE IF NOT EXISTS delivery_attempt (
    message_id          bigint      NOT NULL REFERENCES message ON DELETE CASCADE,
    attempt             integer     NOT NULL,
    sender              text        NOT NULL,
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    outcome             text        CHECK (outcome IN ('sent', 'retry', 'failed', 'in_doubt')),
    http_status         integer,
    provider_message_id text,
    error               text,
    PRIMARY KEY (message_id, attempt)
);
