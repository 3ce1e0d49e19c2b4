-- Message @P1, claimed by @P2, is not sent: its recipient is on the suppression list.
UPDATE dbo.message
   SET status = N'suppressed', last_error = N'the recipient is on the suppression list',
       lease_owner = NULL, lease_expires_at = NULL, updated_at = SYSUTCDATETIME()
 WHERE message_id = @P1 AND lease_owner = @P2 AND status = N'queued';
