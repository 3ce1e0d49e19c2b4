-- Move schedule @P2's mark to hold-back line @P3 (UTC), frontier (@P4 change, @P5 key),
-- position @P6, start @P7 (UTC) and source definition @P8, if detector @P1 still owns it. Returns
-- the schedule's row when it moved (a row, not a row count: counts depend on NOCOUNT).
-- OUTPUT goes INTO a table variable: a bare OUTPUT fails (error 334) once the table has a
-- trigger.
DECLARE @moved TABLE (schedule_id bigint NOT NULL);

UPDATE dbo.detector_watermark
   SET hold_back = @P3, change_value = @P4, key_value = @P5, position = @P6,
       watching_since = @P7, source_definition = @P8, updated_at = SYSUTCDATETIME()
OUTPUT inserted.schedule_id INTO @moved (schedule_id)
 WHERE schedule_id = @P2
   AND owner = @P1;

SELECT schedule_id FROM @moved;
