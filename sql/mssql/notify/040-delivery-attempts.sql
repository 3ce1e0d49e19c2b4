-- One row per provider call. outcome is NULL while the call is in flight.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.delivery_attempt', N'U') IS NULL
    CREATE TABLE dbo.delivery_attempt (
        message_id          bigint        NOT NULL CONSTRAINT delivery_attempt_message
                                          REFERENCES dbo.message (message_id) ON DELETE CASCADE,
        attempt             int           NOT NULL,
        sender              nvarchar(200) NOT NULL,
        started_at          datetime2(7)  NOT NULL CONSTRAINT delivery_attempt_started_default DEFAULT SYSUTCDATETIME(),
        finished_at         datetime2(7)  NULL,
        outcome             nvarchar(16)  NULL CONSTRAINT delivery_attempt_outcome
                                          CHECK (outcome IN (N'sent', N'retry', N'failed', N'in_doubt')),
        http_status         int           NULL,
        provider_message_id nvarchar(max) NULL,
        error               nvarchar(max) NULL,
        CONSTRAINT delivery_attempt_pk PRIMARY KEY (message_id, attempt)
    );
