-- Addresses that must not be contacted (unsubscribed, bounced, complained).

CREATE TABLE IF NOT EXISTS suppression (
    tenant     text        NOT NULL,
    channel    text        NOT NULL CHECK (channel IN ('email', 'sms')),
    address    text        NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS suppression_address ON suppression (tenant, channel, lower(address));
