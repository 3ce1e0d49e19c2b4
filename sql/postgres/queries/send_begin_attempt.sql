-- Message $1, claimed by $2, goes `sending` before the provider call; the lease is
-- extended to cover the call ($3 seconds). Returns the attempt number.
WITH m AS (
    UPDATE message
       SET status = 'sending', send_attempts = send_attempts + 1,
           lease_expires_at = now() + make_interval(secs => $3::float8), updated_at = now()
     WHERE message_id = $1 AND lease_owner = $2 AND status = 'queued'
    RETURNING message_id, send_attempts
)
INSERT INTO delivery_attempt (message_id, attempt, sender)
SELECT message_id, send_attempts, $2 FROM m
RETURNING attempt
