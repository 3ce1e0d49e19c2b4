-- Operator action $2 on messages $1 (bigint[], no duplicates): each one in status $3 moves
-- to $4, and the action is recorded with who ($5) and why ($6); the others are left as
-- they are. To `queued`: due now, with a fresh attempt budget (the calls made so far are
-- no longer counted against max_attempts), through its account (the channel's default for
-- a message from before there were accounts). To `sent`: sent when its last call began.
-- Returns every requested id with its status now (NULL: no such message) and whether it
-- moved.
WITH acted AS (
    UPDATE message m
       SET status = $4::text,
           next_attempt_at = CASE WHEN $4::text = 'queued' THEN now() ELSE m.next_attempt_at END,
           account = coalesce(m.account, m.channel),
           uncounted_attempts = CASE WHEN $4::text = 'queued' THEN m.send_attempts
                                     ELSE m.uncounted_attempts END,
           sent_at = CASE WHEN $4::text = 'sent'
                          THEN coalesce(m.sent_at,
                                        (SELECT a.started_at
                                           FROM delivery_attempt a
                                          WHERE a.message_id = m.message_id
                                            AND a.attempt = m.send_attempts),
                                        now())
                          ELSE m.sent_at END,
           last_error = CASE WHEN $4::text = 'sent' THEN NULL ELSE m.last_error END,
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
     WHERE m.message_id = ANY($1::bigint[])
       AND m.status = $3::text
    RETURNING m.message_id, m.status
), recorded AS (
    INSERT INTO operator_action (action, message_id, from_status, to_status, actor, reason)
    SELECT $2, message_id, $3::text, $4::text, $5, $6 FROM acted
)
SELECT ids.message_id, coalesce(acted.status, m.status) AS status,
       acted.message_id IS NOT NULL AS acted
  FROM unnest($1::bigint[]) AS ids(message_id)
  LEFT JOIN acted ON acted.message_id = ids.message_id
  LEFT JOIN message m ON m.message_id = ids.message_id
