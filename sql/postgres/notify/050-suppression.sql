-- Addresses that must not be contacted (unsubscribed, bounced, complained).

CREATE TABLE IF NOT EXISTS suppression (
    tenant     text        NOT NULL,
    channel    text        NOT NULL CHECK (channel IN ('email', 'sms')),
    address    text        NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What put the address here, when a provider's event did: `sendgrid:<sg_event_id>`.
ALTER TABLE suppression ADD COLUMN IF NOT EXISTS source text;

CREATE UNIQUE INDEX IF NOT EXISTS suppression_address ON suppression (tenant, channel, lower(address));

-- Entries an operator removed (heraldctl suppression remove), with who and why: the address
-- may be contacted again since.
CREATE TABLE IF NOT EXISTS suppression_removed (
    tenant     text        NOT NULL,
    channel    text        NOT NULL,
    address    text        NOT NULL,
    reason     text        NOT NULL,
    source     text,
    created_at timestamptz NOT NULL,
    removed_by text        NOT NULL,
    removed_why text       NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now()
);
