-- Take or renew the lease (@P1 owner, @P2 milliseconds) on schedules @P3 (a JSON array of
-- ids) that no live detector holds. Only the rows this detector now holds come back, with
-- their marks (hold_back NULL: not started yet).
-- Missing mark rows are created first, unowned, which is harmless if the batch stops
-- there; UPDLOCK, HOLDLOCK make two detectors creating the same row take turns instead of
-- colliding on the primary key. OUTPUT goes INTO a table variable: a bare OUTPUT fails
-- (error 334) once the table has a trigger.
DECLARE @held TABLE (
    schedule_id       bigint        NOT NULL,
    hold_back         datetime2(7)  NULL,
    change_value      nvarchar(64)  NULL,
    key_value         nvarchar(400) NULL,
    position          nvarchar(100) NULL,
    watching_since    datetime2(7)  NULL,
    source_definition nvarchar(max) NULL
);

INSERT INTO dbo.detector_watermark (schedule_id)
SELECT DISTINCT ids.schedule_id
  FROM OPENJSON(@P3) WITH (schedule_id bigint '$') AS ids
 WHERE NOT EXISTS (SELECT 1
                     FROM dbo.detector_watermark AS w WITH (UPDLOCK, HOLDLOCK)
                    WHERE w.schedule_id = ids.schedule_id);

UPDATE dbo.detector_watermark
   SET owner = @P1, lease_expires_at = DATEADD(millisecond, @P2, SYSUTCDATETIME())
OUTPUT inserted.schedule_id, inserted.hold_back, inserted.change_value, inserted.key_value,
       inserted.position, inserted.watching_since, inserted.source_definition
  INTO @held (schedule_id, hold_back, change_value, key_value, position, watching_since,
              source_definition)
 WHERE schedule_id IN (SELECT ids.schedule_id FROM OPENJSON(@P3) WITH (schedule_id bigint '$') AS ids)
   AND (owner = @P1 OR owner IS NULL OR lease_expires_at < SYSUTCDATETIME());

SELECT schedule_id, hold_back, change_value, key_value, position, watching_since,
       source_definition
  FROM @held;
