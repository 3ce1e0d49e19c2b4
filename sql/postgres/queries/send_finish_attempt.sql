-- Record how attempt $2 of message $1 ended: message status $3, attempt outcome $4,
-- HTTP status $5, provider message id $6, error $7, next attempt in $8 seconds; $9 is 1
-- when the attempt is not counted against max_attempts.
-- A late answer for a message already declared in doubt still records the truth.
WITH m AS (
    UPDATE message
       SET status = $3,
           provider_message_id = coalesce($6, provider_message_id),
           last_error = $7,
           sent_at = CASE WHEN $3 = 'sent' THEN now() END,
           next_attempt_at = now() + make_interval(secs => $8::float8),
           uncounted_attempts = uncounted_attempts + $9,
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE message_id = $1
       AND send_attempts = $2
       AND status IN ('sending', 'in_doubt')
    RETURNING message_id
)
UPDATE delivery_attempt
   SET finished_at = now(), outcome = $4, http_status = $5, provider_message_id = $6,
       error = $7
 WHERE message_id = $1
   AND attempt = $2
   AND (outcome IS NULL OR outcome = 'in_doubt')
