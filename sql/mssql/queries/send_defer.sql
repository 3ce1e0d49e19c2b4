-- Message @P1, claimed by @P2 and not begun, goes back to the queue, due in @P3
-- milliseconds (its provider is paused): no attempt is made or counted.
UPDATE dbo.message
   SET lease_owner = NULL, lease_expires_at = NULL,
       next_attempt_at = DATEADD(millisecond, @P3, SYSUTCDATETIME())
 WHERE message_id = @P1 AND lease_owner = @P2 AND status = N'queued';
