-- Record how attempts ended ($1: a JSON array, one object per attempt: message_id,
-- attempt, message status, attempt outcome, http_status, provider_message_id, error,
-- retry_ms until the next attempt, uncounted = 1 when the attempt is not counted against
-- max_attempts). A late answer for a message already declared in doubt still records the
-- truth.
WITH o AS (
    SELECT *
      FROM jsonb_to_recordset($1::text::jsonb)
           AS o(message_id bigint, attempt int, status text, outcome text, http_status int,
                provider_message_id text, error text, retry_ms int, uncounted int)
), m AS (
    UPDATE message
       SET status = o.status,
           provider_message_id = coalesce(o.provider_message_id, message.provider_message_id),
           last_error = o.error,
           sent_at = CASE WHEN o.status = 'sent' THEN now() END,
           next_attempt_at = now() + o.retry_ms * interval '1 millisecond',
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
