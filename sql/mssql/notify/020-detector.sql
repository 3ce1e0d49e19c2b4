-- One row per schedule: where the detector stands, and which detector owns it.
--   hold_back     the hold-back line W (UTC): every row whose change value is below it has
--                 been emitted. Passes read again from here. NULL until the detector has
--                 started the schedule. SYSUTCDATETIME() - hold_back is how far detection is
--                 held back: by the replica's lag and the lookback (poll mode), or by the
--                 capture job's lag and the lookback (cdc mode).
--   change_value  the frontier, the highest (change, key) read: the source's own text forms
--   key_value     of the row's change and key columns (NULL: nothing read yet; cdc mode
--                 keeps none).
--   position      the detector's progress in the engine's terms: in cdc mode the change
--                 table row read up to, `start_lsn:command_id:seqval:operation` (hex LSNs),
--                 or a whole commit LSN `start_lsn`.
--   watching_since when the detector started the schedule (UTC): earlier changes are not
--                 notified (nothing is backfilled), and the sweep and audits never look below it.
--   source_definition the schedule's table, key and change column the mark belongs to: when the
--                 admin changes them, the schedule starts afresh.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.detector_watermark', N'U') IS NULL
    CREATE TABLE dbo.detector_watermark (
        schedule_id      bigint        NOT NULL CONSTRAINT detector_watermark_pk PRIMARY KEY
                                       CONSTRAINT detector_watermark_schedule
                                       REFERENCES dbo.schedule (schedule_id) ON DELETE CASCADE,
        hold_back        datetime2(7)  NULL,
        change_value     nvarchar(64)  NULL,
        key_value        nvarchar(400) NULL,
        position         nvarchar(100) NULL,
        watching_since   datetime2(7)  NULL,
        source_definition nvarchar(max) NULL,
        owner            nvarchar(200) NULL, -- detector instance holding the lease
        lease_expires_at datetime2(7)  NULL,
        updated_at       datetime2(7)  NOT NULL CONSTRAINT detector_watermark_updated_default DEFAULT SYSUTCDATETIME()
    );
GO

-- Watermarks from before the hold-back line (a batch of its own: a batch that adds a
-- column cannot name it).
IF COL_LENGTH(N'dbo.detector_watermark', N'hold_back') IS NULL
    ALTER TABLE dbo.detector_watermark ADD hold_back datetime2(7) NULL;
IF COL_LENGTH(N'dbo.detector_watermark', N'position') IS NULL
    ALTER TABLE dbo.detector_watermark ADD position nvarchar(100) NULL;
IF COL_LENGTH(N'dbo.detector_watermark', N'watching_since') IS NULL
    ALTER TABLE dbo.detector_watermark ADD watching_since datetime2(7) NULL;
IF COL_LENGTH(N'dbo.detector_watermark', N'source_definition') IS NULL
    ALTER TABLE dbo.detector_watermark ADD source_definition nvarchar(max) NULL;
GO

-- Everything below an old watermark was emitted: it becomes the hold-back line, in UTC (an
-- ISO 8601 text without an offset is UTC, as datetime2 change columns hold; one with an
-- offset, from a datetimeoffset column, is that instant). A watermark that had only a time
-- leaves no frontier.
UPDATE dbo.detector_watermark
   SET hold_back = CAST(SWITCHOFFSET(CONVERT(datetimeoffset(7), change_value, 127), '+00:00')
                        AS datetime2(7)),
       change_value = CASE WHEN key_value IS NULL THEN NULL ELSE change_value END
 WHERE hold_back IS NULL
   AND change_value IS NOT NULL;
GO

-- Changes the detector's passes missed (poll mode: their transaction committed later than
-- the lookback after its change values) and the sweep or an audit found and emitted, late:
-- one row per change.
--   SELECT * FROM dbo.late_change ORDER BY found_at DESC;
-- The key is nonclustered: SQL Server limits clustered keys to 900 bytes, and this one can
-- reach 8 + 800 + 128.
IF OBJECT_ID(N'dbo.late_change', N'U') IS NULL
    CREATE TABLE dbo.late_change (
        schedule_id    bigint        NOT NULL CONSTRAINT late_change_schedule
                                     REFERENCES dbo.schedule (schedule_id) ON DELETE CASCADE,
        source_key     nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
        change_version nvarchar(64)  COLLATE Latin1_General_100_BIN2 NOT NULL,
        found_by       nvarchar(8)   NOT NULL CONSTRAINT late_change_found_by
                                     CHECK (found_by IN (N'sweep', N'audit')),
        found_at       datetime2(7)  NOT NULL CONSTRAINT late_change_found_default DEFAULT SYSUTCDATETIME(),
        CONSTRAINT late_change_pk PRIMARY KEY NONCLUSTERED (schedule_id, source_key, change_version)
    );
GO

-- Its key and version compare exactly, as message's (030-messages.sql), changed in one
-- transaction.
SET XACT_ABORT ON;
IF EXISTS (SELECT 1 FROM sys.columns
            WHERE object_id = OBJECT_ID(N'dbo.late_change')
              AND name IN (N'source_key', N'change_version')
              AND collation_name <> N'Latin1_General_100_BIN2')
BEGIN
    BEGIN TRANSACTION;
    ALTER TABLE dbo.late_change DROP CONSTRAINT IF EXISTS late_change_pk;
    ALTER TABLE dbo.late_change ALTER COLUMN source_key nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL;
    ALTER TABLE dbo.late_change ALTER COLUMN change_version nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL;
    ALTER TABLE dbo.late_change ADD CONSTRAINT late_change_pk
        PRIMARY KEY NONCLUSTERED (schedule_id, source_key, change_version);
    COMMIT TRANSACTION;
END;
GO
