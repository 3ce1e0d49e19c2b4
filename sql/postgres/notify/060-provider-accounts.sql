-- Provider accounts, which tenants send through them, and send rates. Admins write these in
-- SQL; the senders read them (accounts every `sender.accounts_refresh`, limits in each claim).

-- A SendGrid account (channel email) or a Twilio account (channel sms) besides the default
-- ones in the senders' configuration, which are named `email` and `sms`. Secrets are never
-- stored here: a column ending in `_env` names the environment variable that holds one, set
-- on every sender (not one of herald's own, HERALD_…). The account's webhooks post to
-- `<webhooks.public_url>/webhooks/sendgrid/<name>` (set it in SendGrid's Event Webhook) and
-- `/webhooks/twilio/<name>` (each SMS asks for it). Names are lower case, as the senders
-- compare them exactly: letters, digits, `-` and `_`.
CREATE TABLE IF NOT EXISTS provider_account (
    name                   text        PRIMARY KEY
                           CHECK (name NOT IN ('email', 'sms') AND name ~ '^[a-z0-9_-]+$'),
    channel                text        NOT NULL CHECK (channel IN ('email', 'sms')),
    -- SendGrid: the API key's variable, and the sender identity
    api_key_env            text,
    from_email             text,
    from_name              text,
    -- the Signed Event Webhook's verification key (public), as SendGrid shows it
    event_verification_key text,
    -- Twilio: the account, its auth token's variable, and a number or a messaging service
    account_sid            text,
    auth_token_env         text,
    from_number            text,
    messaging_service_sid  text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, channel),
    CONSTRAINT provider_account_email CHECK (
        channel <> 'email' OR (api_key_env IS NOT NULL AND from_email IS NOT NULL)),
    CONSTRAINT provider_account_sms CHECK (
        channel <> 'sms' OR (account_sid IS NOT NULL AND auth_token_env IS NOT NULL
                             AND (from_number IS NOT NULL OR messaging_service_sid IS NOT NULL)))
);

-- The account a tenant's messages on a channel go through: those of one schedule (schedule_id)
-- before the tenant's others (schedule_id NULL). Without one, the channel's default account.
-- A message keeps the account it was rendered with.
CREATE TABLE IF NOT EXISTS tenant_account (
    tenant      text   NOT NULL,
    channel                text   NOT NULL CHECK (channel IN ('email', 'sms')),
    schedule_id bigint REFERENCES schedule (schedule_id),
    account     text   NOT NULL,
    -- an account of the channel
    FOREIGN KEY (account, channel) REFERENCES provider_account (name, channel)
);

CREATE UNIQUE INDEX IF NOT EXISTS tenant_account_scope
    ON tenant_account (tenant, channel, coalesce(schedule_id, 0));

-- Sends per second, as token buckets shared by every sender: a tenant's (scope `tenant`,
-- name: the tenant, all channels) or a provider account's (scope `account`, name: a
-- provider_account, or `email` / `sms` for the defaults). A claim takes at most the whole
-- sends the bucket holds, up to `burst`; it refills at `per_second`. `tokens` and
-- `refilled_at` are the bucket's state, kept by the claims (NULL: full).
CREATE TABLE IF NOT EXISTS send_limit (
    scope       text             NOT NULL CHECK (scope IN ('tenant', 'account')),
    name        text             NOT NULL,
    per_second  double precision NOT NULL CHECK (per_second > 0),
    burst       double precision NOT NULL CHECK (burst >= 1),
    tokens      double precision,
    refilled_at timestamptz,
    PRIMARY KEY (scope, name)
);

-- The account a message goes through: named when it is rendered (the channel's default:
-- `email`, `sms`). Messages rendered before there were accounts are named here (apply this
-- with the renderers stopped, as they name new ones).
ALTER TABLE message ADD COLUMN IF NOT EXISTS account text;
UPDATE message SET account = channel
 WHERE account IS NULL AND status IN ('render_retry', 'queued', 'sending', 'in_doubt');

-- The sender's claims: each tenant's queued messages by account, oldest first (send_claim.sql
-- serves tenants in turn, each account's within its limit). It replaces
-- message_send_due_by_tenant and message_send_due, dropped once it is built.
CREATE INDEX IF NOT EXISTS message_send_due_by_account
    ON message (tenant, account, next_attempt_at) WHERE status = 'queued';
DROP INDEX IF EXISTS message_send_due_by_tenant;
DROP INDEX IF EXISTS message_send_due;
