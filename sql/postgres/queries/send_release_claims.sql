-- At sender $1's clean shutdown: its claimed messages not yet begun go back to the queue.
-- Returns how many went back.
WITH released AS (
    UPDATE message
       SET lease_owner = NULL, lease_expires_at = NULL
     WHERE status = 'queued' AND lease_owner = $1
    RETURNING 1
)
SELECT count(*) AS released FROM released
