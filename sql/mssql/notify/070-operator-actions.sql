-- What operators did with heraldctl, one row per action, with who and why: settling an
-- in-doubt message (`resolve_sent`, `resolve_resend`, `resolve_failed`), putting a failed
-- one back in the queue (`requeue`), pausing or resuming a schedule (`pause`, `resume`).
-- A message action names its message and the status it moved from and to; a schedule
-- action its schedule.
--   SELECT * FROM dbo.operator_action WHERE message_id = 42 ORDER BY acted_at;

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.operator_action', N'U') IS NULL
    CREATE TABLE dbo.operator_action (
        action_id   bigint        IDENTITY (1, 1) NOT NULL CONSTRAINT operator_action_pk PRIMARY KEY,
        action      nvarchar(16)  NOT NULL CONSTRAINT operator_action_kind CHECK (action IN (
                        N'resolve_sent', N'resolve_resend', N'resolve_failed', N'requeue',
                        N'pause', N'resume')),
        message_id  bigint        NULL CONSTRAINT operator_action_message
                                  REFERENCES dbo.message (message_id) ON DELETE CASCADE,
        schedule_id bigint        NULL CONSTRAINT operator_action_schedule
                                  REFERENCES dbo.schedule (schedule_id) ON DELETE CASCADE,
        from_status nvarchar(16)  NULL,
        to_status   nvarchar(16)  NULL,
        actor       nvarchar(200) NOT NULL,
        reason      nvarchar(max) NULL,
        acted_at    datetime2(7)  NOT NULL CONSTRAINT operator_action_acted_default DEFAULT SYSUTCDATETIME(),
        CONSTRAINT operator_action_subject CHECK (
            (message_id IS NULL AND schedule_id IS NOT NULL)
            OR (message_id IS NOT NULL AND schedule_id IS NULL))
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.operator_action') AND name = N'operator_action_message')
    CREATE INDEX operator_action_message ON dbo.operator_action (message_id) WHERE message_id IS NOT NULL;
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.operator_action') AND name = N'operator_action_schedule')
    CREATE INDEX operator_action_schedule ON dbo.operator_action (schedule_id) WHERE schedule_id IS NOT NULL;

-- `heraldctl in-doubt list`: the few messages waiting for a person, without a scan.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.message') AND name = N'message_in_doubt')
    CREATE INDEX message_in_doubt ON dbo.message (updated_at) WHERE status = N'in_doubt';

-- `heraldctl failures` and the status page: the latest failures, newest first, without a scan.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.message') AND name = N'message_failures')
    CREATE INDEX message_failures ON dbo.message (updated_at)
        WHERE status IN (N'failed', N'render_failed', N'in_doubt');
