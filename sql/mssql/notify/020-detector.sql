-- One row per schedule: how far the detector has emitted events, and which detector owns it.
-- change_value and key_value are the source's own text forms of the last emitted row's
-- change and key columns; the detector casts them back to the column types when it polls.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.detector_watermark', N'U') IS NULL
    CREATE TABLE dbo.detector_watermark (
        schedule_id      bigint        NOT NULL CONSTRAINT detector_watermark_pk PRIMARY KEY
                                       CONSTRAINT detector_watermark_schedule
                                       REFERENCES dbo.schedule (schedule_id) ON DELETE CASCADE,
        change_value     nvarchar(64)  NULL, -- NULL until the detector has set its starting point
        key_value        nvarchar(400) NULL, -- NULL while only a starting time is known
        owner            nvarchar(200) NULL, -- detector instance holding the lease
        lease_expires_at datetime2(7)  NULL,
        updated_at       datetime2(7)  NOT NULL CONSTRAINT detector_watermark_updated_default DEFAULT SYSUTCDATETIME()
    );
