-- Record how attempts ended, one row per attempt: message $1, attempt $2, message status
-- $3, attempt outcome $4, HTTP status $5, provider message id $6, error $7, next attempt in
-- $8 seconds, $9 = 1 when the attempt is not counted against max_attempts.
-- A late answer for a message already declared in doubt still records the truth.
WITH o AS (
    SELECT *
      FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                  $7::text[], $8::float8[], $9::int[])
           AS o(message_id, attempt, status, outcome, http_status, provider_message_id, error,
                retry_secs, uncounted)
), m AS (
    UPDATE message
       SET status = o.status,
           provider_message_id = coalesce(o.provider_message_id, message.provider_message_id),
           last_error = o.error,
           sent_at = CASE WHEN o.status = 'sent' THEN now() END,
           next_attempt_at = now() + make_interval(secs => o.retry_secs),
           uncounted_attempts = uncounted_attempts + o.uncounted,
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
      FROM o
     WHERE message.message_id = o.message_id
       AND message.send_attempts = o.attempt
       AND message.status IN ('sending', 'in_doubt')
    RETURNING message.message_id
)
UPDATE delivery_attempt a
   SET finished_at = now(), outcome = o.outcome, http_status = o.http_status,
       provider_message_id = o.provider_message_id, error = o.error
  FROM o
 WHERE a.message_id = o.message_id
   AND a.attempt = o.attempt
   AND (a.outcome IS NULL OR a.outcome = 'in_doubt')
