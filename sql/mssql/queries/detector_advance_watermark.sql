-- Move schedule @P2's watermark to (@P3, @P4) if detector @P1 still owns it. Returns the
-- schedule's row when it moved (a row, not a row count: counts depend on NOCOUNT).
UPDATE dbo.detector_watermark
   SET change_value = @P3, key_value = @P4, updated_at = SYSUTCDATETIME()
OUTPUT inserted.schedule_id
 WHERE schedule_id = @P2
   AND owner = @P1;
