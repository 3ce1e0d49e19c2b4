-- At sender @P1's clean shutdown: its claimed messages not yet begun go back to the queue.
-- Returns how many went back.
UPDATE dbo.message
   SET lease_owner = NULL, lease_expires_at = NULL
 WHERE status = N'queued' AND lease_owner = @P1;

SELECT CAST(@@ROWCOUNT AS bigint) AS released;
