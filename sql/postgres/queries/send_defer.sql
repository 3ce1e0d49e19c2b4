-- Message $1, claimed by $2 and not begun, goes back to the queue, due in $3 seconds
-- (its provider is paused): no attempt is made or counted.
UPDATE message
   SET lease_owner = NULL, lease_expires_at = NULL,
       next_attempt_at = now() + make_interval(secs => $3::float8)
 WHERE message_id = $1 AND lease_owner = $2 AND status = 'queued'
