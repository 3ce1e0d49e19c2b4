-- What the providers said about messages after taking them (SendGrid's Event Webhook:
-- processed, delivered, deferred, bounce, dropped, spamreport, unsubscribe, open, click),
-- one row per event, kept once: a provider that posts an event again changes nothing.
-- Provider `herald`: what a recipient told us directly (a one-click unsubscribe).
-- message_id is NULL for an event that names no message of ours.
--   SELECT event, reason, occurred_at FROM dbo.delivery_event WHERE message_id = 42 ORDER BY occurred_at;

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.delivery_event', N'U') IS NULL
    CREATE TABLE dbo.delivery_event (
        provider            nvarchar(16)  NOT NULL CONSTRAINT delivery_event_provider CHECK (provider IN (N'sendgrid', N'twilio', N'herald')),
        event_id            nvarchar(200) NOT NULL,
        message_id          bigint        NULL CONSTRAINT delivery_event_message_fk
                                          REFERENCES dbo.message (message_id) ON DELETE CASCADE,
        provider_message_id nvarchar(200) NULL,
        event               nvarchar(32)  NOT NULL,
        reason              nvarchar(max) NULL,
        occurred_at         datetime2(7)  NULL,
        received_at         datetime2(7)  NOT NULL CONSTRAINT delivery_event_received_default DEFAULT SYSUTCDATETIME(),
        payload             nvarchar(max) NOT NULL,
        CONSTRAINT delivery_event_pk PRIMARY KEY (provider, event_id)
    );
GO

-- Databases made before `herald` was a provider allowed only the two.
IF EXISTS (SELECT 1 FROM sys.check_constraints
            WHERE name = N'delivery_event_provider' AND [definition] NOT LIKE N'%herald%')
    ALTER TABLE dbo.delivery_event DROP CONSTRAINT delivery_event_provider;
IF NOT EXISTS (SELECT 1 FROM sys.check_constraints WHERE name = N'delivery_event_provider')
    ALTER TABLE dbo.delivery_event ADD CONSTRAINT delivery_event_provider
        CHECK (provider IN (N'sendgrid', N'twilio', N'herald'));
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.delivery_event') AND name = N'delivery_event_message')
    CREATE INDEX delivery_event_message ON dbo.delivery_event (message_id) WHERE message_id IS NOT NULL;

-- An event without our message id finds it through an earlier event with the provider's id.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.delivery_event') AND name = N'delivery_event_provider_message')
    CREATE INDEX delivery_event_provider_message ON dbo.delivery_event (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;
