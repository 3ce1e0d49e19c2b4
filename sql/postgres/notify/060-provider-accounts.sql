-- Provider accounts, which tenants send through them, and send rates. Admins write these in
-- SQL; the senders read them (accounts every `sender.accounts_refresh`, limits in each claim).

-- A SendGrid account (channel email) or a Twilio account (channel sms) besides the default
-- ones in the senders' configuration, which are named `email` and `sms`. Secrets are never
-- stored here: a column ending in `_env` names the environment variable that holds one, set
-- on every sender.
CREATE TABLE IF NOT EXISTS provider_account (
    name                  text        PRIMARY KEY CHECK (name NOT IN ('email', 'sms')),
    channel               text        NOT NULL CHECK (channel IN ('email', 'sms')),
    -- SendGrid: the API key's variable, and the sender identity
    api_key_env           text,
    from_email            text,
    from_name             text,
    -- Twilio: the account, its auth token's variable, and a number or a messaging service
    account_sid           text,
    auth_token_env        text,
    from_number           text,
    messaging_service_sid text,
    created_at            timestamptz NOT NULL DEFAULT now(),
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
    channel     text   NOT NULL CHECK (channel IN ('email', 'sms')),
    schedule_id bigint REFERENCES schedule (schedule_id),
    account     text   NOT NULL REFERENCES provider_account (name)
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

-- The account a message goes through (NULL: its channel's default account).
ALTER TABLE message ADD COLUMN IF NOT EXISTS account text;
