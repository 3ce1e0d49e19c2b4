-- Messages $1 (ids), claimed by $2, go `sending` right before their provider calls, each
-- with its attempt row; the lease is extended to cover the calls ($3 seconds). Returns the
-- messages still claimed, with their attempt numbers.
WITH m AS (
    UPDATE message
       SET status = 'sending', send_attempts = send_attempts + 1,
           lease_expires_at = now() + make_interval(secs => $3::float8), updated_at = now()
     WHERE message_id = ANY($1) AND lease_owner = $2 AND status = 'queued'
    RETURNING message_id, send_attempts
)
INSERT INTO delivery_attempt (message_id, attempt, sender)
SELECT message_id, send_attempts, $2 FROM m
RETURNING message_id, attempt
