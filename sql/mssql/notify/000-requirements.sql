-- The notification database (SQL Server 2019 or later). Run the numbered files in order
-- with sqlcmd (`GO` separates batches); each file can be run again and changes nothing.
--
-- Conventions for every file here:
-- * Timestamps are datetime2(7) holding UTC, written with SYSUTCDATETIME() (never
--   GETDATE()): the queries compare them with SYSUTCDATETIME(), in the column's own type,
--   so predicates stay index seeks and no offset arithmetic is involved. datetimeoffset
--   would cost two bytes a value to store an offset that is always +00:00.
-- * Text is nvarchar. Columns in a unique index are sized so the whole key fits SQL
--   Server's 1,700-byte limit for nonclustered index keys (nvarchar is 2 bytes a
--   character): tenant nvarchar(128), names nvarchar(200), source keys nvarchar(400),
--   change versions nvarchar(64), recipients nvarchar(320). Everything else is
--   nvarchar(max).
-- * Filtered and computed-column indexes need QUOTED_IDENTIFIER and ANSI_NULLS on when
--   they are created (sqlcmd's default is QUOTED_IDENTIFIER off), hence the SETs.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;

-- OPENJSON (the renderer's batch insert, the detector's lease claim) needs database
-- compatibility level 130 or later.
IF (SELECT d.compatibility_level FROM sys.databases AS d WHERE d.database_id = DB_ID()) < 130
    THROW 50000, N'herald needs database compatibility level 130 or later (for OPENJSON): ALTER DATABASE CURRENT SET COMPATIBILITY_LEVEL = 150', 1;
