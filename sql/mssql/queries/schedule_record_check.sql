-- The detector's verdict on a schedule @P1: @P2 is the error, NULL when it is valid. Only a
-- changed verdict is written (SQL Server 2019 has no IS DISTINCT FROM).
UPDATE dbo.schedule
   SET error = @P2, checked_at = SYSUTCDATETIME()
 WHERE schedule_id = @P1
   AND (error <> @P2
        OR (error IS NULL AND @P2 IS NOT NULL)
        OR (error IS NOT NULL AND @P2 IS NULL));
