-- Provider accounts, which tenants send through them, and send rates. Admins write these in
-- SQL; the senders read them (accounts every `sender.accounts_refresh`, limits in each claim).

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- A SendGrid account (channel email) or a Twilio account (channel sms) besides the default
-- ones in the senders' configuration, which are named `email` and `sms`. Secrets are never
-- stored here: a column ending in `_env` names the environment variable that holds one, set
-- on every sender (not one of herald's own, HERALD_…). The account's webhooks post to
-- `<webhooks.public_url>/webhooks/sendgrid/<name>` (set it in SendGrid's Event Webhook) and
-- `/webhooks/twilio/<name>` (each SMS asks for it). Names are lower case, as the senders
-- compare them exactly: letters, digits, `-` and `_`.
IF OBJECT_ID(N'dbo.provider_account', N'U') IS NULL
    CREATE TABLE dbo.provider_account (
        name                  nvarchar(128) NOT NULL CONSTRAINT provider_account_pk PRIMARY KEY
                                  CONSTRAINT provider_account_name CHECK (
                                      name NOT IN (N'email', N'sms') AND name <> N''
                                      AND name NOT LIKE N'%[^a-z0-9_-]%' COLLATE Latin1_General_BIN),
        channel               nvarchar(8)   NOT NULL CONSTRAINT provider_account_channel CHECK (channel IN (N'email', N'sms')),
        -- SendGrid: the API key's variable, and the sender identity
        api_key_env           nvarchar(128) NULL,
        from_email            nvarchar(320) NULL,
        from_name             nvarchar(200) NULL,
        -- the Signed Event Webhook's verification key (public), as SendGrid shows it
        event_verification_key nvarchar(400) NULL,
        -- Twilio: the account, its auth token's variable, and a number or a messaging service
        account_sid           nvarchar(64)  NULL,
        auth_token_env        nvarchar(128) NULL,
        from_number           nvarchar(32)  NULL,
        messaging_service_sid nvarchar(64)  NULL,
        created_at            datetime2(7)  NOT NULL CONSTRAINT provider_account_created_default DEFAULT SYSUTCDATETIME(),
        CONSTRAINT provider_account_name_channel UNIQUE (name, channel),
        CONSTRAINT provider_account_email CHECK (
            channel <> N'email' OR (api_key_env IS NOT NULL AND from_email IS NOT NULL)),
        CONSTRAINT provider_account_sms CHECK (
            channel <> N'sms' OR (account_sid IS NOT NULL AND auth_token_env IS NOT NULL
                                  AND (from_number IS NOT NULL OR messaging_service_sid IS NOT NULL)))
    );
GO

-- The account a tenant's messages on a channel go through: those of one schedule (schedule_id)
-- before the tenant's others (schedule_id NULL). Without one, the channel's default account.
-- A message keeps the account it was rendered with.
IF OBJECT_ID(N'dbo.tenant_account', N'U') IS NULL
    CREATE TABLE dbo.tenant_account (
        tenant      nvarchar(128) NOT NULL,
        channel     nvarchar(8)   NOT NULL CONSTRAINT tenant_account_channel CHECK (channel IN (N'email', N'sms')),
        schedule_id bigint        NULL CONSTRAINT tenant_account_schedule REFERENCES dbo.schedule (schedule_id),
        -- as the account's name is written (SQL Server would match another case)
        account     nvarchar(128) NOT NULL
                        CONSTRAINT tenant_account_account_name
                        CHECK (account NOT LIKE N'%[^a-z0-9_-]%' COLLATE Latin1_General_BIN),
        -- an account of the channel
        CONSTRAINT tenant_account_account FOREIGN KEY (account, channel)
            REFERENCES dbo.provider_account (name, channel)
    );
GO

-- One per scope (a unique index holds one NULL: the tenant's other schedules).
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.tenant_account') AND name = N'tenant_account_scope')
    CREATE UNIQUE INDEX tenant_account_scope ON dbo.tenant_account (tenant, channel, schedule_id);
GO

-- Sends per second, as token buckets shared by every sender: a tenant's (scope `tenant`,
-- name: the tenant, all channels) or a provider account's (scope `account`, name: a
-- provider_account, or `email` / `sms` for the defaults). A claim takes at most the whole
-- sends the bucket holds, up to `burst`; it refills at `per_second`. `tokens` and
-- `refilled_at` are the bucket's state, kept by the claims (NULL: full).
IF OBJECT_ID(N'dbo.send_limit', N'U') IS NULL
    CREATE TABLE dbo.send_limit (
        scope       nvarchar(8)   NOT NULL CONSTRAINT send_limit_scope CHECK (scope IN (N'tenant', N'account')),
        name        nvarchar(128) NOT NULL,
        per_second  float         NOT NULL CONSTRAINT send_limit_rate CHECK (per_second > 0),
        burst       float         NOT NULL CONSTRAINT send_limit_burst CHECK (burst >= 1),
        tokens      float         NULL,
        refilled_at datetime2(7)  NULL,
        CONSTRAINT send_limit_pk PRIMARY KEY (scope, name)
    );
GO

-- The account a message goes through: named when it is rendered (the channel's default:
-- `email`, `sms`). Messages rendered before there were accounts are named here (apply this
-- with the renderers stopped, as they name new ones).
IF COL_LENGTH(N'dbo.message', N'account') IS NULL
    ALTER TABLE dbo.message ADD account nvarchar(128) NULL;
GO

UPDATE dbo.message SET account = channel
 WHERE account IS NULL AND status IN (N'render_retry', N'queued', N'sending', N'in_doubt');

-- The sender's claims: each tenant's queued messages by account, oldest first (send_claim.sql
-- serves tenants in turn, each account's within its limit). It replaces
-- message_send_due_by_tenant and message_send_due, dropped once it is built.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.message') AND name = N'message_send_due_by_account')
    CREATE INDEX message_send_due_by_account ON dbo.message (tenant, account, next_attempt_at) WHERE status = N'queued';
IF EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.message') AND name = N'message_send_due_by_tenant')
    DROP INDEX message_send_due_by_tenant ON dbo.message;
IF EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.message') AND name = N'message_send_due')
    DROP INDEX message_send_due ON dbo.message;
GO
