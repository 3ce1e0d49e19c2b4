-- Addresses that must not be contacted (unsubscribed, bounced, complained): by any of the
-- tenant's messages on the channel, or, with schedule_id, by that schedule's (a one-click
-- unsubscribe from it).

CREATE TABLE IF NOT EXISTS suppression (
    tenant     text        NOT NULL,
    channel    text        NOT NULL CHECK (channel IN ('email', 'sms')),
    address    text        NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What put the address here, when a provider's event did: `sendgrid:<sg_event_id>`.
ALTER TABLE suppression ADD COLUMN IF NOT EXISTS source text;

ALTER TABLE suppression ADD COLUMN IF NOT EXISTS schedule_id bigint;

-- One entry per address and scope (0: the tenant's every schedule; ids start at 1). It
-- replaces suppression_address (no scope): stop the senders before applying this.
CREATE UNIQUE INDEX IF NOT EXISTS suppression_entry
    ON suppression (tenant, channel, lower(address), coalesce(schedule_id, 0));
DROP INDEX IF EXISTS suppression_address;

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

ALTER TABLE suppression_removed ADD COLUMN IF NOT EXISTS schedule_id bigint;
